//! `ptediff affected`: which kernel profiles have each corpus hole, and what the
//! recorded real-kernel runs say.

use std::path::Path;
use std::process::Command;

use ptediff::judge::affected::{affected, Real};
use ptediff::kernel_check::{program_hash, KernelInfo, KernelResult, ResultsDb};

fn corpus(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name)
}

fn open_on(a: &ptediff::judge::affected::Affected) -> Vec<&'static str> {
    a.profiles.iter().filter(|p| p.open).map(|p| p.profile).collect()
}

#[test]
fn the_soft_dirty_merge_holes_are_open_until_73() {
    let f = corpus("vm-page-prot-stale-prot-after-munlock-merge.ptd");
    let r = ptediff::corpus::load(&f).unwrap();
    let rows = affected(&f, &r, &ResultsDb::default());
    assert_eq!(rows.len(), 2);
    // The divergence: vm-page-prot's restore of the clean page under the stale
    // writable prot loses stores (v6.1's pre-fix too); 6.1.y's B2 restore
    // write-protects; 7.3's sticky VM_SOFTDIRTY closes it.
    let a = &rows[0];
    assert_eq!((a.kind, a.reasons.letters().as_str()), ("divergence", "S"));
    assert_eq!(open_on(a), vec!["v6.1", "v6.12", "v6.18"]);
    assert!(a.profiles.iter().all(|p| p.real == Real::NotRun || p.real == Real::NoKernel));
    // The oracle violation: the page mapped after clear_refs reads clean once the
    // munlock merge gives its VMA tracking, on every kernel until the sticky bit.
    let o = &rows[1];
    assert_eq!((o.kind, o.reasons.letters().as_str()), ("oracle", "S"));
    assert_eq!(open_on(o), vec!["v6.1", "v6.1.y", "v6.12", "v6.18"]);
}

#[test]
fn the_clear_refs_migration_hole_is_open_everywhere_and_model_only() {
    let f = corpus("oracle-clear-refs-writable-migration-entry.ptd");
    let r = ptediff::corpus::load(&f).unwrap();
    let a = affected(&f, &r, &ResultsDb::default()).remove(0);
    assert_eq!(a.kind, "oracle");
    assert_eq!(open_on(&a).len(), 5);
    // Realizable by racing (emit-c race mode): not run yet.
    assert_eq!(a.profiles[4].real, Real::NotRun);
}

#[test]
fn recorded_results_confirm_or_contradict() {
    let f = corpus("vm-page-prot-stale-prot-after-munlock-merge.ptd");
    let r = ptediff::corpus::load(&f).unwrap();
    let mut db = ResultsDb::default();
    let res = |ok: bool| KernelResult {
        kernel: KernelInfo { uname: "7.3.4+deb13-amd64".into(), ..Default::default() },
        cell: if ok { "= v7.3".into() } else { "MISMATCH".into() },
        matches_own_profile: ok,
        observed: Default::default(),
        breaks: Vec::new(),
        predicted_breaks: Vec::new(),
        race: None,
        at: 0,
    };
    let name = "vm-page-prot-stale-prot-after-munlock-merge";
    db.record(name, &program_hash(&r.program), "v7.3", res(true));
    db.record(name, &program_hash(&r.program), "v6.18", res(false));
    let a = affected(&f, &r, &db).remove(0);
    assert_eq!(a.profiles[4].real, Real::Confirmed { uname: "7.3.4+deb13-amd64".into() });
    assert!(matches!(a.profiles[3].real, Real::Contradicted { .. }));
    // A result recorded for another program under the same name is not used.
    let mut other = db.clone();
    other.record(name, "0000000000000000", "v7.3", res(true));
    assert_eq!(affected(&f, &r, &other)[0].profiles[4].real, Real::NotRun);
}

#[test]
fn the_command_prints_a_table_and_json_and_rejects_bad_results() {
    let bin = env!("CARGO_BIN_EXE_ptediff");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let out = Command::new(bin).args(["affected", "--results"]).arg(&missing).arg(corpus("")).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "| vm-page-prot-stale-prot-after-munlock-merge | harmful S | open | closed | open | open | closed |"
        ),
        "{text}"
    );
    let out = Command::new(bin)
        .args(["affected", "--json", "--results"])
        .arg(&missing)
        .arg(corpus("oracle-uffd-resolve-ignores-softdirty.ptd"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["profiles"][1]["profile"], "v6.1.y");
    assert_eq!(v[0]["profiles"][1]["open"], true);
    assert_eq!(v[0]["profiles"][2]["open"], false);
    // A corrupt results file is an error naming the file and position.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"reproducers\": [").unwrap();
    let out = Command::new(bin).args(["affected", "--results"]).arg(&bad).arg(corpus("")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json:2:"), "{err}");
}

#[test]
fn kernel_names_and_folders_are_checked() {
    use ptediff::kernel_check::{kernel_ready, profile_of};
    assert!(profile_of("v9").unwrap_err().contains("v6.1.y, v6.12, v6.18, v7.3"));
    assert!(profile_of("v6.1").unwrap_err().contains("no real kernel"));
    let dir = tempfile::tempdir().unwrap();
    let k = profile_of("v7.3").unwrap();
    assert!(kernel_ready(dir.path(), k).unwrap_err().contains("kernel-check-setup.sh"));
    let kd = dir.path().join("kernels/v7.3");
    std::fs::create_dir_all(&kd).unwrap();
    std::fs::write(kd.join("vmlinuz"), "").unwrap();
    let e = kernel_ready(dir.path(), k).unwrap_err();
    assert!(e.contains("half-unpacked") && e.contains("config"), "{e}");
}
