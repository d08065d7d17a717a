//! Corpus replay (every file must meet its `# expect:` header), bad input, and the
//! command line end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use ptediff::corpus::{self, Expect, Verdict};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ptediff"))
}

#[test]
fn every_corpus_file_meets_its_expectation() {
    let files = corpus::collect_files(&[corpus_dir()]);
    assert!(files.len() >= 6, "corpus/ has {} files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let r = corpus::load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.expect.is_some(), "{}: every corpus file states `# expect:`", f.display());
        let (v, out) = corpus::replay(&r);
        if !matches!(v, Verdict::Pass | Verdict::Diverges) {
            failures.push(format!("{}: {v:?}\n{}", f.display(), out.report()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_holds_both_thread_scenarios_as_divergences() {
    for (name, variant) in [
        ("thread-memfd-uffd-wp-migrate.ptd", "W.pre-fix-rw"),
        ("thread-softdirty-merge-migrate.ptd", "W.vm-page-prot-rw"),
    ] {
        let r = corpus::load(&corpus_dir().join(name)).unwrap();
        match r.expect {
            Some(Expect::Diverges(sig)) => assert!(sig.to_string().starts_with(variant), "{name}: {sig}"),
            e => panic!("{name}: {e:?}"),
        }
    }
}

#[test]
fn unuse_scenario_really_swaps_in_with_uffd_wp() {
    // The "pass" of thread-unuse-pte-care.ptd must come from unuse_pte restoring a
    // read-only uffd-wp PTE, not from nothing happening.
    use ptediff::model::{self, Entry, PteBits, State, StepResult};
    let r = corpus::load(&corpus_dir().join("thread-unuse-pte-care.ptd")).unwrap();
    let mut s = State::new();
    let mut results = Vec::new();
    for op in &r.program.ops {
        results.push(model::step(&mut s, &r.pair.a, op));
        if matches!(op, ptediff::Op::Pageout { .. }) {
            assert!(matches!(s.procs[0].pt[0], Entry::Swap { .. }), "{:?}", s.procs[0].pt[0]);
        }
    }
    assert_eq!(results.last(), Some(&StepResult::UffdWp));
    match s.procs[0].pt[0] {
        Entry::Present { bits, .. } => {
            assert!(bits.contains(PteBits::UW) && !bits.contains(PteBits::W))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn bad_files_get_a_clear_error_and_replay_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a-bad.ptd"),
        "# expect: pass\nmmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 77)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b-binary.ptd"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    std::fs::write(dir.path().join("c-header.ptd"), "# variants: full-restore vs no-such-fix\nread(p0, 0)\n").unwrap();
    std::fs::copy(corpus_dir().join("thread-softdirty-merge-migrate.ptd"), dir.path().join("d-good.ptd")).unwrap();
    let e = corpus::load(&dir.path().join("a-bad.ptd")).unwrap_err();
    assert_eq!((e.line, e.col), (3, 11));
    assert!(e.to_string().contains("a-bad.ptd:3:11: expected a page"), "{e}");
    let e = corpus::load(&dir.path().join("b-binary.ptd")).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    let e = corpus::load(&dir.path().join("c-header.ptd")).unwrap_err();
    assert!(e.to_string().contains("unknown variant `no-such-fix`"), "{e}");

    let out = bin().arg("replay").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("a-bad.ptd:3:11"), "{stdout}");
    assert!(
        stdout.contains("DIVERGES  ") && stdout.contains("d-good.ptd"),
        "the good file is still replayed: {stdout}"
    );
    assert!(stdout.contains("1 met expectations, 0 mismatched, 3 unreadable"), "{stdout}");
}

#[test]
fn replay_exit_status_reports_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(corpus_dir().join("thread-softdirty-merge-migrate.ptd")).unwrap();
    let wrong: String = text
        .lines()
        .map(|l| if l.starts_with("# expect:") { "# expect: pass\n".to_string() } else { format!("{l}\n") })
        .collect();
    std::fs::write(dir.path().join("x.ptd"), wrong).unwrap();
    let out = bin().arg("replay").arg(dir.path().join("x.ptd")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH"));
    let ok = bin().arg("replay").arg(corpus_dir()).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
}

#[test]
fn fuzz_writes_minimized_findings_that_replay() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["fuzz", "--seconds", "20", "--programs", "20000", "--seed", "7", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = corpus::collect_files(&[dir.path().to_path_buf()]);
    assert!(!files.is_empty(), "20000 programs found nothing");
    for f in &files {
        let r = corpus::load(f).unwrap_or_else(|e| panic!("{e}"));
        let (v, _) = corpus::replay(&r);
        assert_eq!(v, Verdict::Diverges, "{}", f.display());
        assert!(r.program.ops.len() <= 12, "{}: {} ops, not minimized?", f.display(), r.program.ops.len());
        // Named by the cause and a hash of the signature, which the header states in full.
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let Some(Expect::Diverges(sig)) = r.expect else { panic!("{}: no divergence expected", f.display()) };
        assert_eq!(stem, ptediff::findings::file_stem(&sig), "the file is named after its finding");
        assert!(stem.starts_with(&ptediff::judge::causes::Cause::of(&sig).to_string()[..10.min(stem.len())]));
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains(&format!("# finding: {sig}\n")), "{text}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("findings.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), files.len());
    // No stray temporary files from the atomic writes: the findings, findings.json
    // and the writers' lock file.
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.retain(|n| !n.ends_with(".ptd"));
    names.sort();
    assert_eq!(names, [".lock", "findings.json"]);
}

#[test]
fn fmt_and_encode_round_trip_through_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let st = bin().arg("encode").arg(corpus_dir()).arg("--out").arg(dir.path()).status().unwrap();
    assert!(st.success());
    let seed = dir.path().join("thread-softdirty-merge-migrate");
    let bytes = std::fs::read(&seed).unwrap();
    let want = corpus::load(&corpus_dir().join("thread-softdirty-merge-migrate.ptd")).unwrap().program;
    assert_eq!(ptediff::Program::from_bytes(&bytes), want);
    let out = bin().arg("fmt").arg(&seed).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let r = corpus::parse_reproducer(&text).unwrap();
    assert_eq!(r.program, want);
    assert!(matches!(r.expect, Some(Expect::Diverges(_))));
    // Text seeds are accepted by the libFuzzer entry point as they are.
    let t = std::fs::read(corpus_dir().join("thread-softdirty-merge-migrate.ptd")).unwrap();
    assert_eq!(ptediff::fuzz_input(&t), want);
}
