//! `ptediff` command line. Exit codes:
//! - 0: success (fuzz ran; every replayed file met its expectation);
//! - 1: replay: at least one file did not meet its expectation (MISMATCH);
//! - 2: bad input (unreadable or malformed file, bad arguments);
//! - 3: fuzz with `--fail-on-finding`: a divergence was found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use ptediff::check::{check, Pair};
use ptediff::corpus::{self, FindingRecord, Verdict};
use ptediff::engine::{self, Found, Stats};
use ptediff::minimize::minimize;
use ptediff::model::{Config, Kernel, VARIANT_NAMES};
use ptediff::op::Program;

#[derive(Parser)]
#[command(
    name = "ptediff",
    version,
    about = "Differential fuzzing of Linux remove_migration_pte() restore variants on a v6.1 mm model"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Search for divergences with the built-in engine; write each minimized finding to --out.
    Fuzz {
        /// Wall-clock budget.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// PRNG seed (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// The two variants, `A,B` (names: pre-fix, full-restore, vm-page-prot, stable-6.1.y; optional +unuse-care).
        #[arg(long, default_value = "full-restore,vm-page-prot")]
        variants: String,
        /// Kernel profile: v6.1 or v6.1.y.
        #[arg(long, default_value = "v6.1")]
        kernel: String,
        /// Longest generated program.
        #[arg(long, default_value_t = 32)]
        max_ops: usize,
        /// Findings folder.
        #[arg(long, default_value = "findings")]
        out: PathBuf,
        /// Stop after this many programs.
        #[arg(long)]
        programs: Option<u64>,
        /// Exit with status 3 if anything was found.
        #[arg(long)]
        fail_on_finding: bool,
    },
    /// Replay reproducer files or folders (*.ptd) and compare with their `# expect:` header.
    Replay {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the full report for every file, not only mismatches.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Minimize a reproducer (keeping its divergence signature) and print it.
    Minimize {
        file: PathBuf,
        /// Write the result here (atomically) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn raw libFuzzer bytes (an artifact or corpus entry) into program text.
    Fmt {
        file: PathBuf,
        #[arg(long, default_value = "full-restore,vm-page-prot")]
        variants: String,
        #[arg(long, default_value = "v6.1")]
        kernel: String,
    },
    /// Measure engine throughput, minimization time and time-to-first-find of each corpus divergence.
    Bench {
        /// Seconds per throughput measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Seeds for the time-to-first-find medians.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Give up a search after this many seconds.
        #[arg(long, default_value_t = 60)]
        limit: u64,
        /// Corpus folder whose divergences are searched for.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
    /// Turn text programs into libFuzzer seed bytes (one file per input, named after it).
    Encode {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output folder (e.g. fuzz/corpus/differential).
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_pair(variants: &str, kernel: &str) -> Result<Pair, String> {
    let k = Kernel::parse(kernel)
        .ok_or_else(|| format!("unknown kernel `{kernel}` (known: v6.1, v6.1.y)"))?;
    let (a, b) = variants
        .split_once(',')
        .ok_or_else(|| format!("--variants takes two names `A,B`, got `{variants}`"))?;
    let p = |n: &str| {
        Config::parse_variant(n.trim(), k)
            .ok_or_else(|| format!("unknown variant `{n}` (known: {VARIANT_NAMES})"))
    };
    Ok(Pair { a: p(a)?, b: p(b)? })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Fuzz {
            seconds,
            seed,
            variants,
            kernel,
            max_ops,
            out,
            programs,
            fail_on_finding,
        } => {
            let pair = match parse_pair(&variants, &kernel) {
                Ok(p) => p,
                Err(e) => return usage(&e),
            };
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            });
            cmd_fuzz(
                pair,
                seed,
                seconds,
                max_ops,
                &out,
                programs,
                fail_on_finding,
            )
        }
        Cmd::Replay { paths, verbose } => cmd_replay(&paths, verbose),
        Cmd::Minimize { file, out } => cmd_minimize(&file, out.as_deref()),
        Cmd::Fmt {
            file,
            variants,
            kernel,
        } => {
            let pair = match parse_pair(&variants, &kernel) {
                Ok(p) => p,
                Err(e) => return usage(&e),
            };
            match std::fs::read(&file) {
                Ok(bytes) => {
                    let prog = ptediff::fuzz_input(&bytes);
                    print!(
                        "{}",
                        corpus::render(&pair, &check(&prog, &pair), &prog, None)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => usage(&format!("{}: {e}", file.display())),
            }
        }
        Cmd::Encode { paths, out } => cmd_encode(&paths, &out),
        Cmd::Bench {
            seconds,
            seeds,
            limit,
            corpus,
        } => {
            ptediff::bench::run(&corpus, seconds, seeds, Duration::from_secs(limit));
            ExitCode::SUCCESS
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("ptediff: {msg}");
    ExitCode::from(2)
}

fn cmd_fuzz(
    pair: Pair,
    seed: u64,
    seconds: u64,
    max_ops: usize,
    out: &Path,
    programs: Option<u64>,
    fail_on_finding: bool,
) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed));
    }
    let (na, nb) = pair.names();
    eprintln!("ptediff fuzz: {na} vs {nb} on {}, seed {seed}, up to {max_ops} ops, {seconds} s, findings in {}", pair.a.kernel.name(), out.display());
    let opts = engine::Options {
        pair,
        seed,
        max_ops,
        time: Duration::from_secs(seconds),
        max_programs: programs,
        fixed_len: false,
    };
    let mut records: Vec<FindingRecord> = Vec::new();
    let mut write_error = false;
    let save = |f: &Found, records: &mut Vec<FindingRecord>| -> std::io::Result<()> {
        let outcome = check(&f.program, &pair);
        let slug = f.signature.slug();
        let path = out.join(format!("{slug}.ptd"));
        corpus::write_atomic(
            &path,
            corpus::render(&pair, &outcome, &f.program, None).as_bytes(),
        )?;
        let d = outcome.divergence.as_ref();
        let rec = FindingRecord {
            signature: slug,
            variants: pair.names(),
            kernel: pair.a.kernel.name().into(),
            file: path.display().to_string(),
            first_step: d.map_or(0, |d| d.step + 1),
            first_op: d.map_or(String::new(), |d| d.op.clone()),
            pages: d.map_or(Vec::new(), |d| d.pages.clone()),
            program: f.program.to_string(),
            hits: f.hits,
        };
        match records.iter_mut().find(|r| r.signature == rec.signature) {
            Some(r) => *r = rec,
            None => records.push(rec),
        }
        let json = serde_json::to_vec_pretty(&records).expect("findings serialise");
        corpus::write_atomic(&out.join("findings.json"), &json)
    };
    let (found, stats) = engine::fuzz(
        &opts,
        &stop,
        |f, st: &Stats| {
            eprintln!(
                "[{:>6.1}s] new finding #{}: {} ({} ops)",
                st.elapsed.as_secs_f64(),
                records.len() + 1,
                f.signature,
                f.program.ops.len()
            );
            if let Err(e) = save(f, &mut records) {
                eprintln!("ptediff: cannot write finding to {}: {e}", out.display());
                write_error = true;
            }
        },
        |st, n| {
            let rate = st.programs as f64 / st.elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "[{:>6.1}s] {} programs ({:.0}/s), {} findings, pool {}",
                st.elapsed.as_secs_f64(),
                st.programs,
                rate,
                n,
                st.pool
            );
        },
    );
    // Final hit counts.
    for f in &found {
        if let Err(e) = save(f, &mut records) {
            eprintln!("ptediff: cannot write findings to {}: {e}", out.display());
            write_error = true;
        }
    }
    let rate = stats.programs as f64 / stats.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} programs in {:.1} s ({:.0} programs/s), {} distinct divergences",
        stats.programs,
        stats.elapsed.as_secs_f64(),
        rate,
        found.len()
    );
    for f in &found {
        println!(
            "  {:>8} hits  first at {:>6.2}s  {:>2} ops  {}",
            f.hits,
            f.at.as_secs_f64(),
            f.program.ops.len(),
            f.signature
        );
    }
    if write_error {
        return ExitCode::from(2);
    }
    if fail_on_finding && !found.is_empty() {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

fn cmd_replay(paths: &[PathBuf], verbose: bool) -> ExitCode {
    let files = corpus::collect_files(paths);
    let (mut ok, mut mismatch, mut bad) = (0, 0, 0);
    for f in &files {
        match corpus::load(f) {
            Err(e) => {
                println!("ERROR     {e}");
                bad += 1;
            }
            Ok(r) => {
                let (v, out) = corpus::replay(&r);
                match v {
                    Verdict::Pass | Verdict::Diverges => {
                        let tag = if v == Verdict::Pass {
                            "PASS"
                        } else {
                            "DIVERGES"
                        };
                        println!("{tag:<9} {}", f.display());
                        if verbose {
                            print!("{}", indent(&out.report()));
                        }
                        ok += 1;
                    }
                    Verdict::Mismatch(why) => {
                        println!("MISMATCH  {}: {why}", f.display());
                        print!("{}", indent(&out.report()));
                        mismatch += 1;
                    }
                }
            }
        }
    }
    println!(
        "{ok} met expectations, {mismatch} mismatched, {bad} unreadable ({} files)",
        files.len()
    );
    if bad > 0 {
        ExitCode::from(2)
    } else if mismatch > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("          {l}\n")).collect()
}

fn cmd_minimize(file: &Path, out: Option<&Path>) -> ExitCode {
    let r = match corpus::load(file) {
        Ok(r) => r,
        Err(e) => return usage(&e.to_string()),
    };
    let before = check(&r.program, &r.pair);
    let Some(d) = before.divergence else {
        eprintln!(
            "ptediff: {}: the variants do not diverge; nothing to minimize",
            file.display()
        );
        return ExitCode::from(1);
    };
    let small = minimize(&r.program, &r.pair, &d.signature);
    let text = corpus::render(&r.pair, &check(&small, &r.pair), &small, None);
    eprintln!(
        "minimized {} ops to {}",
        r.program.ops.len(),
        small.ops.len()
    );
    match out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(o) => match corpus::write_atomic(o, text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => usage(&format!("{}: {e}", o.display())),
        },
    }
}

fn cmd_encode(paths: &[PathBuf], out: &Path) -> ExitCode {
    let mut bad = false;
    for f in corpus::collect_files(paths) {
        match corpus::load(&f) {
            Err(e) => {
                eprintln!("ptediff: {e}");
                bad = true;
            }
            Ok(r) => {
                let name = f
                    .file_stem()
                    .map_or("input".into(), |s| s.to_string_lossy().into_owned());
                let bytes = r.program.to_bytes();
                debug_assert_eq!(Program::from_bytes(&bytes), r.program);
                if let Err(e) = corpus::write_atomic(&out.join(name), &bytes) {
                    eprintln!("ptediff: {}: {e}", out.display());
                    bad = true;
                }
            }
        }
    }
    if bad {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
