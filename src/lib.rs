//! ptediff: differential fuzzing of Linux `remove_migration_pte()` restore variants
//! on a kernel-faithful model of v6.1 x86-64 memory management.
//!
//! - [`model`]: the kernel model (state + one function per kernel function).
//! - [`op`]: operations, programs, and their byte encoding.
//! - [`text`]: the program text format (print and parse).
//! - [`check`]: the differential oracle shared by every engine.
//! - [`minimize`]: structural minimizer keeping a divergence signature.
//! - [`engine`]: the built-in random + mutational fuzzer.
//! - [`corpus`]: reproducer files with expected outcomes, replay, findings.

pub mod bench;
pub mod check;
pub mod corpus;
pub mod emit_c;
pub mod engine;
pub mod explain;
pub mod explore;
pub mod kernel_check;
pub mod minimize;
pub mod model;
pub mod op;
pub mod oracle;
pub mod text;

pub use check::{check, Kind, Outcome, Pair};
pub use op::{Op, Program};

/// Decode a fuzzer input: program text if it starts with `#` and parses (so
/// `corpus/*.ptd` seed libFuzzer directly), otherwise the byte encoding.
pub fn fuzz_input(data: &[u8]) -> Program {
    if data.first() == Some(&b'#') {
        if let Ok(r) =
            std::str::from_utf8(data).map_err(|_| ()).and_then(|t| corpus::parse_reproducer(t).map_err(|_| ()))
        {
            return r.program;
        }
    }
    Program::from_bytes(data)
}

/// The libFuzzer target body: check the default pair (or `PTEDIFF_VARIANTS=A,B`
/// and `PTEDIFF_KERNEL`); on a divergence print the minimized reproducer and panic.
pub fn fuzz_check(program: &Program) {
    static PAIR: std::sync::OnceLock<Pair> = std::sync::OnceLock::new();
    let pair = PAIR.get_or_init(|| {
        let kernel =
            std::env::var("PTEDIFF_KERNEL").ok().and_then(|k| model::Kernel::parse(&k)).unwrap_or(model::Kernel::V61);
        let names = std::env::var("PTEDIFF_VARIANTS").unwrap_or_else(|_| "full-restore,vm-page-prot".into());
        let (a, b) = names.split_once(',').expect("PTEDIFF_VARIANTS=A,B");
        Pair {
            a: model::Config::parse_variant(a, kernel).expect("known variant"),
            b: model::Config::parse_variant(b, kernel).expect("known variant"),
        }
    });
    if let Some(sig) = check::signature_of(program, pair) {
        let small = minimize::minimize(program, pair, &sig);
        let out = check(&small, pair);
        eprintln!("{}", corpus::render(pair, &out, &small, corpus::RenderOpts { report: true, ..Default::default() }));
        panic!("ptediff: divergence {sig}");
    }
}
