//! `ptediff bench`: the numbers the issues ask for, measured in one run.
//!
//! - engine throughput: programs/s of the built-in engine on one core for
//!   fixed-length programs (identical variants, so nothing is minimized, and the
//!   default pair, which includes finding and minimizing);
//! - `fuzz --jobs N` throughput: the whole `ptediff fuzz` path (workers sharing
//!   through the hub, the one writer committing to a fresh findings folder) for
//!   1 and 2 workers (and all cores, if more), and the speed-up over 1;
//! - time from an empty start until each corpus divergence is first found (median
//!   over seeds 1..=N);
//! - minimization time per finding.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::check::{signature_of, Kind, Pair, Signature};
use crate::corpus::{self, Expect};
use crate::findings::{campaign, FindingsDb};
use crate::fuzz::{self as engine, Options};
use crate::judge::causes::Cause;
use crate::minimize::minimize;
use crate::model::{Config, Restore};

/// Throughput of the engine for `ops`-op programs during `secs` seconds.
pub fn throughput(pair: Pair, ops: usize, secs: f64) -> (u64, f64) {
    let opts = Options {
        pair,
        seed: 1,
        max_ops: ops,
        time: Duration::from_secs_f64(secs),
        max_programs: None,
        fixed_len: true,
        oracle: false,
        realizable: false,
    };
    let stop = AtomicBool::new(false);
    let st = engine::fuzz_jobs(&opts, 1, &stop, |_| {});
    (st.programs, st.programs as f64 / st.elapsed.as_secs_f64())
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Programs/s of `ptediff fuzz --jobs N` (default options, the default pair)
/// during `secs` seconds, writing to a fresh temporary findings folder, and the
/// cores it really had (CPU time / wall time: less than N means other load).
pub fn fuzz_jobs_rate(jobs: usize, secs: f64) -> Result<(u64, f64, f64), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let mut db = FindingsDb::open(dir.path()).map_err(|e| e.to_string())?;
    let opts = Options {
        pair: Pair::default(),
        seed: 1,
        max_ops: 32,
        time: Duration::from_secs_f64(secs),
        max_programs: None,
        fixed_len: false,
        oracle: false,
        realizable: false,
    };
    let stop = AtomicBool::new(false);
    let cpu = cpu_time();
    let s = campaign::run(&opts, jobs, &mut db, &stop, |_| {});
    let cores = (cpu_time() - cpu).as_secs_f64() / s.stats.elapsed.as_secs_f64();
    if s.write_errors > 0 {
        return Err("findings could not be written".into());
    }
    Ok((s.stats.programs, s.stats.programs as f64 / s.stats.elapsed.as_secs_f64(), cores))
}

/// Seconds until the engine (seed `seed`; the oracle on for an `oracle.` slug)
/// first reports `slug`, and until it first reports a finding of the root cause
/// `cause` (each None if not within `limit`).
pub fn time_to_find(
    pair: Pair,
    sig: Signature,
    cause: Cause,
    seed: u64,
    limit: Duration,
) -> (Option<f64>, Option<f64>) {
    let opts = Options {
        pair,
        seed,
        max_ops: 32,
        time: limit,
        max_programs: None,
        fixed_len: false,
        oracle: sig.kind() == Kind::Oracle,
        realizable: false,
    };
    let stop = AtomicBool::new(false);
    let (mut at, mut cause_at) = (None, None);
    engine::fuzz_jobs(&opts, 1, &stop, |m| {
        let engine::Message::Found(e) = m else { return };
        let f = e.found;
        let t = f.at.as_secs_f64();
        if cause_at.is_none() && Cause::of(&f.signature) == cause {
            cause_at = Some(t);
        }
        if f.signature == sig && at.is_none() {
            at = Some(t);
            cause_at.get_or_insert(t);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (at, cause_at)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// libFuzzer's exec/s on the `differential` target for the pair `variants`
/// (findings go to a temporary folder; the target never stops on them), if
/// `cargo fuzz` is installed: `-s none` on stable.
pub fn libfuzzer_exec_per_sec(fuzz_dir: &std::path::Path, variants: &str, secs: u64) -> Result<f64, String> {
    let findings = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let out = std::process::Command::new("cargo")
        .current_dir(fuzz_dir)
        .env("PTEDIFF_VARIANTS", variants)
        .env("PTEDIFF_FINDINGS", findings.path())
        .env("PTEDIFF_PANIC_ON", "none")
        .args([
            "fuzz",
            "run",
            "-s",
            "none",
            "differential",
            "--",
            &format!("-max_total_time={secs}"),
            "-max_len=128",
            "-print_final_stats=1",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    // "stat::number_of_executed_units: N" and "stat::... " or "exec/s: N" lines.
    let execs = err
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|v| v.trim().parse::<f64>().ok());
    match execs {
        Some(n) => Ok(n / secs as f64),
        None => Err(format!(
            "cargo fuzz did not report its stats (is cargo-fuzz installed?): {}",
            err.lines().last().unwrap_or("")
        )),
    }
}

/// Run every benchmark and print a table.
pub fn run(corpus_dir: &std::path::Path, secs: f64, seeds: u64, limit: Duration, libfuzzer: bool, find_only: bool) {
    let same = Pair::new(Config::new(Restore::VmPageProt), Config::new(Restore::VmPageProt));
    println!("## ptediff bench ({} s per throughput run, {seeds} seeds, {} s cap per search)", secs, limit.as_secs());
    println!();
    println!("| measurement | value |");
    println!("|---|---|");
    if !find_only {
        throughput_rows(same, secs);
        jobs_rows(secs);
        minimize_and_explore_rows();
        if libfuzzer {
            libfuzzer_rows(corpus_dir, secs);
        }
    }
    if seeds > 0 {
        find_rows(corpus_dir, seeds, limit);
    }
}

/// Engine throughput: identical variants, the default pair, the default pair
/// with contracts off (issue: contracts on must keep >= 70 %), and the default
/// pair on v7.3 (profiles must stay within 10 % of v6.1).
fn throughput_rows(same: Pair, secs: f64) {
    let ops = 32usize;
    let (n, rate) = throughput(same, ops, secs);
    println!("| engine, {ops}-op programs, identical variants (1 core) | {rate:.0} programs/s ({n} programs) |");
    let (n, on) = throughput(Pair::default(), ops, secs);
    println!("| engine, {ops}-op programs, full-restore vs vm-page-prot, v6.1, contracts on (1 core, incl. minimization) | {on:.0} programs/s ({n} programs) |");
    let off = Pair { contracts: crate::judge::contracts::Contract::empty(), ..Pair::default() };
    let (n, rate) = throughput(off, ops, secs);
    println!(
        "| engine, same pair, contracts off | {rate:.0} programs/s ({n} programs); contracts on run at {:.0} % of it |",
        100.0 * on / rate
    );
    let mut v73 = Pair::default();
    v73.a.kernel = crate::model::Kernel::V73;
    v73.b.kernel = crate::model::Kernel::V73;
    let (n, rate) = throughput(v73, ops, secs);
    println!(
        "| engine, same pair on v7.3, contracts on | {rate:.0} programs/s ({n} programs); {:+.1} % against v6.1 |",
        100.0 * (rate - on) / on
    );
}

fn jobs_rows(secs: f64) {
    {
        // Alternate the job counts over three rounds and take medians, so that a
        // burst of other load does not fall on one of them only.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut jobs = vec![1, 2];
        if cores > 2 {
            jobs.push(cores);
        }
        let mut runs: Vec<Vec<(u64, f64, f64)>> = vec![Vec::new(); jobs.len()];
        let mut error = None;
        for _round in 0..3 {
            for (k, &j) in jobs.iter().enumerate() {
                match fuzz_jobs_rate(j, secs) {
                    Ok(r) => runs[k].push(r),
                    Err(e) => error = Some(e),
                }
            }
        }
        match error {
            Some(e) => println!("| `fuzz --jobs N` | not measured: {e} |"),
            None => {
                let med = |k: usize| {
                    let rate = median(runs[k].iter().map(|r| r.1).collect());
                    let used = median(runs[k].iter().map(|r| r.2).collect());
                    (rate, used)
                };
                let (one, _) = med(0);
                for (k, &j) in jobs.iter().enumerate() {
                    let (rate, used) = med(k);
                    let all: Vec<String> = runs[k].iter().map(|r| format!("{:.0}k", r.1 / 1e3)).collect();
                    let speedup = if k == 0 { String::new() } else { format!("{:.2}x --jobs 1; ", rate / one) };
                    println!(
                        "| `fuzz --jobs {j}` ({cores} cores), full-restore vs vm-page-prot, up to 32 ops, findings written (median of 3) | {rate:.0} programs/s ({speedup}runs {}; CPU {used:.2} cores) |",
                        all.join(", ")
                    );
                }
            }
        }
    }
}

fn minimize_and_explore_rows() {
    // Minimization time over divergent programs from the engine.
    let mut times = Vec::new();
    let pair = Pair::default();
    let mut raw = Vec::new();
    {
        use rand::{rngs::SmallRng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(5);
        while raw.len() < 50 {
            let mut s = crate::model::State::new();
            let mut ops = Vec::new();
            for _ in 0..32 {
                let op = engine::gen_op(&mut rng, &s);
                crate::model::step(&mut s, &pair.a, &op);
                ops.push(op);
            }
            let p = crate::op::Program::new(ops);
            if let Some(sig) = signature_of(&p, &pair) {
                raw.push((p, sig));
            }
        }
    }
    for (p, sig) in &raw {
        let t = Instant::now();
        let _ = minimize(p, &pair, sig);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let max = times.iter().cloned().fold(0.0, f64::max);
    println!(
        "| minimization of a 32-op divergent program (median / max of {}) | {:.2} ms / {:.2} ms |",
        times.len(),
        median(times.clone()),
        max
    );
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let opts = crate::explore::Options {
            pair: Pair::default(),
            depth: 6,
            threads,
            oracle: true,
            alphabet: crate::explore::default_alphabet(),
            memory_mb: crate::explore::DEFAULT_MEMORY_MB,
        };
        let stop = AtomicBool::new(false);
        let r = crate::explore::explore(&opts, &stop, |_, _, _, _| {});
        let t = r.elapsed.as_secs_f64().max(1e-9);
        println!(
            "| explore --depth 6, default alphabet ({threads} threads) | {:.2} s: {} states ({:.0}/s), {} transitions ({:.0}/s) |",
            t,
            r.states,
            r.states as f64 / t,
            r.transitions,
            r.transitions as f64 / t
        );
    }
}

fn libfuzzer_rows(corpus_dir: &std::path::Path, secs: f64) {
    {
        let dir = corpus_dir.parent().unwrap_or(std::path::Path::new(".")).join("fuzz");
        for (what, variants) in [
            ("identical variants", "vm-page-prot,vm-page-prot"),
            ("full-restore vs vm-page-prot, findings recorded", "full-restore,vm-page-prot"),
        ] {
            match libfuzzer_exec_per_sec(&dir, variants, secs.ceil() as u64) {
                Ok(r) => println!("| libFuzzer `-s none`, {what}, -max_len=128 (1 core) | {r:.0} exec/s |"),
                Err(e) => println!("| libFuzzer | not measured: {e} |"),
            }
        }
    }
}

/// Time to first find of every corpus divergence and oracle violation.
fn find_rows(corpus_dir: &std::path::Path, seeds: u64, limit: Duration) {
    for f in corpus::collect_files(&[corpus_dir.to_path_buf()]) {
        let Ok(r) = corpus::load(&f) else { continue };
        let mut wanted = Vec::new();
        if let Some(Expect::Diverges(slug)) = &r.expect {
            wanted.push(*slug);
        }
        if let Some(Some(slug)) = &r.expect_oracle {
            wanted.push(*slug);
        }
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let out = crate::check::check(&r.program, &r.pair);
        for slug in wanted {
            let oracle = slug.kind() == Kind::Oracle;
            let what = if oracle { "oracle violation" } else { "divergence" };
            let rep = if oracle { out.violation.as_ref() } else { out.divergence.as_ref() };
            let Some(cause) = rep.map(|r| Cause::of(&r.finding.signature)) else { continue };
            let (mut found, mut found_cause) = (Vec::new(), Vec::new());
            for seed in 1..=seeds {
                let (t, c) = time_to_find(r.pair, slug, cause, seed, limit);
                found.extend(t);
                found_cause.extend(c);
            }
            let summary = |v: &Vec<f64>| {
                let mut all = v.clone();
                all.extend(std::iter::repeat_n(f64::INFINITY, seeds as usize - v.len()));
                if v.len() * 2 > seeds as usize {
                    format!("{:.3} s ({}/{seeds} within {} s)", median(all), v.len(), limit.as_secs())
                } else {
                    format!("not found by most seeds within {} s ({}/{seeds})", limit.as_secs(), v.len())
                }
            };
            println!(
                "| time to first find `{name}` ({what}; median of {seeds} seeds) | its signature: {}; its cause `{cause}`: {} |",
                summary(&found),
                summary(&found_cause)
            );
        }
    }
}
