//! `emit-c` kselftest mode: the reproducer of a program as a test for
//! tools/testing/selftests/mm, in kselftest.h's TAP form. It is the same C
//! program (the same ops, the same probe) with three additions:
//! - it skips cleanly (`ksft_exit_skip`) where the kernel or the machine lacks
//!   what the program needs ([`Need`]: root, two NUMA nodes, a zram swap
//!   device, THP, soft-dirty, userfaultfd, the ramfs mount);
//! - it judges itself: what user space is owed (the contracts, per kernel
//!   version where they differ) is compiled in, and every observation is
//!   checked against it as it is made (a pagemap read after a step, a load, the
//!   end-of-program probe of every page), in the process that makes it;
//! - its PTEDIFF lines become TAP diagnostics (`# PTEDIFF-...`), and the one
//!   test's result line says pass, fail (a contract broken: which, where) or
//!   skip (the kernel did not give the program what it needs, e.g. no THP).
//!
//! A race reproducer (a program with a migration window) fails when a round
//! that ran inside the window broke the contract, passes when rounds ran
//! inside it and none did, and skips when none ran inside it.

use std::fmt::Write as _;

use crate::model::Kernel;
use crate::op::{Advice, FileName, Op, Program, Target};

use super::{Trace, Unrealizable, PROFILES};

/// How a kernel tree's mm selftests include kselftest.h.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// The `#include` argument: `"kselftest.h"` (7.x) or `"../kselftest.h"`.
    pub include: &'static str,
}

impl Tree {
    /// The tree of a profile's Debian source.
    pub fn of(k: Kernel) -> Tree {
        match k {
            Kernel::V73 => Tree { include: "\"kselftest.h\"" },
            _ => Tree { include: "\"../kselftest.h\"" },
        }
    }

    /// Mainline's (the newest profile's).
    pub fn upstream() -> Tree {
        Tree::of(Kernel::V73)
    }
}

/// What a program needs of the machine it runs on; without it the test skips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// move_pages(MPOL_MF_MOVE_ALL), swapoff, the THP and window-hook settings.
    Root,
    /// A second node to migrate to.
    TwoNodes,
    /// Reclaim goes to a synchronous swap device, as the model's.
    Zram,
    /// Transparent huge pages.
    Thp,
    /// CONFIG_MEM_SOFT_DIRTY (every probe reads it).
    SoftDirty,
    /// userfaultfd with write-protect.
    Uffd,
    /// The ramfs file's mount.
    Ramfs,
    /// KSM's sysfs controls (CONFIG_KSM).
    Ksm,
    /// MADV_GUARD_INSTALL (v6.13; file mappings v6.15).
    Guard,
}

impl Need {
    /// The C statement that skips the test without it.
    fn c_check(self) -> &'static str {
        match self {
            Need::Root => "if (geteuid())\n\t\tksft_exit_skip(\"needs root\\n\");",
            Need::TwoNodes => {
                "if (access(\"/sys/devices/system/node/node1\", F_OK))\n\t\tksft_exit_skip(\"needs two NUMA nodes\\n\");"
            }
            Need::Zram => "if (!zram_swap())\n\t\tksft_exit_skip(\"needs swap on a zram device\\n\");",
            Need::Thp => {
                "if (access(\"/sys/kernel/mm/transparent_hugepage/enabled\", W_OK))\n\t\tksft_exit_skip(\"needs transparent huge pages\\n\");"
            }
            Need::SoftDirty => "if (!soft_dirty_works())\n\t\tksft_exit_skip(\"needs soft-dirty (CONFIG_MEM_SOFT_DIRTY)\\n\");",
            Need::Uffd => "if (!uffd_works())\n\t\tksft_exit_skip(\"needs userfaultfd with write-protect\\n\");",
            Need::Ramfs => "if (access(\"/mnt/ramfs\", W_OK))\n\t\tksft_exit_skip(\"needs a ramfs mounted at /mnt/ramfs\\n\");",
            Need::Ksm => "if (access(\"/sys/kernel/mm/ksm/run\", W_OK))\n\t\tksft_exit_skip(\"needs KSM (CONFIG_KSM)\\n\");",
            Need::Guard => "if (!guard_supported())\n\t\tksft_exit_skip(\"needs guard regions (MADV_GUARD_INSTALL)\\n\");",
        }
    }

    /// In words, for a report.
    pub fn name(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::TwoNodes => "two NUMA nodes",
            Need::Zram => "swap on zram",
            Need::Thp => "transparent huge pages",
            Need::SoftDirty => "CONFIG_MEM_SOFT_DIRTY",
            Need::Uffd => "userfaultfd write-protect",
            Need::Ramfs => "a ramfs at /mnt/ramfs",
            Need::Ksm => "KSM",
            Need::Guard => "guard regions",
        }
    }
}

/// What `program` needs (sorted, each once).
pub fn needs(program: &Program) -> Vec<Need> {
    let mut v = vec![Need::SoftDirty];
    if super::thp_mode(program) {
        v.extend([Need::Root, Need::Thp]);
    }
    for op in &program.ops {
        match *op {
            Op::Migrate { .. } | Op::MigrateStart { .. } => v.extend([Need::Root, Need::TwoNodes]),
            Op::Pageout { .. } => v.push(Need::Zram),
            Op::Swapoff {} => v.extend([Need::Root, Need::Zram]),
            Op::Mlock { .. } => v.push(Need::Root),
            Op::KsmMerge {} => v.extend([Need::Root, Need::Ksm]),
            Op::UffdRegister { .. } => v.push(Need::Uffd),
            Op::Mmap { target: Target::File { file: FileName::Ramfs, .. }, .. } => v.push(Need::Ramfs),
            Op::Madvise { advice: Advice::Collapse, .. } => v.push(Need::Thp),
            Op::Madvise { advice: Advice::GuardInstall | Advice::GuardRemove, .. } => v.push(Need::Guard),
            _ => {}
        }
    }
    v.sort();
    v.dedup();
    v
}

/// The C of the requirement checks, run first in `main()`.
fn c_needs(program: &Program) -> String {
    let mut s = String::new();
    for n in needs(program) {
        let _ = writeln!(s, "\t{}", n.c_check());
    }
    s
}

/// The profile a kernel release is judged by (`6.1.x` and older: v6.1.y, ...,
/// newer than 6.18: v7.3), as an index into PROFILES.
const C_KERNEL_PROFILE: &str = r#"
/* The kernel version whose model this kernel is judged by: 6.1 and older,
 * 6.2 to 6.12, 6.13 to 6.18, newer.
 */
static int kernel_profile(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return NPROF - 1;
	if (major < 6 || (major == 6 && minor <= 1))
		return 0;
	if (major == 6 && minor <= 12)
		return 1;
	if (major == 6 && minor <= 18)
		return 2;
	return 3;
}
"#;

/// One owed observation of the deterministic reproducer, for the C table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owe {
    /// Pagemap soft-dirty after `step` in `slot`: these pages.
    Pm { step: usize, slot: u8, mask: u16 },
    /// The load of `step`: this value (`or_zero`: or zero), none if `None`.
    Ld { step: usize, slot: u8, page: u8, val: Option<(u32, bool)> },
    /// The probe of `page`: soft-dirty before the store, the trap, the load.
    Page { slot: u8, page: u8, sd: bool, trap: u8, ld: Option<(u32, bool)> },
    /// The PAGEMAP_SCAN of `step` in `slot`: these pages reported WRITTEN.
    Scan { step: usize, slot: u8, mask: u16 },
    /// The MADV_GUARD_INSTALL of `step` in `slot` returns.
    Madv { step: usize, slot: u8 },
}

fn field<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    v.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|x| x.strip_prefix('=')))
}

fn value(v: Option<&str>) -> Option<(u32, bool)> {
    let v = v?;
    if v == "-" {
        return None;
    }
    let (t, z) = match v.strip_suffix("|0") {
        Some(t) => (t, true),
        None => (v, false),
    };
    t.parse().ok().map(|t| (t, z))
}

/// A trace's owed values as table rows (the keys and values of its PTEDIFF-OWED lines).
fn owes(t: &Trace) -> Result<Vec<Owe>, Unrealizable> {
    let bad = |k: &str| Unrealizable(format!("owed value `{k}` has no C form"));
    let slot = |p: &str| p.strip_prefix('p').and_then(|n| n.parse::<u8>().ok());
    let mut out = Vec::new();
    for (key, v) in &t.owed {
        let k: Vec<&str> = key.split_whitespace().collect();
        out.push(match k.as_slice() {
            ["pm", step, p] => Owe::Pm {
                step: step.parse().map_err(|_| bad(key))?,
                slot: slot(p).ok_or_else(|| bad(key))?,
                mask: field(v, "mask").and_then(|m| u16::from_str_radix(m, 16).ok()).ok_or_else(|| bad(key))?,
            },
            ["scan", step, p] => Owe::Scan {
                step: step.parse().map_err(|_| bad(key))?,
                slot: slot(p).ok_or_else(|| bad(key))?,
                mask: field(v, "written").and_then(|m| u16::from_str_radix(m, 16).ok()).ok_or_else(|| bad(key))?,
            },
            ["madv", step, p] if field(v, "returns") == Some("1") => {
                Owe::Madv { step: step.parse().map_err(|_| bad(key))?, slot: slot(p).ok_or_else(|| bad(key))? }
            }
            ["ld", step, p, a] => Owe::Ld {
                step: step.parse().map_err(|_| bad(key))?,
                slot: slot(p).ok_or_else(|| bad(key))?,
                page: a.parse().map_err(|_| bad(key))?,
                val: value(field(v, "val")),
            },
            [p, a] => Owe::Page {
                slot: slot(p).ok_or_else(|| bad(key))?,
                page: a.parse().map_err(|_| bad(key))?,
                sd: field(v, "sd") == Some("1"),
                trap: match field(v, "trap") {
                    Some("uffd") => 1,
                    Some("segv") => 2,
                    _ => 0,
                },
                ld: value(field(v, "ld")),
            },
            _ => return Err(bad(key)),
        });
    }
    Ok(out)
}

fn c_val(v: Option<(u32, bool)>) -> String {
    match v {
        None => "-1".into(),
        Some((t, z)) => format!("{}", t | if z { OR_ZERO } else { 0 }),
    }
}

/// The flag of an owed value that may also read zero (after MADV_FREE).
const OR_ZERO: u32 = 0x10000;

/// The C table of what is owed: one row per observation, for every profile
/// (`prof = -1`) when all four owe the same, per profile otherwise.
fn c_owed_table(traces: &[Trace]) -> Result<String, Unrealizable> {
    let per: Vec<Vec<Owe>> = traces.iter().map(owes).collect::<Result<_, _>>()?;
    let mut rows: Vec<(i32, Owe)> = Vec::new();
    if per.windows(2).all(|w| w[0] == w[1]) {
        rows.extend(per[0].iter().cloned().map(|o| (-1, o)));
    } else {
        for (i, p) in per.iter().enumerate() {
            rows.extend(p.iter().cloned().map(|o| (i as i32, o)));
        }
    }
    let mut s = String::new();
    s.push_str("/* What user space is owed, observation by observation (prof -1: by every\n");
    s.push_str(" * kernel version; otherwise by the one named in PROF).\n */\n");
    s.push_str("static const struct owed OWED[] = {\n");
    for (prof, o) in &rows {
        let row = match o {
            Owe::Pm { step, slot, mask } => {
                format!("{{ .prof = {prof}, .kind = 'm', .step = {step}, .slot = {slot}, .mask = 0x{mask:04x} }}")
            }
            Owe::Scan { step, slot, mask } => {
                format!("{{ .prof = {prof}, .kind = 's', .step = {step}, .slot = {slot}, .mask = 0x{mask:04x} }}")
            }
            Owe::Madv { step, slot } => format!("{{ .prof = {prof}, .kind = 'a', .step = {step}, .slot = {slot} }}"),
            Owe::Ld { step, slot, page, val } => format!(
                "{{ .prof = {prof}, .kind = 'l', .step = {step}, .slot = {slot}, .page = {page}, .ld = {} }}",
                c_val(*val)
            ),
            Owe::Page { slot, page, sd, trap, ld } => format!(
                "{{ .prof = {prof}, .kind = 'p', .slot = {slot}, .page = {page}, .sd = {}, .trap = {trap}, .ld = {} }}",
                *sd as u8,
                c_val(*ld)
            ),
        };
        let _ = writeln!(s, "\t{row},");
    }
    s.push_str("};\n");
    let names: Vec<String> = PROFILES.iter().map(|k| format!("\"{}\"", k.name())).collect();
    let _ = writeln!(s, "static const char * const PROF[NPROF] = {{ {} }};", names.join(", "));
    Ok(s)
}

const COMMON: &str = include_str!("kselftest.c");
const OWED: &str = include_str!("kselftest_owed.c");

/// The test's first lines: its comment, the mode and the prelude, with
/// kselftest.h included and the reproducer's lines made TAP diagnostics.
pub(crate) fn c_head(program: &Program, name: &str, race: bool, tree: &Tree) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "// SPDX-License-Identifier: GPL-2.0");
    let _ = writeln!(c, "/*");
    let _ = writeln!(c, " * {name}: the program below, minimized by ptediff.");
    if race {
        let _ = writeln!(c, " * It runs round after round in one process while a second thread migrates");
        let _ = writeln!(c, " * the page with move_pages(), the steps between migrate_start and");
        let _ = writeln!(c, " * migrate_finish once pagemap shows the migration entry; each round ends");
        let _ = writeln!(c, " * with a load, a store and pagemap of every page, checked against what");
        let _ = writeln!(c, " * user space is owed. It fails when a round inside the window breaks it.");
    } else {
        let _ = writeln!(c, " * It runs step by step, each process a real process driven over pipes;");
        let _ = writeln!(c, " * every observation is checked against what user space is owed:");
        let _ = writeln!(c, " * pagemap's soft-dirty bit after each step, the content of each load, and");
        let _ = writeln!(c, " * at the end a load, a store and pagemap of every page. It fails where the");
        let _ = writeln!(c, " * kernel breaks one of these.");
    }
    let _ = writeln!(c, " *");
    let _ = writeln!(c, " * Program:");
    for (i, op) in program.ops.iter().enumerate() {
        let _ = writeln!(c, " *   {:>2}. {op}", i + 1);
    }
    let _ = writeln!(c, " */");
    c.push_str("#define PTEDIFF_KSELFTEST 1\n");
    c.push_str(super::layout_defines(program));
    if race {
        c.push_str("#define PTEDIFF_RACE 1\n");
    }
    let anchor = "#include <linux/userfaultfd.h>\n";
    let at = super::PRELUDE.find(anchor).expect("the prelude includes linux/userfaultfd.h") + anchor.len();
    c.push_str(&super::PRELUDE[..at]);
    let _ = writeln!(c, "#include <sys/utsname.h>\n#include {}\n", tree.include);
    c.push_str("/* What the reproducer prints are TAP diagnostics here. */\n");
    c.push_str("#define printf(...) ksft_print_msg(__VA_ARGS__)\n");
    c.push_str(&super::PRELUDE[at..]);
    c
}

/// The judging of a deterministic program: what is owed, the checks, the
/// verdict, and [`c_common`].
pub(crate) fn c_owed(traces: &[Trace], program: &Program) -> Result<String, Unrealizable> {
    let table = c_owed_table(traces)?;
    let mut c = format!("\n#define NPROF {}\n", PROFILES.len());
    c.push_str(&OWED.replace("/* @owed-table */\n", &table));
    c.push_str(&c_common(program));
    Ok(c)
}

/// What both kinds of test share: the kernel version, the requirement checks
/// of `program`, the setup and the race verdict.
pub(crate) fn c_common(program: &Program) -> String {
    let mut c = String::from(C_KERNEL_PROFILE);
    c.push('\n');
    let needs = format!(
        "/* Skip where the machine lacks what the program needs. */\nstatic void test_needs(void)\n{{\n{}}}\n",
        c_needs(program)
    );
    c.push_str(&COMMON.replace("/* @test-needs */\n", &needs));
    c
}

/// The kselftest of `program`, named `name`, for a tree whose mm selftests
/// include kselftest.h as `tree` says: the race test for a program with a
/// migration window (8 s or 20,000 rounds), the deterministic one otherwise.
pub fn emit(program: &Program, name: &str, tree: &Tree) -> Result<String, Unrealizable> {
    let mut c = if super::race::window(program).is_ok() {
        super::race::emit_race_as(program, name, 20000, 8, super::Flavour::Kselftest(tree))
    } else {
        super::emit_c_as(program, name, super::Flavour::Kselftest(tree))
    }?;
    // One blank line between the pieces (checkpatch: "multiple blank lines").
    while c.contains("\n\n\n") {
        c = c.replace("\n\n\n", "\n\n");
    }
    Ok(c)
}
