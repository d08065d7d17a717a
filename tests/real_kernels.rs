//! The corpus on real kernels: every realizable reproducer is built as a static C
//! program, all of them run in one QEMU boot of each of Debian's 6.1.y, 6.12.y,
//! 6.18.y and 7.3 kernels, and each kernel must do what its model profile predicts.
//!
//! This needs root, the package registry and a few minutes on a fresh machine
//! (installing QEMU and fetching four kernels), so it runs when `CI` is set (CI
//! sets `CI=true`) or `PTEDIFF_KERNEL_CHECK=1`; otherwise it says so and passes.

use std::path::Path;
use std::process::Command;

fn wanted() -> bool {
    std::env::var("PTEDIFF_KERNEL_CHECK").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn corpus_matches_real_kernels() {
    if !wanted() {
        eprintln!("real-kernel check skipped: set PTEDIFF_KERNEL_CHECK=1 (CI runs it)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = Command::new("bash").arg(root.join("scripts/kernel-check-setup.sh")).status().expect("bash");
    assert!(st.success(), "scripts/kernel-check-setup.sh failed");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ptediff"))
        .current_dir(root)
        .args(["kernel-check", "corpus", "--work"])
        .arg(work.path())
        .arg("--results")
        .arg(work.path().join("results.json"))
        .output()
        .expect("ptediff");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "a kernel disagrees with its profile:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The scenarios that tell the kernels apart really were run and told apart.
    for (name, cell) in [
        ("thread-softdirty-merge-migrate", "| = v6.1.y | = v6.12, v6.18, v7.3 |"),
        ("kc-swapin-exclusive", "| = v6.1.y | = v6.12, v6.18, v7.3 |"),
        ("kc-mremap-multi-vma", "| = v6.1.y, v6.12 | = v6.1.y, v6.12 | = v6.18, v7.3 | = v6.18, v7.3 |"),
        ("kc-read-fault-dirty-folio", "| = v6.18 | = v7.3 |"),
        ("vm-page-prot-stale-prot-after-munlock-merge", "| = v6.12, v6.18 | = v6.12, v6.18 | = v7.3 |"),
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("| {name} |")) && l.contains(cell)), "{name}: {stdout}");
    }
}
