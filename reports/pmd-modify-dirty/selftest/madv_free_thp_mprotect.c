// SPDX-License-Identifier: GPL-2.0
/*
 * madv_free_thp_mprotect: the program below, minimized by ptediff.
 * It runs step by step, each process a real process driven over pipes;
 * every observation is checked against what user space is owed:
 * pagemap's soft-dirty bit after each step, the content of each load, and
 * at the end a load, a store and pagemap of every page. It fails where the
 * kernel breaks one of these.
 *
 * Program:
 *    1. mmap(p0, 0, 4, rw-, anon)
 *    2. madvise(p0, 0, 4, MADV_HUGEPAGE)
 *    3. write(p0, 1)
 *    4. madvise(p0, 0, 4, MADV_FREE)
 *    5. write(p0, 1)
 *    6. mprotect(p0, 0, 4, r--)
 *    7. pageout(p0, 1)
 *    8. read(p0, 1)
 */
#define PTEDIFF_KSELFTEST 1
#define PTEDIFF_THP 1
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

#define NPROF 4
/* The test judges itself: every observation is checked against OWED as it is
 * made, in the process that makes it; a broken contract is counted in memory
 * shared by all the test's processes and described in a diagnostic line.
 */
struct owed {
	int prof; /* -1: every kernel version; else an index into PROF */
	char kind; /* 'm' pagemap after a step, 'l' a load, 'p' the probe, 's' a scan,
		    * 'a' a guard install that returns
		    */
	int step;
	int slot; /* the process (p0, p1, p2) */
	int page;
	unsigned int mask; /* 'm': the pages owed soft-dirty; 's': owed written */
	long ld; /* the value owed (bit 16: or zero), -1: none */
	int sd; /* 'p': owed soft-dirty before the probe's store */
	int trap; /* 'p': the store owes a uffd message (1), SIGSEGV (2) */
};

/* What user space is owed, observation by observation (prof -1: by every
 * kernel version; otherwise by the one named in PROF).
 */
static const struct owed OWED[] = {
	{ .prof = 0, .kind = 'm', .step = 1, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'm', .step = 2, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'm', .step = 3, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'm', .step = 4, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'm', .step = 5, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'm', .step = 6, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'm', .step = 7, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'l', .step = 8, .slot = 0, .page = 1, .ld = 2 },
	{ .prof = 0, .kind = 'm', .step = 8, .slot = 0, .mask = 0x000f },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 0, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 1, .sd = 1, .trap = 2, .ld = 2 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 2, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 3, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 4, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 5, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 6, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 7, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 8, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 9, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 10, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 11, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 12, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 13, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 14, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 0, .kind = 'p', .slot = 0, .page = 15, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'm', .step = 1, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'm', .step = 2, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'm', .step = 3, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'm', .step = 4, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'm', .step = 5, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'm', .step = 6, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'm', .step = 7, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'l', .step = 8, .slot = 0, .page = 1, .ld = 2 },
	{ .prof = 1, .kind = 'm', .step = 8, .slot = 0, .mask = 0x000f },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 0, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 1, .sd = 1, .trap = 2, .ld = 2 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 2, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 3, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 4, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 5, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 6, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 7, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 8, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 9, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 10, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 11, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 12, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 13, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 14, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 1, .kind = 'p', .slot = 0, .page = 15, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'm', .step = 1, .slot = 0, .mask = 0x000f },
	{ .prof = 2, .kind = 'm', .step = 2, .slot = 0, .mask = 0x000f },
	{ .prof = 2, .kind = 'm', .step = 3, .slot = 0, .mask = 0x000f },
	{ .prof = 2, .kind = 'm', .step = 4, .slot = 0, .mask = 0x000f },
	{ .prof = 2, .kind = 'm', .step = 5, .slot = 0, .mask = 0x000f },
	{ .prof = 2, .kind = 'm', .step = 6, .slot = 0, .mask = 0x000f },
	{ .prof = 2, .kind = 'm', .step = 7, .slot = 0, .mask = 0x000d },
	{ .prof = 2, .kind = 'l', .step = 8, .slot = 0, .page = 1, .ld = 2 },
	{ .prof = 2, .kind = 'm', .step = 8, .slot = 0, .mask = 0x000d },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 0, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 1, .sd = 0, .trap = 2, .ld = 2 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 2, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 3, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 4, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 5, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 6, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 7, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 8, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 9, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 10, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 11, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 12, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 13, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 14, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 2, .kind = 'p', .slot = 0, .page = 15, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'm', .step = 1, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'm', .step = 2, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'm', .step = 3, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'm', .step = 4, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'm', .step = 5, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'm', .step = 6, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'm', .step = 7, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'l', .step = 8, .slot = 0, .page = 1, .ld = 2 },
	{ .prof = 3, .kind = 'm', .step = 8, .slot = 0, .mask = 0x000f },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 0, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 1, .sd = 1, .trap = 2, .ld = 2 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 2, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 3, .sd = 1, .trap = 2, .ld = 65536 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 4, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 5, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 6, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 7, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 8, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 9, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 10, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 11, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 12, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 13, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 14, .sd = 0, .trap = 2, .ld = -1 },
	{ .prof = 3, .kind = 'p', .slot = 0, .page = 15, .sd = 0, .trap = 2, .ld = -1 },
};
static const char * const PROF[NPROF] = { "v6.1.y", "v6.12", "v6.18", "v7.3" };

#define OR_ZERO 0x10000L

static int me; /* the kernel version judged by (kernel_profile()) */
static int *shared_counts; /* [0]: contracts broken, [1]: steps not realized */

static void broke(const char *what, int slot, int page, const char *where)
{
	ksft_print_msg("contract broken: %s p%d page %d (%s)\n", what, slot, page, where);
	__atomic_add_fetch(&shared_counts[0], 1, __ATOMIC_SEQ_CST);
}

static int owed_here(const struct owed *o, char kind, int slot)
{
	return o->kind == kind && o->slot == slot && (o->prof < 0 || o->prof == me);
}

/* A load returned `got` (-1: it faulted); is that what is owed? */
static int load_ok(long got, long want)
{
	if (got < 0 || want < 0)
		return 1;
	return got == (want & 0xffff) || ((want & OR_ZERO) && got == 0);
}

static void owe_pm(int step, int slot, unsigned int mask)
{
	char where[48];

	snprintf(where, sizeof(where), "pagemap after step %d", step);
	for (unsigned int i = 0; i < ARRAY_SIZE(OWED); i++) {
		const struct owed *o = &OWED[i];

		if (!owed_here(o, 'm', slot) || o->step != step)
			continue;
		for (int a = 0; a < NPAGES; a++)
			if (o->mask & ~mask & (1u << a))
				broke("soft-dirty", slot, a, where);
	}
}

static void owe_ld(int step, int slot, int page, long val)
{
	char where[48];

	snprintf(where, sizeof(where), "the load of step %d read %ld", step, val);
	for (unsigned int i = 0; i < ARRAY_SIZE(OWED); i++) {
		const struct owed *o = &OWED[i];

		if (owed_here(o, 'l', slot) && o->step == step && o->page == page &&
		    !load_ok(val, o->ld))
			broke("content", slot, page, where);
	}
}

static void owe_scan(int step, int slot, unsigned int written)
{
	char where[48];

	snprintf(where, sizeof(where), "PAGEMAP_SCAN of step %d", step);
	for (unsigned int i = 0; i < ARRAY_SIZE(OWED); i++) {
		const struct owed *o = &OWED[i];

		if (!owed_here(o, 's', slot) || o->step != step)
			continue;
		for (int a = 0; a < NPAGES; a++)
			if (o->mask & ~written & (1u << a))
				broke("write-watch", slot, a, where);
	}
}

/* The MADV_GUARD_INSTALL of `step` returned (hang: 0) or did not within the
 * timer's 300 ms (hang: 1).
 */
static void owe_madv(int step, int slot, int hang)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(OWED); i++) {
		const struct owed *o = &OWED[i];

		if (hang && owed_here(o, 'a', slot) && o->step == step) {
			ksft_print_msg("contract broken: guard p%d (%s of step %d never returns)\n",
				       slot, "MADV_GUARD_INSTALL", step);
			__atomic_add_fetch(&shared_counts[0], 1, __ATOMIC_SEQ_CST);
		}
	}
}

/* The probe of one page: its store's outcome, pagemap before and after it. */
static void owe_page(int slot, int page, const char *obs, int sd, long ld, int sd2)
{
	int stored = !strcmp(obs, "writable") || !strcmp(obs, "fault") || !strcmp(obs, "uffd");

	for (unsigned int i = 0; i < ARRAY_SIZE(OWED); i++) {
		const struct owed *o = &OWED[i];

		if (!owed_here(o, 'p', slot) || o->page != page)
			continue;
		if (o->sd && !sd)
			broke("soft-dirty", slot, page, "probe: pagemap");
		else if (stored && !sd2)
			broke("soft-dirty", slot, page, "probe: the store is not soft-dirty");
		/* A store that raises SIGSEGV does not complete either. */
		if (o->trap == 1 && strcmp(obs, "uffd") && strcmp(obs, "segv"))
			broke("uffd-wp", slot, page, "probe: the store raised no uffd message");
		if (o->trap == 2 && strcmp(obs, "segv"))
			broke("permission", slot, page, "probe: the store raised no SIGSEGV");
		if (!load_ok(ld, o->ld))
			broke("content", slot, page, "probe: the load");
	}
}

/* The test's one result: skipped where the kernel did not do what the program
 * needs, failed where it broke a contract, passed otherwise.
 */
static void test_verdict(void)
{
	if (shared_counts[1])
		ksft_test_result_skip("%s: the kernel did not do what the program needs\n", NAME);
	else if (shared_counts[0])
		ksft_test_result_fail("%s: %d contract(s) broken\n", NAME, shared_counts[0]);
	else
		ksft_test_result_pass("%s\n", NAME);
}

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
	if (!zram_swap())
		ksft_exit_skip("needs swap on a zram device\n");
	if (access("/sys/kernel/mm/transparent_hugepage/enabled", W_OK))
		ksft_exit_skip("needs transparent huge pages\n");
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

static long do_fork(int child);

static void run_op(int i)
{
	long r = 0;

	switch (i) {
	case 0: /* mmap(p0, 0, 4, rw-, anon) */
		r = (long)mmap(PG(0), SPAN(0, 4), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0 * PAGE);
		if (r == -1L)
			r = -errno;
		break;
	case 1: /* madvise(p0, 0, 4, MADV_HUGEPAGE) */
		r = madvise(PG(0), SPAN(0, 4), MADV_HUGEPAGE);
		break;
	case 2: /* write(p0, 1) */
		STORE16(PG(1), 1);
		r = 0;
		if (!(thp_mask() & (1u << 0)))
			not_realized("PTEDIFF-NOTREALIZED %s step %d page %d: %s\n", NAME, 3,
				     0,
				     "no THP where the model maps one (no 2 MiB page free?)");
		break;
	case 3: /* madvise(p0, 0, 4, MADV_FREE) */
		r = madvise(PG(0), SPAN(0, 4), MADV_FREE);
		break;
	case 4: /* write(p0, 1) */
		STORE16(PG(1), 2);
		r = 0;
		break;
	case 5: /* mprotect(p0, 0, 4, r--) */
		r = mprotect(PG(0), SPAN(0, 4), PROT_READ);
		break;
	case 6: /* pageout(p0, 1) */
		r = madvise(PG(1), PAGE, 21 /* MADV_PAGEOUT */);
		break;
	case 7: /* read(p0, 1) */
		r = LOAD16(PG(1));
		printf("PTEDIFF-LD %s 8 p0 1 val=%ld\n", NAME, r);
		owe_ld(8, 0, 1, r);
		break;
	}
	(void)r;
	pm_line(i + 1);
	thp_line(i + 1);
	ack(r);
}
static void serve(int slot);

static long do_fork(int child)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* No UFFD_FEATURE_EVENT_FORK: the child's VMAs lose their registration.
		 * The handler thread did not survive the fork; drop the inherited fds.
		 */
		if (uffd >= 0) {
			close(uffd);
			close(uffd_stop[0]);
			close(uffd_stop[1]);
		}
		uffd = -1;
		serve(child);
	}
	return 0;
}

static void serve(int slot)
{
	MYSLOT = slot;
	slot_pid[slot] = getpid();
	for (;;) {
		int i;

		if (read(cmdp[slot][0], &i, sizeof(i)) != sizeof(i))
			_exit(0);
		if (i == -1) {
			probe(slot);
			ack(0);
			continue;
		}
		if (i == -2)
			_exit(0);
		run_op(i);
	}
}

static void send(int slot, int i)
{
	char c;

	if (write(cmdp[slot][1], &i, sizeof(i)) != sizeof(i))
		fail("command pipe");
	if (read(ackp[0][0], &c, 1) != 1)
		fail("ack pipe");
}

/* After an exit op: the process acked before _exit(), so wait until its mm is
 * gone (a zombie, or reaped), as the model's exit_mmap() is done with the op.
 */
static void wait_gone(int slot)
{
	char path[64], st[256];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)slot_pid[slot]);
	for (int t = 0; t < 5000; t++) {
		int fd = open(path, O_RDONLY);

		if (fd < 0)
			return;
		ssize_t n = read(fd, st, sizeof(st) - 1);

		close(fd);
		if (n <= 0)
			return;
		st[n] = 0;
		char *p = strrchr(st, ')');

		if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
			return;
		usleep(1000);
	}
}

int main(int argc, char **argv)
{
	NAME = argc > 1 ? argv[1] : strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef PTEDIFF_KSELFTEST
	test_setup();
#endif
	printf("PTEDIFF-BEGIN %s\n", NAME);
	/* Every process and thread on CPU 0: the per-CPU LRU batches (new folios,
	 * lazy-free moves) are then drained by the next madvise whichever process
	 * runs it, as the model assumes (it has no per-CPU state).
	 */
	cpu_set_t cpu0;

	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	sched_setaffinity(0, sizeof(cpu0), &cpu0);
	slot_pid = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slot_pid == MAP_FAILED)
		fail("slot pids");
	memfd = memfd_create("ptediff", 0);
	if (memfd < 0 || ftruncate(memfd, NPAGES * PAGE))
		fail("memfd");
	ramfd = open("/mnt/ramfs/ptediff", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ramfd >= 0 && ftruncate(ramfd, NPAGES * PAGE))
		fail("ramfs file");
	for (int s = 0; s < 3; s++)
		if (pipe(cmdp[s]))
			fail("pipe");
	if (pipe(ackp[0]))
		fail("pipe");
	pid_t p0 = fork();

	if (p0 < 0)
		fail("fork");
	if (p0 == 0)
		serve(0);
	/* The controller: one op at a time, in the process that runs it. */
	thp_setup();
	send(0, 0);
	send(0, 1);
	send(0, 2);
	send(0, 3);
	send(0, 4);
	send(0, 5);
	send(0, 6);
	send(0, 7);
	send(0, -1);
	test_verdict();
	thp_restore();
	for (int s = 0; s < 3; s++) {
		int q = -2;

		if (write(cmdp[s][1], &q, sizeof(q)) < 0)
			continue;
	}
	printf("PTEDIFF-END %s\n", NAME);
	ksft_finished();
}
