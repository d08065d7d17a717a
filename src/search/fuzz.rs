//! The built-in fuzz engine (stable toolchain, no libFuzzer): state-aware random
//! generation plus mutation of programs that reached new model behaviour, every
//! divergence minimized and deduplicated by signature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::check::{analyze, Kind, Pair, Runner, Signature};
use crate::minimize::minimize;
use crate::model::{self, Entry, State, StepResult, MAX_PROCS, NPAGES};
use crate::op::{Advice, FileName, Op, Program, Prot, Target};

/// Engine options.
#[derive(Clone, Debug)]
pub struct Options {
    pub pair: Pair,
    pub seed: u64,
    pub max_ops: usize,
    pub time: Duration,
    /// Stop after this many programs (None: until `time`).
    pub max_programs: Option<u64>,
    /// Fresh programs have exactly `max_ops` ops (benchmarks) instead of 1..=max_ops.
    pub fixed_len: bool,
    /// Also report oracle violations (unsafe PTEs both variants agree on).
    pub oracle: bool,
    /// Only generate programs `emit-c` can turn into C reproducers.
    pub realizable: bool,
}

/// A distinct divergence (or oracle violation) found by the engine.
#[derive(Clone, Debug)]
pub struct Found {
    pub signature: Signature,
    /// Provenance title of the minimized program's finding.
    pub title: String,
    /// Minimized program.
    pub program: Program,
    /// Programs that hit this signature.
    pub hits: u64,
    /// When it was first found, since the start.
    pub at: Duration,
}

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub programs: u64,
    pub steps: u64,
    pub elapsed: Duration,
    pub pool: usize,
}

/// Weighted op-kind table for generation.
const WEIGHTS: [(u8, u32); 24] = [
    (0, 12), // mmap
    (1, 2),  // munmap
    (2, 6),  // mprotect
    (3, 5),  // madvise
    (4, 2),  // mlock
    (5, 2),  // munlock
    (6, 2),  // mremap
    (7, 6),  // read
    (8, 10), // write
    (9, 5),  // clear_refs
    (10, 5), // uffd_register
    (11, 2), // uffd_unregister
    (12, 5), // uffd_wp
    (13, 3), // uffd_unwp
    (14, 1), // uffd_close
    (15, 3), // fork
    (16, 1), // exit
    (17, 8), // migrate
    (18, 3), // migrate_start
    (19, 3), // migrate_finish
    (20, 4), // pageout
    (21, 2), // swapoff
    (22, 3), // writeback
    (23, 3), // numa_hint
];

const TOTAL_WEIGHT: u32 = {
    let mut t = 0;
    let mut i = 0;
    while i < WEIGHTS.len() {
        t += WEIGHTS[i].1;
        i += 1;
    }
    t
};

fn pick_kind(rng: &mut SmallRng) -> u8 {
    let mut x = rng.gen_range(0..TOTAL_WEIGHT);
    for &(k, w) in &WEIGHTS {
        if x < w {
            return k;
        }
        x -= w;
    }
    0
}

fn alive_proc(rng: &mut SmallRng, s: &State) -> u8 {
    let alive = (0..MAX_PROCS).filter(|&p| s.procs[p].alive).count() as u8;
    if alive == 0 {
        return 0;
    }
    let mut k = rng.gen_range(0..alive);
    for p in 0..MAX_PROCS as u8 {
        if s.procs[p as usize].alive {
            if k == 0 {
                return p;
            }
            k -= 1;
        }
    }
    0
}

/// A page, usually inside a VMA of `p` (or carrying a migration entry for
/// migrate_finish).
fn pick_page(rng: &mut SmallRng, s: &State, p: u8) -> u8 {
    let mm = &s.procs[p as usize];
    if !mm.vmas.is_empty() && rng.gen_ratio(7, 8) {
        let v = mm.vmas[rng.gen_range(0..mm.vmas.len())];
        return rng.gen_range(v.start..v.end);
    }
    rng.gen_range(0..NPAGES as u8)
}

fn pick_prot(rng: &mut SmallRng) -> Prot {
    match rng.gen_range(0..10) {
        0..=5 => Prot(Prot::R | Prot::W),
        6..=7 => Prot(Prot::R),
        _ => Prot(rng.gen_range(0..8)),
    }
}

/// Generate one op that makes sense in state `s` most of the time.
pub fn gen_op(rng: &mut SmallRng, s: &State) -> Op {
    gen_op_with(rng, s, false)
}

/// Op kinds `emit-c` cannot realise (migrate_start/finish, numa_hint, writeback).
const UNREALIZABLE_KINDS: [u8; 4] = [18, 19, 22, 23];

/// [`gen_op`], optionally only ops a real kernel can run deterministically from
/// user space (no two-step migration, NUMA hinting, ext4, writeback, EVENT_FORK).
pub fn gen_op_with(rng: &mut SmallRng, s: &State, realizable: bool) -> Op {
    let op = gen_op_inner(rng, s);
    if !realizable {
        return op;
    }
    match op {
        _ if UNREALIZABLE_KINDS.contains(&op.kind()) => {
            Op::Migrate { p: alive_proc(rng, s), addr: pick_page(rng, s, 0) }
        }
        Op::Mmap { p, addr, len, prot, target: Target::File { file: FileName::Ext4, shared, pgoff } } => {
            Op::Mmap { p, addr, len, prot, target: Target::File { file: FileName::Memfd, shared, pgoff } }
        }
        Op::Fork { parent, child, .. } => Op::Fork { parent, child, event_fork: false },
        op => op,
    }
}

/// A whole VMA of `p` (start, length up to 4), so an op that changes its flags can
/// merge it with a neighbour: the kernel merges only ranges that reach a VMA's
/// edges, which a random page and length rarely do.
fn pick_whole_vma(rng: &mut SmallRng, s: &State, p: u8) -> Option<(u8, u8)> {
    let mm = &s.procs[p as usize];
    if mm.vmas.is_empty() {
        return None;
    }
    let v = mm.vmas[rng.gen_range(0..mm.vmas.len())];
    Some((v.start, (v.end - v.start).min(4)))
}

fn gen_op_inner(rng: &mut SmallRng, s: &State) -> Op {
    let kind = pick_kind(rng);
    let p = alive_proc(rng, s);
    let len = if rng.gen_ratio(3, 4) { 1 } else { rng.gen_range(1..=4) };
    // Ops that change VMA flags take a whole VMA half of the time.
    if matches!(kind, 2..=5 | 10 | 11) && rng.gen_ratio(1, 2) {
        if let Some((addr, len)) = pick_whole_vma(rng, s, p) {
            return match kind {
                2 => Op::Mprotect { p, addr, len, prot: pick_prot(rng) },
                3 => Op::Madvise { p, addr, len, advice: Advice::ALL[rng.gen_range(0..8)] },
                4 => Op::Mlock { p, addr, len },
                5 => Op::Munlock { p, addr, len },
                10 => Op::UffdRegister { p, addr, len },
                _ => Op::UffdUnregister { p, addr, len },
            };
        }
    }
    match kind {
        0 => {
            // Often right next to an existing VMA, so merges happen.
            let mm = &s.procs[p as usize];
            let addr = if !mm.vmas.is_empty() && rng.gen_ratio(1, 2) {
                let v = mm.vmas[rng.gen_range(0..mm.vmas.len())];
                if rng.gen_bool(0.5) || v.start < len {
                    v.end.min(NPAGES as u8 - 1)
                } else {
                    v.start - len
                }
            } else {
                rng.gen_range(0..NPAGES as u8)
            };
            let target = match rng.gen_range(0..10) {
                0..=1 => Target::Anon,
                2 => Target::SharedAnon,
                t => {
                    let file = match t {
                        3..=6 => FileName::Memfd,
                        7..=8 => FileName::Ext4,
                        _ => FileName::Ramfs,
                    };
                    let pgoff = if rng.gen_ratio(7, 8) { addr } else { rng.gen_range(0..NPAGES as u8) };
                    Target::File { file, shared: rng.gen_ratio(3, 4), pgoff }
                }
            };
            Op::Mmap { p, addr, len, prot: pick_prot(rng), target }
        }
        1 => Op::Munmap { p, addr: pick_page(rng, s, p), len },
        2 => Op::Mprotect { p, addr: pick_page(rng, s, p), len, prot: pick_prot(rng) },
        3 => Op::Madvise { p, addr: pick_page(rng, s, p), len, advice: Advice::ALL[rng.gen_range(0..8)] },
        4 => Op::Mlock { p, addr: pick_page(rng, s, p), len },
        5 => Op::Munlock { p, addr: pick_page(rng, s, p), len },
        6 => Op::Mremap { p, addr: pick_page(rng, s, p), len, new: rng.gen_range(0..NPAGES as u8) },
        7 => Op::Read { p, addr: pick_page(rng, s, p) },
        8 => Op::Write { p, addr: pick_page(rng, s, p) },
        9 => Op::ClearRefs { p },
        10 => Op::UffdRegister { p, addr: pick_page(rng, s, p), len },
        11 => Op::UffdUnregister { p, addr: pick_page(rng, s, p), len },
        12 => Op::UffdWp { p, addr: pick_page(rng, s, p), len },
        13 => Op::UffdUnwp { p, addr: pick_page(rng, s, p), len },
        14 => Op::UffdClose { p },
        15 => {
            let child = (0..MAX_PROCS as u8).find(|&c| !s.procs[c as usize].alive).unwrap_or(1);
            Op::Fork { parent: p, child, event_fork: rng.gen_ratio(1, 4) }
        }
        16 => Op::Exit { p: if rng.gen_ratio(3, 4) && p == 0 { 1 } else { p } },
        17 => Op::Migrate { p, addr: pick_page(rng, s, p) },
        18 => Op::MigrateStart { p, addr: pick_page(rng, s, p) },
        19 => {
            let mm = &s.procs[p as usize];
            let mig = (0..NPAGES).find(|&i| matches!(mm.pt[i], Entry::Migration { .. }));
            Op::MigrateFinish { p, addr: mig.map_or_else(|| pick_page(rng, s, p), |i| i as u8) }
        }
        20 => Op::Pageout { p, addr: pick_page(rng, s, p) },
        21 => Op::Swapoff,
        22 => Op::Writeback { p, addr: pick_page(rng, s, p) },
        _ => Op::NumaHint { p, addr: pick_page(rng, s, p) },
    }
}

/// Novelty features: (op kind, result, entry class at its page) per step.
struct Coverage {
    seen: Vec<u64>,
}

impl Coverage {
    fn new() -> Coverage {
        Coverage { seen: vec![0; 1 << 10] }
    }
    /// Mark a feature; true if new.
    fn mark(&mut self, f: u32) -> bool {
        let f = (f as usize) & ((1 << 16) - 1);
        let (w, b) = (f / 64, f % 64);
        let new = self.seen[w] & (1 << b) == 0;
        self.seen[w] |= 1 << b;
        new
    }
}

fn feature(op: &Op, r: StepResult, s: &State, cfg: &model::Config) -> u32 {
    let (p, addr) = match *op {
        Op::Mmap { p, addr, .. }
        | Op::Munmap { p, addr, .. }
        | Op::Mprotect { p, addr, .. }
        | Op::Madvise { p, addr, .. }
        | Op::Mlock { p, addr, .. }
        | Op::Munlock { p, addr, .. }
        | Op::Mremap { p, addr, .. }
        | Op::Read { p, addr }
        | Op::Write { p, addr }
        | Op::UffdRegister { p, addr, .. }
        | Op::UffdUnregister { p, addr, .. }
        | Op::UffdWp { p, addr, .. }
        | Op::UffdUnwp { p, addr, .. }
        | Op::Migrate { p, addr }
        | Op::MigrateStart { p, addr }
        | Op::MigrateFinish { p, addr }
        | Op::Pageout { p, addr }
        | Op::Writeback { p, addr }
        | Op::NumaHint { p, addr } => (p, addr),
        _ => (0, 0),
    };
    let mm = &s.procs[p as usize];
    let e = mm.pt[addr as usize];
    let ec: u32 = match e {
        Entry::None => 0,
        Entry::Present { bits, .. } => 1 + bits.bits() as u32,
        Entry::Migration { bits, .. } => 70 + bits.bits() as u32,
        Entry::Swap { bits, .. } => 110 + bits.bits() as u32,
        Entry::Marker => 150,
    };
    let vc: u32 = mm.vma(addr).map_or(0, |v| 1 + (v.flags.bits() as u32 & 0xff) + ((v.prot.bits() as u32) << 8));
    // Is the VMA's vm_page_prot what vma_set_page_prot() would compute now? A stale
    // one (left by a merge, an unregister, ...) is where restores and faults go wrong.
    let stale = mm.vma(addr).is_some_and(|v| {
        let mut w = *v;
        model::prot::vma_set_page_prot(s, cfg, &mut w, model::Why::Unknown);
        w.prot != v.prot
    }) as u32;
    let h = (op.kind() as u32) ^ ((r as u32) << 5) ^ (ec << 7) ^ vc.wrapping_mul(0x9e37_79b1) ^ (stale << 31);
    h.wrapping_mul(0x85eb_ca6b) >> 16
}

/// What a run hit: a divergence and/or (with the oracle on) a violation.
#[derive(Clone, Copy, Default)]
struct Hit {
    divergence: bool,
    violation: bool,
}

impl Hit {
    fn any(self) -> bool {
        self.divergence || self.violation
    }
}

#[inline]
fn step_one(r: &mut Runner, op: &Op, oracle: bool, cov: &mut Coverage, new_cov: &mut bool) -> Hit {
    let (res, divergence) = r.step(op);
    *new_cov |= cov.mark(feature(op, res, &r.a, &r.pair.a));
    Hit { divergence, violation: oracle && r.violation() }
}

fn finish_one(r: &mut Runner, oracle: bool) -> Hit {
    let divergence = r.finish();
    Hit { divergence, violation: oracle && (r.violation() || r.end_violation()) }
}

/// Run a program on both sides, feeding coverage. A divergence does not end the
/// run: its harm may come later (`analyze` judges the whole program); an oracle
/// violation does.
fn run(r: &mut Runner, program: &Program, oracle: bool, cov: &mut Coverage, new_cov: &mut bool) -> Hit {
    r.reset();
    let mut hit = Hit::default();
    for op in &program.ops {
        let h = step_one(r, op, oracle, cov, new_cov);
        hit.divergence |= h.divergence;
        if h.violation {
            hit.violation = true;
            return hit;
        }
    }
    let h = finish_one(r, oracle);
    Hit { divergence: hit.divergence || h.divergence, violation: h.violation }
}

/// Generate a fresh program against the live state of side a, checking as it goes
/// (the program ends at the first hit).
fn generate(
    rng: &mut SmallRng,
    r: &mut Runner,
    n: usize,
    opts: &Options,
    cov: &mut Coverage,
    new_cov: &mut bool,
) -> (Program, Hit) {
    let oracle = opts.oracle;
    r.reset();
    let mut ops = Vec::with_capacity(n);
    let mut hit = Hit::default();
    for _ in 0..n {
        let op = gen_op_with(rng, &r.a, opts.realizable);
        let h = step_one(r, &op, oracle, cov, new_cov);
        ops.push(op);
        hit.divergence |= h.divergence;
        if h.violation {
            hit.violation = true;
            return (Program::new(ops), hit);
        }
    }
    let h = finish_one(r, oracle);
    (Program::new(ops), Hit { divergence: hit.divergence || h.divergence, violation: h.violation })
}

/// Mutate a program: replace, insert, delete or splice ops (new ops are generated
/// against the state reached by the prefix).
fn mutate(
    rng: &mut SmallRng,
    pair: &Pair,
    prog: &Program,
    pool: &[Program],
    max_ops: usize,
    realizable: bool,
) -> Program {
    let mut ops = prog.ops.clone();
    // New ops are generated against the state the unchanged prefix reaches: one
    // replay up to the first edit point; later edits go at or after it.
    let first = if ops.is_empty() { 0 } else { rng.gen_range(0..ops.len()) };
    let mut prefix = State::new();
    for op in &ops[..first] {
        model::step(&mut prefix, &pair.a, op);
    }
    for _ in 0..rng.gen_range(1..=3) {
        let i = if ops.len() <= first { first.min(ops.len()) } else { rng.gen_range(first..ops.len()) };
        match rng.gen_range(0..4) {
            0 if i < ops.len() => ops[i] = gen_op_with(rng, &prefix, realizable),
            1 if ops.len() < max_ops => ops.insert(i, gen_op_with(rng, &prefix, realizable)),
            2 if ops.len() > 1 && i < ops.len() => {
                ops.remove(i);
            }
            _ => {
                let other = &pool[rng.gen_range(0..pool.len())];
                if !other.ops.is_empty() {
                    let j = rng.gen_range(0..other.ops.len());
                    ops.truncate(i);
                    ops.extend_from_slice(&other.ops[j..]);
                    ops.truncate(max_ops);
                }
            }
        }
    }
    Program::new(ops)
}

/// Run the engine until time, program count, or `stop`. `on_found` is called for
/// each new signature (already minimized); `on_progress` about once a second.
pub fn fuzz(
    opts: &Options,
    stop: &AtomicBool,
    mut on_found: impl FnMut(&Found, &Stats),
    mut on_progress: impl FnMut(&Stats, usize),
) -> (Vec<Found>, Stats) {
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut cov = Coverage::new();
    let mut pool: Vec<Program> = Vec::new();
    let mut found: HashMap<Signature, usize> = HashMap::new();
    let mut list: Vec<Found> = Vec::new();
    let mut stats = Stats::default();
    let start = Instant::now();
    let mut next_report = Duration::from_secs(1);
    let mut runner = Runner::new(&opts.pair);
    loop {
        if stats.programs % 256 == 0 {
            stats.elapsed = start.elapsed();
            if stats.elapsed >= opts.time || stop.load(Ordering::Relaxed) {
                break;
            }
            if stats.elapsed >= next_report {
                next_report += Duration::from_secs(1);
                stats.pool = pool.len();
                on_progress(&stats, list.len());
            }
        }
        if opts.max_programs.is_some_and(|m| stats.programs >= m) {
            break;
        }
        let mut new_cov = false;
        let (prog, hit) = if pool.is_empty() || rng.gen_ratio(1, 2) {
            let n = if opts.fixed_len { opts.max_ops.max(1) } else { rng.gen_range(1..=opts.max_ops.max(1)) };
            generate(&mut rng, &mut runner, n, opts, &mut cov, &mut new_cov)
        } else {
            let base = &pool[rng.gen_range(0..pool.len())];
            let m = mutate(&mut rng, &opts.pair, base, &pool, opts.max_ops.max(1), opts.realizable);
            let hit = run(&mut runner, &m, opts.oracle, &mut cov, &mut new_cov);
            (m, hit)
        };
        stats.programs += 1;
        stats.steps += prog.ops.len() as u64;
        // A program that reached something new joins the pool (a divergent one
        // too: what follows a divergence decides its harm); a full pool makes room
        // at random, so the engine keeps learning.
        if new_cov && !hit.violation {
            if pool.len() < 4096 {
                pool.push(prog.clone());
            } else {
                let i = rng.gen_range(0..pool.len());
                pool[i] = prog.clone();
            }
        }
        if !hit.any() {
            continue;
        }
        let kinds = [(hit.divergence, Kind::Divergence), (hit.violation, Kind::Oracle)];
        for kind in kinds.iter().filter(|k| k.0).map(|k| k.1) {
            let Some(f) = analyze(&prog, &opts.pair, kind) else {
                continue;
            };
            if let Some(&i) = found.get(&f.signature) {
                list[i].hits += 1;
                continue;
            }
            let program = minimize(&prog, &opts.pair, &f.signature);
            if opts.realizable && crate::emit_c::realizable(&program).is_err() {
                continue;
            }
            let title = analyze(&program, &opts.pair, kind).map_or(f.title.clone(), |g| g.title);
            let fd = Found { signature: f.signature.clone(), title, program, hits: 1, at: start.elapsed() };
            found.insert(f.signature, list.len());
            stats.elapsed = start.elapsed();
            on_found(&fd, &stats);
            list.push(fd);
        }
    }
    stats.elapsed = start.elapsed();
    stats.pool = pool.len();
    (list, stats)
}

/// `count` random programs of up to `max_ops` ops that `emit-c` accepts.
pub fn sample_realizable(seed: u64, count: usize, max_ops: usize) -> Vec<Program> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let cfg = crate::model::Config::new(crate::model::Restore::VmPageProt);
    let mut out = Vec::new();
    while out.len() < count {
        let mut s = State::new();
        let mut ops = Vec::new();
        for _ in 0..rng.gen_range(1..=max_ops.max(1)) {
            let op = gen_op_with(&mut rng, &s, true);
            model::step(&mut s, &cfg, &op);
            ops.push(op);
        }
        let p = Program::new(ops);
        if crate::emit_c::realizable(&p).is_ok() {
            out.push(p);
        }
    }
    out
}
