//! Transparent huge pages, anonymous and PMD-mapped (mm/huge_memory.c): the THP
//! fault, the PMD write fault, PMD splits, PMD migration entries, MADV_FREE of a
//! whole PMD, folio splits, and the fixups that keep a PMD inside one VMA.
//!
//! A PMD covers [`HPAGE_PMD_NR`] aligned model pages instead of 512 (see
//! [`Mm`]): every rule here is per PMD or per page, none counts pages, so the
//! smaller group changes nothing a rule decides. A PMD entry is stored once per
//! page (each naming its own page of the large folio); the walkers of `pte.rs`
//! that the kernel runs on a whole PMD with the same per-entry rule
//! (`change_huge_pmd`, `clear_soft_dirty_pmd`, `copy_huge_pmd`, `zap_huge_pmd`,
//! `move_huge_pmd`) run on those four copies alike, after [`split_huge_pmd_range`]
//! split every PMD their range covers only in part, as the kernel does.
//!
//! The model follows the trees as `use_zero_page=0` and `enabled=madvise` set
//! them (the guest sets both): a read fault of a THP-enabled range allocates a
//! THP instead of mapping the huge zero page.

use super::fault::anon_vma_prepare;
use super::migrate::try_to_migrate_one;
use super::pte::*;
use super::types::*;
use super::{Config, Kernel};

/// The pages `[start, end)` of the PMD that maps `addr`.
#[inline]
pub fn pmd_range(addr: u8) -> (u8, u8) {
    let start = addr & !(HPAGE_PMD_NR - 1);
    (start, start + HPAGE_PMD_NR)
}

#[inline]
fn pmd_bit(addr: u8) -> u8 {
    1 << (addr / HPAGE_PMD_NR)
}

/// `thp_vma_allowable_order()` / `transhuge_vma_suitable()` for an anonymous
/// fault at `addr` (mm/huge_memory.c, include/linux/huge_mm.h; every profile):
/// a private anonymous VMA with VM_HUGEPAGE and without VM_NOHUGEPAGE
/// (`enabled=madvise`) that covers the whole aligned PMD range.
pub fn thp_vma_suitable(v: &Vma, addr: u8) -> bool {
    let (a, e) = pmd_range(addr);
    v.is_anonymous()
        && !v.flags.contains(VmFlags::SHARED)
        && v.flags.contains(VmFlags::HUGEPAGE)
        && !v.flags.contains(VmFlags::NOHUGEPAGE)
        && v.start <= a
        && e <= v.end
}

/// `pmd_none()`: no PMD entry and no PTE table under it.
pub(super) fn pmd_none(mm: &Mm, addr: u8) -> bool {
    let (a, e) = pmd_range(addr);
    mm.ptable & pmd_bit(addr) == 0 && mm.huge & pmd_bit(addr) == 0 && (a..e).all(|x| mm.pt[x as usize].is_none())
}

/// Write the PMD entry `bits` (present) over the PMD at `start`, page `i` naming
/// page `head + i` of its folio.
pub(super) fn set_pmd_at(s: &mut State, p: usize, start: u8, head: FolioId, bits: PteBits, why: Why) {
    s.procs[p].huge |= pmd_bit(start);
    for i in 0..HPAGE_PMD_NR {
        set_pte(s, p, start + i, Entry::Present { bits, folio: head + i }, why);
    }
}

/// `do_huge_pmd_anonymous_page()` → `__do_huge_pmd_anonymous_page()`
/// (mm/huge_memory.c; `map_anon_folio_pmd()` from v6.18): where the PMD is none
/// and the VMA allows a THP, a new exclusive large folio is mapped by
/// `maybe_pmd_mkwrite(pmd_mkdirty(mk_huge_pmd(vm_page_prot)))` — dirty and
/// soft-dirty on a read fault too, writable iff VM_WRITE. False (the PTE fault
/// runs instead, VM_FAULT_FALLBACK) if the PMD is not none or no large folio
/// is free.
pub fn do_huge_pmd_anonymous_page(s: &mut State, k: Kernel, p: usize, vi: usize, addr: u8) -> bool {
    let v = s.procs[p].vmas[vi];
    if !thp_vma_suitable(&v, addr) || !pmd_none(&s.procs[p], addr) {
        return false;
    }
    anon_vma_prepare(s, k, p, vi);
    let Some(head) = s.alloc_large_folio() else {
        return false;
    };
    let bits = maybe_mkwrite(pte_mkdirty(mk_pte(v.prot)), &v);
    for i in 0..HPAGE_PMD_NR {
        page_add_rmap(s, head + i, true);
    }
    set_pmd_at(s, p, pmd_range(addr).0, head, bits, Why::DoHugePmdAnonymousPage);
    true
}

/// What a write fault on a huge PMD came to.
pub enum HugeWp {
    /// The PMD was reused: retry the access.
    Reused,
    /// The PMD was split (VM_FAULT_FALLBACK): the PTE fault path takes over.
    Fallback,
    /// `handle_userfault(VM_UFFD_WP)`.
    Uffd,
}

/// `wp_huge_pmd()` (mm/memory.c) → `do_huge_pmd_wp_page()` (mm/huge_memory.c),
/// anonymous: a uffd-wp PMD of a uffd-wp VMA goes to user space; an exclusive
/// folio (or one whose only reference is this PMD once the swap cache is
/// dropped) is reused with `maybe_pmd_mkwrite(pmd_mkdirty(pmd_mkyoung()))`;
/// otherwise the PMD is split and the PTE fault copies the page. With a
/// WP_ASYNC context (v6.7) a uffd-wp PMD is split too, and the PTE fault
/// resolves the protection.
pub fn wp_huge_pmd(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8) -> HugeWp {
    let v = s.procs[p].vmas[vi];
    let (start, _) = pmd_range(addr);
    let Entry::Present { bits, folio } = s.procs[p].pt[start as usize] else {
        return HugeWp::Fallback;
    };
    if v.uffd_wp() && bits.contains(PteBits::UW) {
        if super::userfaultfd::userfaultfd_wp_async(&s.procs[p], &v) {
            split_huge_pmd(s, cfg, p, addr);
            return HugeWp::Fallback;
        }
        return HugeWp::Uffd;
    }
    let head = s.folio_head(folio);
    let mut reuse = s.folio(head).flags.contains(FolioFlags::ANON_EXCLUSIVE);
    if !reuse {
        let swapcache = s.folio(head).flags.contains(FolioFlags::SWAPCACHE);
        let refs = s.large_folio_refcount(head);
        if refs <= 1 + if swapcache { HPAGE_PMD_NR as u32 } else { 0 } {
            if swapcache {
                for f in s.folio_pages(head).collect::<arrayvec::ArrayVec<FolioId, 4>>() {
                    folio_free_swap(s, f);
                }
            }
            reuse = s.large_folio_refcount(head) == 1;
        }
    }
    if !reuse {
        split_huge_pmd(s, cfg, p, addr);
        return HugeWp::Fallback;
    }
    // page_move_anon_rmap(): this PMD is now the exclusive owner.
    for f in s.folio_pages(head).collect::<arrayvec::ArrayVec<FolioId, 4>>() {
        s.folio_mut(f).flags.insert(FolioFlags::ANON_EXCLUSIVE);
    }
    let n = maybe_mkwrite(pte_mkdirty(bits | PteBits::A), &v);
    set_pmd_at(s, p, start, head, n, Why::DoHugePmdWpPage);
    HugeWp::Reused
}

/// A hardware access through a huge PMD (or `huge_pmd_set_accessed()` for a
/// spurious fault): A on the whole PMD, D too for a store (the hardware sets the
/// PMD's dirty bit; soft-dirty only through `pmd_mkdirty`, i.e. `spurious`).
pub fn touch_pmd(s: &mut State, p: usize, addr: u8, write: bool, spurious: bool) {
    let (start, end) = pmd_range(addr);
    for a in start..end {
        if let Entry::Present { bits, folio } = s.procs[p].pt[a as usize] {
            let mut n = bits | PteBits::A;
            if write {
                n = if spurious { pte_mkdirty(n) } else { n | PteBits::D };
            }
            if spurious {
                set_pte(s, p, a, Entry::Present { bits: n, folio }, Why::HandlePteFault);
            } else {
                s.procs[p].pt[a as usize] = Entry::Present { bits: n, folio };
            }
        }
    }
}

/// `__split_huge_pmd_locked()` (mm/huge_memory.c), anonymous, for the PMD that
/// maps `addr` (`__split_huge_pmd()` with `freeze` false). A present PMD becomes
/// one PTE per page: `mk_pte(page, vm_page_prot)`, write iff the PMD was writable
/// (and VM_WRITE), old if the PMD was, soft-dirty and uffd-wp from the PMD
/// (`pte_mkuffd_wp`: write-protecting from v6.3); a dirty PMD dirties the folio
/// and, from v6.12 ([`Kernel::split_pmd_dirties_ptes`]), every PTE (`pte_mkdirty`:
/// D and soft-dirty on x86). A protnone (NUMA) PMD's protnone is not carried over.
/// A PMD migration entry becomes one PTE migration entry per page with its kind
/// and bits. The folio stays large; the PMD now points to a PTE table.
pub fn split_huge_pmd(s: &mut State, cfg: &Config, p: usize, addr: u8) {
    split_huge_pmd_locked(s, cfg, p, addr, false);
}

/// [`split_huge_pmd`], or with `freeze` (the folio split's TTU_SPLIT_FREEZE):
/// every present page becomes a PTE migration entry right away — writable if
/// the PMD was writable, readable-exclusive if the folio was exclusive (which it
/// no longer is), else readable — carrying the PMD's young, dirty, soft-dirty and
/// uffd-wp bits (a dirty PMD dirties the folio).
fn split_huge_pmd_locked(s: &mut State, cfg: &Config, p: usize, addr: u8, freeze: bool) {
    let mm = &s.procs[p];
    if !mm.is_huge(addr) {
        return;
    }
    let (start, end) = pmd_range(addr);
    s.procs[p].huge &= !pmd_bit(addr);
    s.procs[p].ptable |= pmd_bit(addr);
    // The unmodelled pages of the PMD are PTE-mapped now (frozen ones go with
    // the folio split, which remaps them as small folios).
    if let Entry::Present { folio, .. } | Entry::Migration { folio, .. } = s.procs[p].pt[start as usize] {
        if !freeze {
            s.procs[p].tail[(start / HPAGE_PMD_NR) as usize] = s.folio_head(folio);
        }
    }
    for a in start..end {
        match s.procs[p].pt[a as usize] {
            Entry::Present { bits, folio } => {
                if bits.contains(PteBits::D) {
                    s.folio_mut(folio).flags.insert(FolioFlags::DIRTY);
                }
                if freeze {
                    try_to_migrate_one(s, p, a, bits, folio);
                    continue;
                }
                // The VMA the page is in now: a split for a VMA boundary runs
                // after the boundary moved, and the op that moved it (mprotect)
                // rebuilds the PTEs on its side anyway.
                let Some(v) = s.procs[p].vma(a).copied() else { continue };
                let mut n = maybe_mkwrite(mk_pte(v.prot), &v);
                if !bits.contains(PteBits::W) {
                    n.remove(PteBits::W);
                }
                if !bits.contains(PteBits::A) {
                    n.remove(PteBits::A);
                }
                if bits.contains(PteBits::D) && cfg.kernel.split_pmd_dirties_ptes() {
                    n = pte_mkdirty(n);
                }
                if bits.contains(PteBits::SD) {
                    n.insert(PteBits::SD);
                }
                if bits.contains(PteBits::UW) {
                    n = pte_mkuffd_wp(n - PteBits::W, cfg);
                }
                set_pte(s, p, a, Entry::Present { bits: n, folio }, Why::SplitHugePmd);
            }
            e @ Entry::Migration { .. } => set_pte(s, p, a, e, Why::SplitHugePmd),
            _ => {}
        }
    }
}

/// `split_huge_pmd()` of every PMD that `[start, end)` covers only in part (what
/// the kernel's walkers do before they walk PTEs: `change_pmd_range()`,
/// `zap_pmd_range()`, `madvise_*_pte_range()`, ...). PMDs covered whole are left
/// to the walker.
pub fn split_huge_pmd_range(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) {
    if s.procs[p].huge == 0 || start >= end {
        return;
    }
    for a in [start, end - 1] {
        let (x, y) = pmd_range(a);
        if s.procs[p].is_huge(a) && (x < start || y > end) {
            split_huge_pmd(s, cfg, p, a);
        }
    }
}

/// After a step: `vma_adjust_trans_huge()` (mm/huge_memory.c) splits a PMD that
/// a VMA boundary now cuts (split_vma, a shrink or a move), as `__split_vma()`
/// and `vma_expand`/`vma_shrink` do before the boundary moves.
pub fn vma_adjust_trans_huge(s: &mut State, cfg: &Config) {
    for p in 0..MAX_PROCS {
        if s.procs[p].huge == 0 || !s.procs[p].alive {
            continue;
        }
        for g in 0..NPMDS as u8 {
            let (a, e) = (g * HPAGE_PMD_NR, g * HPAGE_PMD_NR + HPAGE_PMD_NR);
            let mm = &s.procs[p];
            if mm.huge & (1 << g) != 0 && mm.vma(a).is_none_or(|v| v.end < e) {
                split_huge_pmd(s, cfg, p, a);
            }
        }
    }
}

/// A zap of whole PMDs (`zap_huge_pmd()`, after `zap_pte_range` dropped the
/// entries): the PMDs of `[start, end)` are none again, without a PTE table.
pub fn zap_huge_pmds(mm: &mut Mm, start: u8, end: u8) {
    if mm.huge == 0 {
        return;
    }
    let mut a = start.next_multiple_of(HPAGE_PMD_NR);
    while a + HPAGE_PMD_NR <= end {
        if mm.is_huge(a) {
            mm.huge &= !pmd_bit(a);
            mm.ptable &= !pmd_bit(a);
        }
        a += HPAGE_PMD_NR;
    }
}

/// `free_pgtables()` after munmap: a PTE table no VMA overlaps any more is freed.
pub fn free_pgtables(mm: &mut Mm) {
    for g in 0..NPMDS as u8 {
        let (a, e) = (g * HPAGE_PMD_NR, g * HPAGE_PMD_NR + HPAGE_PMD_NR);
        if mm.ptable & (1 << g) != 0 && !mm.vmas.iter().any(|v| v.start < e && v.end > a) {
            mm.ptable &= !(1 << g);
        }
    }
}

/// `set_pmd_migration_entry()` (mm/huge_memory.c) for the PMD at `addr`: like
/// `try_to_migrate_one()` for each page — writable if the PMD was, else
/// readable-exclusive if the folio was exclusive (given up), else readable;
/// young, dirty, soft-dirty and uffd-wp into the entry; the PMD stays huge.
///
/// v6.1 ([`Kernel::thp_migration_uffd_wp`]) does not carry uffd-wp.
pub fn set_pmd_migration_entry(s: &mut State, k: Kernel, p: usize, addr: u8) {
    let (start, end) = pmd_range(addr);
    for a in start..end {
        if let Entry::Present { bits, folio } = s.procs[p].pt[a as usize] {
            try_to_migrate_one(s, p, a, bits, folio);
            if !k.thp_migration_uffd_wp() {
                if let Entry::Migration { kind, bits, folio } = s.procs[p].pt[a as usize] {
                    s.procs[p].pt[a as usize] = Entry::Migration { kind, bits: bits - SwpBits::UW, folio };
                }
            }
            s.procs[p].why[a as usize].w.why = Why::SetPmdMigrationEntry;
        }
    }
}

/// `remove_migration_pmd()` (mm/huge_memory.c): the PMD is rebuilt from the
/// **current** `vm_page_prot` (`mk_huge_pmd`), soft-dirty from the entry,
/// `maybe_pmd_mkwrite` for a writable entry, uffd-wp (write-protected) from the
/// entry, old unless the entry was young, and `pmd_mkdirty` (D and soft-dirty on
/// x86) if the entry and the new folio are dirty; exclusive unless readable.
/// Every profile and every variant: the 2022 fixes changed only
/// `remove_migration_pte()`.
pub fn remove_migration_pmd(
    s: &mut State,
    cfg: &Config,
    p: usize,
    addr: u8,
    kind: MigKind,
    swp: SwpBits,
    new: FolioId,
) {
    let (start, _) = pmd_range(addr);
    let Some(v) = s.procs[p].vma(start).copied() else {
        return;
    };
    let mut pmd = mk_pte(v.prot);
    if swp.contains(SwpBits::SD) {
        pmd.insert(PteBits::SD);
    }
    if kind == MigKind::Write {
        pmd = maybe_mkwrite(pmd, &v);
    }
    if swp.contains(SwpBits::UW) {
        pmd = pte_mkuffd_wp(pmd - PteBits::W, cfg);
    }
    if !swp.contains(SwpBits::YOUNG) {
        pmd.remove(PteBits::A);
    }
    if s.folio(new).flags.contains(FolioFlags::DIRTY) && swp.contains(SwpBits::DIRTY) {
        pmd = pte_mkdirty(pmd);
    }
    let head = s.folio_head(new);
    let exclusive = kind != MigKind::Read;
    for i in 0..HPAGE_PMD_NR {
        page_add_rmap(s, head + i, exclusive);
    }
    set_pmd_at(s, p, start, head, pmd, Why::RemoveMigrationPmd);
}

/// `split_huge_page()` → `__folio_split()` / `__split_huge_page()`
/// (mm/huge_memory.c) of the large folio `f` belongs to: `unmap_folio()`
/// (`try_to_migrate()` with TTU_SPLIT_FREEZE: a PMD is split frozen, each PTE
/// becomes a migration entry), the pages become small folios, and `remap_page()`
/// restores every entry through `remove_migration_ptes()` — the same
/// `remove_migration_pte()` as migration, so the restore variant under test
/// decides the PTEs. False if the folio cannot be split now (under migration).
pub fn split_huge_page(s: &mut State, cfg: &Config, f: FolioId) -> bool {
    if !s.is_large(f) || s.is_migrating(f) {
        return false;
    }
    let head = s.folio_head(f);
    let pages: arrayvec::ArrayVec<FolioId, 4> = s.folio_pages(f).collect();
    let is_page = |s: &State, x: FolioId| s.in_large_folio(x, head);
    for q in 0..MAX_PROCS {
        if !s.procs[q].alive {
            continue;
        }
        for a in 0..NPAGES as u8 {
            if let Entry::Present { bits, folio } = s.procs[q].pt[a as usize] {
                if !is_page(s, folio) {
                    continue;
                }
                if s.procs[q].is_huge(a) {
                    split_huge_pmd_locked(s, cfg, q, a, true);
                } else {
                    try_to_migrate_one(s, q, a, bits, folio);
                }
            }
        }
    }
    // The pages become folios of their own, with the folio's flags; the
    // unmodelled pages are small folios the model does not follow.
    for &x in &pages {
        s.folio_mut(x).flags.remove(FolioFlags::LARGE | FolioFlags::PARTIALLY_MAPPED);
    }
    for mm in s.procs.iter_mut() {
        for t in mm.tail.iter_mut().filter(|t| **t == head) {
            *t = NO_FOLIO;
        }
    }
    for q in 0..MAX_PROCS {
        if !s.procs[q].alive {
            continue;
        }
        for a in 0..NPAGES as u8 {
            if let Entry::Migration { kind, bits, folio } = s.procs[q].pt[a as usize] {
                if pages.contains(&folio)
                    && !s.is_migrating(folio)
                    && !try_to_map_unused_to_zeropage(s, cfg, q, a, bits, folio)
                {
                    super::migrate::remove_migration_pte(s, cfg, q, a, kind, bits, folio);
                }
            }
        }
    }
    for &x in &pages {
        put_anon_folio(s, x);
    }
    true
}

/// `try_to_map_unused_to_zeropage()` (mm/migrate.c, v6.12+,
/// [`Kernel::split_remaps_zero_pages`]) in the `remap_page()` of a folio split:
/// a page that holds only zeroes, of an anonymous folio in a VMA that is not
/// VM_LOCKED, is mapped to the shared zero page — `vm_page_prot` (read-only for
/// a private mapping), soft-dirty and uffd-wp from the entry where
/// [`Kernel::zero_remap_keeps_bits`] says so — instead of being restored.
fn try_to_map_unused_to_zeropage(s: &mut State, cfg: &Config, p: usize, addr: u8, swp: SwpBits, f: FolioId) -> bool {
    let k = cfg.kernel;
    let Some(v) = s.procs[p].vma(addr).copied() else {
        return false;
    };
    let fo = s.folio(f);
    if !k.split_remaps_zero_pages() || !fo.is_anon() || fo.data != 0 || v.flags.contains(VmFlags::LOCKED) {
        return false;
    }
    let mut bits = mk_pte(v.prot) - PteBits::W;
    if k.zero_remap_keeps_bits() {
        if swp.contains(SwpBits::SD) {
            bits.insert(PteBits::SD);
        }
        if swp.contains(SwpBits::UW) {
            bits = pte_mkuffd_wp(bits, cfg);
        }
    }
    set_pte(s, p, addr, Entry::Present { bits, folio: ZERO_PAGE }, Why::RemoveMigrationPte);
    true
}

/// `madvise_free_huge_pmd()` (mm/huge_memory.c) for a PMD that the range covers
/// whole: skipped unless the folio is mapped once (`folio_mapcount() != 1`);
/// the folio becomes clean and lazy-free; the PMD old and clean (still writable,
/// soft-dirty kept).
pub fn madvise_free_huge_pmd(s: &mut State, p: usize, addr: u8) {
    let (start, end) = pmd_range(addr);
    let Entry::Present { folio, .. } = s.procs[p].pt[start as usize] else {
        return;
    };
    let head = s.folio_head(folio);
    if s.large_folio_mapcount(head) != 1 {
        return;
    }
    for f in s.folio_pages(head).collect::<arrayvec::ArrayVec<FolioId, 4>>() {
        let fo = s.folio_mut(f);
        fo.flags.remove(FolioFlags::DIRTY);
        fo.flags.insert(FolioFlags::LAZYFREE);
    }
    for a in start..end {
        if let Entry::Present { bits, folio } = s.procs[p].pt[a as usize] {
            let n = bits - PteBits::A - PteBits::D;
            set_pte(s, p, a, Entry::Present { bits: n, folio }, Why::MadviseFreeHugePmd);
        }
    }
}

/// The PMD half of `move_page_tables()` (mm/mremap.c) for moving
/// `[old, old + len)` to `new`: a huge PMD the range covers whole moves as one
/// (`move_huge_pmd()`) when `new` is aligned like `old` and the destination PMD
/// is none; every other huge PMD of the range is split first
/// (`split_huge_pmd()`). Returns the destination PMDs that are huge now; the
/// caller moves the entries (the same per-entry rule as `move_ptes()`).
pub fn move_huge_pmds(s: &mut State, cfg: &Config, p: usize, old: u8, new: u8, len: u8) -> u8 {
    if s.procs[p].huge == 0 || len == 0 {
        return 0;
    }
    let end = old + len;
    let mut dest = 0u8;
    for g in 0..NPMDS as u8 {
        let (a, e) = (g * HPAGE_PMD_NR, g * HPAGE_PMD_NR + HPAGE_PMD_NR);
        if s.procs[p].huge & (1 << g) == 0 || e <= old || a >= end {
            continue;
        }
        let whole = old <= a && e <= end && (new + (a - old)).is_multiple_of(HPAGE_PMD_NR);
        if whole {
            let d = new + (a - old);
            if pmd_none(&s.procs[p], d) {
                let mm = &mut s.procs[p];
                mm.huge &= !(1 << g);
                mm.ptable &= !(1 << g);
                dest |= pmd_bit(d);
                continue;
            }
        }
        split_huge_pmd(s, cfg, p, a);
    }
    dest
}

/// The zap of `[start, end)` in `p` reaches the unmodelled pages of every PMD
/// whose last model page it covers ([`Mm::tail`]): their mappings go, and the
/// folio they kept alive may be freed.
pub fn zap_tails(s: &mut State, p: usize, start: u8, end: u8) {
    for g in 0..NPMDS {
        let last = g as u8 * HPAGE_PMD_NR + HPAGE_PMD_NR - 1;
        let t = s.procs[p].tail[g];
        if t != NO_FOLIO && start <= last && last < end {
            s.procs[p].tail[g] = NO_FOLIO;
            if s.large_folio_mapcount(t) > 0 {
                s.mark_partially_mapped(t);
            }
            put_anon_folio(s, t);
        }
    }
}

/// `move_ptes()` of `[old, old + len)` to `new` takes the unmodelled pages
/// after each moved last model page along (to the PMD of its new page).
pub fn move_tails(mm: &mut Mm, old: u8, new: u8, len: u8) {
    let mut moved = [NO_FOLIO; NPMDS];
    for (g, slot) in moved.iter_mut().enumerate() {
        let last = g as u8 * HPAGE_PMD_NR + HPAGE_PMD_NR - 1;
        if old <= last && last < old + len {
            *slot = std::mem::replace(&mut mm.tail[g], NO_FOLIO);
        }
    }
    for (g, &t) in moved.iter().enumerate() {
        if t != NO_FOLIO {
            let last = g as u8 * HPAGE_PMD_NR + HPAGE_PMD_NR - 1;
            let d = (new + (last - old)) / HPAGE_PMD_NR;
            mm.tail[d as usize] = t;
        }
    }
}

/// CONFIG_PT_RECLAIM (`try_get_and_clear_pmd()` in `zap_pte_range()`, v6.14+,
/// [`Kernel::dontneed_reclaims_pte_tables`]): a MADV_DONTNEED that zapped a whole
/// PMD range frees its PTE table when every entry is none (the unmodelled pages
/// too: the zap covered them).
pub fn reclaim_empty_pte_tables(mm: &mut Mm, start: u8, end: u8) {
    for g in 0..NPMDS {
        let (a, e) = (g as u8 * HPAGE_PMD_NR, g as u8 * HPAGE_PMD_NR + HPAGE_PMD_NR);
        if start <= a
            && e <= end
            && !mm.is_huge(a)
            && mm.tail[g] == NO_FOLIO
            && (a..e).all(|x| mm.pt[x as usize].is_none())
        {
            mm.ptable &= !(1 << g);
        }
    }
}
