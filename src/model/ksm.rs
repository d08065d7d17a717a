//! Kernel samepage merging (mm/ksm.c): MADV_MERGEABLE VMAs, ksmd's merge of
//! anonymous pages of equal content, and MADV_UNMERGEABLE's `break_ksm()`.
//! Read in 6.1.192, 6.12.118, 6.18.15 and 7.3.4; where they differ the
//! [`Kernel`] predicate says so.
//!
//! The model's [`ksm_do_scan`] is what user space can ask for: ksmd running
//! until two more full scans have passed (`/sys/kernel/mm/ksm/run`, polling
//! `full_scans`), which merges every page whose content stayed the same over
//! both scans. Pages are visited process by process (p0 first), each VMA in
//! address order, each page in address order (the `rmap_list`); cross-process
//! order is the `mm_slot` list's, which the model takes as process order.

use arrayvec::ArrayVec;

use super::pte::{mk_pte, page_add_rmap, page_remove_rmap, set_pte};
use super::types::*;
use super::Config;

/// A page ksmd can merge: present, anonymous, small, normal (not the zero
/// page), mapped once (a shared non-KSM page is left to the model's caller to
/// refuse), not under migration, in a VM_MERGEABLE private VMA with an anon_vma.
fn mergeable_page(s: &State, p: usize, v: &Vma, addr: u8) -> Option<FolioId> {
    let Entry::Present { bits, folio } = s.procs[p].pt[addr as usize] else { return None };
    if folio == ZERO_PAGE || bits.contains(PteBits::PROTNONE) || s.procs[p].is_huge(addr) || s.is_large(folio) {
        return None;
    }
    let fo = s.folio(folio);
    if !fo.is_anon() || fo.flags.contains(FolioFlags::MIGRATING) || v.anon_vma == 0 {
        return None;
    }
    (fo.mapcount == 1 || fo.flags.contains(FolioFlags::KSM)).then_some(folio)
}

/// `ksm_do_scan()` until two more full scans have passed: `cmp_and_merge_page()`
/// for every mergeable page in scan order. A page equal to a KSM page (the stable
/// tree) is replaced by it; otherwise the first page of a content seen this scan
/// waits in the unstable tree, and the next equal one merges with it
/// (`try_to_merge_two_pages()`): the later page becomes the KSM page in place,
/// the earlier one is replaced.
pub fn ksm_do_scan(s: &mut State, cfg: &Config) {
    // (content, the KSM folio) and (content, the waiting page).
    let mut stable: ArrayVec<(Token, FolioId), MAX_FOLIOS> = ArrayVec::new();
    let mut unstable: ArrayVec<(Token, usize, u8), MAX_FOLIOS> = ArrayVec::new();
    for f in 0..MAX_FOLIOS {
        let fo = s.folios[f];
        if fo.flags.contains(FolioFlags::KSM) && fo.mapcount > 0 {
            stable.push((fo.data, f as FolioId));
        }
    }
    for p in 0..MAX_PROCS {
        if !s.procs[p].alive {
            continue;
        }
        for vi in 0..s.procs[p].vmas.len() {
            let v = s.procs[p].vmas[vi];
            if !v.flags.contains(VmFlags::MERGEABLE) || v.flags.intersects(VmFlags::SHARED | VmFlags::MAYSHARE) {
                continue;
            }
            for addr in v.start..v.end {
                let Some(folio) = mergeable_page(s, p, &v, addr) else { continue };
                let data = s.folio(folio).data;
                if s.folio(folio).flags.contains(FolioFlags::KSM) {
                    continue;
                }
                if let Some(&(_, kpage)) = stable.iter().find(|x| x.0 == data) {
                    write_protect_page(s, p, addr);
                    replace_page(s, cfg, p, &v, addr, kpage);
                } else if let Some(i) = unstable.iter().position(|x| x.0 == data) {
                    let (_, q, b) = unstable.swap_remove(i);
                    write_protect_page(s, p, addr);
                    s.folio_mut(folio).flags.insert(FolioFlags::KSM | FolioFlags::DIRTY);
                    let qv = *s.procs[q].vma(b).expect("an unstable-tree page has its VMA");
                    write_protect_page(s, q, b);
                    replace_page(s, cfg, q, &qv, b, folio);
                    stable.push((data, folio));
                } else {
                    unstable.push((data, p, addr));
                }
            }
        }
    }
}

/// `write_protect_page()` (mm/ksm.c): a writable, dirty or exclusive PTE is
/// made read-only and clean (its dirty bit goes to the folio); soft-dirty,
/// uffd-wp and young stay; the page is no longer PageAnonExclusive.
fn write_protect_page(s: &mut State, p: usize, addr: u8) {
    let Entry::Present { bits, folio } = s.procs[p].pt[addr as usize] else { return };
    let fo = s.folio_mut(folio);
    if !bits.intersects(PteBits::W | PteBits::D) && !fo.flags.contains(FolioFlags::ANON_EXCLUSIVE) {
        return;
    }
    if bits.contains(PteBits::D) {
        fo.flags.insert(FolioFlags::DIRTY);
    }
    fo.flags.remove(FolioFlags::ANON_EXCLUSIVE);
    set_pte(s, p, addr, Entry::Present { bits: bits - PteBits::W - PteBits::D, folio }, Why::WriteProtectPage);
}

/// `replace_page()` (mm/ksm.c): the PTE is rebuilt as `mk_pte(kpage,
/// vm_page_prot)` (present, young, read-only, clean): its uffd-wp bit is
/// dropped in every tree, its soft-dirty bit in all but 6.12.118
/// ([`Kernel::ksm_replace_keeps_soft_dirty`]). The old page loses its mapping.
fn replace_page(s: &mut State, cfg: &Config, p: usize, v: &Vma, addr: u8, kpage: FolioId) {
    let Entry::Present { bits, folio } = s.procs[p].pt[addr as usize] else { return };
    let mut n = mk_pte(v.prot) - PteBits::W;
    if cfg.ksm_replace_keeps_soft_dirty() && bits.contains(PteBits::SD) {
        n.insert(PteBits::SD);
    }
    if cfg.ksm_replace_keeps_uffd_wp() && bits.contains(PteBits::UW) {
        n.insert(PteBits::UW);
    }
    page_add_rmap(s, kpage, false);
    set_pte(s, p, addr, Entry::Present { bits: n, folio: kpage }, Why::ReplacePage);
    page_remove_rmap(s, folio);
}

/// `unmerge_ksm_pages()` → `break_ksm()` (mm/ksm.c) over `[a, e)` of process
/// `p`: every KSM page mapped there is unshared (v6.12+: an unshare fault, a
/// read-only copy that keeps soft-dirty and uffd-wp) or, on 6.1, COW-broken by
/// a write fault (a sync uffd-wp PTE makes that SIGBUS, which break_ksm takes
/// as done: the page stays merged).
pub fn unmerge_ksm_pages(s: &mut State, cfg: &Config, p: usize, a: u8, e: u8) {
    for addr in a..e {
        let Some(vi) = s.procs[p].vma_index(addr) else { continue };
        let Entry::Present { bits, folio } = s.procs[p].pt[addr as usize] else { continue };
        if folio == ZERO_PAGE || !s.folio(folio).flags.contains(FolioFlags::KSM) || s.procs[p].vmas[vi].anon_vma == 0 {
            continue;
        }
        if cfg.kernel.break_ksm_unshares() {
            super::fault::wp_page_unshare(s, cfg.kernel, p, vi, addr, folio, bits);
        } else if !(s.procs[p].vmas[vi].uffd_wp() && bits.contains(PteBits::UW)) {
            super::fault::break_cow(s, cfg, p, vi, addr);
        }
    }
}
