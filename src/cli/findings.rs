//! The findings-database commands: `fuzz`, `triage`, `merge`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{stop_on_ctrl_c, usage};
use crate::findings::campaign::{self, Note};
use crate::findings::{self, FindingsDb};
use crate::fuzz as engine;

pub fn cmd_fuzz(opts: &engine::Options, jobs: usize, out: &Path, fail_on_finding: bool, verbose: bool) -> ExitCode {
    let stop = stop_on_ctrl_c();
    let mut db = match FindingsDb::open(out) {
        Ok(db) => db,
        Err(e) => return usage(&e.to_string()),
    };
    for e in &db.unreadable {
        eprintln!("ptediff: warning: {e} (left as it is)");
    }
    let (na, nb) = opts.pair.names();
    eprintln!(
        "ptediff fuzz: {na} vs {nb} on {}, seed {}, up to {} ops, {} s, {jobs} job{}{}, findings in {} ({} already there), run {}",
        opts.pair.a.kernel.name(),
        opts.seed,
        opts.max_ops,
        opts.time.as_secs(),
        if jobs == 1 { "" } else { "s" },
        if opts.oracle { ", oracle on" } else { "" },
        out.display(),
        db.records.len(),
        db.run
    );
    let mut last_progress = 0.0;
    let s = campaign::run(opts, jobs, &mut db, &stop, |n| match n {
        Note::New(f, path) if verbose => eprintln!(
            "[{:>6.1}s] new: {} ({} ops) -> {}",
            f.at.as_secs_f64(),
            f.title,
            f.program.ops.len(),
            path.display()
        ),
        Note::New(..) => {}
        Note::Progress(st, this_run, in_folder) => {
            let t = st.elapsed.as_secs_f64();
            if !verbose && t < last_progress + 10.0 {
                return;
            }
            last_progress = t;
            let rate = st.programs as f64 / t.max(1e-9);
            eprintln!(
                "[{:>6.1}s] {} programs ({:.0}/s), {} findings this run, {} in the folder, pool {}",
                t, st.programs, rate, this_run, in_folder, st.pool
            );
        }
        Note::WriteError(e) => eprintln!("ptediff: cannot write to the findings folder: {e}"),
    });
    let rate = s.stats.programs as f64 / s.stats.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} programs in {:.1} s ({:.0} programs/s, {jobs} job{}): {} distinct findings this run, {} new; {} in {}",
        s.stats.programs,
        s.stats.elapsed.as_secs_f64(),
        rate,
        if jobs == 1 { "" } else { "s" },
        s.found.len(),
        s.new,
        db.records.len(),
        out.display()
    );
    let unrecorded = db.unrecorded_hits();
    println!("run {}: {} hits recorded", db.run, db.run_hits() - unrecorded);
    if verbose {
        let mut found = s.found;
        found.sort_by_key(|f| f.at);
        for f in &found {
            println!(
                "  {:>8} hits  first at {:>6.2}s  {:>2} ops  {}",
                f.hits,
                f.at.as_secs_f64(),
                f.program.ops.len(),
                f.title
            );
        }
    }
    println!();
    println!("Root causes of the findings in {} (harmful first):", out.display());
    println!();
    let groups = findings::by_cause(&db.records);
    print_causes(&groups);
    println!();
    println!(
        "`ptediff triage {} --buckets` lists each cause's findings; each finding is a replayable .ptd file there.",
        out.display()
    );
    if unrecorded > 0 {
        eprintln!("ptediff: {unrecorded} hits of findings whose file was never written were not recorded");
    }
    if s.write_errors > 0 || unrecorded > 0 {
        return ExitCode::from(2);
    }
    if fail_on_finding && s.new > 0 {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// The cause table (what `triage` prints first).
fn print_causes(groups: &[findings::CauseGroup]) {
    let file_name = |r: &findings::FindingRecord| {
        Path::new(&r.file).file_name().map_or(r.file.clone(), |f| f.to_string_lossy().into_owned())
    };
    println!("| cause | harm | buckets | hits | shortest reproducer | what happens |");
    println!("|---|---|---|---|---|---|");
    for g in groups {
        let s = g.shortest();
        println!(
            "| {} | {} | {} | {} | {} ({} ops) | {} |",
            g.cause,
            if g.cause.harmful() { "harmful" } else { "-" },
            g.findings.len(),
            g.hits,
            file_name(s),
            s.ops,
            g.cause.title()
        );
    }
}

pub fn cmd_triage(dir: &Path, buckets: bool) -> ExitCode {
    if !dir.is_dir() {
        return usage(&format!("{}: not a folder", dir.display()));
    }
    let db = match findings::load(dir) {
        Ok(db) => db,
        Err(e) => return usage(&format!("{}: {e}", dir.display())),
    };
    let file_name = |r: &findings::FindingRecord| {
        Path::new(&r.file).file_name().map_or(r.file.clone(), |f| f.to_string_lossy().into_owned())
    };
    let groups = findings::by_cause(&db.records);
    print_causes(&groups);
    if buckets {
        for g in &groups {
            println!("\n### {}\n", g.cause);
            println!("| verdict | hits | ops | variants | title | file |");
            println!("|---|---|---|---|---|---|");
            for r in &g.findings {
                println!(
                    "| {} | {} | {} | {} vs {} | {} | {} |",
                    r.verdict,
                    r.hits,
                    r.ops,
                    r.variants.0,
                    r.variants.1,
                    r.title,
                    file_name(r)
                );
            }
        }
    }
    for e in &db.unreadable {
        println!("unreadable: {e}");
    }
    let harmful = db.records.values().filter(|r| r.harmful).count();
    let harmful_causes = groups.iter().filter(|g| g.cause.harmful()).count();
    println!(
        "{} findings ({harmful} harmful) in {} causes ({harmful_causes} harmful), {} unreadable{}",
        db.records.len(),
        groups.len(),
        db.unreadable.len(),
        if buckets || groups.is_empty() { "" } else { "; --buckets lists the findings of each cause" }
    );
    if db.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

pub fn cmd_merge(dirs: &[PathBuf], out: &Path) -> ExitCode {
    if let Some(d) = dirs.iter().find(|d| !d.is_dir()) {
        return usage(&format!("{}: not a folder", d.display()));
    }
    let mut db = match FindingsDb::open_as(out, &findings::new_run_id("merge")) {
        Ok(db) => db,
        Err(e) => return usage(&e.to_string()),
    };
    let before = db.records.len();
    let mut bad = 0;
    let mut buckets = 0;
    for d in dirs {
        let snap = match findings::load(d) {
            Ok(s) => s,
            Err(e) => return usage(&format!("{}: {e}", d.display())),
        };
        for e in &snap.unreadable {
            eprintln!("ptediff: {e} (not merged)");
            bad += 1;
        }
        for b in snap.buckets.values() {
            db.absorb(b);
            buckets += 1;
        }
    }
    let c = match db.commit() {
        Ok(c) => c,
        Err(e) => return usage(&e.to_string()),
    };
    println!(
        "merged {buckets} findings from {} folder{} into {}: {} new, {} files written; {} findings there (was {before})",
        dirs.len(),
        if dirs.len() == 1 { "" } else { "s" },
        out.display(),
        c.created.len(),
        c.written,
        db.records.len()
    );
    if bad > 0 {
        eprintln!("ptediff: {bad} unreadable file(s) were not merged");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
