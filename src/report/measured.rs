//! What the reports were measured on: a snapshot of the real-kernel results
//! they cite, kept in `reports/measured.json` so that `ptediff report` writes
//! the same files on any machine (the kernel-check databases under `target/`
//! are local and come and go). `ptediff report --record` refreshes it from the
//! local databases; the reports are then regenerated from the snapshot alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kernel_check::{KernelResult, ResultsDb};

/// The snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// kernel-check results of the reports' reproducers: on Debian's kernels
    /// (`v7.3`), and on the kernels `kernel-test` built (`v7.3+base`,
    /// `v7.3+<fix>`, `v7.3+debug-migration-window.<fix>`): reproducer → kernel → result.
    pub kernel_check: BTreeMap<String, Recorded>,
    /// The selftests: report → selftest → kernel → run.
    #[serde(default)]
    pub selftest: BTreeMap<String, BTreeMap<String, BTreeMap<String, SelftestRun>>>,
    /// The patches: report → patch file (relative to the report) → profile → check.
    #[serde(default)]
    pub patch_checks: BTreeMap<String, BTreeMap<String, BTreeMap<String, PatchCheck>>>,
}

/// One reproducer's results, for one program (its hash).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub program_hash: String,
    pub kernels: BTreeMap<String, KernelResult>,
}

/// What a selftest did on one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelftestRun {
    /// `uname -r` in the guest.
    pub uname: String,
    pub result: TestResult,
    /// The TAP result line (`ok 1 ...`, `not ok 1 ...`, `ok 1 # SKIP ...`).
    pub line: String,
}

/// A kselftest's verdict (its exit status: 0, 1, 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestResult {
    Pass,
    Fail,
    Skip,
}

impl TestResult {
    pub fn name(self) -> &'static str {
        match self {
            TestResult::Pass => "PASS",
            TestResult::Fail => "FAIL",
            TestResult::Skip => "SKIP",
        }
    }

    /// The verdict of a kselftest's exit status (KSFT_PASS 0, KSFT_FAIL 1, KSFT_SKIP 4).
    pub fn from_status(code: i32) -> Option<TestResult> {
        match code {
            0 => Some(TestResult::Pass),
            1 => Some(TestResult::Fail),
            4 => Some(TestResult::Skip),
            _ => None,
        }
    }
}

/// A patch checked in one profile's source tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchCheck {
    /// The tree's version (`7.3.4`).
    pub source: String,
    /// `checkpatch.pl --strict`'s total line (`total: 0 errors, 0 warnings, 0 checks, 212 lines checked`).
    pub checkpatch: String,
    /// Did the selftest the patch adds build with the tree's Makefile (absent: the patch adds none)?
    pub builds: Option<bool>,
}

impl Measured {
    /// Load the snapshot; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Measured, String> {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Measured::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}:{}:{}: not a reports snapshot: {e}", path.display(), e.line(), e.column())),
        }
    }

    /// Write it atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut s = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        s.push('\n');
        crate::corpus::write_atomic(path, s.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The result of `name` (a program with this hash) on `kernel`.
    pub fn result(&self, name: &str, hash: &str, kernel: &str) -> Option<&KernelResult> {
        self.kernel_check.get(name).filter(|r| r.program_hash == hash).and_then(|r| r.kernels.get(kernel))
    }

    /// Take the results of `names` from a kernel-check database (a newer
    /// program under the same name replaces the old entry).
    pub fn take(&mut self, db: &ResultsDb, names: &[String]) -> usize {
        let mut n = 0;
        for name in names {
            let Some(rec) = db.reproducers.get(name) else { continue };
            let e = self.kernel_check.entry(name.clone()).or_default();
            if e.program_hash != rec.program_hash {
                *e = Recorded { program_hash: rec.program_hash.clone(), kernels: BTreeMap::new() };
            }
            for (k, r) in &rec.kernels {
                e.kernels.insert(k.clone(), r.clone());
                n += 1;
            }
        }
        n
    }
}

/// The kernel-check databases under `root` (kernel-check's own and every
/// kernel-test's), in a fixed order.
pub fn local_databases(root: &Path) -> Vec<PathBuf> {
    let kc = root.join("target/kernel-check");
    let mut out = vec![kc.join("results.json")];
    if let Ok(rd) = std::fs::read_dir(kc.join("kernel-test")) {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("results.json")).filter(|p| p.is_file()).collect();
        v.sort();
        out.extend(v);
    }
    out
}

/// Where `scripts/report-check.sh` leaves what it measured for a report:
/// `target/kselftest/<report>/<profile>/checkpatch-<patch>.txt` (checkpatch's
/// output), `.../<profile>/build-<selftest>.{ok,failed}`,
/// `.../runs/<kernel>/<selftest>.{out,rc}` and `.../runs/<kernel>/uname`.
pub fn kselftest_dir(root: &Path, report: &str) -> PathBuf {
    root.join("target/kselftest").join(report)
}

/// Take the selftest runs and patch checks of the subjects' reports.
pub fn take_selftests(m: &mut Measured, root: &Path, subjects: &[super::Subject]) -> Result<usize, String> {
    let mut n = 0;
    for s in subjects {
        let super::Subject::Spec(spec) = s else { continue };
        let dir = kselftest_dir(root, spec.name);
        // Runs on kernels.
        for kdir in sorted_dirs(&dir.join("runs")) {
            let kernel = file_name(&kdir);
            let uname = std::fs::read_to_string(kdir.join("uname")).unwrap_or_default().trim().to_string();
            for st in spec.selftests {
                let (out, rc) = (kdir.join(format!("{}.out", st.name)), kdir.join(format!("{}.rc", st.name)));
                let (Ok(text), Ok(code)) = (std::fs::read_to_string(&out), std::fs::read_to_string(&rc)) else {
                    continue;
                };
                let code: i32 = code.trim().parse().map_err(|_| format!("{}:1:1: not an exit status", rc.display()))?;
                let line = text
                    .lines()
                    .find(|l| l.starts_with("ok ") || l.starts_with("not ok ") || l.starts_with("1..0 # SKIP"))
                    .unwrap_or("")
                    .to_string();
                let result = if line.contains("# SKIP") {
                    TestResult::Skip
                } else {
                    TestResult::from_status(code)
                        .ok_or_else(|| format!("{}: exit status {code} is not a kselftest's", rc.display()))?
                };
                let run = SelftestRun { uname: uname.clone(), result, line };
                m.selftest
                    .entry(spec.name.into())
                    .or_default()
                    .entry(st.name.into())
                    .or_default()
                    .insert(kernel.clone(), run);
                n += 1;
            }
        }
        // Patch checks per tree.
        for pdir in sorted_dirs(&dir) {
            let profile = file_name(&pdir);
            if profile == "runs" {
                continue;
            }
            let source = std::fs::read_to_string(pdir.join("source-version")).unwrap_or_default().trim().to_string();
            let Ok(rd) = std::fs::read_dir(&pdir) else { continue };
            let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let name = file_name(&f);
                let Some(patch) = name.strip_prefix("checkpatch-").and_then(|p| p.strip_suffix(".txt")) else {
                    continue;
                };
                let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                let total = text.lines().find(|l| l.starts_with("total: ")).unwrap_or("checkpatch did not finish");
                // The warnings and errors by kind; FILE_PATH_CHANGES of a new file
                // MAINTAINERS already covers is judged not to apply (README).
                let warned: Vec<&str> =
                    text.lines().filter(|l| l.starts_with("WARNING:") || l.starts_with("ERROR:")).collect();
                let total = if !warned.is_empty() && warned.iter().all(|l| l.contains("does MAINTAINERS need updating"))
                {
                    format!("{total}; the warning: a new file, which MAINTAINERS already covers")
                } else {
                    total.to_string()
                };
                let builds = spec
                    .selftests
                    .iter()
                    .any(|_| patch.contains("selftests"))
                    .then(|| spec.selftests.iter().all(|st| pdir.join(format!("build-{}.ok", st.name)).is_file()));
                let check = PatchCheck { source: source.clone(), checkpatch: total, builds };
                m.patch_checks
                    .entry(spec.name.into())
                    .or_default()
                    .entry(format!("patches/{profile}/{patch}.patch"))
                    .or_default()
                    .insert(profile.clone(), check);
                n += 1;
            }
        }
    }
    Ok(n)
}

fn sorted_dirs(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or(String::new(), |s| s.to_string_lossy().into_owned())
}
