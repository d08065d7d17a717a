//! The differential check: one `check(program)` / `analyze(program)` shared by
//! libFuzzer, the built-in engine, corpus replay and the minimizer.
//!
//! Two models that differ only in their [`Config`] run the same program. After
//! every step (and after the end-of-program finish of pending migrations) the
//! write bit of every present PTE and the kind of every non-present entry are
//! compared. The first differing step is the divergence; its [`Signature`] says
//! which function made the writable side writable, what made the other side
//! read-only, the backing, where `vm_page_prot` and VM_SOFTDIRTY came from, and
//! the verdict of the write-trap [`oracle`](crate::oracle): **harmful** if a
//! writable PTE of one side (at the divergence or any later step) must trap, else
//! **benign**. Separately, an **oracle violation** is an unsafe PTE on which both
//! variants agree: a hole in the modelled kernel itself.

use serde::Serialize;

use crate::model::ghost::{Breaks, Contract};
use crate::model::StepResult;
use crate::model::{
    self, Backing, Config, Entry, FileKind, MigKind, PteBits, State, SwpBits, VmFlags, Vma, Why, MAX_PROCS, NPAGES,
    ZERO_PAGE,
};
use crate::op::{Op, Program};
use crate::oracle::{must_trap, unsafe_reasons, Reasons};

use super::contracts;

/// The two sides of a differential run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    pub a: Config,
    pub b: Config,
}

impl Default for Pair {
    /// `full-restore` vs `vm-page-prot` on v6.1.
    fn default() -> Pair {
        Pair { a: Config::new(model::Restore::FullRestore), b: Config::new(model::Restore::VmPageProt) }
    }
}

impl Pair {
    pub fn names(&self) -> (String, String) {
        (self.a.variant_name(), self.b.variant_name())
    }
}

/// Comparison class of an entry: what the oracle compares.
#[inline]
fn class(e: Entry) -> u8 {
    match e {
        Entry::None => 0,
        Entry::Present { bits, .. } => 1 + bits.contains(PteBits::W) as u8,
        Entry::Migration { kind, .. } => match kind {
            MigKind::Read => 3,
            MigKind::ReadExclusive => 4,
            MigKind::Write => 5,
        },
        Entry::Swap { .. } => 6,
        Entry::Marker => 7,
    }
}

/// Do the two states agree on everything the oracle compares?
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
            if class(x.pt[i]) != class(y.pt[i]) {
                return false;
            }
        }
    }
    true
}

/// Steps the two sides of a pair in lock step. Models on the same kernel are
/// identical until variant-specific code (remove_migration_pte / unuse_pte) can
/// run, so until an op could reach it only side a is stepped and side b is not
/// held at all; it is copied from a just before (the hot path of every engine and
/// of `explore`, which clones runners).
#[derive(Clone)]
pub struct Runner<'p> {
    pub pair: &'p Pair,
    pub a: State,
    /// Side b while it is stepped; `None` means "the same as a".
    b: Option<State>,
    /// Side b is a copy of a that no variant code has touched since.
    identical: bool,
}

impl<'p> Runner<'p> {
    pub fn new(pair: &'p Pair) -> Runner<'p> {
        let mut r = Runner { pair, a: State::new(), b: None, identical: false };
        r.reset();
        r
    }

    /// Back to the initial state. Sides on different kernels are always both held.
    pub fn reset(&mut self) {
        self.a = State::new();
        if self.same_kernel() {
            self.b = None;
        } else {
            self.b = Some(State::new());
        }
        self.identical = false;
    }

    /// Side b (side a while the two are the same).
    #[inline]
    pub fn b(&self) -> &State {
        self.b.as_ref().unwrap_or(&self.a)
    }

    /// Side b when it differs from side a (`None` while the two are the same
    /// state, so `explore` fingerprints a pair of equal states as one).
    pub fn distinct_b(&self) -> Option<&State> {
        self.b.as_ref().filter(|b| !self.identical && self.a != **b)
    }

    /// Both sides have broken a contract at the same page (no proxy).
    pub fn broken(&self) -> bool {
        !contracts::common(&self.a.ghost.breaks, &self.b().ghost.breaks).is_empty()
    }

    /// An unsafe PTE both sides agree on (the write-trap proxy alone).
    pub fn unsafe_now(&self) -> bool {
        violation_now(&self.a, self.b()).is_some()
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
        if self.pair.a.contracts.is_empty() {
            return false;
        }
        let b = self.b();
        if !contracts::probe_can_break(&self.a) && !contracts::probe_can_break(b) {
            return false;
        }
        let (mut x, mut y) = (self.a.clone(), b.clone());
        contracts::probe(&mut x, &self.pair.a);
        contracts::probe(&mut y, &self.pair.b);
        !contracts::common(&x.ghost.breaks, &y.ghost.breaks).is_empty()
    }

    /// Both states, by value.
    pub fn into_states(self) -> (State, State) {
        let b = self.b.unwrap_or_else(|| self.a.clone());
        (self.a, b)
    }

    /// Could `op` run a restore or unuse_pte? Migrations (and every op while a
    /// migration is in flight, since a fault waits for it) and swapoff.
    #[inline]
    fn may_run_variant(&self, op: &Op) -> bool {
        !self.a.pending.is_empty() || matches!(op, Op::Migrate { .. } | Op::Swapoff {})
    }

    #[inline]
    fn sync(&mut self) {
        if self.b.is_none() {
            self.b = Some(self.a.clone());
            self.identical = true;
        }
    }

    /// Apply `op` to both sides; true if they now disagree. Two sides on the same
    /// kernel that are identical stay identical until variant code runs; when a
    /// step that ran it leaves them identical again, side b is dropped (and
    /// copied back from a when needed), so the comparison and the second model
    /// only cost where the variants really differ.
    #[inline]
    pub fn step(&mut self, op: &Op) -> (StepResult, bool) {
        if self.may_run_variant(op) {
            self.sync();
        }
        let hits = self.a.variant_hits;
        let r = model::step(&mut self.a, &self.pair.a, op);
        let same_kernel = self.same_kernel();
        let Some(b) = &mut self.b else { return (r, false) };
        model::step(b, &self.pair.b, op);
        if same_kernel && hits == self.a.variant_hits && self.identical {
            return (r, false);
        }
        if same_kernel && self.a == *b {
            self.b = None;
            return (r, false);
        }
        self.identical = false;
        (r, !agree(&self.a, b))
    }

    #[inline]
    fn same_kernel(&self) -> bool {
        self.pair.a.kernel == self.pair.b.kernel
    }

    /// Finish pending migrations on both sides; true if they now disagree.
    pub fn finish(&mut self) -> bool {
        if !self.a.pending.is_empty() {
            self.sync();
        }
        model::finish(&mut self.a, &self.pair.a);
        let Some(b) = &mut self.b else { return false };
        model::finish(b, &self.pair.b);
        !agree(&self.a, b)
    }
}

/// What kind of finding a signature describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// The variants disagree.
    Divergence,
    /// Both variants agree on an unsafe PTE.
    Oracle,
}

/// What separates one cause of a finding from another (the dedup key, and what
/// the minimizer preserves).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Signature {
    pub kind: Kind,
    /// `W` (write bit differs), `entry` (entry kinds differ) or `oracle`.
    pub what: &'static str,
    /// `W`: the variant whose PTE is writable; `entry`: `A:kind-vs-B:kind`;
    /// `oracle`: the must-trap reasons.
    pub permissive: String,
    /// The kernel function that made the (permissive) PTE writable.
    pub rw_by: &'static str,
    /// `W`: the kernel function that made the other side read-only.
    pub ro_by: &'static str,
    /// Mapping class: anon-private, file-private, memfd-shared, shmem-shared, ext4-shared, ramfs-shared.
    pub backing: &'static str,
    /// Who last changed the VMA's `vm_page_prot`.
    pub prot_by: &'static str,
    /// Who last changed the VMA's VM_SOFTDIRTY.
    pub softdirty_by: &'static str,
    /// The read-only side carries uffd-wp.
    pub uffd_wp: bool,
    /// Soft-dirty tracking is active on the VMA (VM_SOFTDIRTY clear).
    pub softdirty_tracking: bool,
    /// `benign`, `harmful-<reasons>` (divergence) or `unsafe-<reasons>` (oracle).
    pub verdict: String,
}

fn clean(s: &str) -> String {
    s.replace(['(', ')'], "_").trim_end_matches('_').replace("__", "_")
}

impl Signature {
    /// A file-name-safe slug, unique per signature.
    pub fn slug(&self) -> String {
        let head = match self.what {
            "W" => format!("W.{}-rw.by-{}.ro-{}", self.permissive, clean(self.rw_by), clean(self.ro_by)),
            "oracle" => format!("oracle.{}.by-{}", self.permissive, clean(self.rw_by)),
            _ => format!("entry.{}", self.permissive),
        };
        format!(
            "{head}.{}.prot-{}.sd-{}{}{}.{}",
            self.backing,
            clean(self.prot_by),
            clean(self.softdirty_by),
            if self.uffd_wp { ".uffd-wp" } else { "" },
            if self.softdirty_tracking { ".sd-tracking" } else { "" },
            self.verdict
        )
    }

    /// A harmful divergence (a contract breaks on one side only, or with
    /// contracts off the proxy's unsafe PTE); latent and benign ones are not.
    pub fn harmful(&self) -> bool {
        self.verdict.starts_with("harmful")
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.slug())
    }
}

/// Short class name of an entry, for `entry` signatures.
fn class_name(e: Entry) -> &'static str {
    match class(e) {
        0 => "none",
        1 => "ro",
        2 => "rw",
        3 => "mig_r",
        4 => "mig_rx",
        5 => "mig_w",
        6 => "swap",
        _ => "marker",
    }
}

/// Mapping class of a VMA.
pub fn backing_class(s: &State, v: &Vma) -> &'static str {
    let shared = v.flags.contains(VmFlags::SHARED);
    match v.backing {
        Backing::Anon => "anon-private",
        Backing::File(_) if !shared => "file-private",
        Backing::File(f) => match (s.file_kind(f), f) {
            (FileKind::Shmem, 0) => "memfd-shared",
            (FileKind::Shmem, _) => "shmem-shared",
            (FileKind::Ext4, _) => "ext4-shared",
            (FileKind::Ramfs, _) => "ramfs-shared",
        },
    }
}

/// Differing pages `(process, addr)` in order.
pub fn differing_pages(a: &State, b: &State) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for p in 0..MAX_PROCS {
        if !a.procs[p].alive && !b.procs[p].alive {
            continue;
        }
        for i in 0..NPAGES {
            if a.procs[p].alive != b.procs[p].alive || class(a.procs[p].pt[i]) != class(b.procs[p].pt[i]) {
                out.push((p, i));
            }
        }
    }
    out
}

/// Harmful W differences in the current states: the first page where one side is
/// writable, the other is not, and the writable PTE must trap.
fn harmful_now(a: &State, b: &State, pair: &Pair) -> Option<(String, Reasons)> {
    for (p, i) in differing_pages(a, b) {
        for (s, c) in [(a, &pair.a), (b, &pair.b)] {
            let r = unsafe_reasons(s, p, i as u8);
            if !r.is_empty() {
                return Some((c.variant_name(), r));
            }
        }
    }
    None
}

/// An unsafe PTE on which both sides agree (an oracle violation), if any.
fn violation_now(a: &State, b: &State) -> Option<(usize, u8, Reasons)> {
    for (p, mm) in a.procs.iter().enumerate() {
        if !mm.alive {
            continue;
        }
        for i in 0..NPAGES {
            if !mm.pt[i].writable() || class(b.procs[p].pt[i]) != class(mm.pt[i]) {
                continue;
            }
            let r = must_trap(a, p, i as u8);
            if !r.is_empty() {
                return Some((p, i as u8, r));
            }
        }
    }
    None
}

/// Where a finding stands: its step and the data for its signature and title.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// 0-based index of the op; `ops.len()` = the end-of-program finish.
    pub step: usize,
    pub signature: Signature,
    /// One line built from provenance, e.g. `vm-page-prot RW after
    /// remove_migration_pte (step 5); RO since clear_refs_write (step 3); ...`.
    pub title: String,
    /// The page the signature describes.
    pub process: usize,
    pub page: usize,
}

/// The signature and title of a divergence at page `(p, i)`, before its verdict.
fn divergence_at(a: &State, b: &State, pair: &Pair, p: usize, i: usize) -> (Signature, String) {
    let (ea, eb) = (a.procs[p].pt[i], b.procs[p].pt[i]);
    let w_diff = matches!((ea, eb), (Entry::Present { .. }, Entry::Present { .. }));
    let (perm, ro, perm_cfg) = if ea.writable() || !w_diff { (a, b, &pair.a) } else { (b, a, &pair.b) };
    let vma = perm.procs[p].vma(i as u8).or_else(|| ro.procs[p].vma(i as u8)).copied();
    let ro_entry = ro.procs[p].pt[i];
    let permissive = if w_diff {
        perm_cfg.variant_name()
    } else {
        format!("{}:{}-vs-{}:{}", pair.a.variant_name(), class_name(ea), pair.b.variant_name(), class_name(eb))
    };
    let (pw, rw) = (perm.procs[p].why[i].w, ro.procs[p].why[i].w);
    let sig = Signature {
        kind: Kind::Divergence,
        what: if w_diff { "W" } else { "entry" },
        permissive,
        rw_by: if w_diff { pw.why.name() } else { "-" },
        ro_by: if w_diff { rw.why.name() } else { "-" },
        backing: vma.map_or("none", |v| backing_class(perm, &v)),
        prot_by: vma.map_or(Why::Unknown, |v| v.prot_by.why).name(),
        softdirty_by: vma.map_or(Why::Unknown, |v| v.softdirty_by.why).name(),
        uffd_wp: matches!(ro_entry, Entry::Present { bits, .. } if bits.contains(PteBits::UW)),
        softdirty_tracking: vma.is_some_and(|v| v.soft_dirty_enabled()),
        verdict: String::new(),
    };
    let mut title = if w_diff {
        format!("{} RW after {}; RO since {}", sig.permissive, pw.describe(), rw.describe())
    } else {
        format!("{} {} vs {} {}", pair.a.variant_name(), class_name(ea), pair.b.variant_name(), class_name(eb))
    };
    if let Some(v) = vma {
        let sd = if v.flags.contains(VmFlags::SOFTDIRTY) { "VM_SOFTDIRTY set" } else { "VM_SOFTDIRTY clear" };
        title += &format!(
            "; {sd} by {}; vm_page_prot by {}; {}",
            v.softdirty_by.describe(),
            v.prot_by.describe(),
            backing_class(perm, &v)
        );
    }
    (sig, title)
}

fn verdict_words(variant: &str, r: Reasons) -> String {
    format!("harmful: {variant} lets a write bypass {}", r.words())
}

/// The holes common to every variant that the model can patch, for causal
/// verdicts: a divergence whose contract difference disappears when the hole is
/// patched on both sides is harmful only through that hole.
const COMMON_HOLES: [(&str, &str); 3] = [
    ("clear-refs", "clear_refs leaving a writable migration entry writable (common to every variant)"),
    ("vma-merge", "a VMA merge handing the survivor VM_SOFTDIRTY-clear flags (fixed in v6.19 by sticky VM_SOFTDIRTY)"),
    ("uffd-wp-writenotify", "v6.1 shmem VMAs registered for uffd-wp keeping a writable vm_page_prot (fixed by B1)"),
];

/// The pair with hole `i` patched on both sides (None: already patched).
fn patched(pair: &Pair, i: usize) -> Option<Pair> {
    match i {
        0 => {
            let fix = crate::model::ClearRefs::WrprotectMigration;
            if pair.a.clear_refs == fix || pair.b.clear_refs == fix {
                return None;
            }
            Some(Pair { a: Config { clear_refs: fix, ..pair.a }, b: Config { clear_refs: fix, ..pair.b } })
        }
        1 | 2 => {
            let (p, has) = if i == 1 {
                (
                    crate::model::Patches::STICKY_SOFTDIRTY,
                    pair.a.sticky_softdirty_merges() && pair.b.sticky_softdirty_merges(),
                )
            } else {
                (crate::model::Patches::UFFD_WRITENOTIFY, pair.a.b1_uffd_writenotify() && pair.b.b1_uffd_writenotify())
            };
            if has {
                return None;
            }
            Some(Pair {
                a: Config { patches: pair.a.patches | p, ..pair.a },
                b: Config { patches: pair.b.patches | p, ..pair.b },
            })
        }
        _ => None,
    }
}

/// Run a program to its end (pending migrations finished) and probe it: both
/// sides' final states with every contract break.
pub fn run_to_end(program: &Program, pair: &Pair) -> (State, State) {
    let mut r = Runner::new(pair);
    for op in &program.ops {
        r.step(op);
    }
    r.finish();
    let (mut a, mut b) = r.into_states();
    contracts::probe(&mut a, &pair.a);
    contracts::probe(&mut b, &pair.b);
    (a, b)
}

/// The contract breaks one side has and the other does not, first side a's.
fn contract_difference(a: &State, b: &State, pair: &Pair) -> Option<(String, Breaks)> {
    let da = a.ghost.breaks.minus(&b.ghost.breaks);
    if !da.is_empty() {
        return Some((pair.a.variant_name(), da));
    }
    let db = b.ghost.breaks.minus(&a.ghost.breaks);
    (!db.is_empty()).then(|| (pair.b.variant_name(), db))
}

/// The first divergence (with its verdict, from the divergence to the end of
/// the program) or, for `Kind::Oracle`, the first oracle violation.
///
/// With contracts on (the default), a divergence is **harmful-X** when one side
/// breaks contract X (during the run or in the end-of-program probe) where the
/// other does not; **harmful-X-via-HOLE** when that difference disappears with a
/// hole common to every variant patched on both sides; **latent-X** when only the
/// write-trap proxy saw an unsafe PTE on one side; else **benign**. An oracle
/// finding is **broken-X** when both sides break contract X at the same page, or
/// **latent-X** when they only agree on an unsafe PTE. With contracts off the
/// proxy decides alone (`harmful-X`, `unsafe-X`).
pub fn analyze(program: &Program, pair: &Pair, kind: Kind) -> Option<Finding> {
    match kind {
        Kind::Oracle => analyze_oracle(program, pair),
        Kind::Divergence => analyze_divergence(program, pair),
    }
}

fn analyze_divergence(program: &Program, pair: &Pair) -> Option<Finding> {
    let mut r = Runner::new(pair);
    let n = program.ops.len();
    let mut found: Option<Finding> = None;
    let mut proxy: Option<(String, Reasons)> = None;
    for step in 0..=n {
        let div = match program.ops.get(step) {
            Some(op) => r.step(op).1,
            None => r.finish(),
        };
        if found.is_some() {
            if proxy.is_none() {
                proxy = harmful_now(&r.a, r.b(), pair);
            }
        } else if div {
            let (p, i) = differing_pages(&r.a, r.b())[0];
            let (sig, title) = divergence_at(&r.a, r.b(), pair, p, i);
            proxy = harmful_now(&r.a, r.b(), pair);
            found = Some(Finding { step, signature: sig, title, process: p, page: i });
        }
    }
    let mut f = found?;
    if pair.a.contracts.is_empty() {
        // The proxy alone.
        match proxy {
            Some((v, reasons)) => {
                f.signature.verdict = format!("harmful-{}", reasons.letters());
                f.title = format!("{}; {}", f.title, verdict_words(&v, reasons));
            }
            None => {
                f.signature.verdict = "benign".into();
                f.title += "; benign (the read-only side only costs a spurious fault)";
            }
        }
        return Some(f);
    }
    let (mut a, mut b) = r.into_states();
    contracts::probe(&mut a, &pair.a);
    contracts::probe(&mut b, &pair.b);
    if let Some((side, extra)) = contract_difference(&a, &b, pair) {
        let c = extra.contracts();
        let (_, bp, bpage) = extra.some_page().expect("a difference has a page");
        f.signature.verdict = format!("harmful-{}", c.letters());
        // Usually the permissive side (W) or side a (entry) breaks; when the
        // other one does, the verdict says so (its cause differs).
        if f.signature.permissive.split(':').next() != Some(side.as_str()) {
            f.signature.verdict += &format!("-on-{side}");
        }
        f.title = format!("{}; harmful: {side} breaks {} (p{bp} page {bpage})", f.title, c.words());
        for (i, (name, what)) in COMMON_HOLES.iter().enumerate() {
            let Some(fixed) = patched(pair, i) else { continue };
            let (x, y) = run_to_end(program, &fixed);
            if contract_difference(&x, &y, &fixed).is_none() {
                f.signature.verdict += &format!("-via-{name}");
                f.title += &format!(", only through {what}");
                break;
            }
        }
        return Some(f);
    }
    match proxy {
        Some((v, reasons)) => {
            f.signature.verdict = format!("latent-{}", reasons.letters());
            f.title = format!(
                "{}; latent: {v} holds a writable PTE a store must trap on ({}), but no contract breaks",
                f.title,
                reasons.words()
            );
        }
        None => {
            f.signature.verdict = "benign".into();
            f.title += "; benign (the read-only side only costs a spurious fault)";
        }
    }
    Some(f)
}

fn analyze_oracle(program: &Program, pair: &Pair) -> Option<Finding> {
    let mut f = oracle_violation(program, pair)?;
    if f.signature.verdict.starts_with("broken-") {
        // Is the violation a known hole common to every variant? Patch each
        // hole on both sides: the break is the hole's when no contract is broken
        // at this step any more (a later, different break, e.g. a page that
        // loses its PTE, is not this violation). Failing that, the first hole
        // whose patch leaves fewer contracts broken there takes it (its part of
        // the break is gone; what remains, e.g. v6.1's uffd-wp resolve ignoring
        // soft-dirty, is another cause, reported on its own).
        let letters = |v: &str| {
            let l = v.trim_start_matches("broken-").split('-').next().unwrap_or("");
            crate::model::ghost::Contract::parse(l).map_or(0, |c| c.bits().count_ones())
        };
        let mut partial = None;
        let mut whole = None;
        for (i, _) in COMMON_HOLES.iter().enumerate() {
            let Some(fixed) = patched(pair, i) else { continue };
            match oracle_violation(program, &fixed) {
                Some(g) if g.signature.verdict.starts_with("broken-") && g.step == f.step => {
                    if partial.is_none() && letters(&g.signature.verdict) < letters(&f.signature.verdict) {
                        partial = Some(i);
                    }
                }
                _ => {
                    whole = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = whole.or(partial) {
            let (name, what) = COMMON_HOLES[i];
            f.signature.verdict += &format!("-via-{name}");
            f.title += &format!("; only through {what}");
        }
    }
    Some(f)
}

fn oracle_violation(program: &Program, pair: &Pair) -> Option<Finding> {
    let mut r = Runner::new(pair);
    let n = program.ops.len();
    let contracts_on = !pair.a.contracts.is_empty();
    let mut latent: Option<Finding> = None;
    for step in 0..=n {
        match program.ops.get(step) {
            Some(op) => {
                r.step(op);
            }
            None => {
                r.finish();
            }
        }
        if contracts_on {
            let c = contracts::common(&r.a.ghost.breaks, &r.b().ghost.breaks);
            if let Some((k, p, a)) = c.some_page() {
                return Some(contract_finding(&r.a, c.contracts(), k, p, a as u8, step, false));
            }
        }
        if latent.is_none() {
            if let Some((p, a, reasons)) = violation_now(&r.a, r.b()) {
                latent = Some(oracle_finding(&r.a, p, a, reasons, step, contracts_on));
                if !contracts_on {
                    return latent;
                }
            }
        }
    }
    if contracts_on {
        let (mut a, mut b) = r.into_states();
        contracts::probe(&mut a, &pair.a);
        contracts::probe(&mut b, &pair.b);
        let c = contracts::common(&a.ghost.breaks, &b.ghost.breaks);
        if let Some((k, p, page)) = c.some_page() {
            return Some(contract_finding(&a, c.contracts(), k, p, page as u8, n, true));
        }
    }
    latent
}

fn oracle_finding(s: &State, p: usize, a: u8, reasons: Reasons, step: usize, contracts_on: bool) -> Finding {
    let v = *s.procs[p].vma(a).expect("present PTE has a VMA");
    let w = s.procs[p].why[a as usize];
    let verdict = if contracts_on { "latent" } else { "unsafe" };
    let sig = Signature {
        kind: Kind::Oracle,
        what: "oracle",
        permissive: reasons.letters(),
        rw_by: w.w.why.name(),
        ro_by: "-",
        backing: backing_class(s, &v),
        prot_by: v.prot_by.why.name(),
        softdirty_by: v.softdirty_by.why.name(),
        uffd_wp: false,
        softdirty_tracking: v.soft_dirty_enabled(),
        verdict: format!("{verdict}-{}", reasons.letters()),
    };
    let sd = if v.flags.contains(VmFlags::SOFTDIRTY) { "VM_SOFTDIRTY set" } else { "VM_SOFTDIRTY clear" };
    let tail = if contracts_on { "; latent: no contract breaks" } else { "" };
    let title = format!(
        "both variants RW after {}; must trap: {}; {sd} by {}; vm_page_prot by {}; {}{tail}",
        w.w.describe(),
        reasons.words(),
        v.softdirty_by.describe(),
        v.prot_by.describe(),
        backing_class(s, &v)
    );
    Finding { step, signature: sig, title, process: p, page: a as usize }
}

/// An oracle finding from a contract both sides broke (`k` at `(p, a)`; `all`
/// every contract broken in common), during the run or (`at_end`) in the probe.
fn contract_finding(s: &State, all: Contract, k: Contract, p: usize, a: u8, step: usize, at_end: bool) -> Finding {
    let v = s.procs[p].vma(a).copied();
    let w = s.procs[p].why[a as usize];
    let present = matches!(s.procs[p].pt[a as usize], Entry::Present { .. });
    let sig = Signature {
        kind: Kind::Oracle,
        what: "oracle",
        permissive: all.letters(),
        rw_by: if present { w.w.why.name() } else { "no-pte" },
        ro_by: "-",
        backing: v.map_or("none", |v| backing_class(s, &v)),
        prot_by: v.map_or(Why::Unknown, |v| v.prot_by.why).name(),
        softdirty_by: v.map_or(Why::Unknown, |v| v.softdirty_by.why).name(),
        uffd_wp: false,
        softdirty_tracking: v.is_some_and(|v| v.soft_dirty_enabled()),
        verdict: format!("broken-{}", all.letters()),
    };
    let when = if at_end { "in the end-of-program probe".to_string() } else { format!("at step {}", step + 1) };
    let mut title = format!(
        "both variants break {} (p{p} page {a}, {} {when}); PTE {} by {}",
        all.words(),
        k.words(),
        if matches!(s.procs[p].pt[a as usize], Entry::Present { bits, .. } if bits.contains(PteBits::W)) {
            "RW"
        } else {
            "last changed"
        },
        w.w.describe()
    );
    if let Some(v) = v {
        let sd = if v.flags.contains(VmFlags::SOFTDIRTY) { "VM_SOFTDIRTY set" } else { "VM_SOFTDIRTY clear" };
        title += &format!(
            "; {sd} by {}; vm_page_prot by {}; {}",
            v.softdirty_by.describe(),
            v.prot_by.describe(),
            backing_class(s, &v)
        );
    }
    Finding { step, signature: sig, title, process: p, page: a as usize }
}

/// Just the divergence signature (the engines' and minimizer's question).
pub fn signature_of(program: &Program, pair: &Pair) -> Option<Signature> {
    analyze(program, pair, Kind::Divergence).map(|f| f.signature)
}

/// First divergence with both states at that point (`ops.len()` = the finish).
pub fn first_divergence(program: &Program, pair: &Pair) -> Option<(usize, Box<(State, State)>)> {
    let mut r = Runner::new(pair);
    for (i, op) in program.ops.iter().enumerate() {
        if r.step(op).1 {
            return Some((i, Box::new(r.into_states())));
        }
    }
    if r.finish() {
        return Some((program.ops.len(), Box::new(r.into_states())));
    }
    None
}

/// One page of a report: the entry under each variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageDiff {
    pub process: usize,
    pub page: usize,
    pub vma: String,
    pub a: String,
    pub b: String,
}

/// A finding with everything a report needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub finding: Finding,
    /// The op's text.
    pub op: String,
    /// Pages at the finding's step (differing pages, or the unsafe page).
    pub pages: Vec<PageDiff>,
    /// Differing pages at the end of the program (divergences).
    pub final_pages: Vec<PageDiff>,
}

/// The result of checking one program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub variants: (String, String),
    pub divergence: Option<Report>,
    /// An unsafe PTE both variants agree on (a hole in the modelled kernel).
    pub violation: Option<Report>,
    /// A kernel WARN_ON_ONCE fired on side a / side b.
    pub warned: (bool, bool),
}

/// Render an entry with its bits.
pub fn show_entry(e: Entry) -> String {
    fn bits(b: PteBits) -> String {
        let mut v = vec![if b.contains(PteBits::W) { "RW" } else { "RO" }];
        for (f, n) in [
            (PteBits::D, "D"),
            (PteBits::A, "A"),
            (PteBits::SD, "SD"),
            (PteBits::UW, "UW"),
            (PteBits::PROTNONE, "PROTNONE"),
        ] {
            if b.contains(f) {
                v.push(n);
            }
        }
        v.join(" ")
    }
    fn swp(b: SwpBits) -> String {
        let mut v = Vec::new();
        for (f, n) in [
            (SwpBits::YOUNG, "young"),
            (SwpBits::DIRTY, "dirty"),
            (SwpBits::SD, "swpSD"),
            (SwpBits::UW, "swpUW"),
            (SwpBits::EXCL, "excl"),
        ] {
            if b.contains(f) {
                v.push(n);
            }
        }
        v.join(" ")
    }
    match e {
        Entry::None => "none".into(),
        Entry::Present { bits: b, folio } if folio == ZERO_PAGE => {
            format!("present {} zero-page", bits(b))
        }
        Entry::Present { bits: b, folio } => format!("present {} folio#{folio}", bits(b)),
        Entry::Migration { kind, bits: b, .. } => {
            let k = match kind {
                MigKind::Read => "readable",
                MigKind::ReadExclusive => "readable-exclusive",
                MigKind::Write => "writable",
            };
            format!("migration {k} {}", swp(b)).trim_end().into()
        }
        Entry::Swap { bits: b, slot } => format!("swap slot#{slot} {}", swp(b)).trim_end().into(),
        Entry::Marker => "uffd-wp marker".into(),
    }
}

/// Render a VMA: range, flags, prot, backing.
pub fn show_vma(s: &State, v: &Vma) -> String {
    let f = v.flags;
    let c = |b: VmFlags, ch: char| if f.contains(b) { ch } else { '-' };
    let mut extra = Vec::new();
    for (b, n) in [
        (VmFlags::SOFTDIRTY, "softdirty"),
        (VmFlags::UFFD_WP, "uffd_wp"),
        (VmFlags::LOCKED, "locked"),
        (VmFlags::RAND_READ, "rand_read"),
        (VmFlags::DONTCOPY, "dontcopy"),
        (VmFlags::WIPEONFORK, "wipeonfork"),
    ] {
        if f.contains(b) {
            extra.push(n);
        }
    }
    let prot = if v.prot.contains(model::PageProt::RW) {
        "RW"
    } else if v.prot.contains(model::PageProt::USER) {
        "RO"
    } else {
        "NONE"
    };
    format!(
        "[{}, {}) {}{}{}{} {} vm_page_prot={prot}{}",
        v.start,
        v.end,
        c(VmFlags::READ, 'r'),
        c(VmFlags::WRITE, 'w'),
        c(VmFlags::EXEC, 'x'),
        if f.contains(VmFlags::SHARED) { 's' } else { 'p' },
        backing_class(s, v),
        if extra.is_empty() { String::new() } else { format!(" {}", extra.join(",")) }
    )
}

/// One PTE with its provenance and the oracle's reasons.
pub fn show_pte(s: &State, p: usize, i: usize) -> String {
    let e = s.procs[p].pt[i];
    let w = s.procs[p].why[i];
    let mut out = show_entry(e);
    match e {
        Entry::Present { bits, .. } => {
            let rw = if bits.contains(PteBits::W) { "RW" } else { "RO" };
            out += &format!(" ({rw} by {})", w.w.describe());
            let r = must_trap(s, p, i as u8);
            if !r.is_empty() {
                let tag = if bits.contains(PteBits::W) { "UNSAFE, must trap" } else { "must trap" };
                out += &format!(" [{tag}: {}]", r.letters());
            }
        }
        Entry::None => {}
        _ => out += &format!(" (by {})", w.w.describe()),
    }
    out
}

fn page_diff(a: &State, b: &State, p: usize, i: usize) -> PageDiff {
    PageDiff {
        process: p,
        page: i,
        vma: a.procs[p].vma(i as u8).or_else(|| b.procs[p].vma(i as u8)).map_or("no vma".into(), |v| show_vma(a, v)),
        a: show_pte(a, p, i),
        b: show_pte(b, p, i),
    }
}

fn page_diffs(a: &State, b: &State) -> Vec<PageDiff> {
    differing_pages(a, b).into_iter().map(|(p, i)| page_diff(a, b, p, i)).collect()
}

/// Run the program to `upto` (inclusive; `ops.len()` = after the finish) on both sides.
pub fn states_at(program: &Program, pair: &Pair, upto: usize) -> (State, State) {
    let (mut a, mut b) = (State::new(), State::new());
    for op in program.ops.iter().take(upto + 1) {
        model::step(&mut a, &pair.a, op);
        model::step(&mut b, &pair.b, op);
    }
    if upto >= program.ops.len() {
        model::finish(&mut a, &pair.a);
        model::finish(&mut b, &pair.b);
    }
    (a, b)
}

fn op_text(program: &Program, step: usize) -> String {
    program.ops.get(step).map_or("(end: finish pending migrations)".to_string(), |o| o.to_string())
}

/// Check a program: the full report (first divergence, first oracle violation).
pub fn check(program: &Program, pair: &Pair) -> Outcome {
    let end = states_at(program, pair, program.ops.len());
    let divergence = analyze(program, pair, Kind::Divergence).map(|f| {
        let (a, b) = states_at(program, pair, f.step);
        Report {
            op: op_text(program, f.step),
            pages: page_diffs(&a, &b),
            final_pages: page_diffs(&end.0, &end.1),
            finding: f,
        }
    });
    let violation = analyze(program, pair, Kind::Oracle).map(|f| {
        let (a, b) = states_at(program, pair, f.step);
        Report {
            op: op_text(program, f.step),
            pages: vec![page_diff(&a, &b, f.process, f.page)],
            final_pages: Vec::new(),
            finding: f,
        }
    });
    Outcome { variants: pair.names(), divergence, violation, warned: (end.0.warned, end.1.warned) }
}

impl Outcome {
    /// Human-readable report.
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let (na, nb) = &self.variants;
        let w = na.len().max(nb.len());
        let mut out = String::new();
        let pages = |out: &mut String, ps: &[PageDiff]| {
            for pg in ps {
                let _ = writeln!(out, "  p{} page {}: {}", pg.process, pg.page, pg.vma);
                let _ = writeln!(out, "    {na:<w$} : {}", pg.a);
                let _ = writeln!(out, "    {nb:<w$} : {}", pg.b);
            }
        };
        match &self.divergence {
            None => {
                let _ = writeln!(out, "PASS: {na} and {nb} agree on every PTE at every step");
            }
            Some(d) => {
                let _ = writeln!(out, "DIVERGES at step {} `{}`", d.finding.step + 1, d.op);
                let _ = writeln!(out, "  {}", d.finding.title);
                let _ = writeln!(out, "  signature: {}", d.finding.signature);
                let _ = writeln!(out, "  cause: {}", super::causes::cause_of(&d.finding.signature).key);
                pages(&mut out, &d.pages);
                if d.final_pages != d.pages {
                    let _ = writeln!(out, "  at the end of the program:");
                    pages(&mut out, &d.final_pages);
                }
            }
        }
        if let Some(v) = &self.violation {
            let _ = writeln!(out, "ORACLE VIOLATION at step {} `{}`", v.finding.step + 1, v.op);
            let _ = writeln!(out, "  {}", v.finding.title);
            let _ = writeln!(out, "  signature: {}", v.finding.signature);
            let _ = writeln!(out, "  cause: {}", super::causes::cause_of(&v.finding.signature).key);
            pages(&mut out, &v.pages);
        }
        if self.warned.0 || self.warned.1 {
            let side = match self.warned {
                (true, true) => "both variants".to_string(),
                (true, false) => na.clone(),
                _ => nb.clone(),
            };
            let _ = writeln!(out, "  note: a kernel WARN_ON_ONCE fired under {side}");
        }
        out
    }
}
