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
