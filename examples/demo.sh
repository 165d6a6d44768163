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
