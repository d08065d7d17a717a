//! `ptediff report`: the mail, reproducer, selftest and patches of a hole.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::usage;
use crate::report::{self, measured, Inputs, Measured, Subject, SPECS};

/// Write a report a kernel maintainer can act on: mail.txt, the reproducer,
/// a kselftest, and the fix and selftest as `git format-patch` files.
#[derive(clap::Args)]
pub struct Args {
    /// A cause (a report name such as clear-refs-migration-entry, or a cause
    /// such as hole.clear-refs) or a .ptd file.
    what: Option<String>,
    /// Every report (SPECS), one folder each under --out.
    #[arg(long, conflicts_with = "what")]
    all: bool,
    /// The folder to write (with --all: the parent of one folder per report).
    #[arg(long)]
    out: PathBuf,
    /// The real-kernel results the reports cite (a snapshot, see --record).
    #[arg(long, default_value = "reports/measured.json")]
    measured: PathBuf,
    /// First refresh the snapshot from the local kernel-check and kernel-test
    /// databases (target/kernel-check) and selftest runs (target/kselftest).
    #[arg(long)]
    record: bool,
    /// The kernel trees the selftest patches are written against: DIR/PROFILE/src.
    #[arg(long, default_value = "target/kernel-check/build")]
    trees: PathBuf,
    /// `Name <email>` for From: and Signed-off-by: (default: reports/AUTHOR, else git's user.name and user.email).
    #[arg(long)]
    author: Option<String>,
}

fn git_author() -> Option<String> {
    let get = |k: &str| {
        let o = std::process::Command::new("git").args(["config", k]).output().ok()?;
        let v = String::from_utf8(o.stdout).ok()?.trim().to_string();
        (!v.is_empty()).then_some(v)
    };
    Some(format!("{} <{}>", get("user.name")?, get("user.email")?))
}

pub fn cmd_report(a: Args) -> ExitCode {
    let subjects: Vec<Subject> = if a.all {
        SPECS.iter().map(Subject::Spec).collect()
    } else {
        match a.what.as_deref().map(report::resolve) {
            None => return usage("report: name a cause or a .ptd file, or give --all"),
            Some(Err(e)) => return usage(&e),
            Some(Ok(s)) => vec![s],
        }
    };
    let mut snapshot = match Measured::load(&a.measured) {
        Ok(m) => m,
        Err(e) => return usage(&e),
    };
    let root = PathBuf::from(".");
    if a.record {
        match record(&mut snapshot, &root, &subjects) {
            Ok(n) => println!("recorded {n} result(s) into {}", a.measured.display()),
            Err(e) => return usage(&e),
        }
        if let Err(e) = snapshot.save(&a.measured) {
            return usage(&e);
        }
    }
    let committed = std::fs::read_to_string("reports/AUTHOR").ok().map(|s| s.trim().to_string());
    // A corpus file without a report of its own cites what this machine measured too.
    if subjects.iter().any(|s| matches!(s, Subject::File(_))) && !a.record {
        let files: Vec<Subject> = subjects.iter().filter(|s| matches!(s, Subject::File(_))).cloned().collect();
        if let Err(e) = record(&mut snapshot, &root, &files) {
            return usage(&e);
        }
    }
    let Some(author) = a.author.or(committed).or_else(git_author) else {
        return usage("report: no --author and no git user.name/user.email to sign the patches with");
    };
    let inputs = Inputs { root, trees: a.trees, author, measured: snapshot };
    let mut code = ExitCode::SUCCESS;
    for s in &subjects {
        let r = match report::build(s, &inputs) {
            Ok(r) => r,
            Err(e) => return usage(&e),
        };
        let dir = if a.all { a.out.join(&r.name) } else { a.out.clone() };
        if let Err(e) = r.write(&dir) {
            return usage(&e);
        }
        let tag = if r.confirmed { "" } else { " (model only: no real kernel confirmed a hole in it)" };
        println!("{}: {} file(s){tag}", dir.display(), r.files.len());
        for n in &r.notes {
            println!("  note: {n}");
            code = ExitCode::from(1);
        }
    }
    code
}

/// Refresh the snapshot from the local databases: the results of every case
/// of the subjects, and their selftest runs and patch checks.
fn record(m: &mut Measured, root: &Path, subjects: &[Subject]) -> Result<usize, String> {
    let mut names = Vec::new();
    for s in subjects {
        match s {
            Subject::Spec(spec) => names.extend(spec.cases.iter().map(|(n, _)| n.to_string())),
            Subject::File(p) => names.extend(p.file_stem().map(|n| n.to_string_lossy().into_owned())),
        }
    }
    let mut n = 0;
    for db in measured::local_databases(root) {
        let db = crate::kernel_check::ResultsDb::load(&db)?;
        n += m.take(&db, &names);
    }
    n += measured::take_selftests(m, root, subjects)?;
    Ok(n)
}
