//! Every `cargo` command of the README's "Coverage-guided fuzzing with cargo
//! fuzz" section, verbatim, in a fresh copy of the repository (the files git
//! would commit, nothing else: no `findings/`, no `fuzz/corpus/`), each bounded
//! with `-max_total_time=`. Afterwards the repository's `findings/` of the copy
//! must hold what the target found, consistently.
//!
//! Builds the fuzz target (and, if nightly is installed, its AddressSanitizer
//! build), so it runs when `CI` is set (`.ci/run` installs cargo-fuzz) or
//! `PTEDIFF_CARGO_FUZZ=1`, and only if `cargo fuzz` is installed; otherwise it
//! says why and passes. The copy lives in `target/cargo-fuzz-clone/` and keeps
//! its build folders (and the files' time stamps) between runs, so only the
//! first run builds everything.

use std::path::{Path, PathBuf};
use std::process::Command;

fn wanted() -> Result<(), String> {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0");
    if !ci && !std::env::var("PTEDIFF_CARGO_FUZZ").is_ok_and(|v| v == "1") {
        return Err("set CI=true or PTEDIFF_CARGO_FUZZ=1 (CI runs it)".into());
    }
    match Command::new("cargo").args(["fuzz", "--version"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("cargo-fuzz is not installed (`cargo install cargo-fuzz`; .ci/run does)".into()),
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The commands of the README section, in order (the `cargo install` aside).
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("## Coverage-guided fuzzing with cargo fuzz").expect("the README section");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(|l| l.split(" # ").next().unwrap().trim().to_string())
        .filter(|l| (l.starts_with("cargo ") || l.starts_with("PTEDIFF_")) && !l.starts_with("cargo install"))
        .collect()
}

/// A fresh copy of the repository: the files git tracks or would track.
fn fresh_copy() -> PathBuf {
    let dest = root().join("target/cargo-fuzz-clone");
    std::fs::create_dir_all(&dest).unwrap();
    // Empty it, keeping the build folders.
    for e in std::fs::read_dir(&dest).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_name() == "target" {
            continue;
        }
        if e.file_name() == "fuzz" {
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap();
                if f.file_name() != "target" {
                    remove(&f.path());
                }
            }
            continue;
        }
        remove(&p);
    }
    let out = Command::new("git")
        .current_dir(root())
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .output()
        .expect("git");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let from = root().join(name);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dest.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
        // Keep the time stamp, so that cargo does not rebuild unchanged sources.
        let mtime = std::fs::metadata(&from).unwrap().modified().unwrap();
        std::fs::File::options().write(true).open(&to).unwrap().set_modified(mtime).unwrap();
    }
    dest
}

fn remove(p: &Path) {
    if p.is_dir() {
        std::fs::remove_dir_all(p).unwrap();
    } else {
        std::fs::remove_file(p).unwrap();
    }
}

/// Bound a `cargo fuzz run` command in time.
fn bounded(cmd: &str, secs: u32) -> String {
    if !cmd.contains(" fuzz run ") {
        return cmd.to_string();
    }
    if cmd.contains(" -- ") {
        format!("{cmd} -max_total_time={secs}")
    } else {
        format!("{cmd} -- -max_total_time={secs}")
    }
}

fn nightly() -> bool {
    Command::new("rustup").args(["run", "nightly", "rustc", "--version"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn readme_cargo_fuzz_commands_work_on_a_fresh_clone() {
    if let Err(why) = wanted() {
        eprintln!("cargo-fuzz commands skipped: {why}");
        return;
    }
    let cmds = readme_commands();
    assert!(cmds.len() >= 6, "{cmds:?}");
    assert!(cmds.iter().any(|c| c.contains("-fork=2")), "{cmds:?}");
    let dir = fresh_copy();
    for cmd in &cmds {
        if cmd.starts_with("cargo +nightly") && !nightly() {
            eprintln!("skipped (no nightly toolchain): {cmd}");
            continue;
        }
        let run = bounded(cmd, 5);
        eprintln!("$ {run}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(&run)
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("PTEDIFF_FINDINGS")
            .env_remove("PTEDIFF_PANIC_ON")
            .output()
            .expect("sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let show = || {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            format!(
                "`{run}`: {:?}\n--- stdout\n{}\n--- stderr (end)\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        };
        if cmd.contains("PTEDIFF_PANIC_ON=new") {
            // Stops at the first new signature (a panic and an artifact), or runs
            // out of time when nothing new turns up.
            assert!(
                out.status.success() || (stderr.contains("ptediff: divergence") && stderr.contains("crash-")),
                "{}",
                show()
            );
        } else {
            assert!(out.status.success(), "{}", show());
        }
        if cmd.contains(" fuzz run ") {
            assert!(stderr.contains("ptediff target:"), "{}", show());
            assert!(!stderr.contains("does not exist"), "{}", show());
        }
    }
    // The target wrote into the copy's findings/, which triage reads.
    let findings = dir.join("findings");
    let snap = ptediff::findings::load(&findings).unwrap();
    assert!(!snap.records.is_empty(), "nothing in {}", findings.display());
    assert!(snap.unreadable.is_empty(), "{:?}", snap.unreadable);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(findings.join("findings.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), snap.records.len(), "findings.json lists every file");
    assert!(snap.records.values().any(|r| r.runs.keys().any(|k| k.starts_with("libfuzzer-"))));
}
