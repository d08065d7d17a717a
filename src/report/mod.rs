//! `ptediff report CAUSE|FILE --out DIR`: what a kernel maintainer acts on, for
//! one confirmed hole: `mail.txt` (the report: what user space loses, the
//! minimized program, the mechanism, the affected kernels with real-kernel
//! results, how to reproduce), the reproducer (`.ptd` and its C program), a
//! kselftest generated from it, and, where a candidate fix exists, the fix and
//! the selftest as `git format-patch` files for each kernel tree the fix is
//! written for.
//!
//! Everything is a function of the inputs: the spec ([`SPECS`]), the corpus
//! files, `patches/<fix>/`, the kernel trees the selftest patch is written
//! against, and the real-kernel results in the snapshot
//! (`reports/measured.json`, [`measured`]); the same inputs give the same
//! bytes.

pub mod mail;
pub mod measured;
pub mod patch;
pub mod specs;

use std::path::{Path, PathBuf};

use crate::corpus;
use crate::emit_c;
use crate::kernel_check::program_hash;
use crate::model::Kernel;

pub use measured::Measured;
pub use specs::{Spec, SPECS};

/// The longest line of `mail.txt`.
pub const MAIL_WIDTH: usize = 75;

/// Where a report's inputs are.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The project root (corpus/, patches/).
    pub root: PathBuf,
    /// The kernel trees: `<trees>/<profile>/src` (scripts/kernel-build.sh's).
    pub trees: PathBuf,
    /// `Name <email>` for From: and Signed-off-by:.
    pub author: String,
    pub measured: Measured,
}

/// One corpus file of a report, loaded.
#[derive(Clone, Debug)]
pub struct Case {
    /// Its letter in the tables (`A`, `B`, ...).
    pub letter: char,
    /// The corpus file's stem.
    pub name: String,
    pub label: String,
    pub path: PathBuf,
    pub text: String,
    pub repro: corpus::Reproducer,
}

/// What a report is about: a spec, or a corpus file without one.
#[derive(Clone, Debug)]
pub enum Subject {
    Spec(&'static Spec),
    File(PathBuf),
}

/// The subject named `what`: a spec's name or one of its causes, or a `.ptd` file.
pub fn resolve(what: &str) -> Result<Subject, String> {
    if let Some(s) = specs::find(what) {
        return Ok(Subject::Spec(s));
    }
    let p = Path::new(what);
    if p.extension().is_some_and(|e| e == "ptd") || p.is_file() {
        if !p.is_file() {
            return Err(format!("{what}: no such file"));
        }
        return Ok(Subject::File(p.to_path_buf()));
    }
    let known: Vec<String> = SPECS.iter().map(|s| format!("{} ({})", s.name, s.causes.join(", "))).collect();
    Err(format!("unknown cause `{what}`; known: {} (or a .ptd file)", known.join("; ")))
}

/// A file the report writes, relative to its folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFile {
    pub path: String,
    pub contents: String,
}

/// A report, ready to write.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: String,
    pub files: Vec<OutFile>,
    /// What could not be made, and why (a tree missing for a patch, ...).
    pub notes: Vec<String>,
    /// Some real kernel confirmed it.
    pub confirmed: bool,
}

impl Report {
    /// Write the files under `dir` (atomically, each).
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        for f in &self.files {
            let p = dir.join(&f.path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            corpus::write_atomic(&p, f.contents.as_bytes()).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(())
    }
}

/// Load the spec's corpus files.
fn load_cases(root: &Path, files: &[(&str, &str)]) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    for (i, (name, label)) in files.iter().enumerate() {
        let path = root.join("corpus").join(format!("{name}.ptd"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let repro = corpus::load(&path).map_err(|e| e.to_string())?;
        out.push(Case {
            letter: (b'A' + i as u8) as char,
            name: name.to_string(),
            label: label.to_string(),
            path,
            text,
            repro,
        });
    }
    Ok(out)
}

/// The description comment of a reproducer file (its `#` lines before the first `# key:` line).
pub fn description(text: &str) -> String {
    let mut out = Vec::new();
    for l in text.lines().skip_while(|l| l.trim() == "# ptediff reproducer") {
        let Some(c) = l.strip_prefix('#') else { break };
        let c = c.trim();
        if ["variants:", "kernel:", "expect:", "expect-oracle:", "hits:"].iter().any(|k| c.starts_with(k)) {
            break;
        }
        out.push(c);
    }
    out.join(" ")
}

/// Did the real kernel of profile `k` do what the profile predicts for case `c`?
pub fn confirmed_on(m: &Measured, c: &Case, k: Kernel) -> bool {
    m.result(&c.name, &program_hash(&c.repro.program), k.name()).is_some_and(|r| r.matches_own_profile)
}

/// Has a real kernel confirmed the hole of case `c`: a profile whose model
/// has it open, and whose real kernel did what the profile predicts?
pub fn hole_confirmed(m: &Measured, c: &Case) -> bool {
    let rows = crate::judge::affected::affected(&c.path, &c.repro, &crate::kernel_check::ResultsDb::default());
    let Some(row) = rows.iter().find(|r| r.kind != "none").or(rows.first()) else { return false };
    emit_c::PROFILES
        .iter()
        .any(|&k| row.profiles.iter().any(|p| p.profile == k.name() && p.open) && confirmed_on(m, c, k))
}

/// Build the report of `subject`.
pub fn build(subject: &Subject, inputs: &Inputs) -> Result<Report, String> {
    match subject {
        Subject::Spec(spec) => build_spec(spec, inputs),
        Subject::File(path) => build_file(path, inputs),
    }
}

fn build_spec(spec: &'static Spec, inputs: &Inputs) -> Result<Report, String> {
    let cases = load_cases(&inputs.root, spec.cases)?;
    let mut files = Vec::new();
    let mut notes = Vec::new();
    // The reproducers: each case's .ptd and C program.
    for c in &cases {
        files.push(OutFile { path: format!("reproducers/{}.ptd", c.name), contents: c.text.clone() });
        match c_program(c) {
            Ok(src) => files.push(OutFile { path: format!("reproducers/{}.c", c.name), contents: src }),
            Err(e) => notes.push(format!("{}: no C program: {e}", c.name)),
        }
    }
    // The selftests, and the patches for every tree.
    let mut selftests = Vec::new();
    for st in spec.selftests {
        let case = cases.iter().find(|c| c.name == st.case).ok_or_else(|| {
            format!("report {}: selftest {} names {}, which is not one of its cases", spec.name, st.name, st.case)
        })?;
        match emit_c::kselftest::emit(&case.repro.program, st.name, &emit_c::kselftest::Tree::upstream()) {
            Ok(src) => {
                files.push(OutFile { path: format!("selftest/{}.c", st.name), contents: src });
                selftests.push((st, case));
            }
            Err(e) => notes.push(format!("no selftest {}: {e}", st.name)),
        }
    }
    let series = specs::patch_series(spec, &selftests, inputs, &cases, &mut notes)?;
    files.extend(series);
    let confirmed = cases.iter().any(|c| hole_confirmed(&inputs.measured, c));
    let mail = mail::render(&mail::MailInput { spec: Some(spec), cases: &cases, inputs, confirmed });
    files.insert(0, OutFile { path: "mail.txt".into(), contents: mail });
    Ok(Report { name: spec.name.to_string(), files, notes, confirmed })
}

/// A corpus file without a spec: the mail from its own description, its
/// reproducer and selftest; no fix.
fn build_file(path: &Path, inputs: &Inputs) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let repro = corpus::load(path).map_err(|e| e.to_string())?;
    let name = path.file_stem().map_or("report".into(), |s| s.to_string_lossy().into_owned());
    let case = Case { letter: 'A', name: name.clone(), label: String::new(), path: path.into(), text, repro };
    let mut files = vec![OutFile { path: format!("reproducers/{name}.ptd"), contents: case.text.clone() }];
    let mut notes = Vec::new();
    match c_program(&case) {
        Ok(src) => files.push(OutFile { path: format!("reproducers/{name}.c"), contents: src }),
        Err(e) => notes.push(format!("{name}: no C program: {e}")),
    }
    let test = name.replace(['-', '.'], "_");
    match emit_c::kselftest::emit(&case.repro.program, &test, &emit_c::kselftest::Tree::upstream()) {
        Ok(src) => files.push(OutFile { path: format!("selftest/{test}.c"), contents: src }),
        Err(e) => notes.push(format!("no selftest: {e}")),
    }
    let cases = [case];
    let confirmed = hole_confirmed(&inputs.measured, &cases[0]);
    let mail = mail::render(&mail::MailInput { spec: None, cases: &cases, inputs, confirmed });
    files.insert(0, OutFile { path: "mail.txt".into(), contents: mail });
    Ok(Report { name, files, notes, confirmed })
}

/// The case's C program: a race reproducer for a program with a migration
/// window, the deterministic one otherwise.
fn c_program(c: &Case) -> Result<String, String> {
    if emit_c::race::window(&c.repro.program).is_ok() {
        emit_c::race::emit_race(&c.repro.program, &c.name, 20000, 8).map_err(|e| e.to_string())
    } else {
        emit_c::emit_c(&c.repro.program, &c.name).map_err(|e| e.to_string())
    }
}
