//! Page migration: try_to_migrate_one (unmap) and the remove_migration_pte variants
//! (restore), plus the v6.1 unuse_pte variants that answer "does unuse_pte() need
//! similar care?".

use super::pte::*;
use super::types::*;
use super::{Config, Kernel, Restore};

/// `try_to_migrate_one()` (mm/rmap.c) for one PTE: clear it (D → folio dirty),
/// give up PageAnonExclusive (`page_try_share_anon_rmap`, no pins modelled), and
/// install MIG_W if W, MIG_RX if it was anon-exclusive, else MIG_R, carrying
/// young/dirty/soft-dirty/uffd-wp.
pub(super) fn try_to_migrate_one(s: &mut State, p: usize, addr: u8, bits: PteBits, f: FolioId) {
    if bits.contains(PteBits::D) {
        s.folio_mut(f).flags.insert(FolioFlags::DIRTY);
    }
    let fo = s.folio_mut(f);
    let anon_exclusive = fo.is_anon() && fo.flags.contains(FolioFlags::ANON_EXCLUSIVE);
    fo.flags.remove(FolioFlags::ANON_EXCLUSIVE);
    let kind = if bits.contains(PteBits::W) {
        MigKind::Write
    } else if anon_exclusive {
        MigKind::ReadExclusive
    } else {
        MigKind::Read
    };
    let mut swp = SwpBits::empty();
    swp.set(SwpBits::YOUNG, bits.contains(PteBits::A));
    swp.set(SwpBits::DIRTY, bits.contains(PteBits::D));
    swp.set(SwpBits::SD, bits.contains(PteBits::SD));
    swp.set(SwpBits::UW, bits.contains(PteBits::UW));
    set_pte(s, p, addr, Entry::Migration { kind, bits: swp, folio: f }, Why::TryToMigrateOne);
    fo_mapcount_dec(s, f);
}

fn fo_mapcount_dec(s: &mut State, f: FolioId) {
    let fo = s.folio_mut(f);
    fo.mapcount = fo.mapcount.saturating_sub(1);
}

/// The folio mapped at `(p, addr)` that migration could take, if any.
pub fn migratable_folio(s: &State, p: usize, addr: u8) -> Option<FolioId> {
    match s.procs[p].pt[addr as usize] {
        Entry::Present { folio, .. } if folio != ZERO_PAGE && !s.is_migrating(folio) => Some(folio),
        _ => None,
    }
}

/// First half of `migrate_pages()` (mm/migrate.c): lock the folio, allocate the
/// destination, and `try_to_migrate()` every mapping (rmap walk). Returns false
/// if nothing was started (no page, already migrating, no memory).
///
/// A large folio (`migrate_pages_batch()`) needs a large destination; when none
/// can be allocated the folio is split (`try_split_folio()`, every profile) and
/// the page at `addr` migrates alone; from v6.12 a partially mapped one is split
/// first ([`Kernel::migrate_splits_partially_mapped`]). A PMD mapping it becomes a PMD migration
/// entry (`set_pmd_migration_entry()`), PTE mappings PTE migration entries.
pub fn migrate_start(s: &mut State, cfg: &Config, p: usize, addr: u8) -> bool {
    let Some(mut f) = migratable_folio(s, p, addr) else {
        return false;
    };
    if s.pending.len() == s.pending.capacity() {
        return false;
    }
    let partial = s.folio(f).flags.contains(FolioFlags::PARTIALLY_MAPPED);
    if s.is_large(f) && !(partial && cfg.kernel.migrate_splits_partially_mapped()) {
        if let Some(new) = s.alloc_large_folio() {
            migrate_start_large(s, cfg.kernel, f, new);
            return true;
        }
    }
    if s.is_large(f) {
        if !super::huge_memory::split_huge_page(s, cfg, f) {
            return false;
        }
        let Some(g) = migratable_folio(s, p, addr) else {
            return false;
        };
        f = g;
    }
    let Some(new) = s.alloc_folio(FolioKind::Free) else {
        return false;
    };
    // Reserve the destination (alloc_folio hands out Free slots).
    s.folios[new as usize].kind = s.folios[f as usize].kind;
    s.folios[new as usize].flags = FolioFlags::MIGRATING;
    s.folio_mut(f).flags.insert(FolioFlags::MIGRATING);
    for q in 0..MAX_PROCS {
        if !s.procs[q].alive {
            continue;
        }
        for a in 0..NPAGES as u8 {
            if let Entry::Present { bits, folio } = s.procs[q].pt[a as usize] {
                if folio == f {
                    try_to_migrate_one(s, q, a, bits, f);
                }
            }
        }
    }
    s.pending.push(Pending { old: f, new });
    true
}

/// [`migrate_start`] of the large folio page `f` belongs to, to the large folio
/// `new`: every page is locked, a PMD mapping it gets
/// `set_pmd_migration_entry()`, every PTE mapping a page of it `try_to_migrate_one()`.
fn migrate_start_large(s: &mut State, k: Kernel, f: FolioId, new: FolioId) {
    let old = s.folio_head(f);
    for i in 0..HPAGE_PMD_NR {
        s.folios[(new + i) as usize].flags = FolioFlags::MIGRATING | FolioFlags::LARGE;
    }
    for x in s.folio_pages(f).collect::<arrayvec::ArrayVec<FolioId, { HPAGE_PMD_NR as usize }>>() {
        s.folio_mut(x).flags.insert(FolioFlags::MIGRATING);
    }
    for q in 0..MAX_PROCS {
        if !s.procs[q].alive {
            continue;
        }
        for a in 0..NPAGES as u8 {
            if let Entry::Present { bits, folio } = s.procs[q].pt[a as usize] {
                if !s.in_large_folio(folio, old) {
                    continue;
                }
                if s.procs[q].is_huge(a) {
                    super::huge_memory::set_pmd_migration_entry(s, k, q, a);
                } else {
                    try_to_migrate_one(s, q, a, bits, folio);
                }
            }
        }
    }
    s.pending.push(Pending { old, new });
}

/// Second half of `migrate_pages()`: `migrate_folio()` moves the data, flags
/// (dirty, swap cache) and the page-cache/swap-cache slot to the new folio, then
/// `remove_migration_ptes()` restores every migration entry and the old folio is
/// freed. A large folio moves page by page; a PMD migration entry is restored by
/// `remove_migration_pmd()`, PTE migration entries by `remove_migration_pte()`.
pub fn migrate_finish(s: &mut State, cfg: &Config, idx: usize) {
    let Pending { old, new } = s.pending.remove(idx);
    let large = s.is_large(new);
    let n = if large { HPAGE_PMD_NR } else { 1 };
    let keep = FolioFlags::DIRTY | FolioFlags::SWAPCACHE | FolioFlags::LAZYFREE | FolioFlags::KSM;
    // Which pages of the old folio were still allocated (a large folio may have
    // lost some pages to partial unmaps before).
    let mut moved = 0u8;
    for i in 0..n {
        let (o, d) = ((old + i) as usize, (new + i) as usize);
        let of = s.folios[o];
        if of.kind == FolioKind::Free || large && !of.flags.contains(FolioFlags::LARGE) {
            s.folios[d] = Folio::default();
            continue;
        }
        moved |= 1 << i;
        // move_to_new_folio(): the data (and flags) are copied to the new folio.
        let flags = of.flags & keep | if large { FolioFlags::LARGE } else { FolioFlags::empty() };
        s.folios[d] = Folio { kind: of.kind, flags, mapcount: 0, slot: of.slot, data: of.data };
        match of.kind {
            FolioKind::File { file, index } => s.files[file as usize].cache[index as usize] = d as FolioId,
            FolioKind::Anon if of.flags.contains(FolioFlags::SWAPCACHE) => {
                s.slots[of.slot as usize].folio = d as FolioId
            }
            _ => {}
        }
        s.folios[o] = Folio::default();
    }
    let is_old = |f: FolioId| f >= old && f < old + n && moved & (1 << (f - old)) != 0;
    for q in 0..MAX_PROCS {
        if !s.procs[q].alive {
            continue;
        }
        let mut a = 0u8;
        while (a as usize) < NPAGES {
            if let Entry::Migration { kind, bits, folio } = s.procs[q].pt[a as usize] {
                if is_old(folio) {
                    if s.procs[q].is_huge(a) {
                        super::huge_memory::remove_migration_pmd(s, cfg, q, a, kind, bits, new);
                        a = super::huge_memory::pmd_range(a).1;
                        continue;
                    }
                    remove_migration_pte(s, cfg, q, a, kind, bits, new + (folio - old));
                }
            }
            a += 1;
        }
    }
    // The unmodelled pages migrate with the folio.
    if large {
        for mm in s.procs.iter_mut() {
            for t in mm.tail.iter_mut().filter(|t| **t == old) {
                *t = new;
            }
        }
    }
    for i in 0..n {
        if moved & (1 << i) != 0 {
            put_anon_folio(s, new + i);
        }
    }
}

/// `migrate_pages()` of the folio mapped at `(p, addr)` in one step: unmap,
/// copy, restore. False if nothing was started.
pub fn migrate_pages(s: &mut State, cfg: &Config, p: usize, addr: u8) -> bool {
    if !migrate_start(s, cfg, p, addr) {
        return false;
    }
    let i = s.pending.len() - 1;
    migrate_finish(s, cfg, i);
    true
}

/// Finish the migration whose entry is at `(p, addr)` (what a fault there
/// waits for, [`migration_entry_wait`]). False if there is no migration entry.
pub fn migrate_finish_at(s: &mut State, cfg: &Config, p: usize, addr: u8) -> bool {
    let Entry::Migration { folio, .. } = s.procs[p].pt[addr as usize] else {
        return false;
    };
    migration_entry_wait(s, cfg, folio);
    true
}

/// Finish every pending migration, oldest first.
pub fn migrate_finish_all(s: &mut State, cfg: &Config) {
    while !s.pending.is_empty() {
        migrate_finish(s, cfg, 0);
    }
}

/// `migration_entry_wait()` / `folio_wait_locked()`: a fault that meets a folio
/// under migration sleeps until the migration is done; in a sequential model the
/// migration therefore completes first.
pub fn migration_entry_wait(s: &mut State, cfg: &Config, f: FolioId) {
    let f = s.folio_head(f);
    if let Some(i) = s.pending.iter().position(|m| m.old == f) {
        migrate_finish(s, cfg, i);
    }
}

/// `remove_migration_pte()` (mm/migrate.c) for one entry. The common part rebuilds
/// the PTE from the **current** `vm_page_prot`; the write/uffd-wp decision is the
/// variant under test ([`restore_write_bits`]). MIG_W/MIG_RX of an anon folio
/// restore PageAnonExclusive (RMAP_EXCLUSIVE).
pub fn remove_migration_pte(
    s: &mut State,
    cfg: &Config,
    p: usize,
    addr: u8,
    kind: MigKind,
    swp: SwpBits,
    new: FolioId,
) {
    let Some(v) = s.procs[p].vma(addr).copied() else {
        return;
    };
    let mut pte = mk_pte(v.prot);
    if swp.contains(SwpBits::SD) {
        pte.insert(PteBits::SD);
    }
    if !swp.contains(SwpBits::YOUNG) {
        pte.remove(PteBits::A);
    }
    if s.folio(new).flags.contains(FolioFlags::DIRTY) && swp.contains(SwpBits::DIRTY) {
        pte = pte_mkdirty(pte);
    }
    // v6.12 applies swpSD after mkdirty: soft-dirty comes from the entry alone.
    if cfg.kernel.restore_sd_from_entry_only() && !swp.contains(SwpBits::SD) {
        pte.remove(PteBits::SD);
    }
    let (pte, warn) = restore_write_bits(cfg, pte, kind, swp, &v);
    s.variant_hits = s.variant_hits.wrapping_add(1);
    if warn {
        s.warned = true;
    }
    let exclusive = s.folio(new).is_anon() && kind != MigKind::Read;
    page_add_rmap(s, new, exclusive);
    set_pte(s, p, addr, Entry::Present { bits: pte, folio: new }, Why::RemoveMigrationPte);
}

/// The write / uffd-wp step of `remove_migration_pte()` in each variant, applied
/// to `pte = mk_pte(new, vm_page_prot)` (+SD/A/D). Returns the PTE and whether the
/// variant's WARN_ON_ONCE fired. `pte_mkuffd_wp` is the kernel's (write-protecting
/// from v6.3 on).
///
/// - `pre-fix` (v5.7..v6.1 release): MIG_W → maybe_mkwrite; else swpUW → UW only
///   (W stays whatever `vm_page_prot` said: the memfd uffd-wp bypass).
/// - `full-restore` (Peter Xu v2/v3): MIG_W → maybe_mkwrite, else wrprotect; then
///   swpUW → WARN_ON_ONCE(W), UW.
/// - `vm-page-prot` (David Hildenbrand; mainline v6.4+): MIG_W → maybe_mkwrite; else
///   swpUW → wrprotect + UW; otherwise the `vm_page_prot` default.
/// - `stable-6.1.y` (6.1.y with B2 96a9c287e25d): MIG_W → maybe_mkwrite; else swpUW
///   → UW (6.1.y `pte_mkuffd_wp` does not wrprotect); else wrprotect.
pub fn restore_write_bits(cfg: &Config, mut pte: PteBits, kind: MigKind, swp: SwpBits, v: &Vma) -> (PteBits, bool) {
    let writable = kind == MigKind::Write;
    let uffd = swp.contains(SwpBits::UW);
    let mut warn = false;
    match cfg.restore {
        Restore::PreFix => {
            if writable {
                pte = maybe_mkwrite(pte, v);
            } else if uffd {
                pte = pte_mkuffd_wp(pte, cfg);
            }
        }
        Restore::FullRestore => {
            if writable {
                pte = maybe_mkwrite(pte, v);
            } else {
                pte.remove(PteBits::W);
            }
            if uffd {
                warn = pte.contains(PteBits::W);
                pte = pte_mkuffd_wp(pte, cfg);
            }
        }
        Restore::VmPageProt => {
            if writable {
                pte = maybe_mkwrite(pte, v);
            } else if uffd {
                pte = pte_mkuffd_wp(pte - PteBits::W, cfg);
            }
        }
        Restore::Stable61y => {
            if writable {
                pte = maybe_mkwrite(pte, v);
            } else if uffd {
                pte = pte_mkuffd_wp(pte, cfg);
            } else {
                pte.remove(PteBits::W);
            }
        }
    }
    (pte, warn)
}
