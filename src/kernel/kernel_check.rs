//! `ptediff kernel-check`: build the C reproducers of a set of programs, run them
//! all in one boot of each real kernel under QEMU (`scripts/kernel-check-run.sh`),
//! and compare what each kernel did with what each model profile predicted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::corpus;
use crate::emit_c::{emit_c, PROFILES};

/// Per reproducer and page: what was observed, and what each profile predicted.
#[derive(Clone, Debug, Default)]
pub struct Reproducer {
    /// `p0 3` → observation line (`obs=... sd=... uw=... present=...`).
    pub observed: BTreeMap<String, String>,
    /// profile → page → prediction.
    pub predicted: BTreeMap<String, BTreeMap<String, String>>,
    pub ended: bool,
    pub error: Option<String>,
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
            ["PTEDIFF-PAGE", name, p, a, rest @ ..] => {
                out.entry(name.to_string()).or_default().observed.insert(format!("{p} {a}"), rest.join(" "));
            }
            ["PTEDIFF-PREDICT", name, k, p, a, rest @ ..] => {
                out.entry(name.to_string())
                    .or_default()
                    .predicted
                    .entry(k.to_string())
                    .or_default()
                    .insert(format!("{p} {a}"), rest.join(" "));
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

/// One cell of the matrix.
pub fn verdict(r: &Reproducer) -> (String, Vec<String>) {
    if let Some(e) = &r.error {
        return (format!("error: {e}"), Vec::new());
    }
    if !r.ended {
        return ("did not finish".into(), Vec::new());
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

/// Everything a run needs.
pub struct Options {
    pub files: Vec<PathBuf>,
    pub kernels: Vec<String>,
    pub work: PathBuf,
    pub scripts: PathBuf,
}

/// Emit, build and run; print the matrix. Returns the number of reproducers whose
/// observations matched no profile on some kernel (or an error message).
pub fn run(o: &Options) -> Result<usize, String> {
    std::fs::create_dir_all(&o.work).map_err(|e| format!("{}: {e}", o.work.display()))?;
    let mut bins = Vec::new();
    let mut names = Vec::new();
    for f in corpus::collect_files(&o.files) {
        let r = corpus::load(&f).map_err(|e| e.to_string())?;
        let name = f.file_stem().map_or("x".into(), |s| s.to_string_lossy().into_owned());
        match emit_c(&r.program, &name) {
            Err(e) => println!("skip {}: not realizable: {e}", f.display()),
            Ok(c) => {
                let src = o.work.join(format!("{name}.c"));
                let bin = o.work.join(&name);
                corpus::write_atomic(&src, c.as_bytes()).map_err(|e| format!("{}: {e}", src.display()))?;
                let st = Command::new("gcc")
                    .args(["-static", "-O1", "-pthread", "-o"])
                    .arg(&bin)
                    .arg(&src)
                    .status()
                    .map_err(|e| format!("gcc: {e}"))?;
                if !st.success() {
                    return Err(format!("gcc failed on {}", src.display()));
                }
                bins.push(bin);
                names.push(name);
            }
        }
    }
    if bins.is_empty() {
        return Err("no realizable reproducer".into());
    }
    let mut results: BTreeMap<String, BTreeMap<String, Reproducer>> = BTreeMap::new();
    for k in &o.kernels {
        let log = o.work.join(format!("{k}.log"));
        let st = Command::new("bash")
            .arg(o.scripts.join("kernel-check-run.sh"))
            .arg(k)
            .arg(&log)
            .args(&bins)
            .status()
            .map_err(|e| format!("kernel-check-run.sh: {e}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !st.success() {
            println!("warning: the {k} boot did not finish cleanly (see {})", log.display());
        }
        results.insert(k.clone(), parse_log(&text));
    }
    // The matrix.
    println!();
    print!("| reproducer |");
    for k in &o.kernels {
        print!(" {k} |");
    }
    println!();
    print!("|---|");
    for _ in &o.kernels {
        print!("---|");
    }
    println!();
    let mut bad = 0;
    let mut notes = Vec::new();
    for n in &names {
        print!("| {n} |");
        let mut row_bad = false;
        for k in &o.kernels {
            let r = results.get(k).and_then(|m| m.get(n)).cloned().unwrap_or_default();
            let (cell, details) = verdict(&r);
            // Which profile should have matched: the one named after the kernel.
            let own = PROFILES.iter().find(|p| p.name() == k).map(|p| p.name().to_string());
            let ok = own.as_ref().is_some_and(|own| cell.contains(own.as_str()));
            row_bad |= !ok;
            print!(" {cell}{} |", if ok { "" } else { " ✗" });
            for d in details.iter().filter(|d| own.as_ref().is_some_and(|o| d.starts_with(&format!("{o}:")))) {
                notes.push(format!("{n} on {k}: {d}"));
            }
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
    Ok(bad)
}

/// Default folder of the scripts (next to the crate).
pub fn default_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}
