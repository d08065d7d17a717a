//! The libFuzzer target (`fuzz/`, `cargo fuzz run differential`) as another
//! engine of the findings database: every divergence (and, with
//! `PTEDIFF_ORACLE=1`, every oracle violation) is recorded in the same folder
//! `ptediff fuzz` writes, and the target panics (so libFuzzer stops and saves an
//! artifact) only on what `PTEDIFF_PANIC_ON` asks for.
//!
//! A hit of a signature the folder already has costs one `analyze` and a counter
//! increment; only a new signature, or a program shorter than the folder's, is
//! minimized and written at once. Counted hits are written every few seconds
//! and when the process exits normally (`-runs`, `-max_total_time`, the end of
//! a `-fork` job); a Ctrl-C (`_Exit`) loses at most those few seconds of counts,
//! never a finding.
//!
//! Environment (read once per process):
//! - `PTEDIFF_VARIANTS=A,B` (default `full-restore,vm-page-prot`), `PTEDIFF_KERNEL`
//!   (default `v6.1`);
//! - `PTEDIFF_FINDINGS=DIR` (default: `findings/` at the top of the repository
//!   the target was built from, which is where `ptediff fuzz` run from there
//!   writes, whatever the current directory of `cargo fuzz run` is);
//! - `PTEDIFF_PANIC_ON=none|new|new-cause|harmful|any` (default `none`): `new`
//!   panics on a signature the folder did not have, `new-cause` on a root cause
//!   neither the folder nor the corpus has, `harmful` only on a new signature
//!   of a harmful cause (a harmful divergence or a broken contract), `any` on
//!   every divergence; signatures of the corpus (`PTEDIFF_CORPUS`, default the
//!   repository's `corpus/`) never count as new;
//! - `PTEDIFF_ORACLE=1`: also record oracle violations.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::pipeline::{Offer, Pipeline};
use crate::check::Signature;
use crate::check::{check, Kind, Pair};
use crate::corpus::{self, Expect, RenderOpts};
use crate::findings::{self, FindingsDb};
use crate::judge::causes::Cause;
use crate::minimize::minimize;
use crate::model::{Config, Kernel, KERNEL_NAMES, VARIANT_NAMES};
use crate::op::Program;

/// When the target panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicOn {
    None,
    New,
    NewCause,
    Harmful,
    Any,
}

impl PanicOn {
    pub fn name(self) -> &'static str {
        match self {
            PanicOn::None => "none",
            PanicOn::New => "new",
            PanicOn::NewCause => "new-cause",
            PanicOn::Harmful => "harmful",
            PanicOn::Any => "any",
        }
    }

    pub fn parse(s: &str) -> Option<PanicOn> {
        Some(match s {
            "none" => PanicOn::None,
            "new" => PanicOn::New,
            "new-cause" => PanicOn::NewCause,
            "harmful" => PanicOn::Harmful,
            "any" => PanicOn::Any,
            _ => return None,
        })
    }
}

/// How often counted hits are written.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

/// The repository this crate was built from (where `findings/` and `corpus/` are).
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The default findings folder: the repository's `findings/` if the repository
/// is still there, else `findings/` in the current directory.
pub fn default_findings_dir() -> PathBuf {
    if repo_dir().join("Cargo.toml").is_file() {
        repo_dir().join("findings")
    } else {
        PathBuf::from("findings")
    }
}

/// The target's state in one process.
pub struct Target {
    pub pair: Pair,
    pub oracle: bool,
    pub panic_on: PanicOn,
    pub db: FindingsDb,
    /// The finding pipeline; it knows the folder's signatures at start and this process's.
    pipe: Pipeline,
    /// Signatures the corpus states for this pair.
    corpus: HashSet<Signature>,
    /// Root causes known (folder and corpus), for `PanicOn::NewCause`.
    causes: HashSet<Cause>,
    last_commit: Instant,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Signatures stated by the reproducers in `dir` for `pair` (unreadable files are skipped).
pub fn corpus_signatures(dir: &Path, pair: &Pair) -> HashSet<Signature> {
    let mut out = HashSet::new();
    for f in corpus::collect_files(&[dir.to_path_buf()]) {
        let Ok(r) = corpus::load(&f) else { continue };
        if r.pair != *pair {
            continue;
        }
        if let Some(Expect::Diverges(s)) = r.expect {
            out.insert(s);
        }
        if let Some(Some(s)) = r.expect_oracle {
            out.insert(s);
        }
    }
    out
}

/// Root causes of the reproducers in `dir` (any pair: a cause names its hole or
/// variant itself) and of the findings already in `db`.
fn known_causes(dir: &Path, db: &FindingsDb) -> HashSet<Cause> {
    let mut out: HashSet<Cause> = db.records.values().map(|r| r.cause).collect();
    for f in corpus::collect_files(&[dir.to_path_buf()]) {
        let Ok(r) = corpus::load(&f) else { continue };
        let o = check(&r.program, &r.pair);
        for rep in [o.divergence.as_ref(), o.violation.as_ref()].into_iter().flatten() {
            out.insert(Cause::of(&rep.finding.signature));
        }
    }
    out
}

impl Target {
    /// Read the environment and open the findings folder.
    pub fn from_env() -> Result<Target, String> {
        let kname = env("PTEDIFF_KERNEL").unwrap_or_else(|| "v6.1".into());
        let kernel = Kernel::parse(&kname)
            .ok_or_else(|| format!("PTEDIFF_KERNEL=`{kname}`: unknown kernel (known: {KERNEL_NAMES})"))?;
        let names = env("PTEDIFF_VARIANTS").unwrap_or_else(|| "full-restore,vm-page-prot".into());
        let (a, b) = names.split_once(',').ok_or_else(|| format!("PTEDIFF_VARIANTS=`{names}`: expected `A,B`"))?;
        let variant = |n: &str| {
            Config::parse_variant(n.trim(), kernel)
                .ok_or_else(|| format!("PTEDIFF_VARIANTS: unknown variant `{n}` (known: {VARIANT_NAMES})"))
        };
        let pair = Pair::new(variant(a)?, variant(b)?);
        let p = env("PTEDIFF_PANIC_ON").unwrap_or_else(|| "none".into());
        let panic_on = PanicOn::parse(&p)
            .ok_or_else(|| format!("PTEDIFF_PANIC_ON=`{p}`: expected none, new, new-cause, harmful or any"))?;
        let oracle = match env("PTEDIFF_ORACLE").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(format!("PTEDIFF_ORACLE=`{v}`: expected 0 or 1")),
        };
        let dir = env("PTEDIFF_FINDINGS").map_or_else(default_findings_dir, PathBuf::from);
        let corpus_dir = env("PTEDIFF_CORPUS").map_or_else(|| repo_dir().join("corpus"), PathBuf::from);
        let t = Target::new(pair, &dir, &corpus_dir, panic_on, oracle)?;
        let (na, nb) = pair.names();
        eprintln!(
            "ptediff target: {na} vs {nb} on {}{}; findings in {} ({} there), run {}; panics on: {p} ({} corpus signatures never count as new)",
            kernel.name(),
            if oracle { ", oracle on" } else { "" },
            dir.display(),
            t.pipe.known().len(),
            t.db.run,
            t.corpus.len()
        );
        Ok(t)
    }

    /// A target writing to `findings_dir`, taking the corpus signatures from `corpus_dir`.
    pub fn new(
        pair: Pair,
        findings_dir: &Path,
        corpus_dir: &Path,
        panic_on: PanicOn,
        oracle: bool,
    ) -> Result<Target, String> {
        let db = FindingsDb::open_as(findings_dir, &findings::new_run_id("libfuzzer"))
            .map_err(|e| format!("findings folder (PTEDIFF_FINDINGS): {e}"))?;
        let corpus = corpus_signatures(corpus_dir, &pair);
        let mut pipe = Pipeline::new(pair, false);
        for (sig, n) in findings::known_lengths(&db) {
            pipe.learn(sig, n);
        }
        let causes = if panic_on == PanicOn::NewCause { known_causes(corpus_dir, &db) } else { HashSet::new() };
        Ok(Target { pair, oracle, panic_on, db, pipe, corpus, causes, last_commit: Instant::now() })
    }

    /// Judge one input: record its findings; the panic message, if the target should panic.
    pub fn check(&mut self, program: &Program) -> Result<Option<String>, String> {
        let mut stop = None;
        let kinds: &[Kind] = if self.oracle { &[Kind::Divergence, Kind::Oracle] } else { &[Kind::Divergence] };
        for &kind in kinds {
            let Some(offer) = self.pipe.offer(program, kind, Duration::ZERO) else { continue };
            let sig = offer.signature();
            let mut created = false;
            let mut recorded = None;
            match offer {
                Offer::Hit(sig) => self.db.count(&sig, 1),
                Offer::New(found) | Offer::Shorter(found) => {
                    self.db.hit(&self.pair, &found.program, kind, 1);
                    let c = self.db.commit().map_err(|e| format!("cannot record a finding: {e}"))?;
                    self.last_commit = Instant::now();
                    created = c.created.contains(&sig);
                    eprintln!(
                        "ptediff target: {} {} ({} ops) -> {}",
                        if created { "new finding" } else { "shorter program" },
                        found.title,
                        found.program.ops.len(),
                        self.db.path_of(&sig).display()
                    );
                    recorded = Some(found.program);
                }
            }
            let fresh = created && !self.corpus.contains(&sig);
            let cause = Cause::of(&sig);
            let new_cause = self.panic_on == PanicOn::NewCause && self.causes.insert(cause);
            let harmful = cause.harmful();
            let panic = match self.panic_on {
                PanicOn::None => false,
                PanicOn::New => fresh,
                PanicOn::NewCause => new_cause,
                PanicOn::Harmful => fresh && harmful,
                PanicOn::Any => true,
            };
            if panic && stop.is_none() {
                let small = recorded.unwrap_or_else(|| minimize(program, &self.pair, &sig));
                let out = check(&small, &self.pair);
                eprintln!(
                    "{}",
                    corpus::render(&self.pair, &out, &small, RenderOpts { report: true, ..Default::default() })
                );
                let what = if kind == Kind::Oracle { "oracle violation" } else { "divergence" };
                stop = Some(format!("ptediff: {what} {sig} (PTEDIFF_PANIC_ON={})", self.panic_on.name()));
            }
        }
        if self.last_commit.elapsed() >= COMMIT_EVERY && self.db.dirty() {
            self.db.commit().map_err(|e| format!("cannot record hits: {e}"))?;
            self.last_commit = Instant::now();
        }
        Ok(stop)
    }
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

/// Write counted hits when the process exits normally.
extern "C" fn commit_at_exit() {
    if let Ok(mut g) = TARGET.try_lock() {
        if let Some(t) = g.as_mut() {
            if let Err(e) = t.db.commit() {
                eprintln!("ptediff target: cannot record hits: {e}");
            }
        }
    }
}

fn fatal(msg: &str) -> ! {
    // A configuration or write error is not a finding: no panic (libFuzzer would
    // save the input as a crash), a clear message and exit status 2.
    eprintln!("ptediff target: {msg}");
    std::process::exit(2)
}

fn init_locked(g: &mut Option<Target>) {
    if g.is_some() {
        return;
    }
    match Target::from_env() {
        Ok(t) => *g = Some(t),
        Err(e) => fatal(&e),
    }
    // SAFETY: registers a plain function; it only takes the mutex with try_lock.
    unsafe {
        libc::atexit(commit_at_exit);
    }
}

/// Read the environment and open the findings folder (once per process).
pub fn init() {
    init_locked(&mut TARGET.lock().unwrap_or_else(|e| e.into_inner()));
}

/// The libFuzzer target body (see the module documentation).
pub fn fuzz_check(program: &Program) {
    let mut g = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    init_locked(&mut g);
    let r = g.as_mut().expect("initialised").check(program);
    drop(g);
    match r {
        Ok(Some(msg)) => panic!("{msg}"),
        Ok(None) => {}
        Err(e) => fatal(&e),
    }
}
