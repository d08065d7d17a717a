//! `ptediff emit-c`: a program as one standalone C reproducer (kselftest style,
//! libc + kernel UAPI headers only) that runs it on a real kernel and prints what
//! the kernel did next to what each kernel profile of the model predicts, and what
//! user space is owed (the contracts, [`crate::judge::contracts`]).
//!
//! Processes are real processes driven over pipes by a controller; every process
//! has its own userfaultfd (opened on first use) with a handler thread. Every
//! store writes a 16-bit content token (the model's), every load prints what it
//! read, and after each op the process that ran it prints pagemap's soft-dirty
//! bits. At the end each process reads `/proc/self/pagemap` (bits 55 soft-dirty,
//! 57 uffd-wp, 63 present) for all pages, then for every page loads, stores (a
//! uffd-wp message means `uffd`, a minor or major fault `fault`, SIGSEGV `segv`,
//! none of these `writable`) and reads bit 55 again. Output lines:
//!
//! ```text
//! PTEDIFF-BEGIN name
//! PTEDIFF-PM name 3 p0 mask=0001              pagemap bit 55 after step 3
//! PTEDIFF-LD name 4 p0 0 val=1                the load of step 4
//! PTEDIFF-PAGE name p0 3 obs=writable sd=1 uw=0 present=1 ld=1 sd2=1
//! PTEDIFF-PREDICT name v6.12 <the same key> <value>   per profile
//! PTEDIFF-OWED name v6.12 <the same key> <value>      what the contracts owe
//! PTEDIFF-END name
//! ```

pub mod kselftest;
pub mod race;

use std::fmt::Write as _;

use crate::judge::contracts::Contract;
use crate::judge::contracts::{self, ProbeObs};
use crate::judge::ghost::{self, Expect};
use crate::judge::world::World;
use crate::model::{self, Config, Entry, Kernel, State, StepResult, Token, VmFlags, MAX_PROCS, NPAGES};
use crate::op::{Advice, FileName, Op, Program, ScanMode, Target, UffdFeatures};

/// Profiles whose predictions a reproducer carries: the kernel's own restore.
pub const PROFILES: [Kernel; 4] = [Kernel::V61y, Kernel::V612, Kernel::V618, Kernel::V73];

/// Why a program cannot be turned into a deterministic C reproducer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrealizable(pub String);

impl std::fmt::Display for Unrealizable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configuration a kernel profile runs as (its own restore, every contract).
pub fn native(k: Kernel) -> Config {
    Config { kernel: k, ..Config::new(k.native_restore()) }
}

/// One profile's run of a program: every observation the C program makes (key →
/// value, keys as in the output lines), what the contracts owe there, and the
/// final state.
#[derive(Clone, Debug)]
pub struct Trace {
    pub kernel: Kernel,
    pub predicted: Vec<(String, String)>,
    pub owed: Vec<(String, String)>,
    pub probe: Vec<ProbeObs>,
    /// The world after the program (before the probe).
    pub last: World,
    /// The profile's kernel lacks a feature the program uses (`UFFD_FEATURE_WP_ASYNC
    /// v6.7`): the trace stops there, predicts nothing, and the reproducer reports
    /// "not on this kernel" on such a kernel.
    pub not_on: Option<String>,
}

fn owed_load(w: &World, p: usize, a: u8) -> String {
    match w.g.procs[p].expect[a as usize] {
        Expect::Unmapped => "val=-".into(),
        Expect::Private { token, maybe_zero: true, .. } => format!("val={token}|0"),
        Expect::Private { token, .. } => format!("val={token}"),
        Expect::File { shared: false, .. } => "val=-".into(),
        Expect::File { file, index, .. } => format!("val={}", w.g.file[file as usize][index as usize]),
    }
}

/// Does the program use transparent huge pages (MADV_HUGEPAGE, MADV_NOHUGEPAGE
/// or MADV_COLLAPSE)? Then its reproducer runs in THP mode: model page `i` is
/// 4 KiB page `i % 4` of the 2 MiB page `i / 4` (a model PMD is a real one),
/// the guest's THP settings are the model's (`enabled=madvise`,
/// `use_zero_page=0`, no khugepaged collapse), every op is followed by the
/// KPF_THP mask of its process, and a step where the model maps a THP checks
/// that the kernel did: if it did not (no 2 MiB page free), the reproducer
/// reports "not realized" instead of being judged.
pub fn thp_mode(program: &Program) -> bool {
    program
        .ops
        .iter()
        .any(|op| matches!(op, Op::Madvise { advice: Advice::HugePage | Advice::NoHugePage | Advice::Collapse, .. }))
}

/// Does the reproducer lay the pages out as THP mode does (each model PMD a
/// real 2 MiB PMD)? THP mode does, and so does a program that uses
/// PAGEMAP_SCAN: what it reports of an unpopulated page depends on whether the
/// PMD has a PTE table (`pagemap_scan_pte_hole()`), which the model decides per
/// model PMD.
pub fn thp_layout(program: &Program) -> bool {
    thp_mode(program) || program.ops.iter().any(|op| matches!(op, Op::PagemapScan { .. }))
}

/// The C defines of the layout and THP mode.
pub(super) fn layout_defines(program: &Program) -> &'static str {
    if thp_mode(program) {
        "#define PTEDIFF_THP 1\n"
    } else if thp_layout(program) {
        "#define PTEDIFF_THP_LAYOUT 1\n"
    } else {
        ""
    }
}

/// Pages of `q` mapped to a page of a large folio (what KPF_THP shows).
pub(super) fn thp_mask(s: &State, q: usize) -> u16 {
    let mut m = 0;
    for (a, e) in s.procs[q].pt.iter().enumerate() {
        if let Entry::Present { folio, .. } = *e {
            if s.is_large(folio) {
                m |= 1 << a;
            }
        }
    }
    m
}

/// Why the THP layout cannot run `op`, if it cannot.
pub(super) fn thp_refusal(op: &Op) -> Option<&'static str> {
    match *op {
        Op::Mmap { addr, len, target: Target::File { .. }, .. } if addr / 4 != (model::range(addr, len).1 - 1) / 4 => {
            Some("the THP layout spreads the pages over 2 MiB pages; file offsets across them would not follow")
        }
        Op::Mremap { addr, new, .. } if addr % 4 != new % 4 => {
            Some("THP mode: mremap to another offset within a 2 MiB page breaks the layout")
        }
        _ => None,
    }
}

/// Check that every op of the program can be realised deterministically, under
/// every profile; returns each profile's trace.
pub fn realizable(program: &Program) -> Result<Vec<Trace>, Unrealizable> {
    let (thp, layout) = (thp_mode(program), thp_layout(program));
    let mut traces = Vec::new();
    for k in PROFILES {
        let cfg = native(k);
        let mut w = World::new(Contract::all());
        let (mut predicted, mut owed) = (Vec::new(), Vec::new());
        let mut not_on = None;
        for (i, op) in program.ops.iter().enumerate() {
            let n = i + 1;
            let refuse = |why: &str| Err(Unrealizable(format!("step {n} `{op}`: {why}")));
            // What C cannot run at all (the op table's unrealizable kinds and
            // fields: c_op says why), then what this state makes unrepeatable.
            if let Err(why) = c_op(op, n, 0) {
                return refuse(why);
            }
            if let Some(why) = layout.then(|| thp_refusal(op)).flatten() {
                return refuse(why);
            }
            // The model's address space ends at page 16 (its TASK_SIZE, where
            // mremap() refuses a destination: EINVAL); a real process's goes on,
            // and from 6.17 remap_move() moves what lies inside (sample-16-1431).
            if let Op::Mremap { len, new, .. } = *op {
                if model::past_task_size(new, len) {
                    return refuse("the destination runs past the 16-page area (the model's TASK_SIZE only)");
                }
            }
            if let Op::Madvise { p, addr, len, advice: Advice::Collapse } = *op {
                // The model collapses private anonymous memory only.
                let (a, e) = model::range(addr, len);
                if w.k.procs[p as usize]
                    .vmas
                    .iter()
                    .any(|v| v.start < e && v.end > a && (!v.is_anonymous() || v.flags.contains(VmFlags::SHARED)))
                {
                    return refuse("MADV_COLLAPSE of file or shmem memory is not modelled");
                }
            }
            if let Some(why) = ksm_refusal(&w.k, op) {
                return refuse(why);
            }
            if let Op::Pageout { p, addr } = *op {
                // MADV_PAGEOUT leaves pages mapped more than once alone.
                if let Entry::Present { folio, .. } = w.k.procs[p as usize].pt[addr as usize] {
                    if folio != model::ZERO_PAGE && w.k.folio(folio).mapcount > 1 {
                        return refuse("MADV_PAGEOUT skips a page mapped more than once");
                    }
                }
            }
            let runs = op_runs(&w.k, op);
            if let (true, Op::PagemapScan { p, addr, len, mode }) = (runs, *op) {
                let (q, n) = (p as usize, i + 1);
                let (got, owe) = scan_prediction(&w, &cfg, q, addr, len, mode);
                predicted.push((format!("scan {n} p{q}"), got));
                owed.push((format!("scan {n} p{q}"), owe));
            }
            if let (true, Op::Madvise { p, addr, len, advice: advice @ (Advice::GuardInstall | Advice::GuardRemove) }) =
                (runs, *op)
            {
                let (q, n) = (p as usize, i + 1);
                if cfg.kernel.guard_regions() {
                    let mut k = w.k;
                    let (a, e) = model::range(addr, len);
                    let rc = match model::madvise(&mut k, &cfg, q, a, e, advice) {
                        Ok(()) => "0".to_string(),
                        Err(model::vma::Errno::Restart) => "hang".to_string(),
                        Err(err) => err.c_errno().to_string(),
                    };
                    predicted.push((format!("madv {n} p{q}"), format!("rc={rc}")));
                }
                if advice == Advice::GuardInstall {
                    owed.push((format!("madv {n} p{q}"), "returns=1".to_string()));
                }
            }
            match w.step(&cfg, op) {
                StepResult::UffdWp => return refuse("the store blocks on uffd-wp until a handler resolves it"),
                StepResult::Segv => return refuse("the access raises SIGSEGV"),
                StepResult::NotInKernel { feature, since } => {
                    not_on = Some(format!("{feature} {since}"));
                    break;
                }
                _ => {}
            }
            if !w.k.pending.is_empty() {
                return refuse("a migration is left in flight");
            }
            // What the process that ran the op prints after it.
            if let (true, Some(q)) = (runs, slot_of(op)) {
                let q = q as usize;
                if let Op::Read { addr, .. } = *op {
                    let got = ghost::loaded(&w.k, q, addr).map_or("-".to_string(), |t| t.to_string());
                    predicted.push((format!("ld {n} p{q} {addr}"), format!("val={got}")));
                    owed.push((format!("ld {n} p{q} {addr}"), owed_load(&w, q, addr)));
                }
                if w.k.procs[q].alive && !matches!(op, Op::Exit { .. }) {
                    let mm = &w.k.procs[q];
                    predicted.push((format!("pm {n} p{q}"), format!("mask={:04x}", ghost::pagemap_softdirty(mm))));
                    owed.push((format!("pm {n} p{q}"), format!("mask={:04x}", w.g.procs[q].changed)));
                    if thp {
                        predicted.push((format!("thp {n} p{q}"), format!("mask={:04x}", thp_mask(&w.k, q))));
                    }
                }
            }
        }
        if let Some(what) = &not_on {
            let predicted = vec![("noton".to_string(), format!("what={}", what.replace(' ', "_")))];
            let (owed, probe) = (Vec::new(), Vec::new());
            traces.push(Trace { kernel: k, predicted, owed, probe, last: w, not_on });
            continue;
        }
        let mut last = w;
        let probe = contracts::probe(&mut last, &cfg);
        for o in &probe {
            predicted.push((format!("p{} {}", o.process, o.page), o.render()));
            owed.push((format!("p{} {}", o.process, o.page), o.owed.render()));
        }
        traces.push(Trace { kernel: k, predicted, owed, probe, last: w, not_on });
    }
    Ok(traces)
}

/// What the PAGEMAP_SCAN of `(q, addr, len, mode)` prints on profile
/// `cfg` in world `w` (before the scan), and what it owes: its PTEDIFF-SCAN
/// line, and the pages it must report WRITTEN (the write watch's stores among
/// those it looks at).
fn scan_prediction(w: &World, cfg: &Config, q: usize, addr: u8, len: u8, mode: ScanMode) -> (String, String) {
    let mut k = w.k;
    k.events.clear();
    let (a, e) = model::range(addr, len);
    let (rc, rep) = if !cfg.kernel.pagemap_scan() {
        (-25, model::task_mmu::ScanReport::default())
    } else {
        let (rep, r) = model::task_mmu::do_pagemap_scan(&mut k, cfg, q, a, e, mode);
        (r.err().map_or(0, |err| err.c_errno()), rep)
    };
    let looked = k
        .events
        .iter()
        .find_map(|ev| match *ev {
            model::events::Event::Scanned { looked, .. } => Some(looked),
            _ => None,
        })
        .unwrap_or(0);
    let got = format!("rc={rc} {}", rep.render());
    (got, format!("written={:04x}", w.g.procs[q].written & looked))
}

/// What of KSM the model does not follow, if `op` meets it in state `s`: ksmd's
/// order across processes, a fork-shared page in a mergeable VMA, and reclaim,
/// MADV_FREE or migration of a KSM page.
fn ksm_refusal(s: &State, op: &Op) -> Option<&'static str> {
    let ksm_at = |p: u8, a: u8| {
        matches!(s.procs[p as usize].pt[a as usize],
            Entry::Present { folio, .. } if folio != model::ZERO_PAGE && s.folio(folio).flags.contains(model::FolioFlags::KSM))
    };
    match *op {
        Op::KsmMerge {} => {
            let mut procs = 0u8;
            for (p, mm) in s.procs.iter().enumerate().filter(|(_, m)| m.alive) {
                for v in mm.vmas.iter().filter(|v| v.flags.contains(VmFlags::MERGEABLE)) {
                    for a in v.start..v.end {
                        if let Entry::Present { folio, .. } = mm.pt[a as usize] {
                            if folio == model::ZERO_PAGE || !s.folio(folio).is_anon() {
                                continue;
                            }
                            procs |= 1 << p;
                            if s.folio(folio).mapcount > 1 && !s.folio(folio).flags.contains(model::FolioFlags::KSM) {
                                return Some("KSM merging of a page several processes share is not modelled");
                            }
                        }
                    }
                }
            }
            (procs.count_ones() > 1).then_some("ksmd's scan order across processes is not modelled")
        }
        Op::Pageout { p, addr } | Op::Migrate { p, addr } if ksm_at(p, addr) => {
            Some("reclaim and migration of a KSM page are not modelled")
        }
        Op::Madvise { p, addr, len, advice: Advice::Free } => {
            let (a, e) = model::range(addr, len);
            (a..e).any(|x| ksm_at(p, x)).then_some("MADV_FREE of a KSM page is not modelled")
        }
        _ => None,
    }
}

/// Does the C program run `op` (a process that exists; a fork into a free slot)?
fn op_runs(s: &State, op: &Op) -> bool {
    match *op {
        Op::Fork { parent, child, .. } => {
            s.procs[parent as usize].alive && !s.procs[child as usize].alive && parent != child
        }
        _ => slot_of(op).is_none_or(|sl| s.procs[sl as usize].alive),
    }
}

/// What a THP-mode step needs the kernel to have done, checked right after it
/// (a reproducer that fails a check is "not realized").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThpCheck {
    /// A fault mapped a THP: `page` is a page of a large folio.
    Faulted { page: u8 },
    /// A migration kept the THP whole: `page` is still one (the kernel splits a
    /// THP it cannot place on the other node).
    MigratedWhole { page: u8 },
    /// `move_pages()` migrated at all.
    Migrated,
    /// MADV_COLLAPSE collapsed where the model does: a failure for want of
    /// memory (ENOMEM) or a transient one (EAGAIN: a page locked or off the LRU)
    /// is not the model's to judge; any other shows in the KPF_THP line.
    Collapsed,
}

impl ThpCheck {
    /// The C statement that reports the failed check (`r`: the op's result).
    fn c_check(self, step: usize, op: &Op) -> String {
        // The op is in the comment above the check; the line names the step.
        let _ = op;
        let report = |cond: String, fmt: &str, args: &[String]| {
            let mut s =
                format!("if ({cond})\n\t\t\tnot_realized(\"PTEDIFF-NOTREALIZED %s step %d{fmt}\\n\", NAME, {step}");
            for a in args {
                let _ = write!(s, ",\n\t\t\t\t     {a}");
            }
            s.push_str(");");
            s
        };
        match self {
            ThpCheck::Faulted { page } => report(
                format!("!(thp_mask() & (1u << {page}))"),
                " page %d: %s",
                &[page.to_string(), "\"no THP where the model maps one (no 2 MiB page free?)\"".into()],
            ),
            ThpCheck::MigratedWhole { page } => report(
                format!("!(thp_mask() & (1u << {page}))"),
                " page %d: %s",
                &[page.to_string(), "\"the kernel split the THP it migrated (no 2 MiB page free there?)\"".into()],
            ),
            ThpCheck::Migrated => report(
                "r < 0".into(),
                ": %s (%ld)",
                &["\"move_pages() failed where the model migrates\"".into(), "r".into()],
            ),
            ThpCheck::Collapsed => report(
                "r == -1 && (errno == ENOMEM || errno == EAGAIN)".into(),
                ": %s (%s)",
                &["\"MADV_COLLAPSE failed for want of a 2 MiB page or transiently\"".into(), "strerror(errno)".into()],
            ),
        }
    }
}

/// The checks of each step (1-based) that every profile needs from the kernel:
/// a check the C program makes must hold on the kernel of whichever profile
/// runs it.
fn thp_checks(program: &Program) -> Vec<(usize, ThpCheck)> {
    let mut all: Option<Vec<(usize, ThpCheck)>> = None;
    for k in PROFILES {
        let cfg = native(k);
        let mut s = State::new();
        let mut out: Vec<(usize, ThpCheck)> = Vec::new();
        for (i, op) in program.ops.iter().enumerate() {
            let before: Vec<u8> = s.procs.iter().map(|m| m.huge).collect();
            let r = model::step(&mut s, &cfg, op);
            if matches!(op, Op::Migrate { .. }) && r == StepResult::Ok {
                out.push((i + 1, ThpCheck::Migrated));
            }
            let Some(q) = slot_of(op) else { continue };
            let q = q as usize;
            if !s.procs[q].alive || matches!(op, Op::Fork { .. }) {
                continue;
            }
            if let Op::Migrate { addr, .. } = *op {
                let large = matches!(s.procs[q].pt[addr as usize], Entry::Present { folio, .. } if s.is_large(folio));
                if large {
                    out.push((i + 1, ThpCheck::MigratedWhole { page: addr }));
                }
                continue;
            }
            let new = s.procs[q].huge & !before[q];
            if matches!(op, Op::Madvise { advice: Advice::Collapse, .. }) {
                if new != 0 {
                    out.push((i + 1, ThpCheck::Collapsed));
                }
                continue;
            }
            for g in 0..model::NPMDS as u8 {
                let a = g * model::HPAGE_PMD_NR;
                // A THP fault (not a move of an existing one).
                let fresh =
                    matches!(s.procs[q].pt[a as usize], Entry::Present { .. }) && !matches!(op, Op::Mremap { .. });
                if new & (1 << g) != 0 && fresh {
                    out.push((i + 1, ThpCheck::Faulted { page: a }));
                }
            }
        }
        all = Some(match all {
            None => out,
            Some(prev) => prev.into_iter().filter(|w| out.contains(w)).collect(),
        });
    }
    all.unwrap_or_default()
}

/// The content token each op's store writes (the model hands them out in order,
/// alike on every profile that runs the program: the newest has every feature).
fn store_tokens(program: &Program) -> Vec<Token> {
    let cfg = native(PROFILES[PROFILES.len() - 1]);
    let mut s = State::new();
    program
        .ops
        .iter()
        .map(|op| {
            model::step(&mut s, &cfg, op);
            if matches!(op, Op::Write { .. } | Op::WriteVal { .. }) {
                s.next_token
            } else {
                0
            }
        })
        .collect()
}

fn c_prot(p: crate::op::Prot) -> String {
    let mut v = Vec::new();
    if p.read() {
        v.push("PROT_READ");
    }
    if p.write() {
        v.push("PROT_WRITE");
    }
    if p.exec() {
        v.push("PROT_EXEC");
    }
    if v.is_empty() {
        "PROT_NONE".into()
    } else {
        v.join(" | ")
    }
}

/// The slot an op runs in (`None`: the controller): its process (fork: the parent).
pub(crate) fn slot_of(op: &Op) -> Option<u8> {
    op.process()
}

fn c_len(addr: u8, len: u8) -> u8 {
    (addr + len).min(NPAGES as u8) - addr
}

/// Why a real kernel cannot run `op` deterministically from user space, if it cannot.
pub fn refusal(op: &Op) -> Option<&'static str> {
    c_op(op, 0, 0).err()
}

/// The C statement(s) of one op, run in its process, or why a real kernel
/// cannot run it deterministically from user space (the op table's
/// `realizable` column says the same of each kind; a test checks they agree).
pub(crate) fn c_op(op: &Op, step: usize, token: Token) -> Result<String, &'static str> {
    Ok(match *op {
        Op::Mmap { target: Target::File { file: FileName::Ext4, .. }, .. } => {
            return Err("ext4 files are not available in the test system")
        }
        Op::Mmap { addr, len, prot, target, .. } => {
            let n = c_len(addr, len);
            let (flags, fd, off) = match target {
                Target::Anon => ("MAP_PRIVATE | MAP_ANONYMOUS".to_string(), "-1".to_string(), 0),
                Target::SharedAnon => ("MAP_SHARED | MAP_ANONYMOUS".to_string(), "-1".to_string(), 0),
                Target::File { file, shared, pgoff } => {
                    let fd = if file == FileName::Ramfs { "ramfd" } else { "memfd" };
                    let m = if shared { "MAP_SHARED" } else { "MAP_PRIVATE" };
                    (m.to_string(), fd.to_string(), pgoff)
                }
            };
            format!(
                "r = (long)mmap(PG({addr}), SPAN({addr}, {n}), {},\n\t\t\t       {flags} | MAP_FIXED, {fd}, {off} * PAGE);\n\t\tif (r == -1L)\n\t\t\tr = -errno;",
                c_prot(prot)
            )
        }
        Op::Munmap { addr, len, .. } => format!("r = munmap(PG({addr}), SPAN({addr}, {}));", c_len(addr, len)),
        Op::Mprotect { addr, len, prot, .. } => {
            format!("r = mprotect(PG({addr}), SPAN({addr}, {}), {});", c_len(addr, len), c_prot(prot))
        }
        Op::Madvise { addr, len, advice: advice @ (Advice::GuardInstall | Advice::GuardRemove), .. } => format!(
            "r = guard_madvise({step}, PG({addr}), SPAN({addr}, {}), {});",
            c_len(addr, len),
            (advice == Advice::GuardInstall) as u8
        ),
        Op::Madvise { addr, len, advice, .. } => {
            format!("r = madvise(PG({addr}), SPAN({addr}, {}), {});", c_len(addr, len), advice.name())
        }
        Op::Mlock { addr, len, .. } => format!("r = mlock(PG({addr}), SPAN({addr}, {}));", c_len(addr, len)),
        Op::Munlock { addr, len, .. } => format!("r = munlock(PG({addr}), SPAN({addr}, {}));", c_len(addr, len)),
        Op::Mremap { addr, len, new, .. } => format!(
            "r = (long)mremap(PG({addr}), SPAN({addr}, {n}), SPAN({addr}, {n}),\n\t\t\t\t MREMAP_MAYMOVE | MREMAP_FIXED, PG({new}));\n\t\tif (r == -1L)\n\t\t\tr = -errno;",
            n = c_len(addr, len)
        ),
        Op::Read { p, addr } => format!(
            "r = LOAD16(PG({addr}));\n\t\tprintf(\"PTEDIFF-LD %s {step} p{p} {addr} val=%ld\\n\", NAME, r);\n\t\towe_ld({step}, {p}, {addr}, r);"
        ),
        Op::Write { addr, .. } | Op::WriteVal { addr, .. } => format!("STORE16(PG({addr}), {token});\n\t\tr = 0;"),
        Op::KsmMerge {} => "r = ksm_merge();".into(),
        Op::ClearRefs { .. } => "r = write_clear_refs();".into(),
        Op::UffdRegister { addr, len, .. } => format!("r = uffd_register(PG({addr}), SPAN({addr}, {}));", c_len(addr, len)),
        Op::UffdUnregister { addr, len, .. } => format!("r = uffd_unregister(PG({addr}), SPAN({addr}, {}));", c_len(addr, len)),
        Op::UffdWp { addr, len, .. } => format!("r = uffd_wp(PG({addr}), SPAN({addr}, {}), 1);", c_len(addr, len)),
        Op::UffdUnwp { addr, len, .. } => format!("r = uffd_wp(PG({addr}), SPAN({addr}, {}), 0);", c_len(addr, len)),
        Op::UffdClose { .. } => "r = uffd_close();".into(),
        Op::UffdApi { features, .. } => format!(
            "r = UFFD_API_NAMED({});",
            match features {
                UffdFeatures::Sync => "0",
                UffdFeatures::WpUnpopulated => "UFFD_FEATURE_WP_UNPOPULATED",
                UffdFeatures::WpAsync => "UFFD_FEATURE_WP_ASYNC",
            }
        ),
        Op::PagemapScan { addr, len, mode, .. } => format!(
            "r = pagemap_scan({step}, PG({addr}), SPAN({addr}, {}), {});",
            c_len(addr, len),
            (mode == ScanMode::WpWritten) as u8
        ),
        Op::Fork { event_fork: true, .. } => {
            return Err("UFFD_FEATURE_EVENT_FORK hands the child's uffd to the parent; not supported")
        }
        Op::Fork { child, .. } => format!("r = do_fork({child});"),
        Op::Exit { .. } => "ack(0);\n\t\t_exit(0);".into(),
        Op::Migrate { addr, .. } => format!("r = migrate(PG({addr}));"),
        Op::Pageout { addr, .. } => format!("r = madvise(PG({addr}), PAGE, 21 /* MADV_PAGEOUT */);"),
        Op::Swapoff {} => "r = swap_cycle();".into(),
        Op::MigrateStart { .. } | Op::MigrateFinish { .. } => {
            return Err("user space cannot hold a migration between unmap and restore")
        }
        Op::Writeback { .. } => return Err("writeback needs an ext4 file, which the test system lacks"),
        Op::NumaHint { .. } => return Err("NUMA hinting scans cannot be triggered on demand"),
    })
}

pub(crate) const PRELUDE: &str = include_str!("prelude.c");

const SERVE: &str = include_str!("serve.c");

/// What a C program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour<'a> {
    /// `emit-c`: it prints what the kernel did; kernel-check judges.
    Reproducer,
    /// A kselftest that judges itself ([`kselftest`]), for this tree.
    Kselftest(&'a kselftest::Tree),
}

/// Generate the C reproducer. `name` labels the output lines.
pub fn emit_c(program: &Program, name: &str) -> Result<String, Unrealizable> {
    emit_c_as(program, name, Flavour::Reproducer)
}

/// The C program of a deterministic reproducer, as `flavour` says.
pub(crate) fn emit_c_as(program: &Program, name: &str, flavour: Flavour) -> Result<String, Unrealizable> {
    let traces = realizable(program)?;
    let tokens = store_tokens(program);
    let mut c = String::new();
    let thp = thp_mode(program);
    match flavour {
        Flavour::Reproducer => {
            let _ = writeln!(
                c,
                "// SPDX-License-Identifier: GPL-2.0\n/*\n * Generated by `ptediff emit-c` from {name}.\n * Build: gcc -static -O1 -pthread."
            );
            let _ = writeln!(c, " * Program:");
            for op in &program.ops {
                let _ = writeln!(c, " *   {op}");
            }
            let _ = writeln!(c, " */");
            c.push_str(layout_defines(program));
            c.push_str(PRELUDE);
        }
        Flavour::Kselftest(tree) => {
            c.push_str(&kselftest::c_head(program, name, false, tree));
            c.push_str(&kselftest::c_owed(&traces, program)?);
        }
    }
    let checks = if thp { thp_checks(program) } else { Vec::new() };
    // Per-op functions; every op run in a process is followed by its pagemap line.
    let _ = writeln!(
        c,
        "\nstatic long do_fork(int child);\n\nstatic void run_op(int i)\n{{\n\tlong r = 0;\n\n\tswitch (i) {{"
    );
    for (i, op) in program.ops.iter().enumerate() {
        let mut body = c_op(op, i + 1, tokens[i]).expect("realizable");
        // A step the model needs a THP (or a migration) for: did the kernel give it?
        for (_, check) in checks.iter().filter(|(n, _)| *n == i + 1) {
            let _ = write!(body, "\n\t\t{}", check.c_check(i + 1, op));
        }
        let _ = writeln!(c, "\tcase {i}: /* {op} */\n\t\t{body}\n\t\tbreak;");
    }
    let thp_line = if thp { "\n\tthp_line(i + 1);" } else { "" };
    let _ = writeln!(c, "\t}}\n\t(void)r;\n\tpm_line(i + 1);{thp_line}\n\tack(r);\n}}");
    c.push_str(SERVE);
    if thp {
        c.push_str("\tthp_setup();\n");
    }
    // Ops on a process that does not exist (or a fork into a taken slot) fail in
    // the model without doing anything; there is nobody to send them to.
    let mut sim = State::new();
    let cfg = native(PROFILES[PROFILES.len() - 1]);
    for (i, op) in program.ops.iter().enumerate() {
        match slot_of(op) {
            _ if !op_runs(&sim, op) => {
                let _ = writeln!(c, "\t/* {op}: no such process, nothing to do */");
            }
            Some(sl) if matches!(op, Op::Exit { .. }) => {
                let _ = writeln!(c, "\tsend({sl}, {i});\n\twait_gone({sl});");
            }
            Some(sl) => {
                let _ = writeln!(c, "\tsend({sl}, {i});");
            }
            None => {
                let body = c_op(op, i + 1, 0).expect("realizable");
                let _ = writeln!(c, "\t{{\n\t\tlong r;\n\n\t\t{body}\n\t\t(void)r;\n\t}}");
            }
        }
        model::step(&mut sim, &cfg, op);
    }
    for p in 0..MAX_PROCS {
        if sim.procs[p].alive {
            let _ = writeln!(c, "\tsend({p}, -1);");
        }
    }
    if let Flavour::Kselftest(_) = flavour {
        c.push_str("\ttest_verdict();\n");
    }
    // Predictions and what is owed, per profile (a kselftest judges itself).
    for t in traces.iter().filter(|_| flavour == Flavour::Reproducer) {
        for (key, v) in &t.predicted {
            let _ = writeln!(c, "\tprintf(\"PTEDIFF-PREDICT %s {} {key} {v}\\n\", NAME);", t.kernel.name());
        }
        for (key, v) in &t.owed {
            let _ = writeln!(c, "\tprintf(\"PTEDIFF-OWED %s {} {key} {v}\\n\", NAME);", t.kernel.name());
        }
    }
    if thp {
        c.push_str("\tthp_restore();\n");
    }
    c.push_str(
        r#"	for (int s = 0; s < 3; s++) {
		int q = -2;

		if (write(cmdp[s][1], &q, sizeof(q)) < 0)
			continue;
	}
	printf("PTEDIFF-END %s\n", NAME);
"#,
    );
    c.push_str(match flavour {
        Flavour::Reproducer => "\treturn 0;\n}\n",
        Flavour::Kselftest(_) => "\tksft_finished();\n}\n",
    });
    Ok(c)
}
