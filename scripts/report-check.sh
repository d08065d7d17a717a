#!/usr/bin/env bash
# Check the reports' patches and selftests the way a maintainer would, and run
# the selftests on real kernels; `ptediff report --all --record` then takes
# what this measured into reports/measured.json.
#
# usage: scripts/report-check.sh [REPORT...]    (default: every folder of reports/)
#
# For every report folder reports/R and every tree P it has patches for
# (reports/R/patches/P/*.patch):
#   1. scripts/kselftest-check.sh P: the series applies to Debian's source of
#      P, the selftest builds statically with the tree's own Makefile and UAPI
#      headers, checkpatch.pl --strict of that tree (its FILE_PATH_CHANGES
#      warning for a new file is waived where MAINTAINERS already covers it:
#      tools/testing/selftests/mm/ is listed under MEMORY MANAGEMENT) and so is
#      UNKNOWN_COMMIT_ID (no git history in a Debian source tree);
#      -> target/kselftest/R/P/{checkpatch-*.txt,build-*.ok|failed,source-version}
#   2. the built selftests on P's Debian kernel and on the kernels kernel-test
#      built from P's source (target/kernel-check/kernels/P+*), one QEMU boot
#      per kernel with every report's selftests (scripts/kernel-check-run.sh);
#      -> target/kselftest/R/runs/KERNEL/{<test>.out,<test>.rc,uname}
# REPORT_CHECK_BOOTS=0: step 1 only (the runs of an earlier check are kept).
# Exit 0 when every series applied, built and passed checkpatch, 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/target/kselftest"
say() { printf 'report-check: %s\n' "$*"; }
die() { printf 'report-check: ERROR: %s\n' "$*" >&2; exit 2; }

cd "$ROOT"
if [[ $# -gt 0 ]]; then REPORTS=("$@"); else
    REPORTS=()
    for d in reports/*/; do REPORTS+=("$(basename "$d")"); done
fi
status=0
mkdir -p "$OUT"
rm -f "$OUT/bins.list"
# 1. Every report's series on every tree it has patches for.
for R in "${REPORTS[@]}"; do
    [[ -f reports/$R/mail.txt ]] || die "reports/$R: no such report (ptediff report --all --out reports)"
    rm -rf "${OUT:?}/$R/check"
    [[ ${REPORT_CHECK_BOOTS:-1} == 0 ]] || rm -rf "${OUT:?}/$R/runs"
    for pdir in reports/"$R"/patches/*/; do
        [[ -d $pdir ]] || continue
        P=$(basename "$pdir")
        mapfile -t series < <(ls "$pdir"*.patch | sort)
        work="$OUT/$R/check"
        dest="$OUT/$R/$P"
        rm -rf "$dest"
        mkdir -p "$dest" "$work"
        say "$R: $P: kselftest-check.sh on ${#series[@]} patch(es)"
        # Not applicable here: UNKNOWN_COMMIT_ID (the Debian source has no git
        # history to look a Fixes: commit up in; the ids were checked against
        # the mailing-list archives) and, for a new file under
        # tools/testing/selftests/mm, which MAINTAINERS already lists,
        # FILE_PATH_CHANGES.
        if KSELFTEST_CHECK_IGNORE=UNKNOWN_COMMIT_ID KSELFTEST_CHECK_WAIVE_MAINTAINERS=1 \
            bash scripts/kselftest-check.sh "$P" "$work" "${series[@]}"; then :; else
            say "$R: $P: kselftest-check.sh failed (see $work/$P/summary.txt)"
            status=1
        fi
        cp "$ROOT/target/kernel-check/build/$P/source-version" "$dest/source-version" 2>/dev/null || true
        cp "$work/$P"/checkpatch-*.txt "$dest/" 2>/dev/null || true
        bins=()
        for c in reports/"$R"/selftest/*.c; do
            t=$(basename "$c" .c)
            if [[ -x $work/$P/bin/$t ]]; then
                touch "$dest/build-$t.ok"
                bins+=("$work/$P/bin/$t")
            else
                touch "$dest/build-$t.failed"
                status=1
            fi
        done
        for b in "${bins[@]}"; do echo "$R $P $b" >>"$OUT/bins.list"; done
    done
done
# 2. One boot per kernel with every selftest built for its tree.
[[ ${REPORT_CHECK_BOOTS:-1} == 0 ]] && { say "REPORT_CHECK_BOOTS=0: no boots"; exit $status; }
declare -A seen=()
for P in v6.1.y v6.12 v6.18 v7.3; do
    mapfile -t mine < <(awk -v p="$P" '$2 == p' "$OUT/bins.list" 2>/dev/null)
    [[ ${#mine[@]} -gt 0 ]] || continue
    bins=()
    for l in "${mine[@]}"; do bins+=("${l##* }"); done
    for k in "$ROOT/target/kernel-check/kernels/$P" "$ROOT/target/kernel-check/kernels/$P"+*; do
        [[ -f $k/.complete ]] || continue
        K=$(basename "$k")
        [[ -z ${seen[$K]:-} ]] || continue
        seen[$K]=1
        boot="$OUT/boots/$K"
        rm -rf "$boot"
        mkdir -p "$boot"
        say "$K: ${#bins[@]} selftest(s)"
        KERNEL_CHECK_EXTRA_BINS=$(IFS=:; echo "${bins[*]}") \
            bash scripts/kernel-check-run.sh "$K" "$boot/console.log" >"$boot/run.log" 2>&1 || true
        tr -d '\r' <"$boot/console.log" >"$boot/console.txt"
        for l in "${mine[@]}"; do
            read -r R _ b <<<"$l"
            t=$(basename "$b")
            run="$OUT/$R/runs/$K"
            mkdir -p "$run"
            sed -n 's/^PTEDIFF-KERNEL //p' "$boot/console.txt" | head -1 >"$run/uname"
            rm -f "$run/$t.out" "$run/$t.rc"
            awk -v t="$t" '$0 == "PTEDIFF-START " t { on = 1; next }
                on && $1 == "PTEDIFF-EXIT" && $2 == t { print $3 > "/dev/stderr"; exit }
                on { print }' "$boot/console.txt" >"$run/$t.out" 2>"$run/$t.rc"
            if [[ ! -s $run/$t.rc ]]; then
                rm -f "$run/$t.rc"
                say "$K: $t did not finish (see $boot/console.txt)"
                status=1
                continue
            fi
            say "$K: $t exit $(cat "$run/$t.rc"): $(grep -m1 -E '^(ok|not ok) ' "$run/$t.out" || echo '?')"
        done
    done
done
exit $status
