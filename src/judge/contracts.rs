//! The contract judge: what user space relies on ([`Contract`]), checked on the
//! ghost state ([`super::ghost`]) during a run and by an end-of-program probe.
//!
//! During the run the model checks every user load (content, C), every user store
//! (uffd-wp U, writenotify N, permission P) and, after every op, pagemap's
//! soft-dirty bit against "changed since the last clear_refs" (S). At the end,
//! [`probe`] does what `emit-c`'s probe does on a real kernel: in every process,
//! for every mapped page, a load, a store and a pagemap read, a uffd-wp message
//! being answered by un-protecting the page (as the C handler thread does).

use bitflags::bitflags;

use super::ghost::{self, Breaks, Expect};
use super::world::World;
use crate::model::{fault, Config, Entry, PteBits, State, Token, MAX_PROCS, NPAGES};
use crate::op::Op;

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
        /// Write watch: a page stored to in an async uffd-wp VMA since its last
        /// write protection (UFFDIO_WRITEPROTECT, a PM_SCAN_WP_MATCHING scan)
        /// is reported PAGE_IS_WRITTEN by PAGEMAP_SCAN, and pagemap bit 57 is
        /// clear for it.
        const W = 1 << 5;
        /// Guard pages (MADV_GUARD_INSTALL, v6.13): the install returns, and
        /// from then until MADV_GUARD_REMOVE or munmap every access to a
        /// guarded page raises SIGSEGV (madvise(2): "guard region").
        const G = 1 << 6;
    }
}

impl std::fmt::Display for Contract {
    /// Its letters (`U+S`, or `none`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.letters())
    }
}

impl Contract {
    pub const ALL: [Contract; 7] =
        [Contract::U, Contract::S, Contract::C, Contract::N, Contract::P, Contract::W, Contract::G];

    /// Each contract with its letter and its long name.
    const NAMES: [(Contract, &'static str, &'static str); 7] = [
        (Contract::U, "U", "uffd-wp"),
        (Contract::S, "S", "soft-dirty"),
        (Contract::C, "C", "COW"),
        (Contract::N, "N", "writenotify"),
        (Contract::P, "P", "mprotect"),
        (Contract::W, "W", "write-watch"),
        (Contract::G, "G", "guard"),
    ];

    fn join(self, name: impl Fn(&(Contract, &'static str, &'static str)) -> &'static str, sep: &str) -> String {
        Self::NAMES.iter().filter(|n| self.contains(n.0)).map(name).collect::<Vec<_>>().join(sep)
    }

    /// `U+S` style, or `none`.
    pub fn letters(self) -> String {
        if self.is_empty() {
            return "none".into();
        }
        self.join(|n| n.1, "+")
    }

    /// Long names: "uffd-wp, soft-dirty".
    pub fn words(self) -> String {
        self.join(|n| n.2, ", ")
    }

    /// Parse `U+S` (or `none`).
    pub fn parse(s: &str) -> Option<Contract> {
        if s == "none" {
            return Some(Contract::empty());
        }
        s.split('+').try_fold(Contract::empty(), |c, l| Some(c | Self::NAMES.iter().find(|n| n.1 == l)?.0))
    }

    /// Every contract as `U uffd-wp, S soft-dirty, ...` (legends).
    pub fn legend() -> String {
        Self::NAMES.iter().map(|n| format!("{} {}", n.1, n.2)).collect::<Vec<_>>().join(", ")
    }

    /// Whether `c` is a contract letter (what [`Contract::parse`] reads between `+`s).
    pub fn is_letter(c: char) -> bool {
        Self::NAMES.iter().any(|n| n.1.starts_with(c))
    }

    pub(crate) fn index(self) -> usize {
        self.bits().trailing_zeros() as usize
    }
}

/// Every contract.
pub const ALL: Contract = Contract::all();

/// What the end-of-program probe saw at one page (as `emit-c`'s probe prints it
/// on a real kernel), and what user space was owed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeObs {
    pub process: u8,
    pub page: u8,
    /// Pagemap before the page's load and store: bits 63, 55, 57.
    pub present: bool,
    pub sd: bool,
    pub uw: bool,
    /// The load's value (`None`: SIGSEGV).
    pub ld: Option<Token>,
    /// The store: `writable` (no fault), `fault`, `uffd` (a uffd-wp message, then
    /// the handler un-protected the page), `segv`.
    pub obs: &'static str,
    /// Pagemap bit 55 after the store.
    pub sd_after: bool,
    pub owed: Owed,
}

/// What user space is owed at a probed page (the contracts, from the ghost state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owed {
    /// The load returns this (`None`: nothing owed, no mapping), or zero too when
    /// `or_zero` (after MADV_FREE).
    pub ld: Option<Token>,
    pub or_zero: bool,
    /// Pagemap bit 55 must be 1 before the store (changed since clear_refs).
    pub sd: bool,
    /// The store must trap: `uffd` (write-protected by the user), `segv` (no
    /// write permission), or `none`.
    pub trap: &'static str,
    /// Stored to since its last write protection in an async uffd-wp VMA:
    /// pagemap bit 57 must be 0 (write watch).
    pub written: bool,
    /// A guard page: the load and the store must raise SIGSEGV.
    pub guard: bool,
}

impl ProbeObs {
    /// `obs=writable sd=0 uw=0 present=1 ld=3 sd2=1` (the C probe's line).
    pub fn render(&self) -> String {
        let ld = self.ld.map_or("-".to_string(), |t| t.to_string());
        format!(
            "obs={} sd={} uw={} present={} ld={ld} sd2={}",
            self.obs, self.sd as u8, self.uw as u8, self.present as u8, self.sd_after as u8
        )
    }
}

impl Owed {
    /// `ld=3|0 sd=1 trap=uffd`.
    pub fn render(&self) -> String {
        let ld = match (self.ld, self.or_zero) {
            (None, _) => "-".to_string(),
            (Some(t), true) => format!("{t}|0"),
            (Some(t), false) => t.to_string(),
        };
        let wr = if self.written { " wr=1" } else { "" };
        let gd = if self.guard { " gd=1" } else { "" };
        format!("ld={ld} sd={} trap={}{wr}{gd}", self.sd as u8, self.trap)
    }
}

/// The token the probe's store writes at `(p, page)` (the C probe writes the same).
pub fn probe_token(p: usize, page: u8) -> Token {
    0x8000 | (p as Token) << 8 | page as Token
}

fn owed_at(w: &World, p: usize, a: u8) -> Owed {
    let (mm, g) = (&w.k.procs[p], &w.g.procs[p]);
    let (ld, or_zero) = match g.expect[a as usize] {
        Expect::Unmapped => (None, false),
        Expect::Private { token, maybe_zero, .. } => (Some(token), maybe_zero),
        Expect::File { shared: false, .. } => (None, false),
        Expect::File { file, index, .. } => (Some(w.g.file[file as usize][index as usize]), false),
    };
    let guard = g.guard & (1 << a) != 0;
    let trap = match mm.vma(a) {
        None => "segv",
        Some(_) if guard => "segv",
        Some(v) if !v.flags.contains(crate::model::VmFlags::WRITE) || v.pkey_exec_only() => "segv",
        Some(_) if g.user_wp & (1 << a) != 0 => "uffd",
        Some(_) => "none",
    };
    let ld = if guard { None } else { ld };
    Owed { ld, or_zero, sd: g.changed & (1 << a) != 0, trap, written: g.written & (1 << a) != 0, guard }
}

/// The end-of-program probe on `w` (a clone: it writes to every page), as
/// `emit-c`'s probe does it on a real kernel: per live process, pagemap of all
/// pages, then for every page a load, a store (a uffd-wp message answered by
/// un-protecting the page and retrying) and pagemap again. Contract breaks go to
/// the ghost state; the observations are returned.
pub fn probe(w: &mut World, cfg: &Config) -> Vec<ProbeObs> {
    let mut out = Vec::new();
    w.k.step = w.k.step.wrapping_add(1);
    for p in 0..MAX_PROCS {
        if !w.k.procs[p].alive {
            continue;
        }
        let pm_sd = ghost::pagemap_softdirty(&w.k.procs[p]);
        let before: Vec<(bool, bool)> = (0..NPAGES).map(|a| pagemap_bits(&w.k, p, a)).collect();
        let owed: Vec<Owed> = (0..NPAGES as u8).map(|a| owed_at(w, p, a)).collect();
        for a in 0..NPAGES as u8 {
            let ld = match w.access(cfg, p, a, false) {
                fault::Access::Done => ghost::loaded(&w.k, p, a),
                _ => None,
            };
            let no_fault = matches!(w.k.procs[p].pt[a as usize],
                Entry::Present { bits, .. } if bits.contains(PteBits::W) && !bits.contains(PteBits::PROTNONE));
            // The store writes the probe's own token (the C probe writes the same).
            w.k.next_token = probe_token(p, a).wrapping_sub(1);
            let mut r = w.access(cfg, p, a, true);
            let mut obs = match r {
                fault::Access::Segv | fault::Access::Oom => "segv",
                fault::Access::UffdWp => "uffd",
                fault::Access::Done if no_fault => "writable",
                fault::Access::Done => "fault",
            };
            if r == fault::Access::UffdWp {
                let op = Op::UffdUnwp { p: p as u8, addr: a, len: 1 };
                w.step(cfg, &op);
                w.k.next_token = probe_token(p, a).wrapping_sub(1);
                r = w.access(cfg, p, a, true);
                if r != fault::Access::Done {
                    obs = "segv";
                }
            }
            let sd_after = ghost::pagemap_softdirty(&w.k.procs[p]) & (1 << a) != 0;
            let (present, uw) = before[a as usize];
            if owed[a as usize].written && uw {
                w.g.broke(Contract::W, p, a, w.k.step);
            }
            out.push(ProbeObs {
                process: p as u8,
                page: a,
                present,
                sd: pm_sd & (1 << a) != 0,
                uw,
                ld,
                obs,
                sd_after,
                owed: owed[a as usize],
            });
        }
    }
    if w.g.on() {
        w.g.check_pagemap(&w.k);
    }
    out
}

/// Pagemap bits 63 (present) and 57 (uffd-wp) of `(p, a)`.
fn pagemap_bits(s: &State, p: usize, a: usize) -> (bool, bool) {
    match s.procs[p].pt[a] {
        Entry::Present { bits, .. } => (true, bits.contains(PteBits::UW)),
        Entry::Swap { bits, .. } | Entry::Migration { bits, .. } | Entry::Guard { bits } => {
            (false, bits.contains(crate::model::SwpBits::UW))
        }
        Entry::Marker => (false, true),
        Entry::None => (false, false),
    }
}

/// Can the probe break a contract the run has not broken yet? Only through a
/// page a store reaches without a fault while the store is owed a trap (the
/// write-trap reasons, a user write protection, a clean writenotify page), or a
/// load that would read other content than user space is owed. Engines skip the
/// probe otherwise; `analyze` always runs it.
pub fn probe_can_break(w: &World) -> bool {
    let s = &w.k;
    for (p, mm) in s.procs.iter().enumerate() {
        if !mm.alive {
            continue;
        }
        let g = &w.g.procs[p];
        for a in 0..NPAGES as u8 {
            // A page owed protection (uffd-wp, a guard) that its entry does not
            // give: the probe's store or load completes where it must not.
            let guarded = matches!(mm.pt[a as usize], Entry::Guard { .. });
            if g.guard & (1 << a) != 0 && !guarded
                || g.user_wp & (1 << a) != 0 && matches!(mm.pt[a as usize], Entry::None)
            {
                return true;
            }
            match mm.pt[a as usize] {
                Entry::Present { bits, .. } => {
                    if bits.contains(PteBits::W)
                        && (!crate::oracle::must_trap(s, p, a).is_empty() || g.user_wp & (1 << a) != 0)
                    {
                        return true;
                    }
                    if let Some(got) = ghost::loaded(s, p, a) {
                        if !w.g.load_ok(p, a, got) {
                            return true;
                        }
                    }
                }
                // A private page owed data but with no PTE (its folio was
                // discarded, e.g. lazy-free reclaim of a page another process
                // still owed): the probe's load faults in zero or the file page.
                Entry::None | Entry::Marker => {
                    if matches!(g.expect[a as usize], Expect::Private { token, .. } if token != 0) {
                        return true;
                    }
                }
                // A fault will bring in data the load checks: let the probe look.
                Entry::Swap { .. } | Entry::Migration { .. } => return true,
                // A guard page faults with SIGSEGV, as it is owed.
                Entry::Guard { .. } => {}
            }
        }
    }
    // Non-present file pages read their data from the page cache or the stash.
    s.procs.iter().enumerate().any(|(p, mm)| {
        mm.alive
            && mm.vmas.iter().any(|v| {
                matches!(v.backing, crate::model::Backing::File(_))
                    && (v.start..v.end).any(|a| {
                        matches!(mm.pt[a as usize], Entry::None | Entry::Marker)
                            && !matches!(w.g.procs[p].expect[a as usize], Expect::Private { .. })
                            && file_content_differs(w, p, a)
                    })
            })
    })
}

fn file_content_differs(w: &World, p: usize, a: u8) -> bool {
    let s = &w.k;
    let mm = &s.procs[p];
    let Some(v) = mm.vma(a) else { return false };
    let crate::model::Backing::File(f) = v.backing else { return false };
    let idx = v.pgoff_of(a) as usize % NPAGES;
    let c = s.files[f as usize].cache[idx];
    let data = if c == crate::model::NO_FOLIO { s.files[f as usize].stash[idx] } else { s.folio(c).data };
    !w.g.load_ok(p, a, data)
}

/// Breaks both states have (an oracle violation of the contracts).
pub fn common(a: &Breaks, b: &Breaks) -> Breaks {
    a.common(b)
}
