//! User accesses and the page-fault paths of mm/memory.c (v6.1 to v7.3; where
//! the profiles differ the function says so).

use super::events::Event;
use super::huge_memory;
use super::migrate::migration_entry_wait;
use super::pte::*;
use super::types::*;
use super::{Config, Kernel, LargeReuse};

/// What a user access came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The load/store completed.
    Done,
    /// SIGSEGV: no VMA or no permission.
    Segv,
    /// The store blocked on a userfaultfd write-protect fault (handle_userfault).
    UffdWp,
    /// VM_FAULT_OOM / SIGBUS: the model ran out of folios or swap.
    Oom,
}

/// Internal result of one fault attempt.
pub(super) enum Fault {
    /// The PTE changed (or a wait finished): retry the access.
    Retry,
    Uffd,
    Oom,
    /// VM_FAULT_SIGSEGV: a guard marker (`handle_pte_marker()`).
    Segv,
}

/// A user load or store at `(p, addr)`: a hardware access through a suitable PTE
/// (A set; a store through a W PTE sets D only, never SD, on x86), otherwise the
/// fault path (`handle_mm_fault` → `handle_pte_fault`) and a retry. A PTE of an
/// execute-only VMA carries the execute-only pkey: a load through it faults
/// (PF_PK) and `access_error()` raises SIGSEGV (found by kernel-check on v7.3).
pub fn user_access(s: &mut State, cfg: &Config, p: usize, addr: u8, write: bool) -> Access {
    for _ in 0..8 {
        let e = s.procs[p].pt[addr as usize];
        if let Entry::Present { bits, folio } = e {
            // (A store needs W, which an execute-only VMA never has: only
            // loads look the VMA up.)
            if !bits.contains(PteBits::PROTNONE)
                && (if write {
                    bits.contains(PteBits::W)
                } else {
                    !s.procs[p].vma(addr).is_some_and(|v| v.pkey_exec_only())
                })
            {
                if write {
                    // The store's data: a fresh content token.
                    s.next_token = s.next_token.wrapping_add(1).max(1);
                    if folio != ZERO_PAGE {
                        s.folio_mut(folio).data = s.next_token;
                    }
                }
                if s.procs[p].is_huge(addr) {
                    huge_memory::touch_pmd(s, p, addr, write, false);
                } else {
                    let n = if write { bits | PteBits::A | PteBits::D } else { bits | PteBits::A };
                    s.procs[p].pt[addr as usize] = Entry::Present { bits: n, folio };
                }
                return Access::Done;
            }
        }
        let Some(vi) = s.procs[p].vma_index(addr) else {
            return Access::Segv;
        };
        let v = s.procs[p].vmas[vi];
        // access_error() (arch/x86/mm/fault.c), including the pkey check
        if write && !v.flags.contains(VmFlags::WRITE) || !write && !v.accessible() || v.pkey_exec_only() {
            return Access::Segv;
        }
        match handle_pte_fault(s, cfg, p, vi, addr, write) {
            Fault::Retry => continue,
            Fault::Uffd => return Access::UffdWp,
            Fault::Oom => return Access::Oom,
            Fault::Segv => return Access::Segv,
        }
    }
    Access::Oom
}

/// `__mm_populate()` → `populate_vma_page_range()` (mm/gup.c) as used by mlock()
/// and by mprotect() of a locked private mapping: GUP every page with FOLL_TOUCH,
/// FOLL_WRITE (COW break) for private writable VMAs and FOLL_FORCE for accessible
/// ones. GUP faults only where the PTE does not satisfy it: with FOLL_FORCE it
/// follows a NUMA-hinting (protnone) PTE without faulting; a FOLL_WRITE touch of a
/// clean writable PTE dirties the folio (`follow_page_pte`), so a MADV_FREE'd page
/// is no longer discarded. The walk stops at the first VMA GUP refuses (PROT_NONE,
/// execute-only pkey): mlock ignores no errors. A guard page stops the walk
/// with EFAULT (its fault is VM_FAULT_SIGSEGV), which mlock() returns as ENOMEM
/// (`__mlock_posix_error_return()`); the pages before it stay populated.
pub fn populate_vma_page_range(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) -> super::vma::KResult<()> {
    for addr in start..end.min(NPAGES as u8) {
        let Some(vi) = s.procs[p].vma_index(addr) else {
            continue;
        };
        let v = s.procs[p].vmas[vi];
        if !v.accessible() || v.pkey_exec_only() {
            return Ok(());
        }
        let write = (v.flags & (VmFlags::WRITE | VmFlags::SHARED)) == VmFlags::WRITE;
        for _ in 0..8 {
            let e = s.procs[p].pt[addr as usize];
            if let Entry::Present { bits, folio } = e {
                if !write || bits.contains(PteBits::W) {
                    if write && folio != ZERO_PAGE && !bits.contains(PteBits::D) {
                        s.folio_mut(folio).flags.insert(FolioFlags::DIRTY);
                    }
                    break;
                }
            }
            let vi = s.procs[p].vma_index(addr).unwrap();
            match handle_pte_fault(s, cfg, p, vi, addr, write) {
                Fault::Retry => continue,
                Fault::Uffd | Fault::Oom => break,
                Fault::Segv => return Err(super::vma::Errno::Efault),
            }
        }
        // The unmodelled pages after a PMD's last page are populated with it: a
        // COW break copies them away from a folio another process maps too.
        let g = (addr / HPAGE_PMD_NR) as usize;
        let t = s.procs[p].tail[g];
        if write && addr % HPAGE_PMD_NR == HPAGE_PMD_NR - 1 && t != NO_FOLIO && !s.large_folio_only_in(t, p) {
            s.procs[p].tail[g] = NO_FOLIO;
            put_anon_folio(s, t);
        }
    }
    Ok(())
}

/// `break_ksm()`'s write fault (v6.1: `handle_mm_fault(FAULT_FLAG_WRITE)`, no
/// store): the KSM page is copied (`do_wp_page`).
pub(super) fn break_cow(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8) {
    let _ = handle_pte_fault(s, cfg, p, vi, addr, true);
}

/// `handle_pte_fault()` (mm/memory.c): dispatch on the PTE.
pub(super) fn handle_pte_fault(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, write: bool) -> Fault {
    let v = s.procs[p].vmas[vi];
    if s.procs[p].is_huge(addr) {
        if let Some(f) = handle_huge_pmd_fault(s, cfg, p, vi, addr, write) {
            return f;
        }
    }
    let e = s.procs[p].pt[addr as usize];
    if e.is_none()
        && v.flags.contains(VmFlags::HUGEPAGE)
        && huge_memory::do_huge_pmd_anonymous_page(s, cfg.kernel, p, vi, addr)
    {
        return Fault::Retry;
    }
    match e {
        Entry::None => {
            if v.is_anonymous() {
                do_anonymous_page(s, cfg, p, vi, addr, write, false)
            } else {
                do_fault(s, cfg, p, vi, addr, write, false)
            }
        }
        Entry::Migration { folio, .. } => {
            migration_entry_wait(s, cfg, folio);
            Fault::Retry
        }
        Entry::Swap { bits, slot } => do_swap_page(s, cfg, p, vi, addr, bits, slot, write),
        Entry::Marker => handle_pte_marker(s, cfg, p, vi, addr, write),
        // handle_pte_marker(): a guard marker raises SIGSEGV (before any
        // uffd-wp handling; v6.13).
        Entry::Guard { .. } => Fault::Segv,
        Entry::Present { bits, folio } => {
            if bits.contains(PteBits::PROTNONE) && v.accessible() {
                do_numa_page(s, cfg, p, &v, addr, bits, folio);
                return Fault::Retry;
            }
            if write && !bits.contains(PteBits::W) {
                return do_wp_page(s, cfg.kernel, p, vi, addr, bits, folio);
            }
            // Spurious fault: mkyoung (and mkdirty for a write).
            let mut n = bits | PteBits::A;
            if write {
                n = pte_mkdirty(n);
            }
            set_pte(s, p, addr, Entry::Present { bits: n, folio }, Why::HandlePteFault);
            Fault::Retry
        }
    }
}

/// The PMD level of `__handle_mm_fault()` (mm/memory.c) for a huge PMD: wait for
/// a PMD migration entry (`pmd_migration_entry_wait`), `do_huge_pmd_numa_page()`
/// for a protnone PMD (each page as [`do_numa_page`] rebuilds it), `wp_huge_pmd()`
/// for a store to a read-only PMD, else `huge_pmd_set_accessed()`. None when the
/// PMD was split (VM_FAULT_FALLBACK): the PTE level handles the fault.
fn handle_huge_pmd_fault(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, write: bool) -> Option<Fault> {
    let v = s.procs[p].vmas[vi];
    match s.procs[p].pt[addr as usize] {
        Entry::Migration { folio, .. } => {
            migration_entry_wait(s, cfg, folio);
            Some(Fault::Retry)
        }
        Entry::Present { bits, .. } if bits.contains(PteBits::PROTNONE) && v.accessible() => {
            let (start, end) = huge_memory::pmd_range(addr);
            for a in start..end {
                if let Entry::Present { bits, folio } = s.procs[p].pt[a as usize] {
                    // do_huge_pmd_numa_page() rebuilds the PMD with pmd_modify().
                    let bits = pmd_modify(cfg, bits, v.prot);
                    do_numa_page(s, cfg, p, &v, a, bits, folio);
                }
            }
            Some(Fault::Retry)
        }
        Entry::Present { bits, .. } if write && !bits.contains(PteBits::W) => {
            match huge_memory::wp_huge_pmd(s, cfg, p, vi, addr) {
                huge_memory::HugeWp::Reused => Some(Fault::Retry),
                huge_memory::HugeWp::Uffd => Some(Fault::Uffd),
                huge_memory::HugeWp::Fallback => None,
            }
        }
        Entry::Present { .. } => {
            huge_memory::touch_pmd(s, p, addr, write, true);
            Some(Fault::Retry)
        }
        _ => None,
    }
}

/// `anon_vma_prepare()` (mm/rmap.c): give the VMA an anon_vma on its first anon
/// page, reusing a neighbour's when `find_mergeable_anon_vma()` allows, else a new one.
pub(super) fn anon_vma_prepare(s: &mut State, k: Kernel, p: usize, vi: usize) {
    if s.procs[p].vmas[vi].anon_vma != 0 {
        return;
    }
    if let Some(id) = find_mergeable_anon_vma(&s.procs[p], k, vi) {
        s.procs[p].vmas[vi].anon_vma = id;
        return;
    }
    let id = s.next_anon_vma;
    s.next_anon_vma = s.next_anon_vma.checked_add(1).unwrap_or(1);
    s.procs[p].vmas[vi].anon_vma = id;
}

/// `find_mergeable_anon_vma()` (mm/mmap.c; mm/vma.c from v6.12): the next VMA
/// first, then the previous one, through `reusable_anon_vma()`: the neighbour's
/// anon_vma if the two are `anon_vma_compatible()` and its anon_vma_chain is a
/// single link (not a fork child), so a later mprotect can merge them again.
fn find_mergeable_anon_vma(mm: &Mm, k: Kernel, vi: usize) -> Option<u8> {
    let v = &mm.vmas[vi];
    let reusable = |old: &Vma, a: &Vma, b: &Vma| {
        (anon_vma_compatible(k, a, b) && old.anon_vma != 0 && !old.anon_forked).then_some(old.anon_vma)
    };
    if let Some(next) = mm.vmas.get(vi + 1) {
        if let Some(id) = reusable(next, v, next) {
            return Some(id);
        }
    }
    let prev = mm.vmas.get(vi.checked_sub(1)?)?;
    reusable(prev, prev, v)
}

/// `anon_vma_compatible()`: adjacent, the same file (or both anonymous), flags equal
/// but for R/W/X and VM_SOFTDIRTY, linear file offsets, and (v7.x) linear
/// anonymous offsets.
fn anon_vma_compatible(k: Kernel, a: &Vma, b: &Vma) -> bool {
    let ignore = VmFlags::READ | VmFlags::WRITE | VmFlags::EXEC | VmFlags::SOFTDIRTY;
    let len = a.end - a.start;
    a.end == b.start
        && a.backing == b.backing
        && (a.flags ^ b.flags).difference(ignore).is_empty()
        && a.pgoff.wrapping_add(len) == b.pgoff
        && (!k.cow_file_merge_needs_anon_pgoff() || a.anon_pgoff.wrapping_add(len) == b.anon_pgoff)
}

/// `do_anonymous_page()` (mm/memory.c): a read maps the zero page with
/// `vm_page_prot`; a write maps a new exclusive page `pte_mkwrite(pte_mkdirty())`.
/// From a uffd-wp marker (`marker`, v6.4 WP_UNPOPULATED) either PTE gets
/// `pte_mkuffd_wp()`: a store then faults again into `do_wp_page`.
fn do_anonymous_page(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, write: bool, marker: bool) -> Fault {
    let k = cfg.kernel;
    let v = s.procs[p].vmas[vi];
    if !write {
        let mut bits = mk_pte(v.prot);
        if marker {
            bits = pte_mkuffd_wp(bits, cfg);
        }
        set_pte(s, p, addr, Entry::Present { bits, folio: ZERO_PAGE }, Why::DoAnonymousPage);
        return Fault::Retry;
    }
    anon_vma_prepare(s, k, p, vi);
    let Some(f) = s.alloc_folio(FolioKind::Anon) else {
        return Fault::Oom;
    };
    let mut bits = mk_pte(v.prot);
    if v.flags.contains(VmFlags::WRITE) {
        bits = pte_mkdirty(bits) | PteBits::W;
    }
    if marker {
        bits = pte_mkuffd_wp(bits, cfg);
    }
    page_add_rmap(s, f, true);
    set_pte(s, p, addr, Entry::Present { bits, folio: f }, Why::DoAnonymousPage);
    Fault::Retry
}

/// `shmem_fault()` / `filemap_fault()`: the page-cache folio at `index`, read in
/// (ext4/ramfs: clean), allocated zero-filled (shmem hole) or swapped in
/// (`shmem_swapin_folio` marks it dirty). A folio under migration is waited for.
fn filemap_get_folio(s: &mut State, cfg: &Config, file: u8, index: u8) -> Option<FolioId> {
    let idx = index as usize % NPAGES;
    let mut f = s.files[file as usize].cache[idx];
    if f != NO_FOLIO && s.is_migrating(f) {
        migration_entry_wait(s, cfg, f);
        f = s.files[file as usize].cache[idx];
    }
    if f != NO_FOLIO {
        return Some(f);
    }
    let f = s.alloc_folio(FolioKind::File { file, index: idx as u8 })?;
    // Read in: the data from disk or shmem's swap (zero if never written).
    s.folios[f as usize].data = s.files[file as usize].stash[idx];
    let fl = &mut s.files[file as usize];
    if fl.swapped & (1 << idx) != 0 {
        fl.swapped &= !(1 << idx);
        s.folios[f as usize].flags.insert(FolioFlags::DIRTY);
    } else if s.file_kind(file) != FileKind::Shmem {
        // A page of a page_mkwrite file system comes in clean.
        s.emit(Event::FileClean { file, index: idx as u8 });
    }
    s.files[file as usize].cache[idx] = f;
    Some(f)
}

/// `do_fault()` (mm/memory.c): read → do_read_fault, private write →
/// do_cow_fault, shared write → do_shared_fault. `marker` says the PTE was a
/// uffd-wp marker (`do_set_pte` then maps it write-protected with UW).
fn do_fault(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, write: bool, marker: bool) -> Fault {
    let v = s.procs[p].vmas[vi];
    if !write {
        do_read_fault(s, cfg, p, vi, addr, marker)
    } else if !v.flags.contains(VmFlags::SHARED) {
        do_cow_fault(s, cfg, p, vi, addr, marker)
    } else {
        do_shared_fault(s, cfg, p, vi, addr, marker)
    }
}

fn vma_file(v: &Vma) -> u8 {
    match v.backing {
        Backing::File(f) => f,
        Backing::Anon => unreachable!("do_fault on an anonymous VMA"),
    }
}

/// `do_read_fault()` (mm/memory.c): fault-around first (`filemap_map_pages` maps
/// every cached, unlocked page of the 16-page window into none PTEs; disabled for
/// uffd-wp VMAs by `uffd_disable_fault_around`), then `__do_fault` + `finish_fault`.
fn do_read_fault(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, marker: bool) -> Fault {
    let v = s.procs[p].vmas[vi];
    let file = vma_file(&v);
    if !v.uffd_wp() && !marker {
        for a in v.start..v.end {
            if !s.procs[p].pt[a as usize].is_none() {
                continue;
            }
            let f = s.files[file as usize].cache[v.pgoff_of(a) as usize % NPAGES];
            if f == NO_FOLIO || s.is_migrating(f) {
                continue;
            }
            do_set_pte(s, cfg.kernel, p, &v, a, f, false, false);
        }
        if !s.procs[p].pt[addr as usize].is_none() {
            return Fault::Retry;
        }
    }
    let Some(f) = filemap_get_folio(s, cfg, file, v.pgoff_of(addr)) else {
        return Fault::Oom;
    };
    do_set_pte(s, cfg.kernel, p, &v, addr, f, false, marker);
    Fault::Retry
}

/// `do_cow_fault()` (mm/memory.c): copy the page-cache page into a new anon page
/// and map it writable, dirty, exclusive.
fn do_cow_fault(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, marker: bool) -> Fault {
    anon_vma_prepare(s, cfg.kernel, p, vi);
    let v = s.procs[p].vmas[vi];
    let Some(page) = filemap_get_folio(s, cfg, vma_file(&v), v.pgoff_of(addr)) else {
        return Fault::Oom;
    };
    let Some(new) = s.alloc_folio(FolioKind::Anon) else {
        return Fault::Oom;
    };
    // copy_user_highpage(): the private copy starts as the file page.
    s.folios[new as usize].data = s.folio(page).data;
    do_set_pte(s, cfg.kernel, p, &v, addr, new, true, marker);
    Fault::Retry
}

/// `do_shared_fault()` (mm/memory.c): `->page_mkwrite` (dirties the folio) if the
/// filesystem has one, `finish_fault`, then `fault_dirty_shared_page`.
fn do_shared_fault(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, marker: bool) -> Fault {
    let v = s.procs[p].vmas[vi];
    let Some(f) = filemap_get_folio(s, cfg, vma_file(&v), v.pgoff_of(addr)) else {
        return Fault::Oom;
    };
    if super::prot::has_page_mkwrite(s, &v) {
        s.emit(Event::PageMkwrite { file: vma_file(&v), index: v.pgoff_of(addr) });
    }
    s.folio_mut(f).flags.insert(FolioFlags::DIRTY);
    do_set_pte(s, cfg.kernel, p, &v, addr, f, true, marker);
    Fault::Retry
}

/// `do_set_pte()` (mm/memory.c; `set_pte_range()` from v6.5): `mk_pte(page,
/// vm_page_prot)`; a write fault adds `maybe_mkwrite(pte_mkdirty())`; on v6.18 a
/// read fault that maps a dirty folio writable marks the PTE dirty (D and SD on
/// x86); a uffd-wp marker makes it `W=0, UW=1`. A private write maps a new
/// exclusive anon page; anything else a file page.
#[allow(clippy::too_many_arguments)]
fn do_set_pte(s: &mut State, k: Kernel, p: usize, v: &Vma, addr: u8, f: FolioId, write: bool, marker: bool) {
    let mut bits = mk_pte(v.prot);
    if write {
        bits = maybe_mkwrite(pte_mkdirty(bits), v);
    } else if k.read_fault_dirties_writable_pte()
        && bits.contains(PteBits::W)
        && s.folio(f).flags.contains(FolioFlags::DIRTY)
    {
        bits = pte_mkdirty(bits);
    }
    if marker {
        bits.remove(PteBits::W);
        bits.insert(PteBits::UW);
    }
    let cow = write && !v.flags.contains(VmFlags::SHARED);
    page_add_rmap(s, f, cow);
    set_pte(s, p, addr, Entry::Present { bits, folio: f }, Why::DoSetPte);
}

/// `handle_pte_marker()` → `pte_marker_handle_uffd_wp()` (mm/memory.c): a stale
/// marker (VMA no longer uffd-wp) is cleared; otherwise the fault is handled like a none PTE (`do_pte_missing`:
/// `do_anonymous_page` or `do_fault`), which keeps the write protection.
///
/// Before v6.4 no anonymous VMA has markers (6.1.192's `handle_pte_marker()`
/// answers one with SIGBUS); the model clears such a stale one, a path no
/// 6.1 program reaches.
fn handle_pte_marker(s: &mut State, cfg: &Config, p: usize, vi: usize, addr: u8, write: bool) -> Fault {
    let v = s.procs[p].vmas[vi];
    if !v.uffd_wp() || v.is_anonymous() && !cfg.kernel.uffd_wp_unpopulated() {
        set_pte(s, p, addr, Entry::None, Why::HandlePteMarker);
        return Fault::Retry;
    }
    if v.is_anonymous() {
        return do_anonymous_page(s, cfg, p, vi, addr, write, true);
    }
    do_fault(s, cfg, p, vi, addr, write, true)
}

/// `do_wp_page()` (mm/memory.c, v6.1): uffd-wp → user fault (v6.7 WP_ASYNC: the
/// bit is cleared in place and the fault goes on); anon pages are reused
/// when exclusive (or when the only reference after freeing the swap cache),
/// otherwise copied; file pages of shared writable VMAs go to `wp_page_shared`;
/// everything else (zero page, private file pages) is copied.
fn do_wp_page(s: &mut State, k: Kernel, p: usize, vi: usize, addr: u8, mut bits: PteBits, f: FolioId) -> Fault {
    let v = s.procs[p].vmas[vi];
    if v.uffd_wp() && bits.contains(PteBits::UW) {
        if !super::userfaultfd::userfaultfd_wp_async(&s.procs[p], &v) {
            return Fault::Uffd;
        }
        // WP_ASYNC (v6.7): the bit goes in place, then reuse or copy as usual.
        bits.remove(PteBits::UW);
        set_pte(s, p, addr, Entry::Present { bits, folio: f }, Why::DoWpPage);
    }
    if f == ZERO_PAGE {
        return wp_page_copy(s, k, p, vi, addr, f);
    }
    let fo = *s.folio(f);
    if fo.is_anon() {
        // A KSM page is never reused (folio_test_ksm(): copy).
        if fo.flags.contains(FolioFlags::KSM) {
            return wp_page_copy(s, k, p, vi, addr, f);
        }
        if fo.flags.contains(FolioFlags::ANON_EXCLUSIVE) {
            return wp_page_reuse(s, p, &v, addr, bits, f);
        }
        if s.is_large(f) {
            return wp_large_anon_folio(s, k, p, vi, addr, bits, f);
        }
        let swapcache = fo.flags.contains(FolioFlags::SWAPCACHE) as u8;
        if fo.refcount() > 3 || fo.refcount() > 1 + swapcache {
            return wp_page_copy(s, k, p, vi, addr, f);
        }
        if swapcache == 1 {
            folio_free_swap(s, f);
        }
        if s.folio(f).refcount() != 1 {
            return wp_page_copy(s, k, p, vi, addr, f);
        }
        // page_move_anon_rmap(): this mapping is now the exclusive owner.
        s.folio_mut(f).flags.insert(FolioFlags::ANON_EXCLUSIVE);
        return wp_page_reuse(s, p, &v, addr, bits, f);
    }
    if v.flags.contains(VmFlags::WRITE | VmFlags::SHARED) {
        return wp_page_shared(s, p, &v, addr, bits, f);
    }
    wp_page_copy(s, k, p, vi, addr, f)
}

/// `wp_can_reuse_anon_folio()` (mm/memory.c) for a page of a large folio that is
/// not PageAnonExclusive, per [`Kernel::large_anon_reuse`]: reuse (the page
/// becomes exclusive) or copy.
#[allow(clippy::too_many_arguments)]
fn wp_large_anon_folio(s: &mut State, k: Kernel, p: usize, vi: usize, addr: u8, bits: PteBits, f: FolioId) -> Fault {
    let v = s.procs[p].vmas[vi];
    let head = s.folio_head(f);
    let reuse = match k.large_anon_reuse() {
        LargeReuse::Never => false,
        LargeReuse::RefcountOne => s.large_folio_refcount(head) == 1,
        LargeReuse::ThisMm => {
            s.large_folio_mapcount(head) > 1
                && s.large_folio_only_in(head, p)
                && (head..head + HPAGE_PMD_NR)
                    .all(|x| !s.in_large_folio(x, head) || !s.folio(x).flags.contains(FolioFlags::SWAPCACHE))
        }
    };
    if !reuse {
        return wp_page_copy(s, k, p, vi, addr, f);
    }
    s.folio_mut(f).flags.insert(FolioFlags::ANON_EXCLUSIVE);
    wp_page_reuse(s, p, &v, addr, bits, f)
}

/// `wp_page_reuse()` (mm/memory.c): `maybe_mkwrite(pte_mkdirty(pte_mkyoung()))`;
/// UW is left as it is.
fn wp_page_reuse(s: &mut State, p: usize, v: &Vma, addr: u8, bits: PteBits, f: FolioId) -> Fault {
    let n = maybe_mkwrite(pte_mkdirty(bits | PteBits::A), v);
    set_pte(s, p, addr, Entry::Present { bits: n, folio: f }, Why::DoWpPage);
    Fault::Retry
}

/// `wp_page_shared()` (mm/memory.c): `->page_mkwrite` if any (dirties the folio),
/// reuse, `fault_dirty_shared_page`.
fn wp_page_shared(s: &mut State, p: usize, v: &Vma, addr: u8, bits: PteBits, f: FolioId) -> Fault {
    if super::prot::has_page_mkwrite(s, v) {
        s.emit(Event::PageMkwrite { file: vma_file(v), index: v.pgoff_of(addr) });
    }
    s.folio_mut(f).flags.insert(FolioFlags::DIRTY);
    wp_page_reuse(s, p, v, addr, bits, f)
}

/// `wp_page_copy()` with FAULT_FLAG_UNSHARE (mm/memory.c): a new exclusive anon
/// page mapped `mk_pte(vm_page_prot)` read-only and clean, keeping the old
/// PTE's soft-dirty and uffd-wp bits; the old page loses a mapping. Without a
/// free folio (OOM) the page stays as it is.
pub(super) fn wp_page_unshare(s: &mut State, k: Kernel, p: usize, vi: usize, addr: u8, old: FolioId, bits: PteBits) {
    anon_vma_prepare(s, k, p, vi);
    let v = s.procs[p].vmas[vi];
    let Some(new) = s.alloc_folio(FolioKind::Anon) else {
        return;
    };
    s.folios[new as usize].data = s.folio(old).data;
    let n = (mk_pte(v.prot) - PteBits::W) | (bits & (PteBits::SD | PteBits::UW));
    page_add_rmap(s, new, true);
    set_pte(s, p, addr, Entry::Present { bits: n, folio: new }, Why::BreakKsm);
    page_remove_rmap(s, old);
}

/// `wp_page_copy()` (mm/memory.c): a new exclusive anon page mapped
/// `maybe_mkwrite(pte_mkdirty(mk_pte(vm_page_prot)))`; the old page loses a mapping.
fn wp_page_copy(s: &mut State, k: Kernel, p: usize, vi: usize, addr: u8, old: FolioId) -> Fault {
    anon_vma_prepare(s, k, p, vi);
    let v = s.procs[p].vmas[vi];
    let Some(new) = s.alloc_folio(FolioKind::Anon) else {
        return Fault::Oom;
    };
    // __wp_page_copy_user(): the copy starts as the old page (zero page: zero).
    s.folios[new as usize].data = if old == ZERO_PAGE { 0 } else { s.folio(old).data };
    let bits = maybe_mkwrite(pte_mkdirty(mk_pte(v.prot)), &v);
    page_add_rmap(s, new, true);
    set_pte(s, p, addr, Entry::Present { bits, folio: new }, Why::DoWpPage);
    page_remove_rmap(s, old);
    Fault::Retry
}

/// `do_swap_page()` (mm/memory.c) for a real swap entry on the zram swap device
/// (SWP_SYNCHRONOUS_IO).
///
/// v6.1-v6.18: an entry with a single reference and no swap-cache folio is read
/// into a fresh folio outside the swap cache ("skip swapcache"), which is certainly
/// exclusive; otherwise through the swap cache. `swap_free`, then
/// `should_try_to_free_swap()` before mapping; exclusive if the entry says so, the
/// folio is fresh, or it has no other reference. v7.x: always through the swap
/// cache, exclusive only if the entry says so, the swap-cache copy freed after
/// mapping. An exclusive page takes a write right here (v6.12+: is mapped writable
/// even on a read unless uffd-wp or soft-dirty tracking want the fault); swpSD →
/// SD; swpUW → UW and write-protect; a remaining write goes to `do_wp_page`.
#[allow(clippy::too_many_arguments)]
fn do_swap_page(
    s: &mut State,
    cfg: &Config,
    p: usize,
    vi: usize,
    addr: u8,
    swp: SwpBits,
    slot: u8,
    write: bool,
) -> Fault {
    let k = cfg.kernel;
    let v = s.procs[p].vmas[vi];
    let mut f = s.slots[slot as usize].folio;
    if f != NO_FOLIO && s.is_migrating(f) {
        migration_entry_wait(s, cfg, f);
        return Fault::Retry;
    }
    // Swapped in outside the swap cache (the SWP_SYNCHRONOUS_IO shortcut).
    let mut fresh = false;
    if f == NO_FOLIO {
        let Some(n) = s.alloc_folio(FolioKind::Anon) else {
            return Fault::Oom;
        };
        // swap_read_folio(): the data written to the slot.
        s.folios[n as usize].data = s.slots[slot as usize].data;
        if k.swapin_skips_swap_cache() && s.slots[slot as usize].count == 1 {
            // "skip swapcache": a fresh folio nobody else can see.
            fresh = true;
        } else {
            // swapin_readahead() / swapin_sync(): a fresh folio in the swap cache.
            s.folios[n as usize].flags.insert(FolioFlags::SWAPCACHE);
            s.folios[n as usize].slot = slot;
            s.slots[slot as usize].folio = n;
        }
        f = n;
    }
    // A fresh folio not exposed to the swap cache is certainly exclusive.
    let exclusive = swp.contains(SwpBits::EXCL) || fresh;
    // swap_free(): this PTE no longer refers to the slot.
    {
        let sl = &mut s.slots[slot as usize];
        sl.count = sl.count.saturating_sub(1);
    }
    let mut sole = false;
    if !k.swapin_frees_swap_cache_after_mapping() {
        // should_try_to_free_swap() before mapping: VM_LOCKED, or a write fault
        // holding the only references (ours + the swap cache).
        let fo = *s.folio(f);
        if fo.flags.contains(FolioFlags::SWAPCACHE) && (v.flags.contains(VmFlags::LOCKED) || write && fo.mapcount == 0)
        {
            folio_free_swap(s, f);
        }
        // page_count(page) == 1: only the fault's own reference.
        sole = s.folio(f).refcount() == 0;
    }
    let mut bits = mk_pte(v.prot);
    let mut write_left = write;
    let mut rmap_exclusive = false;
    if cfg.kernel.swapin_maps_writable() {
        // v6.12: soft-dirty and uffd-wp first; an exclusive page is mapped
        // writable (even on a read) unless uffd-wp or soft-dirty tracking need
        // the write fault; only then is a write consumed here.
        if swp.contains(SwpBits::SD) {
            bits.insert(PteBits::SD);
        }
        if swp.contains(SwpBits::UW) {
            bits = pte_mkuffd_wp(bits, cfg);
        }
        if exclusive || sole {
            let uffd = v.uffd_wp() && bits.contains(PteBits::UW);
            let sd_wp = v.soft_dirty_enabled() && !bits.contains(PteBits::SD);
            if v.flags.contains(VmFlags::WRITE) && !uffd && !sd_wp {
                bits.insert(PteBits::W);
                if write {
                    bits = pte_mkdirty(bits);
                    write_left = false;
                }
            }
            rmap_exclusive = true;
        }
    } else {
        if exclusive || sole {
            if write {
                bits = maybe_mkwrite(pte_mkdirty(bits), &v);
                write_left = false;
            }
            rmap_exclusive = true;
        }
        if swp.contains(SwpBits::SD) {
            bits.insert(PteBits::SD);
        }
        if swp.contains(SwpBits::UW) {
            bits.insert(PteBits::UW);
            bits.remove(PteBits::W);
        }
    }
    page_add_rmap(s, f, rmap_exclusive);
    set_pte(s, p, addr, Entry::Present { bits, folio: f }, Why::DoSwapPage);
    if k.swapin_frees_swap_cache_after_mapping() {
        // v7.x should_try_to_free_swap() after mapping: always for a
        // SWP_SYNCHRONOUS_IO device (it succeeds once no swap PTE is left).
        folio_free_swap(s, f);
    }
    if s.slots[slot as usize].count == 0 && !s.folio(f).flags.contains(FolioFlags::SWAPCACHE) {
        s.slots[slot as usize] = Slot::default();
    }
    if write_left {
        return do_wp_page(s, cfg.kernel, p, vi, addr, bits, f);
    }
    Fault::Retry
}

/// `do_numa_page()` (mm/memory.c), no-migration path (`numa_rebuild_single_mapping`
/// in v6.12): `pte_modify(pte, vm_page_prot)`, young. v6.1: writable again if it
/// was (savedwrite) — the uffd-wp bit is not consulted (B1 changelog case (b)).
/// v6.12: writable if the prot is, or if `vma_wants_manual_pte_write_upgrade` and
/// `can_change_pte_writable` allow.
fn do_numa_page(s: &mut State, cfg: &Config, p: usize, v: &Vma, addr: u8, bits: PteBits, f: FolioId) {
    let mut n = pte_modify(bits, v.prot) | PteBits::A;
    let writable = if cfg.numa_savedwrite() {
        bits.contains(PteBits::W)
    } else {
        n.contains(PteBits::W)
            || vma_wants_manual_pte_write_upgrade(s, cfg, v) && can_change_pte_writable(s, cfg.kernel, v, n, f)
    };
    if writable {
        n |= PteBits::W;
    }
    set_pte(s, p, addr, Entry::Present { bits: n, folio: f }, Why::DoNumaPage);
}
