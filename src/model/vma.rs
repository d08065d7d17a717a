//! VMA operations: mmap_region, vma_merge/split, mprotect_fixup, madvise_update_vma,
//! mlock_fixup, userfaultfd (un)register/release, munmap, mremap.

use super::events::Event;
use super::prot::*;
use super::pte::{change_protection, zap_pte_range, CpFlags, ZapDetails};
use super::types::*;
use super::{Config, Kernel};
use crate::op::Advice;

/// Errors a syscall returns in the model (the op then changes nothing further).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    Enomem,
    Einval,
    Eperm,
    Efault,
    /// -ERESTARTNOINTR: the call restarts (MADV_GUARD_INSTALL over uffd-wp
    /// markers it cannot zap: for ever).
    Restart,
}

impl Errno {
    /// The negative errno a C program sees.
    pub fn c_errno(self) -> i32 {
        match self {
            Errno::Enomem => -12,
            Errno::Einval => -22,
            Errno::Eperm => -1,
            Errno::Efault => -14,
            Errno::Restart => -513,
        }
    }
}

pub type KResult<T> = Result<T, Errno>;

/// Insert a VMA keeping the list sorted by start.
fn insert_vma(mm: &mut Mm, v: Vma) -> KResult<usize> {
    if mm.vmas.len() == mm.vmas.capacity() {
        return Err(Errno::Enomem);
    }
    let pos = mm.vmas.iter().position(|x| x.start > v.start).unwrap_or(mm.vmas.len());
    mm.vmas.insert(pos, v);
    Ok(pos)
}

/// `split_vma()` (mm/mmap.c): split the VMA containing `addr` at `addr`; both halves
/// keep flags, `vm_page_prot`, uffd ctx and anon_vma (vm_area_dup + anon_vma_clone).
pub fn split_vma(mm: &mut Mm, addr: u8) -> KResult<()> {
    let Some(i) = mm.vma_index(addr) else {
        return Ok(());
    };
    let v = mm.vmas[i];
    if v.start == addr {
        return Ok(());
    }
    if mm.vmas.len() == mm.vmas.capacity() {
        return Err(Errno::Enomem);
    }
    let mut hi = v;
    hi.start = addr;
    hi.pgoff = v.pgoff_of(addr);
    hi.anon_pgoff = v.anon_pgoff_of(addr);
    mm.vmas[i].end = addr;
    mm.vmas.insert(i + 1, hi);
    Ok(())
}

/// What a merge attempt knows about the range being merged (`struct
/// vma_merge_struct`): its requested flags, file, uffd ctx, anon_vma (and whether
/// the VMA it comes from is a fork child), and its offsets at its start.
#[derive(Clone, Copy, Debug)]
struct MergeRange {
    flags: VmFlags,
    backing: Backing,
    uffd: bool,
    anon_vma: u8,
    /// `vma_is_fork_child()` of the middle VMA (or of `copy_vma()`'s source).
    forked: bool,
    pgoff: u8,
    anon_pgoff: u8,
    len: u8,
}

impl MergeRange {
    /// The sub-range `[start, end)` of `v`, as if it had `flags`/`uffd`.
    fn of(v: &Vma, start: u8, end: u8, flags: VmFlags, uffd: bool) -> MergeRange {
        MergeRange {
            flags,
            backing: v.backing,
            uffd,
            anon_vma: v.anon_vma,
            forked: v.anon_forked,
            pgoff: v.pgoff_of(start),
            anon_pgoff: v.anon_pgoff_of(start),
            len: end - start,
        }
    }
    /// `needs_adjacent_anon_pgoff()` (v7.x): a MAP_PRIVATE file mapping.
    fn cow_file(&self) -> bool {
        matches!(self.backing, Backing::File(_))
            && !self.flags.contains(VmFlags::SHARED)
            && self.flags.contains(VmFlags::MAYWRITE)
    }
}

/// `is_mergeable_anon_vma()` (mm/mmap.c; mm/vma.c from v6.12): may `tgt` absorb a
/// range with this anon_vma? v6.1-v6.12: when either side has none, only if the
/// target's anon_vma_chain is a single link (its own anon_vma, not a fork child's;
/// a target without one has an empty chain, so that falls through); otherwise the
/// two must be the same. v6.18 adds case 1: a range with an anon_vma may merge
/// into a target without one (`dup_anon_vma()`) unless the range's VMA is a fork
/// child.
fn is_mergeable_anon_vma(k: Kernel, tgt: &Vma, r: &MergeRange) -> bool {
    if k.anon_vma_merges_into_unfaulted() && tgt.anon_vma == 0 && r.anon_vma != 0 {
        return !r.forked;
    }
    // (`tgt.anon_vma == 0` makes the chain empty, not singular.)
    if r.anon_vma == 0 && tgt.anon_vma != 0 && !tgt.anon_forked {
        return true;
    }
    r.anon_vma == tgt.anon_vma
}

/// `are_anon_vmas_compatible(prev, next)`: a three-way merge needs prev's and
/// next's anon_vmas to be the same, or one of them absent.
fn are_anon_vmas_compatible(prev: &Vma, next: &Vma) -> bool {
    prev.anon_vma == 0 || next.anon_vma == 0 || prev.anon_vma == next.anon_vma
}

/// A merge survivor without an anon_vma takes the other's (`dup_anon_vma()`).
fn adopt_anon_vma(dst: &mut Vma, src: &Vma) {
    if dst.anon_vma == 0 {
        dst.anon_vma = src.anon_vma;
        dst.anon_forked = src.anon_forked;
    }
}

/// `is_mergeable_vma()` + `is_mergeable_anon_vma()`: flags equal ignoring
/// VM_SOFTDIRTY, same file, same uffd ctx, compatible anon_vma.
fn is_mergeable(k: Kernel, v: &Vma, r: &MergeRange) -> bool {
    (v.flags ^ r.flags).difference(VmFlags::SOFTDIRTY).is_empty()
        && v.backing == r.backing
        && v.uffd == r.uffd
        && is_mergeable_anon_vma(k, v, r)
}

/// `can_vma_merge_after()`: `prev` can grow up over the range: mergeable, file
/// offsets contiguous, and on v7.x for MAP_PRIVATE files the anonymous offsets too.
fn can_vma_merge_after(k: Kernel, prev: &Vma, r: &MergeRange) -> bool {
    let len = prev.end - prev.start;
    is_mergeable(k, prev, r)
        && prev.pgoff.wrapping_add(len) == r.pgoff
        && (!k.cow_file_merge_needs_anon_pgoff() || !r.cow_file() || prev.anon_pgoff.wrapping_add(len) == r.anon_pgoff)
}

/// `can_vma_merge_before()`: `next` can grow down over the range.
fn can_vma_merge_before(k: Kernel, next: &Vma, r: &MergeRange) -> bool {
    is_mergeable(k, next, r)
        && r.pgoff.wrapping_add(r.len) == next.pgoff
        && (!k.cow_file_merge_needs_anon_pgoff()
            || !r.cow_file()
            || r.anon_pgoff.wrapping_add(r.len) == next.anon_pgoff)
}

/// `vma_merge()` (mm/mmap.c, v6.1) / `vma_merge_existing_range()` (mm/vma.c, v6.12+)
/// for `[start, end)` inside VMA `i`, as if it had `flags`/`uffd`: grow `prev` and/or
/// `next` over it. The survivor keeps its own `vm_flags` and `vm_page_prot` (the
/// caller assigns flags afterwards), except that on v7.x VM_SOFTDIRTY is sticky:
/// the survivor gets the OR of the range's, prev's and next's bits. Returns the
/// survivor's index.
#[allow(clippy::too_many_arguments)]
pub fn vma_merge(
    mm: &mut Mm,
    k: Kernel,
    sticky_sd: bool,
    i: usize,
    start: u8,
    end: u8,
    flags: VmFlags,
    uffd: bool,
) -> Option<usize> {
    let v = mm.vmas[i];
    let r = MergeRange::of(&v, start, end, flags, uffd);
    let prev_ok =
        start == v.start && i > 0 && mm.vmas[i - 1].end == start && can_vma_merge_after(k, &mm.vmas[i - 1], &r);
    let next_ok = end == v.end
        && i + 1 < mm.vmas.len()
        && mm.vmas[i + 1].start == end
        && can_vma_merge_before(k, &mm.vmas[i + 1], &r);
    let sticky = |survivor: &mut Vma, others: VmFlags| {
        if sticky_sd && (others | flags).contains(VmFlags::SOFTDIRTY) {
            survivor.flags.insert(VmFlags::SOFTDIRTY);
        }
    };
    if prev_ok {
        let both = next_ok && are_anon_vmas_compatible(&mm.vmas[i - 1], &mm.vmas[i + 1]);
        let mut new_end = end;
        let mut removed = VmFlags::empty();
        if both {
            new_end = mm.vmas[i + 1].end;
            let next = mm.vmas.remove(i + 1);
            removed = next.flags;
            adopt_anon_vma(&mut mm.vmas[i - 1], &next);
        }
        // Cases 1, 2, 5, 6, 7: prev grows over [start, end) (and next).
        if end == v.end {
            mm.vmas.remove(i);
        } else {
            mm.vmas[i].start = end;
            mm.vmas[i].pgoff = v.pgoff_of(end);
            mm.vmas[i].anon_pgoff = v.anon_pgoff_of(end);
        }
        let p = &mut mm.vmas[i - 1];
        p.end = new_end;
        adopt_anon_vma(p, &v);
        sticky(p, removed);
        return Some(i - 1);
    }
    if next_ok {
        // Cases 3, 4, 8: next grows down over [start, end).
        let n = &mut mm.vmas[i + 1];
        n.start = start;
        n.pgoff = r.pgoff;
        n.anon_pgoff = n.anon_pgoff.wrapping_sub(r.len);
        adopt_anon_vma(n, &v);
        sticky(n, VmFlags::empty());
        if start == v.start {
            mm.vmas.remove(i);
            return Some(i);
        }
        mm.vmas[i].end = start;
        return Some(i + 1);
    }
    None
}

/// The common shape of mprotect_fixup / madvise_update_vma / mlock_fixup /
/// userfaultfd_register (`vma_modify_flags()`): `vma_merge()` the sub-range
/// `[start, end)` of VMA `i`, otherwise `split_vma()` at its edges. Returns the
/// index of the VMA now covering the range (a survivor may cover more).
fn merge_or_split(
    mm: &mut Mm,
    cfg: &Config,
    i: usize,
    start: u8,
    end: u8,
    flags: VmFlags,
    uffd: bool,
) -> KResult<usize> {
    if let Some(j) = vma_merge(mm, cfg.kernel, cfg.sticky_softdirty_merges(), i, start, end, flags, uffd) {
        return Ok(j);
    }
    split_vma(mm, start)?;
    split_vma(mm, end)?;
    Ok(mm.vma_index(start).expect("range still mapped"))
}

/// The flags a caller of `vma_modify_flags()` stores: its `newflags`, with (v7.x)
/// the sticky VM_SOFTDIRTY the merge left on the survivor.
fn merged_flags(cfg: &Config, survivor: &Vma, newflags: VmFlags) -> VmFlags {
    if cfg.sticky_softdirty_merges() {
        newflags | (survivor.flags & VmFlags::SOFTDIRTY)
    } else {
        newflags
    }
}

/// Assign `flags` to a VMA, recording who changed VM_SOFTDIRTY.
fn set_flags(v: &mut Vma, flags: VmFlags, why: Why, step: u16) {
    note_flags(v, flags, why, step);
    v.flags = flags;
}

/// Record provenance of VM_SOFTDIRTY / VM_UFFD_WP changes about to happen.
pub(crate) fn note_flags(v: &mut Vma, flags: VmFlags, why: Why, step: u16) {
    let prov = Prov { why, step };
    if (v.flags ^ flags).contains(VmFlags::SOFTDIRTY) {
        v.softdirty_by = prov;
    }
    if (v.flags ^ flags).contains(VmFlags::UFFD_WP) {
        v.uffd_by = prov;
    }
}

/// Walk the VMAs overlapping `[start, end)`, calling `f(state, proc, vma start, piece)`.
/// `stop_at_hole` mirrors callers that fail with ENOMEM at the first gap.
fn for_each_piece(
    s: &mut State,
    p: usize,
    start: u8,
    end: u8,
    stop_at_hole: bool,
    mut f: impl FnMut(&mut State, usize, u8, u8) -> KResult<()>,
) -> KResult<()> {
    let mut addr = start;
    while addr < end {
        let mm = &s.procs[p];
        // The next VMA that reaches past `addr` and starts before `end`.
        let next = mm.vmas.iter().find(|v| v.end > addr && v.start < end).copied();
        let Some(v) = next.filter(|v| !stop_at_hole || v.start <= addr) else {
            // A hole (leading, inner or trailing): mprotect/mlock stop with
            // ENOMEM after the VMAs before it; madvise skips it.
            return if stop_at_hole { Err(Errno::Enomem) } else { Ok(()) };
        };
        let (a, b) = (addr.max(v.start), end.min(v.end));
        f(s, p, a, b)?;
        addr = b;
    }
    Ok(())
}

/// The mmap() backing choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// MAP_PRIVATE|MAP_ANONYMOUS
    Anon,
    /// MAP_SHARED|MAP_ANONYMOUS (shmem_zero_setup: a fresh shmem object)
    SharedAnon,
    /// A file mapping (MAP_SHARED or MAP_PRIVATE).
    File { file: u8, shared: bool },
}

/// Free a shared-anonymous shmem object that no VMA maps any more.
fn reap_shmem_objects(s: &mut State) {
    for f in FILE_SHMEM_ANON0 as usize..MAX_FILES {
        if !s.files[f].in_use {
            continue;
        }
        let used = s.procs.iter().any(|mm| mm.alive && mm.vmas.iter().any(|v| v.backing == Backing::File(f as u8)));
        let pinned = s.files[f].cache.iter().any(|&c| c != NO_FOLIO && s.is_migrating(c));
        if !used && !pinned {
            for c in s.files[f].cache {
                if c != NO_FOLIO {
                    s.folios[c as usize] = Folio::default();
                }
            }
            s.files[f] = File::new(FileKind::Shmem, false);
            s.emit(Event::NewObject { file: f as u8 });
        }
    }
}

/// `mmap_region()` / `__mmap_region()` (mm/mmap.c, v6.1) with MAP_FIXED: unmap the
/// range, try to expand `next`/`prev` (NULL uffd ctx, NULL anon_vma: registered VMAs
/// never expand; shared-anon never expands since its file does not exist yet),
/// else create a VMA; always set VM_SOFTDIRTY and `vma_set_page_prot()` on the result.
#[allow(clippy::too_many_arguments)]
pub fn mmap_region(
    s: &mut State,
    cfg: &Config,
    p: usize,
    addr: u8,
    len: u8,
    prot: VmFlags,
    kind: MapKind,
    pgoff: u8,
) -> KResult<()> {
    let end = addr + len;
    let (backing, shared, pgoff) = match kind {
        MapKind::Anon => (Backing::Anon, false, addr),
        MapKind::SharedAnon => (Backing::Anon, true, 0),
        MapKind::File { file, shared } => (Backing::File(file), shared, pgoff),
    };
    let mut flags = prot | VmFlags::MAYWRITE;
    if shared {
        flags |= VmFlags::SHARED | VmFlags::MAYSHARE;
    } else if prot.contains(VmFlags::WRITE) {
        // accountable_mapping(): private writable memory is charged (VM_ACCOUNT).
        flags |= VmFlags::ACCOUNT;
    }
    do_munmap(s, cfg, p, addr, end)?;
    let k = cfg.kernel;
    let mm = &mut s.procs[p];
    let next = mm.vmas.iter().position(|v| v.start == end);
    let prev = mm.vmas.iter().position(|v| v.end == addr);
    let expandable = kind != MapKind::SharedAnon;
    // The new range: no uffd ctx, no anon_vma, anonymous page offset = address.
    let r = MergeRange { flags, backing, uffd: false, anon_vma: 0, forked: false, pgoff, anon_pgoff: addr, len };
    let (prev_ok, next_ok) = if k.mmap_merges_like_vma_merge_new_range() {
        // vma_merge_new_range(): can_vma_merge_left(), then can_vma_merge_right()
        // which also wants prev and next compatible when both merge.
        let prev_ok = expandable && prev.is_some_and(|q| can_vma_merge_after(k, &mm.vmas[q], &r));
        let next_ok = expandable
            && next.is_some_and(|n| {
                can_vma_merge_before(k, &mm.vmas[n], &r)
                    && (!prev_ok || are_anon_vmas_compatible(&mm.vmas[prev.unwrap()], &mm.vmas[n]))
            });
        (prev_ok, next_ok)
    } else {
        // 6.1.y __mmap_region(): next first; prev is judged against next's anon_vma.
        let next_ok = expandable && next.is_some_and(|n| can_vma_merge_before(k, &mm.vmas[n], &r));
        let next_anon = if next_ok { mm.vmas[next.unwrap()].anon_vma } else { 0 };
        let prev_ok = expandable
            && prev.is_some_and(|q| can_vma_merge_after(k, &mm.vmas[q], &MergeRange { anon_vma: next_anon, ..r }));
        (prev_ok, next_ok)
    };
    let idx = if prev_ok {
        // vma_expand(prev, prev->vm_start, next or end): prev survives.
        let q = prev.unwrap();
        if next_ok {
            let n = next.unwrap();
            mm.vmas[q].end = mm.vmas[n].end;
            let next = mm.vmas.remove(n);
            adopt_anon_vma(&mut mm.vmas[q], &next);
        } else {
            mm.vmas[q].end = end;
        }
        q
    } else if next_ok {
        let n = next.unwrap();
        mm.vmas[n].start = addr;
        mm.vmas[n].pgoff = pgoff;
        mm.vmas[n].anon_pgoff = mm.vmas[n].anon_pgoff.wrapping_sub(len);
        n
    } else {
        let backing = match kind {
            MapKind::SharedAnon => {
                // shmem_zero_setup(): a new shmem object.
                reap_shmem_objects(s);
                let Some(f) = (FILE_SHMEM_ANON0 as usize..MAX_FILES).find(|&f| !s.files[f].in_use) else {
                    return Err(Errno::Enomem);
                };
                s.files[f] = File::new(FileKind::Shmem, true);
                s.emit(Event::NewObject { file: f as u8 });
                Backing::File(f as u8)
            }
            _ => backing,
        };
        let v = Vma {
            start: addr,
            end,
            flags,
            prot: vm_get_page_prot(flags),
            backing,
            pgoff,
            anon_pgoff: addr,
            anon_vma: 0,
            anon_forked: false,
            uffd: false,
            prot_by: Prov { why: Why::MmapRegion, step: s.step },
            softdirty_by: Prov { why: Why::MmapRegion, step: s.step },
            uffd_by: Prov::default(),
        };
        insert_vma(&mut s.procs[p], v)?
    };
    let why = if prev_ok || next_ok { Why::MmapExpand } else { Why::MmapRegion };
    let mut v = s.procs[p].vmas[idx];
    let f = v.flags | VmFlags::SOFTDIRTY;
    set_flags(&mut v, f, why, s.step);
    vma_set_page_prot(s, cfg, &mut v, why);
    s.procs[p].vmas[idx] = v;
    s.emit(Event::Mapped { p: p as u8, start: addr, end });
    s.emit(Event::Layout { p: p as u8 });
    Ok(())
}

/// `do_munmap()` / `unmap_region()` (mm/mmap.c): split at the edges, zap with
/// ZAP_FLAG_DROP_MARKER, remove the VMAs.
pub fn do_munmap(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) -> KResult<()> {
    let mm = &mut s.procs[p];
    if !mm.vmas.iter().any(|v| v.start < end && v.end > start) {
        return Ok(());
    }
    split_vma(mm, start)?;
    split_vma(mm, end)?;
    let details = ZapDetails { drop_marker: true };
    let victims: ArrayVecU8 = s.procs[p]
        .vmas
        .iter()
        .enumerate()
        .filter(|(_, v)| v.start >= start && v.end <= end)
        .map(|(i, _)| i as u8)
        .collect();
    for &i in victims.iter().rev() {
        let v = s.procs[p].vmas[i as usize];
        zap_pte_range(s, cfg, p, &v, v.start, v.end, details);
        s.procs[p].vmas.remove(i as usize);
    }
    super::huge_memory::free_pgtables(&mut s.procs[p]);
    s.emit(Event::Layout { p: p as u8 });
    Ok(())
}

type ArrayVecU8 = arrayvec::ArrayVec<u8, MAX_VMAS>;

/// `mprotect_fixup()` (mm/mprotect.c, v6.1) over `[start, end)`, as driven by
/// do_mprotect_pkey(): new R/W/X, everything else kept; merge or split; assign
/// flags; TRY_CHANGE_WRITABLE from `vma_wants_writenotify(vma, OLD vm_page_prot)`
/// for shared VMAs (VM_WRITE for private ones); `vma_set_page_prot()`;
/// `change_protection()` on `[start, end)` only.
pub fn mprotect(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8, prot: VmFlags) -> KResult<()> {
    if s.procs[p].vma_index(start).is_none() {
        return Err(Errno::Enomem);
    }
    for_each_piece(s, p, start, end, true, |s, p, a, b| {
        let mm = &mut s.procs[p];
        let i = mm.vma_index(a).unwrap();
        let old = mm.vmas[i];
        let rwx = VmFlags::READ | VmFlags::WRITE | VmFlags::EXEC;
        let mut newflags = (old.flags - rwx) | prot;
        // Private memory becoming writable is charged (VM_ACCOUNT). v6.1 never
        // uncharges; v6.12 uncharges an anonymous VMA that has no anon_vma yet
        // when it becomes read-only.
        let charged = VmFlags::ACCOUNT | VmFlags::WRITE | VmFlags::SHARED;
        if prot.contains(VmFlags::WRITE) {
            if !old.flags.intersects(charged) {
                newflags |= VmFlags::ACCOUNT;
            }
        } else if cfg.kernel.uncharge_unfaulted_anon() && old.is_anonymous() && old.anon_vma == 0 {
            newflags.remove(VmFlags::ACCOUNT);
        }
        if prot.contains(VmFlags::WRITE) && !old.flags.contains(VmFlags::MAYWRITE) {
            return Err(Errno::Eperm);
        }
        if newflags == old.flags {
            return Ok(());
        }
        let j = merge_or_split(mm, cfg, i, a, b, newflags, old.uffd)?;
        let mut v = mm.vmas[j];
        let newflags = merged_flags(cfg, &v, newflags);
        set_flags(&mut v, newflags, Why::MprotectFixup, s.step);
        let try_write = if v.flags.contains(VmFlags::SHARED) {
            vma_wants_writenotify(s, cfg, &v, v.prot)
        } else {
            v.flags.contains(VmFlags::WRITE)
        };
        vma_set_page_prot(s, cfg, &mut v, Why::MprotectFixup);
        s.procs[p].vmas[j] = v;
        let cp = if try_write { CpFlags::TRY_CHANGE_WRITABLE } else { CpFlags::empty() };
        change_protection(s, cfg, p, &v, a, b, v.prot, cp, Why::MprotectFixup);
        // A locked private mapping becoming writable is populated with write
        // faults (populate_vma_page_range with FOLL_WRITE breaks COW).
        if (old.flags & (VmFlags::WRITE | VmFlags::SHARED | VmFlags::LOCKED)) == VmFlags::LOCKED
            && newflags.contains(VmFlags::WRITE)
        {
            // (mprotect_fixup() ignores what the populate returns)
            let _ = super::fault::populate_vma_page_range(s, cfg, p, a, b);
        }
        Ok(())
    })
}

/// `madvise_update_vma()` (mm/madvise.c): merge or split and assign the new flags;
/// `vm_page_prot` is **not** recomputed (a merge survivor keeps a stale prot while
/// taking the target's VM_SOFTDIRTY). Holes are skipped (ENOMEM at the end).
pub fn madvise_update_vma(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8, adv: Advice) -> KResult<()> {
    for_each_piece(s, p, start, end, false, |s, p, a, b| {
        let step = s.step;
        let mm = &mut s.procs[p];
        let i = mm.vma_index(a).unwrap();
        let old = mm.vmas[i];
        let newflags = match adv {
            Advice::Random => old.flags | VmFlags::RAND_READ,
            Advice::Normal => old.flags - VmFlags::RAND_READ,
            Advice::DontFork => old.flags | VmFlags::DONTCOPY,
            Advice::DoFork => old.flags - VmFlags::DONTCOPY,
            Advice::WipeOnFork => {
                if !old.is_anonymous() || old.flags.contains(VmFlags::SHARED) {
                    return Err(Errno::Einval);
                }
                old.flags | VmFlags::WIPEONFORK
            }
            Advice::KeepOnFork => old.flags - VmFlags::WIPEONFORK,
            // hugepage_madvise() (mm/khugepaged.c): flags only; existing pages stay.
            Advice::HugePage => (old.flags - VmFlags::NOHUGEPAGE) | VmFlags::HUGEPAGE,
            Advice::NoHugePage => (old.flags - VmFlags::HUGEPAGE) | VmFlags::NOHUGEPAGE,
            // ksm_madvise() (mm/ksm.c): private mappings only; others ignore it.
            Advice::Mergeable if old.flags.intersects(VmFlags::SHARED | VmFlags::MAYSHARE) => old.flags,
            Advice::Mergeable => old.flags | VmFlags::MERGEABLE,
            // (its KSM pages were unmerged first, see model::madvise)
            Advice::Unmergeable => old.flags - VmFlags::MERGEABLE,
            // PTE-walking advice does not come here (see model::madvise).
            Advice::DontNeed | Advice::Free | Advice::Collapse | Advice::GuardInstall | Advice::GuardRemove => {
                return Err(Errno::Einval)
            }
        };
        if newflags == old.flags {
            return Ok(());
        }
        let j = merge_or_split(mm, cfg, i, a, b, newflags, old.uffd)?;
        let newflags = merged_flags(cfg, &mm.vmas[j], newflags);
        set_flags(&mut mm.vmas[j], newflags, Why::MadviseUpdateVma, step);
        Ok(())
    })
}

/// `mlock_fixup()` (mm/mlock.c) via apply_vma_lock_flags(): merge or split, assign
/// VM_LOCKED on or off, no `vm_page_prot` recompute. mlock() then populates the
/// range (`__mm_populate`).
pub fn mlock(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8, lock: bool) -> KResult<()> {
    if s.procs[p].vma_index(start).is_none() {
        return Err(Errno::Enomem);
    }
    let r = for_each_piece(s, p, start, end, true, |s, p, a, b| {
        let step = s.step;
        let mm = &mut s.procs[p];
        let i = mm.vma_index(a).unwrap();
        let old = mm.vmas[i];
        let newflags = if lock { old.flags | VmFlags::LOCKED } else { old.flags - VmFlags::LOCKED };
        if newflags == old.flags {
            return Ok(());
        }
        let j = merge_or_split(mm, cfg, i, a, b, newflags, old.uffd)?;
        let newflags = merged_flags(cfg, &mm.vmas[j], newflags);
        set_flags(&mut mm.vmas[j], newflags, Why::MlockFixup, step);
        Ok(())
    });
    if lock && r.is_ok() {
        // __split_vma() split the PMDs the new boundaries cut (vma_adjust_trans_huge)
        // before the populate faults anything in.
        super::huge_memory::vma_adjust_trans_huge(s, cfg);
        return super::fault::populate_vma_page_range(s, cfg, p, start, end).map_err(|_| Errno::Enomem);
    }
    r
}

/// `vma_can_userfault()` (include/linux/userfaultfd_k.h) for WP with
/// CONFIG_PTE_MARKER_UFFD_WP: anonymous or shmem (ext4/ramfs are not allowed),
/// except that a WP_ASYNC context registering WP alone may take any VMA (v6.7).
fn vma_can_userfault(s: &State, v: &Vma, wp_async: bool) -> bool {
    if wp_async {
        return true;
    }
    match v.backing {
        Backing::Anon => true,
        Backing::File(f) => s.file_kind(f) == FileKind::Shmem,
    }
}

/// `userfaultfd_register()` (fs/userfaultfd.c) in UFFDIO_REGISTER_MODE_WP: every
/// VMA in range must be registrable and VM_MAYWRITE; merge or split with this
/// ctx; `userfaultfd_set_vm_flags()` (B1: prot recomputed when VM_UFFD_WP flips on a
/// shared VMA; v6.1: plain assignment). No PTE is touched. The process's
/// context opens first if it is not open (as the reproducers do it).
pub fn userfaultfd_register(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) -> KResult<()> {
    super::userfaultfd::userfaultfd_open_default(&mut s.procs[p]);
    let wp_async = s.procs[p].uffd.contains(UffdCtx::WP_ASYNC);
    let mut vs = s.procs[p].vmas.iter().filter(|v| v.start < end && v.end > start).peekable();
    if vs.peek().is_none() {
        return Err(Errno::Einval);
    }
    if vs.any(|v| !vma_can_userfault(s, v, wp_async) || !v.flags.contains(VmFlags::MAYWRITE)) {
        return Err(Errno::Einval);
    }
    for_each_piece(s, p, start, end, false, |s, p, a, b| {
        let mm = &mut s.procs[p];
        let i = mm.vma_index(a).unwrap();
        let old = mm.vmas[i];
        if old.uffd && old.uffd_wp() {
            return Ok(());
        }
        let newflags = old.flags | VmFlags::UFFD_WP;
        let j = merge_or_split(mm, cfg, i, a, b, newflags, true)?;
        let mut v = s.procs[p].vmas[j];
        let newflags = uffd_target_flags(cfg, &v, newflags);
        note_flags(&mut v, newflags, Why::UffdRegister, s.step);
        userfaultfd_set_vm_flags(s, cfg, &mut v, newflags, Why::UffdRegister);
        v.uffd = true;
        s.procs[p].vmas[j] = v;
        Ok(())
    })
}

/// The flags a uffd (un)register assigns to the VMA that now covers the range:
/// v6.1 assigns the target's flags (a merge survivor takes the target's
/// VM_SOFTDIRTY); v6.12 (`userfaultfd_set_ctx`/`userfaultfd_reset_ctx`) replaces
/// only the uffd bits of the survivor's own flags. With the sticky VM_SOFTDIRTY
/// patched into an older profile (the counterfactual of the merge hole), the
/// survivor keeps the bit the merge left on it there too.
fn uffd_target_flags(cfg: &Config, survivor: &Vma, target: VmFlags) -> VmFlags {
    if cfg.kernel.uffd_merge_keeps_survivor_flags() {
        (survivor.flags - VmFlags::UFFD_WP) | (target & VmFlags::UFFD_WP)
    } else {
        merged_flags(cfg, survivor, target)
    }
}

/// `userfaultfd_unregister()` (fs/userfaultfd.c): for each registered VMA part,
/// resolve write protection over that part (`uffd_wp_range(..., false)`), then
/// merge or split with a NULL ctx and clear the uffd flags.
pub fn userfaultfd_unregister(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) -> KResult<()> {
    if !s.procs[p].vmas.iter().any(|v| v.start < end && v.end > start) {
        return Err(Errno::Einval);
    }
    let r =
        for_each_piece(s, p, start, end, false, |s, p, a, b| unregister_piece(s, cfg, p, a, b, Why::UffdUnregister));
    s.emit(Event::Layout { p: p as u8 });
    r
}

fn unregister_piece(s: &mut State, cfg: &Config, p: usize, a: u8, b: u8, why: Why) -> KResult<()> {
    let i = s.procs[p].vma_index(a).unwrap();
    let old = s.procs[p].vmas[i];
    if !old.uffd {
        return Ok(());
    }
    if old.uffd_wp() {
        super::pte::uffd_wp_range(s, cfg, p, &old, a, b, false);
    }
    let newflags = old.flags - VmFlags::UFFD_WP;
    let mm = &mut s.procs[p];
    let j = merge_or_split(mm, cfg, i, a, b, newflags, false)?;
    let mut v = s.procs[p].vmas[j];
    let newflags = uffd_target_flags(cfg, &v, newflags);
    note_flags(&mut v, newflags, why, s.step);
    userfaultfd_set_vm_flags(s, cfg, &mut v, newflags, why);
    v.uffd = false;
    s.procs[p].vmas[j] = v;
    Ok(())
}

/// `userfaultfd_release()` (fs/userfaultfd.c): closing the uffd resolves and
/// unregisters every VMA of this context; the process has none after it.
pub fn userfaultfd_release(s: &mut State, cfg: &Config, p: usize) -> KResult<()> {
    let r = for_each_piece(s, p, 0, NPAGES as u8, false, |s, p, a, b| {
        unregister_piece(s, cfg, p, a, b, Why::UffdUnregister)
    });
    s.procs[p].uffd = UffdCtx::empty();
    s.emit(Event::Layout { p: p as u8 });
    r
}

/// `mremap(old, len, len, MREMAP_MAYMOVE|MREMAP_FIXED, new)` (mm/mremap.c).
///
/// Up to v6.12 (`mremap_to()`): a VMA must contain `old` (EFAULT), the ranges must
/// not overlap (EINVAL), then the whole destination is unmapped *before*
/// `vma_to_resize()` checks that the old range lies in one VMA (EFAULT): a failing
/// move still leaves the destination unmapped. Then [`move_vma`].
///
/// From v6.17 (v6.18 profile) a move goes through [`remap_move`].
pub fn mremap(s: &mut State, cfg: &Config, p: usize, old: u8, len: u8, new: u8) -> KResult<()> {
    let end = old + len;
    // The destination must lie inside the address space (TASK_SIZE).
    if super::past_task_size(new, len) {
        return Err(Errno::Einval);
    }
    if cfg.kernel.mremap_moves_vma_by_vma() {
        // check_mremap_params(): overlapping ranges are refused before any lookup.
        if new < end && old < new + len {
            return Err(Errno::Einval);
        }
        return remap_move(s, cfg, p, old, len, new);
    }
    // The syscall: a VMA must contain the old address (vma_lookup)...
    if s.procs[p].vma_index(old).is_none() {
        return Err(Errno::Efault);
    }
    if new < end && old < new + len {
        return Err(Errno::Einval);
    }
    do_munmap(s, cfg, p, new, new + len)?;
    let Some(i) = s.procs[p].vma_index(old) else { return Err(Errno::Efault) };
    if s.procs[p].vmas[i].end < end {
        return Err(Errno::Efault);
    }
    move_vma(s, cfg, p, old, len, new)
}

/// `remap_move()` (mm/mremap.c, v6.17+): move every VMA of `[old, old + len)` in
/// address order, each slice to the same place relative to the previous one (gaps
/// are kept), through `mremap_to()` for that slice alone: its destination slice is
/// unmapped, then [`move_vma`]. A hole at the start fails (EFAULT) before anything
/// happens; later holes are skipped. A VMA that `vma_multi_allowed()` refuses
/// (uffd-armed, or a file whose `get_unmapped_area` may not honour MAP_FIXED:
/// ramfs) fails with EFAULT before anything if it is the first and does not cover
/// the range, and after the earlier slices have moved if it is not the first.
fn remap_move(s: &mut State, cfg: &Config, p: usize, old: u8, len: u8, new: u8) -> KResult<()> {
    let end = old + len;
    let mut cursor = old;
    let mut seen = false;
    let mut last_end = 0;
    let mut target = new;
    // for_each_vma_range(): the next VMA past the previous one's end.
    while let Some(v) = s.procs[p].vmas.iter().find(|v| v.end > cursor && v.start < end).copied() {
        if !seen && old < v.start {
            return Err(Errno::Efault);
        }
        let a = v.start.max(old);
        let l = end.min(v.end) - a;
        let offset = if seen { v.start - last_end } else { 0 };
        last_end = v.end;
        cursor = v.end;
        let ramfs = matches!(v.backing, Backing::File(f) if s.file_kind(f) == FileKind::Ramfs);
        let multi_allowed = !v.uffd && !v.uffd_wp() && !ramfs;
        if !multi_allowed && (seen || v.end < end) {
            return Err(Errno::Efault);
        }
        let d = target + offset;
        // mremap_to() for this slice: unmap its destination, find the VMA again.
        do_munmap(s, cfg, p, d, d + l)?;
        if s.procs[p].vma_index(a).is_none() {
            return Err(Errno::Efault);
        }
        move_vma(s, cfg, p, a, l, d)?;
        seen = true;
        target = d + l;
    }
    if seen {
        Ok(())
    } else {
        Err(Errno::Efault)
    }
}

/// `move_vma()` (mm/mremap.c) of `[old, old + len)`, which lies in one VMA, to
/// `new`: `copy_vma()` (merge: the survivor keeps its own flags and prot, with the
/// sticky VM_SOFTDIRTY on v7.x; otherwise a copy of the source VMA; v7.x never
/// merges a source registered with a uffd lacking EVENT_REMAP), `move_ptes()`,
/// `mremap_userfaultfd_prep()` (no EVENT_REMAP: the new VMA loses its uffd flags),
/// then unmap the old range (a failure to split it is ignored, as the kernel does).
fn move_vma(s: &mut State, cfg: &Config, p: usize, old: u8, len: u8, new: u8) -> KResult<()> {
    let k = cfg.kernel;
    let end = old + len;
    let i = s.procs[p].vma_index(old).expect("caller checked the source VMA");
    let src = s.procs[p].vmas[i];
    // copy_vma(): a VMA never faulted (no anon_vma) takes the new address as its
    // anonymous offset (and an anonymous one as its offset), to merge more easily.
    let pgoff = if src.is_anonymous() && src.anon_vma == 0 { new } else { src.pgoff_of(old) };
    let anon_pgoff = if src.anon_vma == 0 { new } else { src.anon_pgoff_of(old) };
    let mut tmp = src;
    tmp.start = new;
    tmp.end = new + len;
    tmp.pgoff = pgoff;
    tmp.anon_pgoff = anon_pgoff;
    let mm = &mut s.procs[p];
    let ni = insert_vma(mm, tmp)?;
    let merge = !(k.copy_vma_skips_uffd_source() && src.uffd);
    let dst = if merge {
        vma_merge(mm, k, cfg.sticky_softdirty_merges(), ni, new, new + len, src.flags, src.uffd)
    } else {
        None
    }
    .unwrap_or(ni);
    let clear_uffd = cfg.mremap_clears_uffd_wp() && src.uffd;
    super::pte::move_ptes(s, cfg, p, old, new, len, clear_uffd);
    s.emit(Event::Moved { p: p as u8, old, new, len });
    // mremap_userfaultfd_prep(): no UFFD_FEATURE_EVENT_REMAP in the model.
    let mut d = s.procs[p].vmas[dst];
    if d.uffd {
        let f = d.flags - VmFlags::UFFD_WP;
        note_flags(&mut d, f, Why::CopyVma, s.step);
        userfaultfd_set_vm_flags(s, cfg, &mut d, f, Why::CopyVma);
        d.uffd = false;
        s.procs[p].vmas[dst] = d;
    }
    // "OOM: unable to split vma, just get accounts right": a source that cannot
    // be unmapped stays mapped (its pages are gone), and the move succeeds.
    let _ = do_munmap(s, cfg, p, old, end);
    s.emit(Event::Layout { p: p as u8 });
    Ok(())
}
