#!/bin/sh
# Install the Debian packages cocoon needs to build, test and benchmark, if
# they are missing. Idempotent; run as root on Debian 12.
#   build:     meson ninja-build pkg-config gcc libjson-c-dev libcap-dev libseccomp-dev
#   tests:     libcmocka-dev python3-pytest busybox-static clang libclang-rt-dev (libFuzzer)
#              iproute2 podman containerd
#   bench:     runc crun hyperfine python3-matplotlib qemu-system-x86 (qemu microvm:
#              the VMM comparison of bench/vm.py)
#              fio bindfs (bench/fs.py: fio drives the I/O; bindfs is the reference
#              FUSE passthrough)
#   kernel:    linux-source make flex bison bc libelf-dev xz-utils (`make kernel`:
#              scripts/build-kernel.sh builds the guest kernel from Debian's source);
#              test, bench and all include it (`make test` builds the kernel), and
#              erofs-utils qemu-system-x86 (tests/kernel: an erofs image, and the
#              kernel booted under qemu's software emulation)
set -eu
group=${1:-all}
pkgs="meson ninja-build pkg-config gcc libjson-c-dev libcap-dev libseccomp-dev busybox-static"
kernel="linux-source make flex bison bc libelf-dev xz-utils"
case "$group" in
  build) ;;
  kernel) pkgs="gcc $kernel" ;;
  test) pkgs="$pkgs $kernel erofs-utils qemu-system-x86 libcmocka-dev python3-pytest clang libclang-rt-dev iproute2 util-linux file podman containerd" ;;
  all|bench) pkgs="$pkgs $kernel erofs-utils libcmocka-dev python3-pytest clang libclang-rt-dev iproute2 util-linux file podman containerd runc crun hyperfine python3-matplotlib qemu-system-x86 fio bindfs" ;;
  *) echo "usage: $0 [build|kernel|test|bench|all]" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing (run as root)" >&2
    exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
