#!/bin/bash
# Build cocoon's guest kernel (`make kernel`): Linux from Debian's
# linux-source package, `make tinyconfig` plus the fragment kernel/cocoon.config.
#
#   scripts/build-kernel.sh                 build (or reuse) and install into build/kernel/
#   scripts/build-kernel.sh --print-config  list the fragment's options with their reasons
#   scripts/build-kernel.sh --config-only   stop after generating and checking .config
#   scripts/build-kernel.sh --force         rebuild even if the cache has this kernel
#   scripts/build-kernel.sh --out DIR       install into DIR instead of build/kernel
#   scripts/build-kernel.sh --print-key     print the cache key of this tree and exit
#
# Results are cached per machine in $COCOON_KERNEL_CACHE/<key>/ (default
# /var/cache/cocoon/kernel, or ~/.cache/cocoon/kernel when that is not
# writable), keyed by a hash of the fragment, this script, pack-vmlinux.py,
# the linux-source package version and the compiler, so another clone on the
# same machine reuses the build. The unpacked source and the object tree are
# kept there too (one per linux-source version), so a changed fragment
# rebuilds only what it touches. build/kernel/ receives vmlinux (packed by
# scripts/pack-vmlinux.py: the same memory image without the 2 MiB alignment
# padding and symbols), bzImage, .config, System.map and build-info; the
# kernel's own vmlinux, with symbols, stays in the cache as vmlinux.elf.
# See docs/kernel.md.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT="$ROOT/scripts/build-kernel.sh"
PACK="$ROOT/scripts/pack-vmlinux.py"
FRAGMENT="$ROOT/kernel/cocoon.config"
OUT="$ROOT/build/kernel"
MODE=build
FORCE=0

log() { printf 'kernel: %s\n' "$*"; }
die() { printf 'kernel: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --print-config) MODE=print ;;
        --config-only) MODE=config ;;
        --print-key) MODE=key ;;
        --force) FORCE=1 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
    shift
done
[ -f "$FRAGMENT" ] || die "missing $FRAGMENT"

# The fragment as "OPTION<TAB>VALUE<TAB>WHY<TAB>HEADING" lines, VALUE "n" for
# "# CONFIG_X is not set". A `# why:` line and its `#   ` continuations give
# the reason for every option up to the next `# why:`.
parse_fragment() {
    awk '
        function flush_why() { if (collecting) { why = buf; collecting = 0 } }
        /^## / { flush_why(); heading = substr($0, 4); next }
        /^# why:/ { collecting = 1; buf = substr($0, 8); sub(/^ +/, "", buf); next }
        /^# CONFIG_[A-Za-z0-9_]+ is not set$/ {
            flush_why(); printf "%s\tn\t%s\t%s\n", $2, why, heading; next }
        collecting && /^#   / { t = $0; sub(/^# +/, "", t); buf = buf " " t; next }
        /^CONFIG_[A-Za-z0-9_]+=/ {
            flush_why(); i = index($0, "=")
            printf "%s\t%s\t%s\t%s\n", substr($0, 1, i - 1), substr($0, i + 1), why, heading; next }
        /^[ \t]*$/ || /^#/ { flush_why(); next }
        { printf "kernel: cannot parse fragment line: %s\n", $0 > "/dev/stderr"; exit 1 }
    ' "$FRAGMENT"
}

print_config() {
    local cfg="$OUT/.config"
    parse_fragment | awk -F'\t' -v cfg="$cfg" -v shown="${cfg#"$ROOT"/}" '
        BEGIN {
            built = 0
            while ((getline l < cfg) > 0) {
                built = 1
                if (l ~ /^CONFIG_/) { i = index(l, "="); have[substr(l, 1, i - 1)] = substr(l, i + 1) }
            }
        }
        {
            if ($4 != last) { printf "%s%s\n", (NR > 1 ? "\n" : ""), $4; last = $4 }
            opt = substr($1, 8); val = ($2 == "n" ? "n" : $2)
            mark = ""
            if (built) {
                got = ($1 in have) ? have[$1] : "n"
                if (got != val) mark = "  [NOT IN .config: " got "]"
            }
            printf "  %-30s %s%s\n", opt "=" val, $3, mark
            count[val == "n" ? "off" : "on"]++
        }
        END {
            printf "\n%d options set by kernel/cocoon.config (%d enabled, %d deliberately off)",
                count["on"] + count["off"], count["on"], count["off"]
            if (built) {
                n = 0; for (k in have) if (have[k] == "y") n++
                printf "; %d options =y in %s in all (tinyconfig + fragment + dependencies)", n, shown
            }
            printf ".\n"
        }'
}

if [ "$MODE" = print ]; then
    print_config
    exit 0
fi

# ---- where things are -------------------------------------------------------

CACHE_ROOT=${COCOON_KERNEL_CACHE:-/var/cache/cocoon/kernel}
if ! mkdir -p "$CACHE_ROOT" 2>/dev/null || [ ! -w "$CACHE_ROOT" ]; then
    [ -z "${COCOON_KERNEL_CACHE:-}" ] || die "cache dir $CACHE_ROOT is not writable"
    CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/cocoon/kernel"
    mkdir -p "$CACHE_ROOT" || die "cannot create $CACHE_ROOT"
fi

find_tarball() {
    ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1
}
TARBALL=$(find_tarball)
if [ -z "$TARBALL" ]; then
    log "installing Debian's linux-source and the kernel build tools"
    "$ROOT/scripts/install-deps.sh" kernel
    TARBALL=$(find_tarball)
    [ -n "$TARBALL" ] || die "no /usr/src/linux-source-*.tar.xz after installing linux-source"
fi
SRC_PKG=$(basename "$TARBALL" .tar.xz)   # linux-source-6.1: the package that ships it
SRC_VER=$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null) ||
    SRC_VER="unpackaged-$(stat -c '%s-%Y' "$TARBALL")"
CC_VER=$(gcc --version 2>/dev/null | head -n 1 || echo "no gcc")
KEY=$({ printf 'source %s %s\ncc %s\n' "$SRC_PKG" "$SRC_VER" "$CC_VER"
        cat "$FRAGMENT" "$SCRIPT" "$PACK"; } | sha256sum | cut -c 1-16)
ENTRY="$CACHE_ROOT/$KEY"
SRC_DIR="$CACHE_ROOT/src-$SRC_VER"       # unpacked once per linux-source version
OBJ_DIR="$CACHE_ROOT/obj-$SRC_VER"       # the O= tree, reused by later builds
if [ "$MODE" = key ]; then
    echo "$KEY"
    exit 0
fi

# Copy one file into place atomically, leaving it alone when unchanged.
install_file() {
    if ! cmp -s "$1" "$2"; then
        cp "$1" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
    fi
}

install_entry() {
    mkdir -p "$OUT"
    install_file "$ENTRY/vmlinux" "$OUT/vmlinux"
    install_file "$ENTRY/bzImage" "$OUT/bzImage"
    install_file "$ENTRY/config" "$OUT/.config"
    install_file "$ENTRY/System.map" "$OUT/System.map"
    install_file "$ENTRY/build-info" "$OUT/build-info"
}

have_entry() {
    local f
    for f in vmlinux vmlinux.elf bzImage config System.map build-info; do
        [ -f "$ENTRY/$f" ] || return 1
    done
}

human() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

report_installed() {
    log "$1: vmlinux $(human "$(stat -c %s "$OUT/vmlinux")"), bzImage $(human "$(stat -c %s "$OUT/bzImage")") in ${OUT#"$ROOT"/}/ (cache $ENTRY)"
}

if [ "$MODE" = build ] && [ "$FORCE" = 0 ] && have_entry; then
    install_entry
    report_installed "cached build $KEY"
    exit 0
fi

# ---- build ------------------------------------------------------------------

"$ROOT/scripts/install-deps.sh" kernel

exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
    log "waiting for another kernel build on this machine (lock $CACHE_ROOT/.lock)"
    flock 9
fi
if [ "$MODE" = build ] && [ "$FORCE" = 0 ] && have_entry; then   # built while we waited
    install_entry
    report_installed "cached build $KEY"
    exit 0
fi
rm -rf "$CACHE_ROOT"/.entry.*   # left by an interrupted build (we hold the lock)

START=$SECONDS
LOAD_START=$(cut -d ' ' -f 1-3 /proc/loadavg)
elapsed() { local s=$((SECONDS - START)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

if [ ! -f "$SRC_DIR/.cocoon-unpacked" ]; then
    # a new linux-source version: drop the trees of older ones
    rm -rf "$CACHE_ROOT"/src-* "$CACHE_ROOT"/obj-* "$CACHE_ROOT"/.unpack.*
    log "unpacking $TARBALL ($SRC_PKG $SRC_VER) into $SRC_DIR"
    tmp="$CACHE_ROOT/.unpack.$$"
    mkdir -p "$tmp"
    tar -xJf "$TARBALL" -C "$tmp"
    top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [ -f "$top/Makefile" ] || die "$TARBALL does not hold a kernel tree"
    mv "$top" "$SRC_DIR"
    rmdir "$tmp"
    touch "$SRC_DIR/.cocoon-unpacked"
    log "unpacked in $(elapsed)"
fi

mkdir -p "$OBJ_DIR"
LOG="$OBJ_DIR/build.log"
: >"$LOG"
KMAKE=(make -C "$SRC_DIR" O="$OBJ_DIR" KBUILD_BUILD_USER=cocoon KBUILD_BUILD_HOST=cocoon)

log "configuring: tinyconfig + kernel/cocoon.config (log: $LOG)"
"${KMAKE[@]}" tinyconfig >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "make tinyconfig failed"; }
(cd "$OBJ_DIR" && "$SRC_DIR/scripts/kconfig/merge_config.sh" -m -O "$OBJ_DIR" \
    "$OBJ_DIR/.config" "$FRAGMENT") >>"$LOG" 2>&1 ||
    { tail -n 30 "$LOG" >&2; die "merge_config.sh failed"; }
"${KMAKE[@]}" olddefconfig >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "make olddefconfig failed"; }

# merge_config.sh only warns when Kconfig drops a requested value (an unmet
# dependency, a choice that went elsewhere): check every line here.
MISSING=$(parse_fragment | awk -F'\t' -v cfg="$OBJ_DIR/.config" '
    BEGIN {
        while ((getline l < cfg) > 0)
            if (l ~ /^CONFIG_/) { i = index(l, "="); have[substr(l, 1, i - 1)] = substr(l, i + 1) }
    }
    {
        got = ($1 in have) ? have[$1] : "n"
        if (got != $2) printf "%s\t%s\t%s\n", $1, $2, got
    }')
if [ -n "$MISSING" ]; then
    printf 'kernel: error: %d option(s) of kernel/cocoon.config did not make it into .config:\n' \
        "$(printf '%s\n' "$MISSING" | wc -l)" >&2
    while IFS=$'\t' read -r opt want got; do
        printf '  %s: requested %s, .config has %s\n' "$opt" "$want" "$got" >&2
        # where it is defined and what it depends on, to find the missing link
        grep -rn -A 12 --include='Kconfig*' -E "^(menu)?config ${opt#CONFIG_}\$" "$SRC_DIR" 2>/dev/null |
            grep -E 'config |depends on|select|if ' | sed "s|^$SRC_DIR/|    |" | head -n 8 >&2 || true
    done <<<"$MISSING"
    die "fix the fragment (a dependency is missing or a value is not allowed): $OBJ_DIR/.config"
fi
log "configuration checked: all $(parse_fragment | wc -l) options of the fragment are in .config"
if [ "$MODE" = config ]; then
    log "config only: $OBJ_DIR/.config"
    exit 0
fi

# A line every 100 build steps (kbuild's quiet "  CC      path" lines) with the
# count, the total of the last full build when known, and the time; compiler
# warnings and errors pass through as they come. The last build from scratch
# is recorded in $FULL_FILE (steps, time, CPUs, load).
FULL_FILE="$CACHE_ROOT/last-full-build"
EST=$(sed -n 's/^full_build_steps=//p' "$FULL_FILE" 2>/dev/null || true)
FRESH=0
[ -f "$OBJ_DIR/vmlinux" ] || FRESH=1
JOBS=$(nproc)
log "building vmlinux and bzImage with -j$JOBS ($([ "$FRESH" = 1 ] && echo "from scratch: a few minutes on 2 cores" || echo "incremental"))"

progress() {
    local n=0 line step
    while IFS= read -r line; do
        printf '%s\n' "$line" >>"$LOG"
        if [[ "$line" =~ ^\ \ [A-Z0-9_]+\ +[^\ ] ]]; then
            n=$((n + 1))
            if ((n % 100 == 0)); then
                step=${line#  }
                if [ -n "$EST" ] && [ "$FRESH" = 1 ]; then
                    printf 'kernel: [%4d/~%d] %s  %s\n' "$n" "$EST" "$(elapsed)" "$step"
                else
                    printf 'kernel: [%4d] %s  %s\n' "$n" "$(elapsed)" "$step"
                fi
            fi
        elif [[ "$line" != make* ]]; then
            printf '%s\n' "$line"
        fi
    done
    echo "$n" >"$OBJ_DIR/.steps"
}

if ! "${KMAKE[@]}" -j"$JOBS" vmlinux bzImage 2>&1 | progress; then
    echo "kernel: build failed; errors from $LOG:" >&2
    grep -E 'error|Error' "$LOG" | head -n 20 >&2 || true
    tail -n 20 "$LOG" >&2
    die "the kernel build failed (log: $LOG)"
fi
STEPS=$(cat "$OBJ_DIR/.steps")
BUILD_SECONDS=$((SECONDS - START))
LOAD_END=$(cut -d ' ' -f 1-3 /proc/loadavg)
if [ "$FRESH" = 1 ]; then
    cat >"$FULL_FILE" <<EOF
full_build_steps=$STEPS
full_build_seconds=$BUILD_SECONDS
full_build_date=$(date -u '+%Y-%m-%d %H:%M UTC')
full_build_cpus=$(nproc)
full_build_load=$LOAD_START at the start, $LOAD_END at the end
EOF
fi
log "built in $(elapsed) ($STEPS steps)"

# ---- cache and install --------------------------------------------------------

tmp="$CACHE_ROOT/.entry.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
python3 "$PACK" "$OBJ_DIR/vmlinux" "$tmp/vmlinux" | sed 's/^/kernel: /'
cp "$OBJ_DIR/vmlinux" "$tmp/vmlinux.elf"
cp "$OBJ_DIR/arch/x86/boot/bzImage" "$tmp/bzImage"
cp "$OBJ_DIR/.config" "$tmp/config"
cp "$OBJ_DIR/System.map" "$tmp/System.map"
cp "$LOG" "$tmp/build.log"
cat >"$tmp/build-info" <<EOF
key=$KEY
linux_source=$SRC_PKG $SRC_VER
kernel_release=$(cat "$OBJ_DIR/include/config/kernel.release" 2>/dev/null || echo unknown)
cc=$CC_VER
built=$(date -u '+%Y-%m-%d %H:%M UTC')
build_seconds=$BUILD_SECONDS
build_kind=$([ "$FRESH" = 1 ] && echo "from scratch" || echo "incremental")
jobs=$JOBS
cpus=$(nproc)
load=$LOAD_START at the start, $LOAD_END at the end
EOF
cat "$FULL_FILE" >>"$tmp/build-info" 2>/dev/null || true
cat >>"$tmp/build-info" <<EOF
vmlinux_bytes=$(stat -c %s "$tmp/vmlinux")
vmlinux_elf_bytes=$(stat -c %s "$tmp/vmlinux.elf")
bzImage_bytes=$(stat -c %s "$tmp/bzImage")
EOF
rm -rf "$ENTRY"
mv "$tmp" "$ENTRY"
# keep the five newest entries
find "$CACHE_ROOT" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
        -regex '.*/[0-9a-f]{16}' -printf '%T@ %p\n' |
    sort -rn | tail -n +6 | cut -d ' ' -f 2- | xargs -r -d '\n' rm -rf

install_entry
report_installed "built $KEY"
if [ "$(stat -c %s "$OUT/vmlinux")" -ge $((8 << 20)) ]; then
    log "warning: vmlinux is over the 8 MiB target (docs/kernel.md)"
fi
