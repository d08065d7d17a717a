//! The kernel model: x86-64 memory management as Linux v6.1 to v7.3 do it (five
//! profiles, [`Kernel`]; every difference between them is one predicate of
//! `Kernel`), one function per kernel function, each citing the file and
//! function it follows. The model is the kernel only: what user space is owed
//! lives in `crate::judge` and follows the [`events::Event`]s a step emits.
//!
//! `State` is plain data; [`step`] applies one [`Op`] in place.

pub mod events;
pub mod fault;
pub mod fork;
pub mod huge_memory;
pub mod invariants;
pub mod khugepaged;
pub mod ksm;
pub mod madvise;
pub mod migrate;
pub mod prot;
pub mod pte;
pub mod swap;
pub mod task_mmu;
pub mod types;
pub mod userfaultfd;
pub mod vma;

use crate::op::{Advice, FileName, Op, Target};
use events::Event;
pub use types::*;
use vma::MapKind;

/// See [`Kernel::large_folio_sharing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// `folio_mapcount() != 1`.
    Mapcount,
    /// `folio_estimated_sharers()`: the first page's map count.
    FirstPage,
    /// `folio_likely_mapped_shared()`: mapped more than once, and mapped by a
    /// PMD, more often than it has pages, or its first page more than once.
    LikelyMappedShared,
    /// `folio_maybe_mapped_shared()`: mapped by another process (MM ids).
    Processes,
}

/// See [`Kernel::pagemap_scan_unpopulated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanUnpopulated {
    /// 6.12.118: a none PTE is WRITTEN in any VMA; a range without a PTE
    /// table is WRITTEN in a uffd-wp VMA.
    NoneWrittenAnywhere,
    /// 6.18.15: a none PTE is WRITTEN only on the WRITTEN-only fast path; a
    /// range without a PTE table never is.
    FastPathOnly,
    /// 7.3.4: an unpopulated page is WRITTEN in a uffd-wp VMA, table or not,
    /// and nothing is WRITTEN outside one.
    WrittenInUffdWp,
}

/// How `do_wp_page()` treats a page of a large folio it cannot reuse by
/// PageAnonExclusive ([`Kernel::large_anon_reuse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeReuse {
    RefcountOne,
    Never,
    ThisMm,
}

/// The `remove_migration_pte()` variant under test (see
/// [`migrate::restore_write_bits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Restore {
    PreFix,
    FullRestore,
    VmPageProt,
    Stable61y,
}

/// The `unuse_pte()` variant: as in v6.1, or with the uffd-wp care the restore got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unuse {
    V61,
    WithCare,
}

/// The kernel everything else follows (the restore itself is the variant).
/// Profiles are ordered by version: every later profile carries what an earlier
/// one has unless a predicate says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    /// v6.1 release.
    V61,
    /// Debian 6.1.y (6.1.192): B1 (uffd-wp writenotify), B3 (fork marker fix) and
    /// the mremap uffd-wp clearing backport.
    V61y,
    /// Debian 6.12.y (6.12.95, checked against 6.12.117): everything in 6.1.y plus
    /// v6.2-v6.12 mainline: `pte_mkuffd_wp()` write-protects (v6.3),
    /// `uffd_wp_range()` relies on `vm_page_prot` with TRY_CHANGE_WRITABLE (v6.3),
    /// clean exclusive anon pages may be made writable (v6.2), NUMA hinting without
    /// savedwrite (v6.3), the restore takes soft-dirty from the entry only,
    /// `do_swap_page` maps exclusive pages writable on read, a writable migration
    /// entry loses swpUW when made read-only, uffd (un)register merges keep the
    /// survivor's VM_SOFTDIRTY, and UFFDIO_WRITEPROTECT spans several VMAs.
    V612,
    /// Debian 6.18.y (6.18.15): v6.12 plus the v6.13-v6.18 changes listed by the
    /// predicates below.
    V618,
    /// Debian 7.3 (7.3.4): v6.18 plus the v6.19-v7.3 changes listed by the
    /// predicates below.
    V73,
}

impl Kernel {
    /// Every profile, oldest first.
    pub const ALL: [Kernel; 5] = [Kernel::V61, Kernel::V61y, Kernel::V612, Kernel::V618, Kernel::V73];

    /// 51d3d5eb74ff "mm/userfaultfd: enable writenotify while userfaultfd-wp is enabled for a VMA".
    pub fn b1_uffd_writenotify(self) -> bool {
        self >= Kernel::V61y
    }
    /// "mm/uffd: fix pte marker when fork() without fork event".
    pub fn b3_fork_marker(self) -> bool {
        self >= Kernel::V61y
    }
    /// "mm: clear uffd-wp PTE/PMD state on mremap()" (v6.13, backported to 6.1.y and 6.12.y).
    pub fn mremap_clears_uffd_wp(self) -> bool {
        self >= Kernel::V61y
    }
    /// v6.3 "mm/uffd: always wr-protect pte in pte|pmd_mkuffd_wp()".
    pub fn mkuffd_wp_wrprotects(self) -> bool {
        self >= Kernel::V612
    }
    /// v6.3 "mm/uffd: rely on vma->vm_page_prot in uffd_wp_range()".
    pub fn uffd_wp_range_uses_vm_page_prot(self) -> bool {
        self >= Kernel::V612
    }
    /// v6.2 "mm/mprotect: allow clean exclusive anon pages to be writable".
    pub fn clean_exclusive_anon_writable(self) -> bool {
        self >= Kernel::V612
    }
    /// v6.1 NUMA hinting keeps W in the protnone PTE (savedwrite); v6.3 drops it
    /// and `do_numa_page` re-derives it.
    pub fn numa_savedwrite(self) -> bool {
        self < Kernel::V612
    }
    /// Making a writable migration entry readable keeps swpUW (6.1) or drops it (6.12).
    pub fn mig_downgrade_keeps_uffd_wp(self) -> bool {
        self < Kernel::V612
    }
    /// `remove_migration_pte` takes SD from swpSD only (6.12), not also from mkdirty.
    pub fn restore_sd_from_entry_only(self) -> bool {
        self >= Kernel::V612
    }
    /// `do_swap_page` maps an exclusive page writable on a read fault (6.12).
    pub fn swapin_maps_writable(self) -> bool {
        self >= Kernel::V612
    }
    /// mprotect to read-only drops VM_ACCOUNT of an unfaulted anonymous VMA (6.12).
    pub fn uncharge_unfaulted_anon(self) -> bool {
        self >= Kernel::V612
    }
    /// uffd (un)register merges give the survivor its own flags (6.12), not the target's.
    pub fn uffd_merge_keeps_survivor_flags(self) -> bool {
        self >= Kernel::V612
    }
    /// `__mmap_region` merges through `vma_merge_new_range()` (v6.12, mm/vma.c): prev
    /// and next are each judged against a range without an anon_vma, and both are
    /// merged when their anon_vmas are compatible with each other. 6.1.y judged prev
    /// against next's anon_vma.
    pub fn mmap_merges_like_vma_merge_new_range(self) -> bool {
        self >= Kernel::V612
    }
    /// NUMA hinting skips a page of a COW mapping when it is mapped more than once
    /// (`folio_likely_mapped_shared`, v6.12), not when `page_count() != 1` (v6.1).
    pub fn numa_skips_by_mapcount(self) -> bool {
        self >= Kernel::V612
    }
    /// UFFDIO_WRITEPROTECT walks the VMAs of the range from the first one, so a hole
    /// before it is skipped (`mwriteprotect_range`, v6.12).
    pub fn uffd_wp_walks_vma_range(self) -> bool {
        self >= Kernel::V612
    }
    /// A move-only `mremap()` moves every VMA of the source range slice by slice
    /// (`remap_move()`, mm/mremap.c, v6.17): gaps are kept, only a leading hole
    /// fails, and each slice unmaps only its own destination; uffd-armed and ramfs
    /// VMAs cannot take part (`vma_multi_allowed()`).
    pub fn mremap_moves_vma_by_vma(self) -> bool {
        self >= Kernel::V618
    }
    /// `is_mergeable_anon_vma()` (mm/vma.c, v6.18) lets a range that has an anon_vma
    /// merge into a neighbour without one, unless the range's VMA is a fork child.
    pub fn anon_vma_merges_into_unfaulted(self) -> bool {
        self >= Kernel::V618
    }
    /// `set_pte_range()` (mm/memory.c, v6.18) marks a read-fault PTE dirty (D and SD
    /// on x86) when it is writable and the folio is already dirty.
    pub fn read_fault_dirties_writable_pte(self) -> bool {
        self >= Kernel::V618
    }
    /// VM_SOFTDIRTY is sticky on merges (`VMA_STICKY_FLAGS`, "mm: propagate
    /// VM_SOFTDIRTY on merge", v6.19): the merged VMA's bit is the OR of every VMA
    /// taking part, for existing-range merges, expansions and `copy_vma()`.
    pub fn sticky_softdirty_merges(self) -> bool {
        self >= Kernel::V73
    }
    /// `vma_merge_copied_range()` (mm/vma.c, v7.x) never merges the copy of a
    /// source registered with a uffd that lacks EVENT_REMAP. Debian's 6.12.118
    /// has it too (a stable backport: kernel-check of kc-copy-vma-uffd-source-no-merge
    /// matched v7.3 on 6.12.118, v6.12 on 6.12.117); 6.18.15 does not.
    pub fn copy_vma_skips_uffd_source(self) -> bool {
        matches!(self, Kernel::V612 | Kernel::V73)
    }
    /// MAP_PRIVATE file mappings merge only when their anonymous page offsets are
    /// contiguous too (`needs_adjacent_anon_pgoff()`, mm/vma.c, v7.x); the same
    /// holds for anon_vma reuse (`anon_vma_compatible()`).
    pub fn cow_file_merge_needs_anon_pgoff(self) -> bool {
        self >= Kernel::V73
    }
    /// The swap device is zram (SWP_SYNCHRONOUS_IO): until v7.x `do_swap_page()`
    /// swaps a single-reference entry into a fresh folio outside the swap cache,
    /// which is certainly exclusive. v7.x always goes through the swap cache,
    /// takes exclusivity from the entry alone and frees the swap-cache copy after
    /// mapping (`should_try_to_free_swap()`).
    pub fn swapin_skips_swap_cache(self) -> bool {
        self < Kernel::V73
    }
    /// See [`Kernel::swapin_skips_swap_cache`]: v7.x frees the swap-cache copy
    /// after mapping and never treats a non-exclusive entry as exclusive.
    pub fn swapin_frees_swap_cache_after_mapping(self) -> bool {
        self >= Kernel::V73
    }
    /// `__split_huge_pmd_locked()` hands a dirty PMD's dirty bit to every PTE
    /// (`pte_mkdirty`, so soft-dirty too on x86) from v6.12; v6.1 only marks the
    /// folio dirty.
    pub fn split_pmd_dirties_ptes(self) -> bool {
        self >= Kernel::V612
    }
    /// "mm/userfaultfd: fix uffd-wp handling for THP migration entries" (v6.3,
    /// in 6.1.y): `set_pmd_migration_entry()` carries uffd-wp into the entry and
    /// `change_huge_pmd()` sets and clears it on PMD migration entries. v6.1
    /// loses the bit when a THP migrates, and UFFDIO_WRITEPROTECT misses a THP
    /// under migration.
    pub fn thp_migration_uffd_wp(self) -> bool {
        self >= Kernel::V61y
    }
    /// `remap_page()` after a folio split passes RMP_USE_SHARED_ZEROPAGE (v6.12,
    /// b1f202060afe): `try_to_map_unused_to_zeropage()` maps a zero-filled page
    /// of an anonymous folio split (not mlocked) to the shared zero page instead.
    pub fn split_remaps_zero_pages(self) -> bool {
        self >= Kernel::V612
    }
    /// `try_to_map_unused_to_zeropage()` keeps soft-dirty and uffd-wp from the
    /// migration entry ("mm/rmap: fix soft-dirty and uffd-wp bit loss when
    /// remapping zero-filled mTHP subpage to shared zeropage", v6.18, Cc stable;
    /// read in 6.18.2 and 7.1.5, lost in 6.12.0). The 6.12 profile assumes the
    /// 6.12.y backport: unverified against Debian's 6.12 tree.
    pub fn zero_remap_keeps_bits(self) -> bool {
        self >= Kernel::V612
    }
    /// How MADV_PAGEOUT, MADV_FREE and NUMA hinting decide that a large folio is
    /// shared ([`State::large_folio_shared`]): v6.1 by `folio_mapcount() != 1`
    /// (the unmodelled pages of a split PMD make it so); 6.1.y by the first
    /// page's map count (`folio_estimated_sharers()`; found by kernel-check);
    /// v6.12 by `folio_likely_mapped_shared()` (include/linux/mm.h, 6.12.118:
    /// also shared when mapped by a PMD or more often than it has pages — two
    /// processes each mapping most of a split THP; found by kernel-check,
    /// sample-thp-2-144); v6.18+ by the processes mapping it
    /// (`folio_maybe_mapped_shared()`, the folio's MM ids).
    pub fn large_folio_sharing(self) -> Sharing {
        match self {
            Kernel::V61 => Sharing::Mapcount,
            Kernel::V61y => Sharing::FirstPage,
            Kernel::V612 => Sharing::LikelyMappedShared,
            Kernel::V618 | Kernel::V73 => Sharing::Processes,
        }
    }
    /// `wp_can_reuse_anon_folio()` on a page of a large folio that is not
    /// exclusive: v6.1 reuses only a folio with one reference in all
    /// (`folio_ref_count() > 3` first); v6.12 never reuses one; from v6.15
    /// (`__wp_can_reuse_large_anon_folio()`) it reuses a folio mapped more than
    /// once, all in this process, with no other reference.
    pub fn large_anon_reuse(self) -> LargeReuse {
        match self {
            Kernel::V61 | Kernel::V61y => LargeReuse::RefcountOne,
            Kernel::V612 => LargeReuse::Never,
            Kernel::V618 | Kernel::V73 => LargeReuse::ThisMm,
        }
    }
    /// `migrate_pages_batch()` splits a partially mapped large folio instead of
    /// migrating it whole (v6.12; found by kernel-check on 6.12, 6.18 and 7.3).
    pub fn migrate_splits_partially_mapped(self) -> bool {
        self >= Kernel::V612
    }
    /// MADV_DONTNEED frees a PTE table it left empty when it zapped the whole
    /// PMD range (CONFIG_PT_RECLAIM, v6.14; found by kernel-check on 6.18 and
    /// 7.3): the next fault there may map a THP again.
    pub fn dontneed_reclaims_pte_tables(self) -> bool {
        self >= Kernel::V618
    }
    /// `change_pte_range()` batches the PTEs of a large folio (v6.17, "mm:
    /// optimize mprotect() by PTE batching"): dirty is ORed over the batch, so a
    /// PTE-mapped THP's pages come back dirty and soft-dirty (found by
    /// kernel-check on 6.18 and 7.3).
    pub fn mprotect_batches_ptes(self) -> bool {
        self >= Kernel::V618
    }
    /// `change_huge_pmd()` makes a PMD writable with MM_CP_TRY_CHANGE_WRITABLE
    /// and `can_change_pmd_writable()` (v6.3); v6.1 never upgrades a PMD.
    pub fn change_huge_pmd_upgrades_write(self) -> bool {
        self >= Kernel::V612
    }
    /// x86 `pmd_modify()` (arch/x86/include/asm/pgtable.h) drops the PMD's
    /// hardware dirty bit (soft-dirty stays): from v6.6 (bb3aadf7d446, "x86/mm:
    /// Start actually marking _PAGE_SAVED_DIRTY") until "x86/mm: Fix user-space
    /// data loss with MADV_FREE and THP" (v7.3-rc4, Cc: stable; Debian's 6.12
    /// has it from 6.12.111, its 6.18.15 does not). `change_huge_pmd()`
    /// (mprotect, uffd-wp, NUMA hinting) and `do_huge_pmd_numa_page()` then leave a
    /// clean PMD: nothing dirties the folio at a split, a migration entry is not
    /// dirty (so `remove_migration_pmd()` does not `pmd_mkdirty`), and reclaim
    /// discards a lazy-free THP written since MADV_FREE. Found by kernel-check
    /// on 6.18 (sample-thp-1-311, sample-thp-2-073); tree 6.18.15.
    pub fn pmd_modify_drops_dirty(self) -> bool {
        self == Kernel::V618
    }
    /// MADV_COLLAPSE needs a writable PTE among the PMD's (`SCAN_PAGE_RO`) before
    /// v6.18 ("mm: enable khugepaged anonymous collapse on non-writable
    /// regions", 6.18 merge window; read in 6.1.192 and 6.12.118, gone in
    /// 6.18.15 and 7.3.4).
    pub fn collapse_needs_writable_pte(self) -> bool {
        self <= Kernel::V612
    }
    /// `madvise_collapse()` stops at a PMD without a PTE table (`SCAN_PMD_NONE`
    /// is not whitelisted) up to v6.18; 7.3's `SCAN_NO_PTE_TABLE` is, and the
    /// loop goes on to the next PMD.
    pub fn collapse_stops_at_pmd_none(self) -> bool {
        self <= Kernel::V618
    }
    /// A PMD migration entry counts as collapsed (`SCAN_PMD_MAPPED`:
    /// `check_pmd_state()`, read in 6.18.15 and 7.3.4); in 6.1.192 and 6.12.118
    /// `!pmd_present()` is `SCAN_PMD_NULL`.
    pub fn collapse_waits_for_pmd_migration(self) -> bool {
        self >= Kernel::V618
    }
    /// UFFD_FEATURE_WP_UNPOPULATED (v6.4, "mm/uffd: UFFD_FEATURE_WP_UNPOPULATED"):
    /// uffd-wp of an anonymous VMA puts markers in none PTEs, and a fault there
    /// keeps the protection (`do_anonymous_page()` with `vmf_orig_pte_uffd_wp()`).
    pub fn uffd_wp_unpopulated(self) -> bool {
        self >= Kernel::V612
    }
    /// UFFD_FEATURE_WP_ASYNC (v6.7, "mm/userfaultfd: UFFD_FEATURE_WP_ASYNC"):
    /// write faults on protected pages resolve in the kernel.
    pub fn uffd_wp_async(self) -> bool {
        self >= Kernel::V612
    }
    /// The PAGEMAP_SCAN ioctl of /proc/pid/pagemap (v6.7, "fs/proc/task_mmu:
    /// implement IOCTL to get and optionally clear info about PTEs").
    pub fn pagemap_scan(self) -> bool {
        self >= Kernel::V612
    }
    /// Guard regions: MADV_GUARD_INSTALL / MADV_GUARD_REMOVE (v6.13, file
    /// mappings from v6.15; mm/madvise.c). Older kernels refuse the advice (EINVAL).
    pub fn guard_regions(self) -> bool {
        self >= Kernel::V618
    }
    /// How MADV_GUARD_INSTALL makes fork copy the page tables that hold the
    /// guards: 6.18.15 gives every VMA an anon_vma (`anon_vma_prepare()`, which
    /// `vma_needs_copy()` then sees); 7.3.4 sets the sticky VM_MAYBE_GUARD flag,
    /// part of VM_COPY_ON_FORK, and prepares an anon_vma for anonymous VMAs only.
    pub fn guard_sets_maybe_guard(self) -> bool {
        self >= Kernel::V73
    }
    /// `replace_page()` (mm/ksm.c) keeps the replaced PTE's soft-dirty bit: in
    /// Debian's 6.12.118 tree only (not in 6.1.192, 6.18.15 or 7.3.4). No tree
    /// keeps its uffd-wp bit.
    pub fn ksm_replace_keeps_soft_dirty(self) -> bool {
        self == Kernel::V612
    }
    /// `break_ksm()` unmerges with an unshare fault (read in 6.12.118, 6.18.15,
    /// 7.3.4): a read-only private copy keeping soft-dirty and uffd-wp. 6.1.192
    /// takes a write fault, which a sync uffd-wp PTE turns into SIGBUS (the page
    /// stays merged).
    pub fn break_ksm_unshares(self) -> bool {
        self >= Kernel::V612
    }
    /// Is an unpopulated page WRITTEN to PAGEMAP_SCAN (fs/proc/task_mmu.c,
    /// `pagemap_page_category()` and `pagemap_scan_pte_hole()`)? Read in each
    /// tree; the three differ.
    pub fn pagemap_scan_unpopulated(self) -> ScanUnpopulated {
        match self {
            Kernel::V61 | Kernel::V61y | Kernel::V612 => ScanUnpopulated::NoneWrittenAnywhere,
            Kernel::V618 => ScanUnpopulated::FastPathOnly,
            Kernel::V73 => ScanUnpopulated::WrittenInUffdWp,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kernel::V61 => "v6.1",
            Kernel::V61y => "v6.1.y",
            Kernel::V612 => "v6.12",
            Kernel::V618 => "v6.18",
            Kernel::V73 => "v7.3",
        }
    }
    pub fn parse(s: &str) -> Option<Kernel> {
        match s {
            "v6.1" | "6.1" => Some(Kernel::V61),
            "v6.1.y" | "6.1.y" => Some(Kernel::V61y),
            "v6.12" | "6.12" | "v6.12.y" | "6.12.y" => Some(Kernel::V612),
            "v6.18" | "6.18" | "v6.18.y" | "6.18.y" => Some(Kernel::V618),
            "v7.3" | "7.3" | "v7.3.y" | "7.3.y" => Some(Kernel::V73),
            _ => None,
        }
    }
    /// The restore this kernel itself ships.
    pub fn native_restore(self) -> Restore {
        match self {
            Kernel::V61 => Restore::PreFix,
            Kernel::V61y => Restore::Stable61y,
            Kernel::V612 | Kernel::V618 | Kernel::V73 => Restore::VmPageProt,
        }
    }
}

pub const KERNEL_NAMES: &str = "v6.1, v6.1.y, v6.12, v6.18, v7.3";

/// The `clear_soft_dirty()` variant (fs/proc/task_mmu.c): as every kernel up to
/// v7.3 has it (a non-present entry only loses its soft-dirty bit, so a writable
/// migration entry stays writable), or with the candidate fix that makes a
/// writable migration entry readable, as `change_pte_range()` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClearRefs {
    Kernel,
    WrprotectMigration,
}

/// One side of the differential run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub restore: Restore,
    pub unuse: Unuse,
    pub clear_refs: ClearRefs,
    pub kernel: Kernel,
    /// Holes patched in the model for a counterfactual re-run (never a variant
    /// of its own: `check` sets them to ask "is the harm this hole's?").
    pub patches: Patches,
}

bitflags::bitflags! {
    /// Counterfactual patches of holes common to every variant.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Patches: u16 {
        /// VMA merges OR VM_SOFTDIRTY (v6.19's sticky flags) on every profile.
        const STICKY_SOFTDIRTY = 1 << 0;
        /// B1 (uffd-wp VMAs want writenotify, v6.2-rc4 and 6.1.y) on v6.1 too.
        const UFFD_WRITENOTIFY = 1 << 1;
        /// v6.3's `uffd_wp_range()` on `vm_page_prot` (the resolve keeps what
        /// writenotify and soft-dirty want) on every profile.
        const UFFD_WP_RESOLVE = 1 << 2;
        /// v6.3's write-protecting `pte_mkuffd_wp()` on every profile.
        const MKUFFD_WP_WRPROTECT = 1 << 3;
        /// v6.3's NUMA hinting without savedwrite on every profile.
        const NUMA_NO_SAVEDWRITE = 1 << 4;
        /// B3 (fork drops markers of a child VMA without uffd-wp) on v6.1 too.
        const FORK_MARKER = 1 << 5;
        /// mremap clears uffd-wp without EVENT_REMAP (v6.13, 6.1.y) on v6.1 too.
        const MREMAP_UFFD_WP = 1 << 6;
        /// x86 `pmd_modify()` keeps the dirty bit (the v7.3-rc4 fix) on v6.18 too.
        const PMD_MODIFY_KEEPS_DIRTY = 1 << 7;
        /// KSM's `replace_page()` keeps the replaced PTE's soft-dirty and
        /// uffd-wp bits on every profile.
        const KSM_REPLACE_KEEPS_BITS = 1 << 8;
        /// PAGEMAP_SCAN reports an unpopulated page of a uffd-wp VMA WRITTEN on
        /// every path (as 6.12.118 and 7.3.4 do) on v6.18 too.
        const SCAN_UNPOPULATED_WRITTEN = 1 << 9;
        /// MADV_GUARD_INSTALL's walk takes a uffd-wp marker for an empty PTE
        /// (the candidate fix of [`crate::judge::holes::Hole::GuardInstallUffdWp`],
        /// patches/guard-install-uffd-wp-marker): the install completes.
        const GUARD_INSTALL_OVER_UFFD_WP = 1 << 10;
        /// A guard marker carries uffd-wp ([`crate::judge::holes::Hole::UffdWpSkipsGuard`]):
        /// UFFDIO_WRITEPROTECT marks a guard, MADV_GUARD_REMOVE leaves a uffd-wp
        /// marker behind a protected one, and with GUARD_INSTALL_OVER_UFFD_WP the
        /// install keeps the protection of the marker it replaces. In no tree.
        const GUARD_KEEPS_UFFD_WP = 1 << 11;
    }
}

/// The rules a profile has from an upstream fix, asked through the side so that
/// a counterfactual can patch them in (`crate::judge::holes`).
impl Config {
    /// Do VMA merges OR VM_SOFTDIRTY (v6.19+, or patched)?
    pub fn sticky_softdirty_merges(&self) -> bool {
        self.kernel.sticky_softdirty_merges() || self.patches.contains(Patches::STICKY_SOFTDIRTY)
    }
    /// Do uffd-wp VMAs want writenotify (B1, or patched)?
    pub fn b1_uffd_writenotify(&self) -> bool {
        self.kernel.b1_uffd_writenotify() || self.patches.contains(Patches::UFFD_WRITENOTIFY)
    }
    /// Does `uffd_wp_range()` work on `vm_page_prot` (v6.3+, or patched)?
    pub fn uffd_wp_range_uses_vm_page_prot(&self) -> bool {
        self.kernel.uffd_wp_range_uses_vm_page_prot() || self.patches.contains(Patches::UFFD_WP_RESOLVE)
    }
    /// Does `pte_mkuffd_wp()` write-protect (v6.3+, or patched)?
    pub fn mkuffd_wp_wrprotects(&self) -> bool {
        self.kernel.mkuffd_wp_wrprotects() || self.patches.contains(Patches::MKUFFD_WP_WRPROTECT)
    }
    /// Does NUMA hinting keep W (savedwrite: before v6.3, unless patched)?
    pub fn numa_savedwrite(&self) -> bool {
        self.kernel.numa_savedwrite() && !self.patches.contains(Patches::NUMA_NO_SAVEDWRITE)
    }
    /// Does fork drop a marker the child VMA cannot use (B3, or patched)?
    pub fn b3_fork_marker(&self) -> bool {
        self.kernel.b3_fork_marker() || self.patches.contains(Patches::FORK_MARKER)
    }
    /// Does mremap clear uffd-wp of a source without EVENT_REMAP (or patched)?
    pub fn mremap_clears_uffd_wp(&self) -> bool {
        self.kernel.mremap_clears_uffd_wp() || self.patches.contains(Patches::MREMAP_UFFD_WP)
    }
    /// Does KSM's `replace_page()` keep the replaced PTE's soft-dirty bit (6.12.118, or patched)?
    pub fn ksm_replace_keeps_soft_dirty(&self) -> bool {
        self.kernel.ksm_replace_keeps_soft_dirty() || self.patches.contains(Patches::KSM_REPLACE_KEEPS_BITS)
    }
    /// Does KSM's `replace_page()` keep the replaced PTE's uffd-wp bit (no tree; patched)?
    pub fn ksm_replace_keeps_uffd_wp(&self) -> bool {
        self.patches.contains(Patches::KSM_REPLACE_KEEPS_BITS)
    }
    /// How PAGEMAP_SCAN treats an unpopulated page ([`Kernel::pagemap_scan_unpopulated`], or patched).
    pub fn pagemap_scan_unpopulated(&self) -> ScanUnpopulated {
        match self.kernel.pagemap_scan_unpopulated() {
            ScanUnpopulated::FastPathOnly if self.patches.contains(Patches::SCAN_UNPOPULATED_WRITTEN) => {
                ScanUnpopulated::WrittenInUffdWp
            }
            u => u,
        }
    }
    /// Does MADV_GUARD_INSTALL replace a uffd-wp marker ([`Patches::GUARD_INSTALL_OVER_UFFD_WP`]; no tree)?
    pub fn guard_install_over_uffd_wp(&self) -> bool {
        self.patches.contains(Patches::GUARD_INSTALL_OVER_UFFD_WP)
    }
    /// Does a guard marker carry uffd-wp ([`Patches::GUARD_KEEPS_UFFD_WP`]; no tree)?
    pub fn guard_keeps_uffd_wp(&self) -> bool {
        self.patches.contains(Patches::GUARD_KEEPS_UFFD_WP)
    }
    /// Does x86 `pmd_modify()` drop the PMD's dirty bit (v6.18, unless patched)?
    pub fn pmd_modify_drops_dirty(&self) -> bool {
        self.kernel.pmd_modify_drops_dirty() && !self.patches.contains(Patches::PMD_MODIFY_KEEPS_DIRTY)
    }
}

impl Config {
    pub const fn new(restore: Restore) -> Config {
        Config {
            restore,
            unuse: Unuse::V61,
            clear_refs: ClearRefs::Kernel,
            kernel: Kernel::V61,
            patches: Patches::empty(),
        }
    }

    /// Parse a variant name (see [`Variant`]) on kernel profile `kernel`.
    pub fn parse_variant(s: &str, kernel: Kernel) -> Option<Config> {
        let v: Variant = s.parse().ok()?;
        Some(Config { kernel, ..Config::new(v.restore).with_variant(v) })
    }

    /// This side's variant.
    pub fn variant(&self) -> Variant {
        Variant { restore: self.restore, unuse: self.unuse, clear_refs: self.clear_refs }
    }

    /// This side with variant `v`.
    pub fn with_variant(self, v: Variant) -> Config {
        Config { restore: v.restore, unuse: v.unuse, clear_refs: v.clear_refs, ..self }
    }

    /// The variant's name (inverse of [`Config::parse_variant`]).
    pub fn variant_name(&self) -> String {
        self.variant().to_string()
    }
}

/// What a side of the differential run varies: the restore of
/// `remove_migration_pte()`, optionally `unuse_pte()`'s uffd-wp care and the
/// candidate clear_refs fix. Named `pre-fix`, `full-restore`, `vm-page-prot`,
/// `stable-6.1.y`, each optionally followed by `+unuse-care` and/or
/// `+clear-refs-fix` (in that order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    pub restore: Restore,
    pub unuse: Unuse,
    pub clear_refs: ClearRefs,
}

impl Variant {
    /// Every variant, longest names first (so a name is never read as a prefix of another).
    pub fn all() -> impl Iterator<Item = Variant> {
        let mut v = Vec::new();
        for restore in [Restore::PreFix, Restore::FullRestore, Restore::VmPageProt, Restore::Stable61y] {
            for unuse in [Unuse::V61, Unuse::WithCare] {
                for clear_refs in [ClearRefs::Kernel, ClearRefs::WrprotectMigration] {
                    v.push(Variant { restore, unuse, clear_refs });
                }
            }
        }
        v.sort_by_key(|x| std::cmp::Reverse(x.to_string().len()));
        v.into_iter()
    }

    /// The variant whose name `s` starts with (the longest), and the rest of `s`.
    pub fn parse_prefix(s: &str) -> Option<(Variant, &str)> {
        Variant::all().find_map(|v| s.strip_prefix(v.to_string().as_str()).map(|rest| (v, rest)))
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.restore {
            Restore::PreFix => "pre-fix",
            Restore::FullRestore => "full-restore",
            Restore::VmPageProt => "vm-page-prot",
            Restore::Stable61y => "stable-6.1.y",
        })?;
        if self.unuse == Unuse::WithCare {
            f.write_str("+unuse-care")?;
        }
        if self.clear_refs == ClearRefs::WrprotectMigration {
            f.write_str("+clear-refs-fix")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Variant, String> {
        match Variant::parse_prefix(s) {
            Some((v, "")) => Ok(v),
            _ => Err(format!("unknown variant `{s}` (known: {VARIANT_NAMES})")),
        }
    }
}

/// Variant names accepted by `--variants`.
pub const VARIANT_NAMES: &str =
    "pre-fix, full-restore, vm-page-prot, stable-6.1.y (each optionally +unuse-care, then +clear-refs-fix)";

/// Does `[addr, addr + len)` run past the model's address space (its
/// TASK_SIZE: mremap() refuses such a destination with EINVAL)?
pub fn past_task_size(addr: u8, len: u8) -> bool {
    addr as usize + len as usize > NPAGES
}

/// The pages `[addr, addr + len)` of an op, clipped to the model's space.
pub fn range(addr: u8, len: u8) -> (u8, u8) {
    (addr, addr.saturating_add(len).min(NPAGES as u8))
}

fn vm_prot(prot: crate::op::Prot) -> VmFlags {
    let mut f = VmFlags::empty();
    f.set(VmFlags::READ, prot.read());
    f.set(VmFlags::WRITE, prot.write());
    f.set(VmFlags::EXEC, prot.exec());
    f
}

fn file_index(f: FileName) -> u8 {
    match f {
        FileName::Memfd => FILE_MEMFD,
        FileName::Ext4 => FILE_EXT4,
        FileName::Ramfs => FILE_RAMFS,
    }
}

/// What one step came to (for traces and novelty feedback).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepResult {
    Ok,
    /// The syscall failed or there was nothing to do.
    Failed,
    /// A store blocked on userfaultfd write protection.
    UffdWp,
    Segv,
    /// The profile's kernel lacks what the op asks for (`since` added it): the
    /// kernel's EINVAL or ENOTTY.
    NotInKernel {
        feature: &'static str,
        since: &'static str,
    },
}

impl StepResult {
    /// A small number per kind of result (novelty feedback).
    pub fn code(self) -> u32 {
        match self {
            StepResult::Ok => 0,
            StepResult::Failed => 1,
            StepResult::UffdWp => 2,
            StepResult::Segv => 3,
            StepResult::NotInKernel { .. } => 1,
        }
    }
}

/// Apply one op to the kernel state (the model's next-state function). What
/// user space is owed follows through the [`events::Event`]s the step emits
/// (`crate::judge::world`); nothing here knows the contracts.
pub fn step(s: &mut State, cfg: &Config, op: &Op) -> StepResult {
    s.step = s.step.wrapping_add(1);
    s.events.clear();
    // Every op runs in a process that must be alive (fork: the parent).
    if op.process().is_some_and(|p| !s.procs[p as usize].alive) {
        return StepResult::Failed;
    }
    let ok = |b: bool| if b { StepResult::Ok } else { StepResult::Failed };
    let res = |r: vma::KResult<()>| ok(r.is_ok());
    let r = match *op {
        Op::Mmap { p, addr, len, prot, target } => res(sys_mmap(s, cfg, p as usize, addr, len, prot, target)),
        Op::Munmap { p, addr, len } => {
            let (a, e) = range(addr, len);
            res(vma::do_munmap(s, cfg, p as usize, a, e))
        }
        Op::Mprotect { p, addr, len, prot } => {
            let (a, e) = range(addr, len);
            res(vma::mprotect(s, cfg, p as usize, a, e, vm_prot(prot)))
        }
        Op::Madvise { advice: advice @ (Advice::GuardInstall | Advice::GuardRemove), .. }
            if !cfg.kernel.guard_regions() =>
        {
            StepResult::NotInKernel { feature: advice.name(), since: "v6.13" }
        }
        Op::Madvise { p, addr, len, advice } => {
            let (a, e) = range(addr, len);
            res(madvise(s, cfg, p as usize, a, e, advice))
        }
        Op::Mlock { p, addr, len } => {
            let (a, e) = range(addr, len);
            res(vma::mlock(s, cfg, p as usize, a, e, true))
        }
        Op::Munlock { p, addr, len } => {
            let (a, e) = range(addr, len);
            res(vma::mlock(s, cfg, p as usize, a, e, false))
        }
        Op::Mremap { p, addr, len, new } => {
            let (a, e) = range(addr, len);
            res(vma::mremap(s, cfg, p as usize, a, e - a, new))
        }
        Op::Read { p, addr } => user_access(s, cfg, p as usize, addr, false),
        Op::Write { p, addr } => user_access(s, cfg, p as usize, addr, true),
        Op::WriteVal { p, addr, val } => {
            // The store writes the value's token (fresh tokens go on from it).
            s.next_token = crate::program::args::value_token(val) - 1;
            user_access(s, cfg, p as usize, addr, true)
        }
        Op::KsmMerge {} => {
            ksm::ksm_do_scan(s, cfg);
            StepResult::Ok
        }
        Op::ClearRefs { p } => {
            pte::clear_refs_write(s, cfg, p as usize);
            StepResult::Ok
        }
        Op::UffdRegister { p, addr, len } => {
            let (a, e) = range(addr, len);
            res(vma::userfaultfd_register(s, cfg, p as usize, a, e))
        }
        Op::UffdUnregister { p, addr, len } => {
            let (a, e) = range(addr, len);
            res(vma::userfaultfd_unregister(s, cfg, p as usize, a, e))
        }
        Op::UffdWp { p, addr, len } | Op::UffdUnwp { p, addr, len } => {
            let (a, e) = range(addr, len);
            ok(mwriteprotect_range(s, cfg, p as usize, a, e, matches!(op, Op::UffdWp { .. })))
        }
        Op::UffdClose { p } => res(vma::userfaultfd_release(s, cfg, p as usize)),
        Op::Fork { parent, child, event_fork } => {
            ok(fork::dup_mmap(s, cfg, parent as usize, child as usize, event_fork))
        }
        Op::Exit { p } => {
            fork::exit_mmap(s, cfg, p as usize);
            StepResult::Ok
        }
        Op::Migrate { p, addr } => ok(migrate::migrate_pages(s, cfg, p as usize, addr)),
        Op::MigrateStart { p, addr } => ok(migrate::migrate_start(s, cfg, p as usize, addr)),
        Op::MigrateFinish { p, addr } => ok(migrate::migrate_finish_at(s, cfg, p as usize, addr)),
        Op::Pageout { p, addr } => {
            swap::shrink_folio(s, cfg, p as usize, addr);
            StepResult::Ok
        }
        Op::Swapoff {} => {
            swap::swapoff(s, cfg);
            StepResult::Ok
        }
        Op::Writeback { p, addr } => {
            swap::writeback(s, p as usize, addr);
            StepResult::Ok
        }
        Op::NumaHint { p, addr } => ok(change_prot_numa(s, cfg, p as usize, addr)),
        Op::UffdApi { p, features } => match userfaultfd::missing_feature(cfg.kernel, features) {
            Some((feature, since)) => StepResult::NotInKernel { feature, since },
            None => res(userfaultfd::userfaultfd_api(s, cfg.kernel, p as usize, features)),
        },
        Op::PagemapScan { p, addr, len, mode } => {
            if !cfg.kernel.pagemap_scan() {
                StepResult::NotInKernel { feature: "PAGEMAP_SCAN", since: "v6.7" }
            } else {
                let (a, e) = range(addr, len);
                res(task_mmu::do_pagemap_scan(s, cfg, p as usize, a, e, mode).1)
            }
        }
    };
    if s.procs.iter().any(|m| m.huge != 0) {
        huge_memory::vma_adjust_trans_huge(s, cfg);
    }
    r
}

/// A user load or store: `fault::user_access`, as the op's result.
fn user_access(s: &mut State, cfg: &Config, p: usize, addr: u8, write: bool) -> StepResult {
    match fault::user_access(s, cfg, p, addr, write) {
        fault::Access::Done => StepResult::Ok,
        fault::Access::UffdWp => StepResult::UffdWp,
        fault::Access::Segv => StepResult::Segv,
        fault::Access::Oom => StepResult::Failed,
    }
}

/// mmap(MAP_FIXED) of `len` pages at `addr` (`ksys_mmap_pgoff()` → `do_mmap()`):
/// the files are NPAGES long, so a file mapping must fit; then `mmap_region()`.
#[allow(clippy::too_many_arguments)]
fn sys_mmap(
    s: &mut State,
    cfg: &Config,
    p: usize,
    addr: u8,
    len: u8,
    prot: crate::op::Prot,
    target: Target,
) -> vma::KResult<()> {
    let (a, e) = range(addr, len);
    let (kind, pgoff) = match target {
        Target::Anon => (MapKind::Anon, 0),
        Target::SharedAnon => (MapKind::SharedAnon, 0),
        Target::File { file, shared, pgoff } => {
            if pgoff as usize + (e - a) as usize > NPAGES {
                return Err(vma::Errno::Einval);
            }
            (MapKind::File { file: file_index(file), shared }, pgoff)
        }
    };
    vma::mmap_region(s, cfg, p, a, e - a, vm_prot(prot), kind, pgoff)
}

/// madvise() dispatch (mm/madvise.c): DONTNEED and FREE walk PTEs (both refuse
/// VM_LOCKED VMAs; FREE only private anonymous ones), the rest change flags.
pub fn madvise(s: &mut State, cfg: &Config, p: usize, a: u8, e: u8, advice: Advice) -> vma::KResult<()> {
    if advice == Advice::Collapse {
        return madvise_walk_vmas(s, p, a, e, |s, x, y| khugepaged::madvise_collapse(s, cfg, p, x, y));
    }
    if matches!(advice, Advice::GuardInstall | Advice::GuardRemove) {
        return madvise_walk_vmas(s, p, a, e, |s, x, y| {
            let vi = s.procs[p].vma_index(x).unwrap();
            if advice == Advice::GuardInstall {
                madvise::madvise_guard_install(s, cfg, p, vi, x, y)
            } else {
                madvise::madvise_guard_remove(s, cfg, p, vi, x, y)
            }
        });
    }
    if advice == Advice::Unmergeable {
        // ksm_madvise(): unmerge the KSM pages of the range first.
        ksm::unmerge_ksm_pages(s, cfg, p, a, e);
    }
    if !matches!(advice, Advice::DontNeed | Advice::Free) {
        return vma::madvise_update_vma(s, cfg, p, a, e, advice);
    }
    let vmas: arrayvec::ArrayVec<Vma, MAX_VMAS> =
        s.procs[p].vmas.iter().filter(|v| v.start < e && v.end > a).copied().collect();
    for v in vmas {
        if v.flags.contains(VmFlags::LOCKED) {
            return Err(vma::Errno::Einval);
        }
        let (x, y) = (a.max(v.start), e.min(v.end));
        if advice == Advice::DontNeed {
            // zap_page_range(): no ZAP_FLAG_DROP_MARKER, markers stay.
            pte::zap_pte_range(s, cfg, p, &v, x, y, pte::ZapDetails { drop_marker: false });
            if cfg.kernel.dontneed_reclaims_pte_tables() {
                huge_memory::reclaim_empty_pte_tables(&mut s.procs[p], x, y);
            }
            let (shared, anon) = (v.flags.contains(VmFlags::SHARED), v.is_anonymous());
            s.emit(Event::Zapped { p: p as u8, start: x, end: y, shared, anon });
        } else {
            if !v.is_anonymous() || v.flags.contains(VmFlags::SHARED) {
                return Err(vma::Errno::Einval);
            }
            swap::madvise_free(s, cfg, p, x, y);
            s.emit(Event::LazyFreed { p: p as u8, start: x, end: y });
        }
    }
    Ok(())
}

/// `madvise_walk_vmas()` (mm/madvise.c): `visit` each VMA's part of `[a, e)`,
/// stopping at the first error; a hole in the range is ENOMEM at the end.
fn madvise_walk_vmas(
    s: &mut State,
    p: usize,
    a: u8,
    e: u8,
    mut visit: impl FnMut(&mut State, u8, u8) -> vma::KResult<()>,
) -> vma::KResult<()> {
    let parts: arrayvec::ArrayVec<(u8, u8), MAX_VMAS> =
        s.procs[p].vmas.iter().filter(|v| v.start < e && v.end > a).map(|v| (a.max(v.start), e.min(v.end))).collect();
    let covered: u32 = parts.iter().map(|(x, y)| (y - x) as u32).sum();
    for (x, y) in parts {
        visit(s, x, y)?;
    }
    if covered < (e - a) as u32 {
        return Err(vma::Errno::Enomem);
    }
    Ok(())
}

/// `mwriteprotect_range()` (mm/userfaultfd.c): v6.1 needs the range inside one
/// VMA registered for uffd-wp; v6.12 walks every VMA in the range from the first
/// one (a leading hole is skipped), each of which must be registered (ENOENT at the
/// first that is not, or when there is none). Then `uffd_wp_range()`.
fn mwriteprotect_range(s: &mut State, cfg: &Config, p: usize, a: u8, e: u8, enable: bool) -> bool {
    let vmas: arrayvec::ArrayVec<Vma, MAX_VMAS> = if cfg.kernel.uffd_wp_walks_vma_range() {
        s.procs[p].vmas.iter().filter(|v| v.start < e && v.end > a).copied().collect()
    } else {
        // One VMA, which must hold the whole range.
        match s.procs[p].vma(a) {
            Some(v) if e <= v.end => std::iter::once(*v).collect(),
            _ => return false,
        }
    };
    if vmas.is_empty() {
        return false;
    }
    for v in vmas {
        if !v.uffd || !v.uffd_wp() {
            return false;
        }
        let (x, y) = (a.max(v.start), e.min(v.end));
        pte::uffd_wp_range(s, cfg, p, &v, x, y, enable);
        s.emit(Event::WriteProtected { p: p as u8, start: x, end: y, on: enable });
    }
    true
}

/// `change_prot_numa()` (mm/mempolicy.c) as task_numa_work() drives it: skips
/// inaccessible VMAs and read-only file mappings; PAGE_NONE with MM_CP_PROT_NUMA.
fn change_prot_numa(s: &mut State, cfg: &Config, p: usize, addr: u8) -> bool {
    let Some(v) = s.procs[p].vma(addr).copied() else {
        return false;
    };
    if !v.accessible() || !v.is_anonymous() && (v.flags & (VmFlags::READ | VmFlags::WRITE)) == VmFlags::READ {
        return false;
    }
    // task_numa_work() scans whole PMDs: a huge one is hinted as one.
    let (a, e) = if s.procs[p].is_huge(addr) { huge_memory::pmd_range(addr) } else { (addr, addr + 1) };
    pte::change_protection(s, cfg, p, &v, a, e, PageProt::empty(), pte::CpFlags::PROT_NUMA, Why::ChangeProtNuma);
    true
}

/// End of a program: finish every migration still in flight.
pub fn finish(s: &mut State, cfg: &Config) {
    migrate::migrate_finish_all(s, cfg);
}
