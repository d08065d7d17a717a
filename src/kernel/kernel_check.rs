//! `ptediff kernel-check`: build the C reproducers of a set of programs, run them
//! all in one boot of each real kernel under QEMU (`scripts/kernel-check-run.sh`),
//! and compare what each kernel did with what each model profile predicted.
//!
//! Kernel names are profile names (`v6.1.y`, `v6.12`, `v6.18`, `v7.3`): the kernel
//! folder `target/kernel-check/kernels/<name>/` holds the Debian kernel that
//! profile was read from (`scripts/kernel-check-setup.sh`). A name with a
//! `+suffix` (`v7.3+base`, `v7.3+fix`) is a kernel built from that profile's
//! Debian source (`scripts/kernel-build.sh`, `ptediff kernel-test`) and is judged
//! against the profile before the `+`. A kernel that is
//! missing, or whose boot fails or times out, marks its column; the other kernels
//! still run. Every run is recorded in a results file (`results.json`) that
//! `ptediff affected` reads to say which real kernels confirm a hole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::corpus;
use crate::emit_c::{emit_c, Unrealizable, PROFILES};
use crate::model::{Kernel, KERNEL_NAMES};
use crate::Program;

/// Per reproducer: what was observed, what each profile predicted, and what each
/// profile says the contracts owe. Keys name an observation: `p0 3` (the probe of
/// page 3 of p0), `pm 5 p0` (pagemap after step 5), `ld 4 p0 3` (the load of
/// step 4).
#[derive(Clone, Debug, Default)]
pub struct Reproducer {
    /// key → observation (`obs=... sd=... uw=... present=... ld=... sd2=...`, `mask=...`, `val=...`).
    pub observed: BTreeMap<String, String>,
    /// profile → key → prediction.
    pub predicted: BTreeMap<String, BTreeMap<String, String>>,
    /// profile → key → what is owed.
    pub owed: BTreeMap<String, BTreeMap<String, String>>,
    /// A race reproducer's result (`emit-c` race mode).
    pub race: Option<Race>,
    pub ended: bool,
    pub error: Option<String>,
    /// Why the kernel could not give the program what it needs (a THP where the
    /// model maps one): the reproducer is not judged.
    pub not_realized: Option<String>,
    /// The kernel lacks a feature the program uses (PTEDIFF-NOTON).
    pub not_on: Option<String>,
}

/// What a race reproducer reported: rounds run, rounds that saw the window open,
/// and per profile the rounds that broke a contract it owes, with the model's
/// predictions (the contracts broken with the migration in the window, before
/// it, after it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Race {
    pub rounds: u64,
    pub hits: u64,
    /// Rounds whose page was present to migrate.
    #[serde(default)]
    pub raced: u64,
    /// Rounds where the migration entry was still there after the window's ops.
    #[serde(default)]
    pub confirmed: u64,
    /// How the window was kept open: `held` (test module) or `batch` (fillers).
    #[serde(default)]
    pub window: String,
    pub migrations: u64,
    /// The seed that chose where in the window each round started.
    #[serde(default)]
    pub seed: u64,
    pub seconds: String,
    pub violations: BTreeMap<String, u64>,
    /// profile → (window, before, after) contract letters (`none` for none).
    pub predicted: BTreeMap<String, (String, String, String)>,
    /// profile → the first violating round, described.
    pub first: BTreeMap<String, String>,
    /// THP mode: profile → rounds whose THP layout (KPF_THP of p0 where the
    /// window opens and at the end) was the profile's; only those are judged.
    /// Empty: every round is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub realized: BTreeMap<String, u64>,
}

impl Race {
    /// The cell for a kernel whose own profile is `k`: `confirmed V/R`, `not
    /// observed in R rounds`, `none in R rounds` or `contradicted V/R`, and
    /// whether the kernel did what the profile allows.
    pub fn cell(&self, k: &str) -> (String, bool) {
        let v = self.violations.get(k).copied().unwrap_or(0);
        // THP mode judges only the rounds that realized the profile's layout.
        let rounds = self.realized.get(k).copied().unwrap_or(self.rounds);
        if !self.realized.is_empty() && rounds == 0 {
            return (format!("not realized: no round of {} had the THP layout of {k}", self.rounds), true);
        }
        let judged = if self.realized.is_empty() {
            String::new()
        } else {
            format!("; {rounds} of {} rounds with its THP layout", self.rounds)
        };
        let none = ("none".to_string(), "none".to_string(), "none".to_string());
        let (win, bef, aft) = self.predicted.get(k).unwrap_or(&none);
        let possible = [win, bef, aft].iter().any(|x| x.as_str() != "none");
        let hits = if self.window.is_empty() {
            format!("{} window hits", self.hits)
        } else {
            format!("{} inside the window, {}", self.confirmed, self.window)
        };
        match (v > 0, possible) {
            (true, true) => (format!("confirmed {v}/{rounds} rounds ({hits}{judged})"), true),
            (true, false) => (format!("CONTRADICTED {v}/{rounds} rounds ({hits}{judged})"), false),
            (false, true) if win != "none" => (format!("not observed in {rounds} rounds ({hits}{judged})"), true),
            (false, _) if self.window.is_empty() => (format!("none in {rounds} rounds, as predicted"), true),
            (false, _) => (format!("none in {rounds} rounds ({hits}{judged}), as predicted"), true),
        }
    }
}

/// Split `k1 k2 ... v1=.. v2=..` into the key (words without `=`) and the value.
fn key_value(words: &[&str]) -> (String, String) {
    let i = words.iter().position(|w| w.contains('=')).unwrap_or(words.len());
    (words[..i].join(" "), words[i..].join(" "))
}

/// Parse one kernel's console log into reproducer results.
pub fn parse_log(log: &str) -> BTreeMap<String, Reproducer> {
    let mut out: BTreeMap<String, Reproducer> = BTreeMap::new();
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        let Some(i) = line.find("PTEDIFF-") else { continue };
        let f: Vec<&str> = line[i..].split_whitespace().collect();
        match f.as_slice() {
            ["PTEDIFF-BEGIN", name, ..] => {
                out.entry(name.to_string()).or_default();
            }
            ["PTEDIFF-PAGE", name, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().observed.insert(k, v);
            }
            ["PTEDIFF-PM", name, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().observed.insert(format!("pm {k}"), v);
            }
            ["PTEDIFF-LD", name, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().observed.insert(format!("ld {k}"), v);
            }
            ["PTEDIFF-PREDICT", name, prof, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().predicted.entry(prof.to_string()).or_default().insert(k, v);
            }
            ["PTEDIFF-OWED", name, prof, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().owed.entry(prof.to_string()).or_default().insert(k, v);
            }
            ["PTEDIFF-RACE", name, rest @ ..] => {
                let r = out.entry(name.to_string()).or_default().race.get_or_insert_with(Race::default);
                for w in rest {
                    let Some((k, v)) = w.split_once('=') else { continue };
                    let n = v.parse::<u64>().unwrap_or(0);
                    match k {
                        "rounds" => r.rounds = n,
                        "hits" => r.hits = n,
                        "raced" => r.raced = n,
                        "confirmed" => r.confirmed = n,
                        "window" => r.window = v.to_string(),
                        "migrations" => r.migrations = n,
                        "seed" => r.seed = n,
                        "seconds" => r.seconds = v.to_string(),
                        prof => {
                            r.violations.insert(prof.to_string(), n);
                        }
                    }
                }
            }
            ["PTEDIFF-RACE-PREDICT", name, prof, rest @ ..] => {
                let r = out.entry(name.to_string()).or_default().race.get_or_insert_with(Race::default);
                let f = |key: &str| {
                    rest.iter().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap_or("none").to_string()
                };
                r.predicted.insert(prof.to_string(), (f("window"), f("before"), f("after")));
            }
            ["PTEDIFF-RACE-REALIZED", name, rest @ ..] => {
                let r = out.entry(name.to_string()).or_default().race.get_or_insert_with(Race::default);
                for (k, v) in rest.iter().filter_map(|w| w.split_once('=')) {
                    r.realized.insert(k.to_string(), v.parse::<u64>().unwrap_or(0));
                }
            }
            ["PTEDIFF-RACE-FIRST", name, prof, rest @ ..] => {
                let r = out.entry(name.to_string()).or_default().race.get_or_insert_with(Race::default);
                r.first.insert(prof.to_string(), rest.join(" "));
            }
            ["PTEDIFF-SCAN", name, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().observed.insert(format!("scan {k}"), v);
            }
            ["PTEDIFF-MADV", name, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().observed.insert(format!("madv {k}"), v);
            }
            ["PTEDIFF-THP", name, rest @ ..] => {
                let (k, v) = key_value(rest);
                out.entry(name.to_string()).or_default().observed.insert(format!("thp {k}"), v);
            }
            ["PTEDIFF-NOTON", name, rest @ ..] => {
                let r = out.entry(name.to_string()).or_default();
                r.not_on.get_or_insert_with(|| rest.join(" "));
            }
            ["PTEDIFF-NOTREALIZED", name, rest @ ..] => {
                let r = out.entry(name.to_string()).or_default();
                r.not_realized.get_or_insert_with(|| rest.join(" "));
            }
            ["PTEDIFF-END", name] => out.entry(name.to_string()).or_default().ended = true,
            ["PTEDIFF-END", name, "error", rest @ ..] => {
                let r = out.entry(name.to_string()).or_default();
                r.ended = true;
                r.error = Some(rest.join(" "));
            }
            _ => {}
        }
    }
    out
}

fn field<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    v.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|x| x.strip_prefix('=')))
}

/// Contract breaks in a set of observations (a real kernel's, or a profile's
/// predictions) against what a profile says is owed: `S p0 14 (pagemap after
/// step 5)`, `C p1 0 (step 7 read 3, owed 4)`, `U p0 2 (probe)`, ...
pub fn contract_breaks(values: &BTreeMap<String, String>, owed: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in owed {
        let Some(got) = values.get(key) else { continue };
        let k: Vec<&str> = key.split_whitespace().collect();
        match k.as_slice() {
            ["pm", step, p] => {
                let parse = |v: &str| field(v, "mask").and_then(|m| u16::from_str_radix(m, 16).ok());
                let (Some(g), Some(w)) = (parse(got), parse(want)) else { continue };
                for a in 0..16 {
                    if w & !g & (1 << a) != 0 {
                        out.push(format!("S {p} {a} (pagemap after step {step})"));
                    }
                }
            }
            ["scan", step, p] => {
                let parse = |v: &str| field(v, "written").and_then(|m| u16::from_str_radix(m, 16).ok());
                let (Some(g), Some(w)) = (parse(got), parse(want)) else { continue };
                for a in 0..16 {
                    if w & !g & (1 << a) != 0 {
                        out.push(format!("W {p} {a} (PAGEMAP_SCAN of step {step} missed a store)"));
                    }
                }
            }
            ["madv", step, p] if field(want, "returns") == Some("1") && field(got, "rc") == Some("hang") => {
                out.push(format!("G {p} - (MADV_GUARD_INSTALL of step {step} never returns)"));
            }
            ["ld", step, p, a] if !load_owed(field(got, "val"), field(want, "val")) => {
                out.push(format!(
                    "C {p} {a} (step {step} read {}, owed {})",
                    field(got, "val").unwrap_or("?"),
                    field(want, "val").unwrap_or("?")
                ));
            }
            [p, a] => {
                let obs = field(got, "obs").unwrap_or("");
                let stored = matches!(obs, "writable" | "fault" | "uffd");
                if field(want, "sd") == Some("1") && field(got, "sd") == Some("0") {
                    out.push(format!("S {p} {a} (probe pagemap)"));
                } else if stored && field(got, "sd2") == Some("0") {
                    out.push(format!("S {p} {a} (probe store not soft-dirty)"));
                }
                if field(want, "wr") == Some("1") && field(got, "uw") == Some("1") {
                    out.push(format!("W {p} {a} (probe pagemap: stored to, still uffd-wp)"));
                }
                match field(want, "trap") {
                    // A store that raises SIGSEGV does not complete either.
                    Some("uffd") if !matches!(obs, "uffd" | "segv") => {
                        out.push(format!("U {p} {a} (probe store {obs})"))
                    }
                    Some("segv") if obs != "segv" => out.push(format!("P {p} {a} (probe store {obs})")),
                    _ => {}
                }
                if !load_owed(field(got, "ld"), field(want, "ld")) {
                    out.push(format!(
                        "C {p} {a} (probe read {}, owed {})",
                        field(got, "ld").unwrap_or("?"),
                        field(want, "ld").unwrap_or("?")
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// Did a load return what is owed (`-`: a fault, or nothing owed)?
fn load_owed(got: Option<&str>, want: Option<&str>) -> bool {
    let (Some(got), Some(want)) = (got, want) else { return true };
    if got == "-" || want == "-" {
        return true;
    }
    want.split('|').any(|w| w == got)
}

/// One cell of the matrix: `= <profiles that match>`, `MISMATCH`, an error, or
/// `did not finish`; plus the per-page differences for every profile.
pub fn verdict(r: &Reproducer) -> (String, Vec<String>) {
    if let Some(e) = &r.error {
        return (format!("error: {e}"), Vec::new());
    }
    if !r.ended {
        return ("did not finish".into(), Vec::new());
    }
    if let Some(what) = &r.not_on {
        return (format!("not on this kernel: {what}"), Vec::new());
    }
    if let Some(why) = &r.not_realized {
        return (format!("not realized: {why}"), Vec::new());
    }
    let mut matching = Vec::new();
    let mut details = Vec::new();
    let empty = BTreeMap::new();
    for k in PROFILES.iter().map(|k| k.name().to_string()) {
        let pred = r.predicted.get(&k).unwrap_or(&empty);
        let mut diffs: Vec<String> = pred
            .iter()
            .filter(|(page, want)| r.observed.get(*page) != Some(want))
            .map(|(page, want)| {
                let got = r.observed.get(page).map_or("nothing", |s| s.as_str());
                format!("{k}: {page}: predicted {want}, observed {got}")
            })
            .collect();
        diffs.extend(
            r.observed
                .iter()
                .filter(|(page, _)| !pred.contains_key(*page))
                .map(|(page, got)| format!("{k}: {page}: predicted nothing, observed {got}")),
        );
        if diffs.is_empty() {
            matching.push(k.clone());
        } else {
            details.extend(diffs);
        }
    }
    if matching.is_empty() {
        ("MISMATCH".into(), details)
    } else {
        (format!("= {}", matching.join(", ")), details)
    }
}

/// The profile a kernel name stands for (only profiles with a Debian kernel);
/// `v7.3+fix` stands for `v7.3`.
pub fn profile_of(name: &str) -> Result<Kernel, String> {
    let known = || PROFILES.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let base = match name.split_once('+') {
        Some((b, suffix)) if !suffix.is_empty() => b,
        _ => name,
    };
    let k = Kernel::parse(base)
        .ok_or_else(|| format!("unknown kernel `{name}` (kernels: {}; profiles: {KERNEL_NAMES})", known()))?;
    if !PROFILES.contains(&k) {
        return Err(format!("profile `{name}` has no real kernel to run (kernels: {})", known()));
    }
    Ok(k)
}

/// Root of the kernel-check state (`target/kernel-check` in the repository).
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kernel-check")
}

/// The folder name of a kernel: its profile's own name, plus the `+suffix` if any
/// (`7.3+fix` → `v7.3+fix`).
pub fn kernel_name(name: &str) -> Result<(String, Kernel), String> {
    let k = profile_of(name)?;
    Ok(match name.split_once('+') {
        Some((_, suffix)) => (format!("{}+{suffix}", k.name()), k),
        None => (k.name().to_string(), k),
    })
}

/// Check that a kernel folder is complete; the error says what fixes it.
pub fn kernel_ready(root: &Path, k: Kernel) -> Result<KernelInfo, String> {
    kernel_ready_named(root, k.name())
}

/// [`kernel_ready`] by folder name (a profile, or `profile+suffix` for a kernel
/// built by `scripts/kernel-build.sh`).
pub fn kernel_ready_named(root: &Path, name: &str) -> Result<KernelInfo, String> {
    let dir = root.join("kernels").join(name);
    let fix = match name.split_once('+') {
        None => "run `sudo bash scripts/kernel-check-setup.sh`".to_string(),
        Some((p, "base")) => format!("run `bash scripts/kernel-build.sh {p}`"),
        Some((p, _)) => format!("run `bash scripts/kernel-build.sh {p} PATCH` (or `ptediff kernel-test`)"),
    };
    if !dir.is_dir() {
        return Err(format!("kernel {name} is not set up ({} is missing): {fix}", dir.display()));
    }
    let missing: Vec<&str> = [".complete", "vmlinuz", "config", "version", "modules/load-order"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "kernel {name} in {} is half-unpacked (no {}): remove the folder and {fix}",
            dir.display(),
            missing.join(", ")
        ));
    }
    let version = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
    let field = |key: &str| {
        version.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or("unknown").trim().to_string()
    };
    Ok(KernelInfo { uname: field("uname_r"), package: field("package"), version: field("package_version") })
}

/// What a kernel folder holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub uname: String,
    pub package: String,
    pub version: String,
}

/// A stable 64-bit hash of a program's text (FNV-1a), so recorded results are only
/// used for the program they were measured on.
pub fn program_hash(program: &crate::Program) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in program.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One reproducer on one real kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelResult {
    /// `uname -r` and package of the kernel that ran it.
    pub kernel: KernelInfo,
    /// The matrix cell (`= v6.12, v6.18`, `MISMATCH`, `boot failed: ...`).
    pub cell: String,
    /// The kernel did what its own profile predicted.
    pub matches_own_profile: bool,
    /// Page → observation (`p0 3` → `obs=writable sd=0 uw=0 present=1 ...`).
    pub observed: BTreeMap<String, String>,
    /// Contracts the kernel broke, judged by its own profile's owed values.
    #[serde(default)]
    pub breaks: Vec<String>,
    /// Contract breaks its own profile predicted.
    #[serde(default)]
    pub predicted_breaks: Vec<String>,
    /// A race reproducer's rounds, window hits and violations.
    #[serde(default)]
    pub race: Option<Race>,
    /// When it ran (seconds since the epoch).
    pub at: u64,
}

/// Everything kernel-check has recorded: reproducer name → program hash and the
/// result per kernel name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResultsDb {
    pub reproducers: BTreeMap<String, RecordedReproducer>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecordedReproducer {
    pub program_hash: String,
    pub kernels: BTreeMap<String, KernelResult>,
}

impl ResultsDb {
    /// Load a results file; a missing file is an empty database.
    pub fn load(path: &Path) -> Result<ResultsDb, String> {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ResultsDb::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                format!("{}:{}:{}: not a kernel-check results file: {e}", path.display(), e.line(), e.column())
            }),
        }
    }

    /// Record one result (a different program under the same name replaces the
    /// old entry).
    pub fn record(&mut self, name: &str, hash: &str, kernel: &str, r: KernelResult) {
        let e = self.reproducers.entry(name.to_string()).or_default();
        if e.program_hash != hash {
            *e = RecordedReproducer { program_hash: hash.to_string(), kernels: BTreeMap::new() };
        }
        e.kernels.insert(kernel.to_string(), r);
    }

    /// The results recorded for this program (matched by name and hash).
    pub fn get(&self, name: &str, program: &crate::Program) -> Option<&RecordedReproducer> {
        self.reproducers.get(name).filter(|r| r.program_hash == program_hash(program))
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(self).expect("results serialise");
        corpus::write_atomic(path, &json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Everything a run needs.
pub struct Options {
    pub files: Vec<PathBuf>,
    pub kernels: Vec<String>,
    pub work: PathBuf,
    pub scripts: PathBuf,
    /// `target/kernel-check` (kernels/ lives there).
    pub root: PathBuf,
    /// Where results are recorded (None: not recorded).
    pub results: Option<PathBuf>,
    /// Race reproducers' budget per file: rounds and seconds.
    pub race_rounds: u32,
    pub race_seconds: u32,
}

/// What happened to one kernel's column.
enum Column {
    Ran { info: KernelInfo, log: BTreeMap<String, Reproducer>, failure: Option<String> },
    Missing(String),
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The C reproducer kernel-check runs for a program: the exact one, or for a
/// program with a migration window a race reproducer; why neither, otherwise.
pub fn emit_any(program: &Program, name: &str, rounds: u32, seconds: u32) -> Result<String, Unrealizable> {
    emit_c(program, name).or_else(|e| match crate::emit_c::race::window(program) {
        Ok(_) => crate::emit_c::race::emit_race(program, name, rounds, seconds),
        Err(w) => Err(Unrealizable(format!("{e} (race mode: {w})"))),
    })
}

/// Emit, build and run; print the matrix. Returns the number of reproducers for
/// which some kernel did not do what its profile predicted (or did not run), or
/// an error message for bad input.
pub fn run(o: &Options) -> Result<usize, String> {
    let kernels: Vec<(String, Kernel)> = o.kernels.iter().map(|k| kernel_name(k)).collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&o.work).map_err(|e| format!("{}: {e}", o.work.display()))?;
    let mut bins = Vec::new();
    let mut names = Vec::new();
    let mut hashes = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut sources = Vec::new();
    for f in corpus::collect_files(&o.files) {
        let r = corpus::load(&f).map_err(|e| e.to_string())?;
        let name = f.file_stem().map_or("x".into(), |s| s.to_string_lossy().into_owned());
        match emit_any(&r.program, &name, o.race_rounds, o.race_seconds) {
            Err(e) => println!("skip {}: not realizable: {e}", f.display()),
            Ok(c) => {
                let src = o.work.join(format!("{name}.c"));
                corpus::write_atomic(&src, c.as_bytes()).map_err(|e| format!("{}: {e}", src.display()))?;
                hashes.insert(name.clone(), program_hash(&r.program));
                files.insert(name.clone(), f.clone());
                sources.push(src);
                bins.push(o.work.join(&name));
                names.push(name);
            }
        }
    }
    compile_all(&sources, &bins)?;
    if bins.is_empty() {
        return Err("no realizable reproducer".into());
    }
    let mut columns: Vec<(&str, Kernel, Column)> = Vec::new();
    for (name, k) in &kernels {
        let (name, k) = (name.as_str(), *k);
        let info = match kernel_ready_named(&o.root, name) {
            Ok(i) => i,
            Err(e) => {
                println!("warning: {e}");
                columns.push((name, k, Column::Missing(e)));
                continue;
            }
        };
        let log = o.work.join(format!("{name}.log"));
        let out = Command::new("bash")
            .arg(o.scripts.join("kernel-check-run.sh"))
            .arg(name)
            .arg(&log)
            .args(&bins)
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| format!("kernel-check-run.sh: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let failure = (!out.status.success()).then(|| {
            let why = stderr.lines().rev().find(|l| l.contains("FAIL") || l.contains("ERROR")).unwrap_or("failed");
            let why = if why.contains("timeout") { "timed out" } else { "boot failed" };
            println!("warning: the {name} boot did not finish cleanly (see {})", log.display());
            why.to_string()
        });
        columns.push((name, k, Column::Ran { info, log: parse_log(&text), failure }));
    }
    let mut db = match &o.results {
        Some(p) => Some(ResultsDb::load(p)?),
        None => None,
    };
    // The matrix.
    println!();
    print!("| reproducer |");
    for (name, _, c) in &columns {
        match c {
            Column::Ran { info, .. } => print!(" {name} ({}) |", info.uname),
            Column::Missing(_) => print!(" {name} |"),
        }
    }
    println!();
    print!("|---|");
    for _ in &columns {
        print!("---|");
    }
    println!();
    let mut bad = 0;
    let mut notes = Vec::new();
    // Reproducers a real kernel contradicted: name -> "kernel: cell" lines.
    let mut contradicted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut contract_rows = Vec::new();
    for n in &names {
        print!("| {n} |");
        let mut row_bad = false;
        for (name, k, col) in &columns {
            let (cell, ok) = match col {
                Column::Missing(_) => ("not set up".to_string(), false),
                Column::Ran { info, log, failure } => {
                    let r = log.get(n).cloned().unwrap_or_default();
                    let (mut cell, details) = verdict(&r);
                    // Which profile should have matched: the one named after the kernel.
                    // A kernel without a feature the program uses agrees when its
                    // profile lacks it too.
                    let own_lacks = r.predicted.get(k.name()).is_some_and(|p| p.contains_key("noton"));
                    let mut ok = cell.starts_with("= ") && cell[2..].split(", ").any(|p| p == k.name())
                        || cell.starts_with("not realized")
                        || cell.starts_with("not on this kernel") && own_lacks;
                    if let (Some(race), true, None) = (&r.race, r.ended, &r.error) {
                        (cell, ok) = race.cell(k.name());
                        if let Some(first) = race.first.get(k.name()) {
                            notes.push(format!("{n} on {}: first violation: {first}", k.name()));
                        }
                    }
                    if cell == "did not finish" {
                        if let Some(f) = failure {
                            cell = if log.contains_key(n) { format!("did not finish ({f})") } else { f.clone() };
                        }
                    }
                    for d in details.iter().filter(|d| d.starts_with(&format!("{}:", k.name()))) {
                        notes.push(format!("{n} on {name}: {d}"));
                    }
                    let empty = BTreeMap::new();
                    let owed = r.owed.get(k.name()).unwrap_or(&empty);
                    // A reproducer the kernel could not realize is not judged.
                    let judged = r.not_realized.is_none() && r.not_on.is_none();
                    let breaks = if judged { contract_breaks(&r.observed, owed) } else { Vec::new() };
                    let predicted_breaks = if judged {
                        contract_breaks(r.predicted.get(k.name()).unwrap_or(&empty), owed)
                    } else {
                        Vec::new()
                    };
                    if !breaks.is_empty() || !predicted_breaks.is_empty() {
                        contract_rows.push((n.clone(), name.to_string(), breaks.clone(), predicted_breaks.clone()));
                    }
                    if let Some(db) = &mut db {
                        if r.ended || failure.is_none() {
                            db.record(
                                n,
                                &hashes[n],
                                name,
                                KernelResult {
                                    kernel: info.clone(),
                                    cell: cell.clone(),
                                    matches_own_profile: ok,
                                    observed: r.observed.clone(),
                                    breaks,
                                    predicted_breaks,
                                    race: r.race.clone(),
                                    at: now(),
                                },
                            );
                        }
                    }
                    (cell, ok)
                }
            };
            row_bad |= !ok;
            if !ok && matches!(col, Column::Ran { failure: None, .. }) {
                contradicted.entry(n.clone()).or_default().push(format!("{name}: {cell}"));
            }
            print!(" {cell}{} |", if ok { "" } else { " ✗" });
        }
        println!();
        bad += row_bad as usize;
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("  {n}");
        }
    }
    if !contract_rows.is_empty() {
        println!();
        println!("Contract breaks (what user space was owed, by the kernel's own profile):");
        println!();
        println!("| reproducer | kernel | the real kernel broke | its profile predicted |");
        println!("|---|---|---|---|");
        for (n, k, got, want) in &contract_rows {
            let same = if got == want { "" } else { " ✗" };
            println!("| {n} | {k} | {} | {}{same} |", join_or_none(got), join_or_none(want));
        }
    }
    for (name, _, c) in &columns {
        if let Column::Missing(e) = c {
            println!("  {name}: {e}");
        }
    }
    if let (Some(db), Some(p)) = (&db, &o.results) {
        db.save(p)?;
        println!("results recorded in {}", p.display());
    }
    if !contradicted.is_empty() {
        let dir = o.work.join("contradictions");
        for (n, why) in &contradicted {
            record_contradiction(&dir, &files[n], why)?;
        }
        println!(
            "{} reproducer(s) a real kernel contradicted, recorded in {} (each is a model fix to make, with a corpus/kc-* regression)",
            contradicted.len(),
            dir.display()
        );
    }
    Ok(bad)
}

/// Keep a reproducer a real kernel contradicted: its text with what each kernel
/// did, written atomically (one file per reproducer, replaced by a later run).
fn record_contradiction(dir: &Path, file: &Path, why: &[String]) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = String::new();
    for w in why {
        out += &format!("# contradicted by the real kernel {w}\n");
    }
    out += &format!("# from {}\n", file.display());
    out += &text;
    let name = file.file_name().map_or("x.ptd".into(), |n| n.to_string_lossy().into_owned());
    let path = dir.join(name);
    corpus::write_atomic(&path, out.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join("; ")
    }
}

/// `gcc -static` every reproducer, on every core.
fn compile_all(sources: &[PathBuf], bins: &[PathBuf]) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (Some(src), Some(bin)) = (sources.get(i), bins.get(i)) else { break };
                let out = Command::new("gcc").args(["-static", "-O1", "-pthread", "-o"]).arg(bin).arg(src).output();
                let err = match out {
                    Err(e) => Some(format!("gcc: {e}")),
                    Ok(o) if !o.status.success() => Some(format!(
                        "gcc failed on {}: {}",
                        src.display(),
                        String::from_utf8_lossy(&o.stderr).lines().take(5).collect::<Vec<_>>().join("\n")
                    )),
                    Ok(_) => None,
                };
                if let Some(e) = err {
                    errors.lock().expect("no panics while held").push(e);
                }
            });
        }
    });
    match errors.into_inner().expect("no panics while held").into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Default folder of the scripts (next to the crate).
pub fn default_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}
