//! libFuzzer target: one differential check of two restore variants per input.
//!
//! Input formats (decoded by `ptediff::fuzz_input`):
//! - starts with `#`: a text program in the corpus format (`# variants: ...` header,
//!   then one op per line, e.g. `mmap(p0, 0, 1, rw-, memfd, shared, 0)`), so the
//!   `.ptd` files in `corpus/` can seed libFuzzer directly;
//! - anything else: the compact byte encoding (`ptediff encode` writes it).
//!
//! Environment, read once by `ptediff::fuzz_check`:
//! - `PTEDIFF_VARIANTS=A,B` — the pair to compare (default `full-restore,vm-page-prot`);
//! - `PTEDIFF_KERNEL` — `v6.1` (default) or `v6.1.y`.
//!
//! On a divergence the minimized reproducer is printed to stderr and the target
//! panics, so libFuzzer saves the input under `fuzz/artifacts/differential/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = ptediff::fuzz_input(data);
    ptediff::fuzz_check(&p);
});
