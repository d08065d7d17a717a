//! The findings database with many writers: per-run hit counters, the folder
//! lock, `findings.json` derived from the files, `ptediff merge` (idempotent),
//! concurrent `fuzz` processes, SIGKILL and Ctrl-C, the workers of `fuzz --jobs`
//! and the libFuzzer target's side (without cargo-fuzz; tests/cargo_fuzz.rs runs
//! the real thing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ptediff::check::{analyze, Kind, Pair};
use ptediff::corpus::{self, RenderOpts};
use ptediff::findings::{self, FindingsDb};
use ptediff::fuzz::{self, Options};
use ptediff::search::libfuzzer::{PanicOn, Target};
use ptediff::text::parse;
use ptediff::Program;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    root().join("corpus")
}

fn load(name: &str) -> corpus::Reproducer {
    corpus::load(&corpus_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ptediff"))
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Benign, in the corpus.
const SOFTDIRTY: &str = "thread-softdirty-merge-migrate.ptd";
/// Harmful, in the corpus.
const STALE_PROT: &str = "vm-page-prot-stale-prot-after-munlock-merge.ptd";

fn softdirty() -> (Pair, Program) {
    let r = load(SOFTDIRTY);
    (r.pair, r.program)
}

/// The same finding with one more (failing) op.
fn longer(p: &Program) -> Program {
    parse(&format!("{p}read(p2, 0)\n")).unwrap()
}

fn ptd_names(dir: &Path) -> BTreeSet<String> {
    corpus::collect_files(&[dir.to_path_buf()])
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Every `.ptd` file's runs (an old `# hits: N` file: its legacy run), by bucket.
fn file_runs(dir: &Path) -> BTreeMap<String, BTreeMap<String, u64>> {
    corpus::collect_files(&[dir.to_path_buf()])
        .iter()
        .map(|p| {
            let (b, _) = findings::load_bucket(p).unwrap_or_else(|e| panic!("{e}"));
            (p.file_stem().unwrap().to_string_lossy().into_owned(), b.runs)
        })
        .collect()
}

/// findings.json lists exactly the `.ptd` files present, with their hits.
fn assert_consistent(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("findings.json")).expect("findings.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("findings.json parses");
    let mut listed = BTreeMap::new();
    for r in json.as_array().expect("array") {
        let file = PathBuf::from(r["file"].as_str().unwrap());
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let runs: BTreeMap<String, u64> = serde_json::from_value(r["runs"].clone()).unwrap();
        assert_eq!(r["hits"].as_u64().unwrap(), runs.values().sum::<u64>(), "{name}");
        listed.insert(name, runs);
    }
    let files = file_runs(dir);
    assert_eq!(listed.keys().collect::<Vec<_>>(), files.keys().collect::<Vec<_>>(), "findings.json vs the files");
    assert_eq!(listed, files, "hits in findings.json vs the files");
}

/// The `run ID: N hits recorded` line of a `fuzz` run.
fn run_line(o: &Output) -> (String, u64) {
    let out = String::from_utf8_lossy(&o.stdout);
    let l = out
        .lines()
        .find(|l| l.starts_with("run ") && l.ends_with(" hits recorded"))
        .unwrap_or_else(|| panic!("{}", show(o)));
    let (id, n) = l["run ".len()..].split_once(": ").unwrap();
    (id.to_string(), n.trim_end_matches(" hits recorded").parse().unwrap())
}

/// A run's hits over every file of the folder.
fn hits_of_run(dir: &Path, run: &str) -> u64 {
    file_runs(dir).values().filter_map(|r| r.get(run)).sum()
}

// ---------------------------------------------------------------------------
// The database API
// ---------------------------------------------------------------------------

#[test]
fn two_writers_counts_add_up_and_the_shorter_program_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, short) = softdirty();
    let long = longer(&short);
    let mut a = FindingsDb::open_as(dir.path(), "run-a").unwrap();
    let mut b = FindingsDb::open_as(dir.path(), "run-b").unwrap();
    // Both see an empty folder; a writes the long program first.
    let ha = a.hit(&pair, &long, Kind::Divergence, 3).unwrap();
    assert!(ha.new && ha.urgent);
    a.commit().unwrap();
    // b has not seen a's file: its commit must merge with it, not replace it.
    let hb = b.hit(&pair, &short, Kind::Divergence, 2).unwrap();
    assert!(hb.urgent);
    let c = b.commit().unwrap();
    assert!(c.created.is_empty(), "a created the bucket");
    a.count(&ha.bucket, 4);
    a.commit().unwrap();
    let snap = findings::load(dir.path()).unwrap();
    assert_eq!(snap.records.len(), 1);
    let rec = snap.records.values().next().unwrap();
    assert_eq!(rec.runs, BTreeMap::from([("run-a".to_string(), 7), ("run-b".to_string(), 2)]));
    assert_eq!(rec.hits, 9);
    assert_eq!(rec.program, short.to_string(), "the shorter program is kept");
    let text = std::fs::read_to_string(a.path_of(&ha.bucket)).unwrap();
    assert!(text.contains("# hits: 9\n"), "{text}");
    assert!(text.contains("# hits from run run-a: 7\n"), "{text}");
    assert_consistent(dir.path());
    assert_eq!(a.run_hits(), 7);
    assert_eq!(b.run_hits(), 2);
}

#[test]
fn a_finding_is_committed_as_soon_as_it_is_known_and_hits_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    let mut db = FindingsDb::open_as(dir.path(), "r").unwrap();
    let h = db.hit(&pair, &p, Kind::Divergence, 1).unwrap();
    db.commit().unwrap();
    // A known program again is not urgent; a count is pending until the commit.
    let again = db.hit(&pair, &longer(&p), Kind::Divergence, 1).unwrap();
    assert!(!again.new && !again.urgent);
    db.count(&h.bucket, 5);
    assert!(db.dirty());
    assert_eq!(findings::load(dir.path()).unwrap().records[&h.bucket].hits, 1);
    db.commit().unwrap();
    assert!(!db.dirty());
    assert_eq!(findings::load(dir.path()).unwrap().records[&h.bucket].hits, 7);
    // No finding, no hit.
    let none = parse("mmap(p0, 0, 1, rw-, anon)\n").unwrap();
    assert!(db.hit(&pair, &none, Kind::Divergence, 1).is_none());
}

#[test]
fn hits_of_a_bucket_nobody_wrote_stay_pending_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = FindingsDb::open_as(dir.path(), "r").unwrap();
    let nowhere: ptediff::check::Signature =
        "W.vm-page-prot-rw.by-do_wp_page.ro-clear_refs_write.memfd-shared.prot-mmap_region.sd-mmap_region.benign"
            .parse()
            .unwrap();
    db.count(&nowhere, 3);
    let c = db.commit().unwrap();
    assert_eq!(c.written, 0);
    assert_eq!(db.unrecorded_hits(), 3);
    assert!(ptd_names(dir.path()).is_empty());
}

#[test]
fn stale_findings_json_is_rebuilt_from_the_files_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    FindingsDb::open(dir.path()).unwrap().add(&pair, &p, Kind::Divergence, 2).unwrap();
    // As if a writer died between writing a file and findings.json, and another
    // file was copied in by hand.
    std::fs::write(dir.path().join("findings.json"), "[]").unwrap();
    let h = load(STALE_PROT);
    let text = corpus::render(
        &h.pair,
        &ptediff::check(&h.program, &h.pair),
        &h.program,
        RenderOpts { hits: Some(4), ..Default::default() },
    );
    let sig = ptediff::check::signature_of(&h.program, &h.pair).unwrap();
    std::fs::write(dir.path().join(format!("{sig}.ptd")), text).unwrap();
    let db = FindingsDb::open(dir.path()).unwrap();
    assert_eq!(db.records.len(), 2);
    assert_consistent(dir.path());
    assert_eq!(db.records[&sig].hits, 4, "an old `# hits: N` file keeps its count");
}

#[test]
fn old_hits_files_stay_readable_and_convert_without_losing_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    let sig = ptediff::check::signature_of(&p, &pair).unwrap();
    let old = corpus::render(&pair, &ptediff::check(&p, &pair), &p, RenderOpts { hits: Some(5), ..Default::default() });
    assert!(!old.contains("hits from run"));
    // Named by its whole signature, as files were before the short names.
    let path = dir.path().join(format!("{sig}.ptd"));
    std::fs::write(&path, &old).unwrap();
    let r = corpus::load(&path).unwrap();
    assert_eq!(r.hits, 5);
    assert!(r.runs.is_empty());
    let mut db = FindingsDb::open_as(dir.path(), "new-run").unwrap();
    assert_eq!(db.records[&sig].hits, 5);
    db.add(&pair, &p, Kind::Divergence, 1).unwrap();
    // Rewritten under its short name; the old file is gone.
    assert!(!path.exists());
    let path = db.path_of(&sig);
    assert_eq!(path.file_name().unwrap().to_string_lossy(), format!("{}.ptd", findings::file_stem(&sig)));
    assert!(path.file_name().unwrap().len() <= findings::MAX_FILE_NAME);
    assert_eq!(ptd_names(dir.path()).len(), 1);
    let r = corpus::load(&path).unwrap();
    assert_eq!(r.hits, 6);
    assert_eq!(r.runs.len(), 2);
    assert_eq!(r.runs[&findings::legacy_run_id(old.as_bytes())], 5);
    assert_eq!(r.runs["new-run"], 1);
}

#[test]
fn unreadable_run_lines_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    let text = format!(
        "{}# hits from run bad id: 3\n",
        corpus::render(&pair, &ptediff::check(&p, &pair), &p, RenderOpts::default())
    );
    let f = dir.path().join("x.ptd");
    std::fs::write(&f, &text).unwrap();
    let e = corpus::load(&f).unwrap_err();
    assert!(e.line > 0 && e.to_string().contains("x.ptd:"), "{e}");
    let f2 = dir.path().join("y.ptd");
    std::fs::write(&f2, text.replace("bad id: 3", "ok: many")).unwrap();
    let e = corpus::load(&f2).unwrap_err();
    assert!(e.msg.contains("expected a count"), "{e}");
    // The folder still opens; both are reported and left alone.
    let db = FindingsDb::open(dir.path()).unwrap();
    assert_eq!(db.unreadable.len(), 2);
    assert!(db.records.is_empty());
}

// ---------------------------------------------------------------------------
// merge
// ---------------------------------------------------------------------------

fn merge(dirs: &[&Path], out: &Path) -> Output {
    let mut c = bin();
    c.arg("merge");
    for d in dirs {
        c.arg(d);
    }
    c.arg("--out").arg(out).output().unwrap()
}

/// Every file of a folder (name -> bytes), the lock file aside.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".lock")
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn merge_adds_runs_keeps_the_shorter_program_and_twice_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (t.path().join("a"), t.path().join("b"), t.path().join("c"), t.path().join("d"));
    let (pair, short) = softdirty();
    let h = load(STALE_PROT);
    {
        let mut x = FindingsDb::open_as(&a, "machine-a").unwrap();
        x.add(&pair, &longer(&short), Kind::Divergence, 2).unwrap();
        x.add(&h.pair, &h.program, Kind::Divergence, 1).unwrap();
        let mut y = FindingsDb::open_as(&b, "machine-b").unwrap();
        y.add(&pair, &short, Kind::Divergence, 3).unwrap();
    }
    // An old-format file, copied unchanged to both machines: counted once.
    let old_p = load("thread-memfd-uffd-wp-migrate.ptd");
    let old_sig = ptediff::check::signature_of(&old_p.program, &old_p.pair).unwrap();
    let old = corpus::render(
        &old_p.pair,
        &ptediff::check(&old_p.program, &old_p.pair),
        &old_p.program,
        RenderOpts { hits: Some(10), ..Default::default() },
    );
    for dir in [&a, &b] {
        std::fs::write(dir.join(format!("{old_sig}.ptd")), &old).unwrap();
    }
    let o = merge(&[&a, &b], &c);
    assert!(o.status.success(), "{}", show(&o));
    let snap = findings::load(&c).unwrap();
    assert_eq!(snap.records.len(), 3);
    let sd = &snap.records[&ptediff::check::signature_of(&short, &pair).unwrap()];
    assert_eq!(sd.hits, 5);
    assert_eq!(sd.program, short.to_string(), "the shorter program of the two machines");
    assert_eq!(snap.records[&old_sig].hits, 10, "the same old file on two machines counts once");
    // Merged buckets are written under their short names.
    assert!(
        ptd_names(&c).iter().all(|n| n.len() + 4 <= findings::MAX_FILE_NAME && !n.starts_with("W.")),
        "{:?}",
        ptd_names(&c)
    );
    assert_consistent(&c);
    let first = contents(&c);

    // Twice changes nothing, nor does merging the result with its inputs again.
    for dirs in [vec![&a, &b], vec![&b, &a], vec![&c, &a, &b], vec![&c]] {
        let o = merge(&dirs.iter().map(|p| p.as_path()).collect::<Vec<_>>(), &c);
        assert!(o.status.success(), "{}", show(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("0 new, 0 files written"), "{}", show(&o));
        assert_eq!(contents(&c), first, "merge changed the folder");
    }
    // The other order gives the same files.
    let o = merge(&[&b, &a], &d);
    assert!(o.status.success(), "{}", show(&o));
    let ptd = |m: BTreeMap<String, Vec<u8>>| m.into_iter().filter(|(k, _)| k.ends_with(".ptd")).collect::<Vec<_>>();
    assert_eq!(ptd(contents(&d)), ptd(first));
}

#[test]
fn merge_reports_unreadable_files_and_bad_folders() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let (pair, p) = softdirty();
    FindingsDb::open(&a).unwrap().add(&pair, &p, Kind::Divergence, 1).unwrap();
    std::fs::write(a.join("broken.ptd"), "mmap(p0, 0, 99, rw-, anon)\n").unwrap();
    let out = t.path().join("out");
    let o = merge(&[&a], &out);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.ptd:1:"), "{}", show(&o));
    assert_eq!(ptd_names(&out).len(), 1, "the readable finding is merged");
    let o = merge(&[&t.path().join("missing")], &out);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing: not a folder"), "{}", show(&o));
}

// ---------------------------------------------------------------------------
// Several processes, SIGKILL, Ctrl-C
// ---------------------------------------------------------------------------

#[test]
fn concurrent_fuzz_processes_keep_one_consistent_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings");
    let spawn = |seed: &str| {
        bin()
            .args(["fuzz", "--jobs", "1", "--seconds", "3", "--seed", seed, "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn("1"), spawn("2"));
    let (o1, o2) = (p1.wait_with_output().unwrap(), p2.wait_with_output().unwrap());
    assert!(o1.status.success(), "{}", show(&o1));
    assert!(o2.status.success(), "{}", show(&o2));
    assert!(ptd_names(&out).len() >= 5, "{}", show(&o1));
    assert_consistent(&out);
    // Every hit each process counted is in the folder, under its own run.
    let ((id1, n1), (id2, n2)) = (run_line(&o1), run_line(&o2));
    assert_ne!(id1, id2);
    assert!(n1 > 0 && n2 > 0);
    assert_eq!(hits_of_run(&out, &id1), n1, "{}", show(&o1));
    assert_eq!(hits_of_run(&out, &id2), n2, "{}", show(&o2));
}

#[test]
fn sigkill_at_random_moments_leaves_a_readable_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill moments from seed {seed}");
    let mut rng = seed;
    for i in 0..5 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(50 + (rng >> 33) % 1500);
        let mut child = bin()
            .args(["fuzz", "--jobs", "2", "--seconds", "60", "--seed", &i.to_string(), "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Readable: every finding file parses and replays its expectation, and
        // findings.json is whole (it may be one commit behind).
        for f in corpus::collect_files(std::slice::from_ref(&out)) {
            let r = corpus::load(&f).unwrap_or_else(|e| panic!("after a kill at {wait:?}: {e}"));
            let (v, _) = corpus::replay(&r);
            assert_ne!(v, corpus::Verdict::Pass, "{}", f.display());
        }
        if out.join("findings.json").exists() {
            let j: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("findings.json")).unwrap())
                .unwrap_or_else(|e| panic!("findings.json after a kill at {wait:?}: {e}"));
            assert!(j.is_array());
        }
    }
    assert!(!ptd_names(&out).is_empty(), "the killed runs recorded nothing");
    let o = bin().args(["fuzz", "--jobs", "2", "--programs", "2000", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert_consistent(&out);
}

#[test]
fn ctrl_c_stops_cleanly_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings");
    let start = Instant::now();
    let child = bin()
        .args(["fuzz", "--jobs", "2", "--seconds", "60", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sending SIGINT to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "did not stop on SIGINT");
    assert!(o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("programs in"), "{}", show(&o));
    let (id, n) = run_line(&o);
    assert_eq!(hits_of_run(&out, &id), n);
    assert_consistent(&out);
}

#[test]
fn fail_on_finding_exits_3_only_for_signatures_new_to_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        bin()
            .args(["fuzz", "--jobs", "1", "--seed", "7", "--programs", "20000", "--fail-on-finding", "--out"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    // The same seeded run again finds the same signatures: nothing new.
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(", 0 new;"), "{}", show(&o));
}

#[test]
fn fuzz_rejects_zero_jobs() {
    let o = bin().args(["fuzz", "--jobs", "0", "--programs", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--jobs"), "{}", show(&o));
}

// ---------------------------------------------------------------------------
// fuzz --jobs: the workers share
// ---------------------------------------------------------------------------

fn opts(programs: u64) -> Options {
    Options {
        pair: Pair::default(),
        seed: 11,
        max_ops: 32,
        time: Duration::from_secs(120),
        max_programs: Some(programs),
        fixed_len: false,
        oracle: false,
        realizable: false,
    }
}

#[test]
fn workers_share_pool_coverage_and_known_signatures_through_the_hub() {
    let o = opts(0);
    let hub = fuzz::Hub::default();
    let start = Instant::now();
    let mut w0 = fuzz::Worker::new(&o, 0, start);
    let mut w1 = fuzz::Worker::new(&o, 1, start);
    let mut events = 0;
    for _ in 0..20_000 {
        w0.one(&mut |_| events += 1);
    }
    assert!(events > 0 && w0.known() > 0 && w0.pool_len() > 0, "w0 found nothing to share");
    assert_eq!((w1.known(), w1.pool_len()), (0, 0));
    w0.sync(&hub);
    w1.sync(&hub);
    assert_eq!(w1.known(), w0.known(), "known signatures reach the other worker");
    assert_eq!(w1.pool_len(), w0.pool_len(), "pool entries reach the other worker");
    // Known signatures are only counted: no new-signature event for them.
    let mut firsts = Vec::new();
    for _ in 0..5_000 {
        w1.one(&mut |e| {
            if e.first {
                firsts.push(e.found.signature)
            }
        });
    }
    let hits: u64 = w1.take_hits().iter().map(|h| h.1).sum();
    assert!(hits > 0, "w1 hit none of the known signatures");
    assert!(firsts.len() < w0.known(), "w1 rediscovered what it was told");
}

#[test]
fn fuzz_jobs_splits_the_program_budget_and_reports_every_hit() {
    let o = opts(30_001);
    let stop = AtomicBool::new(false);
    let (mut found, mut hits) = (0u64, 0u64);
    let st = fuzz::fuzz_jobs(&o, 2, &stop, |m| match m {
        fuzz::Message::Found(_) => found += 1,
        fuzz::Message::Hits(h) => hits += h.iter().map(|x| x.1).sum::<u64>(),
        fuzz::Message::Progress(_) => {}
    });
    assert_eq!(st.programs, 30_001);
    assert!(found > 0 && hits > 0, "found {found}, hits {hits}");
}

// ---------------------------------------------------------------------------
// The libFuzzer target's side
// ---------------------------------------------------------------------------

#[test]
fn target_records_every_finding_and_minimizes_each_signature_once() {
    let t = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    let mut tg = Target::new(pair, t.path(), &corpus_dir(), PanicOn::None, false).unwrap();
    let raw = longer(&longer(&p));
    assert_eq!(tg.check(&raw).unwrap(), None);
    let names = ptd_names(t.path());
    assert_eq!(names.len(), 1);
    let f = t.path().join(format!("{}.ptd", names.iter().next().unwrap()));
    assert!(corpus::load(&f).unwrap().program.ops.len() <= p.ops.len(), "minimized");
    let version = |f: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(f).unwrap();
        (m.ino(), m.modified().unwrap())
    };
    let written = version(&f);
    for _ in 0..50 {
        assert_eq!(tg.check(&raw).unwrap(), None);
    }
    assert_eq!(version(&f), written, "a known finding rewrote its file");
    tg.db.commit().unwrap();
    assert_eq!(corpus::load(&f).unwrap().hits, 51);
    // A second process (a -fork job) knows it from the folder.
    let mut tg2 = Target::new(pair, t.path(), &corpus_dir(), PanicOn::None, false).unwrap();
    tg2.check(&raw).unwrap();
    tg2.db.commit().unwrap();
    assert_eq!(corpus::load(&f).unwrap().hits, 52);
    assert_consistent(t.path());
}

#[test]
fn target_panics_only_as_asked() {
    let empty = tempfile::tempdir().unwrap();
    let benign = softdirty();
    let h = load(STALE_PROT);
    let harmful = (h.pair, h.program);
    assert!(analyze(&harmful.1, &harmful.0, Kind::Divergence).unwrap().signature.harmful());
    let run = |on: PanicOn, corpus: &Path, (pair, p): &(Pair, Program)| {
        let t = tempfile::tempdir().unwrap();
        let mut tg = Target::new(*pair, t.path(), corpus, on, false).unwrap();
        [tg.check(p).unwrap().is_some(), tg.check(p).unwrap().is_some()]
    };
    // Without a corpus both are new.
    assert_eq!(run(PanicOn::None, empty.path(), &benign), [false, false]);
    assert_eq!(run(PanicOn::New, empty.path(), &benign), [true, false], "new once, then known");
    assert_eq!(run(PanicOn::Harmful, empty.path(), &benign), [false, false]);
    assert_eq!(run(PanicOn::Harmful, empty.path(), &harmful), [true, false]);
    assert_eq!(run(PanicOn::Any, empty.path(), &benign), [true, true]);
    // Signatures of the corpus never count as new.
    assert_eq!(run(PanicOn::New, &corpus_dir(), &benign), [false, false]);
    assert_eq!(run(PanicOn::Harmful, &corpus_dir(), &harmful), [false, false]);
    // A new root cause: once; a cause the corpus has (the merge hole), never.
    assert_eq!(run(PanicOn::NewCause, empty.path(), &harmful), [true, false]);
    assert_eq!(run(PanicOn::NewCause, &corpus_dir(), &harmful), [false, false]);
}

#[test]
fn target_records_oracle_violations_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let r = load("oracle-mprotect-uffd-wp-shmem.ptd");
    let mut tg = Target::new(r.pair, t.path(), &corpus_dir(), PanicOn::None, true).unwrap();
    tg.check(&r.program).unwrap();
    let snap = findings::load(t.path()).unwrap();
    assert!(snap.records.keys().any(|s| s.kind() == Kind::Oracle), "{:?}", ptd_names(t.path()));
    let t2 = tempfile::tempdir().unwrap();
    let mut off = Target::new(r.pair, t2.path(), &corpus_dir(), PanicOn::None, false).unwrap();
    off.check(&r.program).unwrap();
    assert!(ptd_names(t2.path()).is_empty());
}
