//! libFuzzer target: one differential check of two restore variants per input,
//! recorded in the same findings database as `ptediff fuzz`.
//!
//! Input formats (decoded by `ptediff::fuzz_input`):
//! - starts with `#`: a text program in the corpus format (`# variants: ...` header,
//!   then one op per line, e.g. `mmap(p0, 0, 1, rw-, memfd, shared, 0)`), so the
//!   `.ptd` files in `corpus/` can seed libFuzzer directly;
//! - anything else: the compact byte encoding (`ptediff encode` writes it).
//!
//! Environment, read once per process by `ptediff::fuzz_init` (see
//! `ptediff::search::libfuzzer`): `PTEDIFF_VARIANTS=A,B`, `PTEDIFF_KERNEL`,
//! `PTEDIFF_FINDINGS` (default: the repository's `findings/`),
//! `PTEDIFF_PANIC_ON=none|new|harmful|any` (default `none`: record everything,
//! never stop), `PTEDIFF_ORACLE=1`.
//!
//! Every finding is minimized once and written to the findings folder; the target
//! panics (libFuzzer then saves the input under `fuzz/artifacts/differential/`)
//! only as `PTEDIFF_PANIC_ON` asks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        ptediff::fuzz_init();
    },
    |data: &[u8]| {
        let p = ptediff::fuzz_input(data);
        ptediff::fuzz_check(&p);
    }
);
