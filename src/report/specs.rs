//! The reports ptediff can write for its confirmed holes: one [`Spec`] each,
//! the words a maintainer reads (what user space loses, the mechanism), the
//! corpus files that show it, the selftests generated from them and the fix.

use std::path::Path;

use super::patch::{self, FileDiff, FormatPatch, Message};
use super::{Case, Inputs, OutFile};
use crate::emit_c;
use crate::model::Kernel;

/// A report.
#[derive(Debug)]
pub struct Spec {
    /// Its folder under `reports/`, and the name `ptediff report` takes.
    pub name: &'static str,
    /// Other names for it: the causes of triage and `affected` (`hole.clear-refs`).
    pub causes: &'static [&'static str],
    /// The mail's subject, in the kernel's style.
    pub subject: &'static str,
    /// Who loses what (one paragraph).
    pub loses: &'static str,
    /// How it happens, paragraph by paragraph, with the functions involved.
    pub mechanism: &'static [&'static str],
    /// Corpus files (stem, what the case is), the first the minimized program shown.
    pub cases: &'static [(&'static str, &'static str)],
    pub selftests: &'static [Selftest],
    pub fix: Fix,
}

/// A kselftest generated from one of the cases.
#[derive(Debug)]
pub struct Selftest {
    /// The test's file name in tools/testing/selftests/mm (without `.c`).
    pub name: &'static str,
    /// The case it is generated from.
    pub case: &'static str,
    /// Its run_vmtests.sh category.
    pub category: &'static str,
}

/// What fixes the hole.
#[derive(Debug)]
pub enum Fix {
    /// A candidate fix in `patches/<dir>/`: `<profile>.patch` for each tree it is
    /// written for and `message` (its commit message); `with`: the patch both
    /// kernel-test builds also had (`patches/<with>/<profile>.patch`).
    Patch { dir: &'static str, with: Option<&'static str> },
    /// Fixed upstream; what the report asks is a backport.
    Upstream { commit: &'static str, note: &'static str },
    /// No fix yet: what one would need.
    None { needs: &'static str },
}

/// Every report, in the order `report --all` writes them.
pub static SPECS: &[Spec] = &[
    Spec {
        name: "clear-refs-migration-entry",
        causes: &["hole.clear-refs", "clear-refs"],
        subject: "fs/proc/task_mmu: clear_refs misses pages under migration",
        loses: "A process that tracks writes with soft-dirty (echo 4 > /proc/PID/clear_refs, then bit 55 of \
            /proc/PID/pagemap) never sees the stores to a page that was being migrated while clear_refs ran: \
            the page comes back writable and not soft-dirty, so every store to it until the next clear_refs \
            that finds it mapped is invisible. CRIU's incremental dumps (pre-dump, lazy migration) keep a \
            stale copy of the page; Boehm GC's soft-dirty mode may miss a pointer store and free a live \
            object (bdwgc issue #553, soft-dirty disagreeing with mprotect-based dirty bits in about one run \
            in 70 on x86-64, fits this, though nobody has shown it). The tracked process has no say in the \
            migration: compaction, NUMA balancing, CMA allocations and memory hot-unplug migrate pages of \
            any process at any time.",
        mechanism: &[
            "clear_soft_dirty() (fs/proc/task_mmu.c, unchanged in this respect from 6.1 to 7.3) \
             write-protects a present PTE and clears its soft-dirty bit, so the next store faults and sets \
             it again. For a PTE that is not present it only clears the soft-dirty bit of the swap-format \
             entry. A migration entry is such an entry, and try_to_migrate_one() made it writable when the \
             PTE it replaced was writable: clear_refs leaves it writable.",
            "remove_migration_pte() (mm/migrate.c) then rebuilds the PTE from the entry: a writable entry \
             gives a writable PTE (maybe_mkwrite() on 6.1, pte_mkwrite() later), and its soft-dirty bit \
             comes from the entry, which clear_refs cleared. Up to 6.8 a dirty page still comes back \
             soft-dirty, because pte_mkdirty() sets soft-dirty on x86 and the restore keeps the dirty bit \
             since 2e3468778dbe (\"mm: remember young/dirty bit for page migrations\", v6.1); from 6.9, \
             055267feaecc (\"mm/migrate: preserve exact soft-dirty state\") clears soft-dirty after \
             pte_mkdirty() when the entry lacks it, so a dirty page loses it too.",
            "The hole is as old as soft-dirty: clear_refs has skipped non-present PTEs since \
             0f8975ec4db2 (\"mm: soft-dirty bits for user memory changes tracking\", v3.11), and \
             179ef71cbc08 (\"mm: save soft-dirty bits on swapped pages\") only taught it to clear the \
             soft-dirty bit of a swap-format entry, not to write-protect a migration entry. The PMD case \
             came with PMD migration entries, 616b8371539a (\"mm: thp: enable thp migration in generic \
             path\", v4.14).",
            "A THP under migration has a PMD migration entry instead: clear_soft_dirty_pmd() only clears \
             its soft-dirty bit, and remove_migration_pmd() (mm/huge_memory.c) makes the PMD writable again \
             for a writable entry, soft-dirty coming back (through pmd_mkdirty()) for a dirty THP only. A \
             clean THP, one that MADV_FREE cleaned, loses the tracking of all its pages at once; from 6.9 \
             a dirty one too when its PMD entry is split into PTE entries while the migration is under way \
             (a partial mprotect or munmap).",
            "The fix below write-protects a writable migration entry in clear_soft_dirty() and \
             clear_soft_dirty_pmd(), keeping its uffd-wp bit, as change_pte_range() and \
             change_non_present_huge_pmd() do for mprotect: the restore then maps the page read-only and the \
             next store faults and is recorded.",
        ],
        cases: &[
            ("oracle-clear-refs-writable-migration-entry", "a clean shared memfd page"),
            ("oracle-clear-refs-dirty-migration-entry-6.12", "a dirty shared memfd page"),
            ("oracle-clear-refs-dirty-migration-entry-anon", "a dirty private anonymous page"),
            ("oracle-clear-refs-thp-clean-migration-entry", "a clean THP: a PMD migration entry"),
            ("oracle-clear-refs-thp-migration-entry", "a dirty THP whose PMD entry is split in the window"),
        ],
        selftests: &[Selftest {
            name: "soft_dirty_migration",
            case: "oracle-clear-refs-writable-migration-entry",
            category: "soft_dirty",
        }],
        fix: Fix::Patch { dir: "clear-refs-wrprotect-migration-entry", with: Some("debug-migration-window") },
    },
    Spec {
        name: "madvise-free-swapin",
        causes: &["kc-madvise-free-shared-clean-swapin"],
        subject: "mm/madvise: MADV_FREE drops a zram swap-in a fork child maps",
        loses: "After fork(), a process that returns memory with MADV_FREE (jemalloc, tcmalloc, the Go and \
            .NET runtimes) can make its child lose data: once memory is short, the child reads zeroes where \
            its copy of the page was. The page only has to have been swapped out to zram (or another \
            SWP_SYNCHRONOUS_IO device) and read back before the fork, which on a system with zram swap any \
            page of a long-running process may have been. The child did nothing; the parent's MADV_FREE of \
            its own mapping discards the page from both.",
        mechanism: &[
            "do_swap_page() (mm/memory.c) reads a page from a SWP_SYNCHRONOUS_IO device whose swap count is \
             one straight into a fresh folio, bypassing the swap cache, and frees the slot. The folio is not \
             dirty and the PTE of a read fault is clean, yet the folio holds the only copy of the data.",
            "After fork() parent and child map it with clean PTEs. madvise_free_pte_range() (mm/madvise.c) \
             skips a folio mapped more than once only when the folio is dirty or in the swap cache (it will \
             not clear a shared folio's dirty flag); a clean one is marked lazy-free. Reclaim then finds a \
             clean lazy-free folio and discards it from every mapping (try_to_unmap_one()), the child's \
             included.",
            "7.3 is not affected: since \"mm, swap: never bypass the swap cache even for \
             SWP_SYNCHRONOUS_IO\" every swap-in goes through the swap cache, and folio_free_swap() marks \
             the folio dirty when it frees the slot, so madvise_free_pte_range() sees a dirty shared folio \
             and leaves it alone. That change (v7.0, part of the swap table series) does not mention \
             MADV_FREE and is no stable candidate, so the stable trees up to 6.18.y stay affected.",
            "The assumption broken is MADV_FREE's own: 854e9ed09ded (\"mm: support madvise(MADV_FREE)\", \
             v4.5) skips a shared folio only to keep its dirty flag, which was enough while every swapped-in \
             folio was either in the swap cache or dirty. 0bcac06f27d7 (\"mm, swap: skip swapcache for \
             swapin of synchronous device\", v4.15) made a clean shared folio outside the swap cache \
             possible.",
        ],
        cases: &[("kc-madvise-free-shared-clean-swapin", "an anonymous page swapped in from zram, then fork")],
        selftests: &[Selftest {
            name: "madv_free_swapin_fork",
            case: "kc-madvise-free-shared-clean-swapin",
            category: "cow",
        }],
        fix: Fix::Patch { dir: "madvise-free-swapin-dirty", with: None },
    },
    Spec {
        name: "softdirty-shared-pte",
        causes: &["contract-softdirty-lost-with-shared-pte"],
        subject: "fs/proc/task_mmu: shared pages lose soft-dirty with the PTE",
        loses: "A soft-dirty tracker misses stores to shared memory (shmem, memfd, MAP_SHARED files) whenever \
            the kernel drops the page's PTE between two scans: MADV_DONTNEED, reclaim (MADV_PAGEOUT, \
            kswapd) and similar zaps keep the new data in the page cache, but pagemap then reports the page \
            as not written since clear_refs. CRIU's incremental dump of shared memory keeps the stale copy: \
            CRIU issue #218 (2016, a checksum mismatch of shmem after pre-dump, labelled a kernel bug) is \
            this seen from user space.",
        mechanism: &["Soft-dirty lives in the PTE (and in swap-format entries). Anonymous memory keeps it when the \
             PTE becomes a swap entry, but a shared page never does: zap_pte_range() (MADV_DONTNEED, munmap) \
             and try_to_unmap_one() (reclaim) leave an empty PTE, and pagemap reports soft-dirty for an \
             empty PTE only from the VMA's VM_SOFTDIRTY (pagemap_pte_hole(), pte_to_pagemap_entry()), which \
             clear_refs cleared. The store after clear_refs set the PTE's bit; dropping the PTE drops it, \
             and nothing else records it."],
        cases: &[("contract-softdirty-lost-with-shared-pte", "a shared anonymous page, MADV_DONTNEED")],
        selftests: &[Selftest {
            name: "soft_dirty_shared_zap",
            case: "contract-softdirty-lost-with-shared-pte",
            category: "soft_dirty",
        }],
        fix: Fix::None {
            needs: "This is documented: Documentation/admin-guide/mm/pagemap.rst, \"Exceptions for Shared \
                Memory\", says that the PTEs of shared pages are cleared when the pages are zapped or swapped \
                out, and that what only the PTE holds, soft-dirty among it, is lost with them. \
                Documentation/admin-guide/mm/soft-dirty.rst does not mention it; its only lost case is an \
                unmap and a new mapping at the same place. A kernel fix would keep the bit where the PTE was: \
                a soft-dirty PTE marker, installed where cond_install_uffd_wp_ptes() installs uffd-wp \
                markers today (zap and reclaim of file and shmem PTEs) when the PTE was soft-dirty and the \
                VMA lacks VM_SOFTDIRTY, reported by pte_to_pagemap_entry() and PAGEMAP_SCAN, dropped by \
                clear_refs, and copied by fork and mremap like the other markers. Peter Xu's RFC \"mm: Enable \
                PM_SWAP for shmem with PTE_MARKER\" (linux-mm, August 2021) named this among its goals; only \
                the uffd-wp marker was merged. Until then the soft-dirty documentation should say that \
                shared memory is tracked only while mapped.",
        },
    },
    Spec {
        name: "guard-install-uffd-wp",
        causes: &["hole.guard-install-uffd-wp", "guard-install-uffd-wp"],
        subject: "mm/madvise: MADV_GUARD_INSTALL never returns over uffd-wp protected shmem",
        loses: "madvise(MADV_GUARD_INSTALL) never returns when the range holds a shmem (or memfd, or other \
            file-backed) page that userfaultfd write-protects, populated or not: the calling thread spins in \
            and out of the kernel, at full CPU, until it is killed. A program that guards part of its shared \
            memory (an allocator's or a runtime's guard pages) hangs whenever a snapshotter or a live \
            migration write-protects that memory with UFFDIO_WRITEPROTECT, as QEMU's background snapshot \
            does for memfd-backed guest RAM. Anonymous memory is not affected.",
        mechanism: &[
            "madvise_guard_install() (mm/madvise.c) walks the range: guard_install_set_pte() puts a guard \
             marker into every empty PTE, and guard_install_pte_entry() accepts an existing guard marker and \
             stops the walk at anything else. It then zaps the range without zap_details \
             (zap_page_range_single() on 6.18.15, zap_vma_range() on 7.3.4) and walks again, three times (MAX_MADVISE_GUARD_RETRIES), before it returns \
             restart_syscall(), and the call starts over.",
            "In a file-backed VMA registered for uffd-wp that zap keeps a uffd-wp marker \
             (zap_nonpresent_ptes() drops one only with ZAP_FLAG_DROP_MARKER), and where a write-protected \
             page was mapped it leaves a new one (zap_install_uffd_wp_if_needed()). UFFDIO_WRITEPROTECT of an \
             empty shmem PTE installs such a marker too. The walk stops at it every time, so no round and no \
             restart can succeed. File-backed guard regions came with 6.15; the trees read here are \
             Debian's 6.18.15 and 7.3.4.",
            "The fix below lets guard_install_pte_entry() replace a uffd-wp marker by a guard marker: the \
             marker maps no page, and nothing can access a guard page, so nothing it protects can be written \
             while the guard is in place. The write protection does not outlive the guard (after \
             MADV_GUARD_REMOVE the PTE is empty), as for a guard that was write-protected after its install: \
             change_pte_range() skips guard markers. That is a separate question, left alone here.",
        ],
        cases: &[("kc-guard-install-livelock-uffd-wp-shmem", "an unpopulated memfd page write-protected by uffd-wp")],
        selftests: &[Selftest {
            name: "guard_install_uffd_wp",
            case: "kc-guard-install-livelock-uffd-wp-shmem",
            category: "madv_guard",
        }],
        fix: Fix::Patch { dir: "guard-install-uffd-wp-marker", with: None },
    },
    Spec {
        name: "pmd-modify-dirty",
        causes: &["hole.pmd-modify-dirty", "pmd-modify-dirty"],
        subject: "x86/mm: f7491d7c81db (MADV_FREE THP data loss) for 6.18.y",
        loses: "An allocator that returns memory with MADV_FREE and reuses it (jemalloc, GC heaps) loses data \
            on transparent huge pages: after MADV_FREE of a THP, a store to it and an mprotect() of the \
            range, reclaim discards the THP as clean, and the next read returns zeroes.",
        mechanism: &["change_huge_pmd() (mm/huge_memory.c), which mprotect, uffd-wp and NUMA hinting use, rebuilds \
             the PMD with pmd_modify(); on x86 pmd_modify() (arch/x86/include/asm/pgtable.h) masks the \
             PMD's dirty bit out since bb3aadf7d446 (\"x86/mm: Start actually marking _PAGE_SAVED_DIRTY\", \
             v6.6). The store made the PMD dirty; after mprotect it is clean, the folio is \
             lazy-free and not dirty, and reclaim (shrink_folio_list(), try_to_unmap_one()) discards it."],
        cases: &[("kc-thp-madv-free-mprotect-data-loss", "a THP: MADV_FREE, store, mprotect, reclaim")],
        selftests: &[Selftest {
            name: "madv_free_thp_mprotect",
            case: "kc-thp-madv-free-mprotect-data-loss",
            category: "thp",
        }],
        fix: Fix::Upstream {
            commit: "f7491d7c81db (\"x86/mm: Fix user-space data loss with MADV_FREE and THP\")",
            note: "It was merged for 7.3-rc4 with Cc: stable and is in 6.12.111; 6.1.y never had the \
                bug. The 6.18.15 kernel measured here (Debian's) does not have it, and no 6.18.y release \
                with it was found: the report asks for it there, with the selftest below to show it.",
        },
    },
];

/// The spec named `what` (its name or one of its causes).
pub fn find(what: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == what || s.causes.contains(&what))
}

/// The profiles the fix is written for (`patches/<fix>/<profile>.patch`), newest first.
pub fn fix_profiles(spec: &Spec, root: &Path) -> Vec<Kernel> {
    match spec.fix {
        Fix::Patch { dir, .. } => emit_c::PROFILES
            .iter()
            .rev()
            .copied()
            .filter(|k| root.join("patches").join(dir).join(format!("{}.patch", k.name())).is_file())
            .collect(),
        _ => Vec::new(),
    }
}

/// The kernel tree's version (`7.3.4`), from kernel-build.sh's `source-version`.
fn tree_version(trees: &Path, k: Kernel) -> Option<String> {
    let v = std::fs::read_to_string(trees.join(k.name()).join("source-version")).ok()?;
    Some(v.trim().to_string())
}

/// `7.3` of `7.3.4-1~bpo13+1`.
fn series_of(version: &str) -> String {
    version.split(['.', '-']).take(2).collect::<Vec<_>>().join(".")
}

/// The directory of the mm selftests in a tree (`vm` before v6.3).
pub fn selftest_dir(k: Kernel) -> &'static str {
    match k {
        Kernel::V61 | Kernel::V61y => "tools/testing/selftests/vm",
        _ => "tools/testing/selftests/mm",
    }
}

/// The patch series of every profile with a kernel tree, newest first:
/// `patches/<profile>/0001-<fix>.patch` where the fix is written for that
/// tree, and the selftest (`0002-selftests-mm-<name>.patch`, or `0001-` alone),
/// so that it can be run on every kernel, affected or not.
pub fn patch_series(
    spec: &Spec,
    selftests: &[(&Selftest, &Case)],
    inputs: &Inputs,
    cases: &[Case],
    notes: &mut Vec<String>,
) -> Result<Vec<OutFile>, String> {
    let mut out = Vec::new();
    let fix = match spec.fix {
        Fix::Patch { dir, .. } => {
            let p = inputs.root.join("patches").join(dir).join("message");
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some((dir, Message::parse(&p, &text)?))
        }
        _ => None,
    };
    let date = date_of(inputs, cases);
    let fixed = fix_profiles(spec, &inputs.root);
    for k in emit_c::PROFILES.iter().rev().copied() {
        let tree = inputs.trees.join(k.name()).join("src");
        let Some(version) = tree_version(&inputs.trees, k).filter(|_| tree.is_dir()) else {
            notes.push(format!(
                "no {} patches: its kernel tree is not at {} (scripts/kernel-build.sh {} unpacks it)",
                k.name(),
                tree.display(),
                k.name()
            ));
            continue;
        };
        let fix_here = fix.as_ref().filter(|_| fixed.contains(&k));
        let total = fix_here.is_some() as usize + !selftests.is_empty() as usize;
        let series = series_of(&version);
        let prefix = |n: usize| {
            let base = if k == Kernel::V73 { "PATCH".to_string() } else { format!("PATCH {series}.y") };
            if total > 1 {
                format!("[{base} {n}/{total}]")
            } else {
                format!("[{base}]")
            }
        };
        let mut n = 0;
        if let Some((dir, msg)) = fix_here {
            let p = inputs.root.join("patches").join(dir).join(format!("{}.patch", k.name()));
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let files = patch::parse_diff(&p, &text)?;
            n += 1;
            let fp =
                FormatPatch { prefix: &prefix(n), message: msg, author: &inputs.author, date: &date, files: &files };
            out.push(OutFile {
                path: format!("patches/{}/{}", k.name(), patch::file_name(n, &msg.subject)),
                contents: fp.render(),
            });
        }
        if !selftests.is_empty() {
            let (msg, files) = selftest_patch(spec, selftests, k, &tree)?;
            n += 1;
            let fp =
                FormatPatch { prefix: &prefix(n), message: &msg, author: &inputs.author, date: &date, files: &files };
            out.push(OutFile {
                path: format!("patches/{}/{}", k.name(), patch::file_name(n, &msg.subject)),
                contents: fp.render(),
            });
        }
    }
    Ok(out)
}

/// The date of the patches: when the newest result the report cites was
/// measured (so the same snapshot gives the same files).
fn date_of(inputs: &Inputs, cases: &[Case]) -> String {
    let at = cases
        .iter()
        .filter_map(|c| inputs.measured.kernel_check.get(&c.name))
        .flat_map(|r| r.kernels.values().map(|k| k.at))
        .max()
        .unwrap_or(0);
    rfc2822(at)
}

/// `Wed, 2 Dec 2026 21:15:33 +0000` of seconds since the epoch (UTC).
pub fn rfc2822(t: u64) -> String {
    let days = (t / 86400) as i64;
    let (h, m, s) = (t % 86400 / 3600, t % 3600 / 60, t % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (mo <= 2) as i64;
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(mo - 1) as usize];
    format!("{wd}, {d} {mon} {y} {h:02}:{m:02}:{s:02} +0000")
}

/// The selftest patch for tree `k`: the test files, their Makefile,
/// .gitignore and run_vmtests.sh lines.
fn selftest_patch(
    spec: &Spec,
    selftests: &[(&Selftest, &Case)],
    k: Kernel,
    tree: &Path,
) -> Result<(Message, Vec<FileDiff>), String> {
    let dir = selftest_dir(k);
    let read = |f: &str| {
        let p = tree.join(dir).join(f);
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let style = emit_c::kselftest::Tree::of(k);
    let mut files = Vec::new();
    for (st, case) in selftests {
        let src = emit_c::kselftest::emit(&case.repro.program, st.name, &style)
            .map_err(|e| format!("selftest {}: {e}", st.name))?;
        files.push(patch::new_file(&format!("{dir}/{}.c", st.name), &src));
    }
    // The build and ignore lists: next to soft-dirty's entries.
    let mk = read("Makefile")?;
    let anchor = mk
        .lines()
        .find(|l| l.starts_with("TEST_GEN_") && l.ends_with("+= soft-dirty"))
        .ok_or_else(|| {
            format!("{}/{dir}/Makefile: no `TEST_GEN_… += soft-dirty` line to add the test after", tree.display())
        })?
        .to_string();
    let var = anchor.split_whitespace().next().unwrap_or("TEST_GEN_FILES").to_string();
    let lines: Vec<String> = selftests.iter().map(|(st, _)| format!("{var} += {}", st.name)).collect();
    files.push(patch::insert_after(&format!("{dir}/Makefile"), &mk, &anchor, &lines).expect("the anchor is a line"));
    // .gitignore: next to soft-dirty's line (7.x ignores every binary already).
    let gi = read(".gitignore")?;
    let lines: Vec<String> = selftests.iter().map(|(st, _)| st.name.to_string()).collect();
    if let Some(d) = patch::insert_after(&format!("{dir}/.gitignore"), &gi, "soft-dirty", &lines) {
        files.push(d);
    }
    // run_vmtests.sh: after soft-dirty's run (and the `fi` of its `if`).
    let rv = read("run_vmtests.sh")?;
    let rv_lines: Vec<&str> = rv.lines().collect();
    let at = rv_lines
        .iter()
        .position(|l| {
            l.trim_start().trim_start_matches("CATEGORY=\"soft_dirty\" ").starts_with("run_test ./soft-dirty")
        })
        .ok_or_else(|| format!("{}/{dir}/run_vmtests.sh: no `run_test ./soft-dirty` line", tree.display()))?;
    let categories = rv.contains("CATEGORY=");
    let after = if rv_lines.get(at + 1).is_some_and(|l| l.trim() == "fi") { at + 2 } else { at + 1 };
    let lines: Vec<String> = selftests
        .iter()
        .map(|(st, _)| {
            if categories {
                format!("CATEGORY=\"{}\" run_test ./{}", st.category, st.name)
            } else {
                format!("run_test ./{}", st.name)
            }
        })
        .collect();
    files.push(patch::insert_at(&format!("{dir}/run_vmtests.sh"), &rv, after, &lines));
    let names: Vec<&str> = selftests.iter().map(|(st, _)| st.name).collect();
    let subject = format!("selftests/mm: add {}", names.join(", "));
    let mut body = String::new();
    for (st, case) in selftests {
        let needs: Vec<&str> = emit_c::kselftest::needs(&case.repro.program).iter().map(|n| n.name()).collect();
        let fixed = match spec.fix {
            Fix::Patch { .. } => " It fails without the previous patch and passes with it.",
            Fix::Upstream { .. } => " It fails on kernels without the fix and passes with it.",
            Fix::None { .. } => " It fails on every kernel so far.",
        };
        let how = if emit_c::race::window(&case.repro.program).is_ok() {
            "runs the program below, which ptediff minimized, round after round while a second thread \
             migrates the page (the steps between migrate_start and migrate_finish run while the migration \
             entry is there), and checks at the end of every round"
        } else {
            "runs the program below, which ptediff minimized, and checks after every step and at the end"
        };
        let para = format!(
            "{} checks {}: it {how} what user space is owed (pagemap's soft-dirty bit, the content of every \
             page, the faults a store owes).{fixed} It skips without {}.",
            st.name,
            case.label,
            super::mail::or_list(&needs)
        );
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(&textwrap::fill(
            &para,
            textwrap::Options::new(72).word_splitter(textwrap::WordSplitter::NoHyphenation),
        ));
        body.push_str("\n\n");
        for (i, op) in case.repro.program.ops.iter().enumerate() {
            body.push_str(&format!("  {:>2}. {op}\n", i + 1));
        }
        body = body.trim_end().to_string();
    }
    Ok((Message { subject, body, trailers: Vec::new() }, files))
}
