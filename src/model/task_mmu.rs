//! The PAGEMAP_SCAN ioctl of `/proc/pid/pagemap` (fs/proc/task_mmu.c, v6.7+):
//! per page categories, and `PM_SCAN_WP_MATCHING` write protection of what it
//! reports. Followed in 6.12.118 (`do_pagemap_scan`, `pagemap_scan_test_walk`,
//! `pagemap_page_category`, `pagemap_scan_thp_entry`, `make_uffd_wp_pte`); the
//! 6.18 and 7.3 differences are the predicates named below.

use super::events::Event;
use super::huge_memory::{pmd_range, split_huge_pmd};
use super::pte::{pte_mkuffd_wp, set_pte};
use super::types::*;
use super::userfaultfd::{userfaultfd_wp_async, userfaultfd_wp_use_markers};
use super::vma::{Errno, KResult};
use super::{Config, ScanUnpopulated};
use crate::op::ScanMode;

/// What a scan returned, as masks over the model's pages (a page is in a mask
/// when a returned region covering it has that category).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Pages the scan returned at all.
    pub returned: u16,
    pub present: u16,
    pub swapped: u16,
    pub file: u16,
    pub pfnzero: u16,
    pub written: u16,
    pub soft_dirty: u16,
}

impl ScanReport {
    /// `ret=000f written=0002 present=0003 swapped=000c file=0000 zero=0001 sd=000f`
    /// (the masks as the reproducer prints them).
    pub fn render(&self) -> String {
        format!(
            "ret={:04x} written={:04x} present={:04x} swapped={:04x} file={:04x} zero={:04x} sd={:04x}",
            self.returned, self.written, self.present, self.swapped, self.file, self.pfnzero, self.soft_dirty
        )
    }
}

/// `PAGE_IS_*` of one page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Category {
    present: bool,
    swapped: bool,
    file: bool,
    pfnzero: bool,
    written: bool,
    soft_dirty: bool,
}

/// `pagemap_page_category()` (and `pagemap_thp_category()`, which gives a huge
/// PMD's pages what a PTE with its bits would have) with the VMA's category
/// (`VM_SOFTDIRTY`: SOFT_DIRTY): a present entry is PRESENT, WRITTEN unless it
/// carries the uffd-wp bit, FILE for a page-cache page (not the zero page, not a
/// private copy), PFNZERO for the zero page, SOFT_DIRTY from its bit; a swap or
/// migration entry or a marker is SWAPPED, WRITTEN unless it carries the swap
/// uffd-wp bit or is a uffd-wp marker, FILE for a migrating page-cache page,
/// SOFT_DIRTY from its swap bit. An unpopulated page (a none PTE, or no PTE
/// table: `pagemap_scan_pte_hole()`) is WRITTEN as
/// [`Kernel::pagemap_scan_unpopulated`] says; 7.3.4 reports nothing WRITTEN
/// outside a uffd-wp VMA. `fast`: the WRITTEN-only path of
/// `pagemap_scan_pmd_entry()` (category and return mask both PAGE_IS_WRITTEN),
/// which reports a none PTE WRITTEN in every tree.
fn pagemap_page_category(s: &State, cfg: &Config, p: usize, v: &Vma, addr: u8, fast: bool) -> Category {
    let mm = &s.procs[p];
    let e = mm.pt[addr as usize];
    let mut c = Category { soft_dirty: v.flags.contains(VmFlags::SOFTDIRTY), ..Category::default() };
    let file_folio = |f: FolioId| f != ZERO_PAGE && matches!(s.folio(f).kind, FolioKind::File { .. });
    match e {
        Entry::None => {
            let g = 1u8 << (addr / HPAGE_PMD_NR);
            let table = (mm.ptable | mm.huge) & g != 0;
            c.written = match cfg.pagemap_scan_unpopulated() {
                ScanUnpopulated::NoneWrittenAnywhere => table || v.uffd_wp(),
                ScanUnpopulated::FastPathOnly => table && fast,
                ScanUnpopulated::WrittenInUffdWp => v.uffd_wp(),
            };
        }
        Entry::Present { bits, folio } => {
            c.present = true;
            c.written = !bits.contains(PteBits::UW);
            c.file = file_folio(folio);
            c.pfnzero = folio == ZERO_PAGE;
            c.soft_dirty |= bits.contains(PteBits::SD);
        }
        Entry::Swap { bits, .. } => {
            c.swapped = true;
            c.written = !bits.contains(SwpBits::UW);
            c.soft_dirty |= bits.contains(SwpBits::SD);
        }
        Entry::Migration { bits, folio, .. } => {
            c.swapped = true;
            c.written = !bits.contains(SwpBits::UW);
            c.file = file_folio(folio);
            c.soft_dirty |= bits.contains(SwpBits::SD);
        }
        Entry::Marker => c.swapped = true,
        // A guard marker (v6.13): SWAPPED (and GUARD, which the reproducers do
        // not ask for: 6.12 refuses the bit); WRITTEN unless it carries the swap
        // uffd-wp bit (7.3.4: in a uffd-wp VMA only, below).
        Entry::Guard { bits } => {
            c.swapped = true;
            c.written = !bits.contains(SwpBits::UW);
            c.soft_dirty |= bits.contains(SwpBits::SD);
        }
    }
    // 7.3.4 reports WRITTEN (and ACCESSED) only in a uffd-wp VMA.
    if cfg.kernel.pagemap_scan_unpopulated() == ScanUnpopulated::WrittenInUffdWp && !v.uffd_wp() {
        c.written = false;
    }
    c
}

/// Is `c` a page the scan returns (`pagemap_scan_is_interesting_page()`)?
fn interesting(mode: ScanMode, c: Category) -> bool {
    match mode {
        ScanMode::Read => true,
        ScanMode::WpWritten => c.written,
    }
}

/// `do_pagemap_scan()` over `[a, e)` of process `p`: walk the VMAs in the
/// range (holes are skipped). `pagemap_scan_test_walk()`: a VMA that is not
/// registered uffd-wp with a WP_ASYNC context using markers stops a
/// `PM_SCAN_CHECK_WPASYNC` scan with EPERM (what earlier VMAs protected stays
/// protected, and the regions found so far are still copied out: the report
/// comes back with the error). Each returned page of a `PM_SCAN_WP_MATCHING` scan is
/// protected (`make_uffd_wp_pte()`: a present PTE gets the uffd-wp bit and
/// loses write; a swap or migration entry gets the swap uffd-wp bit, a writable
/// migration entry staying writable; a none PTE gets a marker, and so does
/// an unpopulated range, through `uffd_wp_range()`), a huge PMD the range
/// covers in part being split first. Emits [`Event::Scanned`] for what the
/// scan looked at in async uffd-wp VMAs.
pub fn do_pagemap_scan(
    s: &mut State,
    cfg: &Config,
    p: usize,
    a: u8,
    e: u8,
    mode: ScanMode,
) -> (ScanReport, KResult<()>) {
    let mut out = ScanReport::default();
    let (mut looked, mut protected) = (0u16, 0u16);
    let mut r = Ok(());
    let wp = mode == ScanMode::WpWritten;
    let vmas: arrayvec::ArrayVec<Vma, MAX_VMAS> =
        s.procs[p].vmas.iter().filter(|v| v.start < e && v.end > a).copied().collect();
    for v in vmas {
        let (x, y) = (a.max(v.start), e.min(v.end));
        let mm = &s.procs[p];
        let wp_allowed = userfaultfd_wp_async(mm, &v) && userfaultfd_wp_use_markers(mm, &v);
        if !wp_allowed && wp {
            r = Err(Errno::Eperm);
            break;
        }
        if wp {
            for g in [x, y - 1] {
                let (ps, pe) = pmd_range(g);
                if s.procs[p].is_huge(g) && (ps < x || pe > y) {
                    split_huge_pmd(s, cfg, p, g);
                }
            }
        }
        for addr in x..y {
            let ent = s.procs[p].pt[addr as usize];
            let c = pagemap_page_category(s, cfg, p, &v, addr, wp);
            if wp_allowed {
                looked |= 1 << addr;
            }
            if !interesting(mode, c) {
                continue;
            }
            let m = 1u16 << addr;
            out.returned |= m;
            // The write-watch scan's return mask is PAGE_IS_WRITTEN alone.
            let c = if wp { Category { written: c.written, ..Category::default() } } else { c };
            let set = |mask: &mut u16, on: bool| *mask |= if on { m } else { 0 };
            set(&mut out.present, c.present);
            set(&mut out.swapped, c.swapped);
            set(&mut out.file, c.file);
            set(&mut out.pfnzero, c.pfnzero);
            set(&mut out.written, c.written);
            set(&mut out.soft_dirty, c.soft_dirty);
            if wp {
                make_uffd_wp_pte(s, cfg, p, addr, ent);
                protected |= m;
            }
        }
    }
    if looked != 0 {
        s.emit(Event::Scanned { p: p as u8, looked, reported: out.written, protected });
    }
    (out, r)
}

/// `make_uffd_wp_pte()` (fs/proc/task_mmu.c; `make_uffd_wp_pmd()` for a huge
/// PMD, each of whose pages the model protects alike).
fn make_uffd_wp_pte(s: &mut State, cfg: &Config, p: usize, addr: u8, e: Entry) {
    let n = match e {
        Entry::Present { bits, folio } => Entry::Present { bits: pte_mkuffd_wp(bits - PteBits::W, cfg), folio },
        Entry::Swap { bits, slot } => Entry::Swap { bits: bits | SwpBits::UW, slot },
        Entry::Migration { kind, bits, folio } => Entry::Migration { kind, bits: bits | SwpBits::UW, folio },
        Entry::None => Entry::Marker,
        Entry::Marker => return,
        Entry::Guard { bits } => Entry::Guard { bits: bits | SwpBits::UW },
    };
    set_pte(s, p, addr, n, Why::MakeUffdWpPte);
}
