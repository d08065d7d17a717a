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

use super::pipeline::{Offer, Pipeline};
use crate::check::{analyze, Finding, Kind, Pair, Runner, Signature};
use crate::judge::ghost::Expect;
use crate::judge::ghost::Ghost;
use crate::judge::world::World;
use crate::model::{Entry, Mm, State, Token, Vma, MAX_FILES, MAX_FOLIOS, MAX_PROCS, MAX_SLOTS, NPAGES};
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

/// The THP alphabet (`explore --thp`): one PMD of anonymous memory (pages 0-3)
/// that MADV_HUGEPAGE makes a THP at its first fault, and the ops that split,
/// migrate, protect, free, copy and collapse it, on its first and last page.
pub fn thp_alphabet() -> Vec<Op> {
    let rw = Prot(Prot::R | Prot::W);
    let mut v = vec![
        Op::Mmap { p: 0, addr: 0, len: 4, prot: rw, target: Target::Anon },
        Op::Madvise { p: 0, addr: 0, len: 4, advice: Advice::HugePage },
        Op::Madvise { p: 0, addr: 0, len: 4, advice: Advice::Free },
        Op::Madvise { p: 0, addr: 0, len: 1, advice: Advice::Free },
        Op::Madvise { p: 0, addr: 0, len: 4, advice: Advice::DontNeed },
        Op::Madvise { p: 0, addr: 0, len: 4, advice: Advice::Collapse },
        Op::Mprotect { p: 0, addr: 0, len: 4, prot: Prot(Prot::R) },
        Op::Mprotect { p: 0, addr: 0, len: 4, prot: rw },
        Op::Mprotect { p: 0, addr: 0, len: 1, prot: Prot(Prot::R) },
        Op::Munmap { p: 0, addr: 0, len: 1 },
        Op::ClearRefs { p: 0 },
        Op::UffdRegister { p: 0, addr: 0, len: 4 },
        Op::UffdWp { p: 0, addr: 0, len: 4 },
        Op::UffdUnwp { p: 0, addr: 0, len: 1 },
        Op::Fork { parent: 0, child: 1, event_fork: false },
        Op::MigrateStart { p: 0, addr: 0 },
        Op::MigrateFinish { p: 0, addr: 0 },
        Op::Pageout { p: 0, addr: 0 },
        Op::NumaHint { p: 0, addr: 0 },
    ];
    for addr in [0, 3] {
        v.push(Op::Read { p: 0, addr });
        v.push(Op::Write { p: 0, addr });
        v.push(Op::Migrate { p: 0, addr });
    }
    v.push(Op::Write { p: 1, addr: 0 });
    v
}

/// The tracking alphabet (`explore --tracking`): an async uffd-wp write watch
/// over two anonymous pages that may be merged by KSM, with PAGEMAP_SCAN, and the
/// ops that zap, migrate, reclaim, copy and track them.
pub fn tracking_alphabet() -> Vec<Op> {
    use crate::op::{ScanMode, UffdFeatures};
    let rw = Prot(Prot::R | Prot::W);
    let mut v = vec![
        Op::UffdApi { p: 0, features: UffdFeatures::WpAsync },
        Op::Mmap { p: 0, addr: 0, len: 2, prot: rw, target: Target::Anon },
        Op::Madvise { p: 0, addr: 0, len: 2, advice: Advice::Mergeable },
        Op::Madvise { p: 0, addr: 0, len: 2, advice: Advice::Unmergeable },
        Op::Madvise { p: 0, addr: 0, len: 1, advice: Advice::DontNeed },
        Op::UffdRegister { p: 0, addr: 0, len: 2 },
        Op::UffdWp { p: 0, addr: 0, len: 2 },
        Op::UffdUnwp { p: 0, addr: 0, len: 1 },
        Op::PagemapScan { p: 0, addr: 0, len: 2, mode: ScanMode::Read },
        Op::PagemapScan { p: 0, addr: 0, len: 2, mode: ScanMode::WpWritten },
        Op::KsmMerge {},
        Op::ClearRefs { p: 0 },
        Op::Fork { parent: 0, child: 1, event_fork: false },
        Op::Migrate { p: 0, addr: 0 },
        Op::Pageout { p: 0, addr: 0 },
    ];
    for addr in 0..2 {
        v.push(Op::WriteVal { p: 0, addr, val: 1 });
        v.push(Op::Write { p: 0, addr });
        v.push(Op::Read { p: 0, addr });
    }
    v
}

/// The guard alphabet (`explore --guard`): sync uffd-wp over two shared memfd
/// pages with guard regions (v6.13+), and the ops that write, zap, migrate,
/// reclaim and copy them.
pub fn guard_alphabet() -> Vec<Op> {
    let rw = Prot(Prot::R | Prot::W);
    let mut v = vec![
        Op::Mmap {
            p: 0,
            addr: 0,
            len: 2,
            prot: rw,
            target: Target::File { file: FileName::Memfd, shared: true, pgoff: 0 },
        },
        Op::UffdRegister { p: 0, addr: 0, len: 2 },
        Op::UffdWp { p: 0, addr: 0, len: 2 },
        Op::UffdUnwp { p: 0, addr: 0, len: 1 },
        Op::Madvise { p: 0, addr: 0, len: 2, advice: Advice::GuardInstall },
        Op::Madvise { p: 0, addr: 0, len: 1, advice: Advice::GuardInstall },
        Op::Madvise { p: 0, addr: 0, len: 2, advice: Advice::GuardRemove },
        Op::Madvise { p: 0, addr: 0, len: 1, advice: Advice::DontNeed },
        Op::Fork { parent: 0, child: 1, event_fork: false },
        Op::Migrate { p: 0, addr: 0 },
        Op::Pageout { p: 0, addr: 0 },
    ];
    for addr in 0..2 {
        v.push(Op::Write { p: 0, addr });
        v.push(Op::Read { p: 0, addr });
    }
    v
}

/// The alphabet, one op per line.
pub fn describe(alphabet: &[Op]) -> String {
    alphabet.iter().map(|o| format!("  {o}\n")).collect()
}

/// Most distinct content tokens one world can hold: every token-holding field
/// (folios, swap slots, file stashes, the ghost's file pages and expectations).
const MAX_TOKENS: usize = MAX_FOLIOS + MAX_SLOTS + 2 * MAX_FILES * NPAGES + MAX_PROCS * NPAGES;

/// Content tokens renamed in order of first appearance, exactly: two states that
/// differ only in which fresh tokens their stores drew are the same state for
/// every later contract check (which compares tokens for equality only), and
/// two states that differ in any other way never get the same bytes. There is
/// room for every token a world can hold, so no two tokens ever share a name.
struct Canon {
    seen: arrayvec::ArrayVec<Token, MAX_TOKENS>,
    /// Contracts on: tokens matter (off: no check reads them).
    on: bool,
}

impl Canon {
    #[inline]
    fn id(&mut self, t: Token) -> [u8; 2] {
        if t == 0 || !self.on {
            return [0, 0];
        }
        // The tokens of `write_val`'s values are what later stores write again
        // (and what KSM compares): never renamed.
        use crate::program::args::value_token;
        if (value_token(1)..=value_token(3)).contains(&t) {
            return (0xff00 | (t - value_token(0))).to_le_bytes();
        }
        let i = match self.seen.iter().position(|&x| x == t) {
            Some(i) => i,
            None => {
                self.seen.push(t);
                self.seen.len() - 1
            }
        };
        ((i + 1) as u16).to_le_bytes()
    }
}

/// Longest canonical encoding of a pair of worlds (see [`state_bytes`]).
const MAX_BYTES: usize = 8192;

/// A fixed buffer the canonical bytes are written to (no allocation, no growth).
struct Out {
    buf: [u8; MAX_BYTES],
    n: usize,
}

impl Out {
    #[inline(always)]
    fn put<const N: usize>(&mut self, b: [u8; N]) {
        self.buf[self.n..self.n + N].copy_from_slice(&b);
        self.n += N;
    }
    #[inline(always)]
    fn slice(&mut self, b: &[u8]) {
        self.buf[self.n..self.n + b.len()].copy_from_slice(b);
        self.n += b.len();
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.n]
    }
}

#[inline]
fn entry_bytes(e: &Entry, out: &mut Out) {
    match *e {
        Entry::None => out.put([0]),
        Entry::Present { bits, folio } => out.put([1, bits.bits(), folio]),
        Entry::Migration { kind, bits, folio } => out.put([2, kind as u8, bits.bits(), folio]),
        Entry::Swap { bits, slot } => out.put([3, bits.bits(), slot]),
        Entry::Marker => out.put([4]),
        Entry::Guard { bits } => out.put([5, bits.bits()]),
    }
}

/// The semantic state as bytes: provenance, step counters, WARN flags and the
/// contract breaks already reported are left out; the ghost state a later contract
/// check reads is in, its content tokens canonically renamed. An injective
/// encoding: every field has a fixed width or a tag, so distinct states give
/// distinct bytes.
fn state_bytes(w: &World, out: &mut Out) {
    let (s, g) = (&w.k, &w.g);
    let mut c = Canon { seen: arrayvec::ArrayVec::new(), on: g.on() };
    for (mm, gm) in s.procs.iter().zip(&g.procs) {
        out.put([mm.alive as u8]);
        if !mm.alive {
            continue;
        }
        for e in &mm.pt {
            entry_bytes(e, out);
        }
        out.put([mm.huge, mm.ptable, mm.uffd.bits(), mm.vmas.len() as u8]);
        out.put(mm.tail);
        for v in &mm.vmas {
            let f = v.flags.bits().to_le_bytes();
            let backing = match v.backing {
                crate::model::Backing::Anon => 0xff,
                crate::model::Backing::File(f) => f,
            };
            out.put([
                v.start,
                v.end,
                f[0],
                f[1],
                f[2],
                f[3],
                v.prot.bits(),
                backing,
                v.pgoff,
                v.anon_pgoff,
                v.anon_vma,
                v.anon_forked as u8 | (v.uffd as u8) << 1,
            ]);
        }
        // Every field of the ghost's process state (the compiler names a new one).
        let crate::judge::ghost::MmGhost { expect: _, changed, user_wp, written, guard } = gm;
        out.put(guard.to_le_bytes());
        out.put(changed.to_le_bytes());
        out.put(user_wp.to_le_bytes());
        out.put(written.to_le_bytes());
        for e in &gm.expect {
            match *e {
                Expect::Unmapped => out.put([0]),
                Expect::Private { token, file, index, maybe_zero } => {
                    let t = c.id(token);
                    out.put([1 | (maybe_zero as u8) << 1, t[0], t[1], file, index]);
                }
                Expect::File { file, index, shared } => out.put([4 | shared as u8, file, index]),
            }
        }
    }
    // Folios and slots: a bitmap of the used ones, then each used one.
    let used =
        s.folios.iter().enumerate().fold(0u64, |m, (i, f)| m | ((f.kind != crate::model::FolioKind::Free) as u64) << i);
    out.put(used.to_le_bytes());
    for f in &s.folios {
        let (k, file, index) = match f.kind {
            crate::model::FolioKind::Free => continue,
            crate::model::FolioKind::Anon => (1, 0, 0),
            crate::model::FolioKind::File { file, index } => (2, file, index),
        };
        let t = c.id(f.data);
        out.put([k, file, index, f.flags.bits(), f.mapcount, f.slot, t[0], t[1]]);
    }
    let used = s.slots.iter().enumerate().fold(0u32, |m, (i, sl)| m | (sl.in_use() as u32) << i);
    out.put(used.to_le_bytes());
    for sl in s.slots.iter().filter(|sl| sl.in_use()) {
        let t = c.id(sl.data);
        out.put([sl.count, sl.folio, t[0], t[1]]);
    }
    // Files with the ghost's view of their pages; a file not in use holds
    // nothing (its ghost pages are zero), unless the model says otherwise.
    for ((f, gfile), wn) in s.files.iter().zip(&g.file).zip(g.wn_clean) {
        let ghost_zero = wn == 0 && gfile.iter().all(|&t| t == 0);
        out.put([f.kind as u8, f.in_use as u8 | (!ghost_zero as u8) << 1]);
        if f.in_use {
            out.slice(&f.cache);
            out.put(f.swapped.to_le_bytes());
            for &t in &f.stash {
                out.put(c.id(t));
            }
        }
        if !ghost_zero {
            for &t in gfile {
                out.put(c.id(t));
            }
            out.put(wn.to_le_bytes());
        }
    }
    out.put([s.pending.len() as u8]);
    for m in &s.pending {
        out.put([m.old, m.new]);
    }
    // next_anon_vma is left out: anon_vma ids are only compared for identity,
    // and a fresh one differs from every id in use either way.
}

/// A key of the violations a node holds (0: none): the unsafe PTEs (proxy), the
/// contracts both sides broke, and whether the end-of-program probe would break
/// one on both sides if the program ended here.
fn violations(n: &Runner, end: Option<&Runner>) -> u64 {
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
    // If the program ended here (`end`: pending migrations finished), then the probe.
    let at_end = match end {
        None => !common.is_empty() || n.unsafe_now() || n.end_violation(),
        Some(e) => e.violation() || e.end_violation(),
    };
    if at_end {
        true.hash(&mut h);
        any = true;
    }
    if any {
        h.finish() | 1
    } else {
        0
    }
}

/// Do two worlds hold the same state for everything the explorer looks at (the
/// fingerprint's fields and the contract breaks)? Provenance, the step counter,
/// WARN flags and variant-hit counts are not compared: a child that differs from
/// its parent only there is the parent's state. Every field is named, so a new
/// one is a compile error here until it is decided.
fn same_state(x: &World, y: &World) -> bool {
    let World { k, g } = x;
    let State {
        procs,
        folios,
        files,
        slots,
        pending,
        next_anon_vma: _,
        step: _,
        warned: _,
        variant_hits: _,
        next_token: _,
        events: _,
    } = k;
    let Ghost { contracts, procs: gprocs, file, wn_clean, breaks, mkwrite_seen: _ } = g;
    let same_mm = |a: &Mm, b: &Mm| {
        let Mm { alive, vmas, pt, why: _, huge, ptable, tail, uffd } = a;
        *alive == b.alive
            && *uffd == b.uffd
            && *pt == b.pt
            && (*huge, *ptable, *tail) == (b.huge, b.ptable, b.tail)
            && vmas.len() == b.vmas.len()
            && vmas.iter().zip(b.vmas.iter()).all(|(v, w)| {
                let Vma {
                    start,
                    end,
                    flags,
                    prot,
                    backing,
                    pgoff,
                    anon_pgoff,
                    anon_vma,
                    anon_forked,
                    uffd,
                    prot_by: _,
                    softdirty_by: _,
                    uffd_by: _,
                } = v;
                (*start, *end, *flags, *prot, *backing, *pgoff, *anon_pgoff, *anon_vma, *anon_forked, *uffd)
                    == (
                        w.start,
                        w.end,
                        w.flags,
                        w.prot,
                        w.backing,
                        w.pgoff,
                        w.anon_pgoff,
                        w.anon_vma,
                        w.anon_forked,
                        w.uffd,
                    )
            })
    };
    procs.iter().zip(y.k.procs.iter()).all(|(a, b)| same_mm(a, b))
        && *pending == y.k.pending
        && *folios == y.k.folios
        && *slots == y.k.slots
        && *files == y.k.files
        && *gprocs == y.g.procs
        && *breaks == y.g.breaks
        && *file == y.g.file
        && *wn_clean == y.g.wn_clean
        && *contracts == y.g.contracts
}

/// Is the child `n` its parent's state again (see [`same_state`])?
fn unchanged(n: &Runner, parent: &Runner) -> bool {
    same_state(&n.a, &parent.a)
        && match (n.distinct_b(), parent.distinct_b()) {
            (None, None) => true,
            (Some(x), Some(y)) => same_state(x, y),
            (Some(x), None) => same_state(x, &parent.a),
            (None, Some(_)) => false,
        }
}

/// A 128-bit fingerprint of a pair of worlds (`b = None`: identical to `a`):
/// XXH3 over their exact canonical bytes.
fn fingerprint(a: &World, b: Option<&World>) -> u128 {
    thread_local! {
        static OUT: std::cell::RefCell<Box<Out>> =
            std::cell::RefCell::new(Box::new(Out { buf: [0; MAX_BYTES], n: 0 }));
    }
    OUT.with(|o| {
        let mut o = o.borrow_mut();
        write_pair(a, b, &mut o);
        xxhash_rust::xxh3::xxh3_128(o.bytes())
    })
}

fn write_pair(a: &World, b: Option<&World>, o: &mut Out) {
    o.n = 0;
    state_bytes(a, o);
    if let Some(b) = b {
        o.put([0xee]);
        state_bytes(b, o);
    }
}

/// The canonical bytes of a pair of worlds (what [`fingerprint`] hashes).
pub fn canonical_bytes(a: &World, b: Option<&World>) -> Vec<u8> {
    let mut o = Box::new(Out { buf: [0; MAX_BYTES], n: 0 });
    write_pair(a, b, &mut o);
    o.bytes().to_vec()
}

/// Options of a run.
#[derive(Clone, Debug)]
pub struct Options {
    pub pair: Pair,
    pub depth: usize,
    pub threads: usize,
    pub oracle: bool,
    pub alphabet: Vec<Op>,
    /// Memory for the states a level keeps (MiB); states past it are replayed
    /// from the root when expanded instead.
    pub memory_mb: usize,
}

/// The default memory budget of a run's kept states (MiB).
pub const DEFAULT_MEMORY_MB: usize = 1024;

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
    /// Probability that two distinct states shared a 128-bit fingerprint.
    pub fn collision_probability(&self) -> f64 {
        let n = self.states as f64;
        (n * n / 2.0 / 2f64.powi(128)).min(1.0)
    }
}

/// The visited set's keys are already hashes: use their low bits as they are.
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
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A state of the frontier: both worlds (b only when it differs from a) and the
/// violation key it holds (a child's violation is new only if it differs).
struct Node {
    viol: u64,
    /// Its fingerprint.
    fp: u128,
    /// Its state (None past the memory budget: it is replayed from the root).
    st: Option<Box<Kept>>,
}

/// A kept state: both worlds (b only when it differs from a).
struct Kept {
    a: World,
    b: Option<Box<World>>,
}

/// One transition, as a worker reports it.
struct Child {
    /// Index of the parent in its level, and of the op in the alphabet.
    parent: u32,
    op: u8,
    fp: u128,
    diverged: bool,
    violation: bool,
    /// The state, if it was not visited before this level.
    node: Option<Node>,
}

/// Expand `nodes` (indices from `first` in their level): every op of the
/// alphabet on every node. States already in `visited` come back without their node.
fn expand(
    opts: &Options,
    nodes: &[Node],
    first: usize,
    parents: &[Vec<(u32, u8)>],
    visited: &HashSet<u128, BuildHasherDefault<IdHasher>>,
    keep: bool,
) -> Vec<Child> {
    let pair = &opts.pair;
    let mut out = Vec::with_capacity(nodes.len() * opts.alphabet.len());
    for (k, node) in nodes.iter().enumerate() {
        let parent = match &node.st {
            Some(k) => Runner::at(pair, k.a, k.b.as_deref().copied()),
            None => {
                let mut r = Runner::new(pair);
                for op in path(parents, &opts.alphabet, parents.len() - 1, first + k) {
                    r.step(&op);
                }
                r
            }
        };
        let mut n = parent.clone();
        let mut end = parent.clone();
        for (i, op) in opts.alphabet.iter().enumerate() {
            n.copy_from(&parent);
            let mut diverged = n.step(op).diverged;
            // An op that changed nothing leads back to the parent: visited, and
            // no violation the parent did not have.
            if !diverged && unchanged(&n, &parent) {
                out.push(Child {
                    parent: (first + k) as u32,
                    op: i as u8,
                    fp: node.fp,
                    diverged: false,
                    violation: false,
                    node: None,
                });
                continue;
            }
            let pending = !n.a.k.pending.is_empty();
            if pending {
                // The program could end here: finish pending migrations.
                end.copy_from(&n);
                diverged |= end.finish();
            }
            // A hit is a violation the parent did not already have (a kept
            // violation was analyzed where it appeared).
            let v = if opts.oracle { violations(&n, pending.then_some(&end)) } else { 0 };
            let violation = v != 0 && v != node.viol;
            let fp = fingerprint(&n.a, n.distinct_b());
            let node = (keep && !diverged && !visited.contains(&fp)).then(|| {
                let b = n.distinct_b().map(|b| Box::new(*b));
                Node { viol: v, fp, st: Some(Box::new(Kept { a: n.a, b })) }
            });
            out.push(Child { parent: (first + k) as u32, op: i as u8, fp, diverged, violation, node });
        }
    }
    out
}

/// The program that reaches state `i` of level `depth` (parents: per level,
/// each state's parent index and op).
fn path(parents: &[Vec<(u32, u8)>], alphabet: &[Op], depth: usize, mut i: usize) -> Vec<Op> {
    let mut ops = Vec::with_capacity(depth);
    for d in (1..=depth).rev() {
        let (p, op) = parents[d][i];
        ops.push(alphabet[op as usize]);
        i = p as usize;
    }
    ops.reverse();
    ops
}

/// Breadth-first search over states (not paths): each level's new states are
/// kept and expanded once, in parallel; a program is rebuilt from parent links
/// only for what is reported. `progress(depth, frontier, states, rate)` is
/// called between chunks.
pub fn explore(opts: &Options, stop: &AtomicBool, mut progress: impl FnMut(usize, usize, u64, f64)) -> Report {
    let start = Instant::now();
    let pair = &opts.pair;
    let alphabet = &opts.alphabet;
    let threads = opts.threads.max(1);
    let mut visited: HashSet<u128, BuildHasherDefault<IdHasher>> = HashSet::default();
    let root = Runner::new(pair);
    let fp = fingerprint(&root.a, root.distinct_b());
    visited.insert(fp);
    let viol = if opts.oracle { violations(&root, None) } else { 0 };
    let (a, b) = root.parts();
    let mut frontier: Vec<Node> = vec![Node { viol, fp, st: Some(Box::new(Kept { a, b: b.map(Box::new) })) }];
    // States kept, against the memory budget.
    let budget = opts.memory_mb.saturating_mul(1 << 20) / std::mem::size_of::<Kept>().max(1);
    let mut parents: Vec<Vec<(u32, u8)>> = vec![vec![(0, 0)]];
    let mut report = Report { states: 1, ..Report::default() };
    let mut pipe = Pipeline::new(*pair, false);
    for depth in 1..=opts.depth {
        let level_start = Instant::now();
        let keep = depth < opts.depth;
        let mut next: Vec<Node> = Vec::new();
        let mut next_parents: Vec<(u32, u8)> = Vec::new();
        // This level's new states: the visited set of earlier levels stays
        // frozen while the workers read it.
        let mut fresh: HashSet<u128, BuildHasherDefault<IdHasher>> = HashSet::default();
        let mut level = Level { depth, ..Level::default() };
        let mut hits: Vec<(u32, u8, bool, bool)> = Vec::new();
        // Workers take chunks in turn and send their children; this thread takes
        // them in chunk order (so the search is deterministic) while the
        // workers go on.
        let chunk = 256.max(frontier.len() / (threads * 64)).min(4096);
        let chunks = frontier.len().div_ceil(chunk);
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let (visited_ref, frontier_ref, taken_ref, parents_ref) = (&visited, &frontier, &taken, &parents);
        std::thread::scope(|sc| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<Child>)>();
            for _ in 0..threads {
                let tx = tx.clone();
                sc.spawn(move || loop {
                    let c = taken_ref.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let from = c * chunk;
                    let part = &frontier_ref[from..(from + chunk).min(frontier_ref.len())];
                    if tx.send((c, expand(opts, part, from, parents_ref, visited_ref, keep))).is_err() {
                        return;
                    }
                });
            }
            drop(tx);
            let mut waiting: std::collections::BTreeMap<usize, Vec<Child>> = Default::default();
            let mut want = 0;
            for (c, children) in rx {
                waiting.insert(c, children);
                while let Some(children) = waiting.remove(&want) {
                    want += 1;
                    for c in children {
                        level.transitions += 1;
                        if c.diverged || c.violation {
                            hits.push((c.parent, c.op, c.diverged, c.violation));
                        }
                        if visited.contains(&c.fp) || !fresh.insert(c.fp) {
                            continue;
                        }
                        level.states += 1;
                        if let Some(mut n) = c.node {
                            if next.len() >= budget {
                                n.st = None;
                            }
                            next.push(n);
                            next_parents.push((c.parent, c.op));
                        }
                    }
                    let total = report.states + level.states;
                    let rate =
                        (report.transitions + level.transitions) as f64 / start.elapsed().as_secs_f64().max(1e-9);
                    progress(depth, frontier.len(), total, rate);
                }
            }
            if want < chunks {
                report.interrupted = true;
            }
        });
        visited.extend(fresh);
        // Every hit is judged on its program (the shortest: BFS order), in
        // parallel; the first program of each signature is kept.
        let programs: Vec<(Program, bool, bool)> = hits
            .iter()
            .map(|&(parent, op, diverged, violation)| {
                let mut ops = path(&parents, alphabet, depth - 1, parent as usize);
                ops.push(alphabet[op as usize]);
                (Program::new(ops), diverged, violation)
            })
            .collect();
        let per = programs.len().div_ceil(threads).max(1);
        let judged: Vec<Vec<Option<Finding>>> = std::thread::scope(|sc| {
            let handles: Vec<_> = programs
                .chunks(per)
                .map(|part| {
                    sc.spawn(move || {
                        let mut out = Vec::with_capacity(part.len() * 2);
                        for (prog, diverged, violation) in part {
                            out.push(diverged.then(|| analyze(prog, pair, Kind::Divergence)).flatten());
                            out.push(violation.then(|| analyze(prog, pair, Kind::Oracle)).flatten());
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("explore judge")).collect()
        });
        // Through the finding pipeline (known? minimize), in BFS order.
        for (f, i) in judged.into_iter().flatten().zip(0..) {
            let Some(f) = f else { continue };
            if let Some(Offer::New(found)) = pipe.offer_analyzed(&programs[i / 2].0, f, start.elapsed()) {
                report.findings.push((found.signature, found.program, found.title));
            }
        }
        level.elapsed = level_start.elapsed();
        report.states += level.states;
        report.transitions += level.transitions;
        report.levels.push(level);
        parents.push(next_parents);
        frontier = next;
        if report.interrupted || frontier.is_empty() {
            break;
        }
    }
    report.elapsed = start.elapsed();
    report
}
