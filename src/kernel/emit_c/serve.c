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
