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

/* @test-needs */

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
