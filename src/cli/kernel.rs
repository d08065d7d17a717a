//! The real-kernel commands: `affected`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::usage;
use crate::judge::affected;
use crate::kernel_check::ResultsDb;

/// `ptediff affected PATHS [--json] [--results FILE]`.
pub fn cmd_affected(paths: &[PathBuf], json: bool, results: &std::path::Path) -> ExitCode {
    let db = match ResultsDb::load(results) {
        Ok(db) => db,
        Err(e) => return usage(&e),
    };
    let (rows, bad, quiet) = affected::affected_all(paths, &db);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialise"));
    } else if rows.len() == 1 && bad.is_empty() {
        print!("{}", affected::render_one(&rows[0]));
    } else {
        print!("{}", affected::render(&rows));
        if quiet > 0 {
            println!("{quiet} file(s) without a harmful divergence, oracle violation or unsafe PTE on any profile.");
        }
    }
    for e in &bad {
        eprintln!("ptediff: {e}");
    }
    if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
