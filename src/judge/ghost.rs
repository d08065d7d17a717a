//! Ghost state: what user space is owed, kept beside the kernel state (a
//! [`World`](super::world::World) holds both) and never read by kernel code. It
//! follows the kernel through the [`Event`]s a step emits and drives the contract
//! checks ([`super::contracts`]):
//!
//! - **content** (COW): per process and page, what a load must return: a private
//!   copy's content token, or the current content of a file page; every store
//!   writes a fresh token (the kernel's `State::next_token`) into the folio it
//!   maps, and the ghost records it as owed;
//! - **soft-dirty**: per process and page, "changed since the last clear_refs": a
//!   store by this process, or a mapping (re)created there; pagemap bit 55 must be
//!   1 wherever it is set;
//! - **uffd-wp**: per process and page, "write-protected by the user
//!   (UFFDIO_WRITEPROTECT) and not since un-protected"; a store must raise a
//!   message, never complete;
//! - **writenotify**: per file page of a file system with `page_mkwrite`, "clean
//!   since it was read or written back"; a store must go through `page_mkwrite`;
//! - **permission**: a store to a VMA without VM_WRITE must fault (no ghost state).
//!
//! With no contract checked nothing is kept, so the engines pay nothing for it.

use super::contracts::Contract;
use crate::model::events::Event;
use crate::model::ZERO_PAGE;
use crate::model::{
    Backing, Entry, Mm, PteBits, State, SwpBits, Token, UffdCtx, VmFlags, Vma, MAX_FILES, MAX_PROCS, NPAGES,
};

/// What a load at a page must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Expect {
    #[default]
    Unmapped,
    /// Private content (anonymous, or a private file page after its first store):
    /// `token`; `origin` is the file page (`file`, `index`) a private file mapping
    /// refaults after MADV_DONTNEED (`file == NO_ORIGIN`: none, zero-fill);
    /// `maybe_zero` after MADV_FREE (the kernel may discard it until the next store).
    Private { token: Token, file: u8, index: u8, maybe_zero: bool },
    /// The current content of a file page (a shared mapping), or (`!shared`) a
    /// private mapping's page before its first store, which owes no content:
    /// whether it sees later changes of the file is unspecified.
    File { file: u8, index: u8, shared: bool },
}

/// `Expect::Private::file` of a private page without a file behind it.
pub const NO_ORIGIN: u8 = u8::MAX;

/// Where a contract first broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakAt {
    pub contract: Contract,
    pub process: u8,
    pub page: u8,
    /// The step (1-based) of the op during or after which it broke.
    pub step: u16,
}

/// Every contract break so far: per contract, a bit per (process, page).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Breaks {
    pub mask: [u64; 7],
    pub first: Option<BreakAt>,
}

impl Breaks {
    pub fn any(&self) -> bool {
        self.first.is_some()
    }
    /// The contracts broken at least once.
    pub fn contracts(&self) -> Contract {
        let mut c = Contract::empty();
        for k in Contract::ALL {
            if self.mask[k.index()] != 0 {
                c |= k;
            }
        }
        c
    }
    pub fn broken(&self, c: Contract, p: usize, page: usize) -> bool {
        self.mask[c.index()] & (1 << (p * NPAGES + page)) != 0
    }
    /// Breaks here that `other` does not have.
    pub fn minus(&self, other: &Breaks) -> Breaks {
        let mut out = Breaks::default();
        for k in Contract::ALL {
            out.mask[k.index()] = self.mask[k.index()] & !other.mask[k.index()];
        }
        out
    }
    /// Breaks both have (an oracle violation of the contracts).
    pub fn common(&self, other: &Breaks) -> Breaks {
        let mut out = Breaks::default();
        for i in 0..out.mask.len() {
            out.mask[i] = self.mask[i] & other.mask[i];
        }
        out
    }
    pub fn is_empty(&self) -> bool {
        self.mask.iter().all(|m| *m == 0)
    }
    /// The first (contract, process, page) of a mask set, in contract order.
    pub fn some_page(&self) -> Option<(Contract, usize, usize)> {
        for k in Contract::ALL {
            let m = self.mask[k.index()];
            if m != 0 {
                let b = m.trailing_zeros() as usize;
                return Some((k, b / NPAGES, b % NPAGES));
            }
        }
        None
    }
}

/// Per process ghost state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MmGhost {
    pub expect: [Expect; NPAGES],
    /// Changed since the last clear_refs (soft-dirty contract), a bit per page.
    pub changed: u16,
    /// Write-protected by the user and not since un-protected, a bit per page
    /// (a sync context: a store must raise a message).
    pub user_wp: u16,
    /// Stored to in an async uffd-wp VMA since its last write protection, a bit
    /// per page (write watch: PAGEMAP_SCAN must report it WRITTEN).
    pub written: u16,
    /// Guard pages (MADV_GUARD_INSTALL returned 0 over them, no
    /// MADV_GUARD_REMOVE or munmap since), a bit per page: every access owes SIGSEGV.
    pub guard: u16,
}

/// Machine-wide ghost state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ghost {
    /// The contracts checked (empty: none, nothing is kept).
    pub contracts: Contract,
    pub procs: [MmGhost; MAX_PROCS],
    /// What each file page holds, as user space wrote it.
    pub file: [[Token; NPAGES]; MAX_FILES],
    /// Clean for writenotify (files with `page_mkwrite`), a bit per file page.
    pub wn_clean: [u16; MAX_FILES],
    pub breaks: Breaks,
    /// `page_mkwrite` ran during the access being made.
    pub mkwrite_seen: bool,
}

#[inline]
fn bit(a: u8) -> u16 {
    1 << a
}

/// Pages `[start, end)` as a mask.
#[inline]
fn span(start: u8, end: u8) -> u16 {
    (((1u32 << end) - 1) & !((1u32 << start) - 1)) as u16
}

/// The expectation a fresh mapping of `v` gives page `a`.
fn fresh(v: &Vma, a: u8) -> Expect {
    match v.backing {
        Backing::Anon => Expect::Private { token: 0, file: NO_ORIGIN, index: 0, maybe_zero: false },
        Backing::File(f) => {
            Expect::File { file: f, index: v.pgoff_of(a) % NPAGES as u8, shared: v.flags.contains(VmFlags::SHARED) }
        }
    }
}

/// What a user access is checked against: taken before it runs.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    wn_clean: bool,
}

impl Ghost {
    /// A ghost checking `contracts`.
    pub fn new(contracts: Contract) -> Ghost {
        Ghost { contracts, ..Ghost::default() }
    }

    /// Is anything checked?
    #[inline]
    pub fn on(&self) -> bool {
        !self.contracts.is_empty()
    }

    /// Record a break of contract `c` at `(p, page)` during step `step` (if `c` is checked).
    pub fn broke(&mut self, c: Contract, p: usize, page: u8, step: u16) {
        if !self.contracts.contains(c) {
            return;
        }
        let b = &mut self.breaks;
        b.mask[c.index()] |= 1 << (p * NPAGES + page as usize);
        if b.first.is_none() {
            b.first = Some(BreakAt { contract: c, process: p as u8, page, step });
        }
    }

    /// Follow one event of a kernel step (`k`: the state after the step).
    pub fn apply(&mut self, k: &State, e: Event) {
        match e {
            Event::Mapped { p, start, end } => self.mapped(k, p as usize, start, end),
            Event::Layout { p } => self.reconcile(k, p as usize),
            Event::NewObject { file } => {
                self.file[file as usize] = [0; NPAGES];
                self.wn_clean[file as usize] = 0;
            }
            Event::Moved { p, old, new, len } => self.moved(k, p as usize, old, new, len),
            Event::Forked { parent, child, event_fork } => self.forked(k, parent as usize, child as usize, event_fork),
            Event::Zapped { p, start, end, shared, anon } => self.dontneed(p as usize, start, end, shared, anon),
            Event::GuardInstalled { p, start, end } => self.procs[p as usize].guard |= span(start, end),
            Event::GuardRestarts { p, start, end } => {
                // The call never returns: the first page it could not guard
                // (what it did guard is not owed: the caller never learns).
                let a = (start..end).find(|&a| !matches!(k.procs[p as usize].pt[a as usize], Entry::Guard { .. }));
                self.broke(Contract::G, p as usize, a.unwrap_or(start), k.step);
                self.procs[p as usize].guard &= !span(start, end);
            }
            Event::GuardRemoved { p, start, end } => self.procs[p as usize].guard &= !span(start, end),
            Event::LazyFreed { p, start, end } => {
                let g = &mut self.procs[p as usize];
                for a in start..end {
                    if let Expect::Private { maybe_zero, .. } = &mut g.expect[a as usize] {
                        *maybe_zero = true;
                    }
                }
            }
            Event::Discarded { p, addr } => {
                // Zero now (absent, as after MADV_DONTNEED), no longer changed nor protected.
                let g = &mut self.procs[p as usize];
                g.user_wp &= !bit(addr);
                g.changed &= !bit(addr);
            }
            Event::ClearedRefs { p } => self.procs[p as usize].changed = 0,
            Event::WriteProtected { p, start, end, on } => self.write_protect(k, p as usize, start, end, on),
            Event::Scanned { p, looked, reported, protected } => {
                let mut missed = self.procs[p as usize].written & looked & !reported;
                while missed != 0 {
                    let a = missed.trailing_zeros() as u8;
                    missed &= missed - 1;
                    self.broke(Contract::W, p as usize, a, k.step);
                }
                self.procs[p as usize].written &= !protected;
            }
            Event::PageMkwrite { file, index } => {
                self.wn_clean[file as usize] &= !bit(index % NPAGES as u8);
                self.mkwrite_seen = true;
            }
            Event::FileClean { file, index } => self.wn_clean[file as usize] |= bit(index % NPAGES as u8),
        }
    }

    /// A successful mmap of `[start, end)`: fresh content, changed (a new mapping
    /// is soft-dirty), not write-protected.
    fn mapped(&mut self, k: &State, p: usize, start: u8, end: u8) {
        for a in start..end {
            let Some(v) = k.procs[p].vma(a) else { continue };
            let g = &mut self.procs[p];
            g.expect[a as usize] = fresh(v, a);
            g.changed |= bit(a);
            g.user_wp &= !bit(a);
            g.guard &= !bit(a);
        }
    }

    /// After a change of process `p`'s layout or uffd registration: pages
    /// without a VMA owe nothing, and pages whose VMA is not registered for uffd-wp
    /// any more are not write-protected (unregister, close, mremap and fork without
    /// the uffd events, a new mapping).
    fn reconcile(&mut self, k: &State, p: usize) {
        let mm = &k.procs[p];
        let g = &mut self.procs[p];
        if !mm.alive {
            *g = MmGhost::default();
            return;
        }
        let (mut mapped, mut wp) = (0u16, 0u16);
        for v in &mm.vmas {
            let m = span(v.start, v.end);
            mapped |= m;
            if v.uffd_wp() {
                wp |= m;
            }
        }
        for a in 0..NPAGES {
            if mapped & (1 << a) == 0 {
                g.expect[a] = Expect::Unmapped;
            }
        }
        g.changed &= mapped;
        g.guard &= mapped;
        g.user_wp &= wp;
        g.written &= wp;
    }

    /// `move_vma()` moved `[old, old + len)` to `new`: what user space sees moves with
    /// it, and so does "changed since clear_refs".
    fn moved(&mut self, k: &State, p: usize, old: u8, new: u8, len: u8) {
        // The source pages' content moved away: should their VMA survive (the
        // kernel keeps it when it cannot split it, and carries on), they read as
        // freshly mapped.
        let g = &mut self.procs[p];
        let (e, c, gd) = (g.expect, g.changed, g.guard);
        for o in old..old + len {
            g.expect[o as usize] = k.procs[p].vma(o).map_or(Expect::Unmapped, |v| fresh(v, o));
            g.changed &= !bit(o);
            g.guard &= !bit(o);
        }
        for i in 0..len {
            let (o, n) = (old + i, new + i);
            // Guard markers move with the page tables (move_ptes()).
            g.guard = (g.guard & !bit(n)) | if gd & bit(o) != 0 { bit(n) } else { 0 };
            g.expect[n as usize] = e[o as usize];
            g.changed = (g.changed & !bit(n)) | if c & bit(o) != 0 { bit(n) } else { 0 };
            g.user_wp &= !bit(n);
            g.written &= !bit(n);
        }
    }

    /// `dup_mmap()`: the child sees what the parent sees (a wiped VMA reads zero);
    /// its soft-dirty baseline is the fork; it keeps the parent's write protection
    /// only with UFFD_FEATURE_EVENT_FORK, and only where a PTE carries it: a
    /// VM_WIPEONFORK VMA (private anonymous) starts empty, and an empty anonymous
    /// page is not write-protected (no markers without UFFD_FEATURE_WP_UNPOPULATED).
    /// Guard pages are inherited (the guard-regions selftests and madvise(2)
    /// say so), except in a VM_WIPEONFORK VMA, whose child starts empty.
    fn forked(&mut self, k: &State, parent: usize, child: usize, event_fork: bool) {
        let mut g = self.procs[parent];
        for v in k.procs[child].vmas.iter() {
            if v.flags.contains(VmFlags::WIPEONFORK) {
                for a in v.start..v.end {
                    g.expect[a as usize] = fresh(v, a);
                    g.user_wp &= !bit(a);
                    g.guard &= !bit(a);
                }
            }
        }
        g.changed = 0;
        if !event_fork {
            g.user_wp = 0;
            g.written = 0;
        }
        self.procs[child] = g;
    }

    /// MADV_DONTNEED zapped `[start, end)`: private content reverts to zero or to
    /// the file page behind it, as it was before any store, so it is no longer
    /// "changed" (pagemap reports it absent, which a checkpointer reads as that);
    /// anonymous VMAs lose the write protection (no markers without
    /// UFFD_FEATURE_WP_UNPOPULATED), shmem keeps it. A shared page keeps its
    /// content (and stays changed) in the page cache.
    fn dontneed(&mut self, p: usize, start: u8, end: u8, shared: bool, anon: bool) {
        let g = &mut self.procs[p];
        for a in start..end {
            if let Expect::Private { file, index, .. } = g.expect[a as usize] {
                g.expect[a as usize] = if file == NO_ORIGIN {
                    Expect::Private { token: 0, file, index, maybe_zero: false }
                } else {
                    Expect::File { file, index, shared: false }
                };
            }
            if !shared {
                g.changed &= !bit(a);
            }
            if anon {
                g.user_wp &= !bit(a);
            }
        }
    }

    /// UFFDIO_WRITEPROTECT applied to `[start, end)` (on or off). Write protection
    /// covers what the ioctl can protect: every page of a shmem VMA (a none PTE gets a
    /// marker), but only populated pages of an anonymous one unless the context
    /// has UFFD_FEATURE_WP_UNPOPULATED (without it a none PTE stays unprotected,
    /// as documented). A guard page is not populated: it holds no page, and
    /// after MADV_GUARD_REMOVE it is an empty PTE like any other. A WP_ASYNC
    /// context owes no message: protecting starts a write watch over the range
    /// instead.
    fn write_protect(&mut self, k: &State, p: usize, start: u8, end: u8, on: bool) {
        let mm = &k.procs[p];
        let unpopulated = mm.uffd.contains(UffdCtx::WP_UNPOPULATED);
        let asynchronous = mm.uffd.contains(UffdCtx::WP_ASYNC);
        for a in start..end {
            let populated = !matches!(mm.pt[a as usize], Entry::None | Entry::Guard { .. });
            let anon = mm.vma(a).is_some_and(|v| v.is_anonymous());
            let g = &mut self.procs[p];
            if !on {
                g.user_wp &= !bit(a);
            } else if asynchronous {
                g.written &= !bit(a);
            } else if populated || !anon || unpopulated {
                g.user_wp |= bit(a);
            }
        }
    }

    /// Before a user load or store at `(p, a)`.
    pub fn before_access(&mut self, k: &State, p: usize, a: u8) -> Before {
        self.mkwrite_seen = false;
        let wn_clean = match k.procs[p].vma(a) {
            Some(v) if v.flags.contains(VmFlags::SHARED) => match v.backing {
                Backing::File(f) => {
                    crate::model::prot::has_page_mkwrite(k, v)
                        && self.wn_clean[f as usize] & bit(v.pgoff_of(a) % NPAGES as u8) != 0
                }
                Backing::Anon => false,
            },
            _ => false,
        };
        Before { wn_clean }
    }

    /// Is `got` what process `p` should read at page `a`?
    pub fn load_ok(&self, p: usize, a: u8, got: Token) -> bool {
        match self.procs[p].expect[a as usize] {
            Expect::Unmapped => true,
            Expect::Private { token, maybe_zero, .. } => got == token || maybe_zero && got == 0,
            // A private mapping may see later changes of the file until its page is
            // copied, and the kernel may copy it without a store (a FOLL_WRITE GUP
            // from mlock): POSIX leaves it unspecified, so nothing is owed there.
            Expect::File { shared: false, .. } => true,
            Expect::File { file, index, .. } => got == self.file[file as usize][index as usize],
        }
    }

    /// After a completed user load or store at `(p, a)` (`k`: after it): check the
    /// contracts it can break, and for a store record the token the kernel wrote.
    pub fn after_access(&mut self, k: &State, p: usize, a: u8, write: bool, before: Before) {
        let Some(v) = k.procs[p].vma(a).copied() else { return };
        if self.procs[p].guard & bit(a) != 0 {
            self.broke(Contract::G, p, a, k.step);
        }
        if !write {
            if let Some(got) = loaded(k, p, a) {
                if !self.load_ok(p, a, got) {
                    self.broke(Contract::C, p, a, k.step);
                }
            }
            return;
        }
        if !v.flags.contains(VmFlags::WRITE) || v.pkey_exec_only() {
            self.broke(Contract::P, p, a, k.step);
        }
        if self.procs[p].user_wp & bit(a) != 0 {
            self.broke(Contract::U, p, a, k.step);
        }
        if before.wn_clean && !self.mkwrite_seen {
            self.broke(Contract::N, p, a, k.step);
        }
        // The store itself: the fresh token the kernel wrote is what user space is owed.
        let t = k.next_token;
        let watched = v.uffd_wp() && k.procs[p].uffd.contains(UffdCtx::WP_ASYNC);
        let g = &mut self.procs[p];
        g.changed |= bit(a);
        if watched {
            g.written |= bit(a);
        }
        match g.expect[a as usize] {
            Expect::Unmapped => {}
            Expect::Private { file, index, .. } => {
                g.expect[a as usize] = Expect::Private { token: t, file, index, maybe_zero: false }
            }
            Expect::File { file, index, shared: false } => {
                g.expect[a as usize] = Expect::Private { token: t, file, index, maybe_zero: false }
            }
            Expect::File { file, index, shared: true } => {
                self.file[file as usize][index as usize] = t;
                self.wn_clean[file as usize] &= !bit(index);
            }
        }
    }

    /// After every op: pagemap must report every changed page soft-dirty. Only the
    /// changed pages not yet reported are looked at.
    pub fn check_pagemap(&mut self, k: &State) {
        for p in 0..MAX_PROCS {
            let mm = &k.procs[p];
            if !mm.alive {
                continue;
            }
            let broken = (self.breaks.mask[Contract::S.index()] >> (p * NPAGES)) as u16;
            let mut todo = self.procs[p].changed & !broken;
            if todo == 0 {
                continue;
            }
            // VM_SOFTDIRTY covers whole VMAs: most changed pages are new mappings.
            for v in &mm.vmas {
                if v.flags.contains(VmFlags::SOFTDIRTY) {
                    todo &= !span(v.start, v.end);
                }
            }
            while todo != 0 {
                let a = todo.trailing_zeros() as u8;
                todo &= todo - 1;
                if !page_softdirty(mm, a) {
                    self.broke(Contract::S, p, a, k.step);
                }
            }
        }
    }
}

/// The content token a load at `(p, a)` returns now (the PTE must be present).
pub fn loaded(s: &State, p: usize, a: u8) -> Option<Token> {
    match s.procs[p].pt[a as usize] {
        Entry::Present { folio, .. } if folio == ZERO_PAGE => Some(0),
        Entry::Present { folio, .. } => Some(s.folio(folio).data),
        _ => None,
    }
}

/// Pagemap's soft-dirty bits of process `p` (bit 55 of `/proc/PID/pagemap`):
/// `pte_to_pagemap_entry()` / `pagemap_pte_hole()` (fs/proc/task_mmu.c) report a
/// page soft-dirty when its VMA has VM_SOFTDIRTY, or its present PTE has SD, or
/// its swap, migration or marker entry has the swap soft-dirty bit.
pub fn pagemap_softdirty(mm: &Mm) -> u16 {
    let mut out = 0u16;
    for v in &mm.vmas {
        if v.flags.contains(VmFlags::SOFTDIRTY) {
            out |= span(v.start, v.end);
        }
    }
    for a in 0..NPAGES as u8 {
        if pte_softdirty(mm.pt[a as usize]) {
            out |= 1 << a;
        }
    }
    out
}

#[inline]
fn pte_softdirty(e: Entry) -> bool {
    match e {
        Entry::Present { bits, .. } => bits.contains(PteBits::SD),
        Entry::Migration { bits, .. } | Entry::Swap { bits, .. } | Entry::Guard { bits } => bits.contains(SwpBits::SD),
        Entry::Marker | Entry::None => false,
    }
}

/// Pagemap's soft-dirty bit of one page (see [`pagemap_softdirty`]).
#[inline]
pub fn page_softdirty(mm: &Mm, a: u8) -> bool {
    pte_softdirty(mm.pt[a as usize]) || mm.vma(a).is_some_and(|v| v.flags.contains(VmFlags::SOFTDIRTY))
}
