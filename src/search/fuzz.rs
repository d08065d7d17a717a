//! The built-in fuzz engine (stable toolchain, no libFuzzer): state-aware random
//! generation plus mutation of programs that reached new model behaviour, every
//! divergence minimized and deduplicated by signature. [`fuzz_jobs`] runs one
//! [`Worker`] per core; they share coverage, the mutation pool and the known
//! signatures through a [`Hub`] in batches, and send findings and hit counts to
//! the calling thread, the one writer of the findings folder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use super::generate::gen_op;
use super::generate::{gen_op_near, gen_op_with, Focus};
use super::pipeline::{Offer, Pipeline};
use crate::check::{Kind, Pair, Runner, Signature};
use crate::model::{self, Entry, State, StepResult};
use crate::op::{Op, Program};

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

pub use super::pipeline::Found;

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub programs: u64,
    pub steps: u64,
    pub elapsed: Duration,
    pub pool: usize,
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
    let (p, addr) = op.page().unwrap_or((0, 0));
    let mm = &s.procs[p as usize];
    let e = mm.pt[addr as usize];
    let ec: u32 = match e {
        Entry::None => 0,
        Entry::Present { bits, .. } => 1 + bits.bits() as u32,
        Entry::Migration { bits, .. } => 70 + bits.bits() as u32,
        Entry::Swap { bits, .. } => 110 + bits.bits() as u32,
        Entry::Marker => 150,
        Entry::Guard { bits } => 160 + bits.bits() as u32,
    };
    let vc: u32 = mm.vma(addr).map_or(0, |v| 1 + (v.flags.bits() & 0xff) + ((v.prot.bits() as u32) << 8));
    // Is the VMA's vm_page_prot what vma_set_page_prot() would compute now? A stale
    // one (left by a merge, an unregister, ...) is where restores and faults go wrong.
    let stale = mm.vma(addr).is_some_and(|v| {
        let mut w = *v;
        model::prot::vma_set_page_prot(s, cfg, &mut w, model::Why::Unknown);
        w.prot != v.prot
    }) as u32;
    // The folio behind the entry: dirty, exclusive, swap cache, lazy-free,
    // shared by several PTEs; a swap slot shared or cached. Chains through swap,
    // fork and MADV_FREE only show up here.
    let fc: u32 = match e {
        Entry::Present { folio, .. } | Entry::Migration { folio, .. } if (folio as usize) < model::MAX_FOLIOS => {
            let f = s.folio(folio);
            1 + f.flags.bits() as u32 + (((f.mapcount > 1) as u32) << 5)
        }
        Entry::Swap { slot, .. } => {
            let sl = s.slots[slot as usize];
            64 + (sl.count > 1) as u32 + 2 * ((sl.folio as usize) < model::MAX_FOLIOS) as u32
        }
        _ => 0,
    };
    let h = (op.kind() as u32)
        ^ (r.code() << 5)
        ^ (ec << 7)
        ^ vc.wrapping_mul(0x9e37_79b1)
        ^ fc.wrapping_mul(0x27d4_eb2f)
        ^ (stale << 31);
    h.wrapping_mul(0x85eb_ca6b) >> 16
}

/// What a run hit: a divergence and/or (with the oracle on) a violation.
#[derive(Clone, Copy, Default)]
struct Hit {
    divergence: bool,
    /// An oracle violation: a broken contract or the proxy's unsafe PTE.
    violation: bool,
    /// A contract both sides broke (ends the program: `analyze` reports the
    /// first broken one; the proxy's latent ones do not end it, a break may follow).
    broken: bool,
}

impl Hit {
    fn any(self) -> bool {
        self.divergence || self.violation
    }
}

#[inline]
fn step_one(r: &mut Runner, op: &Op, oracle: bool, cov: &mut Coverage, new_cov: &mut bool) -> Hit {
    let st = r.step(op);
    let divergence = st.diverged;
    *new_cov |= cov.mark(feature(op, st.a, &r.a.k, &r.pair.a));
    let broken = oracle && r.broken();
    Hit { divergence, violation: broken || oracle && r.unsafe_now(), broken }
}

fn finish_one(r: &mut Runner, oracle: bool) -> Hit {
    let divergence = r.finish();
    Hit { divergence, violation: oracle && (r.violation() || r.end_violation()), broken: false }
}

/// Run a program on both sides, feeding coverage. A divergence does not end the
/// run: its harm may come later (`analyze` judges the whole program); nor does
/// a latent oracle violation (a contract may still break); a broken contract does.
fn run(r: &mut Runner, program: &Program, oracle: bool, cov: &mut Coverage, new_cov: &mut bool) -> Hit {
    r.reset();
    let mut hit = Hit::default();
    for op in &program.ops {
        let h = step_one(r, op, oracle, cov, new_cov);
        hit.divergence |= h.divergence;
        hit.violation |= h.violation;
        if h.broken {
            hit.broken = true;
            return hit;
        }
    }
    let h = finish_one(r, oracle);
    Hit { divergence: hit.divergence || h.divergence, violation: hit.violation || h.violation, broken: false }
}

/// Generate a fresh program against the live state of side a, checking as it goes
/// (the program ends at the first broken contract, as in [`run`]).
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
    let mut focus = Focus::default();
    for _ in 0..n {
        let op = gen_op_near(rng, &r.a.k, opts.realizable, focus);
        focus = focus.after(&op);
        let h = step_one(r, &op, oracle, cov, new_cov);
        ops.push(op);
        hit.divergence |= h.divergence;
        hit.violation |= h.violation;
        if h.broken {
            hit.broken = true;
            return (Program::new(ops), hit);
        }
    }
    let h = finish_one(r, oracle);
    (
        Program::new(ops),
        Hit { divergence: hit.divergence || h.divergence, violation: hit.violation || h.violation, broken: false },
    )
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
    // replay up to the first edit point (which may be the end: an append); later
    // edits go at or after it.
    let first = rng.gen_range(0..=ops.len());
    let mut prefix = State::new();
    for op in &ops[..first] {
        model::step(&mut prefix, &pair.a, op);
    }
    // Half of the time, a chain of new ops at the edit point, each generated
    // against the state the ones before it reach (exact, so chains on one page
    // grow: that is where findings are).
    if rng.gen_ratio(1, 2) && ops.len() < max_ops {
        let mut focus = Focus::before(&ops, first);
        let mut chain = Vec::new();
        for _ in 0..rng.gen_range(1..=4).min(max_ops - ops.len()) {
            let op = gen_op_near(rng, &prefix, realizable, focus);
            model::step(&mut prefix, &pair.a, &op);
            focus = focus.after(&op);
            chain.push(op);
        }
        ops.splice(first..first, chain);
        return Program::new(ops);
    }
    for _ in 0..rng.gen_range(1..=3) {
        let i = rng.gen_range(first.min(ops.len())..=ops.len());
        match rng.gen_range(0..4) {
            0 if i < ops.len() => ops[i] = gen_op_near(rng, &prefix, realizable, Focus::before(&ops, i)),
            1 if ops.len() < max_ops => {
                let op = gen_op_near(rng, &prefix, realizable, Focus::before(&ops, i));
                ops.insert(i, op)
            }
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

/// What the workers of one run share: coverage features, the mutation pool and
/// the known signatures. A worker exchanges them in batches (every
/// [`SYNC_EVERY`]), never per program, so the lock is taken a few dozen times a
/// second in all.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<HubInner>,
}

#[derive(Default)]
struct HubInner {
    cov: Vec<u64>,
    /// Pool entries with the worker that found them.
    pool: Vec<(usize, Program)>,
    /// Signature -> length of the shortest program known.
    known: HashMap<Signature, usize>,
    /// Bumped when `known` changes.
    known_version: u64,
}

/// How often a worker exchanges with the hub (and reports its hits).
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// Largest mutation pool (per worker, and shared).
const POOL_CAP: usize = 4096;

/// A finding or a better program for one, from a worker.
#[derive(Clone, Debug)]
pub struct Event {
    pub found: Found,
    /// The first time this worker (or the run, once synced) saw the signature;
    /// otherwise a shorter program for a known one.
    pub first: bool,
}

/// One engine thread: its own generator, model pair, coverage and pool.
pub struct Worker<'a> {
    id: usize,
    opts: &'a Options,
    rng: SmallRng,
    runner: Runner<'a>,
    cov: Coverage,
    pool: Vec<Program>,
    /// Pool entries found here since the last sync.
    fresh: Vec<Program>,
    /// How much of the hub's pool this worker has looked at.
    hub_cursor: usize,
    hub_known_version: u64,
    /// The finding pipeline (it knows every signature found here or learnt).
    pipe: Pipeline,
    /// Signatures known to the hub already.
    published: HashMap<Signature, usize>,
    /// Hits of known signatures since the last [`take_hits`](Self::take_hits).
    hits: HashMap<Signature, u64>,
    pub stats: Stats,
    start: Instant,
}

impl<'a> Worker<'a> {
    /// Worker `id` (0 uses `opts.seed` itself, so one worker repeats a seeded run).
    pub fn new(opts: &'a Options, id: usize, start: Instant) -> Worker<'a> {
        let seed = if id == 0 { opts.seed } else { opts.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) };
        Worker {
            id,
            opts,
            rng: SmallRng::seed_from_u64(seed),
            runner: Runner::new(&opts.pair),
            cov: Coverage::new(),
            pool: Vec::new(),
            fresh: Vec::new(),
            hub_cursor: 0,
            hub_known_version: 0,
            pipe: Pipeline::new(opts.pair, opts.realizable),
            published: HashMap::new(),
            hits: HashMap::new(),
            stats: Stats::default(),
            start,
        }
    }

    /// Generate or mutate one program and judge it; findings (new signatures and
    /// shorter programs for known ones, minimized) go to `emit`.
    pub fn one(&mut self, emit: &mut impl FnMut(Event)) {
        let opts = self.opts;
        let mut new_cov = false;
        let (prog, hit) = if self.pool.is_empty() || self.rng.gen_ratio(1, 2) {
            let n = if opts.fixed_len { opts.max_ops.max(1) } else { self.rng.gen_range(1..=opts.max_ops.max(1)) };
            generate(&mut self.rng, &mut self.runner, n, opts, &mut self.cov, &mut new_cov)
        } else {
            let base = &self.pool[self.rng.gen_range(0..self.pool.len())];
            let m = mutate(&mut self.rng, &opts.pair, base, &self.pool, opts.max_ops.max(1), opts.realizable);
            let hit = run(&mut self.runner, &m, opts.oracle, &mut self.cov, &mut new_cov);
            (m, hit)
        };
        self.stats.programs += 1;
        self.stats.steps += prog.ops.len() as u64;
        // A program that reached something new joins the pool (a divergent one
        // too: what follows a divergence decides its harm); a full pool makes room
        // at random, so the engine keeps learning.
        if new_cov && !hit.broken {
            self.fresh.push(prog.clone());
            if self.pool.len() < POOL_CAP {
                self.pool.push(prog.clone());
            } else {
                let i = self.rng.gen_range(0..self.pool.len());
                self.pool[i] = prog.clone();
            }
        }
        if !hit.any() {
            return;
        }
        let kinds = [(hit.divergence, Kind::Divergence), (hit.violation, Kind::Oracle)];
        for kind in kinds.iter().filter(|k| k.0).map(|k| k.1) {
            match self.pipe.offer(&prog, kind, self.start.elapsed()) {
                None => {}
                Some(Offer::Hit(sig)) => *self.hits.entry(sig).or_insert(0) += 1,
                Some(Offer::New(found)) => emit(Event { found, first: true }),
                Some(Offer::Shorter(found)) => emit(Event { found, first: false }),
            }
        }
    }

    /// Signatures this worker knows (found here or learnt from the hub).
    pub fn known(&self) -> usize {
        self.pipe.known().len()
    }

    /// Size of this worker's mutation pool (its own entries and the hub's).
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// Hits of known signatures since the last call.
    pub fn take_hits(&mut self) -> Vec<(Signature, u64)> {
        self.hits.drain().collect()
    }

    /// Exchange with the hub: give and take coverage, new pool entries and known
    /// signatures. One lock per call.
    pub fn sync(&mut self, hub: &Hub) {
        let mut h = hub.inner.lock().unwrap_or_else(|e| e.into_inner());
        if h.cov.is_empty() {
            h.cov = self.cov.seen.clone();
        } else {
            for (g, l) in h.cov.iter_mut().zip(self.cov.seen.iter_mut()) {
                *g |= *l;
                *l = *g;
            }
        }
        for p in self.fresh.drain(..) {
            if h.pool.len() < POOL_CAP {
                h.pool.push((self.id, p));
            }
        }
        for (from, p) in &h.pool[self.hub_cursor..] {
            if *from != self.id && self.pool.len() < POOL_CAP {
                self.pool.push(p.clone());
            }
        }
        self.hub_cursor = h.pool.len();
        let mut changed = false;
        for (sig, &n) in self.pipe.known() {
            if self.published.get(sig).is_some_and(|&p| p <= n) {
                continue;
            }
            let e = h.known.entry(*sig).or_insert(usize::MAX);
            if n < *e {
                *e = n;
                changed = true;
            }
            self.published.insert(*sig, n);
        }
        if changed {
            h.known_version += 1;
        }
        if h.known_version != self.hub_known_version {
            for (sig, &n) in &h.known {
                self.pipe.learn(*sig, n);
                let e = self.pipe.known()[sig];
                self.published.insert(*sig, e);
            }
            self.hub_known_version = h.known_version;
        }
        self.stats.pool = self.pool.len();
    }
}

/// What [`fuzz_jobs`] reports to the thread that called it.
#[derive(Clone, Debug)]
pub enum Message {
    /// A new signature or a shorter program for one (one hit).
    Found(Event),
    /// Hits of known signatures, batched.
    Hits(Vec<(Signature, u64)>),
    /// Once a second: the sum over workers.
    Progress(Stats),
}

/// Run `jobs` workers on their own threads, sharing through a [`Hub`], until
/// time, program count (split between them) or `stop`. The calling thread
/// receives every message in `on_message` (it is the one writer of the
/// findings); the returned stats are the sums.
pub fn fuzz_jobs(opts: &Options, jobs: usize, stop: &AtomicBool, mut on_message: impl FnMut(Message)) -> Stats {
    let jobs = jobs.max(1);
    let start = Instant::now();
    let hub = Hub::default();
    let (tx, rx) = mpsc::channel::<(usize, Stats, Vec<Message>)>();
    std::thread::scope(|scope| {
        for id in 0..jobs {
            let tx = tx.clone();
            let hub = &hub;
            let quota = opts.max_programs.map(|m| m / jobs as u64 + u64::from((id as u64) < m % jobs as u64));
            scope.spawn(move || {
                let mut w = Worker::new(opts, id, start);
                let mut out = Vec::new();
                let mut next_sync = SYNC_EVERY;
                loop {
                    if w.stats.programs.is_multiple_of(256) {
                        let now = start.elapsed();
                        let done = now >= opts.time || stop.load(Ordering::Relaxed);
                        if done || now >= next_sync {
                            next_sync = now + SYNC_EVERY;
                            w.stats.elapsed = now;
                            w.sync(hub);
                            let hits = w.take_hits();
                            if !hits.is_empty() {
                                out.push(Message::Hits(hits));
                            }
                            if tx.send((id, w.stats.clone(), std::mem::take(&mut out))).is_err() {
                                return;
                            }
                        }
                        if done {
                            return;
                        }
                    }
                    if quota.is_some_and(|q| w.stats.programs >= q) {
                        w.stats.elapsed = start.elapsed();
                        let mut last = std::mem::take(&mut out);
                        let hits = w.take_hits();
                        if !hits.is_empty() {
                            last.push(Message::Hits(hits));
                        }
                        let _ = tx.send((id, w.stats.clone(), last));
                        return;
                    }
                    // Findings leave at once (a finding is never held back).
                    w.one(&mut |e| out.push(Message::Found(e)));
                    if out.iter().any(|m| matches!(m, Message::Found(_))) {
                        let _ = tx.send((id, w.stats.clone(), std::mem::take(&mut out)));
                    }
                }
            });
        }
        drop(tx);
        let mut per: Vec<Stats> = vec![Stats::default(); jobs];
        let mut next_report = Duration::from_secs(1);
        let total = |per: &[Stats]| Stats {
            programs: per.iter().map(|s| s.programs).sum(),
            steps: per.iter().map(|s| s.steps).sum(),
            elapsed: start.elapsed(),
            pool: per.iter().map(|s| s.pool).max().unwrap_or(0),
        };
        loop {
            let wait = next_report.saturating_sub(start.elapsed());
            match rx.recv_timeout(wait) {
                Ok((id, st, msgs)) => {
                    per[id] = st;
                    for m in msgs {
                        on_message(m);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if start.elapsed() >= next_report {
                next_report = start.elapsed() + Duration::from_secs(1);
                on_message(Message::Progress(total(&per)));
            }
        }
        total(&per)
    })
}

/// `count` random programs of up to `max_ops` ops that `emit-c` accepts; with
/// `thp`, after a start of two THP-enabled PMDs (pages 0-7), the first faulted in.
pub fn sample_realizable(seed: u64, count: usize, max_ops: usize, start: SampleStart) -> Vec<Program> {
    use crate::op::{Advice, FileName, Prot, ScanMode, Target, UffdFeatures};
    let mut rng = SmallRng::seed_from_u64(seed);
    let cfg = crate::model::Config::new(crate::model::Restore::VmPageProt);
    let mut out = Vec::new();
    let rw = Prot(Prot::R | Prot::W);
    let mut end = Vec::new();
    let start: Vec<Op> = match start {
        SampleStart::Empty => Vec::new(),
        SampleStart::Thp => vec![
            Op::Mmap { p: 0, addr: 0, len: 4, prot: rw, target: Target::Anon },
            Op::Mmap { p: 0, addr: 4, len: 4, prot: rw, target: Target::Anon },
            Op::Madvise { p: 0, addr: 0, len: 4, advice: Advice::HugePage },
            Op::Madvise { p: 0, addr: 4, len: 4, advice: Advice::HugePage },
            Op::Write { p: 0, addr: 1 },
        ],
        SampleStart::Tracking => {
            let memfd = Target::File { file: FileName::Memfd, shared: true, pgoff: 4 };
            for addr in [0, 4, 8] {
                end.push(Op::PagemapScan { p: 0, addr, len: 4, mode: ScanMode::Read });
            }
            vec![
                Op::UffdApi { p: 0, features: UffdFeatures::WpAsync },
                Op::Mmap { p: 0, addr: 0, len: 4, prot: rw, target: Target::Anon },
                Op::Mmap { p: 0, addr: 4, len: 4, prot: rw, target: memfd },
                Op::UffdRegister { p: 0, addr: 0, len: 4 },
                Op::UffdRegister { p: 0, addr: 4, len: 4 },
                Op::Write { p: 0, addr: 1 },
                Op::UffdWp { p: 0, addr: 0, len: 4 },
            ]
        }
    };
    while out.len() < count {
        let mut s = State::new();
        let mut ops = start.clone();
        for op in &ops {
            model::step(&mut s, &cfg, op);
        }
        for _ in 0..rng.gen_range(1..=max_ops.max(1)) {
            let op = gen_op_with(&mut rng, &s, true);
            model::step(&mut s, &cfg, &op);
            ops.push(op);
        }
        ops.extend(end.iter().copied());
        let p = Program::new(ops);
        if crate::emit_c::realizable(&p).is_ok() {
            out.push(p);
        }
    }
    out
}

/// What every program [`sample_realizable`] writes starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleStart {
    /// The empty address space.
    Empty,
    /// Two THP-enabled PMDs of anonymous memory, the first faulted in.
    Thp,
    /// A write watch (an async uffd-wp context over anonymous pages 0-3 and
    /// shared memfd pages 4-7, page 1 stored to and everything protected);
    /// the program ends with a full PAGEMAP_SCAN of pages 0-11.
    Tracking,
}
