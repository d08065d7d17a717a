//! `ptediff fuzz` as a whole: the engine's workers ([`fuzz_jobs`]) and this
//! thread as the one writer of the findings folder. A finding (a new signature,
//! or a shorter program for a known one) is committed as soon as it arrives;
//! hits of known signatures are counted in memory and committed every
//! [`COMMIT_EVERY`] and at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::check::Signature;
use crate::findings::FindingsDb;
use crate::fuzz::{fuzz_jobs, Found, Message, Options, Stats};

/// How often counted hits are written.
pub const COMMIT_EVERY: Duration = Duration::from_secs(5);

/// What a campaign tells its caller as it goes.
pub enum Note<'a> {
    /// A finding the folder did not have: its file.
    New(&'a Found, PathBuf),
    /// Once a second: totals, distinct findings this run, findings in the folder.
    Progress(&'a Stats, usize, usize),
    /// A finding or hits could not be written (the run goes on; the exit status says so).
    WriteError(String),
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Summary {
    pub stats: Stats,
    /// Every signature this run hit: the best program, hits, first time.
    pub found: Vec<Found>,
    /// Signatures new to the folder.
    pub new: usize,
    /// Commits that failed.
    pub write_errors: usize,
}

/// Run `jobs` workers and record everything in `db`.
pub fn run(opts: &Options, jobs: usize, db: &mut FindingsDb, stop: &AtomicBool, mut note: impl FnMut(Note)) -> Summary {
    let mut found: Vec<Found> = Vec::new();
    let mut index: HashMap<Signature, usize> = HashMap::new();
    let mut new = 0;
    let mut errors = 0;
    let mut last_commit = Instant::now();
    let stats = fuzz_jobs(opts, jobs, stop, |m| match m {
        Message::Found(e) => {
            let f = e.found;
            let urgent = db.hit(&opts.pair, &f.program, f.signature.kind(), 1).is_some_and(|h| h.urgent);
            match index.get(&f.signature) {
                Some(&i) => {
                    found[i].hits += 1;
                    if f.program.ops.len() < found[i].program.ops.len() {
                        found[i].program = f.program;
                        found[i].title = f.title;
                    }
                }
                None => {
                    index.insert(f.signature, found.len());
                    found.push(f);
                }
            }
            if urgent {
                commit(db, &found, &mut new, &mut errors, &mut note);
                last_commit = Instant::now();
            }
        }
        Message::Hits(hits) => {
            for (sig, n) in hits {
                db.count(&sig, n);
                if let Some(&i) = index.get(&sig) {
                    found[i].hits += n;
                }
            }
        }
        Message::Progress(st) => {
            if last_commit.elapsed() >= COMMIT_EVERY && db.dirty() {
                commit(db, &found, &mut new, &mut errors, &mut note);
                last_commit = Instant::now();
            }
            note(Note::Progress(&st, found.len(), db.records.len()));
        }
    });
    commit(db, &found, &mut new, &mut errors, &mut note);
    Summary { stats, found, new, write_errors: errors }
}

/// Commit what is pending; report the buckets it created and any error.
fn commit(db: &mut FindingsDb, found: &[Found], new: &mut usize, errors: &mut usize, note: &mut impl FnMut(Note)) {
    match db.commit() {
        Ok(c) => {
            for b in &c.created {
                // A bucket is created only from a program this run found.
                if let Some(f) = found.iter().find(|f| f.signature == *b) {
                    *new += 1;
                    note(Note::New(f, db.path_of(b)));
                }
            }
        }
        Err(e) => {
            *errors += 1;
            note(Note::WriteError(e.to_string()));
        }
    }
}
