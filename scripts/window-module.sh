#!/usr/bin/env bash
# Build the ptediff_window test module (scripts/window-module/ptediff_window.c)
# against the headers of a Debian kernel fetched by kernel-check-setup.sh, and
# add it to that kernel's folder, so that kernel-check-run.sh loads it at boot.
#
# usage: scripts/window-module.sh KERNEL...   (v6.1.y, v6.12, v6.18, v7.3)
#
# The module is idle until a test writes its parameters:
#   /sys/module/ptediff_window/parameters/tgid      thread group to hold (default -1)
#   /sys/module/ptediff_window/parameters/delay_ms  hold time per restore (default 0)
#   /sys/module/ptediff_window/parameters/holds     restores held so far
# Kernels built by kernel-build.sh with patches/debug-migration-window offer the
# same files built in.
#
# Headers: linux-headers-<uname -r>, its -common package and its linux-kbuild
# (bookworm for 6.1.y and 6.12; trixie-backports through the private apt state of
# kernel-check-setup.sh, or the archive's pool when the index no longer has
# them, for 6.18 and 7.3). Debian builds 6.18 and 7.3 with gcc-14 and ships
# their kbuild tools linked against trixie's glibc; on bookworm this script
# then compiles with the host gcc, drops the two gcc-14-only settings
# (CC_HAS_MIN_FUNCTION_ALIGNMENT, DEBUG_INFO_BTF_MODULES) from the headers'
# auto.conf and takes objtool and modpost from the profile's source tree built
# by kernel-build.sh (run `scripts/kernel-build.sh PROFILE` first).
# Idempotent: a kernel folder that already lists the module is skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC="$ROOT/target/kernel-check"
MODSRC="$ROOT/scripts/window-module"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'window-module: %s\n' "$*" >&2; }
die() { printf 'window-module: ERROR: %s\n' "$*" >&2; exit 2; }

[[ $# -ge 1 ]] || die "usage: $0 KERNEL... (v6.1.y, v6.12, v6.18, v7.3)"
# Arguments first: a bad name fails before anything is installed.
for name in "$@"; do
    case $name in v6.1.y | v6.12 | v6.18 | v7.3) ;;
    *) die "unknown kernel '$name' (Debian kernels: v6.1.y, v6.12, v6.18, v7.3; a built kernel has patches/debug-migration-window instead)" ;; esac
done

# shellcheck source=debian-apt.sh
. "$ROOT/scripts/debian-apt.sh"
# pahole: the BTF step of the 6.12+ headers' Makefile.modfinal.
require_commands make:make gcc:gcc pahole:pahole modinfo:kmod dpkg-deb:dpkg ldd:libc-bin sed:sed

# download PKG VERSION ARCH (all|amd64) into $DL, from apt or the pool
fetch() {
    local pkg=$1 ver=$2 arch=$3 series=$4
    local file="${pkg}_${ver}_${arch}.deb"
    [[ -f $DL/$file ]] && return 0
    local opts=()
    case $series in 6.18 | 7.*) papt_set_opts; opts=("${PAPT_OPTS[@]}") ;; esac
    say "downloading $pkg $ver"
    if ! (cd "$DL" && apt-get "${opts[@]}" download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2); then
        local uri keyring url
        read -r uri keyring <<<"$(debian_uri)"
        url="$uri/pool/main/l/linux/$file"
        say "$pkg is not in the index; fetching $url"
        /usr/lib/apt/apt-helper download-file "$url" "$DL/$file" >&2 || die "download of $url failed"
    fi
    [[ -f $DL/$file ]] || die "download of $pkg $ver produced no $file"
}

build_for() {
    local name=$1
    local K="$KC/kernels/$name"
    local series
    case $name in v6.1.y) series=6.1 ;; v6.12) series=6.12 ;; v6.18) series=6.18 ;; v7.3) series=7.3 ;;
    *) die "unknown kernel '$name' (Debian kernels: v6.1.y, v6.12, v6.18, v7.3; a built kernel has patches/debug-migration-window instead)" ;; esac
    [[ -f $K/.complete ]] || die "kernel $name is not set up: run scripts/kernel-check-setup.sh"
    if grep -qx 'ptediff_window.ko' "$K/modules/load-order" 2>/dev/null && [[ -f $K/modules/ptediff_window.ko ]]; then
        say "$name: ptediff_window.ko already there"
        return
    fi
    local uname ver
    uname=$(grep '^uname_r=' "$K/version" | cut -d= -f2)
    ver=$(grep '^package_version=' "$K/version" | cut -d= -f2)
    local W="$KC/window-module/$name"
    DL="$W/debs"
    rm -rf "$W/root" "$W/build"
    mkdir -p "$DL" "$W/root" "$W/build"
    fetch "linux-headers-$uname" "$ver" amd64 "$series"
    local hdeb="$DL/linux-headers-${uname}_${ver}_amd64.deb" dep common="" kbuild=""
    for dep in $(dpkg-deb -f "$hdeb" Depends | tr ',' '\n' | awk '{print $1}'); do
        case $dep in linux-headers-*-common) common=$dep ;; linux-kbuild-*) kbuild=$dep ;; esac
    done
    [[ -n $common && -n $kbuild ]] || die "$hdeb: no -common/linux-kbuild dependency"
    fetch "$common" "$ver" all "$series"
    fetch "$kbuild" "$ver" amd64 "$series"
    local d
    for d in "$hdeb" "$DL/${common}_${ver}_all.deb" "$DL/${kbuild}_${ver}_amd64.deb"; do dpkg -x "$d" "$W/root"; done
    local H="$W/root/usr/src/linux-headers-$uname"
    local KB="$W/root/usr/lib/$kbuild"
    [[ -d $H && -d $KB ]] || die "$name: unexpected layout of the header packages"
    # The packages expect to live under /usr/src.
    sed -i "s#/usr/src/#$W/root/usr/src/#g" "$W"/root/usr/src/*/Makefile
    local make_args=()
    local cc
    cc=$(sed -n 's/^CC = .*\$(CROSS_COMPILE)\(gcc-[0-9]*\)$/\1/p' "$H/.kernelvariables")
    if [[ -n $cc ]] && ! command -v "x86_64-linux-gnu-$cc" >/dev/null; then
        say "$name: built with $cc, which this machine lacks: compiling with the host gcc"
        make_args+=(CC=gcc)
        sed -i -e '/^CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=/d' -e '/^CONFIG_DEBUG_INFO_BTF_MODULES=/d' \
            "$H/include/config/auto.conf"
    fi
    # Host tools that cannot run here (a newer glibc) come from kernel-build's tree.
    local f base out tree="$KC/build/$name/src" repl
    while IFS= read -r f; do
        [[ $(head -c 4 "$f" | tail -c 3) == ELF ]] || continue
        out=$(ldd "$f" 2>&1 || true)
        [[ $out == *"not found"* ]] || continue
        base=$(basename "$f")
        case $base in
        objtool.real-x86) repl=$tree/tools/objtool/objtool ;;
        modpost.real-lsb-64 | modpost) repl=$tree/scripts/mod/modpost ;;
        resolve_btfids | *.real-lsb-32 | *.real-msb-* | objtool.real-powerpc) continue ;;
        *) die "$name: $f cannot run on this machine (glibc) and has no replacement" ;;
        esac
        [[ -x $repl ]] || die "$name: $base from $kbuild needs a newer glibc; build $tree first: scripts/kernel-build.sh $name"
        say "$name: using $repl for $base"
        cp "$repl" "$f"
    done < <(find "$KB" -type f -executable)
    cp "$MODSRC/ptediff_window.c" "$MODSRC/Kbuild" "$W/build/"
    make -C "$H" M="$W/build" "${make_args[@]}" modules >"$W/build.log" 2>&1 ||
        { tail -n 20 "$W/build.log" >&2; die "$name: module build failed (see $W/build.log)"; }
    local vm
    vm=$(modinfo -F vermagic "$W/build/ptediff_window.ko")
    [[ $vm == "$uname "* ]] || die "$name: module vermagic '$vm' does not match $uname"
    cp "$W/build/ptediff_window.ko" "$K/modules/ptediff_window.ko"
    grep -qx 'ptediff_window.ko' "$K/modules/load-order" || echo ptediff_window.ko >>"$K/modules/load-order"
    say "$name: ptediff_window.ko ($vm) added to $K/modules"
}

for n in "$@"; do build_for "$n"; done
