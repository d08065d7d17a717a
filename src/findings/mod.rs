//! The findings database: one folder that any number of writers share (the
//! workers of `ptediff fuzz`, several `fuzz` processes, libFuzzer runs of the
//! `differential` target, `ptediff merge`), on one machine or copied between
//! machines.
//!
//! - `<bucket>.ptd`, one per signature (the bucket is the signature slug): the
//!   shortest program seen (ties: the smaller program text, then the variant
//!   names), its expectations, and its hits **per run**. Every writer process
//!   has its own run id and only ever raises its own count, so the counts form
//!   a grow-only counter (a G-counter CRDT): merging two copies of a bucket takes
//!   each run's larger count and the better program. That merge is commutative,
//!   associative and idempotent, so folders can be merged in any order, any
//!   number of times. Old files with only `# hits: N` count as one run whose id
//!   is a hash of the file (two copies of the same old file count once).
//! - `findings.json`: derived from the `.ptd` files (exactly the readable ones),
//!   rewritten at the end of every commit.
//! - `.lock`: a writer holds an exclusive `flock` on it while it commits a batch
//!   (re-read the files it changes, merge, write each atomically, rewrite
//!   `findings.json`). Read-modify-writes of a file by two processes would
//!   otherwise lose one of them. The kernel drops the lock when its holder dies,
//!   even by SIGKILL, so there is no stale lock to clean up.
//!
//! Readers ([`load`], `ptediff triage`) take no lock: every file is replaced by
//! an atomic rename, so a reader sees each file either before or after a commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::check::{check, Kind, Outcome, PageDiff, Pair, Report};
use crate::corpus::{self, FileError, RenderOpts};
use crate::judge::causes::{cause_of, Cause};
use crate::op::Program;

pub mod campaign;

/// Hits of one bucket, per run id.
pub type Runs = BTreeMap<String, u64>;

/// A new run id: `ENGINE-` and 48 random bits (from the OS), e.g. `fuzz-3f2a9c1e5b7d`.
pub fn new_run_id(engine: &str) -> String {
    let r: u64 = rand::random();
    format!("{engine}-{:012x}", r >> 16)
}

/// FNV-1a, 64 bits: a hash that is the same on every machine and build.
fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The run id that stands for the `# hits: N` of a file written before run ids.
pub fn legacy_run_id(file_bytes: &[u8]) -> String {
    format!("legacy-{:012x}", fnv64(file_bytes) >> 16)
}

/// One object of `findings.json` (and one row of `ptediff triage`).
#[derive(Clone, Debug, Serialize)]
pub struct FindingRecord {
    pub signature: String,
    pub title: String,
    pub kind: Kind,
    pub verdict: String,
    /// Its cause is harmful: a harmful divergence or a broken contract (latent
    /// findings and spurious faults are not).
    pub harmful: bool,
    /// The root cause (`ptediff triage` groups by its key; see `judge::causes`).
    pub cause: Cause,
    pub variants: (String, String),
    pub kernel: String,
    pub file: String,
    pub first_step: usize,
    pub first_op: String,
    pub pages: Vec<PageDiff>,
    pub program: String,
    pub ops: usize,
    /// Total hits (the sum of `runs`).
    pub hits: u64,
    /// Hits per run id.
    pub runs: Runs,
}

/// What a bucket file holds, in the form that merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub pair: Pair,
    pub kind: Kind,
    pub program: Program,
    pub runs: Runs,
}

/// The order "better program": fewer ops, then smaller text, then variant names and kernel.
fn program_key(pair: &Pair, program: &Program) -> (usize, String, (String, String), &'static str) {
    (program.ops.len(), program.to_string(), pair.names(), pair.a.kernel.name())
}

impl Bucket {
    /// Keep `program` if it is better than this bucket's; true if it was.
    pub fn offer(&mut self, pair: &Pair, program: &Program) -> bool {
        if program_key(pair, program) < program_key(&self.pair, &self.program) {
            self.pair = *pair;
            self.program = program.clone();
            true
        } else {
            false
        }
    }

    /// Each run's larger count.
    pub fn absorb_runs(&mut self, runs: &Runs) {
        for (id, &n) in runs {
            let e = self.runs.entry(id.clone()).or_insert(0);
            *e = n.max(*e);
        }
    }

    /// Merge another copy of the same bucket (commutative, associative, idempotent).
    pub fn merge(&mut self, other: &Bucket) {
        self.offer(&other.pair, &other.program);
        self.absorb_runs(&other.runs);
    }

    pub fn hits(&self) -> u64 {
        self.runs.values().sum()
    }

    /// The file text and the record, or None if the program no longer shows its
    /// finding (the model changed since).
    fn render(&self, path: &Path) -> Option<(String, FindingRecord)> {
        let out = check(&self.program, &self.pair);
        let rec = record_of(&self.pair, &out, &self.program, self.kind, path, &self.runs)?;
        let text = corpus::render(
            &self.pair,
            &out,
            &self.program,
            RenderOpts {
                hits: Some(self.hits()),
                runs: Some(&self.runs),
                expect_oracle: self.kind == Kind::Oracle,
                report: true,
                note: None,
            },
        );
        Some((text, rec))
    }
}

fn report_of(out: &Outcome, kind: Kind) -> Option<&Report> {
    match kind {
        Kind::Divergence => out.divergence.as_ref(),
        Kind::Oracle => out.violation.as_ref(),
    }
}

fn record_of(
    pair: &Pair,
    out: &Outcome,
    program: &Program,
    kind: Kind,
    path: &Path,
    runs: &Runs,
) -> Option<FindingRecord> {
    let r = report_of(out, kind)?;
    let sig = &r.finding.signature;
    let cause = cause_of(sig);
    Some(FindingRecord {
        signature: sig.slug(),
        title: r.finding.title.clone(),
        kind,
        verdict: sig.verdict.to_string(),
        harmful: cause.harmful(),
        cause,
        variants: pair.names(),
        kernel: pair.a.kernel.name().into(),
        file: path.display().to_string(),
        first_step: r.finding.step + 1,
        first_op: r.op.clone(),
        pages: r.pages.clone(),
        program: program.to_string(),
        ops: program.ops.len(),
        hits: runs.values().sum(),
        runs: runs.clone(),
    })
}

/// The kind of finding a bucket name (signature slug) stands for.
fn kind_of_name(name: &str) -> Option<Kind> {
    if name.starts_with("oracle.") {
        Some(Kind::Oracle)
    } else if name.starts_with("W.") || name.starts_with("entry.") {
        Some(Kind::Divergence)
    } else {
        None
    }
}

/// Read one bucket file.
pub fn load_bucket(path: &Path) -> Result<(Bucket, FindingRecord), FileError> {
    let ferr = |msg: String| FileError { path: path.into(), line: 0, col: 0, msg };
    let bytes = std::fs::read(path).map_err(|e| ferr(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ferr(format!("not UTF-8 text (byte {}); raw libFuzzer inputs need `ptediff fmt`", e.valid_up_to()))
    })?;
    let r = corpus::parse_reproducer(text).map_err(|e| FileError {
        path: path.into(),
        line: e.line,
        col: e.col,
        msg: e.msg,
    })?;
    let out = check(&r.program, &r.pair);
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let kind = kind_of_name(&name).unwrap_or(
        if r.expect_oracle.as_ref().is_some_and(|o| o.is_some()) && out.divergence.is_none() {
            Kind::Oracle
        } else {
            Kind::Divergence
        },
    );
    let runs = if r.runs.is_empty() { Runs::from([(legacy_run_id(&bytes), r.hits.max(1))]) } else { r.runs.clone() };
    let Some(rec) = record_of(&r.pair, &out, &r.program, kind, path, &runs) else {
        let what = if kind == Kind::Oracle { "an oracle violation" } else { "a divergence" };
        return Err(ferr(format!(
            "its program no longer shows {what} (did the model change since it was found?); left as it is"
        )));
    };
    Ok((Bucket { pair: r.pair, kind, program: r.program, runs }, rec))
}

/// Identity of a file version: an atomic rename gives the new version a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp { len: md.len(), mtime: md.modified().ok(), ino: md.ino() }
    }
}

type Loaded = Result<(Bucket, FindingRecord), FileError>;

/// The `.ptd` files of a folder, each parsed once per version.
struct Folder {
    dir: PathBuf,
    /// By bucket name (file stem).
    files: BTreeMap<String, (Stamp, Loaded)>,
}

impl Folder {
    /// Re-read the folder listing; parse new and changed files.
    fn refresh(&mut self) -> io::Result<()> {
        let mut seen = HashSet::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let path = e.path();
            if path.extension().is_none_or(|x| x != "ptd") {
                continue;
            }
            let md = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                // Removed between the listing and now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let stamp = Stamp::of(&md);
            seen.insert(name.clone());
            if self.files.get(&name).is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            self.files.insert(name, (stamp, load_bucket(&path)));
        }
        self.files.retain(|k, _| seen.contains(k));
        Ok(())
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ptd"))
    }

    fn bucket(&self, name: &str) -> Option<&Bucket> {
        match self.files.get(name) {
            Some((_, Ok((b, _)))) => Some(b),
            _ => None,
        }
    }

    fn records(&self) -> BTreeMap<String, FindingRecord> {
        self.files.iter().filter_map(|(k, (_, l))| l.as_ref().ok().map(|(_, r)| (k.clone(), r.clone()))).collect()
    }

    fn unreadable(&self) -> Vec<FileError> {
        self.files.values().filter_map(|(_, l)| l.as_ref().err().cloned()).collect()
    }

    fn buckets(&self) -> BTreeMap<String, Bucket> {
        self.files.iter().filter_map(|(k, (_, l))| l.as_ref().ok().map(|(b, _)| (k.clone(), b.clone()))).collect()
    }
}

/// Harmful divergences, then oracle violations, then benign divergences; then by hits.
pub fn sorted(records: &BTreeMap<String, FindingRecord>) -> Vec<&FindingRecord> {
    let mut v: Vec<&FindingRecord> = records.values().collect();
    let rank = |r: &FindingRecord| match (r.kind, r.harmful) {
        (Kind::Divergence, true) => 0,
        (Kind::Oracle, _) => 1,
        (Kind::Divergence, false) => 2,
    };
    v.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.hits.cmp(&a.hits)).then(a.signature.cmp(&b.signature)));
    v
}

/// The findings of one root cause.
pub struct CauseGroup<'a> {
    pub cause: &'a Cause,
    /// Harmful and oracle findings first, then by hits (as [`sorted`]).
    pub findings: Vec<&'a FindingRecord>,
    pub hits: u64,
}

impl CauseGroup<'_> {
    /// The shortest reproducer (fewest ops, then name).
    pub fn shortest(&self) -> &FindingRecord {
        self.findings.iter().min_by(|a, b| a.ops.cmp(&b.ops).then(a.signature.cmp(&b.signature))).unwrap()
    }
}

/// Findings grouped by root cause: harmful causes first, then by hits.
pub fn by_cause(records: &BTreeMap<String, FindingRecord>) -> Vec<CauseGroup<'_>> {
    let mut groups: BTreeMap<Cause, CauseGroup<'_>> = BTreeMap::new();
    for r in sorted(records) {
        let g = groups.entry(r.cause).or_insert(CauseGroup { cause: &r.cause, findings: Vec::new(), hits: 0 });
        g.findings.push(r);
        g.hits += r.hits;
    }
    let mut v: Vec<CauseGroup<'_>> = groups.into_values().collect();
    v.sort_by(|a, b| {
        b.cause
            .harmful()
            .cmp(&a.cause.harmful())
            .then(b.hits.cmp(&a.hits))
            .then(a.cause.to_string().cmp(&b.cause.to_string()))
    });
    v
}

/// A findings folder as read, without writing or locking anything.
pub struct Snapshot {
    pub dir: PathBuf,
    /// By bucket name (file stem).
    pub records: BTreeMap<String, FindingRecord>,
    /// The same buckets in mergeable form.
    pub buckets: BTreeMap<String, Bucket>,
    /// `.ptd` files that could not be read or no longer show their finding.
    pub unreadable: Vec<FileError>,
}

impl Snapshot {
    /// Records, harmful first (see [`sorted`]).
    pub fn sorted(&self) -> Vec<&FindingRecord> {
        sorted(&self.records)
    }
}

/// Load the records of a findings folder (read-only: `triage`, `merge` inputs).
pub fn load(dir: &Path) -> io::Result<Snapshot> {
    let mut f = Folder { dir: dir.to_path_buf(), files: BTreeMap::new() };
    f.refresh()?;
    Ok(Snapshot { dir: dir.to_path_buf(), records: f.records(), buckets: f.buckets(), unreadable: f.unreadable() })
}

/// What this writer has to add to one bucket at the next commit.
#[derive(Debug)]
struct Pending {
    kind: Kind,
    /// The best program offered (None: only hits, for a bucket someone else writes).
    best: Option<(Pair, Program)>,
    /// This run's count (cumulative) and any runs absorbed from other folders.
    runs: Runs,
    dirty: bool,
}

/// One hit of a finding, as [`FindingsDb::hit`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The bucket (signature slug).
    pub bucket: String,
    /// The bucket was not in the folder at the last commit.
    pub new: bool,
    /// New, or a better program than the folder's: commit soon, it is a finding.
    pub urgent: bool,
}

/// What a commit wrote.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// Buckets this commit created (no file of that name existed).
    pub created: Vec<String>,
    /// Files written.
    pub written: usize,
}

/// A findings folder opened for writing by one run (one run id).
pub struct FindingsDb {
    pub dir: PathBuf,
    /// This writer's run id.
    pub run: String,
    /// The folder's records as of the last commit (every writer's), by bucket.
    pub records: BTreeMap<String, FindingRecord>,
    /// Files in the folder that could not be read (reported, left alone).
    pub unreadable: Vec<FileError>,
    folder: Folder,
    pending: BTreeMap<String, Pending>,
    lock: File,
}

/// Temporary files of killed writers older than this are removed.
const STALE_TMP: Duration = Duration::from_secs(600);

impl FindingsDb {
    /// Open (or create) a findings folder for a `ptediff fuzz` run with a new run id.
    pub fn open(dir: &Path) -> io::Result<FindingsDb> {
        FindingsDb::open_as(dir, &new_run_id("fuzz"))
    }

    /// Open (or create) a findings folder, writing as run `run`. Loads what is
    /// there, removes temporary files a killed writer left, and brings
    /// `findings.json` up to date with the files.
    pub fn open_as(dir: &Path, run: &str) -> io::Result<FindingsDb> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(named)?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lock_path.display())))?;
        let mut db = FindingsDb {
            dir: dir.to_path_buf(),
            run: run.to_string(),
            records: BTreeMap::new(),
            unreadable: Vec::new(),
            folder: Folder { dir: dir.to_path_buf(), files: BTreeMap::new() },
            pending: BTreeMap::new(),
            lock,
        };
        db.locked(|db| {
            db.remove_stale_tmp();
            db.folder.refresh()?;
            db.update_views();
            db.write_json()
        })
        .map_err(named)?;
        Ok(db)
    }

    /// Run `f` holding the folder lock.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        self.lock
            .lock()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot lock {}/.lock: {e}", self.dir.display())))?;
        let r = f(self);
        let _ = self.lock.unlock();
        r
    }

    fn remove_stale_tmp(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(corpus::TMP_PREFIX) || !name.ends_with(".tmp") {
                continue;
            }
            let old = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if old.is_some_and(|age| age > STALE_TMP) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn update_views(&mut self) {
        self.records = self.folder.records();
        self.unreadable = self.folder.unreadable();
    }

    /// Rewrite `findings.json` from the records, if it differs.
    fn write_json(&self) -> io::Result<()> {
        let v: Vec<&FindingRecord> = self.records.values().collect();
        let json = serde_json::to_vec_pretty(&v).map_err(io::Error::other)?;
        let path = self.dir.join("findings.json");
        if std::fs::read(&path).is_ok_and(|old| old == json) {
            return Ok(());
        }
        corpus::write_atomic(&path, &json)
    }

    fn pending(&mut self, bucket: &str, kind: Kind) -> &mut Pending {
        self.pending.entry(bucket.to_string()).or_insert_with(|| Pending {
            kind,
            best: None,
            runs: Runs::new(),
            dirty: false,
        })
    }

    /// Record `n` hits of `program`'s finding of `kind` under `pair` (nothing if it
    /// has none). The program is kept if it is better than the folder's. Written
    /// at the next [`commit`](Self::commit).
    pub fn hit(&mut self, pair: &Pair, program: &Program, kind: Kind, n: u64) -> Option<Hit> {
        let out = check(program, pair);
        let bucket = report_of(&out, kind)?.finding.signature.slug();
        let on_disk = self.folder.bucket(&bucket).map(|b| program_key(&b.pair, &b.program));
        let run = self.run.clone();
        let p = self.pending(&bucket, kind);
        let better_than_pending =
            p.best.as_ref().is_none_or(|(bp, bprog)| program_key(pair, program) < program_key(bp, bprog));
        if better_than_pending {
            p.best = Some((*pair, program.clone()));
        }
        *p.runs.entry(run).or_insert(0) += n;
        p.dirty = true;
        let new = on_disk.is_none();
        let urgent = better_than_pending && on_disk.is_none_or(|k| program_key(pair, program) < k);
        Some(Hit { bucket, new, urgent })
    }

    /// Record `n` more hits of a bucket (a signature slug) without a program.
    pub fn count(&mut self, bucket: &str, n: u64) {
        let kind = kind_of_name(bucket).unwrap_or(Kind::Divergence);
        let run = self.run.clone();
        let p = self.pending(bucket, kind);
        *p.runs.entry(run).or_insert(0) += n;
        p.dirty = true;
    }

    /// Merge a bucket from another folder (its program and all its runs' counts).
    pub fn absorb(&mut self, name: &str, b: &Bucket) {
        let p = self.pending(name, b.kind);
        let better =
            p.best.as_ref().is_none_or(|(bp, bprog)| program_key(&b.pair, &b.program) < program_key(bp, bprog));
        if better {
            p.best = Some((b.pair, b.program.clone()));
        }
        for (id, &n) in &b.runs {
            let e = p.runs.entry(id.clone()).or_insert(0);
            *e = n.max(*e);
        }
        p.dirty = true;
    }

    /// Is anything waiting for a commit?
    pub fn dirty(&self) -> bool {
        self.pending.values().any(|p| p.dirty)
    }

    /// This run's hits so far, over all buckets.
    pub fn run_hits(&self) -> u64 {
        self.pending.values().filter_map(|p| p.runs.get(&self.run)).sum()
    }

    /// Hits waiting for a bucket no writer has created yet.
    pub fn unrecorded_hits(&self) -> u64 {
        self.pending
            .iter()
            .filter(|(k, p)| p.dirty && p.best.is_none() && self.folder.bucket(k).is_none())
            .filter_map(|(_, p)| p.runs.get(&self.run))
            .sum()
    }

    /// Write what is pending: under the folder lock, re-read the folder, merge
    /// each changed bucket with its file, write the files that change
    /// atomically, and rewrite `findings.json` from the files.
    pub fn commit(&mut self) -> io::Result<Commit> {
        if !self.dirty() {
            return Ok(Commit::default());
        }
        self.locked(|db| db.commit_locked())
    }

    fn commit_locked(&mut self) -> io::Result<Commit> {
        self.folder.refresh()?;
        let mut c = Commit::default();
        let mut first_err: Option<io::Error> = None;
        let dirty: Vec<String> = self.pending.iter().filter(|(_, p)| p.dirty).map(|(k, _)| k.clone()).collect();
        for name in dirty {
            let path = self.folder.path_of(&name);
            let p = &self.pending[&name];
            let cur = self.folder.files.get(&name).map(|(_, l)| l);
            let (mut b, existed) = match cur {
                Some(Ok((b, _))) => (b.clone(), true),
                Some(Err(e)) => {
                    first_err.get_or_insert_with(|| {
                        io::Error::other(format!("cannot record finding {name}: {e} (the file is left as it is)"))
                    });
                    continue;
                }
                None => match &p.best {
                    Some((pair, prog)) => {
                        (Bucket { pair: *pair, kind: p.kind, program: prog.clone(), runs: Runs::new() }, false)
                    }
                    // Hits of a bucket nobody has written yet: keep them pending.
                    None => continue,
                },
            };
            let before = b.clone();
            if let Some((pair, prog)) = &p.best {
                b.offer(pair, prog);
            }
            b.absorb_runs(&p.runs);
            if existed && b == before {
                self.pending.get_mut(&name).expect("pending").dirty = false;
                continue;
            }
            let Some((text, rec)) = b.render(&path) else {
                first_err.get_or_insert_with(|| {
                    io::Error::other(format!("{}: the program no longer shows its finding", path.display()))
                });
                continue;
            };
            if let Err(e) = corpus::write_atomic(&path, text.as_bytes()) {
                first_err.get_or_insert_with(|| io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                continue;
            }
            let md =
                std::fs::metadata(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            self.folder.files.insert(name.clone(), (Stamp::of(&md), Ok((b, rec))));
            if !existed {
                c.created.push(name.clone());
            }
            c.written += 1;
            self.pending.get_mut(&name).expect("pending").dirty = false;
        }
        self.update_views();
        self.write_json()?;
        // Make the renames durable too.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(c),
        }
    }

    /// Record `hits` hits of a finding and commit at once. Returns true if this
    /// created its bucket (a new signature for the folder).
    pub fn add(&mut self, pair: &Pair, program: &Program, kind: Kind, hits: u64) -> io::Result<bool> {
        let Some(h) = self.hit(pair, program, kind, hits) else {
            return Ok(false);
        };
        let c = self.commit()?;
        Ok(c.created.contains(&h.bucket))
    }

    /// Records, harmful first (see [`sorted`]).
    pub fn sorted(&self) -> Vec<&FindingRecord> {
        sorted(&self.records)
    }

    /// The better program the folder holds for a bucket, and its length.
    pub fn best_ops(&self, bucket: &str) -> Option<usize> {
        self.folder.bucket(bucket).map(|b| b.program.ops.len())
    }
}

/// Bucket names with their best program length, for engines that skip known
/// findings (the libFuzzer target).
pub fn known_lengths(db: &FindingsDb) -> HashMap<String, usize> {
    db.folder
        .files
        .iter()
        .filter_map(|(k, (_, l))| l.as_ref().ok().map(|(b, _)| (k.clone(), b.program.ops.len())))
        .collect()
}
