//! Rendering a checked program: the pages of a finding under each variant
//! ([`PageDiff`]), the full [`Outcome`] of one program ([`check`]) and its
//! human-readable report.

use serde::Serialize;

use super::analyze::{analyze, Finding};
use super::runner::{differing_pages, Pair, Runner};
use super::signature::{Kind, MappingClass};
use crate::model::{self, Entry, MigKind, PteBits, State, SwpBits, VmFlags, Vma, ZERO_PAGE};
use crate::op::Program;
use crate::oracle::must_trap;

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
        Entry::Guard { bits: b } => format!("guard marker {}", swp(b)).trim_end().into(),
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
        (VmFlags::MERGEABLE, "mergeable"),
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
        MappingClass::of(s, v),
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

fn op_text(program: &Program, step: usize) -> String {
    program.ops.get(step).map_or("(end: finish pending migrations)".to_string(), |o| o.to_string())
}

/// Check a program: the full report (first divergence, first oracle violation).
pub fn check(program: &Program, pair: &Pair) -> Outcome {
    let end = Runner::run_to(pair, &program.ops, program.ops.len()).into_states();
    let divergence = analyze(program, pair, Kind::Divergence).map(|f| {
        let (a, b) = Runner::run_to(pair, &program.ops, f.step).into_states();
        Report {
            op: op_text(program, f.step),
            pages: page_diffs(&a, &b),
            final_pages: page_diffs(&end.0, &end.1),
            finding: f,
        }
    });
    let violation = analyze(program, pair, Kind::Oracle).map(|f| {
        let (a, b) = Runner::run_to(pair, &program.ops, f.step).into_states();
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
                let _ = writeln!(out, "  cause: {}", super::causes::Cause::of(&d.finding.signature));
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
            let _ = writeln!(out, "  cause: {}", super::causes::Cause::of(&v.finding.signature));
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
