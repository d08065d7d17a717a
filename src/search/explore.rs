//! Bounded exhaustive exploration: breadth-first search over programs from the
//! empty state, over a finite alphabet of ops, with a visited set of state
//! fingerprints (both variants' states together, provenance excluded). Every
//! distinct state is expanded once; every divergence class and oracle violation
//! is reported with its **shortest** program. When nothing is found the result is
//! a certificate: "no divergence up to depth K over alphabet X".

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::check::{analyze, Kind, Pair, Runner, Signature};
use crate::judge::ghost::Expect;
use crate::judge::world::World;
use crate::model::{Entry, Token};
use crate::op::{Advice, FileName, Op, Program, Prot, Target};
use crate::oracle::first_unsafe;

/// The default alphabet: one process that may fork once, pages 0 and 1, single
/// page lengths. Every argument domain is finite and listed by [`describe`].
pub fn default_alphabet() -> Vec<Op> {
    let rw = Prot(Prot::R | Prot::W);
    let memfd = |addr: u8| Target::File { file: FileName::Memfd, shared: true, pgoff: addr };
    let mut v = vec![
        Op::Mmap { p: 0, addr: 0, len: 1, prot: rw, target: memfd(0) },
        Op::Mmap { p: 0, addr: 1, len: 1, prot: rw, target: memfd(1) },
        Op::Mmap { p: 0, addr: 0, len: 1, prot: rw, target: Target::Anon },
        Op::Mmap {
            p: 0,
            addr: 0,
            len: 1,
            prot: rw,
            target: Target::File { file: FileName::Ext4, shared: true, pgoff: 0 },
        },
        Op::Mprotect { p: 0, addr: 0, len: 1, prot: Prot(Prot::R) },
        Op::Mprotect { p: 0, addr: 0, len: 1, prot: rw },
        Op::Madvise { p: 0, addr: 0, len: 1, advice: Advice::Random },
        Op::Mlock { p: 0, addr: 0, len: 1 },
        Op::Munlock { p: 0, addr: 0, len: 1 },
        Op::ClearRefs { p: 0 },
        Op::UffdRegister { p: 0, addr: 0, len: 1 },
        Op::UffdUnregister { p: 0, addr: 0, len: 1 },
        Op::UffdWp { p: 0, addr: 0, len: 1 },
        Op::UffdUnwp { p: 0, addr: 0, len: 1 },
        Op::Fork { parent: 0, child: 1, event_fork: false },
        Op::MigrateStart { p: 0, addr: 0 },
        Op::MigrateFinish { p: 0, addr: 0 },
        Op::Pageout { p: 0, addr: 0 },
        Op::Swapoff {},
        Op::Writeback { p: 0, addr: 0 },
        Op::NumaHint { p: 0, addr: 0 },
    ];
    for addr in 0..2 {
        v.push(Op::Read { p: 0, addr });
        v.push(Op::Write { p: 0, addr });
        v.push(Op::Migrate { p: 0, addr });
    }
    v.push(Op::Write { p: 1, addr: 0 });
    v
}

/// The alphabet, one op per line.
pub fn describe(alphabet: &[Op]) -> String {
    alphabet.iter().map(|o| format!("  {o}\n")).collect()
}

/// Content tokens renamed in order of first appearance: two states that differ only
/// in which fresh tokens their stores drew are the same state for every later
/// contract check (which compares tokens for equality only).
struct Canon {
    seen: arrayvec::ArrayVec<Token, 128>,
    /// Contracts on: tokens matter (off: no check reads them).
    on: bool,
}

impl Canon {
    #[inline]
    fn id(&mut self, t: Token) -> u8 {
        if t == 0 || !self.on {
            return 0;
        }
        match self.seen.iter().position(|&x| x == t) {
            Some(i) => i as u8 + 1,
            None => {
                let _ = self.seen.try_push(t);
                self.seen.len() as u8
            }
        }
    }
}

#[inline]
fn entry_bytes(e: &Entry, out: &mut Vec<u8>) {
    match *e {
        Entry::None => out.push(0),
        Entry::Present { bits, folio } => out.extend_from_slice(&[1, bits.bits(), folio]),
        Entry::Migration { kind, bits, folio } => out.extend_from_slice(&[2, kind as u8, bits.bits(), folio]),
        Entry::Swap { bits, slot } => out.extend_from_slice(&[3, bits.bits(), slot]),
        Entry::Marker => out.push(4),
    }
}

/// The semantic state as bytes: provenance, step counters, WARN flags and the
/// contract breaks already reported are left out; the ghost state a later contract
/// check reads is in, its content tokens canonically renamed.
fn state_bytes(w: &World, out: &mut Vec<u8>) {
    let (s, g) = (&w.k, &w.g);
    let mut c = Canon { seen: arrayvec::ArrayVec::new(), on: g.on() };
    for (mm, gm) in s.procs.iter().zip(&g.procs) {
        out.push(mm.alive as u8);
        if !mm.alive {
            continue;
        }
        for e in &mm.pt {
            entry_bytes(e, out);
        }
        out.push(mm.vmas.len() as u8);
        for v in &mm.vmas {
            let f = v.flags.bits().to_le_bytes();
            let backing = match v.backing {
                crate::model::Backing::Anon => 0xff,
                crate::model::Backing::File(f) => f,
            };
            out.extend_from_slice(&[
                v.start,
                v.end,
                f[0],
                f[1],
                v.prot.bits(),
                backing,
                v.pgoff,
                v.anon_pgoff,
                v.anon_vma,
                v.anon_forked as u8 | (v.uffd as u8) << 1,
            ]);
        }
        out.extend_from_slice(&gm.changed.to_le_bytes());
        out.extend_from_slice(&gm.user_wp.to_le_bytes());
        for e in &gm.expect {
            match *e {
                Expect::Unmapped => out.push(0),
                Expect::Private { token, file, index, maybe_zero } => {
                    out.extend_from_slice(&[1 | (maybe_zero as u8) << 1, c.id(token), file, index])
                }
                Expect::File { file, index, shared } => out.extend_from_slice(&[4 | shared as u8, file, index]),
            }
        }
    }
    for f in &s.folios {
        let (k, file, index) = match f.kind {
            crate::model::FolioKind::Free => {
                out.push(0);
                continue;
            }
            crate::model::FolioKind::Anon => (1, 0, 0),
            crate::model::FolioKind::File { file, index } => (2, file, index),
        };
        out.extend_from_slice(&[k, file, index, f.flags.bits(), f.mapcount, f.slot, c.id(f.data)]);
    }
    for f in &s.files {
        out.extend_from_slice(&[f.kind as u8, f.in_use as u8]);
        if !f.in_use {
            continue;
        }
        out.extend_from_slice(&f.cache);
        out.extend_from_slice(&f.swapped.to_le_bytes());
        for &t in &f.stash {
            out.push(c.id(t));
        }
    }
    for sl in &s.slots {
        if sl.in_use() {
            out.extend_from_slice(&[1, sl.count, sl.folio, c.id(sl.data)]);
        } else {
            out.push(0);
        }
    }
    for (file, wn) in g.file.iter().zip(g.wn_clean) {
        for &t in file {
            out.push(c.id(t));
        }
        out.extend_from_slice(&wn.to_le_bytes());
    }
    for m in &s.pending {
        out.extend_from_slice(&[m.old, m.new]);
    }
}

/// A key of the violations a node holds (0: none): the unsafe PTEs (proxy), the
/// contracts both sides broke, and whether the end-of-program probe would break
/// one on both sides if the program ended here.
fn violations(n: &Runner) -> u64 {
    let mut h = ahash::RandomState::with_seeds(1, 2, 3, 4).build_hasher();
    let mut any = false;
    if let Some((p, a, r)) = first_unsafe(&n.a.k) {
        (p, a, r).hash(&mut h);
        any = true;
    }
    let common = n.a.g.breaks.common(&n.b().g.breaks);
    if !common.is_empty() {
        common.mask.hash(&mut h);
        any = true;
    }
    let mut end = n.clone();
    end.finish();
    if end.violation() || end.end_violation() {
        true.hash(&mut h);
        any = true;
    }
    if any {
        h.finish() | 1
    } else {
        0
    }
}

/// Fingerprint of a pair of states (`b = None`: identical to `a`).
fn fingerprint(a: &World, b: Option<&World>) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        state_bytes(a, &mut buf);
        if let Some(b) = b {
            buf.push(0xee);
            state_bytes(b, &mut buf);
        }
        let mut h = ahash::RandomState::with_seeds(0x5054_4544, 0x4946_4600, 0x6d6d, 0x6578_706c).build_hasher();
        h.write(&buf);
        h.finish()
    })
}

/// Options of a run.
#[derive(Clone, Debug)]
pub struct Options {
    pub pair: Pair,
    pub depth: usize,
    pub threads: usize,
    pub oracle: bool,
    pub alphabet: Vec<Op>,
}

/// One depth level's counters.
#[derive(Clone, Debug, Default)]
pub struct Level {
    pub depth: usize,
    /// New distinct states first reached at this depth.
    pub states: u64,
    pub transitions: u64,
    pub elapsed: Duration,
}

/// The result of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub levels: Vec<Level>,
    /// Distinct (fingerprinted) states.
    pub states: u64,
    pub transitions: u64,
    pub elapsed: Duration,
    /// Every divergence class and oracle violation with its shortest program.
    pub findings: Vec<(Signature, Program, String)>,
    /// Stopped early (Ctrl-C).
    pub interrupted: bool,
}

impl Report {
    /// Probability that two distinct states shared a 64-bit fingerprint.
    pub fn collision_probability(&self) -> f64 {
        let n = self.states as f64;
        (n * n / 2.0 / 2f64.powi(64)).min(1.0)
    }
}

/// The visited set's keys are already hashes: use them as they are.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A frontier entry: the program (as alphabet indices) that reaches it.
type Path = Vec<u8>;

/// Breadth-first search. `progress(depth, frontier, states, rate)` is called
/// between chunks.
pub fn explore(opts: &Options, stop: &AtomicBool, mut progress: impl FnMut(usize, usize, u64, f64)) -> Report {
    let start = Instant::now();
    let pair = &opts.pair;
    let alphabet = &opts.alphabet;
    let mut visited: HashSet<u64, BuildHasherDefault<IdHasher>> = HashSet::default();
    visited.insert(fingerprint(&pair.world(), None));
    let mut frontier: Vec<Path> = vec![Vec::new()];
    let mut report = Report { states: 1, ..Report::default() };
    let mut seen_sigs: HashSet<Signature> = HashSet::new();
    for depth in 1..=opts.depth {
        let level_start = Instant::now();
        let mut next: Vec<Path> = Vec::new();
        let mut level = Level { depth, ..Level::default() };
        let chunk = 4096.max(frontier.len() / (opts.threads * 8).max(1));
        for part in frontier.chunks(chunk) {
            if stop.load(Ordering::Relaxed) {
                report.interrupted = true;
                break;
            }
            // Expand in parallel: each thread returns (fingerprint, path, hit) candidates.
            let per = part.len().div_ceil(opts.threads.max(1));
            let results: Vec<Vec<(u64, Path, bool, bool)>> = std::thread::scope(|sc| {
                let handles: Vec<_> = part
                    .chunks(per.max(1))
                    .map(|ps| {
                        sc.spawn(move || {
                            let mut out = Vec::with_capacity(ps.len() * alphabet.len());
                            for path in ps {
                                let mut node = Runner::new(pair);
                                for &i in path {
                                    node.step(&alphabet[i as usize]);
                                }
                                let parent = if opts.oracle { violations(&node) } else { 0 };
                                for (i, op) in alphabet.iter().enumerate() {
                                    let mut n = node.clone();
                                    let mut diverged = n.step(op).diverged;
                                    if !diverged && !n.a.k.pending.is_empty() {
                                        // The program could end here: finish pending migrations.
                                        diverged = n.clone().finish();
                                    }
                                    // A hit is a violation the parent did not already have
                                    // (a kept violation was analyzed where it appeared).
                                    let v = if opts.oracle { violations(&n) } else { 0 };
                                    let violation = v != 0 && v != parent;
                                    let fp = fingerprint(&n.a, n.distinct_b());
                                    let mut p = path.clone();
                                    p.push(i as u8);
                                    out.push((fp, p, diverged, violation));
                                }
                            }
                            out
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("explore worker")).collect()
            });
            for (fp, path, diverged, violation) in results.into_iter().flatten() {
                level.transitions += 1;
                let program = || Program::new(path.iter().map(|&i| alphabet[i as usize]).collect());
                if diverged || violation {
                    let prog = program();
                    for (hit, kind) in [(diverged, Kind::Divergence), (violation, Kind::Oracle)] {
                        if !hit {
                            continue;
                        }
                        if let Some(f) = analyze(&prog, pair, kind) {
                            if seen_sigs.insert(f.signature) {
                                report.findings.push((f.signature, prog.clone(), f.title));
                            }
                        }
                    }
                }
                if !visited.insert(fp) {
                    continue;
                }
                level.states += 1;
                if !diverged && depth < opts.depth {
                    next.push(path);
                }
            }
            let total = report.states + level.states;
            let rate = (report.transitions + level.transitions) as f64 / start.elapsed().as_secs_f64().max(1e-9);
            progress(depth, frontier.len(), total, rate);
        }
        level.elapsed = level_start.elapsed();
        report.states += level.states;
        report.transitions += level.transitions;
        report.levels.push(level);
        frontier = next;
        if report.interrupted || frontier.is_empty() {
            break;
        }
    }
    report.elapsed = start.elapsed();
    report
}
