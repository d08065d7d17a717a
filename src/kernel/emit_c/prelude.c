#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#define UNUSED __attribute__((unused))
#define PAGE 4096UL
#define NPAGES 16
/* 64 KiB-aligned, so the 16 pages are exactly one fault-around window. */
#define BASE 0x7e0000000000UL
#define PG(i) ((void *)(BASE + (unsigned long)(i) * PAGE))

static const char *NAME;
static int MYSLOT;
static int memfd = -1, ramfd = -1;
UNUSED static int cmdp[3][2], ackp[3][2];
static int uffd = -1;
static int uffd_stop[2] = { -1, -1 };
static pthread_t uffd_thread;
static volatile int uffd_hit[NPAGES];

static void fail(const char *what) {
	printf("PTEDIFF-END %s error %s: %s\n", NAME, what, strerror(errno));
	fflush(stdout);
	_exit(1);
}

UNUSED static void ack(long r) {
	char c = r < 0;
	if (write(ackp[0][1], &c, 1) != 1) fail("ack");
	(void)r;
}

static void *uffd_handler(void *arg) {
	int fd = (int)(long)arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = uffd_stop[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) continue;
		if (p[1].revents) return NULL; /* uffd_close(): let go of the file first */
		struct uffd_msg m;
		if (read(fd, &m, sizeof m) != sizeof m) continue;
		if (m.event != UFFD_EVENT_PAGEFAULT) continue;
		unsigned long a = m.arg.pagefault.address & ~(PAGE - 1);
		if (a >= BASE && a < BASE + NPAGES * PAGE) uffd_hit[(a - BASE) / PAGE] = 1;
		struct uffdio_writeprotect wp = { .range = { .start = a, .len = PAGE }, .mode = 0 };
		if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	}
	return NULL;
}

static int uffd_open(void) {
	if (uffd >= 0) return 0;
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(uffd, UFFDIO_API, &api)) return -errno;
	uint64_t want = UFFD_FEATURE_WP_HUGETLBFS_SHMEM & api.features;
	close(uffd);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api2 = { .api = UFFD_API, .features = want };
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api2)) return -errno;
	if (pipe(uffd_stop)) return -errno;
	if (pthread_create(&uffd_thread, NULL, uffd_handler, (void *)(long)uffd)) return -1;
	return 0;
}

UNUSED static long uffd_register(void *a, int n) {
	if (uffd_open()) return -1;
	struct uffdio_register r = { .range = { .start = (unsigned long)a, .len = n * PAGE }, .mode = UFFDIO_REGISTER_MODE_WP };
	return ioctl(uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

UNUSED static long uffd_unregister(void *a, int n) {
	if (uffd < 0) return -EINVAL;
	struct uffdio_range r = { .start = (unsigned long)a, .len = n * PAGE };
	return ioctl(uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

UNUSED static long uffd_wp(void *a, int n, int on) {
	if (uffd < 0) return -EINVAL;
	struct uffdio_writeprotect wp = { .range = { .start = (unsigned long)a, .len = n * PAGE },
					  .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

UNUSED static long uffd_close(void) {
	if (uffd < 0) return -EINVAL;
	/* Stop the handler first: a thread inside poll() holds a reference to the
	 * file, and userfaultfd_release() only runs when the last one goes. */
	if (write(uffd_stop[1], "x", 1) != 1) return -errno;
	pthread_join(uffd_thread, NULL);
	close(uffd_stop[0]);
	close(uffd_stop[1]);
	close(uffd);
	uffd = -1;
	return 0;
}

UNUSED static long clear_refs(void) {
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd < 0) return -errno;
	long r = write(fd, "4", 1) == 1 ? 0 : -errno;
	close(fd);
	return r;
}

UNUSED static long migrate(void *a) {
	void *pages[1] = { a };
	int status[1] = { -1 }, node[1];
	if (syscall(SYS_move_pages, 0, 1, pages, NULL, status, 0)) return -errno;
	if (status[0] < 0) return status[0];
	node[0] = !status[0];
	if (syscall(SYS_move_pages, 0, 1, pages, node, status, 4 /* MPOL_MF_MOVE_ALL */)) return -errno;
	return status[0] < 0 ? status[0] : 0;
}

UNUSED static long swap_cycle(void) {
	if (swapoff("/dev/zram0")) return -errno;
	return swapon("/dev/zram0", 0) ? -errno : 0;
}

static uint64_t pagemap(int fd, int i) {
	uint64_t e = 0;
	if (pread(fd, &e, 8, (off_t)((BASE / PAGE + i) * 8)) != 8) return 0;
	return e;
}

static sigjmp_buf probe_jmp;
static void probe_segv(int sig) {
	(void)sig;
	siglongjmp(probe_jmp, 1);
}

static void catch_segv(void) {
	struct sigaction sa = { .sa_handler = probe_segv };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
}

/* Pagemap bit 55 (soft-dirty) of the 16 pages, after an op of this process. */
UNUSED static void pm_line(int step) {
	int fd = open("/proc/self/pagemap", O_RDONLY);
	unsigned mask = 0;
	for (int i = 0; i < NPAGES; i++)
		if (fd >= 0 && (pagemap(fd, i) >> 55 & 1)) mask |= 1u << i;
	if (fd >= 0) close(fd);
	printf("PTEDIFF-PM %s %d p%d mask=%04x\n", NAME, step, MYSLOT, mask);
}

/* The end-of-program probe of this process: pagemap of all pages first, then for
 * every page a load (the content token), one store of a token of its own (a
 * store that raises SIGSEGV reports segv, a uffd-wp message uffd, a minor or
 * major fault fault, none writable) and pagemap bit 55 again. */
UNUSED static void probe(int slot) {
	catch_segv();
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t pm[NPAGES];
	for (int i = 0; i < NPAGES; i++) pm[i] = fd >= 0 ? pagemap(fd, i) : 0;
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	getrusage(RUSAGE_SELF, &r1);
	for (int i = 0; i < NPAGES; i++) {
		char ld[16] = "-";
		const char *obs;
		/* sigsetjmp() writes probe_jmp (in .bss, write-protected after
		 * clear_refs): do it before the fault count starts. */
		if (!sigsetjmp(probe_jmp, 1)) {
			unsigned v = *(volatile uint16_t *)PG(i);
			snprintf(ld, sizeof ld, "%u", v);
		}
		uffd_hit[i] = 0;
		if (sigsetjmp(probe_jmp, 1)) {
			obs = "segv";
		} else {
			getrusage(RUSAGE_SELF, &r0);
			*(volatile uint16_t *)PG(i) = (uint16_t)(0x8000 | slot << 8 | i);
			getrusage(RUSAGE_SELF, &r1);
			/* A fault that reads the page (swap-in, page cache) is a major one. */
			long f = (r1.ru_minflt - r0.ru_minflt) + (r1.ru_majflt - r0.ru_majflt);
			obs = uffd_hit[i] ? "uffd" : f > 0 ? "fault" : "writable";
		}
		int sd2 = fd >= 0 ? (int)(pagemap(fd, i) >> 55 & 1) : 0;
		printf("PTEDIFF-PAGE %s p%d %d obs=%s sd=%d uw=%d present=%d ld=%s sd2=%d\n", NAME, slot, i, obs,
		       (int)(pm[i] >> 55 & 1), (int)(pm[i] >> 57 & 1), (int)(pm[i] >> 63 & 1), ld, sd2);
	}
	fflush(stdout);
	if (fd >= 0) close(fd);
}
