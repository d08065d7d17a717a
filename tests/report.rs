//! `ptediff report`: the shape of every file it writes (mail lines, subject,
//! format-patch headers and trailers, the kselftest's TAP markers), that it is
//! a function of its inputs, and that the committed `reports/` is what the
//! command writes today (where the kernel trees it needs are here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ptediff::report::{self, Inputs, Measured, Subject, MAIL_WIDTH, SPECS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn measured() -> Measured {
    Measured::load(&root().join("reports/measured.json")).unwrap()
}

const AUTHOR: &str = "A U Thor <author@example.org>";

/// A stand-in kernel tree: the three selftest files the selftest patch
/// touches, with the lines it anchors on (not the kernel's files).
fn fake_trees(dir: &Path) -> PathBuf {
    for (k, sub, var) in [
        ("v7.3", "mm", "TEST_GEN_FILES"),
        ("v6.18", "mm", "TEST_GEN_FILES"),
        ("v6.12", "mm", "TEST_GEN_FILES"),
        ("v6.1.y", "vm", "TEST_GEN_PROGS"),
    ] {
        let t = dir.join(k).join("src/tools/testing/selftests").join(sub);
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("Makefile"), format!("# made up\n{var} += a\n{var} += soft-dirty\n{var} += z\n"))
            .unwrap();
        std::fs::write(t.join(".gitignore"), "a\nsoft-dirty\nz\n").unwrap();
        let rv = if k == "v6.1.y" {
            "run_test ./a\nrun_test ./soft-dirty\nrun_test ./z\n"
        } else {
            "if [ -x ./soft-dirty ]\nthen\n\tCATEGORY=\"soft_dirty\" run_test ./soft-dirty\nfi\nCATEGORY=\"x\" run_test ./z\n"
        };
        std::fs::write(t.join("run_vmtests.sh"), rv).unwrap();
        std::fs::write(dir.join(k).join("source-version"), "9.9.9-1\n").unwrap();
    }
    dir.to_path_buf()
}

fn inputs(trees: PathBuf) -> Inputs {
    Inputs { root: root(), trees, author: AUTHOR.into(), measured: measured() }
}

fn files(r: &report::Report) -> BTreeMap<String, String> {
    r.files.iter().map(|f| (f.path.clone(), f.contents.clone())).collect()
}

#[test]
fn every_report_is_a_function_of_its_inputs() {
    let d = tempfile::tempdir().unwrap();
    let i = inputs(fake_trees(d.path()));
    for spec in SPECS {
        let a = report::build(&Subject::Spec(spec), &i).unwrap();
        let b = report::build(&Subject::Spec(spec), &i).unwrap();
        assert_eq!(files(&a), files(&b), "{}", spec.name);
        assert!(a.files.iter().any(|f| f.path == "mail.txt"), "{}", spec.name);
    }
}

#[test]
fn mails_are_plain_text_in_short_lines_with_a_kernel_style_subject() {
    let d = tempfile::tempdir().unwrap();
    let i = inputs(fake_trees(d.path()));
    for spec in SPECS {
        let r = report::build(&Subject::Spec(spec), &i).unwrap();
        let mail = &files(&r)["mail.txt"];
        for (n, l) in mail.lines().enumerate() {
            assert!(l.chars().count() <= MAIL_WIDTH, "{} mail.txt:{}: {} columns: {l}", spec.name, n + 1, l.len());
            assert!(l.is_ascii(), "{} mail.txt:{}: not ASCII: {l}", spec.name, n + 1);
        }
        let subject = mail.lines().next().unwrap();
        let s = subject.strip_prefix("Subject: [BUG] ").unwrap_or_else(|| panic!("{}: {subject}", spec.name));
        let (area, what) = s.split_once(": ").unwrap();
        assert!(area.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "/_-.".contains(c)), "{area}");
        assert!(!what.is_empty());
        for section in ["The program", "What happens", "Affected kernels", "Fix", "Selftest", "How to reproduce"] {
            assert!(
                mail.contains(&format!("\n{section}\n{}\n", "-".repeat(section.len()))),
                "{}: {section}",
                spec.name
            );
        }
        // The minimized program is there, step by step.
        let case = &spec.cases[0].0;
        let text = std::fs::read_to_string(root().join("corpus").join(format!("{case}.ptd"))).unwrap();
        let first_op = text.lines().find(|l| !l.starts_with('#')).unwrap();
        assert!(mail.contains(&format!(" 1. {first_op}\n")), "{}: {first_op}", spec.name);
    }
}

#[test]
fn confirmed_cases_cite_the_real_kernel_and_unconfirmed_ones_say_model_only() {
    let d = tempfile::tempdir().unwrap();
    let spec = report::specs::find("hole.clear-refs").unwrap();
    let r = report::build(&Subject::Spec(spec), &inputs(fake_trees(d.path()))).unwrap();
    let mail = &files(&r)["mail.txt"];
    assert!(r.confirmed);
    assert!(mail.contains("7.3.4: confirmed"), "{mail}");
    // The same report without any measurement.
    let mut i = inputs(fake_trees(d.path()));
    i.measured = Measured::default();
    let r = report::build(&Subject::Spec(spec), &i).unwrap();
    let mail = &files(&r)["mail.txt"];
    assert!(!r.confirmed);
    assert!(mail.starts_with("Subject: [BUG, model only] "), "{mail}");
    assert!(mail.contains("model only (not run)"));
    // A corpus file without a spec.
    let f = root().join("corpus/kc-thp-pageout-splits.ptd");
    let r = report::build(&Subject::File(f), &i).unwrap();
    assert!(files(&r)["mail.txt"].starts_with("Subject: [BUG, model only] mm: "));
}

#[test]
fn unknown_causes_list_the_known_ones() {
    let e = report::resolve("no-such-cause").unwrap_err();
    for spec in SPECS {
        assert!(e.contains(spec.name), "{e}");
    }
    assert!(report::resolve("hole.clear-refs").is_ok());
    assert!(report::resolve("missing.ptd").unwrap_err().contains("no such file"));
}

#[test]
fn patches_are_format_patch_files_with_a_signed_off_series() {
    let d = tempfile::tempdir().unwrap();
    let i = inputs(fake_trees(d.path()));
    let spec = report::specs::find("clear-refs-migration-entry").unwrap();
    let r = report::build(&Subject::Spec(spec), &i).unwrap();
    let f = files(&r);
    for k in ["v6.1.y", "v6.12", "v6.18", "v7.3"] {
        let series: Vec<(&String, &String)> =
            f.iter().filter(|(p, _)| p.starts_with(&format!("patches/{k}/"))).collect();
        assert_eq!(series.len(), 2, "{k}: {:?}", series.iter().map(|s| s.0).collect::<Vec<_>>());
        for (n, (path, text)) in series.iter().enumerate() {
            assert!(path.contains(&format!("/{:04}-", n + 1)), "{path}");
            let prefix =
                if k == "v7.3" { format!("[PATCH {}/2] ", n + 1) } else { format!("[PATCH 9.9.y {}/2] ", n + 1) };
            assert!(text.starts_with("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"));
            assert!(text.contains(&format!("\nFrom: {AUTHOR}\n")), "{path}");
            assert!(text.contains(&format!("\nSubject: {prefix}")), "{path}");
            assert!(text.contains(&format!("\nSigned-off-by: {AUTHOR}\n---\n")), "{path}");
            assert!(text.contains("\ndiff --git a/"), "{path}");
            assert!(text.contains(" changed, "), "{path}: no diffstat");
            assert!(text.ends_with(&format!("-- \nptediff {}\n\n", env!("CARGO_PKG_VERSION"))), "{path}");
            // The commit message: lines of at most 75 (tags aside).
            let msg = text.split("\n---\n").next().unwrap();
            for l in msg.lines().skip(4).filter(|l| !l.starts_with("Fixes: ")) {
                assert!(l.len() <= 75, "{path}: {l}");
            }
        }
        let fix = series[0].1;
        assert!(fix.contains("\nFixes: 0f8975ec4db2 (\"mm: soft-dirty bits for user memory changes tracking\")\n"));
        assert!(fix.contains("\nCc: stable@vger.kernel.org\n"));
        assert!(fix.contains("+++ b/fs/proc/task_mmu.c\n"));
        let st = series[1].1;
        let dir = if k == "v6.1.y" { "vm" } else { "mm" };
        assert!(
            st.contains(&format!(
                "new file mode 100644\n--- /dev/null\n+++ b/tools/testing/selftests/{dir}/soft_dirty_migration.c\n"
            )),
            "{st}"
        );
        let var = if k == "v6.1.y" { "TEST_GEN_PROGS" } else { "TEST_GEN_FILES" };
        assert!(st.contains(&format!(" {var} += soft-dirty\n+{var} += soft_dirty_migration\n")), "{st}");
        assert!(st.contains(" soft-dirty\n+soft_dirty_migration\n"), "{st}");
        let run = if k == "v6.1.y" {
            "+run_test ./soft_dirty_migration\n"
        } else {
            " fi\n+CATEGORY=\"soft_dirty\" run_test ./soft_dirty_migration\n"
        };
        assert!(st.contains(run), "{st}");
    }
    // Without the trees: the report, and a note for every tree.
    let r = report::build(&Subject::Spec(spec), &inputs(d.path().join("none"))).unwrap();
    assert!(!r.files.iter().any(|f| f.path.starts_with("patches/")));
    assert_eq!(r.notes.iter().filter(|n| n.contains("kernel tree is not at")).count(), 4, "{:?}", r.notes);
}

#[test]
fn the_selftest_is_a_tap_kselftest_that_skips_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let i = inputs(fake_trees(d.path()));
    for spec in SPECS {
        let r = report::build(&Subject::Spec(spec), &i).unwrap();
        let f = files(&r);
        for st in spec.selftests {
            let c = f.get(&format!("selftest/{}.c", st.name)).unwrap_or_else(|| panic!("{}: {:?}", st.name, r.notes));
            assert!(c.starts_with("// SPDX-License-Identifier: GPL-2.0\n"), "{}", st.name);
            assert!(c.contains("#include \"kselftest.h\"\n"), "{}", st.name);
            for marker in [
                "ksft_print_header();",
                "ksft_set_plan(1);",
                "ksft_exit_skip(",
                "ksft_test_result_fail(",
                "ksft_test_result_pass(",
            ] {
                assert!(c.contains(marker), "{}: {marker}", st.name);
            }
            // Nothing outside libc, the UAPI headers and the tree's kselftest.h.
            for l in c.lines().filter(|l| l.starts_with("#include")) {
                assert!(l.contains('<') || l.contains("kselftest.h"), "{}: {l}", st.name);
            }
        }
    }
}

/// The kernel trees here (scripts/kernel-build.sh's), by profile.
fn trees_here() -> Vec<&'static str> {
    let trees = root().join("target/kernel-check/build");
    ["v6.1.y", "v6.12", "v6.18", "v7.3"]
        .into_iter()
        .filter(|k| trees.join(k).join("src/.complete").is_file() && trees.join(k).join("source-version").is_file())
        .collect()
}

/// The committed reports/ is what `ptediff report --all --out reports` writes
/// from the committed snapshot: the mails, reproducers and selftests always,
/// the patches of every tree that is here (they take context from it).
#[test]
fn committed_reports_are_up_to_date() {
    let trees = root().join("target/kernel-check/build");
    let here = trees_here();
    let author = std::fs::read_to_string(root().join("reports/AUTHOR")).unwrap().trim().to_string();
    let i = Inputs { root: root(), trees, author, measured: measured() };
    for spec in SPECS {
        let r = report::build(&Subject::Spec(spec), &i).unwrap();
        for f in &r.files {
            let tree = f.path.strip_prefix("patches/").and_then(|p| p.split('/').next());
            if tree.is_some_and(|t| !here.contains(&t)) {
                continue;
            }
            let p = root().join("reports").join(spec.name).join(&f.path);
            let old = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(
                old == f.contents,
                "{} is not what `ptediff report --all --out reports` writes today: regenerate it",
                p.display()
            );
        }
    }
}

/// Where a kernel tree is here (under CI the 7.3 one, which kernel_build.rs
/// builds): every committed patch series for it applies to Debian's source,
/// its selftest builds with the tree's own Makefile, statically, and
/// checkpatch.pl --strict of the tree reports no error and no warning
/// (UNKNOWN_COMMIT_ID and, for a file MAINTAINERS already covers,
/// FILE_PATH_CHANGES judged not to apply: see the README).
#[test]
fn selftest_patches_build_and_pass_checkpatch_in_the_trees_here() {
    let here = trees_here();
    if here.is_empty() {
        eprintln!("skipped: no kernel tree under target/kernel-check/build (scripts/kernel-build.sh PROFILE)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for spec in SPECS {
        for k in &here {
            let dir = root().join("reports").join(spec.name).join("patches").join(k);
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            let mut series: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            series.sort();
            let out = std::process::Command::new("bash")
                .arg(root().join("scripts/kselftest-check.sh"))
                .arg(k)
                .arg(work.path())
                .args(&series)
                .env("KSELFTEST_CHECK_IGNORE", "UNKNOWN_COMMIT_ID")
                .env("KSELFTEST_CHECK_WAIVE_MAINTAINERS", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{} on {k}:\n{text}\n{}", spec.name, String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("build: ok"), "{} on {k}: {text}", spec.name);
        }
    }
}
