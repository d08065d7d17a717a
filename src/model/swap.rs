//! Reclaim and swap: shrink_folio_list / try_to_unmap_one, swapoff (unuse_pte,
//! shmem_unuse), MADV_FREE, writeback.

use super::events::Event;
use super::pte::*;
use super::types::*;
use super::{Config, Sharing, Unuse};

/// Every `(process, addr)` whose PTE maps folio `f` (the rmap walk).
fn mappings(s: &State, f: FolioId) -> arrayvec::ArrayVec<(u8, u8), { MAX_PROCS * NPAGES }> {
    let mut out = arrayvec::ArrayVec::new();
    for (q, mm) in s.procs.iter().enumerate() {
        if !mm.alive {
            continue;
        }
        for (a, e) in mm.pt.iter().enumerate() {
            if matches!(*e, Entry::Present { folio, .. } if folio == f) {
                out.push((q as u8, a as u8));
            }
        }
    }
    out
}

/// Reclaim of the folio mapped at `(p, addr)` (mm/vmscan.c `shrink_folio_list`):
/// mlocked folios are unevictable and ramfs pages are never reclaimed; anon folios
/// go to swap (`add_to_swap`, `try_to_unmap`, `pageout`, removal from the swap
/// cache) or, if lazy-free and clean, are discarded; shmem folios move to shmem's
/// swap (`shmem_writepage`); clean ext4 folios are dropped, dirty ones only unmapped
/// (MADV_PAGEOUT reclaims as a task, not kswapd, and does not write them back).
///
/// A large folio goes through MADV_PAGEOUT's own walk first
/// (`madvise_cold_or_pageout_pte_range()`, mm/madvise.c): the one-page range
/// never covers it whole, so it is split (`split_folio()`, through the restore
/// of `remove_migration_pte()`) and then the small page at `addr` is reclaimed;
/// it is left alone when mapped elsewhere — v6.1: the PMD's head page or the
/// PTE-mapped folio mapped more than once (`folio_mapcount() != 1`, which the
/// unmodelled pages of a split PMD always make true); v6.12+: mapped by
/// another process (`folio_likely_mapped_shared()`).
pub fn shrink_folio(s: &mut State, cfg: &Config, p: usize, addr: u8) {
    let f = match s.procs[p].pt[addr as usize] {
        Entry::Present { folio, .. } if folio != ZERO_PAGE && !s.is_migrating(folio) => folio,
        _ => return,
    };
    // Reclaim of a KSM page (rmap_walk_ksm) is not modelled: it stays.
    if s.folio(f).flags.contains(FolioFlags::KSM) {
        return;
    }
    if !s.is_large(f) {
        shrink_one(s, f);
        return;
    }
    // can_madv_lru_vma(): MADV_PAGEOUT refuses a VM_LOCKED VMA outright.
    if s.procs[p].vma(addr).is_some_and(|v| v.flags.contains(VmFlags::LOCKED)) {
        return;
    }
    let head = s.folio_head(f);
    let shared = if cfg.kernel.large_folio_sharing() == Sharing::Mapcount && s.procs[p].is_huge(addr) {
        // v6.1: page_mapcount() of the head page for a PMD: its PMD and PTE mappings.
        s.first_page_mappings(head) > 1
    } else {
        s.large_folio_shared(cfg.kernel, head, p)
    };
    if shared || !super::huge_memory::split_huge_page(s, cfg, f) {
        return;
    }
    if let Entry::Present { folio, .. } = s.procs[p].pt[addr as usize] {
        if folio != ZERO_PAGE {
            shrink_one(s, folio);
        }
    }
}

/// [`shrink_folio`] of the small folio `f`.
fn shrink_one(s: &mut State, f: FolioId) {
    let maps = mappings(s, f);
    // mlocked folios sit on the unevictable LRU.
    if maps.iter().any(|&(q, a)| s.procs[q as usize].vma(a).is_some_and(|v| v.flags.contains(VmFlags::LOCKED))) {
        return;
    }
    let fo = *s.folio(f);
    match fo.kind {
        FolioKind::Anon => {
            if fo.flags.contains(FolioFlags::LAZYFREE) {
                for &(q, a) in &maps {
                    if !try_to_unmap_one_lazyfree(s, q as usize, a, f) {
                        return;
                    }
                    s.emit(Event::Discarded { p: q, addr: a });
                }
                put_anon_folio(s, f);
                return;
            }
            // add_to_swap(): a slot and the swap cache; the folio is dirty.
            if !fo.flags.contains(FolioFlags::SWAPCACHE) {
                let Some(sl) = s.slots.iter().position(|x| !x.in_use()) else {
                    return;
                };
                s.slots[sl].folio = f;
                let fo = s.folio_mut(f);
                fo.flags |= FolioFlags::SWAPCACHE | FolioFlags::DIRTY;
                fo.slot = sl as u8;
            }
            for &(q, a) in &maps {
                try_to_unmap_one(s, q as usize, a, f);
            }
            // pageout() + __remove_mapping(): written, dropped from the swap cache.
            let slot = s.folio(f).slot as usize;
            s.slots[slot].data = s.folio(f).data;
            s.slots[slot].folio = NO_FOLIO;
            s.folios[f as usize] = Folio::default();
            if s.slots[slot].count == 0 {
                s.slots[slot] = Slot::default();
            }
        }
        FolioKind::File { file, index } => {
            let kind = s.file_kind(file);
            if kind == FileKind::Ramfs {
                return;
            }
            for &(q, a) in &maps {
                try_to_unmap_one(s, q as usize, a, f);
            }
            // MADV_PAGEOUT is not kswapd: a dirty file-LRU folio is not written
            // back here, it stays in the page cache, unmapped and dirty.
            if kind == FileKind::Ext4 && s.folio(f).flags.contains(FolioFlags::DIRTY) {
                return;
            }
            if kind == FileKind::Shmem {
                // shmem_writeout(): the data goes to shmem's swap.
                s.files[file as usize].swapped |= 1 << index;
                s.files[file as usize].stash[index as usize] = s.folio(f).data;
            }
            s.files[file as usize].cache[index as usize] = NO_FOLIO;
            s.folios[f as usize] = Folio::default();
        }
        FolioKind::Free => {}
    }
}

/// `try_to_unmap_one()` (mm/rmap.c) for a swap-backed or file folio: clear the
/// PTE (D → folio dirty), leave a uffd-wp marker where `pte_install_uffd_wp_if_needed`
/// does; for anon, install a swap entry carrying exclusive/soft-dirty/uffd-wp.
fn try_to_unmap_one(s: &mut State, p: usize, addr: u8, f: FolioId) {
    let Entry::Present { bits, .. } = s.procs[p].pt[addr as usize] else {
        return;
    };
    let v = *s.procs[p].vma(addr).expect("mapped page has a VMA");
    s.procs[p].pt[addr as usize] = Entry::None;
    s.procs[p].why[addr as usize] = PteWhy::default();
    pte_install_uffd_wp_if_needed(s, p, &v, addr, Entry::Present { bits, folio: f });
    if bits.contains(PteBits::D) {
        s.folio_mut(f).flags.insert(FolioFlags::DIRTY);
    }
    let fo = s.folio_mut(f);
    fo.mapcount = fo.mapcount.saturating_sub(1);
    if fo.is_anon() {
        let excl = fo.flags.contains(FolioFlags::ANON_EXCLUSIVE);
        fo.flags.remove(FolioFlags::ANON_EXCLUSIVE);
        let slot = fo.slot;
        let mut swp = SwpBits::empty();
        swp.set(SwpBits::EXCL, excl);
        swp.set(SwpBits::SD, bits.contains(PteBits::SD));
        swp.set(SwpBits::UW, bits.contains(PteBits::UW));
        s.slots[slot as usize].count += 1;
        set_pte(s, p, addr, Entry::Swap { bits: swp, slot }, Why::TryToUnmapOne);
    }
}

/// `try_to_unmap_one()` for a MADV_FREE folio: discard if neither PTE nor folio is
/// dirty; otherwise the PTE stays, the folio is swap-backed again and the walk
/// stops (returns false).
fn try_to_unmap_one_lazyfree(s: &mut State, p: usize, addr: u8, f: FolioId) -> bool {
    let Entry::Present { bits, .. } = s.procs[p].pt[addr as usize] else {
        return true;
    };
    if bits.contains(PteBits::D) {
        s.folio_mut(f).flags.insert(FolioFlags::DIRTY);
    }
    if s.folio(f).flags.contains(FolioFlags::DIRTY) {
        s.folio_mut(f).flags.remove(FolioFlags::LAZYFREE);
        return false;
    }
    s.procs[p].pt[addr as usize] = Entry::None;
    s.procs[p].why[addr as usize] = PteWhy::default();
    fo_dec(s, f);
    true
}

fn fo_dec(s: &mut State, f: FolioId) {
    let fo = s.folio_mut(f);
    fo.mapcount = fo.mapcount.saturating_sub(1);
}

/// `madvise_free_pte_range()` (mm/madvise.c, v6.1 to v7.3) over `[start, end)` of
/// a private anon VMA: swap entries are freed (the page reads zero from now on, as
/// after MADV_DONTNEED); for each page: a dirty or swap-cache folio mapped more
/// than once is skipped, else the swap cache is dropped and the folio cleaned; the
/// PTE loses A and D (W kept) and the folio becomes lazy-free.
///
/// A huge PMD the range covers whole goes to `madvise_free_huge_pmd()`; one it
/// covers in part has its folio split first (`split_folio()`, only when mapped
/// once: otherwise the PMD stays and its pages are left alone).
pub fn madvise_free(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) {
    use super::huge_memory::{madvise_free_huge_pmd, pmd_range, split_huge_page};
    let mut skip = 0u32;
    for addr in start..end {
        if !s.procs[p].is_huge(addr) || skip & (1 << addr) != 0 {
            continue;
        }
        let (a, e) = pmd_range(addr);
        let mask = ((1u32 << e) - 1) & !((1u32 << a) - 1);
        skip |= mask;
        if let Entry::Present { folio, .. } = s.procs[p].pt[a as usize] {
            if a >= start && e <= end {
                madvise_free_huge_pmd(s, p, a);
                continue;
            }
            if s.folio(folio).mapcount == 1 && split_huge_page(s, cfg, folio) {
                skip &= !mask;
            }
        }
    }
    for addr in start..end {
        if skip & (1 << addr) != 0 {
            continue;
        }
        // A PTE-mapped large folio: v6.1 stops at one mapped more than once
        // (the rest of the PMD is left), v6.12+ skips one another process maps;
        // otherwise it is split first (`split_folio()`).
        if let Entry::Present { folio, .. } = s.procs[p].pt[addr as usize] {
            if s.is_large(folio) {
                let head = s.folio_head(folio);
                if s.large_folio_shared(cfg.kernel, head, p) || !split_huge_page(s, cfg, folio) {
                    // v6.1 leaves the rest of this PMD's range too (`goto out`).
                    if cfg.kernel.large_folio_sharing() == Sharing::Mapcount {
                        skip |= ((1u32 << pmd_range(addr).1) - 1) & !((1u32 << addr) - 1);
                    }
                    continue;
                }
            }
        }
        match s.procs[p].pt[addr as usize] {
            Entry::Swap { slot, .. } => {
                s.procs[p].pt[addr as usize] = Entry::None;
                swap_free(s, slot);
                s.emit(Event::Discarded { p: p as u8, addr });
            }
            Entry::Present { bits, folio } if folio != ZERO_PAGE => {
                let fo = *s.folio(folio);
                // (MADV_FREE of a KSM page is not modelled: left alone.)
                if !fo.is_anon() || fo.flags.contains(FolioFlags::KSM) {
                    continue;
                }
                if fo.flags.intersects(FolioFlags::SWAPCACHE | FolioFlags::DIRTY) {
                    if fo.mapcount != 1 {
                        continue;
                    }
                    if fo.flags.contains(FolioFlags::SWAPCACHE) && !folio_free_swap(s, folio) {
                        continue;
                    }
                    s.folio_mut(folio).flags.remove(FolioFlags::DIRTY);
                }
                let n = bits - PteBits::A - PteBits::D;
                set_pte(s, p, addr, Entry::Present { bits: n, folio }, Why::MadviseFree);
                let fo = s.folio_mut(folio);
                if !fo.flags.contains(FolioFlags::SWAPCACHE) {
                    fo.flags.insert(FolioFlags::LAZYFREE);
                }
            }
            _ => {}
        }
    }
}

/// `swapoff()` → `try_to_unuse()` (mm/swapfile.c): every anon swap entry is read
/// back and `unuse_pte()` maps it; shmem's swapped pages return to the page cache
/// (`shmem_unuse`, dirty). The swap device is then enabled again.
pub fn swapoff(s: &mut State, cfg: &Config) {
    for slot in 0..MAX_SLOTS as u8 {
        if s.slots[slot as usize].count == 0 {
            continue;
        }
        let mut f = s.slots[slot as usize].folio;
        if f == NO_FOLIO {
            let Some(n) = s.alloc_folio(FolioKind::Anon) else {
                return;
            };
            s.folios[n as usize].data = s.slots[slot as usize].data;
            s.folios[n as usize].flags.insert(FolioFlags::SWAPCACHE);
            s.folios[n as usize].slot = slot;
            s.slots[slot as usize].folio = n;
            f = n;
        } else if s.is_migrating(f) {
            super::migrate::migration_entry_wait(s, cfg, f);
            f = s.slots[slot as usize].folio;
        }
        for q in 0..MAX_PROCS {
            if !s.procs[q].alive {
                continue;
            }
            for a in 0..NPAGES as u8 {
                if let Entry::Swap { bits, slot: sl } = s.procs[q].pt[a as usize] {
                    if sl == slot {
                        unuse_pte(s, cfg, q, a, bits, f);
                    }
                }
            }
        }
        folio_free_swap(s, f);
        put_anon_folio(s, f);
    }
    for file in 0..MAX_FILES {
        let fl = s.files[file];
        if !fl.in_use || fl.swapped == 0 {
            continue;
        }
        for idx in 0..NPAGES {
            if fl.swapped & (1 << idx) == 0 {
                continue;
            }
            let Some(n) = s.alloc_folio(FolioKind::File { file: file as u8, index: idx as u8 }) else {
                return;
            };
            s.folios[n as usize].data = s.files[file].stash[idx];
            s.folios[n as usize].flags.insert(FolioFlags::DIRTY);
            s.files[file].cache[idx] = n;
            s.files[file].swapped &= !(1 << idx);
        }
    }
}

/// `unuse_pte()` (mm/swapfile.c): map the swap-cache page with
/// `pte_mkold(mk_pte(page, vm_page_prot))`, exclusive iff swpEXCL; swpSD → SD;
/// swpUW → UW (v6.1) or UW + wrprotect (the "same care" variant).
fn unuse_pte(s: &mut State, cfg: &Config, p: usize, addr: u8, swp: SwpBits, f: FolioId) {
    let Some(v) = s.procs[p].vma(addr).copied() else {
        return;
    };
    let mut bits = mk_pte(v.prot) - PteBits::A;
    if swp.contains(SwpBits::SD) {
        bits.insert(PteBits::SD);
    }
    s.variant_hits = s.variant_hits.wrapping_add(1);
    if swp.contains(SwpBits::UW) {
        bits = pte_mkuffd_wp(bits, cfg);
        if cfg.unuse == Unuse::WithCare {
            bits.remove(PteBits::W);
        }
    }
    page_add_rmap(s, f, swp.contains(SwpBits::EXCL));
    set_pte(s, p, addr, Entry::Present { bits, folio: f }, Why::UnusePte);
    let sl = &mut s.slots[s.folio(f).slot as usize];
    sl.count = sl.count.saturating_sub(1);
}

/// Writeback of the file folio mapped at `(p, addr)`: `folio_clear_dirty_for_io()`
/// (mm/page-writeback.c) calls `folio_mkclean()` when the mapping can write back
/// (ext4 here), then the folio is clean.
pub fn writeback(s: &mut State, p: usize, addr: u8) {
    let Entry::Present { folio, .. } = s.procs[p].pt[addr as usize] else {
        return;
    };
    if folio == ZERO_PAGE {
        return;
    }
    let FolioKind::File { file, .. } = s.folio(folio).kind else {
        return;
    };
    if !super::prot::mapping_can_writeback(s, file) || !s.folio(folio).flags.contains(FolioFlags::DIRTY) {
        return;
    }
    folio_mkclean(s, folio);
    s.folio_mut(folio).flags.remove(FolioFlags::DIRTY);
    // The data is on disk now, and the page clean for writenotify.
    let FolioKind::File { index, .. } = s.folio(folio).kind else { return };
    s.files[file as usize].stash[index as usize] = s.folio(folio).data;
    s.emit(Event::FileClean { file, index });
}
