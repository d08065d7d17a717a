//! fork() and exit(): dup_mmap, vma_needs_copy, copy_present_pte,
//! copy_nonpresent_pte, exit_mmap.

use super::events::Event;
use super::prot::userfaultfd_set_vm_flags;
use super::pte::*;
use super::types::*;
use super::Config;

/// `dup_mmap()` (kernel/fork.c): every VMA but VM_DONTCOPY ones is duplicated
/// (`vm_area_dup`: flags incl. VM_SOFTDIRTY and `vm_page_prot` copied), loses
/// VM_LOCKED, goes through `dup_userfaultfd()` (without UFFD_FEATURE_EVENT_FORK it
/// loses its uffd flags; B1 recomputes prot), then `copy_page_range()` unless
/// VM_WIPEONFORK. Returns false if the child slot is taken or the parent is dead.
pub fn dup_mmap(s: &mut State, cfg: &Config, parent: usize, child: usize, event_fork: bool) -> bool {
    if parent == child || !s.procs[parent].alive || s.procs[child].alive {
        return false;
    }
    s.procs[child] = Mm::new(true);
    // dup_userfaultfd(): with EVENT_FORK the child's VMAs get a context of their
    // own with the parent's features.
    if event_fork {
        s.procs[child].uffd = s.procs[parent].uffd;
    }
    for i in 0..s.procs[parent].vmas.len() {
        let src = s.procs[parent].vmas[i];
        if src.flags.contains(VmFlags::DONTCOPY) {
            continue;
        }
        let mut tmp = src;
        if src.flags.contains(VmFlags::WIPEONFORK) {
            tmp.anon_vma = 0;
            tmp.anon_forked = false;
        } else if src.anon_vma != 0 {
            // anon_vma_fork(): the child gets its own anon_vma.
            tmp.anon_vma = s.next_anon_vma;
            tmp.anon_forked = true;
            s.next_anon_vma = s.next_anon_vma.checked_add(1).unwrap_or(1);
        }
        tmp.flags.remove(VmFlags::LOCKED);
        // dup_userfaultfd()
        if tmp.uffd && !event_fork {
            let f = tmp.flags - VmFlags::UFFD_WP;
            super::vma::note_flags(&mut tmp, f, Why::VmAreaDup, s.step);
            userfaultfd_set_vm_flags(s, cfg, &mut tmp, f, Why::VmAreaDup);
            tmp.uffd = false;
        }
        s.procs[child].vmas.push(tmp);
        if !src.flags.contains(VmFlags::WIPEONFORK) && vma_needs_copy(&tmp, &src) {
            for a in src.start..src.end {
                copy_pte(s, cfg, parent, child, &src, &tmp, a);
            }
            copy_huge_pmd(s, parent, child, &src);
        }
    }
    s.emit(Event::Forked { parent: parent as u8, child: child as u8, event_fork });
    s.emit(Event::Layout { p: child as u8 });
    true
}

/// `copy_huge_pmd()` (mm/huge_memory.c) for the PMDs of `src`: the child's PMD
/// maps the same large folio huge. Its entries were copied page by page above
/// with the PTE rules, which are the PMD's for anonymous memory on every
/// profile: a present PMD is shared (no pins are modelled, so never split),
/// write-protected in both, old in the child and without uffd-wp unless the
/// child VMA is uffd-wp; a writable PMD migration entry becomes readable in both.
///
/// The unmodelled pages of a split PMD whose last model page `src` holds are
/// copied with it: the child maps the folio there too.
fn copy_huge_pmd(s: &mut State, parent: usize, child: usize, src: &Vma) {
    let huge = s.procs[parent].huge;
    for g in 0..NPMDS {
        let last = g as u8 * HPAGE_PMD_NR + HPAGE_PMD_NR - 1;
        if src.start <= last && last < src.end {
            s.procs[child].tail[g] = s.procs[parent].tail[g];
        }
    }
    for g in 0..NPMDS as u8 {
        let a = g * HPAGE_PMD_NR;
        if huge & (1 << g) != 0 && src.start <= a && a < src.end && !s.procs[child].pt[a as usize].is_none() {
            s.procs[child].huge |= 1 << g;
            s.procs[child].ptable &= !(1 << g);
        }
    }
}

/// `vma_needs_copy()` (mm/memory.c): copy page tables only when the child VMA is
/// uffd-wp or the source has an anon_vma (PFNMAP/MIXEDMAP not modelled); shared
/// file VMAs are left to fault in afresh. 7.3.4 also copies a VMA carrying
/// VM_MAYBE_GUARD (in VM_COPY_ON_FORK), which only its MADV_GUARD_INSTALL sets.
pub fn vma_needs_copy(dst: &Vma, src: &Vma) -> bool {
    dst.uffd_wp() || src.anon_vma != 0 || dst.flags.contains(VmFlags::MAYBE_GUARD)
}

fn copy_pte(s: &mut State, cfg: &Config, parent: usize, child: usize, src: &Vma, dst: &Vma, a: u8) {
    match s.procs[parent].pt[a as usize] {
        Entry::None => {}
        Entry::Present { bits, folio } => copy_present_pte(s, parent, child, src, dst, a, bits, folio),
        e => copy_nonpresent_pte(s, cfg, parent, child, src, dst, a, e),
    }
}

/// `copy_present_pte()` (mm/memory.c, v6.1): share the page (`page_try_dup_anon_rmap`
/// clears PageAnonExclusive; no pins, so never copies), write-protect COW
/// mappings in parent and child; the child PTE is old, clean if shared, and loses
/// UW unless the child VMA is uffd-wp.
#[allow(clippy::too_many_arguments)]
fn copy_present_pte(
    s: &mut State,
    parent: usize,
    child: usize,
    src: &Vma,
    dst: &Vma,
    a: u8,
    bits: PteBits,
    folio: FolioId,
) {
    if folio != ZERO_PAGE {
        let fo = s.folio_mut(folio);
        if fo.is_anon() {
            fo.flags.remove(FolioFlags::ANON_EXCLUSIVE);
        }
        fo.mapcount += 1;
    }
    let mut c = bits;
    if src.is_cow() && bits.contains(PteBits::W) {
        set_pte(s, parent, a, Entry::Present { bits: bits - PteBits::W, folio }, Why::CopyPresentPte);
        c.remove(PteBits::W);
    }
    if src.flags.contains(VmFlags::SHARED) {
        c.remove(PteBits::D);
    }
    c.remove(PteBits::A);
    if !dst.uffd_wp() {
        c.remove(PteBits::UW);
    }
    s.procs[child].why[a as usize] = s.procs[parent].why[a as usize];
    set_pte(s, child, a, Entry::Present { bits: c, folio }, Why::CopyPresentPte);
}

/// `copy_nonpresent_pte()` (mm/memory.c, v6.1): a swap entry gains a reference and
/// stops being exclusive (in the parent too); a MIG_W/MIG_RX entry of a COW
/// mapping becomes MIG_R in the parent and the child; a uffd-wp marker is copied
/// (v6.1, with a WARN if the child is not uffd-wp; B3: only if it is); the child
/// loses swpUW unless its VMA is uffd-wp.
#[allow(clippy::too_many_arguments)]
fn copy_nonpresent_pte(
    s: &mut State,
    cfg: &Config,
    parent: usize,
    child: usize,
    src: &Vma,
    dst: &Vma,
    a: u8,
    e: Entry,
) {
    let e = match e {
        Entry::Swap { bits, slot } => {
            s.slots[slot as usize].count += 1;
            let n = Entry::Swap { bits: bits - SwpBits::EXCL, slot };
            set_pte(s, parent, a, n, Why::CopyNonpresentPte);
            n
        }
        Entry::Migration { kind, bits, folio } => {
            if kind != MigKind::Read && src.is_cow() {
                let n = Entry::Migration { kind: MigKind::Read, bits, folio };
                set_pte(s, parent, a, n, Why::CopyNonpresentPte);
                n
            } else {
                e
            }
        }
        Entry::Marker => {
            if !dst.uffd_wp() {
                if cfg.b3_fork_marker() {
                    return;
                }
                s.warned = true;
            }
            set_pte(s, child, a, Entry::Marker, Why::CopyNonpresentPte);
            return;
        }
        // copy_pte_marker() (v6.13): a guard is always copied, as a fresh marker
        // (no swap soft-dirty or uffd-wp bit). With the candidate fix of
        // hole.uffd-wp-skips-guard the marker's uffd-wp bit goes along into a
        // uffd-wp child VMA, as copy_pte_marker() does for a uffd-wp marker.
        Entry::Guard { bits } => {
            let keep = cfg.guard_keeps_uffd_wp() && dst.uffd_wp();
            let bits = if keep { bits & SwpBits::UW } else { SwpBits::empty() };
            set_pte(s, child, a, Entry::Guard { bits }, Why::CopyNonpresentPte);
            return;
        }
        _ => return,
    };
    let e = match e {
        Entry::Swap { bits, slot } if !dst.uffd_wp() => Entry::Swap { bits: bits - SwpBits::UW, slot },
        Entry::Migration { kind, bits, folio } if !dst.uffd_wp() => {
            Entry::Migration { kind, bits: bits - SwpBits::UW, folio }
        }
        e => e,
    };
    s.procs[child].pt[a as usize] = s.procs[parent].pt[a as usize];
    s.procs[child].why[a as usize] = s.procs[parent].why[a as usize];
    set_pte(s, child, a, e, Why::CopyNonpresentPte);
}

/// `exit_mmap()` (mm/mmap.c): zap everything (dropping markers) and free the mm.
pub fn exit_mmap(s: &mut State, cfg: &Config, p: usize) {
    if !s.procs[p].alive {
        return;
    }
    let vmas = s.procs[p].vmas;
    for v in vmas.iter() {
        zap_pte_range(s, cfg, p, v, v.start, v.end, ZapDetails { drop_marker: true });
    }
    // Unmodelled pages the VMAs above did not reach (moved off their PMD's
    // last page by an mremap no reproducer can run).
    super::huge_memory::zap_tails(s, p, 0, NPAGES as u8);
    s.procs[p] = Mm::new(false);
    s.emit(Event::Layout { p: p as u8 });
}
