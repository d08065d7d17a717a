/*
 * window-probe: how often does clear_refs land in a page's migration window
 * (after the unmap installed a migration entry, before the restore)?
 *
 * Each round maps a memfd page into a fresh VMA (VM_SOFTDIRTY set, so no
 * writenotify: the read fault maps it writable and clean), migrates it to the
 * other NUMA node with move_pages(MPOL_MF_MOVE_ALL) in the main thread, and
 * runs one clear_refs ("4") in a second thread. Afterwards one store to the
 * page: if clear_refs write-protected the PTE (before the unmap or after the
 * restore) the store faults and the page is soft-dirty again; if clear_refs met
 * the writable migration entry the page comes back writable and stays clean
 * (pagemap bit 55 = 0). That is a hit.
 *
 * Compile-time settings (gcc -static -O1 -pthread -DNAME='"x"' ...):
 *   STRATEGY 0  blind: clear_refs after a random delay within one move_pages time
 *            1  poll: read pagemap until the page is a migration entry (bit 63
 *               clear, bit 62 set), then clear_refs; read it again after, and
 *               count the round as confirmed if it still is one
 *   NFILL    extra anonymous pages moved in the same move_pages() call, after the
 *            target (from v6.3 migrate_pages() unmaps a batch of up to 512 folios
 *            before it moves any: the target's window spans the other unmaps)
 *   NMAP     extra mappings of the target page (each is unmapped and restored
 *            by the same rmap walks)
 *   HOLD_MS  hold each restore this long through
 *            /sys/module/ptediff_window/parameters/{tgid,delay_ms} (the
 *            ptediff_window module, scripts/window-module.sh, or a kernel with
 *            patches/debug-migration-window)
 * Prints one line: PROBE-RESULT NAME kernel=... rounds= hits= rate= confirmed= ...
 * Run with scripts/kernel-check-run.sh KERNEL LOG BIN... (two NUMA nodes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef STRATEGY
#define STRATEGY 1
#endif
#ifndef NFILL
#define NFILL 0
#endif
#ifndef NMAP
#define NMAP 0
#endif
#ifndef HOLD_MS
#define HOLD_MS 0
#endif
#ifndef ROUNDS
#define ROUNDS 400
#endif
#ifndef BUDGET_S
#define BUDGET_S 12
#endif
#ifndef NAME
#define NAME "window-probe"
#endif
#define PG 4096UL
#define MOVE_ALL (1 << 2) /* MPOL_MF_MOVE_ALL */

static char *target, *fill;
static int pm_fd, cr_fd;
static atomic_int go, cdone, mdone, seen, confirmed;
static atomic_long delay_ns;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static uint64_t pagemap(void *addr)
{
	uint64_t v = 0;
	if (pread(pm_fd, &v, 8, ((uintptr_t)addr / PG) * 8) != 8)
		return 0;
	return v;
}

/* not present, "swapped": a migration entry (the page is never swapped here) */
static int migration_entry(void *addr)
{
	uint64_t v = pagemap(addr);
	return !(v >> 63) && ((v >> 62) & 1);
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static int set_param(const char *name, long v)
{
	char path[96], b[32];
	snprintf(path, sizeof path, "/sys/module/ptediff_window/parameters/%s", name);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	int l = snprintf(b, sizeof b, "%ld", v);
	int rc = write(fd, b, l) == l ? 0 : -EIO;
	close(fd);
	return rc;
}

static void *in_window_thread(void *arg)
{
	unsigned seed = 12345;
	(void)arg;
	pin(1);
	for (int r = 1;; r++) {
		while (atomic_load(&go) < r)
			if (atomic_load(&go) < 0)
				return NULL;
		int hit = 0;
		if (STRATEGY == 0) {
			long d = atomic_load(&delay_ns);
			uint64_t until = now_ns() + (d > 0 ? (uint64_t)(rand_r(&seed) % d) : 0);
			while (now_ns() < until)
				;
		} else {
			while (atomic_load(&mdone) < r)
				if (migration_entry(target)) {
					hit = 1;
					break;
				}
			atomic_fetch_add(&seen, hit);
		}
		if (write(cr_fd, "4", 1) != 1)
			abort();
		if (hit && migration_entry(target))
			atomic_fetch_add(&confirmed, 1);
		atomic_store(&cdone, r);
	}
}

static int move_all(int node)
{
	static void *pages[1 + NFILL];
	static int nodes[1 + NFILL], status[1 + NFILL];
	pages[0] = target;
	for (int i = 0; i < NFILL; i++)
		pages[1 + i] = fill + i * PG;
	for (int i = 0; i <= NFILL; i++)
		nodes[i] = node, status[i] = -1;
	if (syscall(SYS_move_pages, 0, 1 + NFILL, pages, nodes, status, MOVE_ALL) < 0)
		return -errno;
	return status[0];
}

int main(void)
{
	struct utsname u;
	uname(&u);
	pin(0);
	pm_fd = open("/proc/self/pagemap", O_RDONLY);
	cr_fd = open("/proc/self/clear_refs", O_WRONLY);
	if (pm_fd < 0 || cr_fd < 0) {
		printf("PROBE-RESULT %s kernel=%s error=proc\n", NAME, u.release);
		return 0;
	}
	if (HOLD_MS) {
		int rc = set_param("tgid", getpid());
		if (!rc)
			rc = set_param("delay_ms", HOLD_MS);
		if (rc) {
			printf("PROBE-RESULT %s kernel=%s error=no-window-holder(%d)\n", NAME, u.release, rc);
			return 0;
		}
	}
	int fd = memfd_create("probe", 0);
	if (fd < 0 || ftruncate(fd, PG))
		return 1;
	target = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	target[0] = 1;
	for (int i = 0; i < NMAP; i++)
		(void)*(volatile char *)mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (NFILL) {
		fill = mmap(NULL, NFILL * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		for (int i = 0; i < NFILL; i++)
			fill[i * PG] = 1;
	}
	int node = 0;
	move_all(node);
	uint64_t cal = 0;
	for (int i = 0; i < 10; i++) {
		uint64_t t0 = now_ns();
		node ^= 1;
		move_all(node);
		cal += now_ns() - t0;
	}
	atomic_store(&delay_ns, (long)(cal / 10));
	pthread_t th;
	pthread_create(&th, NULL, in_window_thread, NULL);
	int hits = 0, rounds = 0, moved = 0;
	uint64_t start = now_ns(), mtot = 0;
	for (int r = 1; r <= ROUNDS && now_ns() - start < BUDGET_S * 1000000000ull; r++) {
		if (mmap(target, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != target)
			return 1;
		(void)*(volatile char *)target;
		atomic_store(&go, r);
		uint64_t t0 = now_ns();
		node ^= 1;
		moved += move_all(node) == node;
		mtot += now_ns() - t0;
		atomic_store(&mdone, r);
		while (atomic_load(&cdone) < r)
			;
		*(volatile char *)target = 2;
		rounds++;
		hits += !((pagemap(target) >> 55) & 1);
	}
	atomic_store(&go, -1);
	pthread_join(th, NULL);
	if (HOLD_MS)
		set_param("delay_ms", 0);
	printf("PROBE-RESULT %s kernel=%s rounds=%d hits=%d rate=%.1f%% confirmed=%d seen=%d moved=%d "
	       "move_us=%.0f\n",
	       NAME, u.release, rounds, hits, rounds ? 100.0 * hits / rounds : 0.0, atomic_load(&confirmed),
	       atomic_load(&seen), moved, rounds ? mtot / 1000.0 / rounds : 0.0);
	return 0;
}
