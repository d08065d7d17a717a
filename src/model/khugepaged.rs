//! `MADV_COLLAPSE` of anonymous memory (mm/khugepaged.c): `madvise_collapse()`
//! scans each aligned PMD of the range (`hpage_collapse_scan_pmd()`, 7.3
//! `collapse_scan_pmd()`), swaps in what is swapped out
//! (`__collapse_huge_page_swapin()`), checks the PTEs again
//! (`__collapse_huge_page_isolate()`) and copies the pages into a new THP mapped
//! by one PMD (`collapse_huge_page()`). Read in Debian's 6.1.192, 6.12.118,
//! 6.18.15 and 7.3.4 trees.
//!
//! MADV_COLLAPSE ignores the THP sysfs settings and VM_HUGEPAGE, and none of
//! khugepaged's limits (max_ptes_none, _swap, _shared, "referenced") apply to
//! it. The new THP is always a copy, also of a PTE-mapped THP (there is no
//! shortcut for anonymous memory): empty and zero-page entries become zeroed
//! pages, pages shared with another process are copied for this one only.
//! File and shmem collapse (`hpage_collapse_scan_file()`) are not modelled:
//! the model refuses them with EINVAL and `emit-c` refuses such programs.

use super::fault::{handle_pte_fault, Fault};
use super::huge_memory::{pmd_none, pmd_range, set_pmd_at};
use super::pte::*;
use super::types::*;
use super::vma::{Errno, KResult};
use super::{Config, Kernel};

/// What the collapse of one PMD came to: the kernel's `enum scan_result`, the
/// cases the model reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanResult {
    Succeed,
    /// Already a huge PMD (from 6.18: a PMD migration entry too).
    PmdMapped,
    /// No PTE table (`SCAN_PMD_NONE`; 7.3 `SCAN_NO_PTE_TABLE`).
    PmdNone,
    /// A PMD migration entry before 6.18 (`!pmd_present()`: `SCAN_PMD_NULL`).
    PmdNull,
    /// `hugepage_vma_revalidate()` refused the VMA (no anon_vma yet, not
    /// anonymous, not covering the PMD, VM_NOHUGEPAGE).
    VmaCheck,
    /// An empty or zero-page entry in a VMA registered with userfaultfd.
    ExceedNonePte,
    /// A PTE, swap entry or marker with the uffd-wp bit.
    PteUffdWp,
    /// No writable PTE (before v6.18).
    PageRo,
    /// Still not present after the swap-in.
    PteNonPresent,
    /// No free large folio.
    AllocHugePageFail,
    /// The swap-in fault failed.
    Fail,
}

impl ScanResult {
    /// `madvise_collapse()`'s whitelist: the results after which the loop goes
    /// on to the next PMD (any other failure ends it).
    fn continues(self, k: Kernel) -> bool {
        match self {
            ScanResult::PmdNull | ScanResult::PteNonPresent | ScanResult::PteUffdWp | ScanResult::PageRo => true,
            ScanResult::PmdNone => !k.collapse_stops_at_pmd_none(),
            ScanResult::Succeed
            | ScanResult::PmdMapped
            | ScanResult::VmaCheck
            | ScanResult::ExceedNonePte
            | ScanResult::AllocHugePageFail
            | ScanResult::Fail => false,
        }
    }

    /// `madvise_collapse_errno()` (EBUSY for `SCAN_EXCEED_NONE_PTE` from 6.12:
    /// the model's errno set has no EBUSY, and no reproducer reads it).
    fn errno(self) -> Errno {
        match self {
            ScanResult::AllocHugePageFail => Errno::Enomem,
            _ => Errno::Einval,
        }
    }
}

/// Is `v` a VMA `madvise_collapse()` can collapse in (`thp_vma_allowable_order()`
/// with the sysfs settings not enforced, anonymous side): private anonymous,
/// not VM_NOHUGEPAGE, with at least one aligned PMD inside.
fn collapse_vma_allowed(v: &Vma) -> bool {
    let first = v.start.next_multiple_of(HPAGE_PMD_NR);
    v.is_anonymous()
        && !v.flags.contains(VmFlags::SHARED)
        && !v.flags.contains(VmFlags::NOHUGEPAGE)
        && first + HPAGE_PMD_NR <= v.end
}

/// `madvise_collapse()` (mm/khugepaged.c) over `[start, end)` of the VMA at
/// `start` (the madvise layer clips the range to each VMA): each aligned PMD
/// inside is collapsed in turn; success when every one is (or already was) a
/// huge PMD, else the errno of the last failure. Every profile (MADV_COLLAPSE
/// is v6.1); the per-PMD rules differ ([`collapse_one`]).
pub fn madvise_collapse(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) -> KResult<()> {
    let Some(v) = s.procs[p].vma(start).copied() else {
        return Err(Errno::Enomem);
    };
    if !collapse_vma_allowed(&v) {
        return Err(Errno::Einval);
    }
    let (hstart, hend) = (start.next_multiple_of(HPAGE_PMD_NR), end & !(HPAGE_PMD_NR - 1));
    let mut last_fail = ScanResult::Succeed;
    let mut addr = hstart;
    while addr + HPAGE_PMD_NR <= hend {
        match collapse_one(s, cfg, p, addr) {
            ScanResult::Succeed | ScanResult::PmdMapped => {}
            r if r.continues(cfg.kernel) => last_fail = r,
            r => return Err(r.errno()),
        }
        addr += HPAGE_PMD_NR;
    }
    match last_fail {
        ScanResult::Succeed => Ok(()),
        r => Err(r.errno()),
    }
}

/// One PMD of [`madvise_collapse`]: `hugepage_vma_revalidate()`,
/// `find_pmd_or_thp_or_none()`, the scan, the swap-in, the isolation checks and
/// `collapse_huge_page()`.
///
/// - A huge PMD is `SCAN_PMD_MAPPED` (nothing changes); a PMD migration entry is
///   too from 6.18, `SCAN_PMD_NULL` before ([`Kernel::collapse_waits_for_pmd_migration`]).
///   No PTE table: `SCAN_PMD_NONE`.
/// - Per entry (the four model pages and the 508 unmodelled ones after them,
///   which map the split THP they came from, [`Mm::tail`], or nothing): an
///   empty or zero-page entry fails the collapse if the VMA is registered with
///   userfaultfd (`userfaultfd_armed()`); the uffd-wp bit on a PTE, a swap entry
///   or a marker fails it; swap and migration entries are faulted in (a read
///   fault: `do_swap_page()`, `migration_entry_wait()`); before v6.18 at least
///   one PTE must be writable ([`Kernel::collapse_needs_writable_pte`]; the
///   unmodelled pages count as writable when the last model page is).
/// - The new THP: a fresh exclusive large folio whose pages hold the old pages'
///   data (zero where empty), mapped by
///   `maybe_pmd_mkwrite(pmd_mkdirty(mk_huge_pmd(vm_page_prot)))` — dirty and
///   soft-dirty (x86 `pmd_mkdirty`), writable iff VM_WRITE, never uffd-wp; the
///   old pages lose this mapping, the PTE table is freed.
pub fn collapse_one(s: &mut State, cfg: &Config, p: usize, addr: u8) -> ScanResult {
    let k = cfg.kernel;
    let (start, end) = pmd_range(addr);
    let Some(vi) = s.procs[p].vma_index(start) else {
        return ScanResult::VmaCheck;
    };
    let v = s.procs[p].vmas[vi];
    if v.anon_vma == 0 || !collapse_vma_allowed(&v) || v.end < end || v.start > start {
        return ScanResult::VmaCheck;
    }
    if s.procs[p].is_huge(start) {
        return match s.procs[p].pt[start as usize] {
            Entry::Migration { .. } if !k.collapse_waits_for_pmd_migration() => ScanResult::PmdNull,
            _ => ScanResult::PmdMapped,
        };
    }
    if pmd_none(&s.procs[p], start) {
        return ScanResult::PmdNone;
    }
    // hpage_collapse_scan_pmd(), then the swap-in.
    if let Some(r) = scan_ptes(s, k, p, &v, start, false) {
        return r;
    }
    for a in start..end {
        for _ in 0..8 {
            match s.procs[p].pt[a as usize] {
                // (a guard marker is swapped in too, and raises SIGSEGV)
                Entry::Swap { .. } | Entry::Migration { .. } | Entry::Guard { .. } => {
                    match handle_pte_fault(s, cfg, p, vi, a, false) {
                        Fault::Retry => {}
                        Fault::Uffd | Fault::Oom | Fault::Segv => return ScanResult::Fail,
                    }
                }
                _ => break,
            }
        }
    }
    // __collapse_huge_page_isolate(): the same checks on present PTEs only.
    if let Some(r) = scan_ptes(s, k, p, &v, start, true) {
        return r;
    }
    let Some(head) = s.alloc_large_folio() else {
        return ScanResult::AllocHugePageFail;
    };
    collapse_huge_page(s, p, &v, start, head);
    ScanResult::Succeed
}

/// The per-entry checks of the scan (`isolate`: after the swap-in, where
/// anything not present is `SCAN_PTE_NON_PRESENT`). None: go on.
fn scan_ptes(s: &State, k: Kernel, p: usize, v: &Vma, start: u8, isolate: bool) -> Option<ScanResult> {
    let mm = &s.procs[p];
    let g = (start / HPAGE_PMD_NR) as usize;
    let mut writable = false;
    for a in start..start + HPAGE_PMD_NR {
        match mm.pt[a as usize] {
            Entry::None => {
                if v.uffd {
                    return Some(ScanResult::ExceedNonePte);
                }
            }
            Entry::Present { folio, .. } if folio == ZERO_PAGE => {
                if v.uffd {
                    return Some(ScanResult::ExceedNonePte);
                }
            }
            Entry::Present { bits, .. } => {
                if bits.contains(PteBits::UW) {
                    return Some(ScanResult::PteUffdWp);
                }
                writable |= bits.contains(PteBits::W);
            }
            Entry::Swap { bits, .. } | Entry::Migration { bits, .. } | Entry::Guard { bits } => {
                if bits.contains(SwpBits::UW) {
                    return Some(ScanResult::PteUffdWp);
                }
                if isolate {
                    return Some(ScanResult::PteNonPresent);
                }
            }
            // A uffd-wp marker (`pte_swp_uffd_wp_any()`; the model puts none in
            // anonymous VMAs).
            Entry::Marker => return Some(ScanResult::PteUffdWp),
        }
    }
    // The 508 unmodelled entries: the split THP's pages, or nothing.
    if mm.tail[g] == NO_FOLIO && v.uffd {
        return Some(ScanResult::ExceedNonePte);
    }
    if mm.tail[g] != NO_FOLIO {
        let last = mm.pt[(start + HPAGE_PMD_NR - 1) as usize];
        writable |= matches!(last, Entry::Present { bits, .. } if bits.contains(PteBits::W));
    }
    if isolate && !writable && k.collapse_needs_writable_pte() {
        return Some(ScanResult::PageRo);
    }
    None
}

/// `collapse_huge_page()` once the checks passed: copy the PMD's pages into the
/// large folio at `head` (`__collapse_huge_page_copy()`), drop the old mappings
/// and the PTE table, and map the new folio by one PMD.
fn collapse_huge_page(s: &mut State, p: usize, v: &Vma, start: u8, head: FolioId) {
    let g = (start / HPAGE_PMD_NR) as usize;
    let mut old = [NO_FOLIO; HPAGE_PMD_NR as usize];
    for i in 0..HPAGE_PMD_NR {
        let a = (start + i) as usize;
        let data = match s.procs[p].pt[a] {
            Entry::Present { folio, .. } if folio != ZERO_PAGE => {
                old[i as usize] = folio;
                s.folio(folio).data
            }
            _ => 0,
        };
        s.folios[(head + i) as usize].data = data;
    }
    let tail = std::mem::replace(&mut s.procs[p].tail[g], NO_FOLIO);
    let bits = maybe_mkwrite(pte_mkdirty(mk_pte(v.prot)), v);
    for i in 0..HPAGE_PMD_NR {
        page_add_rmap(s, head + i, true);
    }
    s.procs[p].ptable &= !(1 << g);
    set_pmd_at(s, p, start, head, bits, Why::CollapseHugePage);
    for f in old.into_iter().filter(|&f| f != NO_FOLIO) {
        page_remove_rmap(s, f);
    }
    if tail != NO_FOLIO {
        if s.large_folio_mapcount(tail) > 0 {
            s.mark_partially_mapped(tail);
        }
        put_anon_folio(s, tail);
    }
}
