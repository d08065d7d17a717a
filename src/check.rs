//! The differential oracle: one `check(program)` shared by libFuzzer, the built-in
//! engine, corpus replay and the minimizer.
//!
//! Two models that differ only in their [`Config`] run the same program. After
//! every step (and after the end-of-program finish of pending migrations) the
//! write bit of every present PTE and the kind of every non-present entry are
//! compared. The first differing step is the divergence; its
//! [`Signature`] says which function made the writable side writable, what made
//! the other side read-only, the backing and where `vm_page_prot` came from.

use serde::Serialize;

use crate::model::StepResult;
use crate::model::{
    self, Backing, Config, Entry, FileKind, MigKind, PteBits, State, SwpBits, VmFlags, Vma, Why,
    MAX_PROCS, NPAGES, ZERO_PAGE,
};
use crate::op::{Op, Program};

/// The two sides of a differential run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    pub a: Config,
    pub b: Config,
}

impl Default for Pair {
    /// `full-restore` vs `vm-page-prot` on v6.1.
    fn default() -> Pair {
        Pair {
            a: Config::new(model::Restore::FullRestore),
            b: Config::new(model::Restore::VmPageProt),
        }
    }
}

impl Pair {
    /// Can the two sides differ after a step? Models on the same kernel run the
    /// same code until variant-specific code (restore / unuse) has run on either
    /// side, so until then they are identical and the comparison can be skipped.
    #[inline]
    pub fn may_differ(&self, a: &State, b: &State) -> bool {
        self.a.kernel != self.b.kernel || (a.variant_hits | b.variant_hits) != 0
    }

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
    if a.procs
        .iter()
        .zip(b.procs.iter())
        .all(|(x, y)| x.alive == y.alive && x.pt == y.pt)
    {
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
/// run, so until an op could reach it only side a is stepped, and side b is
/// copied from a just before (the hot path of every engine).
pub struct Runner<'p> {
    pub pair: &'p Pair,
    pub a: State,
    pub b: State,
    synced: bool,
}

impl<'p> Runner<'p> {
    pub fn new(pair: &'p Pair) -> Runner<'p> {
        Runner {
            pair,
            a: State::new(),
            b: State::new(),
            synced: pair.a.kernel != pair.b.kernel,
        }
    }

    /// Back to the initial state.
    pub fn reset(&mut self) {
        self.a = State::new();
        self.synced = self.pair.a.kernel != self.pair.b.kernel;
        if self.synced {
            self.b = State::new();
        }
    }

    /// Could `op` run a restore or unuse_pte? Migrations (and every op while a
    /// migration is in flight, since a fault waits for it) and swapoff.
    #[inline]
    fn may_run_variant(&self, op: &Op) -> bool {
        !self.a.pending.is_empty() || matches!(op, Op::Migrate { .. } | Op::Swapoff)
    }

    #[inline]
    fn sync(&mut self) {
        if !self.synced {
            self.b.clone_from(&self.a);
            self.synced = true;
        }
    }

    /// Apply `op` to both sides; true if they now disagree.
    #[inline]
    pub fn step(&mut self, op: &Op) -> (StepResult, bool) {
        if !self.synced && self.may_run_variant(op) {
            self.sync();
        }
        let r = model::step(&mut self.a, &self.pair.a, op);
        if !self.synced {
            return (r, false);
        }
        model::step(&mut self.b, &self.pair.b, op);
        (
            r,
            self.pair.may_differ(&self.a, &self.b) && !agree(&self.a, &self.b),
        )
    }

    /// Finish pending migrations on both sides; true if they now disagree.
    pub fn finish(&mut self) -> bool {
        if !self.a.pending.is_empty() {
            self.sync();
        }
        model::finish(&mut self.a, &self.pair.a);
        if !self.synced {
            return false;
        }
        model::finish(&mut self.b, &self.pair.b);
        !agree(&self.a, &self.b)
    }
}

/// Run both sides; return the first step at which they disagree (`ops.len()` =
/// the end-of-program finish) with both states at that point.
pub fn first_divergence(program: &Program, pair: &Pair) -> Option<(usize, Box<(State, State)>)> {
    let mut r = Runner::new(pair);
    for (i, op) in program.ops.iter().enumerate() {
        if r.step(op).1 {
            return Some((i, Box::new((r.a, r.b))));
        }
    }
    if r.finish() {
        return Some((program.ops.len(), Box::new((r.a, r.b))));
    }
    None
}

/// Just "does it diverge, and with what signature" (the engines' hot path).
pub fn signature_of(program: &Program, pair: &Pair) -> Option<Signature> {
    first_divergence(program, pair).map(|(_, st)| signature(&st.0, &st.1, pair))
}

/// What separates one cause of divergence from another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Signature {
    /// `W` when the write bit differs, `entry` when the kind of entry differs.
    pub what: &'static str,
    /// `W`: the variant whose PTE is writable. `entry`: `A:kind-vs-B:kind`.
    pub permissive: String,
    /// `W`: the kernel function that made the permissive side writable.
    pub rw_by: &'static str,
    /// `W`: the kernel function that last made the other side read-only.
    pub ro_by: &'static str,
    /// Mapping class: anon-private, file-private, memfd-shared, shmem-shared, ext4-shared, ramfs-shared.
    pub backing: &'static str,
    /// Who last set the VMA's `vm_page_prot`.
    pub prot_by: &'static str,
    /// The read-only side carries uffd-wp.
    pub uffd_wp: bool,
    /// Soft-dirty tracking is active on the VMA (VM_SOFTDIRTY clear).
    pub softdirty_tracking: bool,
}

impl Signature {
    /// A file-name-safe slug, unique per signature.
    pub fn slug(&self) -> String {
        let clean = |s: &str| {
            s.replace(['(', ')'], "_")
                .trim_end_matches('_')
                .replace("__", "_")
        };
        let head = if self.what == "W" {
            format!(
                "W.{}-rw.by-{}.ro-{}",
                self.permissive,
                clean(self.rw_by),
                clean(self.ro_by)
            )
        } else {
            format!("entry.{}", self.permissive)
        };
        format!(
            "{head}.{}.prot-{}{}{}",
            self.backing,
            clean(self.prot_by),
            if self.uffd_wp { ".uffd-wp" } else { "" },
            if self.softdirty_tracking {
                ".sd-tracking"
            } else {
                ""
            }
        )
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
            if a.procs[p].alive != b.procs[p].alive
                || class(a.procs[p].pt[i]) != class(b.procs[p].pt[i])
            {
                out.push((p, i));
            }
        }
    }
    out
}

/// The signature of a divergence, from the first differing page.
pub fn signature(a: &State, b: &State, pair: &Pair) -> Signature {
    let (p, i) = differing_pages(a, b).first().copied().unwrap_or((0, 0));
    let (ea, eb) = (a.procs[p].pt[i], b.procs[p].pt[i]);
    let w_diff = matches!((ea, eb), (Entry::Present { .. }, Entry::Present { .. }));
    let (perm_state, ro_state, perm_cfg) = if ea.writable() || !w_diff {
        (a, b, &pair.a)
    } else {
        (b, a, &pair.b)
    };
    let vma = perm_state.procs[p]
        .vma(i as u8)
        .or_else(|| ro_state.procs[p].vma(i as u8))
        .copied();
    let ro_entry = ro_state.procs[p].pt[i];
    let permissive = if w_diff {
        perm_cfg.variant_name()
    } else {
        format!(
            "{}:{}-vs-{}:{}",
            pair.a.variant_name(),
            class_name(ea),
            pair.b.variant_name(),
            class_name(eb)
        )
    };
    Signature {
        what: if w_diff { "W" } else { "entry" },
        permissive,
        rw_by: if w_diff {
            perm_state.procs[p].why[i].rw_by.name()
        } else {
            "-"
        },
        ro_by: if w_diff {
            ro_state.procs[p].why[i].ro_by.name()
        } else {
            "-"
        },
        backing: vma.map_or("none", |v| backing_class(perm_state, &v)),
        prot_by: vma.map_or(Why::Unknown, |v| v.prot_by).name(),
        uffd_wp: matches!(ro_entry, Entry::Present { bits, .. } if bits.contains(PteBits::UW)),
        softdirty_tracking: vma.is_some_and(|v| v.soft_dirty_enabled()),
    }
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

/// A divergence with everything a report needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// 0-based index of the first differing op; `ops.len()` = the end-of-program finish.
    pub step: usize,
    /// That op's text.
    pub op: String,
    pub signature: Signature,
    /// Differing pages at the first differing step.
    pub pages: Vec<PageDiff>,
    /// Differing pages at the end of the program.
    pub final_pages: Vec<PageDiff>,
}

/// The result of checking one program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub variants: (String, String),
    pub divergence: Option<Divergence>,
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
        if f.contains(VmFlags::SHARED) {
            's'
        } else {
            'p'
        },
        backing_class(s, v),
        if extra.is_empty() {
            String::new()
        } else {
            format!(" {}", extra.join(","))
        }
    )
}

fn page_diffs(a: &State, b: &State) -> Vec<PageDiff> {
    differing_pages(a, b)
        .into_iter()
        .map(|(p, i)| {
            let why = |s: &State| {
                let w = s.procs[p].why[i];
                match s.procs[p].pt[i] {
                    Entry::Present { bits, .. } if bits.contains(PteBits::W) => {
                        format!(" (RW by {})", w.rw_by.name())
                    }
                    Entry::Present { .. } => format!(" (RO by {})", w.ro_by.name()),
                    _ => String::new(),
                }
            };
            PageDiff {
                process: p,
                page: i,
                vma: a.procs[p]
                    .vma(i as u8)
                    .map_or("no vma".into(), |v| show_vma(a, v)),
                a: format!("{}{}", show_entry(a.procs[p].pt[i]), why(a)),
                b: format!("{}{}", show_entry(b.procs[p].pt[i]), why(b)),
            }
        })
        .collect()
}

/// Check a program: the full report.
pub fn check(program: &Program, pair: &Pair) -> Outcome {
    let variants = pair.names();
    let Some((step, st)) = first_divergence(program, pair) else {
        let (mut a, mut b) = (State::new(), State::new());
        for op in &program.ops {
            model::step(&mut a, &pair.a, op);
            model::step(&mut b, &pair.b, op);
        }
        model::finish(&mut a, &pair.a);
        model::finish(&mut b, &pair.b);
        return Outcome {
            variants,
            divergence: None,
            warned: (a.warned, b.warned),
        };
    };
    let (mut a, mut b) = *st;
    let sig = signature(&a, &b, pair);
    let pages = page_diffs(&a, &b);
    for op in program.ops.iter().skip(step + 1) {
        model::step(&mut a, &pair.a, op);
        model::step(&mut b, &pair.b, op);
    }
    model::finish(&mut a, &pair.a);
    model::finish(&mut b, &pair.b);
    let op = program
        .ops
        .get(step)
        .map_or("(end: finish pending migrations)".to_string(), |o| {
            o.to_string()
        });
    Outcome {
        variants,
        divergence: Some(Divergence {
            step,
            op,
            signature: sig,
            pages,
            final_pages: page_diffs(&a, &b),
        }),
        warned: (a.warned, b.warned),
    }
}

impl Outcome {
    /// Human-readable report.
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let (na, nb) = &self.variants;
        let w = na.len().max(nb.len());
        let mut out = String::new();
        match &self.divergence {
            None => {
                let _ = writeln!(out, "PASS: {na} and {nb} agree on every PTE at every step");
            }
            Some(d) => {
                let _ = writeln!(out, "DIVERGES at step {} `{}`", d.step + 1, d.op);
                let _ = writeln!(out, "  signature: {}", d.signature);
                for pg in &d.pages {
                    let _ = writeln!(out, "  p{} page {}: {}", pg.process, pg.page, pg.vma);
                    let _ = writeln!(out, "    {na:<w$} : {}", pg.a);
                    let _ = writeln!(out, "    {nb:<w$} : {}", pg.b);
                }
                if d.final_pages != d.pages {
                    let _ = writeln!(out, "  at the end of the program:");
                    for pg in &d.final_pages {
                        let _ = writeln!(out, "  p{} page {}: {}", pg.process, pg.page, pg.vma);
                        let _ = writeln!(out, "    {na:<w$} : {}", pg.a);
                        let _ = writeln!(out, "    {nb:<w$} : {}", pg.b);
                    }
                }
            }
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
