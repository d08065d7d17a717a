//! The one way both sides of a pair are stepped: [`Runner`]. Every engine,
//! the analysis, rendering, `explain` and `explore` step programs through it.

use crate::model::{self, Config, State, StepResult, MAX_PROCS, NPAGES};
use crate::op::Op;

use super::contracts::{self, Contract};
use super::signature::EntryClass;
use super::world::World;

/// The two sides of a differential run, and the contracts judged on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    pub a: Config,
    pub b: Config,
    /// The user contracts checked on the ghost state; empty: none (the
    /// write-trap proxy judges alone). All by default.
    pub contracts: Contract,
}

impl Default for Pair {
    /// `full-restore` vs `vm-page-prot` on v6.1, every contract.
    fn default() -> Pair {
        Pair::new(Config::new(model::Restore::FullRestore), Config::new(model::Restore::VmPageProt))
    }
}

impl Pair {
    /// Two sides judged by every contract.
    pub fn new(a: Config, b: Config) -> Pair {
        Pair { a, b, contracts: Contract::all() }
    }

    pub fn names(&self) -> (String, String) {
        (self.a.variant_name(), self.b.variant_name())
    }

    /// Are contracts judged?
    pub fn contracts_on(&self) -> bool {
        !self.contracts.is_empty()
    }

    /// The pair with other sides (the same contracts).
    pub fn with_sides(&self, a: Config, b: Config) -> Pair {
        Pair { a, b, ..*self }
    }

    /// An initial world for one side.
    pub fn world(&self) -> World {
        World::new(self.contracts)
    }
}

/// Do the two states agree on everything the differential check compares
/// (which processes are alive, the [`EntryClass`] of every page)?
#[inline]
pub fn agree(a: &State, b: &State) -> bool {
    // Fast path: page tables identical entry for entry.
    if a.procs.iter().zip(b.procs.iter()).all(|(x, y)| x.alive == y.alive && x.pt == y.pt) {
        return true;
    }
    for p in 0..MAX_PROCS {
        let (x, y) = (&a.procs[p], &b.procs[p]);
        if x.alive != y.alive {
            return false;
        }
        if !x.alive {
            continue;
        }
        for i in 0..NPAGES {
            if EntryClass::of(x.pt[i]) != EntryClass::of(y.pt[i]) {
                return false;
            }
        }
    }
    true
}

/// Differing pages `(process, addr)` in order.
pub fn differing_pages(a: &State, b: &State) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for p in 0..MAX_PROCS {
        if !a.procs[p].alive && !b.procs[p].alive {
            continue;
        }
        for i in 0..NPAGES {
            if a.procs[p].alive != b.procs[p].alive
                || EntryClass::of(a.procs[p].pt[i]) != EntryClass::of(b.procs[p].pt[i])
            {
                out.push((p, i));
            }
        }
    }
    out
}

/// What one step of both sides came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub a: StepResult,
    pub b: StepResult,
    /// The sides disagree now.
    pub diverged: bool,
}

/// Steps the two sides of a pair in lock step. Models on the same kernel are
/// identical until variant-specific code (remove_migration_pte / unuse_pte) can
/// run, so until an op could reach it only side a is stepped and side b is not
/// held at all; it is copied from a just before (the hot path of every engine and
/// of `explore`, which clones runners).
#[derive(Clone)]
pub struct Runner<'p> {
    pub pair: &'p Pair,
    pub a: World,
    /// Side b while it is stepped; `None` means "the same as a".
    b: Option<World>,
    /// Side b is a copy of a that no variant code has touched since.
    identical: bool,
}

impl<'p> Runner<'p> {
    pub fn new(pair: &'p Pair) -> Runner<'p> {
        let mut r = Runner { pair, a: pair.world(), b: None, identical: false };
        r.reset();
        r
    }

    /// A runner at worlds `a` and `b` (`None`: b is the same as a), as
    /// [`Runner::parts`] left them.
    pub fn at(pair: &'p Pair, a: World, b: Option<World>) -> Runner<'p> {
        let b = if b.is_none() && pair.a.kernel != pair.b.kernel { Some(a) } else { b };
        Runner { pair, a, b, identical: false }
    }

    /// Side a, and side b when it differs from a (what [`Runner::at`] takes back).
    pub fn parts(self) -> (World, Option<World>) {
        let distinct = self.b.as_ref().is_some_and(|b| !self.identical && self.a != *b);
        (self.a, if distinct { self.b } else { None })
    }

    /// Become a copy of `other` (in place: one copy of each world held).
    #[inline]
    pub fn copy_from(&mut self, other: &Runner<'p>) {
        self.pair = other.pair;
        self.a = other.a;
        match &other.b {
            None => self.b = None,
            Some(b) => match &mut self.b {
                Some(mine) => *mine = *b,
                None => self.b = Some(*b),
            },
        }
        self.identical = other.identical;
    }

    /// Back to the initial state. Sides on different kernels are always both held.
    pub fn reset(&mut self) {
        self.a = self.pair.world();
        if self.same_kernel() {
            self.b = None;
        } else {
            self.b = Some(self.pair.world());
        }
        self.identical = false;
    }

    /// Side b (side a while the two are the same).
    #[inline]
    pub fn b(&self) -> &World {
        self.b.as_ref().unwrap_or(&self.a)
    }

    /// Side b when it differs from side a (`None` while the two are the same
    /// world, so `explore` fingerprints a pair of equal worlds as one).
    pub fn distinct_b(&self) -> Option<&World> {
        self.b.as_ref().filter(|b| !self.identical && self.a != **b)
    }

    /// Both sides have broken a contract at the same page (no proxy).
    pub fn broken(&self) -> bool {
        !self.a.g.breaks.common(&self.b().g.breaks).is_empty()
    }

    /// An unsafe PTE both sides agree on (the write-trap proxy alone).
    pub fn unsafe_now(&self) -> bool {
        super::analyze::violation_now(&self.a.k, &self.b().k).is_some()
    }

    /// Is there an oracle violation right now: a contract both sides broke at the
    /// same page, or an unsafe PTE both sides agree on (the proxy)?
    #[inline]
    pub fn violation(&self) -> bool {
        self.broken() || self.unsafe_now()
    }

    /// At the end of a program (after [`Runner::finish`]): would the
    /// end-of-program probe break a contract on both sides? Probes clones, and
    /// only when the probe can break something new.
    pub fn end_violation(&self) -> bool {
        if !self.pair.contracts_on() {
            return false;
        }
        let b = self.b();
        if !contracts::probe_can_break(&self.a) && !contracts::probe_can_break(b) {
            return false;
        }
        let (mut x, mut y) = (self.a, *b);
        contracts::probe(&mut x, &self.pair.a);
        contracts::probe(&mut y, &self.pair.b);
        !x.g.breaks.common(&y.g.breaks).is_empty()
    }

    /// Both worlds, by value.
    pub fn into_worlds(self) -> (World, World) {
        let b = self.b.unwrap_or(self.a);
        (self.a, b)
    }

    /// Both kernel states, by value.
    pub fn into_states(self) -> (State, State) {
        let (a, b) = self.into_worlds();
        (a.k, b.k)
    }

    /// Could `op` run a restore or unuse_pte? Migrations (and every op while a
    /// migration is in flight, since a fault waits for it) and swapoff.
    #[inline]
    fn may_run_variant(&self, op: &Op) -> bool {
        !self.a.k.pending.is_empty() || matches!(op, Op::Migrate { .. } | Op::Swapoff {})
    }

    #[inline]
    fn sync(&mut self) {
        if self.b.is_none() {
            self.b = Some(self.a);
            self.identical = true;
        }
    }

    /// Apply `op` to both sides. Two sides on the same kernel that are identical
    /// stay identical until variant code runs; when a step that ran it leaves
    /// them identical again, side b is dropped (and copied back from a when
    /// needed), so the comparison and the second model only cost where the
    /// variants really differ.
    #[inline]
    pub fn step(&mut self, op: &Op) -> Step {
        if self.may_run_variant(op) {
            self.sync();
        }
        let hits = self.a.k.variant_hits;
        let r = self.a.step(&self.pair.a, op);
        let same_kernel = self.same_kernel();
        let Some(b) = &mut self.b else { return Step { a: r, b: r, diverged: false } };
        let rb = b.step(&self.pair.b, op);
        if same_kernel && hits == self.a.k.variant_hits && self.identical {
            return Step { a: r, b: rb, diverged: false };
        }
        if same_kernel && self.a == *b {
            self.b = None;
            return Step { a: r, b: rb, diverged: false };
        }
        self.identical = false;
        Step { a: r, b: rb, diverged: !agree(&self.a.k, &b.k) }
    }

    /// Step op `i` of `ops`, or at `i == ops.len()` the end-of-program finish;
    /// true if the sides now disagree.
    #[inline]
    pub fn step_or_finish(&mut self, ops: &[Op], i: usize) -> bool {
        match ops.get(i) {
            Some(op) => self.step(op).diverged,
            None => self.finish(),
        }
    }

    #[inline]
    fn same_kernel(&self) -> bool {
        self.pair.a.kernel == self.pair.b.kernel
    }

    /// Finish pending migrations on both sides; true if they now disagree.
    pub fn finish(&mut self) -> bool {
        if !self.a.k.pending.is_empty() {
            self.sync();
        }
        self.a.finish(&self.pair.a);
        let Some(b) = &mut self.b else { return false };
        b.finish(&self.pair.b);
        !agree(&self.a.k, &b.k)
    }

    /// A runner after `ops[..=upto]` (`upto >= ops.len()`: after the finish too).
    pub fn run_to(pair: &'p Pair, ops: &[Op], upto: usize) -> Runner<'p> {
        let mut r = Runner::new(pair);
        for i in 0..=upto.min(ops.len()) {
            r.step_or_finish(ops, i);
        }
        r
    }

    /// Both worlds after the whole program and the finish, with the
    /// end-of-program probe run on both sides: every contract break.
    pub fn run_to_end(pair: &'p Pair, ops: &[Op]) -> (World, World) {
        let (mut a, mut b) = Runner::run_to(pair, ops, ops.len()).into_worlds();
        contracts::probe(&mut a, &pair.a);
        contracts::probe(&mut b, &pair.b);
        (a, b)
    }
}
