// SPDX-License-Identifier: GPL-2.0
/*
 * soft_dirty_migration: the program below, minimized by ptediff.
 * It runs round after round in one process while a second thread migrates
 * the page with move_pages(), the steps between migrate_start and
 * migrate_finish once pagemap shows the migration entry; each round ends
 * with a load, a store and pagemap of every page, checked against what
 * user space is owed. It fails when a round inside the window breaks it.
 *
 * Program:
 *    1. mmap(p0, 4, 1, -w-, memfd, shared, 4)
 *    2. read(p0, 4)
 *    3. migrate_start(p0, 4)
 *    4. clear_refs(p0)
 */
#define PTEDIFF_KSELFTEST 1
#define PTEDIFF_RACE 1
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/utsname.h>
#include "kselftest.h"

/* What the reproducer prints are TAP diagnostics here. */
#define printf(...) ksft_print_msg(__VA_ARGS__)

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
/* The uapi of v6.4 to v6.7, for build hosts whose headers are older. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
/* Not every program uses every helper below. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
/* Accesses the compiler must make exactly once, where they are written. */
#define READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)
/* A user load and store of a page's first 16 bits (the content token). */
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
#define LOAD16(p) __atomic_load_n((uint16_t *)(p), __ATOMIC_RELAXED)
#define STORE16(p, v) __atomic_store_n((uint16_t *)(p), (v), __ATOMIC_RELAXED)
#define PAGE 4096UL
#define NPAGES 16
/* 64 KiB-aligned, so the 16 pages are exactly one fault-around window. */
#define BASE 0x7e0000000000UL
#if defined(PTEDIFF_THP) || defined(PTEDIFF_THP_LAYOUT)
/* THP layout: model page i is 4 KiB page i % 4 of the 2 MiB page i / 4, so a
 * model PMD (4 pages) is a real one; the rest of each 2 MiB is never touched.
 */
#define HPAGE (512 * PAGE)
#define PG(i) ((void *)(BASE + (unsigned long)(i) / 4 * HPAGE + (unsigned long)(i) % 4 * PAGE))
#else
#define PG(i) ((void *)(BASE + (unsigned long)(i)*PAGE))
#endif
/* The bytes from model page a to model page a + n. */
#define SPAN(a, n) ((unsigned long)PG((a) + (n)) - (unsigned long)PG(a))

static const char *NAME;
static int MYSLOT;
/* Each process's pid, by slot (shared with the controller). */
static pid_t *slot_pid;
static int memfd = -1, ramfd = -1;
static int cmdp[3][2], ackp[3][2];
static int uffd = -1;
static int uffd_stop[2] = { -1, -1 };
static pthread_t uffd_thread;
static int uffd_hit[NPAGES];

#ifdef PTEDIFF_KSELFTEST
/* The test judges itself (kselftest mode): what every process observes is
 * checked against what is owed as it is made; [0] counts the contracts broken,
 * [1] the steps the kernel could not do as the model needs, in memory shared by
 * all of the test's processes.
 */
static int *shared_counts;
#endif
#if defined(PTEDIFF_KSELFTEST) && !defined(PTEDIFF_RACE)
static void owe_pm(int step, int slot, unsigned int mask);
static void owe_ld(int step, int slot, int page, long val);
static void owe_page(int slot, int page, const char *obs, int sd, long ld, int sd2);
static void owe_scan(int step, int slot, unsigned int written);
static void owe_madv(int step, int slot, int hang);
#else
static void owe_madv(int step, int slot, int hang)
{
	(void)step, (void)slot, (void)hang;
}

static void owe_scan(int step, int slot, unsigned int written)
{
	(void)step, (void)slot, (void)written;
}

/* Without kselftest mode the checks are the caller's (ptediff kernel-check). */
static void owe_pm(int step, int slot, unsigned int mask)
{
	(void)step, (void)slot, (void)mask;
}

static void owe_ld(int step, int slot, int page, long val)
{
	(void)step, (void)slot, (void)page, (void)val;
}

static void owe_page(int slot, int page, const char *obs, int sd, long ld, int sd2)
{
	(void)slot, (void)page, (void)obs, (void)sd, (void)ld, (void)sd2;
}
#endif

/* A step the kernel did not do as the program needs (no THP where the model
 * maps one): the program is not judged.
 */
static void not_realized(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("%s", line);
#ifdef PTEDIFF_KSELFTEST
	__atomic_add_fetch(&shared_counts[1], 1, __ATOMIC_SEQ_CST);
#endif
}

static void fail(const char *what)
{
	printf("PTEDIFF-END %s error %s: %s\n", NAME, what, strerror(errno));
	fflush(stdout);
	_exit(1);
}

static void ack(long r)
{
	char c = r < 0;

	if (write(ackp[0][1], &c, 1) != 1)
		fail("ack");
	(void)r;
}

static void *uffd_handler(void *arg)
{
	int fd = (int)(long)arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = uffd_stop[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL; /* uffd_close(): let go of the file first */
		struct uffd_msg m;

		if (read(fd, &m, sizeof(m)) != sizeof(m))
			continue;
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		unsigned long a = m.arg.pagefault.address & ~(PAGE - 1);

		for (int i = 0; i < NPAGES; i++)
			if (a == (unsigned long)PG(i))
				WRITE_ONCE(uffd_hit[i], 1);
		struct uffdio_writeprotect wp = { .range = { .start = a, .len = PAGE }, .mode = 0 };

		if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
			ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	}
	return NULL;
}

/* Open the process's userfaultfd asking for `features` and, where the kernel
 * has it, UFFD_FEATURE_WP_HUGETLBFS_SHMEM. A feature the kernel lacks is
 * -EINVAL (as UFFDIO_API says) and leaves the uffd closed.
 */
static int uffd_open_with(uint64_t features, const char *name)
{
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };

	if (ioctl(uffd, UFFDIO_API, &api))
		return -errno;
	uint64_t want = (UFFD_FEATURE_WP_HUGETLBFS_SHMEM & api.features) | features;

	if (features & ~api.features) {
		not_realized("PTEDIFF-NOTON %s %s\n", NAME, name);
		close(uffd);
		uffd = -1;
		return -EINVAL;
	}

	close(uffd);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api2 = { .api = UFFD_API, .features = want };

	if (uffd < 0)
		return -errno;
	if (ioctl(uffd, UFFDIO_API, &api2)) {
		int e = errno;

		close(uffd);
		uffd = -1;
		return -e;
	}
	if (pipe(uffd_stop))
		return -errno;
	if (pthread_create(&uffd_thread, NULL, uffd_handler, (void *)(long)uffd))
		return -1;
	return 0;
}

static int uffd_open(void)
{
	if (uffd >= 0)
		return 0;
	return uffd_open_with(0, "");
}

/* userfaultfd() and UFFDIO_API asking for `features`; UFFDIO_API on the open
 * uffd when there is one (which the kernel refuses).
 */
static long uffd_api(uint64_t features, const char *name)
{
	if (uffd >= 0) {
		struct uffdio_api again = { .api = UFFD_API, .features = features };

		return ioctl(uffd, UFFDIO_API, &again) ? -errno : 0;
	}
	return uffd_open_with(features, name);
}

#define UFFD_API_NAMED(f) uffd_api(f, #f)

static long uffd_register(void *a, unsigned long len)
{
	if (uffd_open())
		return -1;
	struct uffdio_register r = { .range = { .start = (unsigned long)a, .len = len },
				     .mode = UFFDIO_REGISTER_MODE_WP };
	return ioctl(uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

static long uffd_unregister(void *a, unsigned long len)
{
	if (uffd < 0)
		return -EINVAL;
	struct uffdio_range r = { .start = (unsigned long)a, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

static long uffd_wp(void *a, unsigned long len, int on)
{
	if (uffd < 0)
		return -EINVAL;
	struct uffdio_writeprotect wp = { .range = { .start = (unsigned long)a, .len = len },
					  .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

static long uffd_close(void)
{
	if (uffd < 0)
		return -EINVAL;
	/* Stop the handler first: a thread inside poll() holds a reference to the
	 * file, and userfaultfd_release() only runs when the last one goes.
	 */
	if (write(uffd_stop[1], "x", 1) != 1)
		return -errno;
	pthread_join(uffd_thread, NULL);
	close(uffd_stop[0]);
	close(uffd_stop[1]);
	close(uffd);
	uffd = -1;
	return 0;
}

/* The model page at address `a`, or -1 (THP mode: a page it does not model). */
static int page_index(unsigned long a)
{
	if (a < BASE)
		return -1;
#if defined(PTEDIFF_THP) || defined(PTEDIFF_THP_LAYOUT)
	unsigned long off = (a - BASE) % HPAGE / PAGE, i = (a - BASE) / HPAGE * 4 + off;

	return off < 4 && i < NPAGES ? (int)i : -1;
#else
	unsigned long i = (a - BASE) / PAGE;

	return i < NPAGES ? (int)i : -1;
#endif
}

/* ioctl(PAGEMAP_SCAN) over `len` bytes at `a`: every page's categories, or
 * (`wp`) the written pages only, write-protecting them again (Wine's write
 * watch reset). Prints the pages returned and those of each category.
 */
static long pagemap_scan(int step, void *a, unsigned long len, int wp)
{
	static struct page_region vec[512];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = (unsigned long)a,
		.end = (unsigned long)a + len,
		.vec = (unsigned long)vec,
		.vec_len = ARRAY_SIZE(vec),
	};
	unsigned int m[7] = { 0 };
	static const unsigned long cat[7] = { 0, PAGE_IS_WRITTEN, PAGE_IS_PRESENT, PAGE_IS_SWAPPED,
					      PAGE_IS_FILE, PAGE_IS_PFNZERO, PAGE_IS_SOFT_DIRTY };
	long r;
	int fd;

	if (wp) {
		arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
		arg.category_mask = PAGE_IS_WRITTEN;
		arg.return_mask = PAGE_IS_WRITTEN;
	} else {
		arg.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED |
				  PAGE_IS_FILE | PAGE_IS_PFNZERO | PAGE_IS_SOFT_DIRTY;
	}
	memset(vec, 0, sizeof(vec));
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return -errno;
	r = ioctl(fd, PAGEMAP_SCAN, &arg) < 0 ? -errno : 0;
	close(fd);
	if (r == -ENOTTY)
		not_realized("PTEDIFF-NOTON %s PAGEMAP_SCAN\n", NAME);
	/* On an error the regions found so far are still copied out. */
	for (unsigned int i = 0; i < ARRAY_SIZE(vec) && vec[i].end > vec[i].start; i++) {
		for (unsigned long x = vec[i].start; x < vec[i].end; x += PAGE) {
			int pg = page_index(x);

			if (pg < 0)
				continue;
			for (int c = 0; c < 7; c++)
				if (!c || (vec[i].categories & cat[c]))
					m[c] |= 1u << pg;
		}
	}
	printf("PTEDIFF-SCAN %s %d p%d rc=%ld ret=%04x written=%04x present=%04x",
	       NAME, step, MYSLOT, r, m[0], m[1], m[2]);
	printf(" swapped=%04x file=%04x zero=%04x sd=%04x\n", m[3], m[4], m[5], m[6]);
	owe_scan(step, MYSLOT, m[1]);
	return r;
}

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

static sigjmp_buf guard_jmp;
/* What the last guard madvise() returned: 0 or -errno; 1 while it runs (one
 * store, so a timer signal after it cannot see half of it).
 */
static long guard_rc;

static void guard_timeout(int sig)
{
	(void)sig;
	siglongjmp(guard_jmp, 1);
}

/* Does the kernel know guard regions (v6.13)? One that does not refuses the
 * advice even on a fresh private anonymous page.
 */
static int guard_supported(void)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ok;

	if (p == MAP_FAILED)
		return 1;
	ok = !madvise(p, PAGE, MADV_GUARD_INSTALL) || errno != EINVAL;
	munmap(p, PAGE);
	return ok;
}

/* MADV_GUARD_INSTALL (install) or MADV_GUARD_REMOVE over [addr, addr + len).
 * An install that keeps restarting (-ERESTARTNOINTR every time) never returns:
 * a timer signal leaves it after 300 ms and the step reports rc=hang.
 */
static long guard_madvise(int step, void *addr, size_t len, int install)
{
	struct sigaction sa = { .sa_handler = guard_timeout }, old;
	struct itimerval t = { .it_value = { .tv_usec = 300000 } }, off = { 0 };
	int advice = install ? MADV_GUARD_INSTALL : MADV_GUARD_REMOVE;
	const char *what = install ? "MADV_GUARD_INSTALL" : "MADV_GUARD_REMOVE";

	guard_rc = 1;
	sigaction(SIGALRM, &sa, &old);
	if (!sigsetjmp(guard_jmp, 1)) {
		setitimer(ITIMER_REAL, &t, NULL);
		guard_rc = madvise(addr, len, advice) ? -errno : 0;
	}
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	if (guard_rc == -EINVAL && !guard_supported()) {
		not_realized("PTEDIFF-NOTON %s %s\n", NAME, what);
		return guard_rc;
	}
	owe_madv(step, MYSLOT, guard_rc == 1);
	if (guard_rc == 1) {
		printf("PTEDIFF-MADV %s %d p%d rc=hang\n", NAME, step, MYSLOT);
		return -EINTR;
	}
	printf("PTEDIFF-MADV %s %d p%d rc=%ld\n", NAME, step, MYSLOT, guard_rc);
	return guard_rc;
}

#define KSM_SYSFS "/sys/kernel/mm/ksm/"

static long ksm_set(const char *knob, const char *val)
{
	char path[64];
	long r = 0;
	int fd;

	snprintf(path, sizeof(path), KSM_SYSFS "%s", knob);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static long ksm_full_scans(void)
{
	char buf[32] = { 0 };
	int fd = open(KSM_SYSFS "full_scans", O_RDONLY);
	long n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atol(buf) : -1;
}

/* ksmd merges now, until three more full scans have passed (two see every
 * page, whatever the scan cursor's place), then stops: merged pages stay merged.
 */
static long ksm_merge(void)
{
	long start = ksm_full_scans(), now = start;

	if (start < 0 || ksm_set("pages_to_scan", "10000") || ksm_set("sleep_millisecs", "0") ||
	    ksm_set("run", "1")) {
		not_realized("PTEDIFF-NOTREALIZED %s no KSM to run (/sys/kernel/mm/ksm)\n", NAME);
		return -1;
	}
	for (int i = 0; i < 4000 && now < start + 3; i++) {
		usleep(2000);
		now = ksm_full_scans();
	}
	ksm_set("run", "0");
	if (now < start + 3)
		not_realized("PTEDIFF-NOTREALIZED %s ksmd did not scan\n", NAME);
	return 0;
}

static long write_clear_refs(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);

	if (fd < 0)
		return -errno;
	long r = write(fd, "4", 1) == 1 ? 0 : -errno;

	close(fd);
	return r;
}

static long migrate(void *a)
{
	void *pages[1] = { a };
	int status[1] = { -1 }, node[1];

	if (syscall(SYS_move_pages, 0, 1, pages, NULL, status, 0))
		return -errno;
	if (status[0] < 0)
		return status[0];
	node[0] = !status[0];
	if (syscall(SYS_move_pages, 0, 1, pages, node, status, 4 /* MPOL_MF_MOVE_ALL */))
		return -errno;
	return status[0] < 0 ? status[0] : 0;
}

static long swap_cycle(void)
{
	if (swapoff("/dev/zram0"))
		return -errno;
	return swapon("/dev/zram0", 0) ? -errno : 0;
}

static uint64_t pagemap(int fd, int i)
{
	uint64_t e = 0;

	if (pread(fd, &e, 8, (off_t)((unsigned long)PG(i) / PAGE * 8)) != 8)
		return 0;
	return e;
}

#ifdef PTEDIFF_THP
/* Pages of this process backed by a transparent huge page (a large folio, mapped
 * by a PMD or by PTEs): /proc/kpageflags bit 22 (KPF_THP) of the page's PFN.
 */
static unsigned int thp_mask(void)
{
	int pm = open("/proc/self/pagemap", O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
	unsigned int mask = 0;

	for (int i = 0; i < NPAGES && pm >= 0 && kf >= 0; i++) {
		uint64_t e = pagemap(pm, i), flags = 0;

		if (!(e >> 63 & 1))
			continue;
		uint64_t pfn = e & ((1ULL << 55) - 1);

		if (pfn && pread(kf, &flags, 8, (off_t)(pfn * 8)) == 8 && (flags >> 22 & 1))
			mask |= 1u << i;
	}
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return mask;
}

static void thp_line(int step)
{
	printf("PTEDIFF-THP %s %d p%d mask=%04x\n", NAME, step, MYSLOT, thp_mask());
}

/* The model's settings: THP on MADV_HUGEPAGE only, no huge zero page (a read
 * fault allocates a THP), direct compaction so the allocation succeeds, and no
 * khugepaged collapse while the program runs.
 */
static const char *THP_SYSFS[][2] = {
	{ "/sys/kernel/mm/transparent_hugepage/enabled", "madvise" },
	{ "/sys/kernel/mm/transparent_hugepage/defrag", "madvise" },
	{ "/sys/kernel/mm/transparent_hugepage/use_zero_page", "0" },
	{ "/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", "0" },
	{ "/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs", "3600000" },
};

static int thp_set(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		return -1;
	int ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);

	close(fd);
	return ok ? 0 : -1;
}

static void thp_setup(void)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(THP_SYSFS); i++)
		if (thp_set(THP_SYSFS[i][0], THP_SYSFS[i][1]))
			not_realized("PTEDIFF-NOTREALIZED %s cannot set %s\n", NAME,
				     THP_SYSFS[i][0]);
}

/* The guest's own setting for the reproducers that follow. */
static void thp_restore(void)
{
	thp_set("/sys/kernel/mm/transparent_hugepage/enabled", "never");
}
#endif

static sigjmp_buf probe_jmp;
static void probe_segv(int sig)
{
	(void)sig;
	siglongjmp(probe_jmp, 1);
}

static void catch_segv(void)
{
	struct sigaction sa = { .sa_handler = probe_segv };

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
}

/* Pagemap bit 55 (soft-dirty) of the 16 pages, after an op of this process. */
static void pm_line(int step)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	unsigned int mask = 0;

	for (int i = 0; i < NPAGES; i++)
		if (fd >= 0 && (pagemap(fd, i) >> 55 & 1))
			mask |= 1u << i;
	if (fd >= 0)
		close(fd);
	printf("PTEDIFF-PM %s %d p%d mask=%04x\n", NAME, step, MYSLOT, mask);
	owe_pm(step, MYSLOT, mask);
}

/* The end-of-program probe of this process: pagemap of all pages first, then for
 * every page a load (the content token), one store of a token of its own (a
 * store that raises SIGSEGV reports segv, a uffd-wp message uffd, a minor or
 * major fault "fault", none of these "writable") and pagemap bit 55 again.
 */
static void probe(int slot)
{
	catch_segv();
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t pm[NPAGES];

	for (int i = 0; i < NPAGES; i++)
		pm[i] = fd >= 0 ? pagemap(fd, i) : 0;
	struct rusage r0, r1;

	getrusage(RUSAGE_SELF, &r0);
	getrusage(RUSAGE_SELF, &r1);
	for (int i = 0; i < NPAGES; i++) {
		char ld[16] = "-";
		const char *obs;
		/* sigsetjmp() writes probe_jmp (in .bss, write-protected after
		 * clear_refs): do it before the fault count starts.
		 */
		if (!sigsetjmp(probe_jmp, 1)) {
			unsigned int v = LOAD16(PG(i));

			snprintf(ld, sizeof(ld), "%u", v);
		}
		WRITE_ONCE(uffd_hit[i], 0);
		if (sigsetjmp(probe_jmp, 1)) {
			obs = "segv";
		} else {
			getrusage(RUSAGE_SELF, &r0);
			STORE16(PG(i), (uint16_t)(0x8000 | slot << 8 | i));
			getrusage(RUSAGE_SELF, &r1);
			/* A fault that reads the page (swap-in, page cache) is a major one. */
			long f = (r1.ru_minflt - r0.ru_minflt) + (r1.ru_majflt - r0.ru_majflt);

			obs = READ_ONCE(uffd_hit[i]) ? "uffd" : f > 0 ? "fault" : "writable";
		}
		int sd2 = fd >= 0 ? (int)(pagemap(fd, i) >> 55 & 1) : 0;

		printf("PTEDIFF-PAGE %s p%d %d obs=%s sd=%d uw=%d present=%d ld=%s sd2=%d\n", NAME,
		       slot, i, obs, (int)(pm[i] >> 55 & 1), (int)(pm[i] >> 57 & 1),
		       (int)(pm[i] >> 63 & 1), ld, sd2);
		owe_page(slot, i, obs, (int)(pm[i] >> 55 & 1), ld[0] == '-' ? -1 : atol(ld), sd2);
	}
	fflush(stdout);
	if (fd >= 0)
		close(fd);
}
#define WINDOW_PAGE 4
#define NPROF 4

static void run_op(int i)
{
	long r = 0;

	switch (i) {
	case 0: /* mmap(p0, 4, 1, -w-, memfd, shared, 4) */
		r = (long)mmap(PG(4), SPAN(4, 1), PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, memfd, 4 * PAGE);
		if (r == -1L)
			r = -errno;
		break;
	case 1: /* read(p0, 4) */
		r = LOAD16(PG(4));
		break;
	case 3: /* clear_refs(p0) */
		r = write_clear_refs();
		break;
	}
	(void)r;
}
static const char *PROF[NPROF] = { "v6.1.y", "v6.12", "v6.18", "v7.3" };
static const long OWED_LD[NPROF][NPAGES] = {
	{ -1, -1, -1, -1, 0, -1, -1, -1,
	  -1, -1, -1, -1, -1, -1, -1, -1 },
	{ -1, -1, -1, -1, 0, -1, -1, -1,
	  -1, -1, -1, -1, -1, -1, -1, -1 },
	{ -1, -1, -1, -1, 0, -1, -1, -1,
	  -1, -1, -1, -1, -1, -1, -1, -1 },
	{ -1, -1, -1, -1, 0, -1, -1, -1,
	  -1, -1, -1, -1, -1, -1, -1, -1 },
};
static const int OWED_SD[NPROF][NPAGES] = {
	{ 0, 0, 0, 0, 0, 0, 0, 0,
	  0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0,
	  0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0,
	  0, 0, 0, 0, 0, 0, 0, 0 },
	{ 0, 0, 0, 0, 0, 0, 0, 0,
	  0, 0, 0, 0, 0, 0, 0, 0 },
};
static const int OWED_TRAP[NPROF][NPAGES] = {
	{ 2, 2, 2, 2, 0, 2, 2, 2,
	  2, 2, 2, 2, 2, 2, 2, 2 },
	{ 2, 2, 2, 2, 0, 2, 2, 2,
	  2, 2, 2, 2, 2, 2, 2, 2 },
	{ 2, 2, 2, 2, 0, 2, 2, 2,
	  2, 2, 2, 2, 2, 2, 2, 2 },
	{ 2, 2, 2, 2, 0, 2, 2, 2,
	  2, 2, 2, 2, 2, 2, 2, 2 },
};
#define N_OPS 4
#define W_START 2
#define W_FINISH 4
#define ROUNDS 20000
#define SECONDS 8

/* The kernel version whose model this kernel is judged by: 6.1 and older,
 * 6.2 to 6.12, 6.13 to 6.18, newer.
 */
static int kernel_profile(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return NPROF - 1;
	if (major < 6 || (major == 6 && minor <= 1))
		return 0;
	if (major == 6 && minor <= 12)
		return 1;
	if (major == 6 && minor <= 18)
		return 2;
	return 3;
}

/* The kernel version judged by (kernel_profile()). */
static int me;

/* Is swap on a zram device (the synchronous swap-in the model has)? */
static int zram_swap(void)
{
	char line[256];
	FILE *f = fopen("/proc/swaps", "r");
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		found |= !strncmp(line, "/dev/zram", 9);
	fclose(f);
	return found;
}

/* Does pagemap report soft-dirty (a fresh VMA is soft-dirty)? */
static int soft_dirty_works(void)
{
	char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;

	if (p == MAP_FAILED || fd < 0)
		return 0;
	p[0] = 1;
	if (pread(fd, &e, sizeof(e), (off_t)((unsigned long)p / PAGE * 8)) != sizeof(e))
		e = 0;
	close(fd);
	munmap(p, PAGE);
	return (int)(e >> 55 & 1);
}

/* Can this process open a userfaultfd that write-protects? */
static int uffd_works(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int ok;

	if (fd < 0)
		return 0;
	ok = !ioctl(fd, UFFDIO_API, &api) && (api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	close(fd);
	return ok;
}

/* Skip where the machine lacks what the program needs. */
static void test_needs(void)
{
	if (geteuid())
		ksft_exit_skip("needs root\n");
	if (access("/sys/devices/system/node/node1", F_OK))
		ksft_exit_skip("needs two NUMA nodes\n");
	if (!soft_dirty_works())
		ksft_exit_skip("needs soft-dirty (CONFIG_MEM_SOFT_DIRTY)\n");
}

/* Before anything else: the TAP header, the skips, the shared counters. */
static void test_setup(void)
{
	struct utsname u;

	ksft_print_header();
	test_needs();
	ksft_set_plan(1);
	shared_counts = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared_counts == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	me = kernel_profile();
	if (uname(&u))
		snprintf(u.release, sizeof(u.release), "?");
	ksft_print_msg("kernel: %s, judged by the model of %s\n", u.release, PROF[me]);
}

/* A race test's result: skipped when no round ran inside the migration window
 * (or, for a THP, none had the model's layout), failed when a round inside it
 * broke a contract, passed otherwise.
 */
static void test_race_verdict(long inside, const long *broken, const long *realized,
			      const char *first)
{
	if (!inside)
		ksft_test_result_skip("%s: no round ran inside the migration window\n", NAME);
	else if (!realized[me])
		ksft_test_result_skip("%s: no round had the model's THP layout\n", NAME);
	else if (broken[me])
		ksft_test_result_fail("%s: %ld round(s) broke a contract, the first: %s\n", NAME,
				      broken[me], first + me * 128);
	else
		ksft_test_result_pass("%s: %ld round(s) inside the migration window\n", NAME,
				      inside);
}
#include <sched.h>
#include <sys/utsname.h>
#include <time.h>

#define NFILL 511
#define HOLD_MS 20

/* Rounds handed to the mover and finished by it. */
static long go_round, moved_round;
static int mover_quit;
static long migrations;
/* Where the window page goes this round, and how many pages move with it. */
static int dest_node, nmove;
static char *fill;
static void *move_list[1 + NFILL];
static int move_to[1 + NFILL], move_status[1 + NFILL];

static void pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* The ptediff_window test module (scripts/window-module.sh) or a kernel built
 * with patches/debug-migration-window: hold each restore of this process's
 * migrations `delay_ms`, so the migration entry stays while the window's ops run.
 */
static int window_param(const char *name, long v)
{
	char path[96], b[32];

	snprintf(path, sizeof(path), "/sys/module/ptediff_window/parameters/%s", name);
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		return -errno;
	int l = snprintf(b, sizeof(b), "%ld", v);
	int rc = write(fd, b, l) == l ? 0 : -EIO;

	close(fd);
	return rc;
}

/* The mover (on CPU 0): one move_pages() per round, the window page first and
 * then the filler pages. From v6.3 migrate_pages() unmaps a whole batch before
 * it copies and restores any of it, so the window page's migration entry stays
 * while the other 511 are unmapped and copied. Without fillers or a holder
 * (`plain`) it moves the page back and forth until the round's window closes,
 * so that the poll has many migrations to catch.
 */
static long stop_round;
static int plain;
static void *mover(void *arg)
{
	(void)arg;
	pin(0);
	for (long r = 1;; r++) {
		while (READ_ONCE(go_round) < r)
			if (READ_ONCE(mover_quit))
				return NULL;
		__sync_synchronize();
		int to = READ_ONCE(dest_node);

		do {
			for (int i = 0; i < nmove; i++)
				move_to[i] = to, move_status[i] = -1;
			if (syscall(SYS_move_pages, 0, nmove, move_list, move_to, move_status,
				    4 /* MPOL_MF_MOVE_ALL */) == 0 &&
			    move_status[0] == to)
				migrations++;
			to = !to;
		} while (plain && READ_ONCE(stop_round) < r);
		__sync_synchronize();
		WRITE_ONCE(moved_round, r);
	}
}

/* The window page is a migration entry: not present, with the swap bit. */
static int window_seen(int fd)
{
	uint64_t e = pagemap(fd, WINDOW_PAGE);

	return (e >> 62 & 1) && !(e >> 63 & 1);
}

/* The node a page is on (negative: not present). */
static int node_of(void *a)
{
	void *pages[1] = { a };
	int status[1] = { -1 };

	if (syscall(SYS_move_pages, 0, 1, pages, NULL, status, 0))
		return -errno;
	return status[0];
}

/* Soft-dirty works here (CONFIG_MEM_SOFT_DIRTY): a store after clear_refs
 * marks the page. Without it every soft-dirty contract would read as broken.
 */
static int soft_dirty_tracked(int pmfd)
{
	char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return 0;
	p[0] = 1;
	write_clear_refs();
	p[0] = 2;
	uint64_t e = 0;
	int ok = pread(pmfd, &e, 8, ((uintptr_t)p / PAGE) * 8) == 8 && (e >> 55 & 1);

	munmap(p, PAGE);
	return ok;
}

/* Back to nothing: the range unmapped, the files emptied. */
static void reset(void)
{
	munmap(PG(0), SPAN(0, NPAGES));
	if (memfd >= 0 && (ftruncate(memfd, 0) || ftruncate(memfd, NPAGES * PAGE)))
		fail("memfd truncate");
	if (ramfd >= 0 && (ftruncate(ramfd, 0) || ftruncate(ramfd, NPAGES * PAGE)))
		fail("ramfs truncate");
}

static sigjmp_buf race_jmp;
static void race_segv(int sig)
{
	(void)sig;
	siglongjmp(race_jmp, 1);
}

/* The probe of every page, judged against what each profile owes; returns a
 * bitmask of the profiles (of those in `real`) whose contracts broke, and
 * describes the first.
 */
static int judge(int round, char *first, int real)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t pm[NPAGES];

	for (int i = 0; i < NPAGES; i++)
		pm[i] = fd >= 0 ? pagemap(fd, i) : 0;
	int broke = 0;

	for (int i = 0; i < NPAGES; i++) {
		/* A page no profile maps owes a SIGSEGV only: not worth the signal. */
		int mapped = 0;

		for (int k = 0; k < NPROF; k++)
			mapped |= OWED_TRAP[k][i] != 2 || OWED_LD[k][i] >= 0;
		if (!mapped)
			continue;
		long ld = -1;
		int stored = 0, segv = 0;

		if (!sigsetjmp(race_jmp, 1))
			ld = LOAD16(PG(i));
		WRITE_ONCE(uffd_hit[i], 0);
		if (sigsetjmp(race_jmp, 1)) {
			segv = 1;
		} else {
			STORE16(PG(i), (uint16_t)(0x8000 | i));
			stored = 1;
		}
		int sd = (int)(pm[i] >> 55 & 1),
		    sd2 = fd >= 0 ? (int)(pagemap(fd, i) >> 55 & 1) : 0;
		for (int k = 0; k < NPROF; k++) {
			const char *why = NULL;

			if (!(real & (1 << k)))
				continue;
			long want = OWED_LD[k][i];

			if (OWED_SD[k][i] && !sd)
				why = "S (probe pagemap)";
			else if (stored && !sd2)
				why = "S (probe store not soft-dirty)";
			else if (OWED_TRAP[k][i] == 1 && !READ_ONCE(uffd_hit[i]))
				why = "U (probe store)";
			else if (OWED_TRAP[k][i] == 2 && !segv)
				why = "P (probe store)";
			else if (want >= 0 && ld >= 0 && ld != (want & 0xffff) &&
				 !((want & 0x10000) && ld == 0))
				why = "C (probe read)";
			if (why) {
				if (!(broke & (1 << k)) && !first[k * 128])
					snprintf(first + k * 128, 128, "round=%d %s p0 %d", round,
						 why, i);
				broke |= 1 << k;
			}
		}
	}
	if (fd >= 0)
		close(fd);
	return broke;
}

int main(int argc, char **argv)
{
	NAME = argc > 1 ? argv[1] : strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	long max_rounds = argc > 2 ? atol(argv[2]) : ROUNDS;
	long max_secs = argc > 3 ? atol(argv[3]) : SECONDS;
	unsigned int seed = argc > 4 ? (unsigned int)atol(argv[4]) : (unsigned int)time(NULL) | 1;
	unsigned int seed0 = seed;

	setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef PTEDIFF_KSELFTEST
	test_setup();
#endif
	printf("PTEDIFF-BEGIN %s\n", NAME);
	MYSLOT = 0;
	memfd = memfd_create("ptediff", 0);
	if (memfd < 0 || ftruncate(memfd, NPAGES * PAGE))
		fail("memfd");
	ramfd = open("/mnt/ramfs/ptediff", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ramfd >= 0 && ftruncate(ramfd, NPAGES * PAGE))
		fail("ramfs file");
	struct sigaction sa = { .sa_handler = race_segv };

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	int pmfd = open("/proc/self/pagemap", O_RDONLY);

	if (pmfd < 0)
		fail("pagemap");
	/* Every probe store is judged by soft-dirty. */
	if (!soft_dirty_tracked(pmfd)) {
		printf("PTEDIFF-END %s error no soft-dirty (CONFIG_MEM_SOFT_DIRTY)\n", NAME);
		return 0;
	}
	pin(1);
	/* The window is held open by the test module where it is loaded; otherwise
	 * 511 filler pages ride along in each move (outside the 16-page space).
	 */
	int held = window_param("tgid", getpid()) == 0 && window_param("delay_ms", HOLD_MS) == 0;
	/* Before v6.3 migration takes one folio at a time: fillers only delay the
	 * poll there, the page alone is caught more often.
	 */
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) == 0)
		sscanf(u.release, "%d.%d", &major, &minor);
	int batched = major > 6 || (major == 6 && minor >= 3);
	int nfill = held || !batched ? 0 : NFILL;
#ifdef WINDOW_THP
	/* A THP fills a migration batch by itself (512 pages): the fillers would
	 * move in the next batch, after the restore. Without the holder the 2 MiB
	 * copy is the window, caught by polling.
	 */
	nfill = 0;
	thp_setup();
#endif
	plain = !held && !nfill;
	if (nfill) {
		fill = mmap(NULL, nfill * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
		if (fill == MAP_FAILED)
			fail("filler pages");
		for (int i = 0; i < nfill; i++) {
			fill[i * PAGE] = 1;
			move_list[1 + i] = fill + i * PAGE;
		}
	}
	move_list[0] = PG(WINDOW_PAGE);
	pthread_t mt;

	if (pthread_create(&mt, NULL, mover, NULL))
		fail("mover thread");
	long count[NPROF] = { 0 }, realized[NPROF] = { 0 }, hits = 0, confirmed = 0, raced = 0,
	     rounds = 0;
	char first[NPROF * 128];

	memset(first, 0, sizeof(first));
	long t0 = now_ns();
	double secs = 0;

	for (; rounds < max_rounds && secs < max_secs; rounds++) {
		reset();
		for (int i = 0; i < W_START; i++)
			run_op(i);
#ifdef WINDOW_THP
		unsigned int thp_start = thp_mask();
#endif
		/* Race only a page that is there to migrate (the model's window on an
		 * absent page is empty).
		 */
		int node = node_of(PG(WINDOW_PAGE));

		if (node >= 0) {
			WRITE_ONCE(dest_node, !node);
			if (nfill) {
				/* The fillers join the window page's node first, so that all of
				 * them move in the racing call.
				 */
				for (int i = 0; i < nfill; i++)
					move_to[1 + i] = node, move_status[1 + i] = -1;
				syscall(SYS_move_pages, 0, nfill, move_list + 1, move_to + 1,
					move_status + 1, 4);
			}
			nmove = 1 + nfill;
			raced++;
			__sync_synchronize();
			WRITE_ONCE(go_round, raced);
			/* The window's ops once the migration entry is in place (plain:
			 * within 20 ms of polling).
			 */
			int seen = 0;
			long poll_until = now_ns() + 20000000L;

			while (!(seen = window_seen(pmfd)) && READ_ONCE(moved_round) < raced &&
			       (!plain || now_ns() < poll_until))
				__builtin_ia32_pause();
			hits += seen;
			/* A random point of the window (xorshift): up to 64 us in. */
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			for (long until = now_ns() + (long)(seed % 64) * 1000;
			     seen && !plain && now_ns() < until;)
				__builtin_ia32_pause();
			for (int i = W_START + 1; i < W_FINISH; i++)
				run_op(i);
			confirmed += seen && window_seen(pmfd);
			WRITE_ONCE(stop_round, raced);
			while (READ_ONCE(moved_round) < raced)
				__builtin_ia32_pause();
		} else {
			for (int i = W_START + 1; i < W_FINISH; i++)
				run_op(i);
		}
		for (int i = W_FINISH + 1; i < N_OPS; i++)
			run_op(i);
		/* Which profiles' THP layout the kernel realized this round. */
		int real = (1 << NPROF) - 1;
#ifdef WINDOW_THP
		unsigned int thp_end = thp_mask();

		for (int k = 0; k < NPROF; k++)
			if (thp_start != THP_START[k] ||
			    (thp_end != THP_END[k][0] && thp_end != THP_END[k][1] &&
			     thp_end != THP_END[k][2]))
				real &= ~(1 << k);
#endif
		int broke = judge((int)rounds, first, real);

		for (int k = 0; k < NPROF; k++) {
			if (broke & (1 << k))
				count[k]++;
			if (real & (1 << k))
				realized[k]++;
		}
		if (uffd >= 0)
			uffd_close();
		secs = (now_ns() - t0) / 1e9;
	}
	WRITE_ONCE(mover_quit, 1);
	pthread_join(mt, NULL);
	if (held)
		window_param("delay_ms", 0);
	char counts[NPROF * 32] = "";

	for (int k = 0, n = 0; k < NPROF; k++)
		n += snprintf(counts + n, sizeof(counts) - n, " %s=%ld", PROF[k], count[k]);
	char line[512];
	int n = snprintf(line, sizeof(line), "PTEDIFF-RACE %s rounds=%ld raced=%ld hits=%ld", NAME,
			 rounds, raced, hits);

	n += snprintf(line + n, sizeof(line) - n, " confirmed=%ld migrations=%ld window=%s",
		      confirmed, migrations, held ? "held" : nfill ? "batch" : "plain");
	snprintf(line + n, sizeof(line) - n, " seed=%u seconds=%.1f%s", seed0, secs, counts);
	printf("%s\n", line);
#ifdef WINDOW_THP
	/* Rounds whose THP layout was each profile's (the others are not judged). */
	for (int k = 0, n = 0; k < NPROF; k++)
		n += snprintf(counts + n, sizeof(counts) - n, " %s=%ld", PROF[k], realized[k]);
	printf("PTEDIFF-RACE-REALIZED %s%s\n", NAME, counts);
	thp_restore();
#else
	(void)realized;
#endif
	for (int k = 0; k < NPROF; k++)
		if (first[k * 128])
			printf("PTEDIFF-RACE-FIRST %s %s %s\n", NAME, PROF[k], first + k * 128);
#ifdef PTEDIFF_KSELFTEST
	test_race_verdict(confirmed, count, realized, first);
#endif
	printf("PTEDIFF-END %s\n", NAME);
	ksft_finished();
}
