//! Page-table walkers: change_pte_range, uffd_wp_range, zap_pte_range,
//! clear_refs (soft-dirty), folio_mkclean, move_ptes, and the rmap counters.

use super::types::*;
use super::{ClearRefs, Config, Kernel};
use bitflags::bitflags;

/// (write, soft-dirty, uffd-wp) state of an entry as provenance sees it: a
/// migration or swap entry counts as the PTE it stands for.
#[inline]
fn wsu(e: Entry) -> Option<(bool, bool, bool)> {
    match e {
        Entry::Present { bits, .. } => {
            Some((bits.contains(PteBits::W), bits.contains(PteBits::SD), bits.contains(PteBits::UW)))
        }
        Entry::Migration { kind, bits, .. } => {
            Some((kind == MigKind::Write, bits.contains(SwpBits::SD), bits.contains(SwpBits::UW)))
        }
        Entry::Swap { bits, .. } => Some((false, bits.contains(SwpBits::SD), bits.contains(SwpBits::UW))),
        Entry::Marker => Some((false, false, true)),
        Entry::Guard { bits } => Some((false, bits.contains(SwpBits::SD), bits.contains(SwpBits::UW))),
        Entry::None => None,
    }
}

/// Store `e` at `(p, addr)`, recording who changed its write, soft-dirty and
/// uffd-wp state (a restore that keeps the old write state keeps the old
/// provenance). Every entry change in the model goes through here.
#[inline]
pub fn set_pte(s: &mut State, p: usize, addr: u8, e: Entry, why: Why) {
    let prov = Prov { why, step: s.step };
    let mm = &mut s.procs[p];
    let i = addr as usize;
    match (wsu(mm.pt[i]), wsu(e)) {
        (_, None) => mm.why[i] = PteWhy::default(),
        (None, Some(_)) => mm.why[i] = PteWhy { w: prov, sd: prov, uw: prov },
        (Some(o), Some(n)) => {
            let w = &mut mm.why[i];
            if o.0 != n.0 {
                w.w = prov;
            }
            if o.1 != n.1 {
                w.sd = prov;
            }
            if o.2 != n.2 {
                w.uw = prov;
            }
        }
    }
    mm.pt[i] = e;
    // A PTE in a group no huge PMD maps lives in a PTE table.
    let g = 1u8 << (addr / HPAGE_PMD_NR);
    if !e.is_none() && mm.huge & g == 0 {
        mm.ptable |= g;
    }
}

/// `mk_pte(page, prot)` on x86: W iff prot has RW, A set (every user PAGE_* has
/// _PAGE_ACCESSED), D/SD/UW clear, PROTNONE for PAGE_NONE.
#[inline]
pub fn mk_pte(prot: PageProt) -> PteBits {
    let mut b = PteBits::A;
    if prot.contains(PageProt::RW) {
        b |= PteBits::W;
    }
    if !prot.contains(PageProt::USER) {
        b |= PteBits::PROTNONE;
    }
    b
}

/// `pte_modify(pte, prot)` on x86: W and PROTNONE from `prot`; D, A, SD, UW kept
/// (_PAGE_CHG_MASK).
#[inline]
pub fn pte_modify(bits: PteBits, prot: PageProt) -> PteBits {
    let keep = bits & (PteBits::D | PteBits::A | PteBits::SD | PteBits::UW);
    keep | (mk_pte(prot) - PteBits::A)
}

/// `pmd_modify(pmd, prot)` on x86: [`pte_modify`], except that v6.18 drops D
/// ([`Config::pmd_modify_drops_dirty`]; soft-dirty stays). Every change of a huge
/// PMD's protection goes through it: `change_huge_pmd()` (mprotect, uffd-wp,
/// NUMA hinting) and `do_huge_pmd_numa_page()`.
#[inline]
pub fn pmd_modify(cfg: &Config, bits: PteBits, prot: PageProt) -> PteBits {
    let n = pte_modify(bits, prot);
    if cfg.pmd_modify_drops_dirty() {
        n - PteBits::D
    } else {
        n
    }
}

/// `pte_mkdirty()` on x86 sets both D and the soft-dirty bit.
#[inline]
pub fn pte_mkdirty(bits: PteBits) -> PteBits {
    bits | PteBits::D | PteBits::SD
}

/// `maybe_mkwrite()` (include/linux/mm.h): W iff the VMA has VM_WRITE.
#[inline]
pub fn maybe_mkwrite(bits: PteBits, vma: &Vma) -> PteBits {
    if vma.flags.contains(VmFlags::WRITE) {
        bits | PteBits::W
    } else {
        bits
    }
}

/// Free an anonymous folio nobody references any more (last unmap, last swap
/// reference, end of migration). A large folio is freed whole, when none of its
/// pages is referenced (`folio_put()`; the model has no deferred split).
pub fn put_anon_folio(s: &mut State, f: FolioId) {
    if f == ZERO_PAGE || f == NO_FOLIO {
        return;
    }
    if s.is_large(f) {
        let head = s.folio_head(f);
        if s.large_folio_referenced(head) {
            return;
        }
        for x in head..head + HPAGE_PMD_NR {
            if s.in_large_folio(x, head) {
                s.folios[x as usize] = Folio::default();
            }
        }
        return;
    }
    let fo = *s.folio(f);
    if !fo.is_anon() || fo.mapcount > 0 || fo.flags.contains(FolioFlags::MIGRATING) {
        return;
    }
    if fo.flags.contains(FolioFlags::SWAPCACHE) {
        let sl = fo.slot as usize;
        if s.slots[sl].count > 0 {
            return; // still the swap cache copy for other swap PTEs
        }
        s.slots[sl] = Slot::default();
    }
    s.folios[f as usize] = Folio::default();
}

/// `page_remove_rmap()` (mm/rmap.c): one mapping fewer.
///
/// A page of a large folio that loses its last mapping while other pages stay
/// mapped makes the folio partially mapped (`deferred_split_folio()`).
pub fn page_remove_rmap(s: &mut State, f: FolioId) {
    if f == ZERO_PAGE {
        return;
    }
    let fo = s.folio_mut(f);
    fo.mapcount = fo.mapcount.saturating_sub(1);
    if fo.mapcount == 0 && s.is_large(f) {
        let head = s.folio_head(f);
        if s.large_folio_mapcount(head) > 0 {
            s.mark_partially_mapped(head);
        }
    }
    put_anon_folio(s, f);
}

/// `page_add_anon_rmap()` / `page_add_file_rmap()` (mm/rmap.c): one mapping more;
/// RMAP_EXCLUSIVE sets PageAnonExclusive.
pub fn page_add_rmap(s: &mut State, f: FolioId, exclusive: bool) {
    if f == ZERO_PAGE {
        return;
    }
    let fo = s.folio_mut(f);
    fo.mapcount += 1;
    if exclusive && fo.is_anon() {
        fo.flags |= FolioFlags::ANON_EXCLUSIVE;
    }
}

/// `swap_free()` of one reference to `slot` (mm/swapfile.c).
pub fn swap_free(s: &mut State, slot: u8) {
    let sl = &mut s.slots[slot as usize];
    sl.count = sl.count.saturating_sub(1);
    if sl.count == 0 {
        let f = sl.folio;
        if f == NO_FOLIO {
            *sl = Slot::default();
        } else {
            put_anon_folio(s, f);
        }
    }
}

/// `folio_free_swap()` (mm/swapfile.c): drop the swap-cache copy if no swap PTE
/// still refers to it; the folio becomes dirty (its data now lives only in RAM).
pub fn folio_free_swap(s: &mut State, f: FolioId) -> bool {
    let fo = *s.folio(f);
    if !fo.flags.contains(FolioFlags::SWAPCACHE) || s.slots[fo.slot as usize].count > 0 {
        return false;
    }
    s.slots[fo.slot as usize] = Slot::default();
    let fo = s.folio_mut(f);
    fo.flags.remove(FolioFlags::SWAPCACHE);
    fo.flags.insert(FolioFlags::DIRTY);
    fo.slot = 0;
    true
}

bitflags! {
    /// `cp_flags` of change_protection() (include/linux/mm.h).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct CpFlags: u8 {
        const TRY_CHANGE_WRITABLE = 1 << 0;
        const PROT_NUMA = 1 << 1;
        const UFFD_WP = 1 << 2;
        const UFFD_WP_RESOLVE = 1 << 3;
    }
}

/// `pte_mkuffd_wp()` (arch/x86/include/asm/pgtable.h): sets UW; since v6.3 it also
/// write-protects.
#[inline]
pub fn pte_mkuffd_wp(bits: PteBits, cfg: &Config) -> PteBits {
    if cfg.mkuffd_wp_wrprotects() {
        (bits | PteBits::UW) - PteBits::W
    } else {
        bits | PteBits::UW
    }
}

/// `can_change_pte_writable()` (mm/mprotect.c): may this PTE be made writable
/// without a write fault? Not if protnone, pending soft-dirty or uffd-wp tracking;
/// private VMAs need an exclusive anon page; shared VMAs need D. v6.1 requires D
/// for private pages too (v6.2 "allow clean exclusive anon pages to be writable").
pub fn can_change_pte_writable(s: &State, k: Kernel, vma: &Vma, bits: PteBits, folio: FolioId) -> bool {
    if !vma.flags.contains(VmFlags::WRITE) || bits.contains(PteBits::PROTNONE) {
        return false;
    }
    if !k.clean_exclusive_anon_writable() && !bits.contains(PteBits::D) {
        return false;
    }
    if vma.soft_dirty_enabled() && !bits.contains(PteBits::SD) {
        return false;
    }
    if vma.uffd_wp() && bits.contains(PteBits::UW) {
        return false;
    }
    if !vma.flags.contains(VmFlags::SHARED) {
        if folio == ZERO_PAGE {
            return false;
        }
        let fo = s.folio(folio);
        return fo.is_anon() && fo.flags.contains(FolioFlags::ANON_EXCLUSIVE);
    }
    bits.contains(PteBits::D)
}

/// `vma_wants_manual_pte_write_upgrade()` (mm/internal.h / mm/vma.h): shared VMAs
/// that want writenotify (against the VMA's current prot), private writable ones.
pub fn vma_wants_manual_pte_write_upgrade(s: &State, cfg: &Config, vma: &Vma) -> bool {
    if vma.flags.contains(VmFlags::SHARED) {
        super::prot::vma_wants_writenotify(s, cfg, vma, vma.prot)
    } else {
        vma.flags.contains(VmFlags::WRITE)
    }
}

/// `change_protection()` → `change_pte_range()` (mm/mprotect.c, v6.1) over
/// `[start, end)` of VMA `vma` in process `p`.
#[allow(clippy::too_many_arguments)]
pub fn change_protection(
    s: &mut State,
    cfg: &Config,
    p: usize,
    vma: &Vma,
    start: u8,
    end: u8,
    newprot: PageProt,
    cp: CpFlags,
    why: Why,
) {
    let k = cfg.kernel;
    let prot_numa = cp.contains(CpFlags::PROT_NUMA);
    let uffd_wp = cp.contains(CpFlags::UFFD_WP);
    let uffd_resolve = cp.contains(CpFlags::UFFD_WP_RESOLVE);
    // change_pmd_range(): a PMD the range covers in part is split; one covered
    // whole goes to change_huge_pmd(), whose rules are the PTE rules below
    // except where `huge` says otherwise.
    super::huge_memory::split_huge_pmd_range(s, cfg, p, start, end);
    let (batch_dirty, batch_young) =
        if k.mprotect_batches_ptes() && !prot_numa { large_folio_batches(s, p, start, end) } else { (0, 0) };
    for addr in start..end {
        let e = s.procs[p].pt[addr as usize];
        let huge = s.procs[p].is_huge(addr);
        match e {
            Entry::Present { bits, folio } => {
                // change_huge_pmd() skips no shared folio for NUMA hinting.
                if prot_numa && huge && bits.contains(PteBits::PROTNONE) {
                    continue;
                }
                if prot_numa && !huge {
                    // NUMA hinting skips: already protnone, zero page, shared COW
                    // pages (by page count on v6.1, by map count on v6.12), dirty
                    // file-LRU pages.
                    if bits.contains(PteBits::PROTNONE) || folio == ZERO_PAGE {
                        continue;
                    }
                    let fo = s.folio(folio);
                    // v6.1: page_count() != 1; v6.12: folio_likely_mapped_shared()
                    // (a large folio: the folio's references, its processes).
                    let shared = match (s.is_large(folio), k.numa_skips_by_mapcount()) {
                        (false, true) => fo.mapcount > 1,
                        (false, false) => fo.refcount() != 1,
                        (true, true) => s.large_folio_shared(k, s.folio_head(folio), p),
                        (true, false) => s.large_folio_refcount(s.folio_head(folio)) != 1,
                    };
                    if vma.is_cow() && shared {
                        continue;
                    }
                    // page_is_file_lru() && PageDirty(): shmem folios are swap-backed
                    // and not skipped; ext4/ramfs page-cache folios are.
                    let file_lru =
                        matches!(fo.kind, FolioKind::File { file, .. } if s.file_kind(file) != FileKind::Shmem);
                    if file_lru && fo.flags.contains(FolioFlags::DIRTY) {
                        continue;
                    }
                }
                // v6.1 keeps W in a NUMA-hinting PTE (pte_mk_savedwrite ==
                // pte_mkwrite on x86); v6.3+ drops it and do_numa_page re-derives it.
                let preserve_write = prot_numa && bits.contains(PteBits::W) && cfg.numa_savedwrite();
                let mut n = if huge { pmd_modify(cfg, bits, newprot) } else { pte_modify(bits, newprot) };
                if preserve_write {
                    n |= PteBits::W;
                }
                if uffd_wp {
                    n = pte_mkuffd_wp(n - PteBits::W, cfg);
                } else if uffd_resolve {
                    n.remove(PteBits::UW);
                }
                if batch_dirty & (1 << addr) != 0 {
                    n = pte_mkdirty(n);
                }
                if batch_young & (1 << addr) != 0 {
                    n.insert(PteBits::A);
                }
                if cp.contains(CpFlags::TRY_CHANGE_WRITABLE)
                    && (!huge || k.change_huge_pmd_upgrades_write())
                    && !n.contains(PteBits::W)
                    && can_change_pte_writable(s, k, vma, n, folio)
                {
                    n.insert(PteBits::W);
                }
                set_pte(s, p, addr, Entry::Present { bits: n, folio }, why);
            }
            Entry::Migration { kind, bits, folio } if huge && !k.thp_migration_uffd_wp() => {
                // v6.1 change_huge_pmd(): a writable PMD migration entry becomes
                // readable with its bits; uffd-wp is neither set nor cleared.
                let kind = match kind {
                    MigKind::Write if s.folio(folio).is_anon() => MigKind::ReadExclusive,
                    MigKind::Write => MigKind::Read,
                    k => k,
                };
                set_pte(s, p, addr, Entry::Migration { kind, bits, folio }, why);
            }
            Entry::Migration { kind, mut bits, folio } => {
                let kind = match kind {
                    MigKind::Write => {
                        if !k.mig_downgrade_keeps_uffd_wp() {
                            bits.remove(SwpBits::UW);
                        }
                        if s.folio(folio).is_anon() {
                            MigKind::ReadExclusive
                        } else {
                            MigKind::Read
                        }
                    }
                    k => k,
                };
                if uffd_wp {
                    bits.insert(SwpBits::UW);
                } else if uffd_resolve {
                    bits.remove(SwpBits::UW);
                }
                set_pte(s, p, addr, Entry::Migration { kind, bits, folio }, why);
            }
            Entry::Swap { mut bits, slot } => {
                if uffd_wp {
                    bits.insert(SwpBits::UW);
                } else if uffd_resolve {
                    bits.remove(SwpBits::UW);
                }
                set_pte(s, p, addr, Entry::Swap { bits, slot }, why);
            }
            Entry::Marker => {
                if uffd_resolve {
                    set_pte(s, p, addr, Entry::None, why);
                }
            }
            // Guard markers are left alone (any access faults anyway), by
            // uffd-wp too: the page gets no uffd-wp marker, so once
            // MADV_GUARD_REMOVE empties the PTE a store to it is not
            // write-protected (6.18.15 and 7.3.4; corpus/kc-guard-remove-drops-uffd-wp-shmem.ptd).
            // The candidate fix marks the guard instead.
            Entry::Guard { bits } if cfg.guard_keeps_uffd_wp() && (uffd_wp || uffd_resolve) => {
                let bits = if uffd_wp { bits | SwpBits::UW } else { bits - SwpBits::UW };
                set_pte(s, p, addr, Entry::Guard { bits }, why);
            }
            Entry::Guard { .. } => {}
            Entry::None => {
                // Markers: files always, anonymous VMAs with WP_UNPOPULATED (v6.4).
                if uffd_wp && super::userfaultfd::userfaultfd_wp_use_markers(&s.procs[p], vma) {
                    set_pte(s, p, addr, Entry::Marker, why);
                }
            }
        }
    }
}

/// The PTE batches of `change_pte_range()` from v6.17 ([`Kernel::mprotect_batches_ptes`]):
/// consecutive PTEs of `[start, end)` that map consecutive pages of one large
/// folio are cleared and rewritten as one (`modify_prot_start_ptes()` /
/// `modify_prot_commit_ptes()`), so dirty and young are ORed over the batch and
/// every PTE of it comes back dirty (`pte_mkdirty`: soft-dirty too on x86) if
/// one was. A batch that reaches a PMD's last model page takes in the 508
/// unmodelled pages after it when they map the folio ([`Mm::tail`]), which the
/// model takes as dirty and young (a split THP's pages are). Returns the masks
/// of the pages that come back dirty and young.
fn large_folio_batches(s: &State, p: usize, start: u8, end: u8) -> (u16, u16) {
    let mm = &s.procs[p];
    let (mut dirty, mut young) = (0u16, 0u16);
    let mut a = start;
    while a < end {
        let Entry::Present { bits, folio } = mm.pt[a as usize] else {
            a += 1;
            continue;
        };
        if mm.is_huge(a) || !s.is_large(folio) {
            a += 1;
            continue;
        }
        let head = s.folio_head(folio);
        let group_end = (a / HPAGE_PMD_NR + 1) * HPAGE_PMD_NR;
        let (mut b, mut d, mut y, mut f) = (a + 1, bits.contains(PteBits::D), bits.contains(PteBits::A), folio);
        while b < end.min(group_end) {
            match mm.pt[b as usize] {
                Entry::Present { bits, folio } if folio == f + 1 && s.in_large_folio(folio, head) => {
                    d |= bits.contains(PteBits::D);
                    y |= bits.contains(PteBits::A);
                    f = folio;
                    b += 1;
                }
                _ => break,
            }
        }
        let g = (a / HPAGE_PMD_NR) as usize;
        let tail = b == group_end && mm.tail[g] == head;
        if b - a + tail as u8 >= 2 {
            let run = ((1u32 << b) - (1u32 << a)) as u16;
            if d || tail {
                dirty |= run;
            }
            if y || tail {
                young |= run;
            }
        }
        a = b;
    }
    (dirty, young)
}

/// `uffd_wp_range()` (mm/userfaultfd.c). v6.1 (before v6.3): protect with
/// `vm_get_page_prot(flags & ~VM_WRITE)` + MM_CP_UFFD_WP, resolve with
/// `vm_get_page_prot(flags)` + MM_CP_UFFD_WP_RESOLVE (shared: every PTE in range
/// becomes writable, whatever writenotify or soft-dirty want). v6.12: both with
/// `vma->vm_page_prot`, resolve adding TRY_CHANGE_WRITABLE when
/// `vma_wants_manual_pte_write_upgrade()`.
pub fn uffd_wp_range(s: &mut State, cfg: &Config, p: usize, vma: &Vma, start: u8, end: u8, enable: bool) {
    use super::prot::vm_get_page_prot;
    if cfg.uffd_wp_range_uses_vm_page_prot() {
        let cp = if enable {
            CpFlags::UFFD_WP
        } else if vma_wants_manual_pte_write_upgrade(s, cfg, vma) {
            CpFlags::UFFD_WP_RESOLVE | CpFlags::TRY_CHANGE_WRITABLE
        } else {
            CpFlags::UFFD_WP_RESOLVE
        };
        change_protection(s, cfg, p, vma, start, end, vma.prot, cp, Why::UffdWpRange);
        return;
    }
    let (prot, cp) = if enable {
        (vm_get_page_prot(vma.flags - VmFlags::WRITE), CpFlags::UFFD_WP)
    } else {
        (vm_get_page_prot(vma.flags), CpFlags::UFFD_WP_RESOLVE)
    };
    change_protection(s, cfg, p, vma, start, end, prot, cp, Why::UffdWpRange);
}

/// `zap_details` (include/linux/mm.h): munmap/exit pass ZAP_FLAG_DROP_MARKER,
/// MADV_DONTNEED passes none.
#[derive(Clone, Copy, Debug)]
pub struct ZapDetails {
    pub drop_marker: bool,
}

/// `pte_install_uffd_wp_if_needed()` (include/linux/mm_inline.h): after clearing a
/// PTE of a uffd-wp file VMA that carried uffd-wp, leave a PTE marker.
pub fn pte_install_uffd_wp_if_needed(s: &mut State, p: usize, vma: &Vma, addr: u8, old: Entry) {
    if vma.is_anonymous() || !vma.uffd_wp() {
        return;
    }
    let arm = match old {
        Entry::Present { bits, .. } => bits.contains(PteBits::UW),
        Entry::Migration { bits, .. } | Entry::Swap { bits, .. } => bits.contains(SwpBits::UW),
        Entry::Marker => true,
        // (zap_pte_range() never clears a guard without DROP_MARKER)
        Entry::Guard { .. } | Entry::None => false,
    };
    if arm {
        set_pte(s, p, addr, Entry::Marker, Why::ZapInstallUffdWp);
    }
}

/// `zap_pte_range()` (mm/memory.c) over `[start, end)`: drop mappings, swap and
/// migration entries; markers of file VMAs are kept unless ZAP_FLAG_DROP_MARKER
/// (an anonymous VMA's always go), and
/// `zap_install_uffd_wp_if_needed()` leaves new ones.
///
/// A PMD the range covers in part is split first; PMDs covered whole are
/// zapped entry by entry (`zap_huge_pmd()` drops the PMD the same way) and end
/// up none, without a PTE table.
pub fn zap_pte_range(s: &mut State, cfg: &Config, p: usize, vma: &Vma, start: u8, end: u8, details: ZapDetails) {
    super::huge_memory::split_huge_pmd_range(s, cfg, p, start, end);
    for addr in start..end {
        let e = s.procs[p].pt[addr as usize];
        match e {
            Entry::None => continue,
            Entry::Present { bits, folio } => {
                if folio != ZERO_PAGE && bits.contains(PteBits::D) {
                    s.folio_mut(folio).flags.insert(FolioFlags::DIRTY);
                }
                s.procs[p].pt[addr as usize] = Entry::None;
                page_remove_rmap(s, folio);
            }
            Entry::Swap { slot, .. } => {
                s.procs[p].pt[addr as usize] = Entry::None;
                swap_free(s, slot);
            }
            Entry::Migration { .. } => {
                s.procs[p].pt[addr as usize] = Entry::None;
            }
            Entry::Marker => {
                // zap_nonpresent_ptes(): an anonymous VMA always drops its
                // markers (WP_UNPOPULATED's); a file VMA only with DROP_MARKER.
                if !details.drop_marker && !vma.is_anonymous() {
                    continue;
                }
                s.procs[p].pt[addr as usize] = Entry::None;
            }
            // Guard markers stay unless ZAP_FLAG_DROP_MARKER (munmap, exit).
            Entry::Guard { .. } => {
                if !details.drop_marker {
                    continue;
                }
                s.procs[p].pt[addr as usize] = Entry::None;
            }
        }
        s.procs[p].why[addr as usize] = PteWhy::default();
        if !details.drop_marker {
            pte_install_uffd_wp_if_needed(s, p, vma, addr, e);
        }
    }
    super::huge_memory::zap_huge_pmds(&mut s.procs[p], start, end);
    super::huge_memory::zap_tails(s, p, start, end);
}

/// `clear_refs_write()` with CLEAR_REFS_SOFT_DIRTY (fs/proc/task_mmu.c, the same
/// from v6.1 to v7.3): VMAs with VM_SOFTDIRTY lose it and get
/// `vma_set_page_prot()`; then [`clear_soft_dirty`] on every PTE of every VMA.
pub fn clear_refs_write(s: &mut State, cfg: &Config, p: usize) {
    for i in 0..s.procs[p].vmas.len() {
        let mut v = s.procs[p].vmas[i];
        if v.flags.contains(VmFlags::SOFTDIRTY) {
            v.flags.remove(VmFlags::SOFTDIRTY);
            v.softdirty_by = Prov { why: Why::ClearRefs, step: s.step };
            super::prot::vma_set_page_prot(s, cfg, &mut v, Why::ClearRefs);
            s.procs[p].vmas[i] = v;
        }
    }
    for i in 0..s.procs[p].vmas.len() {
        let v = s.procs[p].vmas[i];
        for addr in v.start..v.end {
            clear_soft_dirty(s, cfg, p, addr);
        }
    }
    s.emit(super::events::Event::ClearedRefs { p: p as u8 });
}

/// `clear_soft_dirty()` (fs/proc/task_mmu.c; v6.1, v6.1.y, v6.12, v6.18, v7.3
/// alike): a present PTE becomes read-only and clean (no GUP pins are modelled,
/// so no pinned skip); a swap-format entry (swap, migration) only loses its
/// soft-dirty bit, so a writable migration entry stays writable and
/// `remove_migration_pte()` maps the page writable again: the clear_refs
/// migration-window hole. The `+clear-refs-fix` variant
/// ([`ClearRefs::WrprotectMigration`]) also makes a writable migration entry
/// readable (readable-exclusive for anon), as `change_pte_range()` does. A huge
/// PMD is `clear_soft_dirty_pmd()`: the same rule on its entry (a present PMD is
/// write-protected and cleaned, a PMD migration entry only loses soft-dirty),
/// and the fix makes a writable PMD migration entry readable too.
pub fn clear_soft_dirty(s: &mut State, cfg: &Config, p: usize, addr: u8) {
    match s.procs[p].pt[addr as usize] {
        Entry::Present { bits, folio } => {
            let n = bits - PteBits::W - PteBits::SD;
            set_pte(s, p, addr, Entry::Present { bits: n, folio }, Why::ClearRefs);
        }
        Entry::Migration { mut kind, bits, folio } => {
            // A PMD migration entry goes through clear_soft_dirty_pmd(), which
            // has the same rule; the candidate fix changes both.
            if kind == MigKind::Write && cfg.clear_refs == ClearRefs::WrprotectMigration {
                kind = if s.folio(folio).is_anon() { MigKind::ReadExclusive } else { MigKind::Read };
            }
            let e = Entry::Migration { kind, bits: bits - SwpBits::SD, folio };
            set_pte(s, p, addr, e, Why::ClearRefs);
        }
        Entry::Swap { bits, slot } => {
            let e = Entry::Swap { bits: bits - SwpBits::SD, slot };
            set_pte(s, p, addr, e, Why::ClearRefs);
        }
        // A guard marker is a swap-format PTE: it loses its soft-dirty bit.
        Entry::Guard { bits } => set_pte(s, p, addr, Entry::Guard { bits: bits - SwpBits::SD }, Why::ClearRefs),
        Entry::Marker | Entry::None => {}
    }
}

/// `folio_mkclean()` → `page_vma_mkclean_one()` (mm/rmap.c): in every VM_SHARED
/// VMA mapping the folio, a PTE that is W or D becomes clean and read-only.
pub fn folio_mkclean(s: &mut State, f: FolioId) {
    for p in 0..MAX_PROCS {
        if !s.procs[p].alive {
            continue;
        }
        for i in 0..s.procs[p].vmas.len() {
            let v = s.procs[p].vmas[i];
            if !v.flags.contains(VmFlags::SHARED) {
                continue;
            }
            for addr in v.start..v.end {
                if let Entry::Present { bits, folio } = s.procs[p].pt[addr as usize] {
                    if folio == f && bits.intersects(PteBits::W | PteBits::D) {
                        let n = bits - PteBits::W - PteBits::D;
                        set_pte(s, p, addr, Entry::Present { bits: n, folio }, Why::FolioMkclean);
                    }
                }
            }
        }
    }
}

/// `move_ptes()` (mm/mremap.c): move every entry, marking it soft-dirty
/// (`move_soft_dirty_pte`). With the 6.1.y backport of "mm: clear uffd-wp PTE/PMD
/// state on mremap()", a source VMA registered without EVENT_REMAP loses UW,
/// swpUW and markers on the way.
///
/// `move_page_tables()`: a PMD moves whole (`move_huge_pmd()`, the same
/// per-entry rule) when the range covers it and the destination is aligned
/// alike and has no page table yet; any other PMD in the range is split first.
pub fn move_ptes(s: &mut State, cfg: &Config, p: usize, old: u8, new: u8, len: u8, clear_uffd_wp: bool) {
    let moved_huge = super::huge_memory::move_huge_pmds(s, cfg, p, old, new, len);
    let mut tmp = [(Entry::None, PteWhy::default()); NPAGES];
    let mm = &mut s.procs[p];
    mm.huge |= moved_huge;
    super::huge_memory::move_tails(mm, old, new, len);
    for (i, t) in tmp.iter_mut().enumerate().take(len as usize) {
        let a = old as usize + i;
        *t = (mm.pt[a], mm.why[a]);
        mm.pt[a] = Entry::None;
        mm.why[a] = PteWhy::default();
    }
    for (i, &(e, w)) in tmp.iter().enumerate().take(len as usize) {
        let moved = match e {
            Entry::Present { mut bits, folio } => {
                bits |= PteBits::SD;
                if clear_uffd_wp {
                    bits.remove(PteBits::UW);
                }
                Entry::Present { bits, folio }
            }
            Entry::Migration { kind, mut bits, folio } => {
                bits |= SwpBits::SD;
                if clear_uffd_wp {
                    bits.remove(SwpBits::UW);
                }
                Entry::Migration { kind, bits, folio }
            }
            Entry::Swap { mut bits, slot } => {
                bits |= SwpBits::SD;
                if clear_uffd_wp {
                    bits.remove(SwpBits::UW);
                }
                Entry::Swap { bits, slot }
            }
            Entry::Marker if clear_uffd_wp => Entry::None,
            // A guard marker moves as a swap-format entry does.
            Entry::Guard { mut bits } => {
                bits |= SwpBits::SD;
                if clear_uffd_wp {
                    bits.remove(SwpBits::UW);
                }
                Entry::Guard { bits }
            }
            e => e,
        };
        let a = new as usize + i;
        s.procs[p].pt[a] = e;
        s.procs[p].why[a] = w;
        set_pte(s, p, a as u8, moved, Why::MovePtes);
    }
}
