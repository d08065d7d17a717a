//! `ptediff kernel-test`: a kernel patch against the unpatched build of the same
//! Debian source, on the kernel-check reproducers.

use std::path::PathBuf;
use std::process::ExitCode;

use super::usage;
use crate::kernel::kernel_build;
use crate::kernel_check::{default_root, default_scripts};

/// Build a profile's Debian kernel source with and without a patch
/// (scripts/kernel-build.sh), run kernel-check on both and print the reproducers
/// whose result changed.
#[derive(clap::Args)]
pub struct Args {
    /// Reproducer files or folders (what kernel-check runs).
    #[arg(default_value = "corpus")]
    paths: Vec<PathBuf>,
    /// The profile whose Debian source is built: v6.1.y, v6.12, v6.18 or v7.3.
    #[arg(long)]
    kernel: String,
    /// The patch (unified diff, applied with `patch -p1` to the Debian source).
    #[arg(long)]
    patch: PathBuf,
    /// A patch for both builds (repeatable), e.g. patches/debug-migration-window/v7.3.patch
    /// to hold migrations open for race reproducers; the kernels are then
    /// PROFILE+<with> and PROFILE+<with>.<name>.
    #[arg(long)]
    with: Vec<PathBuf>,
    /// Kernel name suffix of the patched build (default: the patch file name
    /// without .patch/.diff); the kernels are PROFILE+base and PROFILE+NAME.
    #[arg(long)]
    name: Option<String>,
    /// Work folder (sources, binaries, console logs, results.json per patched kernel).
    #[arg(long, default_value = "target/kernel-check/kernel-test")]
    work: PathBuf,
}

/// Exit 0: both kernels ran every reproducer (the changed rows are the answer);
/// 1: a kernel did not boot or did not finish a reproducer; 2: bad input or a
/// failed build.
pub fn cmd_kernel_test(a: Args) -> ExitCode {
    let o = kernel_build::Options {
        kernel: a.kernel,
        patch: a.patch,
        with: a.with,
        name: a.name,
        files: a.paths,
        work: a.work,
        scripts: default_scripts(),
        root: default_root(),
    };
    match kernel_build::run(&o) {
        Err(e) => usage(&e),
        Ok(out) if out.ran < out.total => {
            println!(
                "{} of {} reproducer(s) did not run on both {} and {}",
                out.total - out.ran,
                out.total,
                out.base,
                out.patched
            );
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
    }
}
