//! Guard regions (mm/madvise.c, v6.13; file mappings from v6.15): the
//! MADV_GUARD_INSTALL and MADV_GUARD_REMOVE advice. Read in Debian's 6.18.15
//! and 7.3.4 trees; older profiles refuse the advice ([`super::Kernel::guard_regions`]).

use super::events::Event;
use super::pte::{set_pte, zap_pte_range, ZapDetails};
use super::types::*;
use super::vma::{Errno, KResult};
use super::Config;

/// How many times `madvise_guard_install()` walks and zaps before it gives up
/// and restarts the system call (MAX_MADVISE_GUARD_RETRIES).
const MAX_MADVISE_GUARD_RETRIES: usize = 3;

/// `is_valid_guard_vma()`: no VM_SPECIAL or hugetlb VMA (neither is modelled),
/// and for an install no VM_LOCKED one (a locked range is never zapped).
fn is_valid_guard_vma(v: &Vma, allow_locked: bool) -> bool {
    allow_locked || !v.flags.contains(VmFlags::LOCKED)
}

/// `madvise_guard_install()` on the part `[a, e)` of one VMA (index `vi`).
///
/// 7.3.4 sets VM_MAYBE_GUARD on the whole VMA (no split; sticky over merges)
/// and prepares an anon_vma for an anonymous VMA; 6.18.15 prepares one for
/// every VMA ([`super::Kernel::guard_sets_maybe_guard`]). Then up to three rounds of
/// a page walk that writes a guard marker into every none PTE and stops at the
/// first entry that is neither none nor a guard (or a huge PMD), followed by a
/// zap of the whole range without `zap_details` (which keeps guard markers,
/// and in a file VMA keeps uffd-wp markers and leaves new ones where a
/// uffd-wp protected page was: `zap_install_uffd_wp_if_needed()`). A range
/// still not all guards after the third round returns -ERESTARTNOINTR: the
/// call is restarted, finds the same uffd-wp markers, and never returns
/// ([`Errno::Restart`]; the state is what one call leaves, the rounds after
/// it change nothing).
pub fn madvise_guard_install(s: &mut State, cfg: &Config, p: usize, vi: usize, a: u8, e: u8) -> KResult<()> {
    let v = s.procs[p].vmas[vi];
    if !is_valid_guard_vma(&v, false) {
        return Err(Errno::Einval);
    }
    if cfg.kernel.guard_sets_maybe_guard() {
        s.procs[p].vmas[vi].flags.insert(VmFlags::MAYBE_GUARD);
        if v.is_anonymous() {
            super::fault::anon_vma_prepare(s, cfg.kernel, p, vi);
        }
    } else {
        super::fault::anon_vma_prepare(s, cfg.kernel, p, vi);
    }
    let v = s.procs[p].vmas[vi];
    let mut zapped = false;
    for _ in 0..MAX_MADVISE_GUARD_RETRIES {
        if guard_install_walk(s, cfg, p, a, e) {
            if zapped {
                let (shared, anon) = (v.flags.contains(VmFlags::SHARED), v.is_anonymous());
                s.emit(Event::Zapped { p: p as u8, start: a, end: e, shared, anon });
            }
            s.emit(Event::GuardInstalled { p: p as u8, start: a, end: e });
            return Ok(());
        }
        zap_pte_range(s, cfg, p, &v, a, e, ZapDetails { drop_marker: false });
        zapped = true;
    }
    let (shared, anon) = (v.flags.contains(VmFlags::SHARED), v.is_anonymous());
    s.emit(Event::Zapped { p: p as u8, start: a, end: e, shared, anon });
    s.emit(Event::GuardRestarts { p: p as u8, start: a, end: e });
    Err(Errno::Restart)
}

/// One `walk_page_range()` of the install with `guard_install_pte_entry()` /
/// `guard_install_set_pte()`: in address order, a none PTE becomes a guard, a
/// guard stays; anything else (or a huge PMD) stops the walk. Whether every
/// page of `[a, e)` is a guard now. With [`Config::guard_install_over_uffd_wp`]
/// (the candidate fix, patches/guard-install-uffd-wp-marker) a uffd-wp marker is
/// replaced too: a guard is never accessed, so nothing it protected is missed
/// while it stands; with [`Config::guard_keeps_uffd_wp`] as well the guard keeps
/// the protection for after its removal.
fn guard_install_walk(s: &mut State, cfg: &Config, p: usize, a: u8, e: u8) -> bool {
    for addr in a..e {
        if s.procs[p].is_huge(addr) {
            return false;
        }
        match s.procs[p].pt[addr as usize] {
            Entry::None => set_pte(s, p, addr, Entry::Guard { bits: SwpBits::empty() }, Why::GuardInstall),
            Entry::Guard { .. } => {}
            Entry::Marker if cfg.guard_install_over_uffd_wp() => {
                let bits = if cfg.guard_keeps_uffd_wp() { SwpBits::UW } else { SwpBits::empty() };
                set_pte(s, p, addr, Entry::Guard { bits }, Why::GuardInstall)
            }
            _ => return false,
        }
    }
    true
}

/// `madvise_guard_remove()` on the part `[a, e)` of one VMA: every guard marker
/// is cleared (`guard_remove_pte_entry()`); huge PMDs hold none. Allowed in a
/// locked VMA. With [`Config::guard_keeps_uffd_wp`] (the candidate fix) a
/// protected guard leaves a uffd-wp marker where the VMA uses them.
pub fn madvise_guard_remove(s: &mut State, cfg: &Config, p: usize, vi: usize, a: u8, e: u8) -> KResult<()> {
    let v = s.procs[p].vmas[vi];
    if !is_valid_guard_vma(&v, true) {
        return Err(Errno::Einval);
    }
    let markers = super::userfaultfd::userfaultfd_wp_use_markers(&s.procs[p], &v);
    for addr in a..e {
        if let Entry::Guard { bits } = s.procs[p].pt[addr as usize] {
            let keep = cfg.guard_keeps_uffd_wp() && markers && bits.contains(SwpBits::UW);
            set_pte(s, p, addr, if keep { Entry::Marker } else { Entry::None }, Why::GuardRemove);
        }
    }
    s.emit(Event::GuardRemoved { p: p as u8, start: a, end: e });
    Ok(())
}
