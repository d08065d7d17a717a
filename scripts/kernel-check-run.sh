#!/usr/bin/env bash
# Boot one of the kernels fetched by kernel-check-setup.sh under QEMU (TCG,
# two NUMA nodes, zram swap) and run static test binaries in it.
#
# usage: scripts/kernel-check-run.sh KERNEL_NAME OUT_LOG BIN...
#   KERNEL_NAME  a directory under target/kernel-check/kernels/ (v6.1.y, v6.12)
#   OUT_LOG      file that receives the whole serial console output
#   BIN...       static executables; each runs as /bin-tests/<basename> from /
#
# Guest output protocol (one line each, on the serial console):
#   PTEDIFF-KERNEL <uname -r>
#   PTEDIFF-NUMA-NODES <n>
#   PTEDIFF-SETUP <what> ok|fail [detail]
#   PTEDIFF-EXIT <name> <status>      after each binary (timeout 20 s each;
#                                     143 = killed by the timeout, 128+N = signal N)
#   PTEDIFF-DONE
# Exit 0 iff the log has PTEDIFF-EXIT for the last binary.
#
# Environment: KERNEL_CHECK_TIMEOUT (whole QEMU run, default 300 s),
#              KERNEL_CHECK_TEST_TIMEOUT (per binary, default 20 s),
#              KERNEL_CHECK_EXTRA_BINS: more static executables, ':'-separated,
#                run after BIN... the same way (e.g. a kselftest built by
#                scripts/kselftest-check.sh, inside the boots of `ptediff
#                kernel-check` or `kernel-test`); BIN... may then be empty. When
#                it is set, every binary's output is framed: a line
#                "PTEDIFF-START <name>" before it, PTEDIFF-EXIT after it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC="$ROOT/target/kernel-check"

say() { printf 'kernel-check-run: %s\n' "$*" >&2; }
die() { printf 'kernel-check-run: ERROR: %s\n' "$*" >&2; exit 2; }

EXTRA_BINS=()
if [[ -n ${KERNEL_CHECK_EXTRA_BINS:-} ]]; then
    IFS=: read -r -a extra <<<"$KERNEL_CHECK_EXTRA_BINS"
    for b in "${extra[@]}"; do [[ -z $b ]] || EXTRA_BINS+=("$b"); done
fi
[[ $# -ge 3 || ($# -eq 2 && ${#EXTRA_BINS[@]} -gt 0) ]] || die "usage: $0 KERNEL_NAME OUT_LOG BIN..."
NAME=$1
OUT_LOG=$2
shift 2
BINS=("$@" "${EXTRA_BINS[@]}")

KDIR="$KC/kernels/$NAME"
[[ -f $KDIR/.complete && -f $KDIR/vmlinuz ]] ||
    die "kernel '$NAME' not found in $KC/kernels (run scripts/kernel-check-setup.sh)"
QEMU=$(command -v qemu-system-x86_64 || true)
[[ -n $QEMU ]] || die "qemu-system-x86_64 missing (run scripts/kernel-check-setup.sh)"
BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi
done
[[ -n $BUSYBOX ]] || die "static busybox missing (apt-get install busybox-static)"
command -v cpio >/dev/null || die "cpio missing (apt-get install cpio, or run scripts/kernel-check-setup.sh)"

TIMEOUT=${KERNEL_CHECK_TIMEOUT:-300}
TEST_TIMEOUT=${KERNEL_CHECK_TEST_TIMEOUT:-20}

declare -A seen_names=()
NAMES=()
for b in "${BINS[@]}"; do
    [[ -f $b && -x $b ]] || die "test binary '$b' not found or not executable"
    if ldd "$b" >/dev/null 2>&1; then die "test binary '$b' is not static"; fi
    n=$(basename "$b")
    [[ $n =~ ^[A-Za-z0-9._+-]+$ ]] || die "test binary name '$n' has unsupported characters"
    [[ -z ${seen_names[$n]:-} ]] || die "two test binaries named '$n'"
    seen_names[$n]=1
    NAMES+=("$n")
done
LAST=${NAMES[${#NAMES[@]}-1]}

# one QEMU at a time (2 cores): serialise concurrent invocations
mkdir -p "$KC"
exec 9>"$KC/run.lock"
flock 9

# ---------------------------------------------------------------- initramfs
WORK="$KC/run/$NAME"
STAGE="$WORK/root"
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,proc,sys,dev,tmp,mnt/ramfs,bin-tests,lib/ptediff-modules,etc,root}
cp "$BUSYBOX" "$STAGE/bin/busybox"
for a in sh ash mount umount mkdir echo cat ls grep timeout insmod mkswap swapon \
    poweroff uname sleep head tail wc tr date sync dmesg free; do
    ln -s busybox "$STAGE/bin/$a"
done
# /dev/console for the kernel's first open, before devtmpfs is mounted
# (the kernel's built-in initramfs has it too; this is belt and braces).
if [[ $(id -u) -eq 0 ]]; then
    mknod -m 600 "$STAGE/dev/console" c 5 1
    mknod -m 666 "$STAGE/dev/null" c 1 3
fi
while IFS= read -r m; do
    [[ -n $m ]] && cp "$KDIR/modules/$m" "$STAGE/lib/ptediff-modules/"
done <"$KDIR/modules/load-order"
cp "$KDIR/modules/load-order" "$STAGE/lib/ptediff-modules/load-order"
for b in "${BINS[@]}"; do cp "$b" "$STAGE/bin-tests/"; done
printf '%s\n' "${NAMES[@]}" >"$STAGE/etc/ptediff-tests"

cat >"$STAGE/init" <<EOF
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
echo; echo "PTEDIFF-BOOT uptime \$(cat /proc/uptime)"

if [ -f /proc/sys/kernel/numa_balancing ]; then
    echo 0 > /proc/sys/kernel/numa_balancing
    echo "PTEDIFF-SETUP numa_balancing ok \$(cat /proc/sys/kernel/numa_balancing)"
fi
for f in /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/transparent_hugepage/shmem_enabled; do
    if [ -f \$f ]; then
        echo never > \$f
        echo "PTEDIFF-SETUP \$(basename \$f) ok \$(cat \$f)"
    fi
done

# zram swap (modules decompressed on the host; busybox insmod)
while read m; do
    [ -n "\$m" ] || continue
    insmod /lib/ptediff-modules/\$m || echo "PTEDIFF-SETUP insmod_\$m fail"
done < /lib/ptediff-modules/load-order
i=0
while [ ! -e /sys/block/zram0/disksize ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
if echo 64M > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && swapon /dev/zram0; then
    echo "PTEDIFF-SETUP zram_swap ok \$(tail -n +2 /proc/swaps | tr -s ' \t' ' ')"
else
    echo "PTEDIFF-SETUP zram_swap fail"
fi

mount -t ramfs ramfs /mnt/ramfs && echo "PTEDIFF-SETUP ramfs ok /mnt/ramfs" || echo "PTEDIFF-SETUP ramfs fail"

echo "PTEDIFF-KERNEL \$(uname -r)"
echo "PTEDIFF-NUMA-NODES \$(ls /sys/devices/system/node/ | grep -c '^node[0-9]')"

cd /
while read t; do
    [ -n "\$t" ] || continue
    timeout $TEST_TIMEOUT /bin-tests/\$t < /dev/null
    rc=\$?
    echo "PTEDIFF-EXIT \$t \$rc"
done < /etc/ptediff-tests
echo "PTEDIFF-DONE uptime \$(cat /proc/uptime)"
sync
poweroff -f
EOF
if [[ ${#EXTRA_BINS[@]} -gt 0 ]]; then
    # frame each binary's output (the init above is unchanged without extras)
    sed -i 's|^    timeout [^ ]* /bin-tests/\$t < /dev/null$|    echo "PTEDIFF-START $t"\n&|' "$STAGE/init"
    grep -q '^    echo "PTEDIFF-START \$t"$' "$STAGE/init" || die "could not add PTEDIFF-START to the guest's init"
fi
chmod 755 "$STAGE/init"

INITRD="$WORK/initramfs.cpio.gz"
(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$INITRD"

# ---------------------------------------------------------------------- boot
mkdir -p "$(dirname "$OUT_LOG")"
: >"$OUT_LOG"
APPEND="console=ttyS0 panic=-1 loglevel=4 numa_balancing=disable transparent_hugepage=never"
if [[ ${#NAMES[@]} -le 8 ]]; then what="${NAMES[*]}"; else what="${#NAMES[@]} binaries"; fi
say "booting $NAME ($(grep '^uname_r=' "$KDIR/version" | cut -d= -f2)) with $what; log: $OUT_LOG"
start=$(date +%s.%N)
set +e
timeout --kill-after=10 "$TIMEOUT" "$QEMU" \
    -machine q35 -accel tcg,thread=multi -cpu max \
    -smp 2,sockets=2 -m 1G \
    -object memory-backend-ram,id=mem0,size=512M \
    -object memory-backend-ram,id=mem1,size=512M \
    -numa node,nodeid=0,cpus=0,memdev=mem0 \
    -numa node,nodeid=1,cpus=1,memdev=mem1 \
    -kernel "$KDIR/vmlinuz" -initrd "$INITRD" -append "$APPEND" \
    -nographic -nodefaults -serial stdio -monitor none -no-reboot \
    </dev/null >>"$OUT_LOG" 2>&1
qrc=$?
set -e
end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
    say "FAIL: QEMU killed after ${TIMEOUT}s timeout (kernel $NAME); see $OUT_LOG"
    exit 1
fi
if ! grep -q "^PTEDIFF-EXIT $LAST " <(tr -d '\r' <"$OUT_LOG"); then
    say "FAIL: guest did not reach the end (no 'PTEDIFF-EXIT $LAST' line; qemu exit $qrc, ${secs}s); see $OUT_LOG"
    tail -n 20 "$OUT_LOG" | sed 's/^/    /' >&2
    exit 1
fi
say "ok: $NAME ran ${#NAMES[@]} binaries in ${secs}s (qemu exit $qrc)"
echo "PTEDIFF-RUNTIME $NAME ${secs}s"
