#!/usr/bin/env bash
# Check a kselftest patch series against a kernel profile's Debian source, the
# way an mm maintainer would: does it apply, do the tests it adds build (with
# the tree's own selftests Makefile, against the tree's own UAPI headers), and
# is checkpatch happy with every patch?
#
# usage: scripts/kselftest-check.sh PROFILE OUTDIR PATCH...
#   PROFILE  v6.1.y, v6.12, v6.18 or v7.3: the Debian source that
#            scripts/kernel-build.sh unpacked in target/kernel-check/build/PROFILE/src
#   OUTDIR   scratch folder; everything goes to OUTDIR/PROFILE/ (recreated per run)
#   PATCH    git format-patch files (mbox header, message, ---, diff; -p1 paths),
#            applied in the order given
#
# Steps (one summary line each on stdout, also in OUTDIR/PROFILE/summary.txt):
#   copy        OUTDIR/PROFILE/tree: what the selftests and `make headers` need
#               (Makefile, tools/, scripts/, include/, arch/x86/{Makefile,
#               include/uapi,entry/syscalls,tools}/, lib/*.h and mm/*.h, which
#               mm tests include through -I $(top_srcdir): lib/test_hmm_uapi.h,
#               mm/gup_test.h, include/vdso/time64.h) plus every other file the
#               series modifies, extracted from the very source
#               package the tree was unpacked from (build/PROFILE/source-version,
#               target/kernel-check/debs/). The build tree itself is only read:
#               the patch kernel-build.sh may have applied to it
#               (build/PROFILE/applied.patch) is not in the copy, so the series
#               applies to the Debian source as released.
#   apply       the whole series, in order, with `patch -p1` in the copy (files
#               outside tools/ included, so a fix + selftest series is checked
#               whole); a patch that does not apply is bad input (exit 2).
#   headers     `make headers` in the copy (after the series, so a UAPI change of
#               the series is what its tests see): the copy's usr/include is where
#               lib.mk's KHDR_INCLUDES points, as on a real tree.
#   build       the tests the series adds to TEST_GEN_FILES / TEST_GEN_PROGS /
#               TEST_GEN_PROGS_EXTENDED of the tree's selftests folder (evaluated
#               by make before and after the series), and the listed tests whose
#               <name>.c the series changes, each with
#                 make -C tree/tools/testing/selftests/{mm|vm} USERLDFLAGS=-static V=1 <full path>
#               (lib.mk's own hook for extra link flags); each must come out
#               statically linked (`file`) and is copied to OUTDIR/PROFILE/bin/.
#               v6.1.y names the folder tools/testing/selftests/vm (renamed mm in
#               v6.3): a patch for the other name is bad input (exit 2).
#   checkpatch  `perl scripts/checkpatch.pl --strict PATCH` of the tree (run in
#               the tree, read-only) -> OUTDIR/PROFILE/checkpatch-<patch>.txt and
#               its "total:" line. For a patch that adds files, the MAINTAINERS
#               sections covering them are listed (scripts/get_maintainer.pl).
#
# Exit: 0 when every step passed: the series applied, `make headers` and every
# test built statically, and checkpatch reported no error and no warning (checks
# are listed but do not fail); 1 otherwise; 2 on bad input (usage, unknown
# profile, missing tree or source package, a file that is not a patch, a patch
# that does not apply, the wrong selftests folder name).
#
# Environment:
#   KSELFTEST_CHECK_JOBS   make -j for `make headers` (default: all cores)
#   KSELFTEST_CHECK_IGNORE=TYPE[,TYPE]  checkpatch --ignore (e.g. UNKNOWN_COMMIT_ID:
#       a Debian source tree has no git history to look a Fixes: commit up in)
#   KSELFTEST_CHECK_WAIVE_MAINTAINERS=1  do not count checkpatch's
#       FILE_PATH_CHANGES warning ("added, moved or deleted file(s), does
#       MAINTAINERS need updating?") when every file the patch adds is covered
#       by a MAINTAINERS section other than THE REST; it is still printed.
#
# Builds and checkpatch run under nice.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC="$ROOT/target/kernel-check"

say() { printf 'kselftest-check: %s\n' "$*" >&2; }
die() { printf 'kselftest-check: ERROR: %s\n' "$*" >&2; exit 2; }

usage="usage: $0 PROFILE OUTDIR PATCH...  (PROFILE: v6.1.y, v6.12, v6.18, v7.3)"
[[ $# -ge 3 ]] || die "$usage"
PROFILE=$1
OUTDIR=$2
shift 2

case $PROFILE in
v6.1.y) SER=6.1 ;;
v6.12) SER=6.12 ;;
v6.18) SER=6.18 ;;
v7.3) SER=7.3 ;;
*) die "unknown profile '$PROFILE' (kernel profiles with a Debian source: v6.1.y, v6.12, v6.18, v7.3)" ;;
esac
SRCPKG="linux-source-$SER"

# The tools, installed when missing (as scripts/kernel-build.sh does): command:package.
missing=()
for t in gcc:gcc make:make perl:perl patch:patch file:file xz:xz-utils dpkg-deb:dpkg tar:tar \
    flock:util-linux awk:gawk; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "tools missing (${missing[*]}): run as root or apt-get install them"
    printf 'kselftest-check: installing %s\n' "${missing[*]}" >&2
    apt-get update -qq >&2
    apt-get install -y -q "${missing[@]}" >&2
fi

# The selftests and kbuild read these: keep the caller's environment out.
unset MAKEFLAGS MAKELEVEL MFLAGS MAKEOVERRIDES O KBUILD_OUTPUT OUTPUT KHDR_INCLUDES \
    ARCH SRCARCH CROSS_COMPILE LLVM CC CFLAGS LDFLAGS LDLIBS CPPFLAGS EXTRA_CFLAGS \
    USERCFLAGS USERLDFLAGS INSTALL_HDR_PATH KBUILD_EXTMOD 2>/dev/null || true
export LC_ALL=C

# ------------------------------------------------------------------ the tree
BUILD="$KC/build/$PROFILE"
SRC="$BUILD/src"
[[ -f $SRC/.complete && -f $SRC/scripts/checkpatch.pl && -f $BUILD/source-version ]] ||
    die "no unpacked $PROFILE tree in $SRC (run: KERNEL_BUILD_SOURCE_ONLY=1 scripts/kernel-build.sh $PROFILE)"
SRCVER=$(cat "$BUILD/source-version")
DEB="$KC/debs/${SRCPKG}_${SRCVER}_all.deb"
[[ -f $DEB ]] ||
    die "$DEB (the package $SRC was unpacked from) is missing (run: KERNEL_BUILD_SOURCE_ONLY=1 scripts/kernel-build.sh $PROFILE)"
if [[ -d $SRC/tools/testing/selftests/mm ]]; then SDNAME=mm; else SDNAME=vm; fi
SD="tools/testing/selftests/$SDNAME"
[[ -d $SRC/$SD ]] || die "$SRC has neither tools/testing/selftests/mm nor tools/testing/selftests/vm"
OTHER=$([[ $SDNAME == mm ]] && echo vm || echo mm)

# ------------------------------------------------------------------ patches
PATCHES=()
PNAMES=()
declare -A seen=()
for p in "$@"; do
    [[ -f $p && -r $p ]] || die "$p: no such patch file (or not readable)"
    p=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
    grep -qE '^\+\+\+ ' "$p" && grep -qE '^--- ' "$p" ||
        die "$p:1: not a unified diff (no '--- '/'+++ ' file header)"
    n=$(basename "$p")
    n=${n%.patch}
    n=${n%.diff}
    # patches/<fix>/<profile>.patch is named by its folder, as in kernel-build.sh
    case $n in v6.1.y | v6.12 | v6.18 | v7.3) n=$(basename "$(dirname "$p")") ;; esac
    [[ $n =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "$p: patch name '$n' may only hold letters, digits, '.', '_', '+' and '-'"
    [[ -z ${seen[$n]:-} ]] || die "two patches named '$n' (checkpatch-$n.txt would be written twice)"
    seen[$n]=1
    PATCHES+=("$p")
    PNAMES+=("$n")
done

# The files of a patch, -p1, one "M|A|D path" line each: M a file it changes
# (or renames away), A a file it creates (or renames to), D one it deletes.
patch_files() {
    awk '
    function p1(s) {
        sub(/\t.*/, "", s)
        sub(/ +$/, "", s)
        if (s == "/dev/null") return s
        if (s ~ /^"/) { bad = s; return s }
        sub(/^[^\/]*\//, "", s)
        return s
    }
    /^--- / { old = p1(substr($0, 5)); oldnr = NR; next }
    /^\+\+\+ / && oldnr == NR - 1 { new = p1(substr($0, 5)); newnr = NR; next }
    /^@@ / && newnr == NR - 1 {
        if (old == "/dev/null") print "A", new
        else if (new == "/dev/null") print "D", old
        else { print "M", old; if (new != old) print "A", new }
        newnr = 0
        next
    }
    /^rename from / { print "M", substr($0, 13); next }
    /^rename to / { print "A", substr($0, 11); next }
    END { if (bad != "") { print "quoted file name " bad > "/dev/stderr"; exit 3 } }
    ' "$1"
}

declare -A CREATED=() TOUCHED=()
NEED=()      # files outside the extracted folders the series changes (from the package)
OUTSIDE=()   # files outside tools/ the series touches
for i in "${!PATCHES[@]}"; do
    p=${PATCHES[$i]}
    list=$(patch_files "$p") || die "$p: file names this script cannot handle"
    [[ -n $list ]] || die "$p: no file diff found (a '--- a/...', '+++ b/...', '@@' header)"
    while read -r kind f; do
        [[ $f != /* && $f != ../* && $f != */../* && -n $f ]] || die "$p: unsafe file name '$f'"
        case $f in
        tools/testing/selftests/$OTHER/*)
            die "$p touches $f, but $PROFILE (Debian $SRCVER) names the folder tools/testing/selftests/$SDNAME (mm since v6.3, vm before): write the patch against $SD/"
            ;;
        esac
        if [[ $kind == A ]]; then CREATED[$f]=1; fi
        if [[ -z ${TOUCHED[$f]:-} ]]; then
            TOUCHED[$f]=1
            [[ $f == tools/* ]] || OUTSIDE+=("$f")
            # a file of the Debian source the copy does not hold otherwise
            case $f in
            Makefile | tools/* | scripts/* | include/* | arch/x86/Makefile | arch/x86/include/uapi/* | \
                arch/x86/entry/syscalls/* | arch/x86/tools/* | lib/*.h | mm/*.h) ;;
            *) [[ $kind == A || -n ${CREATED[$f]:-} ]] || NEED+=("$f") ;;
            esac
        fi
    done <<<"$list"
done

# ------------------------------------------------------------------ output
OUTDIR=$(realpath -m -- "$OUTDIR")
case $OUTDIR/ in
"$(realpath -m -- "$KC/build")"/*) die "OUTDIR $OUTDIR is inside the kernel build trees ($KC/build): pick another folder" ;;
esac
mkdir -p "$OUTDIR"
W="$OUTDIR/$PROFILE"
if [[ -d $W && ! -f $W/.kselftest-check ]] && [[ -n $(ls -A "$W") ]]; then
    die "$W exists and was not made by this script: refusing to replace it (pick another OUTDIR)"
fi
mkdir -p "$W"
touch "$W/.kselftest-check"
exec 7>"$W/.lock"
flock -n 7 || die "another kselftest-check is running in $W"
rm -rf "$W/tree" "$W/tree.tmp" "$W/bin" "$W/logs"
rm -f "$W"/checkpatch-*.txt "$W/summary.txt"
mkdir -p "$W/bin" "$W/logs"
TREE="$W/tree"
SUMMARY="$W/summary.txt"
: >"$SUMMARY"
step() { printf 'kselftest-check: %s: %s\n' "$PROFILE" "$*" | tee -a "$SUMMARY"; }
detail() { printf '    %s\n' "$@" | tee -a "$SUMMARY"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
STATUS=0
FAILED=()
fail() {
    STATUS=1
    FAILED+=("$1")
}

# --------------------------------------------------------------- 1. copy
say "extracting the selftests' and make headers' files of $(basename "$DEB") into $TREE"
t0=$(now)
top="linux-source-$SER"
members=(Makefile tools scripts include arch/x86/Makefile arch/x86/include/uapi
    arch/x86/entry/syscalls arch/x86/tools 'lib/*.h' 'mm/*.h' "${NEED[@]}")
mkdir -p "$W/tree.tmp"
set +o pipefail
dpkg-deb --fsys-tarfile "$DEB" | tar -xO "./usr/src/$SRCPKG.tar.xz" | nice xz -dc |
    tar -x -C "$W/tree.tmp" --strip-components=1 --wildcards "${members[@]/#/$top/}" 2>"$W/logs/extract.log"
st=("${PIPESTATUS[@]}")
set -o pipefail
if [[ ${st[0]} -ne 0 || ${st[1]} -ne 0 || ${st[2]} -ne 0 ]]; then
    cat "$W/logs/extract.log" >&2
    die "could not read $DEB (dpkg-deb/tar/xz exit ${st[*]})"
fi
if [[ ${st[3]} -ne 0 ]]; then
    # only a file of the series that the package lacks is acceptable here;
    # `patch` then says what it cannot find
    if grep -v 'Not found in archive\|Exiting with failure status' "$W/logs/extract.log" >&2; then
        die "extracting from $DEB failed (see $W/logs/extract.log)"
    fi
fi
[[ -f $W/tree.tmp/Makefile && -d $W/tree.tmp/$SD ]] || die "$DEB holds no $SD"
mv "$W/tree.tmp" "$TREE"
nfiles=$(find "$TREE" -type f | wc -l)
size=$(du -sm "$TREE" | cut -f1)
step "copy: ok: $nfiles files ($size MB) of $SRCPKG $SRCVER (the package $SRC was unpacked from; its applied patch, if any, is not in the copy) -> $TREE ($(since "$t0")s)"
if [[ ${#NEED[@]} -gt 0 ]]; then detail "also extracted, as the series changes them: ${NEED[*]}"; fi

# The tests the tree's selftests Makefile lists (full output paths, one
# "VARIABLE path" line each), as make evaluates it.
cat >"$W/logs/list-tests.mk" <<'EOF'
# written by scripts/kselftest-check.sh: print the tests lib.mk builds
kselftest-check-list:
	@for t in $(TEST_GEN_FILES); do echo "TEST_GEN_FILES $$t"; done
	@for t in $(TEST_GEN_PROGS); do echo "TEST_GEN_PROGS $$t"; done
	@for t in $(TEST_GEN_PROGS_EXTENDED); do echo "TEST_GEN_PROGS_EXTENDED $$t"; done
EOF
list_tests() {
    nice make --no-print-directory -C "$TREE/$SD" -f Makefile -f "$W/logs/list-tests.mk" kselftest-check-list 2>>"$W/logs/list-tests.log" |
        grep -E '^TEST_GEN_(FILES|PROGS|PROGS_EXTENDED) /' || true
}
list_tests >"$W/logs/tests-before.txt"

# --------------------------------------------------------------- 2. apply
t0=$(now)
for i in "${!PATCHES[@]}"; do
    p=${PATCHES[$i]}
    log="$W/logs/apply-${PNAMES[$i]}.log"
    if ! patch -d "$TREE" -p1 -f --dry-run --no-backup-if-mismatch -i "$p" >"$log" 2>&1; then
        sed 's/^/    /' "$log" >&2
        step "apply: FAILED: $(basename "$p") does not apply to $SRCPKG $SRCVER$([[ $i -gt 0 ]] && echo " after the patches before it") (patch -p1; nothing of it was applied)"
        die "$p does not apply (see $log)"
    fi
    patch -d "$TREE" -p1 -f --no-backup-if-mismatch -i "$p" >"$log" 2>&1 ||
        die "$p failed to apply after a clean dry run (see $log)"
done
outside="none"
if [[ ${#OUTSIDE[@]} -gt 0 ]]; then outside="${OUTSIDE[*]}"; fi
step "apply: ok: ${#PATCHES[@]} patch(es) with patch -p1, the whole series in the copy (the real tree is not touched); files outside tools/: $outside ($(since "$t0")s)"

# --------------------------------------------------------------- 3. headers
JOBS=${KSELFTEST_CHECK_JOBS:-$(nproc)}
t0=$(now)
HEADERS_OK=1
if nice make -C "$TREE" -j"$JOBS" headers >"$W/logs/headers.log" 2>&1; then
    nh=$(find "$TREE/usr/include" -name '*.h' | wc -l)
    step "headers: ok: make headers in the copy -> $TREE/usr/include ($nh headers; KHDR_INCLUDES=-isystem <tree>/usr/include, lib.mk's default) ($(since "$t0")s)"
else
    HEADERS_OK=0
    fail headers
    step "headers: FAILED: make headers in the copy (see $W/logs/headers.log) ($(since "$t0")s)"
    grep -E 'error|Error' "$W/logs/headers.log" | head -n 10 | sed 's/^/    /' >&2 || true
fi

# --------------------------------------------------------------- 4. build
list_tests >"$W/logs/tests-after.txt"
TARGETS=()
declare -A VAR_OF=() WHY=()
while read -r var path; do
    [[ -n $path ]] || continue
    name=${path##*/}
    why=""
    if ! awk -v p="$path" '$2 == p { found = 1 } END { exit !found }' "$W/logs/tests-before.txt"; then
        why=new
    elif [[ -n ${TOUCHED[$SD/$name.c]:-} ]]; then
        why="changed $name.c"
    fi
    if [[ -n $why && -z ${WHY[$path]:-} ]]; then
        TARGETS+=("$path")
        VAR_OF[$path]=$var
        WHY[$path]=$why
    fi
done <"$W/logs/tests-after.txt"

if [[ ! -s $W/logs/tests-after.txt ]]; then
    fail build
    step "build: FAILED: make lists no test in $SD/Makefile after the series (see $W/logs/list-tests.log)"
    tail -n 5 "$W/logs/list-tests.log" | sed 's/^/    /' | tee -a "$SUMMARY"
elif [[ ${#TARGETS[@]} -eq 0 ]]; then
    fail build
    step "build: FAILED: the series adds no test to TEST_GEN_FILES/TEST_GEN_PROGS of $SD/Makefile (and changes no listed test's .c): nothing to build"
elif [[ $HEADERS_OK -eq 0 ]]; then
    fail build
    step "build: FAILED: not attempted without the UAPI headers (${#TARGETS[@]} test(s): ${TARGETS[*]##*/})"
else
    for path in "${TARGETS[@]}"; do
        name=${path##*/}
        log="$W/logs/build-$name.log"
        t0=$(now)
        rm -f "$path"
        if nice make -C "$TREE/$SD" USERLDFLAGS=-static V=1 "$path" >"$log" 2>&1 && [[ -x $path ]]; then
            kind=$(file -b "$path")
            nwarn=$(grep -c 'warning:' "$log" || true)
            if [[ $kind == *"statically linked"* ]] && ! ldd "$path" >/dev/null 2>&1; then
                cp "$path" "$W/bin/$name"
                step "build: ok: $name (${VAR_OF[$path]}, ${WHY[$path]}): statically linked, $nwarn compiler warning(s) -> $W/bin/$name ($(since "$t0")s)"
                if [[ $nwarn -gt 0 ]]; then grep 'warning:' "$log" | head -n 5 | sed 's/^/    /' | tee -a "$SUMMARY"; fi
            else
                fail "build of $name"
                step "build: FAILED: $name built but is not statically linked: $kind (see $log)"
            fi
        else
            fail "build of $name"
            step "build: FAILED: $name (${VAR_OF[$path]}, ${WHY[$path]}): make -C $SD USERLDFLAGS=-static $name failed (see $log)"
            grep -E 'error|Error|undefined reference' "$log" | head -n 10 | sed 's/^/    /' | tee -a "$SUMMARY" || true
            # a header of the kernel tree the copy does not hold is this script's gap, not the patch's
            while read -r h; do
                if [[ -e $SRC/$h && ! -e $TREE/$h ]]; then
                    detail "note: $h is in $SRC but not in the copy: a file list gap of scripts/kselftest-check.sh, not of the patch"
                fi
            done < <(sed -nE 's/.*fatal error: ([^:]+): No such file or directory.*/\1/p' "$log" | sort -u)
        fi
    done
fi

# --------------------------------------------------------------- 5. checkpatch
WAIVE=${KSELFTEST_CHECK_WAIVE_MAINTAINERS:-0}
for i in "${!PATCHES[@]}"; do
    p=${PATCHES[$i]}
    n=${PNAMES[$i]}
    out="$W/checkpatch-$n.txt"
    ignore=()
    [[ -z ${KSELFTEST_CHECK_IGNORE:-} ]] || ignore=(--ignore "$KSELFTEST_CHECK_IGNORE")
    (cd "$SRC" && nice perl scripts/checkpatch.pl --strict "${ignore[@]}" "$p") >"$out" 2>&1 || true
    total=$(grep -E '^total: [0-9]+ errors, [0-9]+ warnings, ' "$out" | tail -n1 || true)
    if [[ -z $total ]]; then
        fail "checkpatch of $n"
        step "checkpatch: FAILED: $n: checkpatch printed no 'total:' line (see $out)"
        continue
    fi
    read -r errs warns checks < <(sed -E 's/^total: ([0-9]+) errors, ([0-9]+) warnings, ([0-9]+) checks.*/\1 \2 \3/' <<<"$total")
    step "checkpatch: $n: $total"
    grep -E '^(ERROR|WARNING|CHECK): ' "$out" | sed 's/^/    /' | tee -a "$SUMMARY" || true
    # files the patch adds, and the MAINTAINERS sections that cover them
    added=()
    while read -r kind f; do
        if [[ $kind == A ]]; then added+=("$f"); fi
    done < <(patch_files "$p")
    covered_all=1
    for f in "${added[@]}"; do
        sections=$(printf -- '--- /dev/null\n+++ b/%s\n@@ -0,0 +1 @@\n+\n' "$f" |
            (cd "$SRC" && perl scripts/get_maintainer.pl --no-git --no-git-fallback --sections 2>/dev/null) |
            grep -vE '^([A-Z]:	|$)' | grep -vx 'THE REST' | awk '!seen[$0]++' | paste -sd, - | sed 's/,/, /g' || true)
        if [[ -n $sections ]]; then
            detail "new file $f: in MAINTAINERS under $sections"
        else
            covered_all=0
            detail "new file $f: only THE REST of MAINTAINERS covers it"
        fi
    done
    mwarn=$(grep -c '^WARNING: added, moved or deleted file(s), does MAINTAINERS need updating?' "$out" || true)
    if [[ $WAIVE == 1 && $mwarn -gt 0 && ${#added[@]} -gt 0 && $covered_all -eq 1 ]]; then
        warns=$((warns - mwarn))
        detail "FILE_PATH_CHANGES waived (KSELFTEST_CHECK_WAIVE_MAINTAINERS=1): every new file is in a MAINTAINERS section"
    fi
    if [[ $errs -gt 0 || $warns -gt 0 ]]; then fail "checkpatch of $n"; fi
done

# --------------------------------------------------------------- result
if [[ $STATUS -eq 0 ]]; then
    step "result: ok (applied, headers, ${#TARGETS[@]} static test(s) in $W/bin, checkpatch without errors and warnings)"
else
    step "result: FAIL: $(printf '%s; ' "${FAILED[@]}" | sed 's/; $//')"
fi
exit $STATUS
