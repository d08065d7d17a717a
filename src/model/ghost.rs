//! Ghost state: what user space is owed, kept beside the kernel state and never
//! read by kernel code. It drives the contract checks (`crate::judge::contracts`):
//!
//! - **content** (COW): per process and page, what a load must return: a private
//!   copy's content token, or the current content of a file page; every store
//!   writes a fresh token into the folio the kernel maps and into the expectation;
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
//! Everything here is a no-op unless `Config::contracts` is set, so the engines
//! pay nothing for it when contracts are off. The kernel structures carry the data
//! tokens themselves (`Folio::data`, `Slot::data`, `File::stash`): the kernel
//! copies data exactly where the model copies them.

use bitflags::bitflags;

use super::types::*;
use super::Config;

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

bitflags! {
    /// Contracts a user relies on (the letters of the write-trap oracle).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
    pub struct Contract: u8 {
        /// A store to a user write-protected page raises a uffd message.
        const U = 1 << 0;
        /// Pagemap bit 55 is 1 for every page changed since the last clear_refs.
        const S = 1 << 1;
        /// Every load returns what this process should see (COW, no lost data).
        const C = 1 << 2;
        /// A store to a clean page of a `page_mkwrite` file goes through `page_mkwrite`.
        const N = 1 << 3;
        /// A store to a VMA without VM_WRITE faults (SIGSEGV).
        const P = 1 << 4;
    }
}

impl std::fmt::Display for Contract {
    /// Its letters (`U+S`, or `none`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.letters())
    }
}

impl Contract {
    pub const ALL: [Contract; 5] = [Contract::U, Contract::S, Contract::C, Contract::N, Contract::P];

    /// `U+S` style, or `none`.
    pub fn letters(self) -> String {
        if self.is_empty() {
            return "none".into();
        }
        let names = ["U", "S", "C", "N", "P"];
        Contract::ALL
            .iter()
            .zip(names)
            .filter(|(c, _)| self.contains(**c))
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Long names: "uffd-wp, soft-dirty".
    pub fn words(self) -> String {
        let names = ["uffd-wp", "soft-dirty", "COW", "writenotify", "mprotect"];
        Contract::ALL
            .iter()
            .zip(names)
            .filter(|(c, _)| self.contains(**c))
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parse `U+S` (or `none`).
    pub fn parse(s: &str) -> Option<Contract> {
        if s == "none" {
            return Some(Contract::empty());
        }
        let mut c = Contract::empty();
        for l in s.split('+') {
            c |= match l {
                "U" => Contract::U,
                "S" => Contract::S,
                "C" => Contract::C,
                "N" => Contract::N,
                "P" => Contract::P,
                _ => return None,
            };
        }
        Some(c)
    }

    fn index(self) -> usize {
        self.bits().trailing_zeros() as usize
    }
}

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
    pub mask: [u64; 5],
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
    /// Write-protected by the user and not since un-protected, a bit per page.
    pub user_wp: u16,
}

/// Machine-wide ghost state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ghost {
    /// The last content token handed out.
    pub next: Token,
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

/// Record a break of contract `c` at `(p, page)` (if `c` is checked).
pub fn broke(s: &mut State, cfg: &Config, c: Contract, p: usize, page: u8) {
    if !cfg.contracts.contains(c) {
        return;
    }
    let b = &mut s.ghost.breaks;
    b.mask[c.index()] |= 1 << (p * NPAGES + page as usize);
    if b.first.is_none() {
        b.first = Some(BreakAt { contract: c, process: p as u8, page, step: s.step });
    }
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

/// After a successful mmap of `[start, end)`: fresh content, changed (a new
/// mapping is soft-dirty), not write-protected.
pub fn mapped(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) {
    if cfg.contracts.is_empty() {
        return;
    }
    for a in start..end {
        let Some(v) = s.procs[p].vma(a).copied() else { continue };
        let g = &mut s.procs[p].ghost;
        g.expect[a as usize] = fresh(&v, a);
        g.changed |= bit(a);
        g.user_wp &= !bit(a);
    }
}

/// `shmem_zero_setup()` made a new shared-anonymous object: all zero.
pub fn new_object(s: &mut State, f: u8) {
    s.ghost.file[f as usize] = [0; NPAGES];
    s.ghost.wn_clean[f as usize] = 0;
}

/// After an op that changes process `p`'s layout or uffd registration: pages
/// without a VMA owe nothing, and pages whose VMA is not registered for uffd-wp
/// any more are not write-protected (unregister, close, mremap and fork without
/// the uffd events, a new mapping).
pub fn reconcile(s: &mut State, cfg: &Config, p: usize) {
    if cfg.contracts.is_empty() {
        return;
    }
    {
        let mm = &mut s.procs[p];
        if !mm.alive {
            mm.ghost = MmGhost::default();
            return;
        }
        let (mut mapped, mut wp) = (0u16, 0u16);
        for v in &mm.vmas {
            let m = (((1u32 << v.end) - 1) & !((1u32 << v.start) - 1)) as u16;
            mapped |= m;
            if v.uffd_wp() {
                wp |= m;
            }
        }
        for a in 0..NPAGES {
            if mapped & (1 << a) == 0 {
                mm.ghost.expect[a] = Expect::Unmapped;
            }
        }
        mm.ghost.changed &= mapped;
        mm.ghost.user_wp &= wp;
    }
}

/// `move_vma()` moved `[old, old + len)` to `new`: what user space sees moves with
/// it, and so does "changed since clear_refs".
pub fn moved(s: &mut State, cfg: &Config, p: usize, old: u8, new: u8, len: u8) {
    if cfg.contracts.is_empty() {
        return;
    }
    // The source pages' content moved away: should their VMA survive (the
    // kernel keeps it when it cannot split it, and carries on), they read as
    // freshly mapped.
    let fresh_src: Vec<(u8, Option<Expect>)> =
        (old..old + len).map(|o| (o, s.procs[p].vma(o).map(|v| fresh(v, o)))).collect();
    let g = &mut s.procs[p].ghost;
    let (e, c) = (g.expect, g.changed);
    for (o, f) in fresh_src {
        g.expect[o as usize] = f.unwrap_or(Expect::Unmapped);
        g.changed &= !bit(o);
    }
    for i in 0..len {
        let (o, n) = (old + i, new + i);
        g.expect[n as usize] = e[o as usize];
        g.changed = (g.changed & !bit(n)) | if c & bit(o) != 0 { bit(n) } else { 0 };
        g.user_wp &= !bit(n);
    }
}

/// `dup_mmap()`: the child sees what the parent sees (a wiped VMA reads zero); its
/// soft-dirty baseline is the fork; it keeps the parent's write protection only
/// with UFFD_FEATURE_EVENT_FORK, and only where a PTE carries it: a
/// VM_WIPEONFORK VMA (private anonymous) starts empty, and an empty anonymous
/// page is not write-protected (no markers without UFFD_FEATURE_WP_UNPOPULATED).
pub fn forked(s: &mut State, cfg: &Config, parent: usize, child: usize, event_fork: bool) {
    if cfg.contracts.is_empty() {
        return;
    }
    let mut g = s.procs[parent].ghost;
    for v in s.procs[child].vmas.iter() {
        if v.flags.contains(VmFlags::WIPEONFORK) {
            for a in v.start..v.end {
                g.expect[a as usize] = fresh(v, a);
                g.user_wp &= !bit(a);
            }
        }
    }
    g.changed = 0;
    if !event_fork {
        g.user_wp = 0;
    }
    s.procs[child].ghost = g;
}

/// MADV_DONTNEED zapped `[start, end)` of `v`: private content reverts to zero or
/// to the file page behind it, as it was before any store, so it is no longer
/// "changed" (pagemap reports it absent, which a checkpointer reads as that);
/// anonymous VMAs lose the write protection (no markers without
/// UFFD_FEATURE_WP_UNPOPULATED), shmem keeps it. A shared page keeps its content
/// (and stays changed) in the page cache.
pub fn dontneed(s: &mut State, cfg: &Config, p: usize, v: &Vma, start: u8, end: u8) {
    if cfg.contracts.is_empty() {
        return;
    }
    let g = &mut s.procs[p].ghost;
    for a in start..end {
        if let Expect::Private { file, index, .. } = g.expect[a as usize] {
            g.expect[a as usize] = if file == NO_ORIGIN {
                Expect::Private { token: 0, file, index, maybe_zero: false }
            } else {
                Expect::File { file, index, shared: false }
            };
        }
        if !v.flags.contains(VmFlags::SHARED) {
            g.changed &= !bit(a);
        }
        if v.is_anonymous() {
            g.user_wp &= !bit(a);
        }
    }
}

/// MADV_FREE of `[start, end)`: the private content may read as zero from now on
/// until the next store (and a discarded page is no longer write-protected).
pub fn lazyfree(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8) {
    if cfg.contracts.is_empty() {
        return;
    }
    let g = &mut s.procs[p].ghost;
    for a in start..end {
        if let Expect::Private { maybe_zero, .. } = &mut g.expect[a as usize] {
            *maybe_zero = true;
        }
    }
}

/// A lazy-free page was discarded: it is zero now (absent, as after
/// MADV_DONTNEED), no longer changed and no longer protected.
pub fn discarded(s: &mut State, cfg: &Config, p: usize, a: u8) {
    if !cfg.contracts.is_empty() {
        s.procs[p].ghost.user_wp &= !bit(a);
        s.procs[p].ghost.changed &= !bit(a);
    }
}

/// `clear_refs` of process `p`: nothing has changed since.
pub fn clear_refs(s: &mut State, cfg: &Config, p: usize) {
    if !cfg.contracts.is_empty() {
        s.procs[p].ghost.changed = 0;
    }
}

/// UFFDIO_WRITEPROTECT applied to `[start, end)` (on or off). Write protection
/// covers what the ioctl can protect: every page of a shmem VMA (a none PTE gets a
/// marker), but only populated pages of an anonymous one (without
/// UFFD_FEATURE_WP_UNPOPULATED a none PTE stays unprotected, as documented).
pub fn write_protect(s: &mut State, cfg: &Config, p: usize, start: u8, end: u8, on: bool) {
    if cfg.contracts.is_empty() {
        return;
    }
    for a in start..end {
        let mm = &s.procs[p];
        let populated = !mm.pt[a as usize].is_none();
        let anon = mm.vma(a).is_some_and(|v| v.is_anonymous());
        let g = &mut s.procs[p].ghost;
        if !on {
            g.user_wp &= !bit(a);
        } else if populated || !anon {
            g.user_wp |= bit(a);
        }
    }
}

/// `->page_mkwrite` ran for a file page (`do_shared_fault`, `wp_page_shared`).
pub fn page_mkwrite(s: &mut State, f: u8, index: u8) {
    s.ghost.wn_clean[f as usize] &= !bit(index % NPAGES as u8);
    s.ghost.mkwrite_seen = true;
}

/// A file page of a `page_mkwrite` file system is clean: read from the file, or
/// written back.
pub fn file_page_clean(s: &mut State, f: u8, index: u8) {
    s.ghost.wn_clean[f as usize] |= bit(index % NPAGES as u8);
}

/// What a user access is checked against: taken before it runs.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    wn_clean: bool,
}

/// Before a user load or store at `(p, a)`.
pub fn before_access(s: &mut State, cfg: &Config, p: usize, a: u8) -> Before {
    if cfg.contracts.is_empty() {
        return Before { wn_clean: false };
    }
    s.ghost.mkwrite_seen = false;
    let wn_clean = match s.procs[p].vma(a) {
        Some(v) if v.flags.contains(VmFlags::SHARED) => match v.backing {
            Backing::File(f) => {
                super::prot::has_page_mkwrite(s, v) && s.ghost.wn_clean[f as usize] & bit(v.pgoff_of(a) % 16) != 0
            }
            Backing::Anon => false,
        },
        _ => false,
    };
    Before { wn_clean }
}

/// The content token a load at `(p, a)` returns now (the PTE must be present).
pub fn loaded(s: &State, p: usize, a: u8) -> Option<Token> {
    match s.procs[p].pt[a as usize] {
        Entry::Present { folio, .. } if folio == ZERO_PAGE => Some(0),
        Entry::Present { folio, .. } => Some(s.folio(folio).data),
        _ => None,
    }
}

/// Is `got` what process `p` should read at page `a`?
pub fn load_ok(s: &State, p: usize, a: u8, got: Token) -> bool {
    match s.procs[p].ghost.expect[a as usize] {
        Expect::Unmapped => true,
        Expect::Private { token, maybe_zero, .. } => got == token || maybe_zero && got == 0,
        // A private mapping may see later changes of the file until its page is
        // copied, and the kernel may copy it without a store (a FOLL_WRITE GUP
        // from mlock): POSIX leaves it unspecified, so nothing is owed there.
        Expect::File { shared: false, .. } => true,
        Expect::File { file, index, .. } => got == s.ghost.file[file as usize][index as usize],
    }
}

/// After a completed user load or store at `(p, a)`: check the contracts it can
/// break, and for a store write a fresh content token.
pub fn after_access(s: &mut State, cfg: &Config, p: usize, a: u8, write: bool, before: Before) {
    if cfg.contracts.is_empty() {
        return;
    }
    let Some(v) = s.procs[p].vma(a).copied() else { return };
    if !write {
        if let Some(got) = loaded(s, p, a) {
            if !load_ok(s, p, a, got) {
                broke(s, cfg, Contract::C, p, a);
            }
        }
        return;
    }
    if !v.flags.contains(VmFlags::WRITE) || v.pkey_exec_only() {
        broke(s, cfg, Contract::P, p, a);
    }
    if s.procs[p].ghost.user_wp & bit(a) != 0 {
        broke(s, cfg, Contract::U, p, a);
    }
    if before.wn_clean && !s.ghost.mkwrite_seen {
        broke(s, cfg, Contract::N, p, a);
    }
    // The store itself: a fresh token in the folio the kernel mapped, and in what
    // user space is owed.
    s.ghost.next = s.ghost.next.wrapping_add(1).max(1);
    let t = s.ghost.next;
    if let Entry::Present { folio, .. } = s.procs[p].pt[a as usize] {
        if folio != ZERO_PAGE {
            s.folio_mut(folio).data = t;
        }
    }
    let g = &mut s.procs[p].ghost;
    g.changed |= bit(a);
    match g.expect[a as usize] {
        Expect::Unmapped => {}
        Expect::Private { file, index, .. } => {
            g.expect[a as usize] = Expect::Private { token: t, file, index, maybe_zero: false }
        }
        Expect::File { file, index, shared: false } => {
            g.expect[a as usize] = Expect::Private { token: t, file, index, maybe_zero: false }
        }
        Expect::File { file, index, shared: true } => {
            s.ghost.file[file as usize][index as usize] = t;
            s.ghost.wn_clean[file as usize] &= !bit(index);
        }
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
            out |= (((1u32 << v.end) - 1) & !((1u32 << v.start) - 1)) as u16;
        }
    }
    for (a, e) in mm.pt.iter().enumerate() {
        let sd = match *e {
            Entry::Present { bits, .. } => bits.contains(PteBits::SD),
            Entry::Migration { bits, .. } | Entry::Swap { bits, .. } => bits.contains(SwpBits::SD),
            Entry::Marker | Entry::None => false,
        };
        if sd {
            out |= 1 << a;
        }
    }
    out
}

/// After every op: pagemap must report every changed page soft-dirty. Only the
/// changed pages not yet reported are looked at.
pub fn check_pagemap(s: &mut State, cfg: &Config) {
    if cfg.contracts.is_empty() {
        return;
    }
    for p in 0..MAX_PROCS {
        let mm = &s.procs[p];
        if !mm.alive {
            continue;
        }
        let broken = (s.ghost.breaks.mask[Contract::S.index()] >> (p * NPAGES)) as u16;
        let mut todo = mm.ghost.changed & !broken;
        if todo == 0 {
            continue;
        }
        // VM_SOFTDIRTY covers whole VMAs: most changed pages are new mappings.
        for v in &mm.vmas {
            if v.flags.contains(VmFlags::SOFTDIRTY) {
                todo &= !((((1u32 << v.end) - 1) & !((1u32 << v.start) - 1)) as u16);
            }
        }
        while todo != 0 {
            let a = todo.trailing_zeros() as u8;
            todo &= todo - 1;
            if !page_softdirty(&s.procs[p], a) {
                broke(s, cfg, Contract::S, p, a);
            }
        }
    }
}

/// Pagemap's soft-dirty bit of one page (see [`pagemap_softdirty`]).
#[inline]
pub fn page_softdirty(mm: &Mm, a: u8) -> bool {
    let pte = match mm.pt[a as usize] {
        Entry::Present { bits, .. } => bits.contains(PteBits::SD),
        Entry::Migration { bits, .. } | Entry::Swap { bits, .. } => bits.contains(SwpBits::SD),
        Entry::Marker | Entry::None => false,
    };
    pte || mm.vma(a).is_some_and(|v| v.flags.contains(VmFlags::SOFTDIRTY))
}
