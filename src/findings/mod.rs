//! The findings database: one folder that any number of writers share (the
//! workers of `ptediff fuzz`, several `fuzz` processes, libFuzzer runs of the
//! `differential` target, `ptediff merge`), on one machine or copied between
//! machines.
//!
//! - `<cause>-<hash>.ptd`, one per signature ([`file_stem`]: the root cause and
//!   a short hash of the signature, at most 80 characters; the full signature is
//!   in the file's `# finding:` header): the shortest program seen (ties: the
//!   smaller program text, then the variant names), its expectations, and its
//!   hits **per run**. Folders written before these names (files named by the
//!   whole signature) stay readable; a commit that rewrites such a bucket moves
//!   it to its new name, and `ptediff merge` rewrites every bucket it takes. Every writer process
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

use crate::check::{check, Kind, Outcome, PageDiff, Pair, Report, Signature};
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
    pub signature: Signature,
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
    /// The finding the bucket stands for (what its program shows).
    pub signature: Signature,
    pub pair: Pair,
    pub program: Program,
    pub runs: Runs,
}

/// Longest file name of a bucket (with `.ptd`).
pub const MAX_FILE_NAME: usize = 80;

/// The file stem of a signature's bucket: its root cause (as much as fits) and
/// 12 hex digits of a hash of the whole signature, e.g.
/// `hole.clear-refs-3f2a9c1e5b7d` (stable on every machine and build).
pub fn file_stem(sig: &Signature) -> String {
    let hash = format!("{:012x}", fnv64(sig.to_string().as_bytes()) >> 16);
    let room = MAX_FILE_NAME - ".ptd".len() - 1 - hash.len();
    let cause: String = Cause::of(sig).to_string().chars().take(room).collect();
    format!("{cause}-{hash}")
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
        let kind = self.signature.kind();
        let out = check(&self.program, &self.pair);
        let rec = record_of(&self.pair, &out, &self.program, kind, path, &self.runs)?;
        let text = corpus::render(
            &self.pair,
            &out,
            &self.program,
            RenderOpts {
                hits: Some(self.hits()),
                runs: Some(&self.runs),
                expect_oracle: kind == Kind::Oracle,
                report: true,
                note: None,
                finding: Some(rec.signature),
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
        signature: *sig,
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

/// The kind of finding a bucket file stands for: its `# finding:` header, or
/// (files written before it) its name when that is a signature.
fn kind_of_file(text: &str, name: &str) -> Option<Kind> {
    let header =
        text.lines().find_map(|l| l.strip_prefix("# finding:")).and_then(|v| v.trim().parse::<Signature>().ok());
    header.or_else(|| name.parse::<Signature>().ok()).map(|s| s.kind())
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
    let kind = kind_of_file(text, &name).unwrap_or(
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
    Ok((Bucket { signature: rec.signature, pair: r.pair, program: r.program, runs }, rec))
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

    /// The files holding `sig`'s bucket (more than one only in a folder where
    /// an old-named file and a new one meet).
    fn stems_of(&self, sig: &Signature) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, (_, l))| l.as_ref().is_ok_and(|(b, _)| b.signature == *sig))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// `sig`'s bucket (its files merged).
    fn bucket(&self, sig: &Signature) -> Option<Bucket> {
        let mut out: Option<Bucket> = None;
        for (_, (_, l)) in self.files.iter() {
            if let Ok((b, _)) = l {
                if b.signature == *sig {
                    match &mut out {
                        Some(o) => o.merge(b),
                        None => out = Some(b.clone()),
                    }
                }
            }
        }
        out
    }

    /// One record per signature (files of one signature merged).
    fn records(&self) -> BTreeMap<Signature, FindingRecord> {
        let mut out: BTreeMap<Signature, FindingRecord> = BTreeMap::new();
        let mut dup = Vec::new();
        for (_, (_, l)) in self.files.iter() {
            if let Ok((b, r)) = l {
                if out.insert(b.signature, r.clone()).is_some() {
                    dup.push(b.signature);
                }
            }
        }
        for sig in dup {
            if let Some(b) = self.bucket(&sig) {
                let path = self.path_of(&file_stem(&sig));
                if let Some((_, rec)) = b.render(&path) {
                    out.insert(sig, rec);
                }
            }
        }
        out
    }

    fn unreadable(&self) -> Vec<FileError> {
        self.files.values().filter_map(|(_, l)| l.as_ref().err().cloned()).collect()
    }

    fn buckets(&self) -> BTreeMap<Signature, Bucket> {
        let sigs: std::collections::BTreeSet<Signature> =
            self.files.values().filter_map(|(_, l)| l.as_ref().ok().map(|(b, _)| b.signature)).collect();
        sigs.into_iter().filter_map(|s| self.bucket(&s).map(|b| (s, b))).collect()
    }
}

/// Harmful divergences, then oracle violations, then benign divergences; then by hits.
pub fn sorted(records: &BTreeMap<Signature, FindingRecord>) -> Vec<&FindingRecord> {
    let mut v: Vec<&FindingRecord> = records.values().collect();
    let rank = |r: &FindingRecord| match (r.kind, r.harmful) {
        (Kind::Divergence, true) => 0,
        (Kind::Oracle, _) => 1,
        (Kind::Divergence, false) => 2,
    };
    v.sort_by_cached_key(|r| (rank(r), std::cmp::Reverse(r.hits), r.signature.to_string()));
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
        self.findings.iter().min_by_key(|r| (r.ops, r.signature.to_string())).unwrap()
    }
}

/// Findings grouped by root cause: harmful causes first, then by hits.
pub fn by_cause(records: &BTreeMap<Signature, FindingRecord>) -> Vec<CauseGroup<'_>> {
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
    /// By signature.
    pub records: BTreeMap<Signature, FindingRecord>,
    /// The same buckets in mergeable form.
    pub buckets: BTreeMap<Signature, Bucket>,
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
    /// The best program offered (None: only hits, for a bucket someone else writes).
    best: Option<(Pair, Program)>,
    /// This run's count (cumulative) and any runs absorbed from other folders.
    runs: Runs,
    dirty: bool,
}

/// One hit of a finding, as [`FindingsDb::hit`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The bucket's signature.
    pub bucket: Signature,
    /// The bucket was not in the folder at the last commit.
    pub new: bool,
    /// New, or a better program than the folder's: commit soon, it is a finding.
    pub urgent: bool,
}

/// What a commit wrote.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// Buckets this commit created (the folder had no file of that signature).
    pub created: Vec<Signature>,
    /// Files written.
    pub written: usize,
}

/// A findings folder opened for writing by one run (one run id).
pub struct FindingsDb {
    pub dir: PathBuf,
    /// This writer's run id.
    pub run: String,
    /// The folder's records as of the last commit (every writer's), by signature.
    pub records: BTreeMap<Signature, FindingRecord>,
    /// Files in the folder that could not be read (reported, left alone).
    pub unreadable: Vec<FileError>,
    folder: Folder,
    pending: BTreeMap<Signature, Pending>,
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

    fn pending(&mut self, bucket: Signature) -> &mut Pending {
        self.pending.entry(bucket).or_insert_with(|| Pending { best: None, runs: Runs::new(), dirty: false })
    }

    /// Record `n` hits of `program`'s finding of `kind` under `pair` (nothing if it
    /// has none). The program is kept if it is better than the folder's. Written
    /// at the next [`commit`](Self::commit).
    pub fn hit(&mut self, pair: &Pair, program: &Program, kind: Kind, n: u64) -> Option<Hit> {
        let out = check(program, pair);
        let bucket = report_of(&out, kind)?.finding.signature;
        let on_disk = self.folder.bucket(&bucket).map(|b| program_key(&b.pair, &b.program));
        let run = self.run.clone();
        let p = self.pending(bucket);
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

    /// Record `n` more hits of a bucket (a signature) without a program.
    pub fn count(&mut self, bucket: &Signature, n: u64) {
        let run = self.run.clone();
        let p = self.pending(*bucket);
        *p.runs.entry(run).or_insert(0) += n;
        p.dirty = true;
    }

    /// Merge a bucket from another folder (its program and all its runs' counts).
    pub fn absorb(&mut self, b: &Bucket) {
        let p = self.pending(b.signature);
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
            .filter(|(k, p)| p.dirty && p.best.is_none() && self.folder.stems_of(k).is_empty())
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
        let dirty: Vec<Signature> = self.pending.iter().filter(|(_, p)| p.dirty).map(|(k, _)| *k).collect();
        for sig in dirty {
            let stems = self.folder.stems_of(&sig);
            let name = file_stem(&sig);
            let path = self.folder.path_of(&name);
            let p = &self.pending[&sig];
            // A file of this signature that cannot be read is left alone (and so
            // is this bucket): its hits stay pending.
            let broken = self.folder.files.get(&name).and_then(|(_, l)| l.as_ref().err());
            if let Some(e) = broken {
                first_err.get_or_insert_with(|| {
                    io::Error::other(format!("cannot record finding {sig}: {e} (the file is left as it is)"))
                });
                continue;
            }
            let existed = !stems.is_empty();
            let (mut b, before) = match self.folder.bucket(&sig) {
                Some(b) => (b.clone(), Some(b)),
                None => match &p.best {
                    Some((pair, prog)) => {
                        (Bucket { signature: sig, pair: *pair, program: prog.clone(), runs: Runs::new() }, None)
                    }
                    // Hits of a bucket nobody has written yet: keep them pending.
                    None => continue,
                },
            };
            if let Some((pair, prog)) = &p.best {
                b.offer(pair, prog);
            }
            b.absorb_runs(&p.runs);
            let renamed = stems.iter().any(|s| *s != name);
            if before.as_ref() == Some(&b) && !renamed {
                self.pending.get_mut(&sig).expect("pending").dirty = false;
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
            // Files of the old names: the bucket now lives under its new name.
            for old in stems.iter().filter(|s| **s != name) {
                let _ = std::fs::remove_file(self.folder.path_of(old));
                self.folder.files.remove(old);
            }
            self.folder.files.insert(name.clone(), (Stamp::of(&md), Ok((b, rec))));
            if !existed {
                c.created.push(sig);
            }
            c.written += 1;
            self.pending.get_mut(&sig).expect("pending").dirty = false;
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

    /// The length of the best program the folder holds for a signature.
    pub fn best_ops(&self, bucket: &Signature) -> Option<usize> {
        self.folder.bucket(bucket).map(|b| b.program.ops.len())
    }

    /// The file of a signature's bucket.
    pub fn path_of(&self, sig: &Signature) -> PathBuf {
        self.folder.path_of(&file_stem(sig))
    }
}

/// Signatures with their best program length, for engines that skip known
/// findings (the libFuzzer target).
pub fn known_lengths(db: &FindingsDb) -> HashMap<Signature, usize> {
    db.records.iter().map(|(s, r)| (*s, r.ops)).collect()
}
