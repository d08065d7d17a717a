//! The `ptediff` command line: argument parsing and one function per subcommand.
//! Exit codes:
//! - 0: success (fuzz ran; every replayed file met its expectation);
//! - 1: replay: at least one file did not meet its expectation (MISMATCH);
//!   minimize/export: the program has no finding of the requested kind;
//! - 2: bad input (unreadable or malformed file, bad arguments, unwritable output);
//! - 3: fuzz with `--fail-on-finding`: something new was found.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod findings;
mod kernel;
mod kernel_test;
mod report;

use crate::check::{analyze, check, Kind, Pair};
use crate::corpus::{self, RenderOpts, Verdict};
use crate::fuzz as engine;
use crate::minimize::minimize;
use crate::model::{Config, Kernel, VARIANT_NAMES};
use crate::op::Program;

#[derive(Parser)]
#[command(
    name = "ptediff",
    version,
    about = "Differential fuzzing of Linux remove_migration_pte() restore variants on a kernel-faithful mm model (profiles v6.1 to v7.3)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Search for divergences with the built-in engine; write each minimized finding to --out.
    Fuzz {
        /// Worker threads (default: all cores). They share coverage, the mutation pool and known signatures.
        #[arg(long)]
        jobs: Option<usize>,
        /// Wall-clock budget.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// PRNG seed (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// The two variants, `A,B` (names: pre-fix, full-restore, vm-page-prot, stable-6.1.y; optional +unuse-care and +clear-refs-fix).
        #[arg(long, default_value = "full-restore,vm-page-prot")]
        variants: String,
        /// Kernel profile: v6.1, v6.1.y, v6.12, v6.18 or v7.3.
        #[arg(long, default_value = "v6.1")]
        kernel: String,
        /// Contracts judged: all, none (the write-trap proxy alone) or letters like U+S.
        #[arg(long, default_value = "all")]
        contracts: String,
        /// Longest generated program.
        #[arg(long, default_value_t = 32)]
        max_ops: usize,
        /// Findings folder (a database any number of runs may share: existing findings are kept and counted).
        #[arg(long, default_value = "findings")]
        out: PathBuf,
        /// Stop after this many programs.
        #[arg(long)]
        programs: Option<u64>,
        /// Also report oracle violations: unsafe PTEs both variants agree on.
        #[arg(long)]
        oracle: bool,
        /// Only generate programs that `emit-c` can turn into C reproducers.
        #[arg(long)]
        realizable: bool,
        /// Exit with status 3 if anything new was found.
        #[arg(long)]
        fail_on_finding: bool,
        /// Print every finding as it is found, and this run's findings at the end.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Replay reproducer files or folders (*.ptd) and compare with their `# expect:` headers.
    Replay {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the full report for every file, not only mismatches.
        #[arg(long, short)]
        verbose: bool,
        /// Rewrite each file's `# expect:`/`# expect-oracle:` lines to its current outcome.
        #[arg(long)]
        bless: bool,
    },
    /// Bounded exhaustive search: every divergence (and oracle violation) up to --depth ops, shortest programs.
    Explore {
        #[arg(long, default_value_t = 4)]
        depth: usize,
        #[arg(long, default_value = "full-restore,vm-page-prot")]
        variants: String,
        #[arg(long, default_value = "v6.1")]
        kernel: String,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Do not look for oracle violations.
        #[arg(long)]
        no_oracle: bool,
        /// Contracts judged: all, none (the write-trap proxy alone) or letters like U+S.
        #[arg(long, default_value = "all")]
        contracts: String,
        /// Print the alphabet and exit.
        #[arg(long)]
        alphabet: bool,
        /// The THP alphabet: one MADV_HUGEPAGE PMD (pages 0-3) and the ops that
        /// split, migrate, protect, free and copy it.
        #[arg(long)]
        thp: bool,
        /// The tracking alphabet: an async uffd-wp write watch over two anonymous
        /// pages KSM may merge, PAGEMAP_SCAN, and the ops that zap, migrate,
        /// reclaim, copy and track them.
        #[arg(long, conflicts_with = "thp")]
        tracking: bool,
        /// The guard alphabet: sync uffd-wp over two shared memfd pages with
        /// guard regions (v6.13+), and the ops that write, zap, migrate, reclaim
        /// and copy them.
        #[arg(long, conflicts_with_all = ["thp", "tracking"])]
        guard: bool,
        /// Memory for the states a level keeps (MiB); past it, states are replayed from the root.
        #[arg(long, default_value_t = crate::explore::DEFAULT_MEMORY_MB)]
        memory_mb: usize,
        /// Also record every finding in this findings folder (as `fuzz` does).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a standalone C reproducer (kselftest style) of a program, with each kernel profile's predictions.
    EmitC {
        file: PathBuf,
        /// Write it here (atomically) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A race reproducer for a program with a migration window (rounds of the
        /// window's ops racing move_pages); by default only when the program needs it.
        #[arg(long)]
        race: bool,
        /// Race reproducer budget: rounds.
        #[arg(long, default_value_t = 20000)]
        rounds: u32,
        /// Race reproducer budget: seconds.
        #[arg(long, default_value_t = 8)]
        race_seconds: u32,
    },
    /// Build the C reproducers, boot real kernels under QEMU, and print the observed-vs-predicted matrix.
    KernelCheck {
        #[arg(default_value = "corpus")]
        paths: Vec<PathBuf>,
        /// Kernels (as set up by scripts/kernel-check-setup.sh).
        #[arg(long, default_value = "v6.1.y,v6.12,v6.18,v7.3")]
        kernels: String,
        /// Work folder for sources, binaries and console logs.
        #[arg(long, default_value = "target/kernel-check/work")]
        work: PathBuf,
        /// Results file the run is recorded in (read by `ptediff affected`).
        #[arg(long, default_value = "target/kernel-check/results.json")]
        results: PathBuf,
        /// Race reproducers (programs with a migration window): rounds per file.
        #[arg(long, default_value_t = 20000)]
        race_rounds: u32,
        /// Race reproducers: seconds per file (the guest allows 20 s per binary).
        #[arg(long, default_value_t = 8)]
        race_seconds: u32,
    },
    /// Build a profile's Debian kernel with and without a patch, run kernel-check on both, print what changed.
    KernelTest(kernel_test::Args),
    /// Which kernel profiles have each hole (harmful divergence, oracle violation) of
    /// these reproducers, and whether the real kernels confirm it.
    Affected {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// kernel-check results to read.
        #[arg(long, default_value = "target/kernel-check/results.json")]
        results: PathBuf,
    },
    /// Write random realizable programs (for `kernel-check` of the model beyond the corpus).
    Sample {
        #[arg(long, default_value_t = 50)]
        count: usize,
        #[arg(long, default_value_t = 12)]
        max_ops: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Every program starts from two THP-enabled PMDs of anonymous memory
        /// (pages 0-7, MADV_HUGEPAGE), the first one faulted in by a store; its
        /// reproducer runs in THP mode.
        #[arg(long)]
        thp: bool,
        /// Every program starts from a write watch (an async uffd-wp context over
        /// anonymous pages 0-3 and shared memfd pages 4-7, protected after a
        /// store to page 1) and ends with a full PAGEMAP_SCAN of pages 0-11.
        #[arg(long, conflicts_with = "thp")]
        tracking: bool,
    },
    /// Step-by-step, side-by-side trace of a reproducer.
    Explain {
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Root causes of a findings folder, harmful first: one line each (buckets, hits, shortest reproducer).
    Triage {
        dir: PathBuf,
        /// Also list each cause's findings (verdict, hits, length, variants, title, file).
        #[arg(long)]
        buckets: bool,
    },
    /// Combine findings folders (from several machines) into --out; merging again changes nothing.
    Merge {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The folder to merge into (created if missing; may be one of DIRS).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a corpus entry for a reproducer (minimized, with its expected outcome and verdict).
    Export {
        file: PathBuf,
        /// Export its oracle violation rather than its divergence.
        #[arg(long)]
        oracle: bool,
    },
    /// Minimize a reproducer (keeping its signature) and print it.
    Minimize {
        file: PathBuf,
        /// Minimize its oracle violation rather than its divergence.
        #[arg(long)]
        oracle: bool,
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
        /// Seeds for the time-to-first-find medians (0: no time-to-first-find rows).
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Give up a search after this many seconds.
        #[arg(long, default_value_t = 60)]
        limit: u64,
        /// Corpus folder whose divergences are searched for.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
        /// Also measure libFuzzer exec/s (needs `cargo install cargo-fuzz`; builds fuzz/ on first use).
        #[arg(long)]
        libfuzzer: bool,
        /// Only the time-to-first-find rows (of --corpus).
        #[arg(long)]
        find_only: bool,
    },
    /// Write a report a kernel maintainer can act on (mail.txt, reproducer, kselftest, format-patch files).
    Report(report::Args),
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
        .ok_or_else(|| format!("unknown kernel `{kernel}` (known: {})", crate::model::KERNEL_NAMES))?;
    let (a, b) =
        variants.split_once(',').ok_or_else(|| format!("--variants takes two names `A,B`, got `{variants}`"))?;
    let p = |n: &str| {
        Config::parse_variant(n.trim(), k).ok_or_else(|| format!("unknown variant `{n}` (known: {VARIANT_NAMES})"))
    };
    Ok(Pair::new(p(a)?, p(b)?))
}

/// Parse the command line and run the subcommand.
pub fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns a closed pipe into a panic on the next
    // print; a command-line tool should just stop.
    // SAFETY: setting a signal disposition to SIG_DFL before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Fuzz {
            jobs,
            seconds,
            seed,
            variants,
            kernel,
            contracts,
            max_ops,
            out,
            programs,
            oracle,
            realizable,
            fail_on_finding,
            verbose,
        } => {
            let pair = match parse_pair(&variants, &kernel).and_then(|p| with_contracts(p, &contracts)) {
                Ok(p) => p,
                Err(e) => return usage(&e),
            };
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
            });
            let opts = engine::Options {
                pair,
                seed,
                max_ops,
                time: Duration::from_secs(seconds),
                max_programs: programs,
                fixed_len: false,
                oracle,
                realizable,
            };
            let jobs = match jobs {
                Some(0) => return usage("--jobs takes a number of workers, at least 1"),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            findings::cmd_fuzz(&opts, jobs, &out, fail_on_finding, verbose)
        }
        Cmd::Replay { paths, verbose, bless } => cmd_replay(&paths, verbose, bless),
        Cmd::Explain { file, json } => match corpus::load(&file) {
            Err(e) => usage(&e.to_string()),
            Ok(r) => {
                let t = crate::explain::trace(&r.program, &r.pair);
                if json {
                    println!("{}", serde_json::to_string_pretty(&t).expect("trace serialises"));
                } else {
                    print!("{}", crate::explain::render(&t, std::io::stdout().is_terminal()));
                }
                ExitCode::SUCCESS
            }
        },
        Cmd::Triage { dir, buckets } => findings::cmd_triage(&dir, buckets),
        Cmd::Merge { dirs, out } => findings::cmd_merge(&dirs, &out),
        Cmd::Sample { count, max_ops, seed, out, thp, tracking } => {
            let start = match (thp, tracking) {
                (true, _) => crate::fuzz::SampleStart::Thp,
                (_, true) => crate::fuzz::SampleStart::Tracking,
                _ => crate::fuzz::SampleStart::Empty,
            };
            let tag = match start {
                crate::fuzz::SampleStart::Thp => "-thp",
                crate::fuzz::SampleStart::Tracking => "-tracking",
                crate::fuzz::SampleStart::Empty => "",
            };
            let progs = crate::fuzz::sample_realizable(seed, count, max_ops, start);
            let pair = Pair::default();
            for (i, p) in progs.iter().enumerate() {
                let text = corpus::render(&pair, &check(p, &pair), p, RenderOpts::default());
                if let Err(e) =
                    corpus::write_atomic(&out.join(format!("sample{tag}-{seed}-{i:03}.ptd")), text.as_bytes())
                {
                    return usage(&format!("{}: {e}", out.display()));
                }
            }
            println!("{} programs in {}", progs.len(), out.display());
            ExitCode::SUCCESS
        }
        Cmd::Report(a) => report::cmd_report(a),
        Cmd::EmitC { file, out, race, rounds, race_seconds } => {
            let r = match corpus::load(&file) {
                Ok(r) => r,
                Err(e) => return usage(&e.to_string()),
            };
            let name = file.file_stem().map_or("reproducer".into(), |s| s.to_string_lossy().into_owned());
            let emitted = match crate::emit_c::emit_c(&r.program, &name) {
                Ok(c) if !race => Ok(c),
                // A migration window: race for it.
                Ok(_) | Err(_) if race || crate::emit_c::race::window(&r.program).is_ok() => {
                    crate::emit_c::race::emit_race(&r.program, &name, rounds, race_seconds)
                }
                e => e,
            };
            match emitted {
                Err(e) => {
                    eprintln!("ptediff: {}: cannot be realised on a real kernel: {e}", file.display());
                    ExitCode::from(1)
                }
                Ok(c) => match out {
                    None => {
                        print!("{c}");
                        ExitCode::SUCCESS
                    }
                    Some(o) => match corpus::write_atomic(&o, c.as_bytes()) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => usage(&format!("{}: {e}", o.display())),
                    },
                },
            }
        }
        Cmd::KernelCheck { paths, kernels, work, results, race_rounds, race_seconds } => {
            let o = crate::kernel_check::Options {
                files: paths,
                kernels: kernels.split(',').map(|s| s.trim().to_string()).collect(),
                work,
                scripts: crate::kernel_check::default_scripts(),
                root: crate::kernel_check::default_root(),
                results: Some(results),
                race_rounds,
                race_seconds,
            };
            match crate::kernel_check::run(&o) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(n) => {
                    println!("{n} reproducer(s) where a kernel disagrees with its profile or did not run");
                    ExitCode::from(1)
                }
                Err(e) => usage(&e),
            }
        }
        Cmd::Affected { paths, json, results } => kernel::cmd_affected(&paths, json, &results),
        Cmd::KernelTest(a) => kernel_test::cmd_kernel_test(a),
        Cmd::Explore {
            depth,
            variants,
            kernel,
            threads,
            no_oracle,
            contracts,
            alphabet,
            thp,
            tracking,
            guard,
            memory_mb,
            out,
        } => {
            let pair = match parse_pair(&variants, &kernel).and_then(|p| with_contracts(p, &contracts)) {
                Ok(p) => p,
                Err(e) => return usage(&e),
            };
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let opts = crate::explore::Options {
                pair,
                depth,
                threads,
                oracle: !no_oracle,
                alphabet: if thp {
                    crate::explore::thp_alphabet()
                } else if tracking {
                    crate::explore::tracking_alphabet()
                } else if guard {
                    crate::explore::guard_alphabet()
                } else {
                    crate::explore::default_alphabet()
                },
                memory_mb,
            };
            if alphabet {
                print!("{}", crate::explore::describe(&opts.alphabet));
                return ExitCode::SUCCESS;
            }
            cmd_explore(&opts, out.as_deref())
        }
        Cmd::Export { file, oracle } => cmd_export(&file, kind_of(oracle)),
        Cmd::Minimize { file, oracle, out } => cmd_minimize(&file, kind_of(oracle), out.as_deref()),
        Cmd::Fmt { file, variants, kernel } => {
            let pair = match parse_pair(&variants, &kernel) {
                Ok(p) => p,
                Err(e) => return usage(&e),
            };
            match std::fs::read(&file) {
                Ok(bytes) => {
                    let prog = crate::fuzz_input(&bytes);
                    print!(
                        "{}",
                        corpus::render(
                            &pair,
                            &check(&prog, &pair),
                            &prog,
                            RenderOpts { report: true, ..Default::default() }
                        )
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => usage(&format!("{}: {e}", file.display())),
            }
        }
        Cmd::Encode { paths, out } => cmd_encode(&paths, &out),
        Cmd::Bench { seconds, seeds, limit, corpus, libfuzzer, find_only } => {
            crate::bench::run(&corpus, seconds, seeds, Duration::from_secs(limit), libfuzzer, find_only);
            ExitCode::SUCCESS
        }
    }
}

/// Judge `pair` by these contracts (`all`, `none`, `U+S`, ...).
fn with_contracts(mut pair: Pair, contracts: &str) -> Result<Pair, String> {
    let c = corpus::parse_contracts(contracts).ok_or_else(|| {
        format!("unknown contracts `{contracts}` (all, none, or letters joined by `+`: U uffd-wp, S soft-dirty, C COW, N writenotify, P mprotect)")
    })?;
    pair.contracts = c;
    Ok(pair)
}

fn kind_of(oracle: bool) -> Kind {
    if oracle {
        Kind::Oracle
    } else {
        Kind::Divergence
    }
}

/// A flag that Ctrl-C sets, so long runs stop cleanly and still report.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
    stop
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("ptediff: {msg}");
    ExitCode::from(2)
}

fn cmd_replay(paths: &[PathBuf], verbose: bool, bless: bool) -> ExitCode {
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
                if bless {
                    let text = std::fs::read_to_string(f).unwrap_or_default();
                    if let Err(e) = corpus::bless(f, &text, &out) {
                        println!("ERROR     {}: {e}", f.display());
                        bad += 1;
                        continue;
                    }
                    println!("BLESSED   {}", f.display());
                    ok += 1;
                    continue;
                }
                match v {
                    Verdict::Pass | Verdict::Diverges => {
                        let tag = if v == Verdict::Pass { "PASS" } else { "DIVERGES" };
                        let extra = match (&out.divergence, &out.violation) {
                            (Some(d), _) => format!("  ({})", d.finding.signature.verdict),
                            (None, Some(_)) => "  (oracle violation)".to_string(),
                            _ => String::new(),
                        };
                        println!("{tag:<9} {}{extra}", f.display());
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
    println!("{ok} met expectations, {mismatch} mismatched, {bad} unreadable ({} files)", files.len());
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

fn cmd_explore(opts: &crate::explore::Options, out: Option<&Path>) -> ExitCode {
    use indicatif::{ProgressBar, ProgressStyle};
    let stop = stop_on_ctrl_c();
    let mut db = match out.map(|d| crate::findings::FindingsDb::open_as(d, &crate::findings::new_run_id("explore"))) {
        None => None,
        Some(Ok(db)) => Some(db),
        Some(Err(e)) => return usage(&e.to_string()),
    };
    let (na, nb) = opts.pair.names();
    println!(
        "explore: {na} vs {nb} on {}, depth {}, {} threads, oracle {}",
        opts.pair.a.kernel.name(),
        opts.depth,
        opts.threads,
        if opts.oracle { "on" } else { "off" }
    );
    println!("alphabet ({} ops; p1 only by fork):", opts.alphabet.len());
    print!("{}", crate::explore::describe(&opts.alphabet));
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("template"));
    let report = crate::explore::explore(opts, &stop, |d, frontier, states, rate| {
        bar.set_message(format!("depth {d}, frontier {frontier}, {states} states, {rate:.0} transitions/s"));
        bar.tick();
    });
    bar.finish_and_clear();
    println!();
    println!("| depth | new states | transitions | time |");
    println!("|---|---|---|---|");
    for l in &report.levels {
        println!("| {} | {} | {} | {:.2} s |", l.depth, l.states, l.transitions, l.elapsed.as_secs_f64());
    }
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} distinct states, {} transitions in {:.2} s ({:.0} states/s, {:.0} transitions/s); fingerprint collision probability < {:.1e}",
        report.states,
        report.transitions,
        secs,
        report.states as f64 / secs,
        report.transitions as f64 / secs,
        report.collision_probability()
    );
    if report.interrupted {
        println!("interrupted: the search is incomplete");
    }
    if report.findings.is_empty() {
        if !report.interrupted {
            println!(
                "no divergence{} up to depth {} over this alphabet",
                if opts.oracle { " or oracle violation" } else { "" },
                opts.depth
            );
        }
    } else {
        println!("{} findings, each with a shortest program:", report.findings.len());
        for (sig, prog, title) in &report.findings {
            println!();
            println!("# {title}");
            println!("# signature: {sig}");
            println!("# cause: {}", crate::judge::causes::Cause::of(sig));
            print!("{prog}");
        }
    }
    if let (Some(db), Some(dir)) = (&mut db, out) {
        for (sig, prog, _) in &report.findings {
            db.hit(&opts.pair, prog, sig.kind(), 1);
        }
        match db.commit() {
            Ok(c) => println!(
                "\nrecorded in {}: {} new, {} files written; `ptediff triage {}` shows their causes",
                dir.display(),
                c.created.len(),
                c.written,
                dir.display()
            ),
            Err(e) => {
                eprintln!("ptediff: cannot record the findings: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

fn minimized(file: &Path, kind: Kind) -> Result<(crate::corpus::Reproducer, Program), ExitCode> {
    let r = corpus::load(file).map_err(|e| usage(&e.to_string()))?;
    let Some(f) = analyze(&r.program, &r.pair, kind) else {
        let what = if kind == Kind::Oracle { "no oracle violation" } else { "the variants do not diverge" };
        eprintln!("ptediff: {}: {what}; nothing to do", file.display());
        return Err(ExitCode::from(1));
    };
    let small = minimize(&r.program, &r.pair, &f.signature);
    eprintln!("minimized {} ops to {}", r.program.ops.len(), small.ops.len());
    Ok((r, small))
}

fn cmd_minimize(file: &Path, kind: Kind, out: Option<&Path>) -> ExitCode {
    let (r, small) = match minimized(file, kind) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let text = corpus::render(
        &r.pair,
        &check(&small, &r.pair),
        &small,
        RenderOpts { report: true, expect_oracle: kind == Kind::Oracle, ..Default::default() },
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

fn cmd_export(file: &Path, kind: Kind) -> ExitCode {
    let (r, small) = match minimized(file, kind) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let note = "Exported by `ptediff export`: explain here what this case shows.";
    print!(
        "{}",
        corpus::render(
            &r.pair,
            &check(&small, &r.pair),
            &small,
            RenderOpts { note: Some(note), expect_oracle: true, ..Default::default() }
        )
    );
    ExitCode::SUCCESS
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
                let name = f.file_stem().map_or("input".into(), |s| s.to_string_lossy().into_owned());
                if let Err(e) = corpus::write_atomic(&out.join(name), &r.program.to_bytes()) {
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
