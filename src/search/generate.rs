//! State-aware op generation: the kind from the op table's weights, its process
//! (near the engine's focus), then each field drawn by its domain through
//! [`GenCx`], then the table's [`Placement`] of the op (a whole VMA, next to a
//! VMA, at a migration entry). Everything an op needs from the generator comes
//! from its row of the table; nothing here names an op.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::model::{self, Entry, State, MAX_PROCS, NPAGES};
use crate::op::{Advice, FileName, FocusRule, Op, OpKind, Placement, Prot, Target, OP_TABLE};

/// Where the next op most likely acts: the page the last op with a page acted
/// on (for mremap, where the range went), in its process (after a fork, in
/// either). Findings live on one or two pages that a chain of ops keeps
/// touching; a random page per op rarely makes a chain.
#[derive(Clone, Copy, Debug, Default)]
pub struct Focus {
    pub p: Option<u8>,
    pub page: Option<u8>,
}

impl Focus {
    /// After `op` (the table's [`FocusRule`]).
    pub fn after(self, op: &Op) -> Focus {
        match op.kind().info().focus {
            FocusRule::Page => op.page().map_or(self, |(p, page)| Focus { p: Some(p), page: Some(page) }),
            FocusRule::Moved => match *op {
                Op::Mremap { p, new, .. } => Focus { p: Some(p), page: Some(new) },
                _ => op.page().map_or(self, |(p, page)| Focus { p: Some(p), page: Some(page) }),
            },
            FocusRule::AnyProcess => Focus { p: None, ..self },
            FocusRule::Keep => self,
        }
    }

    /// The focus after the ops before position `i` (the last few decide it).
    pub fn before(ops: &[Op], i: usize) -> Focus {
        let i = i.min(ops.len());
        ops[i.saturating_sub(4)..i].iter().fold(Focus::default(), |f, op| f.after(op))
    }
}

/// What the argument domains draw from: the live state, the op's process, the
/// focus and the length chosen for the op.
pub struct GenCx<'a> {
    pub rng: &'a mut SmallRng,
    pub s: &'a State,
    pub p: u8,
    pub focus: Focus,
    pub len: u8,
    /// The page drawn for the op (a file mapping's offset usually follows it).
    pub drawn_page: Option<u8>,
}

impl GenCx<'_> {
    /// A page, usually inside a VMA of the op's process, the focus page half of
    /// the time when the focus is in that process.
    pub fn page(&mut self) -> u8 {
        let a = pick_page_near(self.rng, self.s, self.p, self.focus);
        self.drawn_page.get_or_insert(a);
        a
    }
    /// Any page.
    pub fn any_page(&mut self) -> u8 {
        self.rng.gen_range(0..NPAGES as u8)
    }
    /// Mostly rw- and r--.
    pub fn prot(&mut self) -> Prot {
        pick_prot(self.rng)
    }
    /// Uniform, but MADV_MERGEABLE more often (KSM needs it before anything merges).
    pub fn advice(&mut self) -> Advice {
        if self.rng.gen_range(0..8) == 0 {
            return Advice::Mergeable;
        }
        Advice::ALL[self.rng.gen_range(0..Advice::ALL.len())]
    }
    /// Mostly memfd at the identity offset (so adjacent mappings can merge).
    pub fn target(&mut self) -> Target {
        let addr = self.drawn_page.unwrap_or(0);
        match self.rng.gen_range(0..10) {
            0..=1 => Target::Anon,
            2 => Target::SharedAnon,
            t => {
                let file = match t {
                    3..=6 => FileName::Memfd,
                    7..=8 => FileName::Ext4,
                    _ => FileName::Ramfs,
                };
                let pgoff = if self.rng.gen_ratio(7, 8) { addr } else { self.rng.gen_range(0..NPAGES as u8) };
                Target::File { file, shared: self.rng.gen_ratio(3, 4), pgoff }
            }
        }
    }
    pub fn event_fork(&mut self) -> bool {
        self.rng.gen_ratio(1, 4)
    }
    /// The first free process slot (fork's child).
    pub fn free_slot(&mut self) -> u8 {
        (0..MAX_PROCS as u8).find(|&c| !self.s.procs[c as usize].alive).unwrap_or(1)
    }
}

/// The table's weights, once for all kinds and once for the realizable ones.
struct Weights {
    total: u32,
    total_realizable: u32,
}

const WEIGHTS: Weights = {
    let (mut total, mut total_realizable) = (0, 0);
    let mut i = 0;
    while i < OP_TABLE.len() {
        total += OP_TABLE[i].weight;
        if OP_TABLE[i].realizable {
            total_realizable += OP_TABLE[i].weight;
        }
        i += 1;
    }
    Weights { total, total_realizable }
};

/// A kind drawn by the table's weights (only realizable ones if asked).
fn pick_kind(rng: &mut SmallRng, realizable: bool) -> OpKind {
    let total = if realizable { WEIGHTS.total_realizable } else { WEIGHTS.total };
    let mut x = rng.gen_range(0..total);
    for r in OP_TABLE.iter().filter(|r| r.realizable || !realizable) {
        if x < r.weight {
            return r.kind;
        }
        x -= r.weight;
    }
    OP_TABLE[0].kind
}

fn alive_proc(rng: &mut SmallRng, s: &State) -> u8 {
    let alive = (0..MAX_PROCS).filter(|&p| s.procs[p].alive).count() as u8;
    if alive == 0 {
        return 0;
    }
    let mut k = rng.gen_range(0..alive);
    for p in 0..MAX_PROCS as u8 {
        if s.procs[p as usize].alive {
            if k == 0 {
                return p;
            }
            k -= 1;
        }
    }
    0
}

/// A page of `p`, the focus page half of the time when the focus is in `p`,
/// else usually inside one of its VMAs.
fn pick_page_near(rng: &mut SmallRng, s: &State, p: u8, focus: Focus) -> u8 {
    if let Some(page) = focus.page {
        if focus.p.is_none_or(|fp| fp == p) && rng.gen_ratio(1, 2) {
            return page;
        }
    }
    let mm = &s.procs[p as usize];
    if !mm.vmas.is_empty() && rng.gen_ratio(7, 8) {
        let v = mm.vmas[rng.gen_range(0..mm.vmas.len())];
        return rng.gen_range(v.start..v.end);
    }
    rng.gen_range(0..NPAGES as u8)
}

fn pick_prot(rng: &mut SmallRng) -> Prot {
    match rng.gen_range(0..10) {
        0..=5 => Prot(Prot::R | Prot::W),
        6..=7 => Prot(Prot::R),
        _ => Prot(rng.gen_range(0..8)),
    }
}

/// Generate one op that makes sense in state `s` most of the time.
pub fn gen_op(rng: &mut SmallRng, s: &State) -> Op {
    gen_op_near(rng, s, false, Focus::default())
}

/// [`gen_op`], optionally only ops a real kernel can run deterministically from
/// user space (the table's `realizable` kinds, each field made realizable).
pub fn gen_op_with(rng: &mut SmallRng, s: &State, realizable: bool) -> Op {
    gen_op_near(rng, s, realizable, Focus::default())
}

/// [`gen_op_with`], preferring the process and page of `focus`.
pub fn gen_op_near(rng: &mut SmallRng, s: &State, realizable: bool, focus: Focus) -> Op {
    let kind = pick_kind(rng, realizable);
    let op = gen_kind(rng, s, kind, focus);
    if realizable {
        op.realizable_fields()
    } else {
        op
    }
}

/// An op of this kind, placed as the table says.
pub fn gen_op_of(rng: &mut SmallRng, s: &State, kind: OpKind, focus: Focus) -> Op {
    gen_kind(rng, s, kind, focus)
}

fn gen_kind(rng: &mut SmallRng, s: &State, kind: OpKind, focus: Focus) -> Op {
    let p = match focus.p {
        Some(fp) if s.procs[fp as usize].alive && rng.gen_ratio(3, 4) => fp,
        _ => alive_proc(rng, s),
    };
    let len = if rng.gen_ratio(3, 4) { 1 } else { rng.gen_range(1..=4) };
    match kind.info().placement {
        Placement::Fields => gen_fields(rng, s, kind, p, len, focus),
        Placement::WholeVma => {
            let op = gen_fields(rng, s, kind, p, len, focus);
            if rng.gen_ratio(1, 2) {
                if let Some((addr, len)) = pick_whole_vma(rng, s, p, focus) {
                    return op.retarget(addr, len);
                }
            }
            op
        }
        Placement::NextToVma => {
            let op = gen_fields(rng, s, kind, p, len, focus);
            // Often right next to an existing VMA, so merges happen; half of
            // those a mapping that could merge with it (flag changes decide
            // whether it does).
            let mm = &s.procs[p as usize];
            if mm.vmas.is_empty() || !rng.gen_ratio(1, 2) {
                return op;
            }
            let v = mm.vmas[rng.gen_range(0..mm.vmas.len())];
            let addr = if rng.gen_bool(0.5) || v.start < len { v.end.min(NPAGES as u8 - 1) } else { v.start - len };
            let op = op.retarget(addr, len);
            match (op, rng.gen_ratio(1, 2).then(|| mergeable_target(&v, addr, len)).flatten()) {
                (Op::Mmap { p, addr, len, .. }, Some((prot, target))) => Op::Mmap { p, addr, len, prot, target },
                (Op::Mmap { p, addr, len, prot, target: Target::File { file, shared, pgoff } }, None) => {
                    // Keep the identity offset at the new address.
                    let pgoff = if rng.gen_ratio(7, 8) { addr } else { pgoff };
                    Op::Mmap { p, addr, len, prot, target: Target::File { file, shared, pgoff } }
                }
                (op, _) => op,
            }
        }
        Placement::MigrationEntry => {
            let op = gen_fields(rng, s, kind, p, len, focus);
            let mm = &s.procs[p as usize];
            match (0..NPAGES).find(|&i| matches!(mm.pt[i], Entry::Migration { .. })) {
                Some(i) => op.retarget(i as u8, len),
                None => op,
            }
        }
        Placement::ChildFirst => {
            let p = if rng.gen_ratio(3, 4) && p == 0 { 1 } else { p };
            gen_fields(rng, s, kind, p, len, focus)
        }
    }
}

fn gen_fields(rng: &mut SmallRng, s: &State, kind: OpKind, p: u8, len: u8, focus: Focus) -> Op {
    let mut g = GenCx { rng, s, p, focus, len, drawn_page: None };
    kind.gen_fields(&mut g)
}

/// A whole VMA of `p` (start, length up to 4), half of the time the VMA
/// holding the focus page.
fn pick_whole_vma(rng: &mut SmallRng, s: &State, p: u8, focus: Focus) -> Option<(u8, u8)> {
    let mm = &s.procs[p as usize];
    if mm.vmas.is_empty() {
        return None;
    }
    let near =
        focus.page.filter(|_| focus.p.is_none_or(|fp| fp == p) && rng.gen_ratio(1, 2)).and_then(|page| mm.vma(page));
    let v = near.copied().unwrap_or_else(|| mm.vmas[rng.gen_range(0..mm.vmas.len())]);
    Some((v.start, (v.end - v.start).min(4)))
}

/// A mapping that can merge with its neighbour `v` when placed at `addr`
/// (`len` pages, just before or after it): the same file at the contiguous
/// offset, or private anon; the same protection. The kernel merges only such
/// ranges, which independent random choices rarely produce.
fn mergeable_target(v: &model::Vma, addr: u8, len: u8) -> Option<(Prot, Target)> {
    let f = v.flags;
    let prot = Prot(
        (f.contains(model::VmFlags::READ) as u8 * Prot::R)
            | (f.contains(model::VmFlags::WRITE) as u8 * Prot::W)
            | (f.contains(model::VmFlags::EXEC) as u8 * Prot::X),
    );
    let shared = f.contains(model::VmFlags::SHARED);
    let target = match v.backing {
        model::Backing::Anon if !shared => Target::Anon,
        model::Backing::File(id) if id < model::FILE_SHMEM_ANON0 => {
            let file = match id {
                model::FILE_MEMFD => FileName::Memfd,
                model::FILE_EXT4 => FileName::Ext4,
                _ => FileName::Ramfs,
            };
            let pgoff = if addr >= v.end { v.pgoff_of(v.end - 1).checked_add(1)? } else { v.pgoff.checked_sub(len)? };
            if pgoff as usize >= NPAGES {
                return None;
            }
            Target::File { file, shared, pgoff }
        }
        _ => return None,
    };
    Some((prot, target))
}
