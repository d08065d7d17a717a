#!/usr/bin/env bash
# Install the host tools for the QEMU kernel checks and fetch four Debian
# kernels (6.1.y, 6.12.y, 6.18.y, 7.3) without installing them.
#
# Result, under target/kernel-check/kernels/<name>/ (<name> = v6.1.y, v6.12,
# v6.18, v7.3; each is the model profile of the same name):
#   vmlinuz              the kernel image
#   config               the kernel's build config
#   modules/*.ko         decompressed modules needed for zram (with deps)
#   modules/load-order   module file names, dependencies first
#   modules/ptediff_window.ko  (v6.1.y, v6.12) the race reproducers' window holder
#   version              uname -r string, package name and package version
#
# Idempotent: installed packages and already unpacked kernels are skipped.
# Overrides pick a package: KERNEL_PKG_V6_1, KERNEL_PKG_V6_12, KERNEL_PKG_V6_18
# (a linux-image package) and KERNEL_PKG_V7_3 (a linux-binary package; its
# linux-modules and linux-base packages of the same version come with it).
# KERNEL_CHECK_KERNELS="v6.1.y v6.12" limits what is fetched.
#
# 6.1.y and 6.12.y come from the machine's bookworm sources; 6.18.y and 7.x from
# trixie-backports, through a private apt state under target/kernel-check/apt
# (derived from the machine's Debian entry: same URI and keyring), so the
# system's own apt sources never gain a newer suite.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC="$ROOT/target/kernel-check"
KERNELS="$KC/kernels"
DEBS="$KC/debs"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'kernel-check-setup: %s\n' "$*"; }
die() { printf 'kernel-check-setup: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get install, apt-get download)"

# shellcheck source=debian-apt.sh
. "$ROOT/scripts/debian-apt.sh"
BPO="${CODENAME}-backports"

# Modules (by module name) that the guest's /init loads; deps are added.
ZRAM_MODULES=(zram)

# ---------------------------------------------------------------- apt source
ensure_backports_source() {
    local f="/etc/apt/sources.list.d/${BPO}.sources"
    if grep -rqsE "(^|[[:space:]])${BPO}([[:space:]]|$)" \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
        say "apt source for ${BPO} already present"
        return 1
    fi
    # Derive it from the main Debian entry (deb822 first, then one-line style).
    local stanza=""
    local srcfile
    for srcfile in /etc/apt/sources.list.d/*.sources; do
        [[ -f $srcfile ]] || continue
        stanza=$(awk -v cn="$CODENAME" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; suites = ""; comps = ""; signed = ""; types = ""
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[[:space:]]*#/) continue
                    if (line ~ /^URIs:/)      { sub(/^URIs:[[:space:]]*/, "", line); uris = line }
                    if (line ~ /^Suites:/)    { sub(/^Suites:[[:space:]]*/, "", line); suites = line }
                    if (line ~ /^Components:/){ sub(/^Components:[[:space:]]*/, "", line); comps = line }
                    if (line ~ /^Signed-By:/) { sub(/^Signed-By:[[:space:]]*/, "", line); signed = line }
                    if (line ~ /^Types:/)     { sub(/^Types:[[:space:]]*/, "", line); types = line }
                }
                n = split(suites, s, /[[:space:]]+/)
                hit = 0
                for (j = 1; j <= n; j++) if (s[j] == cn) hit = 1
                if (hit && uris != "" && types ~ /(^|[[:space:]])deb([[:space:]]|$)/) {
                    printf "Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: %s\n", uris, cn, comps
                    if (signed != "") printf "Signed-By: %s\n", signed
                    exit
                }
            }' "$srcfile")
        [[ -n $stanza ]] && break
    done
    if [[ -z $stanza && -f /etc/apt/sources.list ]]; then
        local line
        line=$(grep -E "^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+${CODENAME}[[:space:]]" \
            /etc/apt/sources.list | head -n1 || true)
        if [[ -n $line ]]; then
            # shellcheck disable=SC2001
            printf '%s\n' "$(sed -E "s/([[:space:]])${CODENAME}([[:space:]])/\1${BPO}\2/" <<<"$line")" \
                >"/etc/apt/sources.list.d/${BPO}.list"
            say "created /etc/apt/sources.list.d/${BPO}.list from /etc/apt/sources.list"
            return 0
        fi
    fi
    [[ -n $stanza ]] || die "no main Debian '${CODENAME}' apt source found to derive ${BPO} from"
    printf '%s\n' "$stanza" >"$f"
    say "created $f:"
    sed 's/^/    /' "$f"
    return 0
}

APT_UPDATED=0
apt_update_once() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        say "apt-get update"
        apt_get update -qq
        APT_UPDATED=1
    fi
}

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# ------------------------------------------------------------- what is needed
# pahole: Debian's 6.12+ module headers run the BTF step of Makefile.modfinal
# (scripts/window-module.sh), which stops with "pahole: not found" without it.
HOST_PKGS=(busybox-static cpio xz-utils zstd kmod gzip gcc libc6-dev make pahole)
missing=()
for p in "${HOST_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
need_qemu=1
if installed qemu-system-x86 && command -v qemu-system-x86_64 >/dev/null; then need_qemu=0; fi
need_kernels=0
ALL_KERNELS=(v6.1.y v6.12 v6.18 v7.3)
read -r -a WANT_KERNELS <<<"${KERNEL_CHECK_KERNELS:-${ALL_KERNELS[*]}}"
for n in "${WANT_KERNELS[@]}"; do
    case $n in v6.1.y | v6.12 | v6.18 | v7.3) ;; *) die "unknown kernel name $n (known: ${ALL_KERNELS[*]})" ;; esac
    [[ -f $KERNELS/$n/.complete ]] || need_kernels=1
done

if ensure_backports_source; then APT_UPDATED=0; fi
if [[ ${#missing[@]} -gt 0 || $need_qemu -eq 1 || $need_kernels -eq 1 ]]; then
    apt_update_once
fi

# ----------------------------------------------------------------- packages
if [[ $need_qemu -eq 1 ]]; then
    say "installing qemu-system-x86 from ${BPO}"
    apt_get install -y -q -t "$BPO" qemu-system-x86
else
    say "qemu-system-x86 already installed ($(dpkg-query -W -f='${Version}' qemu-system-x86))"
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${missing[*]}"
    apt_get install -y -q "${missing[@]}"
else
    say "host packages already installed: ${HOST_PKGS[*]}"
fi

# ------------------------------------------------------------------ kernels
# 6.18.y and 7.x come through a private apt state for trixie-backports
# (scripts/debian-apt.sh), a suite the system itself never sees.

# newest package whose name matches an extended regex (sorted by version in name)
newest_pkg() { # regex [apt options...]
    local re=$1
    shift
    apt-cache "$@" search --names-only "$re" | awk '{print $1}' | grep -E "$re" | sort -V | tail -n1
}

# The packages of a kernel, space-separated (the first one names it).
pick_pkgs() {
    local name=$1
    local p
    case $name in
    v6.1.y)
        if [[ -n ${KERNEL_PKG_V6_1:-} ]]; then echo "$KERNEL_PKG_V6_1"; return; fi
        p=$(newest_pkg '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$')
        [[ -n $p ]] || p=$(newest_pkg '^linux-image-6\.1\.0-[0-9]+-amd64$')
        echo "$p"
        ;;
    v6.12)
        if [[ -n ${KERNEL_PKG_V6_12:-} ]]; then echo "$KERNEL_PKG_V6_12"; return; fi
        # 6.12 came to bookworm first as +bpo (backports), later as +deb12
        # (bookworm / bookworm-security); take the newest of either.
        p=$(newest_pkg '^linux-image-6\.12\.[0-9]+\+(bpo|deb[0-9.]+)-amd64-unsigned$')
        [[ -n $p ]] || p=$(newest_pkg '^linux-image-6\.12\.[0-9]+\+(bpo|deb[0-9.]+)-amd64$')
        echo "$p"
        ;;
    v6.18)
        if [[ -n ${KERNEL_PKG_V6_18:-} ]]; then echo "$KERNEL_PKG_V6_18"; return; fi
        # trixie-backports ships 6.18.y signed, in one package.
        newest_pkg '^linux-image-6\.18\.[0-9]+\+(bpo|deb[0-9.]+)-amd64$' "${PAPT_OPTS[@]}"
        ;;
    v7.3)
        # Newer Debian packaging splits the kernel: linux-binary (vmlinuz),
        # linux-modules, linux-base (config, System.map).
        if [[ -n ${KERNEL_PKG_V7_3:-} ]]; then
            p=$KERNEL_PKG_V7_3
        else
            p=$(newest_pkg '^linux-binary-7\.3\.[0-9]+\+(bpo|deb[0-9.]+)-amd64$' "${PAPT_OPTS[@]}")
        fi
        [[ -n $p ]] || return 0
        echo "$p ${p/linux-binary-/linux-modules-} ${p/linux-binary-/linux-base-}"
        ;;
    *) die "unknown kernel name $name" ;;
    esac
}

decompress_ko() { # src dst
    case $1 in
    *.ko.xz) xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -qdc "$1" >"$2" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *.ko) cp "$1" "$2" ;;
    *) die "not a module: $1" ;;
    esac
}

fetch_kernel() {
    local name=$1
    local out="$KERNELS/$name"
    if [[ -f $out/.complete ]]; then
        say "$name: already present ($(grep '^package=' "$out/version" | cut -d= -f2) $(grep '^package_version=' "$out/version" | cut -d= -f2)), skipping"
        return
    fi
    local opts=()
    case $name in v6.18 | v7.3) private_apt_init; opts=("${PAPT_OPTS[@]}") ;; esac
    local pkgs
    read -r -a pkgs <<<"$(pick_pkgs "$name")"
    [[ ${#pkgs[@]} -gt 0 && -n ${pkgs[0]} ]] || die "$name: no matching kernel package found (apt-cache search)"
    local tmp="$KERNELS/.$name.tmp"
    rm -rf "$tmp" "$out"
    mkdir -p "$tmp/x" "$out/modules" "$DEBS"
    local pkg deb pkgver=""
    for pkg in "${pkgs[@]}"; do
        say "$name: downloading $pkg"
        rm -f "$DEBS/${pkg}_"*.deb
        (cd "$DEBS" && apt-get "${opts[@]}" download -q -o APT::Sandbox::User=root "$pkg")
        deb=$(ls "$DEBS/${pkg}_"*.deb | head -n1)
        [[ -f $deb ]] || die "$name: download of $pkg produced no .deb"
        [[ -n $pkgver ]] || pkgver=$(dpkg-deb -f "$deb" Version)
        say "$name: unpacking $(basename "$deb")"
        dpkg -x "$deb" "$tmp/x"
        rm -f "$deb"
    done
    # Files: /boot (6.1 to 6.18) or /usr/lib/modules/<ver> (7.x); modules under
    # /lib/modules or /usr/lib/modules.
    local mroot kver
    for mroot in "$tmp/x/lib/modules" "$tmp/x/usr/lib/modules"; do
        [[ -d $mroot ]] && kver=$(ls "$mroot" | head -n1) && [[ -n $kver ]] && break
    done
    [[ -n ${kver:-} ]] || die "$name: no lib/modules/<version> in ${pkgs[*]}"
    local f
    for f in "$tmp/x/boot/vmlinuz-$kver" "$mroot/$kver/vmlinuz"; do [[ -f $f ]] && cp "$f" "$out/vmlinuz" && break; done
    for f in "$tmp/x/boot/config-$kver" "$mroot/$kver/config"; do [[ -f $f ]] && cp "$f" "$out/config" && break; done
    [[ -f $out/vmlinuz ]] || die "$name: no vmlinuz in ${pkgs[*]}"
    [[ -f $out/config ]] || die "$name: no kernel config in ${pkgs[*]}"

    # module name -> path (name normalised: '-' -> '_', no suffix)
    declare -A modpath=()
    local m
    while IFS= read -r f; do
        m=$(basename "$f")
        m=${m%%.ko*}
        m=${m//-/_}
        modpath[$m]=$f
    done < <(find "$mroot/$kver/kernel" -name '*.ko*')

    declare -A seen=()
    local order=()
    resolve() {
        local mod=${1//-/_}
        [[ -n ${seen[$mod]:-} ]] && return 0
        seen[$mod]=1
        local src=${modpath[$mod]:-}
        [[ -n $src ]] || die "$name: module $mod not found in ${pkgs[*]} (built in?)"
        decompress_ko "$src" "$out/modules/$mod.ko"
        local deps d
        deps=$(modinfo -F depends "$out/modules/$mod.ko")
        for d in ${deps//,/ }; do resolve "$d"; done
        order+=("$mod.ko")
    }
    for m in "${ZRAM_MODULES[@]}"; do
        if grep -qE "^CONFIG_${m^^}=y" "$out/config"; then
            say "$name: $m is built in"
            continue
        fi
        resolve "$m"
    done
    printf '%s\n' "${order[@]}" >"$out/modules/load-order"
    {
        echo "uname_r=$kver"
        echo "package=${pkgs[0]}"
        echo "package_version=$pkgver"
    } >"$out/version"
    rm -rf "$tmp"
    touch "$out/.complete"
    say "$name: ${pkgs[*]} $pkgver (uname -r $kver), modules: ${order[*]:-none}"
}

mkdir -p "$KERNELS"
for n in "${WANT_KERNELS[@]}"; do fetch_kernel "$n"; done

# The ptediff_window test module, with which race reproducers hold their
# migration window open (timing only: idle until a reproducer names itself), for
# the kernels whose Debian header packages build it on this machine (v6.1.y,
# v6.12; about 7 s each). v6.18 and v7.3 need a kernel-build.sh tree for it;
# their race reproducers widen the window with filler pages instead (from v6.3
# migration unmaps a batch before it restores any: 100 % of rounds measured).
# KERNEL_CHECK_WINDOW_MODULE=0 skips it.
if [[ ${KERNEL_CHECK_WINDOW_MODULE:-1} != 0 ]]; then
    wm=()
    for n in "${WANT_KERNELS[@]}"; do case $n in v6.1.y | v6.12) wm+=("$n") ;; esac; done
    if ((${#wm[@]})); then bash "$ROOT/scripts/window-module.sh" "${wm[@]}"; fi
fi

say "done. kernels:"
for n in "${WANT_KERNELS[@]}"; do
    printf '    %-7s %s\n' "$n" "$(tr '\n' ' ' <"$KERNELS/$n/version")"
done
