//! `emit-c` race mode: a program with a migration window (`migrate_start` ...
//! `migrate_finish`, or the end of the program) becomes a C program that realises
//! the window on a real kernel by racing. Round after round it runs the program
//! in one process (the main thread on CPU 1): the ops before the window; then a
//! mover thread on CPU 0 moves the page to the other NUMA node (`move_pages`)
//! while the main thread polls pagemap until the page is a migration entry and
//! runs the window's ops; then the ops after it and the contract probe of every
//! page (pagemap, a load, a store, pagemap again). Every round starts from
//! scratch (the address range unmapped, the files emptied).
//!
//! Two ways keep the window open long enough (measured on the four kernels,
//! 400 rounds: a blind delay hits 7–13 % of rounds):
//! - `window=held`: the `ptediff_window` test module (scripts/window-module.sh)
//!   or a kernel built with patches/debug-migration-window is loaded; the
//!   reproducer asks it to hold each restore of its own migrations 20 ms
//!   (99.8–100 % of rounds on all four);
//! - `window=batch`: otherwise 511 filler pages move in the same call after the
//!   window page; from v6.3 migrate_pages() unmaps the whole batch before it
//!   restores any, so the entry stays while the others are unmapped and copied
//!   (100 % on v6.12, v6.18, v7.3);
//! - `window=plain`: before v6.3 (one folio at a time) without the module, the
//!   page alone, moved back and forth until the poll catches it (up to 20 ms).
//!
//! A program that uses THPs (`MADV_HUGEPAGE`) runs in THP mode, as in the
//! deterministic reproducer (model page `i` is 4 KiB page `i % 4` of the 2 MiB
//! page `i / 4`; the guest's THP settings are the model's). The window is then a
//! PMD migration entry: the holder covers it (`remove_migration_pmd()` runs
//! inside the held rmap walk); fillers do not (a THP is a batch of 512 pages by
//! itself, the fillers would move in the next batch), so without the holder the
//! 2 MiB copy is the window, caught by polling (`plain`: 100 % of rounds inside
//! the window on 6.18 and 7.3). Each round compares p0's KPF_THP mask where the
//! window opens and at the end with each profile's model; a round whose layout
//! is not the profile's (no 2 MiB page free, a split the model does not make) is
//! not judged for it (`PTEDIFF-RACE-REALIZED name v6.1.y=400 ...` counts those
//! that are).
//!
//! It prints, per profile, how many rounds broke a contract the profile owes:
//!
//! ```text
//! PTEDIFF-RACE name rounds=400 raced=400 hits=400 confirmed=398 migrations=400 window=held seed=1234 seconds=8.0 v6.1.y=400 v6.12=400 v6.18=400 v7.3=400
//! PTEDIFF-RACE-FIRST name v6.12 round=3 S p0 4 (probe store not soft-dirty)
//! PTEDIFF-RACE-PREDICT name v6.12 window=S before=none after=none
//! ```
//!
//! `raced` counts rounds whose page was present to migrate, `hits` those where
//! the poll saw the migration entry before the window's ops, `confirmed` those
//! where it was still there after them (the ops ran inside the window). The
//! predictions are the contract breaks of the model with the migration where
//! the program puts it (`window`), completed before the window's ops
//! (`before`), and after them (`after`).

use std::fmt::Write as _;

use crate::judge::contracts::Contract;
use crate::judge::contracts::{self, ProbeObs};
use crate::judge::world::World;
use crate::model::{self, State, Token, NPAGES};
use crate::op::{Op, Program};

use super::{c_op, native, store_tokens, Unrealizable, PRELUDE, PROFILES};

/// Where a program's migration window is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Index of the `migrate_start` op.
    pub start: usize,
    /// Index of the `migrate_finish` op (`ops.len()` when the end finishes it).
    pub finish: usize,
    /// The page migrated.
    pub page: u8,
}

/// The program's window, or why race mode cannot run it.
pub fn window(program: &Program) -> Result<Window, Unrealizable> {
    let thp = super::thp_mode(program);
    let mut w: Option<Window> = None;
    for (i, op) in program.ops.iter().enumerate() {
        let n = i + 1;
        let refuse = |why: &str| Err(Unrealizable(format!("step {n} `{op}`: {why}")));
        match *op {
            Op::MigrateStart { p, addr } => {
                if p != 0 {
                    return refuse("race mode runs process p0 only");
                }
                if w.is_some() {
                    return refuse("race mode realises one migration window per program");
                }
                w = Some(Window { start: i, finish: program.ops.len(), page: addr });
            }
            Op::MigrateFinish { p, addr } => match &mut w {
                Some(x) if x.finish == program.ops.len() && p == 0 && addr == x.page => x.finish = i,
                _ => return refuse("a migrate_finish that does not close the window"),
            },
            ref op => {
                if let Some(why) = race_refusal(op).or_else(|| thp.then(|| super::thp_refusal(op)).flatten()) {
                    return refuse(why);
                }
                if crate::emit_c::slot_of(op).is_some_and(|s| s != 0) {
                    return refuse("race mode runs process p0 only");
                }
                if let Err(why) = c_op(op, n, 0) {
                    return refuse(why);
                }
            }
        }
    }
    let w = w.ok_or_else(|| Unrealizable("no migration window (migrate_start)".into()))?;
    // Every op must complete on every profile, whichever side of the window the
    // migration falls.
    for prog in [program.clone(), placed(program, &w, true), placed(program, &w, false)] {
        for k in PROFILES {
            let cfg = native(k);
            let mut s = State::new();
            for op in &prog.ops {
                match model::step(&mut s, &cfg, op) {
                    model::StepResult::UffdWp => {
                        return Err(Unrealizable(format!("`{op}`: the store blocks on uffd-wp")))
                    }
                    model::StepResult::Segv => return Err(Unrealizable(format!("`{op}`: the access raises SIGSEGV"))),
                    _ => {}
                }
            }
        }
    }
    Ok(w)
}

/// What race mode cannot run beyond what a deterministic reproducer cannot
/// (`c_op`): it runs one process and leaves swap alone.
fn race_refusal(op: &Op) -> Option<&'static str> {
    match *op {
        Op::Fork { .. } | Op::Exit { .. } => Some("race mode runs one process (no fork, no exit)"),
        Op::Swapoff {} => Some("race mode does not cycle swap"),
        Op::Mmap { .. }
        | Op::Munmap { .. }
        | Op::Mprotect { .. }
        | Op::Madvise { .. }
        | Op::Mlock { .. }
        | Op::Munlock { .. }
        | Op::Mremap { .. }
        | Op::Read { .. }
        | Op::Write { .. }
        | Op::ClearRefs { .. }
        | Op::UffdRegister { .. }
        | Op::UffdUnregister { .. }
        | Op::UffdWp { .. }
        | Op::UffdUnwp { .. }
        | Op::UffdClose { .. }
        | Op::Migrate { .. }
        | Op::MigrateStart { .. }
        | Op::MigrateFinish { .. }
        | Op::Pageout { .. }
        | Op::Writeback { .. }
        | Op::NumaHint { .. } => None,
    }
}

/// The program with the window replaced: the migration completes `before` the
/// window's ops, or after them.
fn placed(program: &Program, w: &Window, before: bool) -> Program {
    let mut ops: Vec<Op> = Vec::new();
    for (i, op) in program.ops.iter().enumerate() {
        match op {
            Op::MigrateStart { p, addr } if before => ops.push(Op::Migrate { p: *p, addr: *addr }),
            Op::MigrateStart { .. } => {}
            Op::MigrateFinish { p, addr } if !before => ops.push(Op::Migrate { p: *p, addr: *addr }),
            Op::MigrateFinish { .. } => {}
            op => ops.push(*op),
        }
        if i + 1 == program.ops.len() && w.finish == program.ops.len() && !before {
            ops.push(Op::Migrate { p: 0, addr: w.page });
        }
    }
    Program::new(ops)
}

/// The contracts the model breaks running `program` natively on profile `k`
/// (its probe included), and the probe.
fn breaks(program: &Program, k: model::Kernel) -> (Contract, Vec<ProbeObs>) {
    let cfg = native(k);
    let mut w = World::new(Contract::all());
    for op in &program.ops {
        w.step(&cfg, op);
    }
    w.finish(&cfg);
    let probe = contracts::probe(&mut w, &cfg);
    (w.g.breaks.contracts(), probe)
}

/// THP mode: the KPF_THP mask of p0 (pages backed by a large folio) that a
/// profile's model has where the window opens, and at the end of the round with
/// the migration in the window, before it and after it.
struct ThpLayout {
    start: u16,
    end: [u16; 3],
}

fn thp_layout(program: &Program, w: &Window, k: model::Kernel) -> ThpLayout {
    let cfg = native(k);
    let run = |ops: &[Op]| {
        let mut s = State::new();
        for op in ops {
            model::step(&mut s, &cfg, op);
        }
        // The end of the program finishes the window's migration.
        if !s.pending.is_empty() {
            model::step(&mut s, &cfg, &Op::MigrateFinish { p: 0, addr: w.page });
        }
        super::thp_mask(&s, 0)
    };
    let mut s = State::new();
    for op in &program.ops[..w.start] {
        model::step(&mut s, &cfg, op);
    }
    ThpLayout {
        start: super::thp_mask(&s, 0),
        end: [run(&program.ops), run(&placed(program, w, true).ops), run(&placed(program, w, false).ops)],
    }
}

/// Generate the race reproducer (`rounds` and `seconds` bound it; both can be
/// overridden on its command line: `NAME ROUNDS SECONDS SEED`; the seed picks
/// how far into the window each round's ops start).
pub fn emit_race(program: &Program, name: &str, rounds: u32, seconds: u32) -> Result<String, Unrealizable> {
    let w = window(program)?;
    let toks = store_tokens(program);
    let mut c = String::new();
    let _ = writeln!(c, "/* Generated by `ptediff emit-c --race` from {name}. Build: gcc -static -O1 -pthread.");
    let _ = writeln!(c, " * Program (the window: steps {}..{}):", w.start + 1, w.finish + 1);
    for op in &program.ops {
        let _ = writeln!(c, " *   {op}");
    }
    let _ = writeln!(c, " */");
    let thp = super::thp_mode(program);
    if thp {
        c.push_str("#define PTEDIFF_THP 1\n");
    }
    c.push_str(PRELUDE);
    let _ = writeln!(c, "#define WINDOW_PAGE {}", w.page);
    let _ = writeln!(c, "#define NPROF {}", PROFILES.len());
    // One function per op (in this process); migrate_start/finish are the window.
    let _ = writeln!(c, "\nstatic void run_op(int i) {{\n\tlong r = 0;\n\tswitch (i) {{");
    for (i, op) in program.ops.iter().enumerate() {
        match op {
            Op::MigrateStart { .. } | Op::MigrateFinish { .. } => {}
            _ => {
                let _ = writeln!(c, "\tcase {i}: /* {op} */\n\t\t{}\n\t\tbreak;", race_op(op, i + 1, toks[i]));
            }
        }
    }
    let _ = writeln!(c, "\t}}\n\t(void)r;\n}}");
    // What each profile owes at the probe: the contracts (profile-specific only
    // through layouts).
    let mut owed_ld = Vec::new();
    let mut owed_sd = Vec::new();
    let mut owed_trap = Vec::new();
    let mut preds = Vec::new();
    for k in PROFILES {
        let (win, probe) = breaks(program, k);
        let (bef, _) = breaks(&placed(program, &w, true), k);
        let (aft, _) = breaks(&placed(program, &w, false), k);
        preds.push((k, win, bef, aft));
        let mut ld = vec!["-1".to_string(); NPAGES];
        let mut sd = vec!["0".to_string(); NPAGES];
        let mut trap = vec!["0".to_string(); NPAGES];
        for o in probe.iter().filter(|o| o.process == 0) {
            let a = o.page as usize;
            ld[a] = match (o.owed.ld, o.owed.or_zero) {
                (None, _) => "-1".into(),
                (Some(t), z) => format!("{}", t as u32 | if z { 0x10000 } else { 0 }),
            };
            sd[a] = (o.owed.sd as u8).to_string();
            trap[a] = match o.owed.trap {
                "uffd" => "1",
                "segv" => "2",
                _ => "0",
            }
            .into();
        }
        owed_ld.push(format!("{{{}}}", ld.join(", ")));
        owed_sd.push(format!("{{{}}}", sd.join(", ")));
        owed_trap.push(format!("{{{}}}", trap.join(", ")));
    }
    let names: Vec<String> = PROFILES.iter().map(|k| format!("\"{}\"", k.name())).collect();
    let _ = writeln!(c, "static const char *PROF[NPROF] = {{ {} }};", names.join(", "));
    let _ = writeln!(c, "static const long OWED_LD[NPROF][NPAGES] = {{ {} }};", owed_ld.join(", "));
    let _ = writeln!(c, "static const int OWED_SD[NPROF][NPAGES] = {{ {} }};", owed_sd.join(", "));
    let _ = writeln!(c, "static const int OWED_TRAP[NPROF][NPAGES] = {{ {} }};", owed_trap.join(", "));
    let _ =
        writeln!(c, "#define N_OPS {}\n#define W_START {}\n#define W_FINISH {}", program.ops.len(), w.start, w.finish);
    let _ = writeln!(c, "#define ROUNDS {rounds}\n#define SECONDS {seconds}");
    if thp {
        // The THP layout each profile's model has where the window opens and,
        // for each placement of the migration, at the end of the round: a round
        // whose kernel layout is none of them (no 2 MiB page free, a THP split
        // where the model keeps it) is not realized for that profile.
        let layouts: Vec<ThpLayout> = PROFILES.iter().map(|&k| thp_layout(program, &w, k)).collect();
        let start: Vec<String> = layouts.iter().map(|l| format!("0x{:04x}", l.start)).collect();
        let end: Vec<String> = layouts
            .iter()
            .map(|l| format!("{{{}}}", l.end.iter().map(|m| format!("0x{m:04x}")).collect::<Vec<_>>().join(", ")))
            .collect();
        c.push_str("#define WINDOW_THP 1\n");
        let _ = writeln!(c, "static const unsigned THP_START[NPROF] = {{ {} }};", start.join(", "));
        let _ = writeln!(c, "static const unsigned THP_END[NPROF][3] = {{ {} }};", end.join(", "));
    }
    c.push_str(RACE_MAIN);
    for (k, win, bef, aft) in preds {
        let _ = writeln!(
            c,
            "\tprintf(\"PTEDIFF-RACE-PREDICT %s {} window={} before={} after={}\\n\", NAME);",
            k.name(),
            win.letters(),
            bef.letters(),
            aft.letters()
        );
    }
    c.push_str("\tprintf(\"PTEDIFF-END %s\\n\", NAME);\n\treturn 0;\n}\n");
    Ok(c)
}

/// The C of one op in race mode: as in the deterministic reproducer, but loads
/// print nothing (the probe judges the round).
fn race_op(op: &Op, step: usize, token: Token) -> String {
    match *op {
        Op::Read { addr, .. } => format!("r = *(volatile uint16_t *)PG({addr});"),
        _ => c_op(op, step, token).expect("checked by window()"),
    }
}

const RACE_MAIN: &str = r#"
#include <sched.h>
#include <sys/utsname.h>
#include <time.h>

#define NFILL 511
#define HOLD_MS 20

/* Rounds handed to the mover and finished by it. */
static volatile long go_round, moved_round;
static volatile int mover_quit;
static volatile long migrations;
/* Where the window page goes this round, and how many pages move with it. */
static volatile int dest_node, nmove;
static char *fill;
static void *move_list[1 + NFILL];
static int move_to[1 + NFILL], move_status[1 + NFILL];

static void pin(int cpu) {
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof s, &s);
}

static long now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* The ptediff_window test module (scripts/window-module.sh) or a kernel built
 * with patches/debug-migration-window: hold each restore of this process's
 * migrations `delay_ms`, so the migration entry stays while the window's ops run. */
static int window_param(const char *name, long v) {
	char path[96], b[32];
	snprintf(path, sizeof path, "/sys/module/ptediff_window/parameters/%s", name);
	int fd = open(path, O_WRONLY);
	if (fd < 0) return -errno;
	int l = snprintf(b, sizeof b, "%ld", v);
	int rc = write(fd, b, l) == l ? 0 : -EIO;
	close(fd);
	return rc;
}

/* The mover (on CPU 0): one move_pages() per round, the window page first and
 * then the filler pages. From v6.3 migrate_pages() unmaps a whole batch before
 * it copies and restores any of it, so the window page's migration entry stays
 * while the other 511 are unmapped and copied. Without fillers or a holder
 * (`plain`) it moves the page back and forth until the round's window closes,
 * so that the poll has many migrations to catch. */
static volatile long stop_round;
static volatile int plain;
static void *mover(void *arg) {
	(void)arg;
	pin(0);
	for (long r = 1;; r++) {
		while (go_round < r)
			if (mover_quit) return NULL;
		__sync_synchronize();
		int to = dest_node;
		do {
			for (int i = 0; i < nmove; i++) move_to[i] = to, move_status[i] = -1;
			if (syscall(SYS_move_pages, 0, nmove, move_list, move_to, move_status, 4 /* MPOL_MF_MOVE_ALL */) == 0 &&
			    move_status[0] == to)
				migrations++;
			to = !to;
		} while (plain && stop_round < r);
		__sync_synchronize();
		moved_round = r;
	}
}

/* The window page is a migration entry: not present, with the swap bit. */
static int window_seen(int fd) {
	uint64_t e = pagemap(fd, WINDOW_PAGE);
	return (e >> 62 & 1) && !(e >> 63 & 1);
}

/* The node a page is on (negative: not present). */
static int node_of(void *a) {
	void *pages[1] = { a };
	int status[1] = { -1 };
	if (syscall(SYS_move_pages, 0, 1, pages, NULL, status, 0)) return -errno;
	return status[0];
}

/* Soft-dirty works here (CONFIG_MEM_SOFT_DIRTY): a store after clear_refs
 * marks the page. Without it every soft-dirty contract would read as broken. */
static int soft_dirty_tracked(int pmfd) {
	char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 0;
	p[0] = 1;
	clear_refs();
	p[0] = 2;
	uint64_t e = 0;
	int ok = pread(pmfd, &e, 8, ((uintptr_t)p / PAGE) * 8) == 8 && (e >> 55 & 1);
	munmap(p, PAGE);
	return ok;
}

/* Back to nothing: the range unmapped, the files emptied. */
static void reset(void) {
	munmap(PG(0), SPAN(0, NPAGES));
	if (memfd >= 0 && (ftruncate(memfd, 0) || ftruncate(memfd, NPAGES * PAGE))) fail("memfd reset");
	if (ramfd >= 0 && (ftruncate(ramfd, 0) || ftruncate(ramfd, NPAGES * PAGE))) fail("ramfs reset");
}

static sigjmp_buf race_jmp;
static void race_segv(int sig) {
	(void)sig;
	siglongjmp(race_jmp, 1);
}

/* The probe of every page, judged against what each profile owes; returns a
 * bitmask of the profiles (of those in `real`) whose contracts broke, and
 * describes the first. */
static int judge(int round, char *first, int real) {
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t pm[NPAGES];
	for (int i = 0; i < NPAGES; i++) pm[i] = fd >= 0 ? pagemap(fd, i) : 0;
	int broke = 0;
	for (int i = 0; i < NPAGES; i++) {
		/* A page no profile maps owes a SIGSEGV only: not worth the signal. */
		int mapped = 0;
		for (int k = 0; k < NPROF; k++) mapped |= OWED_TRAP[k][i] != 2 || OWED_LD[k][i] >= 0;
		if (!mapped) continue;
		long ld = -1;
		int stored = 0, segv = 0;
		if (!sigsetjmp(race_jmp, 1)) ld = *(volatile uint16_t *)PG(i);
		uffd_hit[i] = 0;
		if (sigsetjmp(race_jmp, 1)) {
			segv = 1;
		} else {
			*(volatile uint16_t *)PG(i) = (uint16_t)(0x8000 | i);
			stored = 1;
		}
		int sd = (int)(pm[i] >> 55 & 1), sd2 = fd >= 0 ? (int)(pagemap(fd, i) >> 55 & 1) : 0;
		for (int k = 0; k < NPROF; k++) {
			const char *why = NULL;
			if (!(real & (1 << k))) continue;
			long want = OWED_LD[k][i];
			if (OWED_SD[k][i] && !sd) why = "S (probe pagemap)";
			else if (stored && !sd2) why = "S (probe store not soft-dirty)";
			else if (OWED_TRAP[k][i] == 1 && !uffd_hit[i]) why = "U (probe store)";
			else if (OWED_TRAP[k][i] == 2 && !segv) why = "P (probe store)";
			else if (want >= 0 && ld >= 0 && ld != (want & 0xffff) && !((want & 0x10000) && ld == 0)) why = "C (probe read)";
			if (why) {
				if (!(broke & (1 << k)) && !first[k * 128])
					snprintf(first + k * 128, 128, "round=%d %s p0 %d", round, why, i);
				broke |= 1 << k;
			}
		}
	}
	if (fd >= 0) close(fd);
	return broke;
}

int main(int argc, char **argv) {
	NAME = argc > 1 ? argv[1] : strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	long max_rounds = argc > 2 ? atol(argv[2]) : ROUNDS;
	long max_secs = argc > 3 ? atol(argv[3]) : SECONDS;
	unsigned seed = argc > 4 ? (unsigned)atol(argv[4]) : (unsigned)time(NULL) | 1;
	unsigned seed0 = seed;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("PTEDIFF-BEGIN %s\n", NAME);
	MYSLOT = 0;
	memfd = memfd_create("ptediff", 0);
	if (memfd < 0 || ftruncate(memfd, NPAGES * PAGE)) fail("memfd");
	ramfd = open("/mnt/ramfs/ptediff", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ramfd >= 0 && ftruncate(ramfd, NPAGES * PAGE)) fail("ramfs file");
	struct sigaction sa = { .sa_handler = race_segv };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	int pmfd = open("/proc/self/pagemap", O_RDONLY);
	if (pmfd < 0) fail("pagemap");
	/* Every probe store is judged by soft-dirty. */
	if (!soft_dirty_tracked(pmfd)) {
		printf("PTEDIFF-END %s error this kernel does not track soft-dirty (CONFIG_MEM_SOFT_DIRTY)\n", NAME);
		return 0;
	}
	pin(1);
	/* The window is held open by the test module where it is loaded; otherwise
	 * 511 filler pages ride along in each move (outside the 16-page space). */
	int held = window_param("tgid", getpid()) == 0 && window_param("delay_ms", HOLD_MS) == 0;
	/* Before v6.3 migration takes one folio at a time: fillers only delay the
	 * poll there, the page alone is caught more often. */
	struct utsname u;
	int major = 0, minor = 0;
	if (uname(&u) == 0) sscanf(u.release, "%d.%d", &major, &minor);
	int batched = major > 6 || (major == 6 && minor >= 3);
	int nfill = held || !batched ? 0 : NFILL;
#ifdef WINDOW_THP
	/* A THP fills a migration batch by itself (512 pages): the fillers would
	 * move in the next batch, after the restore. Without the holder the 2 MiB
	 * copy is the window, caught by polling. */
	nfill = 0;
	thp_setup();
#endif
	plain = !held && !nfill;
	if (nfill) {
		fill = mmap(NULL, nfill * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (fill == MAP_FAILED) fail("filler pages");
		for (int i = 0; i < nfill; i++) {
			fill[i * PAGE] = 1;
			move_list[1 + i] = fill + i * PAGE;
		}
	}
	move_list[0] = PG(WINDOW_PAGE);
	pthread_t mt;
	if (pthread_create(&mt, NULL, mover, NULL)) fail("mover thread");
	long count[NPROF] = { 0 }, realized[NPROF] = { 0 }, hits = 0, confirmed = 0, raced = 0, rounds = 0;
	char first[NPROF * 128];
	memset(first, 0, sizeof first);
	long t0 = now_ns();
	double secs = 0;
	for (; rounds < max_rounds && secs < max_secs; rounds++) {
		reset();
		for (int i = 0; i < W_START; i++) run_op(i);
#ifdef WINDOW_THP
		unsigned thp_start = thp_mask();
#endif
		/* Race only a page that is there to migrate (the model's window on an
		 * absent page is empty). */
		int node = node_of(PG(WINDOW_PAGE));
		if (node >= 0) {
			dest_node = !node;
			if (nfill) {
				/* The fillers join the window page's node first, so that all of
				 * them move in the racing call. */
				for (int i = 0; i < nfill; i++) move_to[1 + i] = node, move_status[1 + i] = -1;
				syscall(SYS_move_pages, 0, nfill, move_list + 1, move_to + 1, move_status + 1, 4);
			}
			nmove = 1 + nfill;
			raced++;
			__sync_synchronize();
			go_round = raced;
			/* The window's ops once the migration entry is in place (plain:
			 * within 20 ms of polling). */
			int seen = 0;
			long poll_until = now_ns() + 20000000L;
			while (!(seen = window_seen(pmfd)) && moved_round < raced && (!plain || now_ns() < poll_until)) {}
			hits += seen;
			/* A random point of the window (xorshift): up to 64 us in. */
			seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5;
			for (long until = now_ns() + (long)(seed % 64) * 1000; seen && !plain && now_ns() < until;) {}
			for (int i = W_START + 1; i < W_FINISH; i++) run_op(i);
			confirmed += seen && window_seen(pmfd);
			stop_round = raced;
			while (moved_round < raced) {}
		} else {
			for (int i = W_START + 1; i < W_FINISH; i++) run_op(i);
		}
		for (int i = W_FINISH + 1; i < N_OPS; i++) run_op(i);
		/* Which profiles' THP layout the kernel realized this round. */
		int real = (1 << NPROF) - 1;
#ifdef WINDOW_THP
		unsigned thp_end = thp_mask();
		for (int k = 0; k < NPROF; k++)
			if (thp_start != THP_START[k] ||
			    (thp_end != THP_END[k][0] && thp_end != THP_END[k][1] && thp_end != THP_END[k][2]))
				real &= ~(1 << k);
#endif
		int broke = judge((int)rounds, first, real);
		for (int k = 0; k < NPROF; k++) {
			if (broke & (1 << k)) count[k]++;
			if (real & (1 << k)) realized[k]++;
		}
		if (uffd >= 0) uffd_close();
		secs = (now_ns() - t0) / 1e9;
	}
	mover_quit = 1;
	pthread_join(mt, NULL);
	if (held) window_param("delay_ms", 0);
	printf("PTEDIFF-RACE %s rounds=%ld raced=%ld hits=%ld confirmed=%ld migrations=%ld window=%s seed=%u seconds=%.1f", NAME,
	       rounds, raced, hits, confirmed, migrations, held ? "held" : nfill ? "batch" : "plain", seed0, secs);
	for (int k = 0; k < NPROF; k++) printf(" %s=%ld", PROF[k], count[k]);
	printf("\n");
#ifdef WINDOW_THP
	/* Rounds whose THP layout was each profile's (the others are not judged). */
	printf("PTEDIFF-RACE-REALIZED %s", NAME);
	for (int k = 0; k < NPROF; k++) printf(" %s=%ld", PROF[k], realized[k]);
	printf("\n");
	thp_restore();
#else
	(void)realized;
#endif
	for (int k = 0; k < NPROF; k++)
		if (first[k * 128]) printf("PTEDIFF-RACE-FIRST %s %s %s\n", NAME, PROF[k], first + k * 128);
"#;
