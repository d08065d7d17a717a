//! `ptediff kernel-test`: does a kernel patch change what the reproducers see?
//!
//! Builds a kernel from the Debian source of a profile twice with
//! `scripts/kernel-build.sh` (unpatched, `v7.3+base`, and with the patch,
//! `v7.3+<name>`; one cached build tree per profile, so a second patch rebuilds
//! only what the two patches touch), runs `kernel-check` on both, and lists the
//! reproducers whose result changed between the two builds. `--with` patches
//! (a test hook such as patches/debug-migration-window) go into both builds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::corpus;
use crate::emit_c::PROFILES;
use crate::kernel_check::{self, kernel_ready_named, profile_of, KernelResult, ResultsDb};

/// The kernel name suffix of a patch: its file name without `.patch`/`.diff`,
/// or the name of its folder when the file is named after a profile
/// (`patches/<fix>/v7.3.patch` → `<fix>`). `base` is the unpatched build, so a
/// patch may not be called that.
pub fn patch_name(patch: &Path) -> Result<String, String> {
    let stem = |p: &Path| p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let file = stem(patch);
    let mut name = file.strip_suffix(".patch").or_else(|| file.strip_suffix(".diff")).unwrap_or(&file).to_string();
    if PROFILES.iter().any(|k| k.name() == name) {
        name = patch.parent().map(stem).unwrap_or_default();
    }
    check_name(&name).map_err(|e| format!("{}: {e} (rename the file, or pass --name)", patch.display()))?;
    Ok(name)
}

/// A kernel name suffix: letters, digits, `.`, `_`, `-`; not `base`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(format!(
            "`{name}` cannot be a kernel name suffix (letters, digits, `.`, `_`, `-`, starting with a letter or digit)"
        ));
    }
    if name == "base" {
        return Err("`base` is the name of the unpatched build".into());
    }
    Ok(())
}

/// A patch must be a readable unified diff; the error names the file (and line).
pub fn check_patch(patch: &Path) -> Result<(), String> {
    let text = std::fs::read(patch).map_err(|e| format!("{}: {e}", patch.display()))?;
    let text = String::from_utf8_lossy(&text);
    let mut saw_old = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("--- ") {
            saw_old = true;
        } else if line.starts_with("+++ ") {
            if !saw_old {
                return Err(format!("{}:{}: `+++` file header without a `---` line before it", patch.display(), i + 1));
            }
            return Ok(());
        } else {
            saw_old = false;
        }
    }
    Err(format!("{}:1: not a unified diff (no `---`/`+++` file header)", patch.display()))
}

/// Build (or find up to date) the kernel `profile+name` with `scripts/kernel-build.sh`;
/// returns its folder name. The script's progress goes to stderr.
pub fn build(scripts: &Path, root: &Path, profile: &str, patch: Option<(&Path, &str)>) -> Result<String, String> {
    let want = match patch {
        Some((_, name)) => format!("{profile}+{name}"),
        None => format!("{profile}+base"),
    };
    let mut cmd = Command::new("bash");
    cmd.arg(scripts.join("kernel-build.sh")).arg(profile);
    if let Some((p, name)) = patch {
        cmd.arg(p).arg(name);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", scripts.join("kernel-build.sh").display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines().filter(|l| l.starts_with("KERNEL-BUILD-TIME")) {
        eprintln!("{l}");
    }
    if !out.status.success() {
        return Err(format!(
            "building {want} failed (scripts/kernel-build.sh exit {})",
            out.status.code().unwrap_or(-1)
        ));
    }
    let got = stdout.lines().find_map(|l| l.strip_prefix("KERNEL-BUILD-INSTALLED ")).map(str::trim);
    if got != Some(want.as_str()) {
        return Err(format!("scripts/kernel-build.sh installed {got:?}, expected {want}"));
    }
    kernel_ready_named(root, &want)?;
    Ok(want)
}

/// One reproducer whose result differs between the two kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub reproducer: String,
    /// Matrix cell on the unpatched and the patched kernel (`did not run` if none).
    pub base: String,
    pub patched: String,
    /// `p0 3: obs=writable sd=0 … → obs=fault sd=1 …` per page that differs.
    pub pages: Vec<String>,
}

/// What of a result must stay the same for a reproducer to be unchanged: the
/// cell of an exact reproducer; for a race reproducer the kind of its cell
/// (`confirmed`, `not observed in`, `none in`, `CONTRADICTED`: round counts
/// vary from run to run).
fn cell_kind(r: &KernelResult) -> &str {
    match &r.race {
        Some(_) => r.cell.split(|c: char| c.is_ascii_digit()).next().unwrap_or("").trim(),
        None => &r.cell,
    }
}

/// The reproducers (of `names`) whose recorded result differs between kernels
/// `base` and `patched`: a different observation on some page, a different
/// cell (for a race reproducer: a different kind of cell, with the violation
/// counts shown), or a result on only one of them.
pub fn changes(db: &ResultsDb, names: &[String], base: &str, patched: &str) -> Vec<Change> {
    let mut out = Vec::new();
    for n in names {
        let rec = db.reproducers.get(n);
        let a = rec.and_then(|r| r.kernels.get(base));
        let b = rec.and_then(|r| r.kernels.get(patched));
        let cell = |r: Option<&KernelResult>| r.map_or("did not run".to_string(), |r| r.cell.clone());
        let kind = |r: Option<&KernelResult>| r.map(|r| cell_kind(r).to_string());
        let empty = BTreeMap::new();
        let (oa, ob) = (a.map_or(&empty, |r| &r.observed), b.map_or(&empty, |r| &r.observed));
        let mut pages: Vec<String> = oa
            .keys()
            .chain(ob.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| oa.get(*p) != ob.get(*p))
            .map(|p| {
                let show = |o: Option<&String>| o.map_or("nothing".to_string(), |s| s.clone());
                format!("{p}: {} → {}", show(oa.get(p)), show(ob.get(p)))
            })
            .collect();
        pages.sort();
        let breaks = |r: Option<&KernelResult>| r.map_or(String::new(), |r| r.breaks.join(", "));
        if breaks(a) != breaks(b) {
            let show = |s: String| if s.is_empty() { "none".to_string() } else { s };
            pages.push(format!("contract breaks: {} → {}", show(breaks(a)), show(breaks(b))));
        }
        if let (Some(ra), Some(rb)) = (a.and_then(|r| r.race.as_ref()), b.and_then(|r| r.race.as_ref())) {
            if kind(a) != kind(b) {
                let v = |r: &crate::kernel_check::Race, k: &str| {
                    let p = profile_of(k).map_or("", |p| p.name());
                    format!("{}/{}", r.violations.get(p).copied().unwrap_or(0), r.rounds)
                };
                pages.push(format!("rounds breaking a contract: {} → {}", v(ra, base), v(rb, patched)));
            }
        }
        if a.is_none() || b.is_none() || !pages.is_empty() || kind(a) != kind(b) {
            out.push(Change { reproducer: n.clone(), base: cell(a), patched: cell(b), pages });
        }
    }
    out
}

/// The changes as a Markdown table (or a sentence when there are none).
pub fn render_changes(changes: &[Change], ran: usize, base: &str, patched: &str) -> String {
    if changes.is_empty() {
        return format!("no reproducer changed between {base} and {patched} ({ran} ran on both)\n");
    }
    let mut s = format!("{} of {ran} reproducer(s) changed between {base} and {patched}:\n\n", changes.len());
    s += &format!("| reproducer | {base} | {patched} | what changed |\n|---|---|---|---|\n");
    for c in changes {
        let what = if c.pages.is_empty() { "the cell".to_string() } else { c.pages.join("; ") };
        s += &format!("| {} | {} | {} | {what} |\n", c.reproducer, c.base, c.patched);
    }
    s
}

/// Everything `kernel-test` needs.
pub struct Options {
    /// A profile with a Debian source: v6.1.y, v6.12, v6.18, v7.3.
    pub kernel: String,
    pub patch: PathBuf,
    /// Patches applied to both builds (e.g. patches/debug-migration-window): the
    /// base is `PROFILE+<with>`, the patched build `PROFILE+<with>.<name>`.
    pub with: Vec<PathBuf>,
    /// Kernel name suffix (default: from the patch file name).
    pub name: Option<String>,
    pub files: Vec<PathBuf>,
    pub work: PathBuf,
    pub scripts: PathBuf,
    /// `target/kernel-check` (kernels/ and build/ live there).
    pub root: PathBuf,
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    pub base: String,
    pub patched: String,
    /// Reproducers that ran to their end on both kernels.
    pub ran: usize,
    /// Realizable reproducers.
    pub total: usize,
    pub changes: Vec<Change>,
}

/// Build both kernels, run kernel-check on both, print the matrix and the changed
/// rows. An error is bad input or a build that failed.
pub fn run(o: &Options) -> Result<Outcome, String> {
    if o.kernel.contains('+') {
        return Err(format!(
            "--kernel takes a profile (v6.1.y, v6.12, v6.18, v7.3), not a kernel name: `{}`",
            o.kernel
        ));
    }
    let profile = profile_of(&o.kernel)?.name();
    check_patch(&o.patch)?;
    let name = match &o.name {
        Some(n) => {
            check_name(n).map_err(|e| format!("--name: {e}"))?;
            n.clone()
        }
        None => patch_name(&o.patch)?,
    };
    // The reproducers kernel-check will run (it skips what emit-c refuses), to
    // know which rows must be there.
    let mut names = Vec::new();
    for f in corpus::collect_files(&o.files) {
        let r = corpus::load(&f).map_err(|e| e.to_string())?;
        let name = f.file_stem().map_or("x".into(), |s| s.to_string_lossy().into_owned());
        if kernel_check::emit_any(&r.program, &name, 1, 1).is_ok() {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err("no realizable reproducer".into());
    }
    let (base, patched) = if o.with.is_empty() {
        (build(&o.scripts, &o.root, profile, None)?, build(&o.scripts, &o.root, profile, Some((&o.patch, &name)))?)
    } else {
        // Both builds carry the --with patches: the base is them alone, the patched
        // build them and the patch, each as one combined patch file.
        let mut with_names = Vec::new();
        let mut with_text = Vec::new();
        for w in &o.with {
            check_patch(w)?;
            with_names.push(patch_name(w)?);
            with_text.extend(std::fs::read(w).map_err(|e| format!("{}: {e}", w.display()))?);
            with_text.push(b'\n');
        }
        let base_name = with_names.join(".");
        let patched_name = format!("{base_name}.{name}");
        let dir = o.work.join(format!("{profile}+{patched_name}"));
        let (bp, pp) = (dir.join("base.patch"), dir.join("patched.patch"));
        corpus::write_atomic(&bp, &with_text).map_err(|e| format!("{}: {e}", bp.display()))?;
        let mut all = with_text.clone();
        all.extend(std::fs::read(&o.patch).map_err(|e| format!("{}: {e}", o.patch.display()))?);
        corpus::write_atomic(&pp, &all).map_err(|e| format!("{}: {e}", pp.display()))?;
        (
            build(&o.scripts, &o.root, profile, Some((&bp, &base_name)))?,
            build(&o.scripts, &o.root, profile, Some((&pp, &patched_name)))?,
        )
    };
    let work = o.work.join(&patched);
    let results = work.join("results.json");
    match std::fs::remove_file(&results) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: {e}", results.display())),
        _ => {}
    }
    let kc = kernel_check::Options {
        files: o.files.clone(),
        kernels: vec![base.clone(), patched.clone()],
        work,
        scripts: o.scripts.clone(),
        root: o.root.clone(),
        results: Some(results.clone()),
        race_rounds: 20000,
        race_seconds: 8,
    };
    kernel_check::run(&kc)?;
    let db = ResultsDb::load(&results)?;
    let finished = |r: Option<&KernelResult>| r.is_some_and(|r| !r.cell.starts_with("did not finish"));
    let ran = names
        .iter()
        .filter(|n| {
            let rec = db.reproducers.get(*n);
            finished(rec.and_then(|r| r.kernels.get(&base))) && finished(rec.and_then(|r| r.kernels.get(&patched)))
        })
        .count();
    let changes = changes(&db, &names, &base, &patched);
    println!();
    print!("{}", render_changes(&changes, ran, &base, &patched));
    Ok(Outcome { base, patched, ran, total: names.len(), changes })
}
