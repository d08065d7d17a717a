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

/* @owed-table */

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
