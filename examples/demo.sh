#!/bin/sh
# `make demo`: build the busybox bundle and show cocoon running it, first in
# one go (`run`), then step by step (create / state / start / delete).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cocoon=${1:-$here/../build/src/cocoon}
bundle=$here/busybox
root=${COCOON_ROOT:-/run/cocoon}
"$here/busybox/make-bundle.sh" "$bundle" "$cocoon"
id=demo-$$

echo "+ cocoon run --bundle $bundle $id"
"$cocoon" --root "$root" run --bundle "$bundle" "$id"
echo "(exit status $?)"

echo
echo "+ cocoon create --bundle $bundle $id   # the process waits for start"
"$cocoon" --root "$root" create --bundle "$bundle" "$id"
echo "+ cocoon state $id"
"$cocoon" --root "$root" state "$id"
echo "+ cocoon start $id"
"$cocoon" --root "$root" start "$id"
sleep 0.2
echo "+ cocoon list"
"$cocoon" --root "$root" list
echo "+ cocoon delete $id"
"$cocoon" --root "$root" delete "$id"

echo
echo "== VM containers"
if "$cocoon" vm check --quiet 2>/dev/null; then
    echo "+ cocoon --vm run --bundle $bundle $id   # its own microVM on cocoon's VMM"
    "$cocoon" --root "$root" --vm run --bundle "$bundle" "$id-vm" || true
else
    echo "This host runs guest kernel mode in software ($("$cocoon" vm check 2>&1 | head -1))."
    echo "A Linux guest cannot boot on cocoon's VMM here; VM containers need hardware"
    echo "virtualization. What runs here instead:"
    kernel=$here/../build/kernel/vmlinux
    [ -e "$kernel" ] || kernel=$here/../build/kernel/bzImage
    if [ -e "$kernel" ] && command -v qemu-system-x86_64 >/dev/null; then
        echo "+ COCOON_QEMU_ACCEL=tcg cocoon --vm --hypervisor qemu run ...   # cocoon's kernel"
        echo "  and cocoon-init in a real guest under qemu's software emulation"
        COCOON_QEMU_ACCEL=tcg "$cocoon" --root "$root" --vm --hypervisor qemu run \
            --bundle "$bundle" "$id-qemu" || true
    else
        echo "(no guest kernel yet: \`make kernel\` builds it; then qemu runs the guest half)"
    fi
    echo "+ cocoon --vm --hypervisor sandbox run ...   # the same agent protocol, agent on the host"
    "$cocoon" --root "$root" --vm --hypervisor sandbox run --bundle "$bundle" "$id-sbx" || true
fi
