#!/usr/bin/env bash
# Self-test of the QEMU kernel-check setup: builds a small static C program
# that checks the kernel features the reproducers rely on, runs it on both
# kernels (v6.1.y, v6.12) and prints the PTEDIFF lines of both logs.
#
# Checks (one 'PTEDIFF-SELFTEST <check> ok|fail <detail>' line each):
#   numa_move_pages   two NUMA nodes; move_pages(MPOL_MF_MOVE_ALL) of one anon page
#   uffd_wp_shmem     userfaultfd + UFFDIO_API (WP_HUGETLBFS_SHMEM) + REGISTER_MODE_WP
#                     on a memfd MAP_SHARED page + UFFDIO_WRITEPROTECT; a write from
#                     a second thread must arrive as a WP fault
#   madv_pageout_swap MADV_PAGEOUT of a written anon page -> pagemap bit 62 (swapped)
#   soft_dirty        clear_refs "4" clears pagemap bit 55; a store sets it again
#   minflt_wp         a store to a page write-protected by clear_refs counts one
#                     minor fault (getrusage); a second store counts none
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC="$ROOT/target/kernel-check"
KERNEL_NAMES=(v6.1.y v6.12)
CHECKS=(numa_move_pages uffd_wp_shmem madv_pageout_swap soft_dirty minflt_wp)

say() { printf 'kernel-check-selftest: %s\n' "$*"; }
die() { printf 'kernel-check-selftest: ERROR: %s\n' "$*" >&2; exit 2; }

"$ROOT/scripts/kernel-check-setup.sh"

mkdir -p "$KC/logs"
SRC="$KC/selftest.c"
BIN="$KC/selftest"

cat >"$SRC" <<'EOF'
/* Written by scripts/kernel-check-selftest.sh; do not edit. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#ifndef MPOL_MF_MOVE_ALL
#define MPOL_MF_MOVE_ALL (1 << 2)
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#define PM_SOFT_DIRTY 55
#define PM_UFFD_WP 57
#define PM_SWAP 62
#define PM_PRESENT 63

static long pagesz;
static int failures;

static void report(const char *check, int ok, const char *fmt, ...)
{
    va_list ap;
    printf("PTEDIFF-SELFTEST %s %s ", check, ok ? "ok" : "fail");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (!ok)
        failures++;
}

static void *map_anon(void)
{
    void *p = mmap(NULL, pagesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* pagemap entry of addr, or 0 with errno set */
static uint64_t pagemap(const void *addr)
{
    uint64_t e = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return 0;
    if (pread(fd, &e, sizeof e, (off_t)((uintptr_t)addr / pagesz) * 8) != sizeof e)
        e = 0;
    close(fd);
    return e;
}

static int bit(uint64_t e, int b) { return (int)((e >> b) & 1); }

static int clear_refs_softdirty(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return -1;
    int r = write(fd, "4", 1) == 1 ? 0 : -1;
    close(fd);
    return r;
}

/* ---------------------------------------------------------------- (a) */
static int count_nodes(void)
{
    DIR *d = opendir("/sys/devices/system/node");
    struct dirent *de;
    int n = 0, id;
    if (!d)
        return 0;
    while ((de = readdir(d)))
        if (sscanf(de->d_name, "node%d", &id) == 1)
            n++;
    closedir(d);
    return n;
}

static void check_numa(void)
{
    const char *c = "numa_move_pages";
    int nodes = count_nodes();
    volatile char *p = map_anon();
    if (!p) {
        report(c, 0, "mmap: %s", strerror(errno));
        return;
    }
    memset((void *)p, 0x11, pagesz);
    void *pages[1] = {(void *)p};
    int status[1] = {-1000};
    long r = syscall(SYS_move_pages, 0, 1UL, pages, NULL, status, 0);
    int from = status[0];
    if (r != 0 || from < 0) {
        report(c, 0, "nodes=%d query: ret=%ld errno=%s status=%d", nodes, r, strerror(errno), from);
        return;
    }
    int to = from == 0 ? 1 : 0;
    int target[1] = {to};
    status[0] = -1000;
    r = syscall(SYS_move_pages, 0, 1UL, pages, target, status, MPOL_MF_MOVE_ALL);
    int mstat = status[0];
    long merr = r < 0 ? errno : 0;
    status[0] = -1000;
    syscall(SYS_move_pages, 0, 1UL, pages, NULL, status, 0);
    int now = status[0];
    int intact = p[0] == 0x11 && p[pagesz - 1] == 0x11;
    report(c, nodes == 2 && r == 0 && mstat == to && now == to && intact,
           "nodes=%d from=%d to=%d move_ret=%ld(%s) move_status=%d now=%d data_intact=%d",
           nodes, from, to, r, merr ? strerror((int)merr) : "ok", mstat, now, intact);
}

/* ---------------------------------------------------------------- (b) */
static void feature_names(uint64_t f, char *buf, size_t len)
{
    static const char *names[] = {
        "PAGEFAULT_FLAG_WP", "EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE",
        "MISSING_HUGETLBFS", "MISSING_SHMEM", "EVENT_UNMAP", "SIGBUS",
        "THREAD_ID", "MINOR_HUGETLBFS", "MINOR_SHMEM", "EXACT_ADDRESS",
        "WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON", "WP_ASYNC", "MOVE",
    };
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < 64; i++) {
        if (!(f & (1ULL << i)))
            continue;
        int n;
        if (i < (int)(sizeof names / sizeof names[0]))
            n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", names[i]);
        else
            n = snprintf(buf + used, len - used, "%sbit%d", used ? "," : "", i);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += n;
    }
}

static void *wp_writer(void *arg)
{
    volatile char *c = arg;
    c[0] = 42;
    return NULL;
}

static void check_uffd(void)
{
    const char *c = "uffd_wp_shmem";
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        report(c, 0, "userfaultfd: %s", strerror(errno));
        return;
    }
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    if (ioctl(fd, UFFDIO_API, &api)) {
        report(c, 0, "UFFDIO_API(0): %s", strerror(errno));
        close(fd);
        return;
    }
    close(fd);
    uint64_t offered = api.features;
    char names[512];
    feature_names(offered, names, sizeof names);
    printf("PTEDIFF-SELFTEST-INFO uffd_features 0x%llx %s\n", (unsigned long long)offered, names);
    printf("PTEDIFF-SELFTEST-INFO uffd_api_ioctls 0x%llx\n", (unsigned long long)api.ioctls);
    fflush(stdout);

    uint64_t want = offered & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    api = (struct uffdio_api){.api = UFFD_API, .features = want};
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api)) {
        report(c, 0, "offered=0x%llx UFFDIO_API(0x%llx): %s", (unsigned long long)offered,
               (unsigned long long)want, strerror(errno));
        return;
    }
    int mfd = memfd_create("ptediff-selftest", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, pagesz)) {
        report(c, 0, "memfd: %s", strerror(errno));
        return;
    }
    volatile char *p = mmap(NULL, pagesz, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (p == MAP_FAILED) {
        report(c, 0, "mmap memfd: %s", strerror(errno));
        return;
    }
    p[0] = 1; /* populate */
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)p, .len = pagesz},
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
        report(c, 0, "offered=0x%llx requested=0x%llx UFFDIO_REGISTER(WP): %s",
               (unsigned long long)offered, (unsigned long long)want, strerror(errno));
        return;
    }
    int has_wp_ioctl = !!(reg.ioctls & (1ULL << _UFFDIO_WRITEPROTECT));
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)p, .len = pagesz},
        .mode = UFFDIO_WRITEPROTECT_MODE_WP,
    };
    if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp)) {
        report(c, 0, "offered=0x%llx UFFDIO_WRITEPROTECT: %s", (unsigned long long)offered,
               strerror(errno));
        return;
    }
    int pm_uffd_wp = bit(pagemap((void *)p), PM_UFFD_WP);

    /* a write from another thread must be reported as a WP fault */
    pthread_t th;
    if (pthread_create(&th, NULL, wp_writer, (void *)p)) {
        report(c, 0, "pthread_create failed");
        return;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int pr = poll(&pfd, 1, 5000);
    struct uffd_msg msg;
    memset(&msg, 0, sizeof msg);
    int got = 0, wpflag = 0;
    if (pr == 1 && read(fd, &msg, sizeof msg) == sizeof msg && msg.event == UFFD_EVENT_PAGEFAULT) {
        got = 1;
        wpflag = !!(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
    }
    wp.mode = 0; /* un-protect and wake the writer */
    int unwp = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
    pthread_join(th, NULL);
    int val = p[0];
    report(c, want && has_wp_ioctl && got && wpflag && unwp == 0 && val == 42,
           "offered=0x%llx requested=0x%llx register_ioctls=0x%llx pagemap_uffd_wp=%d "
           "wp_fault_seen=%d flags=0x%llx unprotect=%d value=%d",
           (unsigned long long)offered, (unsigned long long)want,
           (unsigned long long)reg.ioctls, pm_uffd_wp, got,
           (unsigned long long)(got ? msg.arg.pagefault.flags : 0), unwp, val);
    munmap((void *)p, pagesz);
    close(mfd);
    close(fd);
}

/* ---------------------------------------------------------------- (c) */
static void check_pageout(void)
{
    const char *c = "madv_pageout_swap";
    volatile char *p = map_anon();
    if (!p) {
        report(c, 0, "mmap: %s", strerror(errno));
        return;
    }
    for (long i = 0; i < pagesz; i++)
        p[i] = (char)(i * 7 + 3);
    uint64_t before = pagemap((void *)p), e = 0;
    int tries, mret = 0, merr = 0;
    for (tries = 1; tries <= 20; tries++) {
        mret = madvise((void *)p, pagesz, MADV_PAGEOUT);
        merr = mret ? errno : 0;
        e = pagemap((void *)p);
        if (bit(e, PM_SWAP))
            break;
        usleep(50000);
    }
    if (tries > 20)
        tries = 20;
    int swapped = bit(e, PM_SWAP);
    int intact = 1;
    for (long i = 0; i < pagesz; i++)
        if (p[i] != (char)(i * 7 + 3))
            intact = 0;
    uint64_t after = pagemap((void *)p);
    report(c, swapped && intact,
           "madvise=%d(%s) tries=%d before=0x%016llx after_pageout=0x%016llx swapped=%d "
           "after_swapin_present=%d data_intact=%d",
           mret, merr ? strerror(merr) : "ok", tries, (unsigned long long)before,
           (unsigned long long)e, swapped, bit(after, PM_PRESENT), intact);
}

/* ---------------------------------------------------------------- (d) */
static void check_soft_dirty(void)
{
    const char *c = "soft_dirty";
    volatile char *p = map_anon();
    if (!p) {
        report(c, 0, "mmap: %s", strerror(errno));
        return;
    }
    p[0] = 1;
    int sd0 = bit(pagemap((void *)p), PM_SOFT_DIRTY);
    if (clear_refs_softdirty()) {
        report(c, 0, "clear_refs: %s", strerror(errno));
        return;
    }
    int sd1 = bit(pagemap((void *)p), PM_SOFT_DIRTY);
    p[0] = 2;
    int sd2 = bit(pagemap((void *)p), PM_SOFT_DIRTY);
    report(c, sd1 == 0 && sd2 == 1, "initial=%d after_clear_refs=%d after_store=%d", sd0, sd1, sd2);
}

/* ---------------------------------------------------------------- (e) */
static void check_minflt(void)
{
    const char *c = "minflt_wp";
    volatile char *p = map_anon();
    struct rusage r[3];
    if (!p) {
        report(c, 0, "mmap: %s", strerror(errno));
        return;
    }
    p[0] = 1;
    if (clear_refs_softdirty()) {
        report(c, 0, "clear_refs: %s", strerror(errno));
        return;
    }
    /* clear_refs write-protected every PTE, the stack's too: touch r[] first */
    memset(r, 0, sizeof r);
    int sd_before = bit(pagemap((void *)p), PM_SOFT_DIRTY);
    getrusage(RUSAGE_SELF, &r[0]);
    p[0] = 2; /* write fault on the write-protected PTE */
    getrusage(RUSAGE_SELF, &r[1]);
    p[0] = 3; /* PTE is writable now: no fault */
    getrusage(RUSAGE_SELF, &r[2]);
    long d1 = r[1].ru_minflt - r[0].ru_minflt;
    long d2 = r[2].ru_minflt - r[1].ru_minflt;
    long j1 = r[1].ru_majflt - r[0].ru_majflt;
    report(c, d1 >= 1 && d2 == 0 && j1 == 0,
           "minflt_first_store=%ld minflt_second_store=%ld majflt=%ld soft_dirty_before=%d", d1, d2,
           j1, sd_before);
}

int main(void)
{
    struct utsname u;
    pagesz = sysconf(_SC_PAGESIZE);
    uname(&u);
    printf("PTEDIFF-SELFTEST-INFO uname %s pagesize=%ld\n", u.release, pagesz);
    fflush(stdout);
    check_numa();
    check_uffd();
    check_pageout();
    check_soft_dirty();
    check_minflt();
    printf("PTEDIFF-SELFTEST-INFO failures %d\n", failures);
    return failures;
}
EOF

say "building $BIN (gcc -static -O1 -pthread)"
gcc -static -O1 -pthread -Wall -Wextra -o "$BIN" "$SRC"
if ldd "$BIN" >/dev/null 2>&1; then die "$BIN is not static"; fi

declare -A RESULT=() TIME=()
status=0
for k in "${KERNEL_NAMES[@]}"; do
    log="$KC/logs/selftest-$k.log"
    start=$(date +%s.%N)
    if "$ROOT/scripts/kernel-check-run.sh" "$k" "$log" "$BIN" >/dev/null; then
        RESULT[$k]=ran
    else
        RESULT[$k]="did not finish"
        status=1
    fi
    end=$(date +%s.%N)
    TIME[$k]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
done

echo
for k in "${KERNEL_NAMES[@]}"; do
    log="$KC/logs/selftest-$k.log"
    echo "===== $k ($(tr '\n' ' ' <"$KC/kernels/$k/version")) boot+run ${TIME[$k]}s: ${RESULT[$k]}"
    # PTEDIFF lines (the boot line may share a line with firmware escape codes)
    tr -d '\r' <"$log" | grep -ao 'PTEDIFF-.*' || true
    for chk in "${CHECKS[@]}"; do
        if ! tr -d '\r' <"$log" | grep -aq "^PTEDIFF-SELFTEST $chk ok"; then
            echo "!! $k: check $chk did not pass"
            status=1
        fi
    done
    echo "log: $log"
    echo
done
echo "summary:"
for k in "${KERNEL_NAMES[@]}"; do
    log="$KC/logs/selftest-$k.log"
    ok=$(tr -d '\r' <"$log" | grep -ac '^PTEDIFF-SELFTEST [a-z_]* ok' || true)
    printf '  %-7s %s/%s checks ok, %ss (%s)\n' "$k" "$ok" "${#CHECKS[@]}" "${TIME[$k]}" "${RESULT[$k]}"
done
exit $status
