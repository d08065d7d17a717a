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
//! - [`report`]: what a maintainer acts on: mail, kselftest, format-patch files.
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
pub mod report;
pub mod search;

pub use judge::{check, oracle};
pub use kernel::{emit_c, kernel_check};
pub use program::{op, text};
pub use search::{explore, fuzz, generate, minimize};

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

/// The libFuzzer target's setup (`fuzz_target!(init: ...)`): read the
/// environment and open the findings folder; a bad setting exits with status 2
/// and a message naming it (before any input runs).
pub fn fuzz_init() {
    search::libfuzzer::init();
}

/// The libFuzzer target body: judge the program under the pair of
/// `PTEDIFF_VARIANTS` / `PTEDIFF_KERNEL`, record every finding in the findings
/// folder, and panic only as `PTEDIFF_PANIC_ON` asks (see [`search::libfuzzer`]).
pub fn fuzz_check(program: &Program) {
    search::libfuzzer::fuzz_check(program);
}
