//! The write-trap oracle: for a present PTE, the reasons a store to it **must**
//! fault, computed from the model state alone (independently of any restore
//! variant). A writable PTE with a reason is unsafe.

use crate::model::prot::{has_page_mkwrite, mapping_can_writeback};
use crate::model::{Backing, Entry, FolioFlags, PteBits, State, VmFlags, ZERO_PAGE};

/// Why a store must trap, in the letters of the contracts it protects:
/// - **U** userfaultfd-wp: the VMA is registered for WP and the PTE carries the
///   uffd-wp bit (`userfaultfd_pte_wp()`, mm/memory.c do_wp_page);
/// - **S** soft-dirty: tracking is on (VM_SOFTDIRTY clear) and the PTE is not
///   soft-dirty; pagemap reports `pte.SD || VM_SOFTDIRTY`, so a store through a
///   writable PTE (hardware sets D only) would go unrecorded
///   (`vma_soft_dirty_enabled()`, fs/proc/task_mmu.c);
/// - **C** COW: private mapping and the page is not an anon page exclusive to
///   this mapping (shared after fork, a page-cache page, the zero page)
///   (`do_wp_page()` reuse rules, PageAnonExclusive);
/// - **N** write notify: shared mapping of a filesystem that wants the
///   clean→dirty notification (`->page_mkwrite` or dirty accounting,
///   `vma_wants_writenotify()` rules 2 and 7) and the page is clean;
/// - **P** permission: the VMA lacks VM_WRITE (mprotect, mmap).
pub use crate::judge::contracts::Contract as Reasons;

/// Reasons a store to the present PTE at `(p, addr)` must fault (empty for
/// anything that is not a present PTE in a VMA).
pub fn must_trap(s: &State, p: usize, addr: u8) -> Reasons {
    let Entry::Present { bits, folio } = s.procs[p].pt[addr as usize] else {
        return Reasons::empty();
    };
    let Some(v) = s.procs[p].vma(addr) else {
        return Reasons::empty();
    };
    let mut r = Reasons::empty();
    if v.uffd_wp() && bits.contains(PteBits::UW) {
        r |= Reasons::U;
    }
    if v.soft_dirty_enabled() && !bits.contains(PteBits::SD) {
        r |= Reasons::S;
    }
    let shared = v.flags.contains(VmFlags::SHARED);
    if !shared {
        let exclusive = folio != ZERO_PAGE && {
            let fo = s.folio(folio);
            fo.is_anon() && fo.flags.contains(FolioFlags::ANON_EXCLUSIVE)
        };
        if !exclusive {
            r |= Reasons::C;
        }
    } else if let Backing::File(f) = v.backing {
        let notify = has_page_mkwrite(s, v) || mapping_can_writeback(s, f);
        let clean =
            folio != ZERO_PAGE && !s.folio(folio).flags.contains(FolioFlags::DIRTY) && !bits.contains(PteBits::D);
        if notify && clean {
            r |= Reasons::N;
        }
    }
    if !v.flags.contains(VmFlags::WRITE) {
        r |= Reasons::P;
    }
    r
}

/// Reasons that make the PTE at `(p, addr)` unsafe: empty unless it is writable.
#[inline]
pub fn unsafe_reasons(s: &State, p: usize, addr: u8) -> Reasons {
    if s.procs[p].pt[addr as usize].writable() {
        must_trap(s, p, addr)
    } else {
        Reasons::empty()
    }
}

/// The first unsafe PTE of a state, if any.
pub fn first_unsafe(s: &State) -> Option<(usize, u8, Reasons)> {
    for (p, mm) in s.procs.iter().enumerate() {
        if !mm.alive {
            continue;
        }
        for a in 0..mm.pt.len() as u8 {
            let r = unsafe_reasons(s, p, a);
            if !r.is_empty() {
                return Some((p, a, r));
            }
        }
    }
    None
}
