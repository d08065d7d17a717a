//! emit-c and the kernel-check matrix logic (the QEMU part is exercised by
//! `ptediff kernel-check`, not by `cargo test`).

use std::path::Path;

use ptediff::emit_c::{emit_c, realizable};
use ptediff::kernel_check::{parse_log, verdict};

fn load(name: &str) -> ptediff::Program {
    ptediff::corpus::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name)).unwrap().program
}

#[test]
fn unrealizable_programs_are_refused_with_a_reason() {
    let cases = [
        ("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nread(p0, 0)\nmigrate_start(p0, 0)\n", "migration"),
        ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nnuma_hint(p0, 0)\n", "NUMA"),
        ("mmap(p0, 0, 1, rw-, ext4, shared, 0)\n", "ext4"),
        ("p1 = fork(p0, event_fork)\n", "EVENT_FORK"),
        ("read(p0, 3)\n", "SIGSEGV"),
        (
            "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\nwrite(p0, 0)\n",
            "blocks on uffd-wp",
        ),
        ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\npageout(p0, 0)\n", "mapped more than once"),
        // The model's TASK_SIZE is page 16; a real process's is not (sample-16-1431 hung on 7.3.4).
        ("mmap(p0, 3, 1, rw-, memfd, shared, 3)\nmremap(p0, 3, 4, 13)\n", "16-page area"),
    ];
    for (text, why) in cases {
        let p = ptediff::text::parse(text).unwrap();
        let e = realizable(&p).unwrap_err();
        assert!(e.0.contains(why), "{text}: {e}");
        assert!(emit_c(&p, "x").is_err());
    }
}

#[test]
fn the_thread_scenario_predicts_the_measured_kernels() {
    // Measured (issue 4): the soft-dirty merge scenario's store faults on 6.1.192 and
    // does not on 6.12.95.
    let p = load("thread-softdirty-merge-migrate.ptd");
    let traces = realizable(&p).unwrap();
    let probe = |i: usize| *traces[i].probe.iter().find(|o| o.process == 0 && o.page == 0).unwrap();
    assert_eq!(probe(0).obs, "fault", "v6.1.y");
    assert_eq!(probe(1).obs, "writable", "v6.12");
    let c = emit_c(&p, "softdirty").unwrap();
    assert!(c.contains("PTEDIFF-PREDICT %s v6.1.y p0 0 obs=fault"));
    assert!(c.contains("PTEDIFF-PREDICT %s v6.12 p0 0 obs=writable"));
    // The contracts: page 0 owes the content written at step 2 (token 1) and, not
    // written since clear_refs, no soft-dirty bit; page 1, mapped after it, does.
    assert!(c.contains("PTEDIFF-OWED %s v6.12 p0 0 ld=1 sd=0 trap=none"), "{c}");
    assert!(c.contains("PTEDIFF-OWED %s v6.12 p0 1 ld=0 sd=1 trap=none"), "{c}");
    assert!(c.contains("PTEDIFF-OWED %s v6.12 pm 4 p0 mask=0002"), "{c}");
    assert!(c.contains("MAP_SHARED | MAP_FIXED, memfd, 1 * PAGE"), "the merging mmap maps file page 1");
}

#[test]
fn generated_c_compiles() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "thread-softdirty-merge-migrate.ptd",
        "oracle-mremap-keeps-uffd-wp.ptd",
        "vm-page-prot-stale-prot-after-munlock-merge.ptd",
    ] {
        let c = emit_c(&load(name), name).unwrap();
        let src = dir.path().join("r.c");
        std::fs::write(&src, c).unwrap();
        let out = std::process::Command::new("gcc")
            .args(["-fsyntax-only", "-Wall", "-Werror", "-pthread"])
            .arg(&src)
            .output()
            .expect("gcc is on the machine image");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A fork and a swapoff, too.
    let p = ptediff::text::parse(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\nswapoff()\np1 = fork(p0)\nwrite(p1, 0)\nexit(p1)\n",
    )
    .unwrap();
    let c = emit_c(&p, "fork").unwrap();
    let src = dir.path().join("f.c");
    std::fs::write(&src, c).unwrap();
    let st = std::process::Command::new("gcc")
        .args(["-fsyntax-only", "-Wall", "-Werror", "-pthread"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn the_matrix_compares_observations_with_each_profile() {
    let log = "\
[    1.0] junk
PTEDIFF-BEGIN a
PTEDIFF-PAGE a p0 0 obs=fault sd=1 uw=0 present=1
PTEDIFF-PREDICT a v6.1.y p0 0 obs=fault sd=1 uw=0 present=1
PTEDIFF-PREDICT a v6.12 p0 0 obs=writable sd=1 uw=0 present=1
PTEDIFF-END a
PTEDIFF-BEGIN b
PTEDIFF-PAGE b p0 0 obs=uffd sd=0 uw=1 present=1
PTEDIFF-PREDICT b v6.1.y p0 0 obs=fault sd=0 uw=1 present=1
PTEDIFF-PREDICT b v6.12 p0 0 obs=fault sd=0 uw=1 present=1
PTEDIFF-END b
PTEDIFF-BEGIN c
PTEDIFF-END c error memfd: No such file
PTEDIFF-BEGIN d
";
    let m = parse_log(log);
    assert_eq!(verdict(&m["a"]).0, "= v6.1.y");
    let (cell, details) = verdict(&m["b"]);
    assert_eq!(cell, "MISMATCH");
    assert!(details[0].contains("predicted obs=fault sd=0 uw=1 present=1, observed obs=uffd"));
    assert!(verdict(&m["c"]).0.starts_with("error: memfd"));
    assert_eq!(verdict(&m["d"]).0, "did not finish");
}

#[test]
fn a_program_without_pages_matches_every_profile() {
    let m = parse_log("PTEDIFF-BEGIN e\nPTEDIFF-END e\n");
    assert_eq!(verdict(&m["e"]).0, "= v6.1.y, v6.12, v6.18, v7.3");
    // An observed page no profile predicted is a mismatch.
    let m = parse_log("PTEDIFF-BEGIN f\nPTEDIFF-PAGE f p0 1 obs=fault sd=0 uw=0 present=0\nPTEDIFF-END f\n");
    let (cell, details) = verdict(&m["f"]);
    assert_eq!(cell, "MISMATCH");
    assert!(details[0].contains("predicted nothing"), "{details:?}");
}

#[test]
fn contract_breaks_are_read_from_observations_and_owed_values() {
    use ptediff::kernel_check::contract_breaks;
    let m = |v: &[(&str, &str)]| v.iter().map(|(k, x)| (k.to_string(), x.to_string())).collect();
    let owed = m(&[
        ("pm 5 p0", "mask=4002"),
        ("ld 6 p0 3", "val=7|0"),
        ("p0 1", "ld=0 sd=1 trap=none"),
        ("p0 2", "ld=- sd=0 trap=uffd"),
        ("p0 4", "ld=9 sd=0 trap=segv"),
    ]);
    let ok = m(&[
        ("pm 5 p0", "mask=c003"),
        ("ld 6 p0 3", "val=0"),
        ("p0 1", "obs=writable sd=1 uw=0 present=1 ld=0 sd2=1"),
        ("p0 2", "obs=uffd sd=0 uw=1 present=1 ld=5 sd2=1"),
        ("p0 4", "obs=segv sd=0 uw=0 present=1 ld=9 sd2=0"),
    ]);
    assert!(contract_breaks(&ok, &owed).is_empty(), "{:?}", contract_breaks(&ok, &owed));
    let bad = m(&[
        ("pm 5 p0", "mask=0002"),
        ("ld 6 p0 3", "val=6"),
        ("p0 1", "obs=writable sd=1 uw=0 present=1 ld=0 sd2=0"),
        ("p0 2", "obs=writable sd=0 uw=0 present=1 ld=5 sd2=1"),
        ("p0 4", "obs=writable sd=0 uw=0 present=1 ld=8 sd2=1"),
    ]);
    let b = contract_breaks(&bad, &owed);
    for want in [
        "S p0 14 (pagemap after step 5)",
        "C p0 3 (step 6 read 6, owed 7|0)",
        "S p0 1 (probe store not soft-dirty)",
        "U p0 2 (probe store writable)",
        "P p0 4 (probe store writable)",
        "C p0 4 (probe read 8, owed 9)",
    ] {
        assert!(b.iter().any(|x| x == want), "{want} not in {b:?}");
    }
    assert_eq!(b.len(), 6, "{b:?}");
}

/// Build the C program `c` as `dir/name` (as kernel-check does, warnings fatal).
fn build_c(dir: &std::path::Path, name: &str, c: &str) -> std::path::PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, c).unwrap();
    let bin = dir.join(name);
    let out = std::process::Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    bin
}

#[test]
fn race_reproducers_compile_and_their_results_are_judged() {
    use ptediff::emit_c::race::{emit_race, window};
    let p = load("oracle-clear-refs-writable-migration-entry.ptd");
    let w = window(&p).unwrap();
    assert_eq!((w.start, w.finish, w.page), (2, 4, 4));
    let c = emit_race(&p, "race", 100, 1).unwrap();
    assert!(c.contains("PTEDIFF-RACE-PREDICT %s v7.3 window=S before=none after=none"), "{c}");
    let dir = tempfile::tempdir().unwrap();
    let bin = build_c(dir.path(), "race", &c);
    // Bounded: it ends by itself in its budget (on this machine without a
    // second NUMA node nothing migrates; without soft-dirty it says so).
    let t = std::time::Instant::now();
    let out =
        std::process::Command::new("timeout").arg("30").arg(&bin).args(["race", "40", "2", "7"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(t.elapsed().as_secs() < 25, "{text}");
    let r = &parse_log(&text)["race"];
    assert!(r.ended, "{text}");
    match &r.error {
        Some(e) => assert!(e.contains("soft-dirty"), "{text}"),
        None => {
            let race = r.race.as_ref().unwrap();
            assert_eq!((race.rounds, race.seed), (40, 7), "{text}");
            assert!(matches!(race.window.as_str(), "batch" | "plain"), "{text}");
            assert_eq!(race.predicted["v6.12"], ("S".into(), "none".into(), "none".into()));
        }
    }
    // Programs race mode cannot run say why.
    for (text, why) in [
        ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\n", "no migration window"),
        ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmigrate_start(p0, 0)\n", "one process"),
        (
            "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nmigrate_finish(p0, 0)\nmigrate_start(p0, 0)\n",
            "one migration window",
        ),
    ] {
        let e = window(&ptediff::text::parse(text).unwrap()).unwrap_err();
        assert!(e.0.contains(why), "{text}: {e}");
    }
    // The matrix cell, from the kernel's own profile.
    let log = "PTEDIFF-BEGIN r\nPTEDIFF-RACE r rounds=100 hits=30 migrations=90 seed=7 seconds=8.0 v6.1.y=0 v6.12=12 v7.3=0\n\
PTEDIFF-RACE-PREDICT r v6.1.y window=none before=none after=none\nPTEDIFF-RACE-PREDICT r v6.12 window=S before=none after=none\n\
PTEDIFF-RACE-PREDICT r v7.3 window=S before=none after=none\nPTEDIFF-RACE-FIRST r v6.12 round=3 S p0 4\nPTEDIFF-END r\n";
    let m = parse_log(log);
    let race = m["r"].race.as_ref().unwrap();
    assert_eq!(race.cell("v6.12"), ("confirmed 12/100 rounds (30 window hits)".to_string(), true));
    assert_eq!(race.cell("v7.3"), ("not observed in 100 rounds (30 window hits)".to_string(), true));
    assert_eq!(race.cell("v6.1.y"), ("none in 100 rounds, as predicted".to_string(), true));
    let log = log.replace("v6.1.y=0", "v6.1.y=2");
    assert!(!parse_log(&log)["r"].race.as_ref().unwrap().cell("v6.1.y").1, "violations no placement allows");
    // Polling reproducers say how the window was kept open and how often the
    // window's ops ran inside it.
    let log = log.replace("hits=30 ", "raced=100 hits=99 confirmed=97 window=held ");
    let race = parse_log(&log)["r"].race.clone().unwrap();
    assert_eq!((race.raced, race.confirmed, race.window.as_str()), (100, 97, "held"));
    assert_eq!(race.violations.len(), 3, "{:?}", race.violations);
    assert_eq!(race.cell("v6.12"), ("confirmed 12/100 rounds (97 inside the window, held)".to_string(), true));
    assert_eq!(race.cell("v6.18"), ("none in 100 rounds (97 inside the window, held), as predicted".to_string(), true));
}

#[test]
fn thp_race_reproducers_judge_only_rounds_with_the_models_thp_layout() {
    use ptediff::emit_c::race::{emit_race, window};
    // The PMD clear_refs hole: a clean THP's writable PMD migration entry.
    let p = load("oracle-clear-refs-thp-clean-migration-entry.ptd");
    let w = window(&p).unwrap();
    assert_eq!((w.start, w.finish, w.page), (4, 6, 1));
    let c = emit_race(&p, "thp", 100, 1).unwrap();
    assert!(c.contains("#define PTEDIFF_THP 1"), "THP layout");
    // p0's four pages are one THP where the window opens and at the end, on
    // every profile and placement.
    assert!(c.contains("static const unsigned int THP_START[NPROF] = { 0x000f, 0x000f, 0x000f, 0x000f };"), "{c}");
    for k in ["v6.1.y", "v6.12", "v6.18", "v7.3"] {
        assert!(c.contains(&format!("PTEDIFF-RACE-PREDICT %s {k} window=S before=none after=none")), "{k}");
    }
    build_c(tempfile::tempdir().unwrap().path(), "thp", &c);
    // A THP layout only some rounds realized: the others are not judged.
    let log = "PTEDIFF-BEGIN t\nPTEDIFF-RACE t rounds=100 raced=100 hits=100 confirmed=100 window=plain \
migrations=100 seed=1 seconds=8.0 v6.1.y=60 v6.12=0 v7.3=0\nPTEDIFF-RACE-REALIZED t v6.1.y=60 v6.12=0 v7.3=100\n\
PTEDIFF-RACE-PREDICT t v6.1.y window=S before=none after=none\nPTEDIFF-RACE-PREDICT t v6.12 window=S before=none after=none\n\
PTEDIFF-RACE-PREDICT t v7.3 window=S before=none after=none\nPTEDIFF-END t\n";
    let race = parse_log(log)["t"].race.clone().unwrap();
    assert_eq!(race.violations.len(), 3, "REALIZED is no profile's violations: {:?}", race.violations);
    assert_eq!(
        race.cell("v6.1.y"),
        ("confirmed 60/60 rounds (100 inside the window, plain; 60 of 100 rounds with its THP layout)".into(), true)
    );
    let (cell, ok) = race.cell("v6.12");
    assert!(ok && cell.starts_with("not realized"), "{cell}");
    assert_eq!(
        race.cell("v7.3").0,
        "not observed in 100 rounds (100 inside the window, plain; 100 of 100 rounds with its THP layout)"
    );
    // THP mode's layout refusals hold in race mode too.
    let e = window(
        &ptediff::text::parse(
            "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nmremap(p0, 0, 1, 9)\n",
        )
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.0.contains("THP mode"), "{e}");
}

/// An install that never returned (the guest's timer left it) breaks G, read
/// through the console log as the guest prints it.
#[test]
fn a_guard_install_that_never_returns_breaks_g() {
    use ptediff::kernel_check::contract_breaks;
    let log = "PTEDIFF-BEGIN g\nPTEDIFF-MADV g 4 p0 rc=hang\nPTEDIFF-MADV g 5 p0 rc=0\n\
               PTEDIFF-OWED g v7.3 madv 4 p0 returns=1\nPTEDIFF-OWED g v7.3 madv 5 p0 returns=1\nPTEDIFF-END g\n";
    let r = &parse_log(log)["g"];
    let b = contract_breaks(&r.observed, &r.owed["v7.3"]);
    assert_eq!(b, ["G p0 - (MADV_GUARD_INSTALL of step 4 never returns)"]);
}
