//! `emit-c` race mode: a program with a migration window (`migrate_start` ...
//! `migrate_finish`, or the end of the program) becomes a C program that realises
//! the window on a real kernel by racing. Round after round it runs the program
//! in one process: the ops before the window, then the window's ops while a
//! migrator thread moves the page back and forth between the two NUMA nodes
//! (`move_pages`), then the ops after it and the contract probe of every page
//! (pagemap, a load, a store, pagemap again). Every round starts from scratch
//! (the address range unmapped, the files emptied).
//!
//! It prints, per profile, how many rounds broke a contract the profile owes:
//!
//! ```text
//! PTEDIFF-RACE name rounds=20000 hits=5120 seed=1234 seconds=8.1 v6.1.y=0 v6.12=5347 v6.18=5300 v7.3=5301
//! PTEDIFF-RACE-FIRST name v6.12 round=3 S p0 4 (probe store not soft-dirty)
//! PTEDIFF-RACE-PREDICT name v6.12 window=S before=none after=none
//! ```
//!
//! `hits` counts rounds where a pagemap sample taken around the window's ops saw
//! the page non-present with the swap bit (a migration entry): the window was
//! open then (a lower bound). The predictions are the contract breaks of the
//! model with the migration where the program puts it (`window`), completed
//! before the window's ops (`before`), and after them (`after`).

use std::fmt::Write as _;

use crate::judge::contracts::{self, ProbeObs};
use crate::model::ghost::Contract;
use crate::model::{self, State, Token, NPAGES};
use crate::op::{FileName, Op, Program, Target};

use super::{c_op, native, Unrealizable, PRELUDE, PROFILES};

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
            Op::Fork { .. } | Op::Exit { .. } => return refuse("race mode runs one process (no fork, no exit)"),
            Op::NumaHint { .. } => return refuse("NUMA hinting scans cannot be triggered on demand"),
            Op::Writeback { .. } => return refuse("writeback needs an ext4 file, which the test system lacks"),
            Op::Mmap { target: Target::File { file: FileName::Ext4, .. }, .. } => {
                return refuse("ext4 files are not available in the test system")
            }
            Op::Swapoff => return refuse("race mode does not cycle swap"),
            _ if crate::emit_c::slot_of(op).is_some_and(|s| s != 0) => return refuse("race mode runs process p0 only"),
            _ => {}
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
    let mut s = State::new();
    for op in &program.ops {
        model::step(&mut s, &cfg, op);
    }
    model::finish(&mut s, &cfg);
    let probe = contracts::probe(&mut s, &cfg);
    (s.ghost.breaks.contracts(), probe)
}

/// Every op's store token, as the model hands them out.
fn tokens(program: &Program) -> Vec<Token> {
    let cfg = native(PROFILES[0]);
    let mut s = State::new();
    program
        .ops
        .iter()
        .map(|op| {
            model::step(&mut s, &cfg, op);
            if matches!(op, Op::Write { .. }) {
                s.ghost.next
            } else {
                0
            }
        })
        .collect()
}

/// Generate the race reproducer (`rounds` and `seconds` bound it; both can be
/// overridden on its command line: `NAME ROUNDS SECONDS SEED`).
pub fn emit_race(program: &Program, name: &str, rounds: u32, seconds: u32) -> Result<String, Unrealizable> {
    let w = window(program)?;
    let toks = tokens(program);
    let mut c = String::new();
    let _ = writeln!(c, "/* Generated by `ptediff emit-c --race` from {name}. Build: gcc -static -O1 -pthread.");
    let _ = writeln!(c, " * Program (the window: steps {}..{}):", w.start + 1, w.finish + 1);
    for op in &program.ops {
        let _ = writeln!(c, " *   {op}");
    }
    let _ = writeln!(c, " */");
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
        _ => c_op(op, step, token),
    }
}

const RACE_MAIN: &str = r#"
#include <time.h>

static volatile int window_open, migrator_busy, migrator_quit;
static volatile long migrations;
/* Mean duration of one move_pages() call, in ns (exponentially averaged). */
static volatile long move_ns = 200000;

static long now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* The migrator: while the window is open, move the page to the other node.
 * migrator_busy says a move may be under way; it is raised before the window is
 * checked again (with full barriers on both sides), so once the main thread has
 * closed the window and seen the migrator idle, no move starts. */
static void *migrator(void *arg) {
	(void)arg;
	for (;;) {
		if (migrator_quit) return NULL;
		if (!window_open) {
			migrator_busy = 0;
			continue;
		}
		migrator_busy = 1;
		__sync_synchronize();
		if (!window_open) {
			migrator_busy = 0;
			continue;
		}
		/* One move_pages() per move: the page alternates between the nodes. */
		static int node;
		void *pages[1] = { PG(WINDOW_PAGE) };
		int to[1] = { node = !node }, status[1] = { -1 };
		long t = now_ns();
		if (syscall(SYS_move_pages, 0, 1, pages, to, status, 4 /* MPOL_MF_MOVE_ALL */) == 0 && status[0] >= 0) {
			migrations++;
			move_ns = (move_ns * 7 + (now_ns() - t)) / 8;
		}
	}
}

static void close_window(void) {
	window_open = 0;
	__sync_synchronize();
	while (migrator_busy) {}
}

static int window_seen(int fd) {
	uint64_t e = pagemap(fd, WINDOW_PAGE);
	return (e >> 62 & 1) && !(e >> 63 & 1);
}

/* Back to nothing: the range unmapped, the files emptied. */
static void reset(void) {
	munmap(PG(0), NPAGES * PAGE);
	if (memfd >= 0 && (ftruncate(memfd, 0) || ftruncate(memfd, NPAGES * PAGE))) fail("memfd reset");
	if (ramfd >= 0 && (ftruncate(ramfd, 0) || ftruncate(ramfd, NPAGES * PAGE))) fail("ramfs reset");
}

static sigjmp_buf race_jmp;
static void race_segv(int sig) {
	(void)sig;
	siglongjmp(race_jmp, 1);
}

/* The probe of every page, judged against what each profile owes; returns a
 * bitmask of the profiles whose contracts broke, and describes the first. */
static int judge(int round, char *first, size_t n) {
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
	(void)n;
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
	pthread_t mt;
	if (pthread_create(&mt, NULL, migrator, NULL)) fail("migrator thread");
	int pmfd = open("/proc/self/pagemap", O_RDONLY);
	long count[NPROF] = { 0 }, hits = 0, rounds = 0;
	char first[NPROF * 128];
	memset(first, 0, sizeof first);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	double secs = 0;
	for (; rounds < max_rounds && secs < max_secs; rounds++) {
		reset();
		for (int i = 0; i < W_START; i++) run_op(i);
		window_open = 1;
		/* The window's ops at a random moment of the migrator's loop (xorshift):
		 * a head start of up to two mean move_pages() durations. */
		seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5;
		long until = now_ns() + (long)(seed % 2048) * move_ns / 1024;
		while (now_ns() < until) {}
		int hit = pmfd >= 0 && window_seen(pmfd);
		for (int i = W_START + 1; i < W_FINISH; i++) {
			run_op(i);
			hit |= pmfd >= 0 && window_seen(pmfd);
		}
		close_window();
		for (int i = W_FINISH + 1; i < N_OPS; i++) run_op(i);
		hits += hit;
		int broke = judge((int)rounds, first, sizeof first);
		for (int k = 0; k < NPROF; k++)
			if (broke & (1 << k)) count[k]++;
		if (uffd >= 0) uffd_close();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	migrator_quit = 1;
	pthread_join(mt, NULL);
	printf("PTEDIFF-RACE %s rounds=%ld hits=%ld migrations=%ld seed=%u seconds=%.1f", NAME, rounds, hits, migrations, seed0, secs);
	for (int k = 0; k < NPROF; k++) printf(" %s=%ld", PROF[k], count[k]);
	printf("\n");
	for (int k = 0; k < NPROF; k++)
		if (first[k * 128]) printf("PTEDIFF-RACE-FIRST %s %s %s\n", NAME, PROF[k], first + k * 128);
"#;
