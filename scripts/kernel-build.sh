#!/usr/bin/env bash
# Build a small bootable kernel from Debian's linux-source package of a kernel
# profile, optionally with a patch, and install it as a kernel folder that
# `ptediff kernel-check` (scripts/kernel-check-run.sh) boots.
#
# usage: scripts/kernel-build.sh PROFILE [PATCH [NAME]]
#   PROFILE  v6.1.y, v6.12, v6.18 or v7.3 (the Debian source the profile was read from)
#   PATCH    a unified diff against that source, applied with `patch -p1`
#            (git format-patch / git diff / diff -ru a/ b/ all do)
#   NAME     suffix of the kernel name (default: the patch file name without
#            .patch/.diff, or its folder's name when the file is named after
#            the profile, as in patches/<fix>/v7.3.patch; `base` without a patch)
#
# Result: target/kernel-check/kernels/PROFILE+NAME/ with vmlinuz (bzImage),
# config, version (uname_r, package, package_version, patch, build_id),
# modules/load-order (empty: zram is built in) and .complete.
#
# The kernel is `make tinyconfig` plus what the QEMU guest of kernel-check-run.sh
# needs (SMP, ACPI NUMA, migration, soft-dirty, userfaultfd-wp, pagemap, shmem,
# memfd, swap, zram with its default compressor built in, serial console,
# initramfs) and what Debian's kernels have that the reproducers can tell apart
# (protection keys; NUMA balancing, off at run time, whose protnone fault path a
# 6.1 uffd-wp PAGE_NONE PTE takes). Every option of the fragment must survive `olddefconfig`, or the
# build stops naming the ones that did not.
#
# Cached and incremental: one build tree per profile under
# target/kernel-check/build/PROFILE/src. The patch applied to it is remembered
# (build/PROFILE/applied.patch); a different patch (or none) first reverts it,
# so switching patches rebuilds only the files the patches touch (seconds). A
# kernel folder whose build_id (config fragment, source version, patch) is
# current is not rebuilt at all.
#
# Source packages: linux-source-6.1 and linux-source-6.12 from the machine's
# bookworm sources; linux-source-6.18 and linux-source-7.3 from trixie-backports
# through a private apt state under target/kernel-check/apt (derived from the
# machine's Debian entry, like kernel-check-setup.sh). linux-source-6.18 is no
# longer in the trixie-backports index; its .deb is taken from the archive's
# pool (checked against a pinned SHA-256). Downloaded .debs are kept in
# target/kernel-check/debs; delete one to fetch a newer package.
# Overrides: KERNEL_SRC_V6_1, KERNEL_SRC_V6_12, KERNEL_SRC_V6_18, KERNEL_SRC_V7_3
# (a package version), KERNEL_BUILD_JOBS (make -j, default: all cores),
# KERNEL_BUILD_SOURCE_ONLY=1 (fetch and unpack the source tree only, to read it).
#
# Needs root only to install missing build tools and to download.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC="$ROOT/target/kernel-check"
DEBS="$KC/debs"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'kernel-build: %s\n' "$*" >&2; }
die() { printf 'kernel-build: ERROR: %s\n' "$*" >&2; exit 2; }

usage="usage: $0 PROFILE [PATCH [NAME]]  (PROFILE: v6.1.y, v6.12, v6.18, v7.3)"
[[ $# -ge 1 && $# -le 3 ]] || die "$usage"
PROFILE=$1
PATCH=${2:-}
NAME=${3:-}

# --------------------------------------------------------------- arguments
case $PROFILE in
v6.1.y) SER=6.1 PIN=${KERNEL_SRC_V6_1:-} ;;
v6.12) SER=6.12 PIN=${KERNEL_SRC_V6_12:-} ;;
v6.18) SER=6.18 PIN=${KERNEL_SRC_V6_18:-} ;;
v7.3) SER=7.3 PIN=${KERNEL_SRC_V7_3:-} ;;
*) die "unknown profile '$PROFILE' (kernel profiles with a Debian source: v6.1.y, v6.12, v6.18, v7.3)" ;;
esac
SRCPKG="linux-source-$SER"

if [[ -n $PATCH ]]; then
    [[ -f $PATCH && -r $PATCH ]] || die "$PATCH: no such patch file (or not readable)"
    PATCH=$(cd "$(dirname "$PATCH")" && pwd)/$(basename "$PATCH")
    grep -qE '^\+\+\+ ' "$PATCH" && grep -qE '^--- ' "$PATCH" ||
        die "$PATCH:1: not a unified diff (no '--- '/'+++ ' file header)"
    if [[ -z $NAME ]]; then
        NAME=$(basename "$PATCH")
        NAME=${NAME%.patch}
        NAME=${NAME%.diff}
        # patches/<fix>/<profile>.patch: the fix is named by its folder
        case $NAME in v6.1.y | v6.12 | v6.18 | v7.3) NAME=$(basename "$(dirname "$PATCH")") ;; esac
    fi
    [[ $NAME != base ]] || die "$PATCH: the name 'base' is the unpatched build; rename the patch or pass a NAME"
else
    [[ -z $NAME || $NAME == base ]] || die "a NAME without a PATCH: the unpatched build is always named 'base'"
    NAME=base
fi
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    die "kernel name suffix '$NAME' may only hold letters, digits, '.', '_' and '-' (pass a NAME)"
KNAME="$PROFILE+$NAME"

BUILD="$KC/build/$PROFILE"
SRC="$BUILD/src"
OUT="$KC/kernels/$KNAME"
mkdir -p "$BUILD" "$DEBS" "$KC/kernels"
exec 8>"$BUILD/lock"
flock 8

# ------------------------------------------------------------ config fragment
# What the guest needs on top of tinyconfig, per profile.
fragment() {
    cat <<'EOF'
CONFIG_64BIT=y
CONFIG_SMP=y
CONFIG_PCI=y
CONFIG_ACPI=y
CONFIG_NUMA=y
CONFIG_ACPI_NUMA=y
CONFIG_MIGRATION=y
CONFIG_NUMA_BALANCING=y
CONFIG_TRANSPARENT_HUGEPAGE=y
CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS=y
CONFIG_MULTIUSER=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_POSIX_TIMERS=y
CONFIG_ADVISE_SYSCALLS=y
CONFIG_PRINTK=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_DEVTMPFS=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_CHECKPOINT_RESTORE=y
CONFIG_MEM_SOFT_DIRTY=y
CONFIG_PROC_PAGE_MONITOR=y
CONFIG_USERFAULTFD=y
CONFIG_PTE_MARKER_UFFD_WP=y
CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS=y
CONFIG_SHMEM=y
CONFIG_TMPFS=y
CONFIG_MEMFD_CREATE=y
CONFIG_BLOCK=y
CONFIG_SWAP=y
CONFIG_BLK_DEV=y
CONFIG_ZSMALLOC=y
CONFIG_ZRAM=y
CONFIG_ZRAM_DEF_COMP_LZORLE=y
EOF
    case $SER in
    7.*) echo CONFIG_SYSCTL=y ;; # /proc/sys (PROC_SYSCTL became SYSCTL)
    *) echo CONFIG_PROC_SYSCTL=y ;;
    esac
    case $SER in
    6.1)
        # zram compresses through the crypto API; X86_64_ACPI_NUMA selects ACPI_NUMA.
        printf '%s\n' CONFIG_X86_64_ACPI_NUMA=y CONFIG_CRYPTO=y CONFIG_CRYPTO_LZO=y
        ;;
    *)
        # zram's own backends (6.12+); lzo is what it forces without another.
        printf '%s\n' CONFIG_ZRAM_BACKEND_LZO=y
        ;;
    esac
}

# ------------------------------------------------------------------ tools
installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}
TOOLS=(gcc make flex bison bc libelf-dev libssl-dev xz-utils perl python3 patch cpio)
missing=()
for p in "${TOOLS[@]}"; do installed "$p" || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "build tools missing (${missing[*]}): run as root or apt-get install them"
    say "installing ${missing[*]}"
    flock -w 1800 /var/lock/ptediff-apt.lock apt-get update -qq >&2
    flock -w 1800 /var/lock/ptediff-apt.lock apt-get install -y -q "${missing[@]}" >&2
fi

# ------------------------------------------------------------------ source
# shellcheck source=debian-apt.sh
. "$ROOT/scripts/debian-apt.sh"

# linux-source-6.18 as it was in trixie-backports (the pool keeps it after the
# index dropped it); the hash is of the .deb the v6.18 profile was read from.
POOL_6_18_VERSION=6.18.15-1~bpo13+1
POOL_6_18_SHA256=1638c9e5f4307c722231d8000e30cd2fa2fb71f55e081ff9eecfd0a756955c18

# the pinned version if there is a pin, else the newest one downloaded
cached_deb() {
    if [[ -n $PIN ]]; then
        ls "$DEBS/${SRCPKG}_${PIN}_all.deb" 2>/dev/null || true
    else
        ls "$DEBS/${SRCPKG}_"*_all.deb 2>/dev/null | sort -V | tail -n1
    fi
}

fetch_deb() {
    local deb
    deb=$(cached_deb)
    if [[ -n $deb ]]; then
        echo "$deb"
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "$SRCPKG is not downloaded yet ($DEBS): run as root"
    local want=$SRCPKG
    [[ -z $PIN ]] || want="$SRCPKG=$PIN"
    local opts=()
    case $SER in
    6.18 | 7.3)
        private_apt_init
        opts=("${PAPT_OPTS[@]}")
        ;;
    *)
        apt-cache show "$SRCPKG" >/dev/null 2>&1 || apt_get update -qq >&2
        ;;
    esac
    say "downloading $want"
    if ! (cd "$DEBS" && apt-get "${opts[@]}" download -q -o APT::Sandbox::User=root "$want" >&2); then
        [[ $SER == 6.18 ]] || die "apt-get download $want failed"
        local v=${PIN:-$POOL_6_18_VERSION} uri keyring
        read -r uri keyring <<<"$(debian_uri)"
        local file="${SRCPKG}_${v}_all.deb"
        local url="$uri/pool/main/l/linux/$file"
        local hash=()
        [[ $v != "$POOL_6_18_VERSION" ]] || hash=("SHA256:$POOL_6_18_SHA256")
        say "$SRCPKG is not in the index; fetching $url"
        /usr/lib/apt/apt-helper download-file "$url" "$DEBS/$file" "${hash[@]}" >&2 ||
            die "download of $url failed"
    fi
    deb=$(cached_deb)
    [[ -n $deb ]] || die "download of $want produced no .deb in $DEBS"
    echo "$deb"
}

ensure_source() {
    local deb=$1 ver
    ver=$(dpkg-deb -f "$deb" Version)
    if [[ -f $SRC/.complete && $(cat "$BUILD/source-version" 2>/dev/null) == "$ver" ]]; then
        return
    fi
    say "unpacking $(basename "$deb") into $SRC"
    rm -rf "$SRC" "$BUILD/src.tmp" "$BUILD/applied.patch" "$BUILD/config-id"
    mkdir -p "$BUILD/src.tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$SRCPKG.tar.xz" |
        tar -xJ -C "$BUILD/src.tmp" --strip-components=1
    [[ -f $BUILD/src.tmp/Makefile ]] || die "$(basename "$deb") holds no kernel source tree"
    touch "$BUILD/src.tmp/.complete"
    mv "$BUILD/src.tmp" "$SRC"
    printf '%s\n' "$ver" >"$BUILD/source-version"
}

DEB=$(fetch_deb)
SRCVER=$(dpkg-deb -f "$DEB" Version)
ensure_source "$DEB"
# KERNEL_BUILD_SOURCE_ONLY=1: only fetch and unpack the tree (for reading it).
if [[ ${KERNEL_BUILD_SOURCE_ONLY:-0} == 1 ]]; then
    echo "KERNEL-SOURCE $SRC"
    exit 0
fi

sha() { sha256sum | cut -c1-16; }
CONFIG_ID=$({ fragment; echo "$SRCVER"; } | sha)
if [[ -n $PATCH ]]; then PATCH_ID=$(sha <"$PATCH"); else PATCH_ID=none; fi
BUILD_ID="$CONFIG_ID-$PATCH_ID"

if [[ -f $OUT/.complete ]] && grep -qx "build_id=$BUILD_ID" "$OUT/version" 2>/dev/null; then
    say "$KNAME is up to date ($OUT)"
    echo "KERNEL-BUILD-INSTALLED $KNAME"
    exit 0
fi

# ------------------------------------------------------------------ patch
cd "$SRC"
if [[ -f $BUILD/applied.patch ]] && ! cmp -s "$BUILD/applied.patch" "${PATCH:-/dev/null}"; then
    say "reverting $(cat "$BUILD/applied.name" 2>/dev/null || echo 'the previous patch')"
    patch -R -p1 -s -f --no-backup-if-mismatch <"$BUILD/applied.patch" >"$BUILD/revert.log" 2>&1 ||
        die "could not revert the patch applied to $SRC (see $BUILD/revert.log); remove $BUILD and rerun"
    rm -f "$BUILD/applied.patch" "$BUILD/applied.name"
fi
if [[ -n $PATCH && ! -f $BUILD/applied.patch ]]; then
    if ! patch -p1 -f --dry-run --no-backup-if-mismatch <"$PATCH" >"$BUILD/patch.log" 2>&1; then
        sed 's/^/    /' "$BUILD/patch.log" >&2
        die "$PATCH does not apply to $SRCPKG $SRCVER with patch -p1 (nothing was changed)"
    fi
    say "applying $(basename "$PATCH")"
    patch -p1 -s -f --no-backup-if-mismatch <"$PATCH" >"$BUILD/patch.log" 2>&1 ||
        die "$PATCH failed to apply after a clean dry run (see $BUILD/patch.log); remove $BUILD and rerun"
    cp "$PATCH" "$BUILD/applied.patch.tmp" && mv "$BUILD/applied.patch.tmp" "$BUILD/applied.patch"
    printf '%s (%s)\n' "$NAME" "$PATCH" >"$BUILD/applied.name"
fi

# ------------------------------------------------------------------ config
JOBS=${KERNEL_BUILD_JOBS:-$(nproc)}
export KBUILD_BUILD_USER=ptediff KBUILD_BUILD_HOST=kernel-build
if [[ ! -f .config || $(cat "$BUILD/config-id" 2>/dev/null) != "$CONFIG_ID" ]]; then
    say "configuring: tinyconfig + the guest's options"
    rm -f "$BUILD/config-id"
    fragment >"$BUILD/fragment.config"
    {
        make -s tinyconfig
        scripts/kconfig/merge_config.sh -m .config "$BUILD/fragment.config"
        make -s olddefconfig
    } >"$BUILD/config.log" 2>&1 || { tail -n 20 "$BUILD/config.log" >&2; die "configuration failed (see $BUILD/config.log)"; }
    lost=()
    while IFS= read -r opt; do
        grep -qx "$opt" .config || lost+=("${opt%=*}")
    done <"$BUILD/fragment.config"
    [[ ${#lost[@]} -eq 0 ]] || die "$SRCPKG $SRCVER: options not set after olddefconfig (a dependency is missing): ${lost[*]}"
    printf '%s\n' "$CONFIG_ID" >"$BUILD/config-id"
fi

# ------------------------------------------------------------------ build
say "building $KNAME (make -j$JOBS bzImage; log: $BUILD/build.log)"
start=$(date +%s.%N)
if ! make -j"$JOBS" bzImage >"$BUILD/build.log" 2>&1; then
    grep -E 'error|Error' "$BUILD/build.log" | head -n 20 >&2 || true
    tail -n 10 "$BUILD/build.log" >&2
    die "build of $KNAME failed (see $BUILD/build.log)"
fi
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
KREL=$(make -s kernelrelease)

# ------------------------------------------------------------------ install
TMP="$KC/kernels/.$KNAME.tmp"
rm -rf "$TMP"
mkdir -p "$TMP/modules"
cp arch/x86/boot/bzImage "$TMP/vmlinuz"
cp .config "$TMP/config"
: >"$TMP/modules/load-order"
{
    echo "uname_r=$KREL"
    echo "package=$SRCPKG (tinyconfig, scripts/kernel-build.sh)"
    echo "package_version=$SRCVER+$NAME"
    echo "patch=${PATCH:-none}"
    echo "build_id=$BUILD_ID"
} >"$TMP/version"
touch "$TMP/.complete"
rm -rf "$OUT"
mv "$TMP" "$OUT"
say "$KNAME built in ${secs}s (uname -r $KREL), installed in $OUT"
echo "KERNEL-BUILD-TIME $KNAME ${secs}s"
echo "KERNEL-BUILD-INSTALLED $KNAME"
