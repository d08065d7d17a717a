//! ptediff: differential fuzzing of Linux `remove_migration_pte()` restore variants
//! on a kernel-faithful model of x86-64 memory management (profiles v6.1 to v7.3).
//!
//! The architecture, folder by folder:
//! - [`model`]: the kernel model (state + one function per kernel function).
//! - [`program`]: operations, their byte encoding ([`op`]) and text form ([`text`]).
//! - [`judge`]: the differential check and signatures ([`check`]), the write-trap
//!   oracle ([`oracle`]).
//! - [`search`]: the engines: built-in fuzzer ([`fuzz`]), exhaustive [`explore`],
//!   [`minimize`].
//! - [`kernel`]: the real-kernel side: C reproducers ([`emit_c`]) and QEMU runs
//!   ([`kernel_check`]).
//! - [`corpus`]: reproducer files with expected outcomes, replay.
//! - [`findings`]: the findings database (any number of writers, mergeable).
//! - [`explain`], [`bench`]: traces and measurements; [`cli`]: the command line.

pub mod bench;
pub mod cli;
pub mod corpus;
pub mod explain;
pub mod findings;
pub mod judge;
pub mod kernel;
pub mod model;
pub mod program;
pub mod search;

pub use judge::{check, oracle};
pub use kernel::{emit_c, kernel_check};
pub use program::{op, text};
pub use search::{explore, fuzz, minimize};

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
