#!/bin/sh
# Build a busybox OCI bundle: rootfs from Debian's busybox-static, and a
# config.json from `cocoon spec`, made non-interactive.
# usage: make-bundle.sh [BUNDLE_DIR] [COCOON_BINARY]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bundle=${1:-$here}
cocoon=${2:-$here/../../build/src/cocoon}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-bundle.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic' || {
    echo "make-bundle.sh: $busybox is not static (install busybox-static)" >&2; exit 1; }

rootfs=$bundle/rootfs
mkdir -p "$rootfs"/bin "$rootfs"/proc "$rootfs"/sys "$rootfs"/dev "$rootfs"/etc "$rootfs"/tmp "$rootfs"/root
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

if [ ! -f "$bundle/config.json" ]; then
    "$cocoon" spec --bundle "$bundle"
    # A demo runs without a terminal and prints something.
    python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo \"hello from $(hostname): pid $$, uid $(id -u)\"; ls /"]
json.dump(c, open(p, "w"), indent=2)
PY
fi
