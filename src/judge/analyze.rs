//! The differential judgement of one program: its first divergence (with its
//! [`Signature`] and verdict) or its first oracle violation, each with a title
//! built from provenance. Shared by libFuzzer, the built-in engine, corpus
//! replay, the minimizer and `explore`.
//!
//! Two models that differ only in their [`Config`](crate::model::Config) run
//! the same program. After every step (and after the end-of-program finish of
//! pending migrations) the write bit of every present PTE and the kind of every
//! non-present entry are compared. The first differing step is the divergence;
//! its signature says which function made the writable side writable, what made
//! the other side read-only, the backing, where `vm_page_prot` and VM_SOFTDIRTY
//! came from, and the verdict: **harmful** if a contract breaks on one side only
//! (or, with contracts off, the write-trap proxy's unsafe PTE), **latent** if
//! only the proxy saw it, else **benign**. Separately, an **oracle violation** is
//! a contract both sides break alike (or an unsafe PTE they agree on): a hole in
//! the modelled kernel itself.

use serde::Serialize;

use super::contracts;
use super::contracts::Contract;
use super::ghost::Breaks;
use super::holes::Hole;
use super::runner::{differing_pages, Pair, Runner};
use super::signature::{EntryClass, Kind, MappingClass, Shape, Signature, Verdict};
use super::world::World;
use crate::model::{Entry, PteBits, State, Variant, VmFlags, Why, NPAGES};
use crate::op::Program;
use crate::oracle::{must_trap, unsafe_reasons, Reasons};

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

/// Harmful W differences in the current states: the first page where one side is
/// writable, the other is not, and the writable PTE must trap.
fn harmful_now(a: &State, b: &State, pair: &Pair) -> Option<(Variant, Reasons)> {
    for (p, i) in differing_pages(a, b) {
        for (s, c) in [(a, &pair.a), (b, &pair.b)] {
            let r = unsafe_reasons(s, p, i as u8);
            if !r.is_empty() {
                return Some((c.variant(), r));
            }
        }
    }
    None
}

/// An unsafe PTE on which both sides agree (an oracle violation), if any.
pub(crate) fn violation_now(a: &State, b: &State) -> Option<(usize, u8, Reasons)> {
    for (p, mm) in a.procs.iter().enumerate() {
        if !mm.alive {
            continue;
        }
        for i in 0..NPAGES {
            if !mm.pt[i].writable() || EntryClass::of(b.procs[p].pt[i]) != EntryClass::of(mm.pt[i]) {
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

/// `; VM_SOFTDIRTY set by ...; vm_page_prot by ...; memfd-shared`.
fn vma_tail(s: &State, v: &crate::model::Vma) -> String {
    let sd = if v.flags.contains(VmFlags::SOFTDIRTY) { "VM_SOFTDIRTY set" } else { "VM_SOFTDIRTY clear" };
    format!(
        "; {sd} by {}; vm_page_prot by {}; {}",
        v.softdirty_by.describe(),
        v.prot_by.describe(),
        MappingClass::of(s, v)
    )
}

/// The signature and title of a divergence at page `(p, i)`, before its verdict.
fn divergence_at(a: &State, b: &State, pair: &Pair, p: usize, i: usize) -> (Signature, String) {
    let (ea, eb) = (a.procs[p].pt[i], b.procs[p].pt[i]);
    let w_diff = matches!((ea, eb), (Entry::Present { .. }, Entry::Present { .. }));
    let (perm, ro, perm_cfg) = if ea.writable() || !w_diff { (a, b, &pair.a) } else { (b, a, &pair.b) };
    let vma = perm.procs[p].vma(i as u8).or_else(|| ro.procs[p].vma(i as u8)).copied();
    let ro_entry = ro.procs[p].pt[i];
    let (pw, rw) = (perm.procs[p].why[i].w, ro.procs[p].why[i].w);
    let (va, vb) = (pair.a.variant(), pair.b.variant());
    let (ca, cb) = (EntryClass::of(ea), EntryClass::of(eb));
    let shape = if w_diff {
        Shape::W { permissive: perm_cfg.variant(), rw_by: pw.why, ro_by: rw.why }
    } else {
        Shape::Entry { a: va, ca, b: vb, cb }
    };
    let sig = Signature {
        shape,
        backing: vma.map_or(MappingClass::None, |v| MappingClass::of(perm, &v)),
        prot_by: vma.map_or(Why::Unknown, |v| v.prot_by.why),
        softdirty_by: vma.map_or(Why::Unknown, |v| v.softdirty_by.why),
        uffd_wp: matches!(ro_entry, Entry::Present { bits, .. } if bits.contains(PteBits::UW)),
        softdirty_tracking: vma.is_some_and(|v| v.soft_dirty_enabled()),
        verdict: Verdict::Benign,
    };
    let mut title = if w_diff {
        format!("{} RW after {}; RO since {}", perm_cfg.variant(), pw.describe(), rw.describe())
    } else {
        format!("{va} {} vs {vb} {}", ca.name(), cb.name())
    };
    if let Some(v) = vma {
        title += &vma_tail(perm, &v);
    }
    (sig, title)
}

/// The contract breaks one side has and the other does not, first side a's.
fn contract_difference(a: &World, b: &World, pair: &Pair) -> Option<(Variant, Breaks)> {
    let da = a.g.breaks.minus(&b.g.breaks);
    if !da.is_empty() {
        return Some((pair.a.variant(), da));
    }
    let db = b.g.breaks.minus(&a.g.breaks);
    (!db.is_empty()).then(|| (pair.b.variant(), db))
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
    let mut proxy: Option<(Variant, Reasons)> = None;
    for step in 0..=n {
        let div = r.step_or_finish(&program.ops, step);
        if found.is_some() {
            if proxy.is_none() {
                proxy = harmful_now(&r.a.k, &r.b().k, pair);
            }
        } else if div {
            let (p, i) = differing_pages(&r.a.k, &r.b().k)[0];
            let (sig, title) = divergence_at(&r.a.k, &r.b().k, pair, p, i);
            proxy = harmful_now(&r.a.k, &r.b().k, pair);
            found = Some(Finding { step, signature: sig, title, process: p, page: i });
        }
    }
    let mut f = found?;
    if !pair.contracts_on() {
        // The proxy alone.
        match proxy {
            Some((v, reasons)) => {
                f.signature.verdict = Verdict::Harmful { contracts: reasons, on: None, via: None };
                f.title = format!("{}; harmful: {v} lets a write bypass {}", f.title, reasons.words());
            }
            None => {
                f.signature.verdict = Verdict::Benign;
                f.title += "; benign (the read-only side only costs a spurious fault)";
            }
        }
        return Some(f);
    }
    let (mut a, mut b) = r.into_worlds();
    contracts::probe(&mut a, &pair.a);
    contracts::probe(&mut b, &pair.b);
    if let Some((side, extra)) = contract_difference(&a, &b, pair) {
        let c = extra.contracts();
        let (_, bp, bpage) = extra.some_page().expect("a difference has a page");
        // Usually the permissive side (W) or side a (entry) breaks; when the
        // other one does, the verdict says so (its cause differs).
        let on = (f.signature.first_variant() != Some(side)).then_some(side);
        f.signature.verdict = Verdict::Harmful { contracts: c, on, via: None };
        f.title = format!("{}; harmful: {side} breaks {} (p{bp} page {bpage})", f.title, c.words());
        for hole in Hole::ALL {
            let Some(fixed) = hole.patch(pair) else { continue };
            let (x, y) = Runner::run_to_end(&fixed, &program.ops);
            if contract_difference(&x, &y, &fixed).is_none() {
                f.signature.verdict = f.signature.verdict.through(hole);
                f.title += &format!(", only through {}", hole.what());
                break;
            }
        }
        return Some(f);
    }
    match proxy {
        Some((v, reasons)) => {
            f.signature.verdict = Verdict::Latent(reasons);
            f.title = format!(
                "{}; latent: {v} holds a writable PTE a store must trap on ({}), but no contract breaks",
                f.title,
                reasons.words()
            );
        }
        None => {
            f.signature.verdict = Verdict::Benign;
            f.title += "; benign (the read-only side only costs a spurious fault)";
        }
    }
    Some(f)
}

fn analyze_oracle(program: &Program, pair: &Pair) -> Option<Finding> {
    let mut f = oracle_violation(program, pair)?;
    let Verdict::Broken { contracts: broke, .. } = f.signature.verdict else {
        return Some(f);
    };
    // Is the violation a known hole common to every variant? Patch each hole on
    // both sides: the break is the hole's when no contract is broken at this step
    // any more (a later, different break, e.g. a page that loses its PTE, is not
    // this violation). Failing that, the first hole whose patch leaves fewer
    // contracts broken there takes it (its part of the break is gone; what
    // remains, e.g. v6.1's uffd-wp resolve ignoring soft-dirty, is another cause,
    // reported on its own).
    let mut partial = None;
    let mut whole = None;
    for hole in Hole::ALL {
        let Some(fixed) = hole.patch(pair) else { continue };
        match oracle_violation(program, &fixed) {
            Some(g) if matches!(g.signature.verdict, Verdict::Broken { .. }) && g.step == f.step => {
                let left = g.signature.verdict.contracts();
                if partial.is_none() && left.bits().count_ones() < broke.bits().count_ones() {
                    partial = Some(hole);
                }
            }
            _ => {
                whole = Some(hole);
                break;
            }
        }
    }
    if let Some(hole) = whole.or(partial) {
        f.signature.verdict = f.signature.verdict.through(hole);
        f.title += &format!("; only through {}", hole.what());
    }
    Some(f)
}

fn oracle_violation(program: &Program, pair: &Pair) -> Option<Finding> {
    let mut r = Runner::new(pair);
    let n = program.ops.len();
    let contracts_on = pair.contracts_on();
    let mut latent: Option<Finding> = None;
    for step in 0..=n {
        r.step_or_finish(&program.ops, step);
        if contracts_on {
            let c = r.a.g.breaks.common(&r.b().g.breaks);
            if let Some((k, p, a)) = c.some_page() {
                return Some(contract_finding(&r.a.k, c.contracts(), k, p, a as u8, step, false));
            }
        }
        if latent.is_none() {
            if let Some((p, a, reasons)) = violation_now(&r.a.k, &r.b().k) {
                latent = Some(oracle_finding(&r.a.k, p, a, reasons, step, contracts_on));
                if !contracts_on {
                    return latent;
                }
            }
        }
    }
    if contracts_on {
        let (mut a, mut b) = r.into_worlds();
        contracts::probe(&mut a, &pair.a);
        contracts::probe(&mut b, &pair.b);
        let c = a.g.breaks.common(&b.g.breaks);
        if let Some((k, p, page)) = c.some_page() {
            return Some(contract_finding(&a.k, c.contracts(), k, p, page as u8, n, true));
        }
    }
    latent
}

fn oracle_finding(s: &State, p: usize, a: u8, reasons: Reasons, step: usize, contracts_on: bool) -> Finding {
    let v = *s.procs[p].vma(a).expect("present PTE has a VMA");
    let w = s.procs[p].why[a as usize];
    let sig = Signature {
        shape: Shape::Oracle { contracts: reasons, rw_by: Some(w.w.why) },
        backing: MappingClass::of(s, &v),
        prot_by: v.prot_by.why,
        softdirty_by: v.softdirty_by.why,
        uffd_wp: false,
        softdirty_tracking: v.soft_dirty_enabled(),
        verdict: if contracts_on { Verdict::Latent(reasons) } else { Verdict::Unsafe(reasons) },
    };
    let tail = if contracts_on { "; latent: no contract breaks" } else { "" };
    let title =
        format!("both variants RW after {}; must trap: {}{}{tail}", w.w.describe(), reasons.words(), vma_tail(s, &v));
    Finding { step, signature: sig, title, process: p, page: a as usize }
}

/// An oracle finding from a contract both sides broke (`k` at `(p, a)`; `all`
/// every contract broken in common), during the run or (`at_end`) in the probe.
fn contract_finding(s: &State, all: Contract, k: Contract, p: usize, a: u8, step: usize, at_end: bool) -> Finding {
    let v = s.procs[p].vma(a).copied();
    let w = s.procs[p].why[a as usize];
    let present = matches!(s.procs[p].pt[a as usize], Entry::Present { .. });
    let sig = Signature {
        shape: Shape::Oracle { contracts: all, rw_by: present.then_some(w.w.why) },
        backing: v.map_or(MappingClass::None, |v| MappingClass::of(s, &v)),
        prot_by: v.map_or(Why::Unknown, |v| v.prot_by.why),
        softdirty_by: v.map_or(Why::Unknown, |v| v.softdirty_by.why),
        uffd_wp: false,
        softdirty_tracking: v.is_some_and(|v| v.soft_dirty_enabled()),
        verdict: Verdict::Broken { contracts: all, via: None },
    };
    let when = if at_end { "in the end-of-program probe".to_string() } else { format!("at step {}", step + 1) };
    let mut title = format!(
        "both variants break {} (p{p} page {a}, {} {when}); PTE {} by {}",
        all.words(),
        k.words(),
        if s.procs[p].pt[a as usize].writable() { "RW" } else { "last changed" },
        w.w.describe()
    );
    if let Some(v) = v {
        title += &vma_tail(s, &v);
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
    for i in 0..=program.ops.len() {
        if r.step_or_finish(&program.ops, i) {
            return Some((i, Box::new(r.into_states())));
        }
    }
    None
}
