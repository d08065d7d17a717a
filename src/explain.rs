//! `ptediff explain`: a step-by-step, side-by-side trace of a program under both
//! variants: each op, then every page it touched (entry, provenance, the oracle's
//! must-trap reasons) and every VMA it changed (flags, `vm_page_prot`). The first
//! divergence and every unsafe PTE stand out.

use serde::Serialize;

use crate::check::{differing_pages, show_pte, show_vma, Pair, Runner};
use crate::model::{StepResult, MAX_PROCS, NPAGES};
use crate::op::Program;
use crate::oracle::unsafe_reasons;

/// One page in a trace step.
#[derive(Clone, Debug, Serialize)]
pub struct TracePage {
    pub process: usize,
    pub page: usize,
    pub vma: String,
    pub a: String,
    pub b: String,
    /// The variants disagree on this page.
    pub differs: bool,
    /// Writable and must trap, per side (oracle reasons, empty if safe).
    pub unsafe_a: String,
    pub unsafe_b: String,
}

/// One step of a trace.
#[derive(Clone, Debug, Serialize)]
pub struct TraceStep {
    /// 1-based; `ops.len() + 1` is the end-of-program finish.
    pub step: usize,
    pub op: String,
    pub result_a: String,
    pub result_b: String,
    /// VMAs whose flags or `vm_page_prot` changed (side a).
    pub vmas: Vec<String>,
    pub pages: Vec<TracePage>,
    /// This is the first step at which the variants disagree.
    pub first_divergence: bool,
}

/// The whole trace.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub variants: (String, String),
    pub kernel: String,
    pub steps: Vec<TraceStep>,
}

fn result_name(r: Option<StepResult>) -> String {
    match r {
        None => "-".into(),
        Some(StepResult::Ok) => "ok".into(),
        Some(StepResult::Failed) => "failed".into(),
        Some(StepResult::UffdWp) => "blocked on uffd-wp".into(),
        Some(StepResult::Segv) => "SIGSEGV".into(),
        Some(StepResult::NotInKernel { feature, since }) => format!("not in this kernel ({feature} is {since}+)"),
    }
}

/// Run the program and record the trace.
pub fn trace(program: &Program, pair: &Pair) -> Trace {
    let mut r = Runner::new(pair);
    let mut steps = Vec::new();
    let mut diverged = false;
    for i in 0..=program.ops.len() {
        let (pa, pb) = (r.a.k, r.b().k);
        let (ra, rb, op) = match program.ops.get(i) {
            Some(op) => {
                let st = r.step(op);
                (Some(st.a), Some(st.b), op.to_string())
            }
            None => {
                if r.a.k.pending.is_empty() && r.b().k.pending.is_empty() {
                    break;
                }
                r.finish();
                (None, None, "(end: finish pending migrations)".to_string())
            }
        };
        let (a, b) = (r.a.k, r.b().k);
        let diff = differing_pages(&a, &b);
        let first = !diverged && !diff.is_empty();
        diverged |= first;
        let mut pages = Vec::new();
        for p in 0..MAX_PROCS {
            for pg in 0..NPAGES {
                let touched = a.procs[p].pt[pg] != pa.procs[p].pt[pg]
                    || b.procs[p].pt[pg] != pb.procs[p].pt[pg]
                    || a.procs[p].why[pg] != pa.procs[p].why[pg]
                    || b.procs[p].why[pg] != pb.procs[p].why[pg];
                let differs = diff.contains(&(p, pg));
                if !(touched || first && differs) {
                    continue;
                }
                pages.push(TracePage {
                    process: p,
                    page: pg,
                    vma: a.procs[p]
                        .vma(pg as u8)
                        .or_else(|| b.procs[p].vma(pg as u8))
                        .map_or("no vma".into(), |v| show_vma(&a, v)),
                    a: show_pte(&a, p, pg),
                    b: show_pte(&b, p, pg),
                    differs,
                    unsafe_a: letters(unsafe_reasons(&a, p, pg as u8)),
                    unsafe_b: letters(unsafe_reasons(&b, p, pg as u8)),
                });
            }
        }
        let mut vmas = Vec::new();
        for p in 0..MAX_PROCS {
            for v in &a.procs[p].vmas {
                let before = pa.procs[p].vmas.iter().find(|x| x.start == v.start && x.end == v.end);
                if before.is_none_or(|x| x.flags != v.flags || x.prot != v.prot) {
                    vmas.push(format!("p{p} {}", show_vma(&a, v)));
                }
            }
        }
        // What a PAGEMAP_SCAN returned (as the reproducer prints it).
        let scanned = |k: &crate::model::State, cfg: &crate::model::Config, r: Option<StepResult>| {
            let name = result_name(r);
            match program.ops.get(i) {
                Some(&crate::op::Op::PagemapScan { p, addr, len, mode })
                    if matches!(r, Some(StepResult::Ok | StepResult::Failed)) =>
                {
                    let mut k = *k;
                    let (x, y) = crate::model::range(addr, len);
                    let (rep, _) = crate::model::task_mmu::do_pagemap_scan(&mut k, cfg, p as usize, x, y, mode);
                    format!("{name}: {}", rep.render())
                }
                _ => name,
            }
        };
        steps.push(TraceStep {
            step: i + 1,
            op,
            result_a: scanned(&pa, &pair.a, ra),
            result_b: scanned(&pb, &pair.b, rb),
            vmas,
            pages,
            first_divergence: first,
        });
    }
    let (na, nb) = pair.names();
    Trace { variants: (na, nb), kernel: pair.a.kernel.name().into(), steps }
}

fn letters(r: crate::oracle::Reasons) -> String {
    if r.is_empty() {
        String::new()
    } else {
        r.letters()
    }
}

/// Plain or coloured text.
pub fn render(t: &Trace, color: bool) -> String {
    use std::fmt::Write;
    let (red, yellow, bold, reset) =
        if color { ("\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m") } else { ("", "", "", "") };
    let (na, nb) = &t.variants;
    let w = na.len().max(nb.len());
    let mut out = String::new();
    let _ = writeln!(out, "{bold}{na} vs {nb} on {}{reset}", t.kernel);
    for s in &t.steps {
        let res = if s.result_a == s.result_b {
            s.result_a.clone()
        } else {
            format!("{na}: {}, {nb}: {}", s.result_a, s.result_b)
        };
        let mark = if s.first_divergence { format!("  {red}<== first divergence{reset}") } else { String::new() };
        let _ = writeln!(out, "{bold}{:>3}. {}{reset}  [{res}]{mark}", s.step, s.op);
        for v in &s.vmas {
            let _ = writeln!(out, "       vma {v}");
        }
        for p in &s.pages {
            let flag = if p.differs { format!("{red}≠{reset}") } else { " ".into() };
            let _ = writeln!(out, "     {flag} p{} page {}: {}", p.process, p.page, p.vma);
            for (name, e, u) in [(na, &p.a, &p.unsafe_a), (nb, &p.b, &p.unsafe_b)] {
                let (c0, c1) = if !u.is_empty() { (yellow, reset) } else { ("", "") };
                let _ = writeln!(out, "         {name:<w$} : {c0}{e}{c1}");
            }
        }
    }
    out
}
