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

use super::{c_op, native, store_tokens, Flavour, Unrealizable, PRELUDE, PROFILES};

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
        Op::UffdApi { .. } | Op::PagemapScan { .. } => Some("race mode has no uffd features or PAGEMAP_SCAN"),
        Op::WriteVal { .. } | Op::KsmMerge {} => Some("race mode has no KSM"),
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
    emit_race_as(program, name, rounds, seconds, Flavour::Reproducer)
}

/// The race reproducer, as `flavour` says.
pub(crate) fn emit_race_as(
    program: &Program,
    name: &str,
    rounds: u32,
    seconds: u32,
    flavour: Flavour,
) -> Result<String, Unrealizable> {
    let w = window(program)?;
    let toks = store_tokens(program);
    let mut c = String::new();
    let thp = super::thp_mode(program);
    match flavour {
        Flavour::Reproducer => {
            let _ = writeln!(
                c,
                "// SPDX-License-Identifier: GPL-2.0\n/*\n * Generated by `ptediff emit-c --race` from {name}.\n * Build: gcc -static -O1 -pthread."
            );
            let _ = writeln!(c, " * Program (the window: steps {}..{}):", w.start + 1, w.finish + 1);
            for op in &program.ops {
                let _ = writeln!(c, " *   {op}");
            }
            let _ = writeln!(c, " */");
            if thp {
                c.push_str("#define PTEDIFF_THP 1\n");
            }
            c.push_str(PRELUDE);
        }
        Flavour::Kselftest(tree) => c.push_str(&super::kselftest::c_head(program, name, true, tree)),
    }
    let _ = writeln!(c, "#define WINDOW_PAGE {}", w.page);
    let _ = writeln!(c, "#define NPROF {}", PROFILES.len());
    // One function per op (in this process); migrate_start/finish are the window.
    let _ = writeln!(c, "\nstatic void run_op(int i)\n{{\n\tlong r = 0;\n\n\tswitch (i) {{");
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
        owed_ld.push(ld);
        owed_sd.push(sd);
        owed_trap.push(trap);
    }
    let names: Vec<String> = PROFILES.iter().map(|k| format!("\"{}\"", k.name())).collect();
    let _ = writeln!(c, "static const char *PROF[NPROF] = {{ {} }};", names.join(", "));
    c.push_str(&c_table("static const long OWED_LD[NPROF][NPAGES]", &owed_ld));
    c.push_str(&c_table("static const int OWED_SD[NPROF][NPAGES]", &owed_sd));
    c.push_str(&c_table("static const int OWED_TRAP[NPROF][NPAGES]", &owed_trap));
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
        let end: Vec<Vec<String>> =
            layouts.iter().map(|l| l.end.iter().map(|m| format!("0x{m:04x}")).collect()).collect();
        c.push_str("#define WINDOW_THP 1\n");
        let _ = writeln!(c, "static const unsigned int THP_START[NPROF] = {{ {} }};", start.join(", "));
        c.push_str(&c_table("static const unsigned int THP_END[NPROF][3]", &end));
    }
    if let Flavour::Kselftest(_) = flavour {
        c.push_str(&super::kselftest::c_common(program));
    }
    c.push_str(RACE_MAIN);
    for (k, win, bef, aft) in preds.into_iter().filter(|_| flavour == Flavour::Reproducer) {
        let _ = writeln!(
            c,
            "\tprintf(\"PTEDIFF-RACE-PREDICT %s {} window={} before={} after={}\\n\", NAME);",
            k.name(),
            win.letters(),
            bef.letters(),
            aft.letters()
        );
    }
    c.push_str("\tprintf(\"PTEDIFF-END %s\\n\", NAME);\n");
    c.push_str(match flavour {
        Flavour::Reproducer => "\treturn 0;\n}\n",
        Flavour::Kselftest(_) => "\tksft_finished();\n}\n",
    });
    Ok(c)
}

/// A two-dimensional C array, one row per profile, eight values a line.
fn c_table(decl: &str, rows: &[Vec<String>]) -> String {
    let mut s = format!("{decl} = {{\n");
    for row in rows {
        let lines: Vec<String> = row.chunks(8).map(|ch| ch.join(", ")).collect();
        let _ = writeln!(s, "\t{{ {} }},", lines.join(",\n\t  "));
    }
    s.push_str("};\n");
    s
}

/// The C of one op in race mode: as in the deterministic reproducer, but loads
/// print nothing (the probe judges the round).
fn race_op(op: &Op, step: usize, token: Token) -> String {
    match *op {
        Op::Read { addr, .. } => format!("r = LOAD16(PG({addr}));"),
        _ => c_op(op, step, token).expect("checked by window()"),
    }
}

const RACE_MAIN: &str = include_str!("race.c");
