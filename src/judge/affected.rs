//! `ptediff affected`: which kernels have a hole. For a reproducer, every kernel
//! profile runs the program with the restore that kernel ships
//! ([`Kernel::native_restore`]); the hole is **open** on a profile when that run
//! breaks a contract of the reproducer's own finding (its end-of-program probe
//! included, [`crate::judge::contracts`]), **closed** otherwise. A latent finding
//! (the write-trap proxy only) is open where the run reaches an unsafe PTE for
//! one of its reasons ([`crate::oracle`]).
//! Where `ptediff kernel-check` ran the reproducer on the real kernel of a profile,
//! the real kernel **confirms** the profile (it did exactly what the profile
//! predicted) or **contradicts** it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check::{check, Signature};
use crate::corpus::{self, FileError};
use crate::emit_c;
use crate::judge::contracts;
use crate::judge::contracts::Contract;
use crate::judge::world::World;
use crate::kernel_check::ResultsDb;
use crate::model::{self, Kernel, State};
use crate::oracle::{first_unsafe, Reasons};
use crate::Program;

/// Where a native run first holds an unsafe PTE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unsafe {
    /// 1-based step; `ops + 1` is the end-of-program finish of pending migrations.
    pub step: usize,
    pub process: usize,
    pub page: usize,
    /// Must-trap reasons, e.g. `S` or `U+S`.
    #[serde(serialize_with = "crate::judge::signature::ser_letters")]
    pub reasons: Reasons,
}

/// The first unsafe PTE of the program run natively on `k` whose reasons meet
/// `want` (any reason when `want` is empty): the write-trap proxy.
pub fn first_unsafe_on(program: &Program, k: Kernel, want: Reasons) -> Option<Unsafe> {
    let cfg = emit_c::native(k);
    let mut s = State::new();
    let hit = |s: &State, step: usize| {
        first_unsafe_matching(s, want).map(|(p, a, r)| Unsafe { step, process: p, page: a as usize, reasons: r })
    };
    for (i, op) in program.ops.iter().enumerate() {
        model::step(&mut s, &cfg, op);
        if let Some(u) = hit(&s, i + 1) {
            return Some(u);
        }
    }
    model::finish(&mut s, &cfg);
    hit(&s, program.ops.len() + 1)
}

/// The first break of a contract in `want` when the program runs natively on `k`
/// (its end-of-program probe included; step `ops + 1`), at page `at` if given.
pub fn first_break_on(program: &Program, k: Kernel, want: Contract, at: Option<(usize, usize)>) -> Option<Unsafe> {
    let cfg = emit_c::native(k);
    let mut w = World::new(Contract::all());
    for op in &program.ops {
        w.step(&cfg, op);
    }
    w.finish(&cfg);
    contracts::probe(&mut w, &cfg);
    let b = w.g.breaks;
    for c in Contract::ALL {
        if want.contains(c) {
            for p in 0..crate::model::MAX_PROCS {
                for a in 0..crate::model::NPAGES {
                    if b.broken(c, p, a) && at.is_none_or(|x| x == (p, a)) {
                        return Some(Unsafe {
                            step: b
                                .first
                                .filter(|f| f.contract == c)
                                .map_or(program.ops.len() + 1, |f| f.step as usize),
                            process: p,
                            page: a,
                            reasons: c,
                        });
                    }
                }
            }
        }
    }
    None
}

fn first_unsafe_matching(s: &State, want: Reasons) -> Option<(usize, u8, Reasons)> {
    if want.is_empty() {
        return first_unsafe(s);
    }
    for (p, mm) in s.procs.iter().enumerate() {
        if !mm.alive {
            continue;
        }
        for a in 0..mm.pt.len() as u8 {
            let r = crate::oracle::unsafe_reasons(s, p, a);
            if r.intersects(want) {
                return Some((p, a, r));
            }
        }
    }
    None
}

/// What the real kernel of a profile said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Real {
    /// The real kernel did what the profile predicts.
    Confirmed { uname: String },
    /// It did something else (a model error to fix).
    Contradicted { uname: String, cell: String },
    /// A race reproducer did not hit the window's violation in its rounds.
    NotObserved { uname: String, cell: String },
    /// `emit-c` cannot realise the program deterministically.
    NotRealizable { why: String },
    /// Realizable, but kernel-check has no result for this program on this kernel.
    NotRun,
    /// The profile has no real kernel in the matrix (v6.1 release).
    NoKernel,
}

impl Real {
    fn short(&self) -> &'static str {
        match self {
            Real::Confirmed { .. } => " ✓",
            Real::Contradicted { .. } => " ✗",
            Real::NotObserved { .. } => " ?",
            _ => "",
        }
    }
}

/// One profile's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProfileStatus {
    pub profile: &'static str,
    pub open: bool,
    /// Where the native run first holds an unsafe PTE (when open).
    pub unsafe_at: Option<Unsafe>,
    pub real: Real,
}

/// One reproducer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub file: String,
    /// `divergence`, `oracle`, or `none` (no finding under the file's own header;
    /// listed because some profile holds an unsafe PTE).
    pub kind: &'static str,
    pub signature: Option<Signature>,
    pub title: String,
    /// The reasons judged: the finding's, or (kind `none`) those the unsafe PTEs had.
    #[serde(serialize_with = "crate::judge::signature::ser_letters")]
    pub reasons: Reasons,
    pub profiles: Vec<ProfileStatus>,
}

/// Judge one reproducer on every profile: a row for its harmful divergence and a
/// row for its oracle violation (either may be absent); without either, a row if
/// some profile reaches an unsafe PTE.
pub fn affected(path: &Path, r: &corpus::Reproducer, results: &ResultsDb) -> Vec<Affected> {
    let out = check(&r.program, &r.pair);
    let mut findings = Vec::new();
    if let Some(d) = out.divergence.as_ref().filter(|d| d.finding.signature.harmful()) {
        findings.push(("divergence", Some(&d.finding)));
    }
    if let Some(v) = &out.violation {
        findings.push(("oracle", Some(&v.finding)));
    }
    if findings.is_empty() {
        findings.push(("none", None));
    }
    let name = path.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
    let realizable = emit_c::realizable(&r.program).err().filter(|_| emit_c::race::window(&r.program).is_err());
    let recorded = results.get(&name, &r.program);
    let real_on = |k: Kernel| {
        if !emit_c::PROFILES.contains(&k) {
            Real::NoKernel
        } else if let Some(e) = &realizable {
            Real::NotRealizable { why: e.0.clone() }
        } else {
            match recorded.and_then(|rec| rec.kernels.get(k.name())) {
                None => Real::NotRun,
                Some(res) if res.matches_own_profile && res.cell.starts_with("not observed") => {
                    Real::NotObserved { uname: res.kernel.uname.clone(), cell: res.cell.clone() }
                }
                Some(res) if res.matches_own_profile => Real::Confirmed { uname: res.kernel.uname.clone() },
                Some(res) => Real::Contradicted { uname: res.kernel.uname.clone(), cell: res.cell.clone() },
            }
        }
    };
    let mut rows = Vec::new();
    for (kind, finding) in findings {
        let verdict = finding.map(|f| f.signature.verdict);
        let want = verdict.map_or(Reasons::empty(), |v| v.contracts());
        // A finding judged by the contracts is judged by them on every profile, at
        // its own page; a latent (proxy-only) one, or one without contracts, by
        // the proxy.
        let contracts_on = !r.pair.contracts.is_empty();
        let by_contract = contracts_on && verdict.is_none_or(|v| v.breaks());
        let want_c = if finding.is_none() { r.pair.contracts } else { want };
        let at = finding.map(|f| (f.process, f.page));
        let profiles: Vec<ProfileStatus> = Kernel::ALL
            .iter()
            .map(|&k| {
                let unsafe_at = if by_contract {
                    first_break_on(&r.program, k, want_c, at)
                } else {
                    first_unsafe_on(&r.program, k, want)
                };
                ProfileStatus { profile: k.name(), open: unsafe_at.is_some(), unsafe_at, real: real_on(k) }
            })
            .collect();
        if finding.is_none() && !profiles.iter().any(|p| p.open) {
            continue;
        }
        // Without a finding of its own, the reasons any profile's unsafe PTE had.
        let seen =
            profiles.iter().filter_map(|p| p.unsafe_at.as_ref()).fold(Reasons::empty(), |acc, u| acc | u.reasons);
        rows.push(Affected {
            file: path.display().to_string(),
            kind,
            signature: finding.map(|f| f.signature),
            title: finding.map_or_else(|| "no finding under its own header".to_string(), |f| f.title.clone()),
            reasons: if want.is_empty() { seen } else { want },
            profiles,
        });
    }
    rows
}

/// Judge every reproducer in `paths`; unreadable files are returned as errors.
pub fn affected_all(paths: &[PathBuf], results: &ResultsDb) -> (Vec<Affected>, Vec<FileError>, usize) {
    let (mut out, mut bad, mut quiet) = (Vec::new(), Vec::new(), 0);
    for f in corpus::collect_files(paths) {
        match corpus::load(&f) {
            Err(e) => bad.push(e),
            Ok(r) => {
                let rows = affected(&f, &r, results);
                if rows.is_empty() {
                    quiet += 1;
                }
                out.extend(rows);
            }
        }
    }
    (out, bad, quiet)
}

/// The table: one row per reproducer, one column per profile.
pub fn render(rows: &[Affected]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "| reproducer | finding |");
    for k in Kernel::ALL {
        let _ = write!(s, " {} |", k.name());
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(Kernel::ALL.len()));
    for a in rows {
        let name = Path::new(&a.file).file_stem().map_or(a.file.clone(), |f| f.to_string_lossy().into_owned());
        let what = match a.kind {
            "divergence" => format!("harmful {}", a.reasons),
            "oracle" => format!("oracle {}", a.reasons),
            _ => format!("contract {}", a.reasons),
        };
        let _ = write!(s, "| {name} | {what} |");
        for p in &a.profiles {
            let _ = write!(s, " {}{} |", if p.open { "open" } else { "closed" }, p.real.short());
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nopen: the kernel's own restore breaks the contract ({}) at the finding's page, its\n\
         end-of-program probe included (a latent finding: reaches a writable PTE a store must trap on);\n\
         `contract`: a file without a finding under its own header that breaks a contract on some profile.\n\
         ✓ the real kernel did what the profile predicts (kernel-check), ✗ it did not; no mark: model only\n\
         (not realizable, not run, or no real kernel for the profile).",
        Contract::legend()
    );
    s
}

/// The detail of one reproducer.
pub fn render_one(a: &Affected) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}", a.file);
    let _ = writeln!(s, "  {}", a.title);
    if let Some(sig) = &a.signature {
        let _ = writeln!(s, "  {} {sig}", a.kind);
    }
    for p in &a.profiles {
        let at = p.unsafe_at.as_ref().map_or(String::new(), |u| {
            format!(" (unsafe {} at step {}, p{} page {})", u.reasons.letters(), u.step, u.process, u.page)
        });
        let real = match &p.real {
            Real::Confirmed { uname } => format!("confirmed by {uname}"),
            Real::Contradicted { uname, cell } => format!("CONTRADICTED by {uname} ({cell})"),
            Real::NotObserved { uname, cell } => format!("{uname}: {cell}"),
            Real::NotRealizable { why } => format!("model only: {why}"),
            Real::NotRun => "model only: not run on the real kernel yet (ptediff kernel-check)".into(),
            Real::NoKernel => "model only: no real kernel for this profile".into(),
        };
        let _ = writeln!(s, "  {:<7} {:<6}{at}; {real}", p.profile, if p.open { "open" } else { "closed" });
    }
    s
}
