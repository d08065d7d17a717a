//! Argument domains of the op table ([`super::op`]): for each kind of argument,
//! its byte decoding and encoding, text form, shrinkers and how a generator draws
//! it. A field of an op is declared with its domain (`addr: Page`); everything an
//! engine does with that field comes from here.
//!
//! Every value is stored already resolved into its small domain (a page is
//! `0..NPAGES`, a length `1..=4`, a process slot `0..MAX_PROCS`), so every byte
//! string decodes to a valid op and deleting an op never makes the rest invalid.

use arbitrary::{Arbitrary, Unstructured};
use arrayvec::ArrayVec;

use super::text::{ArgParser, ArgPrinter, ParseError};
use crate::model::types::{MAX_PROCS, NPAGES};

/// Protection bits of mmap/mprotect (PROT_READ|PROT_WRITE|PROT_EXEC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prot(pub u8);

impl Prot {
    pub const R: u8 = 1;
    pub const W: u8 = 2;
    pub const X: u8 = 4;
    pub fn read(self) -> bool {
        self.0 & Self::R != 0
    }
    pub fn write(self) -> bool {
        self.0 & Self::W != 0
    }
    pub fn exec(self) -> bool {
        self.0 & Self::X != 0
    }
}

impl std::fmt::Display for Prot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = if self.read() { 'r' } else { '-' };
        let w = if self.write() { 'w' } else { '-' };
        let x = if self.exec() { 'x' } else { '-' };
        write!(f, "{r}{w}{x}")
    }
}

/// The file objects a mapping can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileName {
    /// memfd_create(): shmem.
    Memfd,
    /// A file on a disk filesystem with writeback and page_mkwrite (ext4-like).
    Ext4,
    /// A ramfs file (page_mkwrite, no writeback, unevictable).
    Ramfs,
}

impl FileName {
    pub const ALL: [FileName; 3] = [FileName::Memfd, FileName::Ext4, FileName::Ramfs];
    pub fn name(self) -> &'static str {
        match self {
            FileName::Memfd => "memfd",
            FileName::Ext4 => "ext4",
            FileName::Ramfs => "ramfs",
        }
    }
}

/// What mmap maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// MAP_PRIVATE|MAP_ANONYMOUS
    Anon,
    /// MAP_SHARED|MAP_ANONYMOUS (a fresh shmem object per call)
    SharedAnon,
    /// A file at page offset `pgoff`, MAP_SHARED or MAP_PRIVATE.
    File { file: FileName, shared: bool, pgoff: u8 },
}

/// madvise() advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    DontNeed,
    Free,
    Random,
    Normal,
    DontFork,
    DoFork,
    WipeOnFork,
    KeepOnFork,
    /// MADV_HUGEPAGE: THP allowed (the guest runs THP `enabled=madvise`).
    HugePage,
    NoHugePage,
    /// MADV_COLLAPSE (v6.1): collapse into THPs now (mm/khugepaged.c).
    Collapse,
    /// MADV_MERGEABLE: KSM may merge the range's anonymous pages (mm/ksm.c).
    Mergeable,
    /// MADV_UNMERGEABLE: unmerge its KSM pages, no more merging.
    Unmergeable,
    /// MADV_GUARD_INSTALL (v6.13): every page becomes a guard page (SIGSEGV on access).
    GuardInstall,
    /// MADV_GUARD_REMOVE (v6.13): the range's guard pages become empty again.
    GuardRemove,
}

impl Advice {
    pub const ALL: [Advice; 15] = [
        Advice::DontNeed,
        Advice::Free,
        Advice::Random,
        Advice::Normal,
        Advice::DontFork,
        Advice::DoFork,
        Advice::WipeOnFork,
        Advice::KeepOnFork,
        Advice::HugePage,
        Advice::NoHugePage,
        Advice::Collapse,
        Advice::Mergeable,
        Advice::Unmergeable,
        Advice::GuardInstall,
        Advice::GuardRemove,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Advice::DontNeed => "MADV_DONTNEED",
            Advice::Free => "MADV_FREE",
            Advice::Random => "MADV_RANDOM",
            Advice::Normal => "MADV_NORMAL",
            Advice::DontFork => "MADV_DONTFORK",
            Advice::DoFork => "MADV_DOFORK",
            Advice::WipeOnFork => "MADV_WIPEONFORK",
            Advice::KeepOnFork => "MADV_KEEPONFORK",
            Advice::HugePage => "MADV_HUGEPAGE",
            Advice::NoHugePage => "MADV_NOHUGEPAGE",
            Advice::Collapse => "MADV_COLLAPSE",
            Advice::Mergeable => "MADV_MERGEABLE",
            Advice::Unmergeable => "MADV_UNMERGEABLE",
            Advice::GuardInstall => "MADV_GUARD_INSTALL",
            Advice::GuardRemove => "MADV_GUARD_REMOVE",
        }
    }
    fn index(self) -> u8 {
        Advice::ALL.iter().position(|&x| x == self).unwrap_or(0) as u8
    }
}

/// What the fields decoded, parsed or visited so far say (later fields may
/// depend on earlier ones: a file mapping's offset defaults to its address).
#[derive(Clone, Copy, Debug, Default)]
pub struct ArgCx {
    /// The op's process (its first [`Proc`] field).
    pub p: Option<u8>,
    /// The op's page (its first [`Page`] field).
    pub page: Option<u8>,
    /// The op's length (its [`Len`] field).
    pub len: Option<u8>,
}

/// What a generator knows when it draws an argument (see `crate::search::generate`).
pub use crate::search::generate::GenCx;

/// One argument domain: how a field's value is decoded from bytes, encoded,
/// printed, parsed, shrunk and generated.
pub trait Domain {
    type Value: Copy + Eq + std::hash::Hash + std::fmt::Debug;
    /// Its text shape in error messages (`addr`, `p`, `anon|shared-anon|...`).
    const SHAPE: &'static str;
    /// How many text arguments it takes (least, most).
    const ARITY: (usize, usize) = (1, 1);
    fn decode(u: &mut Unstructured, cx: &mut ArgCx) -> arbitrary::Result<Self::Value>;
    fn encode(v: Self::Value, out: &mut Vec<u8>);
    fn print(v: Self::Value, out: &mut ArgPrinter);
    fn parse(args: &mut ArgParser, cx: &mut ArgCx) -> Result<Self::Value, ParseError>;
    /// Record what later fields may depend on (as `decode` and `parse` do).
    fn note(_v: Self::Value, _cx: &mut ArgCx) {}
    /// Simpler values, simplest first (the minimizer tries each).
    fn simpler(_v: Self::Value, _cx: &ArgCx) -> ArrayVec<Self::Value, 4> {
        ArrayVec::new()
    }
    /// The nearest value a real kernel can run deterministically from user space.
    fn realizable(v: Self::Value) -> Self::Value {
        v
    }
    /// Draw a value (the generator chose the op kind and its process first).
    fn gen(g: &mut GenCx) -> Self::Value;
    /// The value as the op's process, if this domain is a process (hot path:
    /// constant-folded for every other domain).
    #[inline(always)]
    fn proc_of(_v: Self::Value) -> Option<u8> {
        None
    }
    /// The value as the op's page, if this domain is a page.
    #[inline(always)]
    fn page_of(_v: Self::Value) -> Option<u8> {
        None
    }
    /// Move the op to `(addr, len)` (a whole VMA): a page or length field takes it.
    fn retarget(v: Self::Value, _to: &mut Retarget) -> Self::Value {
        v
    }
}

/// The range [`Domain::retarget`] moves an op to; each part is taken once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retarget {
    pub addr: Option<u8>,
    pub len: Option<u8>,
}

fn byte(u: &mut Unstructured) -> arbitrary::Result<u8> {
    u8::arbitrary(u)
}

/// A process slot `p0..p2`: the process an op acts in.
pub struct Proc;
/// The child slot of fork (`p1 = fork(p0)`: printed before `=`).
pub struct Child;
/// A page `0..NPAGES`: where an op acts.
pub struct Page;
/// A destination page (mremap's new address).
pub struct Dest;
/// A length in pages, `1..=4` (clipped at the end of the address space).
pub struct Len;
/// fork()'s `event_fork` flag: the parent's userfaultfd has UFFD_FEATURE_EVENT_FORK.
pub struct EventFork;

fn parse_proc_tok(s: &str) -> Option<u8> {
    let n: u8 = s.strip_prefix('p')?.parse().ok()?;
    (n < MAX_PROCS as u8 && s.len() == 2).then_some(n)
}

fn page_num(args: &mut ArgParser, what: &str, lo: u8, hi: u8) -> Result<u8, ParseError> {
    let t = args.take()?;
    match t.s.parse::<u8>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(args.error(t.col, format!("expected {what} ({lo}..={hi}), found `{}`", t.s))),
    }
}

impl Domain for Proc {
    type Value = u8;
    const SHAPE: &'static str = "p";
    fn decode(u: &mut Unstructured, cx: &mut ArgCx) -> arbitrary::Result<u8> {
        let p = byte(u)? % MAX_PROCS as u8;
        Self::note(p, cx);
        Ok(p)
    }
    fn encode(v: u8, out: &mut Vec<u8>) {
        out.push(v);
    }
    fn print(v: u8, out: &mut ArgPrinter) {
        out.arg(format_args!("p{v}"));
    }
    fn parse(args: &mut ArgParser, cx: &mut ArgCx) -> Result<u8, ParseError> {
        let t = args.take()?;
        let p = parse_proc_tok(t.s)
            .ok_or_else(|| args.error(t.col, format!("expected a process p0..p{}, found `{}`", MAX_PROCS - 1, t.s)))?;
        Self::note(p, cx);
        Ok(p)
    }
    fn note(v: u8, cx: &mut ArgCx) {
        cx.p.get_or_insert(v);
    }
    #[inline(always)]
    fn proc_of(v: u8) -> Option<u8> {
        Some(v)
    }
    fn gen(g: &mut GenCx) -> u8 {
        g.p
    }
}

impl Domain for Child {
    type Value = u8;
    const SHAPE: &'static str = "child";
    const ARITY: (usize, usize) = (0, 0);
    fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<u8> {
        Ok(byte(u)? % MAX_PROCS as u8)
    }
    fn encode(v: u8, out: &mut Vec<u8>) {
        out.push(v);
    }
    fn print(v: u8, out: &mut ArgPrinter) {
        out.lhs(format_args!("p{v}"));
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<u8, ParseError> {
        let Some(l) = args.take_lhs() else {
            let (col, name) = (args.name.col, args.name.s);
            return Err(args.error(col, format!("{name} names its child: `p1 = {name}(p0)`")));
        };
        parse_proc_tok(l.s).ok_or_else(|| {
            args.error(l.col, format!("expected a process p0..p{} before `=`, found `{}`", MAX_PROCS - 1, l.s))
        })
    }
    fn gen(g: &mut GenCx) -> u8 {
        g.free_slot()
    }
}

impl Domain for Page {
    type Value = u8;
    const SHAPE: &'static str = "addr";
    fn decode(u: &mut Unstructured, cx: &mut ArgCx) -> arbitrary::Result<u8> {
        let a = byte(u)? % NPAGES as u8;
        Self::note(a, cx);
        Ok(a)
    }
    fn encode(v: u8, out: &mut Vec<u8>) {
        out.push(v);
    }
    fn print(v: u8, out: &mut ArgPrinter) {
        out.arg(v);
    }
    fn parse(args: &mut ArgParser, cx: &mut ArgCx) -> Result<u8, ParseError> {
        let a = page_num(args, "a page", 0, NPAGES as u8 - 1)?;
        Self::note(a, cx);
        Ok(a)
    }
    fn note(v: u8, cx: &mut ArgCx) {
        cx.page.get_or_insert(v);
    }
    #[inline(always)]
    fn page_of(v: u8) -> Option<u8> {
        Some(v)
    }
    fn gen(g: &mut GenCx) -> u8 {
        g.page()
    }
    fn retarget(v: u8, to: &mut Retarget) -> u8 {
        to.addr.take().unwrap_or(v)
    }
}

impl Domain for Dest {
    type Value = u8;
    const SHAPE: &'static str = "new_addr";
    fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<u8> {
        Ok(byte(u)? % NPAGES as u8)
    }
    fn encode(v: u8, out: &mut Vec<u8>) {
        out.push(v);
    }
    fn print(v: u8, out: &mut ArgPrinter) {
        out.arg(v);
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<u8, ParseError> {
        page_num(args, "a page", 0, NPAGES as u8 - 1)
    }
    fn gen(g: &mut GenCx) -> u8 {
        g.any_page()
    }
}

impl Domain for Len {
    type Value = u8;
    const SHAPE: &'static str = "len";
    fn decode(u: &mut Unstructured, cx: &mut ArgCx) -> arbitrary::Result<u8> {
        let l = 1 + byte(u)? % 4;
        Self::note(l, cx);
        Ok(l)
    }
    fn encode(v: u8, out: &mut Vec<u8>) {
        out.push(v - 1);
    }
    fn print(v: u8, out: &mut ArgPrinter) {
        out.arg(v);
    }
    fn parse(args: &mut ArgParser, cx: &mut ArgCx) -> Result<u8, ParseError> {
        let l = page_num(args, "a length in pages", 1, 4)?;
        Self::note(l, cx);
        Ok(l)
    }
    fn note(v: u8, cx: &mut ArgCx) {
        cx.len.get_or_insert(v);
    }
    fn simpler(v: u8, _cx: &ArgCx) -> ArrayVec<u8, 4> {
        (1..v).collect()
    }
    fn gen(g: &mut GenCx) -> u8 {
        g.len
    }
    fn retarget(v: u8, to: &mut Retarget) -> u8 {
        to.len.take().unwrap_or(v)
    }
}

impl Domain for Prot {
    type Value = Prot;
    const SHAPE: &'static str = "prot";
    fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<Prot> {
        Ok(Prot(byte(u)? % 8))
    }
    fn encode(v: Prot, out: &mut Vec<u8>) {
        out.push(v.0);
    }
    fn print(v: Prot, out: &mut ArgPrinter) {
        out.arg(v);
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<Prot, ParseError> {
        let t = args.take()?;
        let b = t.s.as_bytes();
        let ok =
            b.len() == 3 && matches!(b[0], b'r' | b'-') && matches!(b[1], b'w' | b'-') && matches!(b[2], b'x' | b'-');
        if !ok {
            return Err(args.error(t.col, format!("expected a protection like rw- or r-x, found `{}`", t.s)));
        }
        Ok(Prot((b[0] == b'r') as u8 | ((b[1] == b'w') as u8) << 1 | ((b[2] == b'x') as u8) << 2))
    }
    /// One bit fewer (exec, then read), never no bits from one.
    fn simpler(v: Prot, _cx: &ArgCx) -> ArrayVec<Prot, 4> {
        let mut out = ArrayVec::new();
        for bit in [Prot::X, Prot::R] {
            if v.0 & bit != 0 && v.0 != bit {
                out.push(Prot(v.0 & !bit));
            }
        }
        out
    }
    fn gen(g: &mut GenCx) -> Prot {
        g.prot()
    }
}

impl Domain for Advice {
    type Value = Advice;
    const SHAPE: &'static str = "MADV_*";
    fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<Advice> {
        Ok(Advice::ALL[(byte(u)? % Advice::ALL.len() as u8) as usize])
    }
    fn encode(v: Advice, out: &mut Vec<u8>) {
        out.push(v.index());
    }
    fn print(v: Advice, out: &mut ArgPrinter) {
        out.arg(v.name());
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<Advice, ParseError> {
        let t = args.take()?;
        Advice::ALL.iter().copied().find(|x| x.name() == t.s).ok_or_else(|| {
            let names: Vec<_> = Advice::ALL.iter().map(|x| x.name()).collect();
            args.error(t.col, format!("unknown advice `{}` (known: {})", t.s, names.join(", ")))
        })
    }
    fn simpler(v: Advice, _cx: &ArgCx) -> ArrayVec<Advice, 4> {
        let mut out = ArrayVec::new();
        if v != Advice::DontNeed {
            out.push(Advice::DontNeed);
        }
        out
    }
    fn gen(g: &mut GenCx) -> Advice {
        g.advice()
    }
}

impl Domain for Target {
    type Value = Target;
    const SHAPE: &'static str = "anon|shared-anon|memfd|ext4|ramfs[, shared|private, pgoff]";
    const ARITY: (usize, usize) = (1, 3);
    /// One byte for the kind (anon, shared-anon, then each file shared or
    /// private), and for files one for the offset: below 128 it is "the op's
    /// address" (adjacent mappings of one file are then offset-contiguous and can
    /// merge, as in the thread's scenario), from 128 an explicit offset.
    fn decode(u: &mut Unstructured, cx: &mut ArgCx) -> arbitrary::Result<Target> {
        let t = byte(u)? % 8;
        Ok(match t {
            0 => Target::Anon,
            1 => Target::SharedAnon,
            _ => {
                let file = FileName::ALL[((t - 2) / 2) as usize];
                let shared = (t - 2) % 2 == 1;
                let b = byte(u)?;
                let pgoff = if b < 128 { cx.page.unwrap_or(0) } else { (b - 128) % NPAGES as u8 };
                Target::File { file, shared, pgoff }
            }
        })
    }
    fn encode(v: Target, out: &mut Vec<u8>) {
        match v {
            Target::Anon => out.push(0),
            Target::SharedAnon => out.push(1),
            Target::File { file, shared, pgoff } => {
                let f = FileName::ALL.iter().position(|&x| x == file).unwrap_or(0) as u8;
                out.push(2 + f * 2 + shared as u8);
                out.push(128 + pgoff);
            }
        }
    }
    fn print(v: Target, out: &mut ArgPrinter) {
        match v {
            Target::Anon => out.arg("anon"),
            Target::SharedAnon => out.arg("shared-anon"),
            Target::File { file, shared, pgoff } => {
                out.arg(file.name());
                out.arg(if shared { "shared" } else { "private" });
                out.arg(pgoff);
            }
        }
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<Target, ParseError> {
        let t = args.take()?;
        match t.s {
            "anon" => return Ok(Target::Anon),
            "shared-anon" => return Ok(Target::SharedAnon),
            _ => {}
        }
        let Some(file) = FileName::ALL.iter().copied().find(|f| f.name() == t.s) else {
            return Err(args.error(
                t.col,
                format!("expected anon, shared-anon, memfd, ext4 or ramfs, found `{}` (files take: file, shared|private, pgoff)", t.s),
            ));
        };
        let st = args.take()?;
        let shared = match st.s {
            "shared" => true,
            "private" => false,
            _ => return Err(args.error(st.col, format!("expected shared or private, found `{}`", st.s))),
        };
        let pgoff = page_num(args, "a file page offset", 0, NPAGES as u8 - 1)?;
        Ok(Target::File { file, shared, pgoff })
    }
    /// The identity offset (pgoff = addr), then memfd.
    fn simpler(v: Target, cx: &ArgCx) -> ArrayVec<Target, 4> {
        let mut out = ArrayVec::new();
        if let Target::File { file, shared, pgoff } = v {
            let addr = cx.page.unwrap_or(pgoff);
            if pgoff != addr {
                out.push(Target::File { file, shared, pgoff: addr });
            }
            if file != FileName::Memfd {
                out.push(Target::File { file: FileName::Memfd, shared, pgoff });
            }
        }
        out
    }
    /// ext4 has no counterpart on the test system: memfd.
    fn realizable(v: Target) -> Target {
        match v {
            Target::File { file: FileName::Ext4, shared, pgoff } => {
                Target::File { file: FileName::Memfd, shared, pgoff }
            }
            t => t,
        }
    }
    fn gen(g: &mut GenCx) -> Target {
        g.target()
    }
}

impl Domain for EventFork {
    type Value = bool;
    const SHAPE: &'static str = "event_fork";
    const ARITY: (usize, usize) = (0, 1);
    fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<bool> {
        Ok(byte(u)? & 1 == 1)
    }
    fn encode(v: bool, out: &mut Vec<u8>) {
        out.push(v as u8);
    }
    fn print(v: bool, out: &mut ArgPrinter) {
        if v {
            out.arg("event_fork");
        }
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<bool, ParseError> {
        match args.peek() {
            None => Ok(false),
            Some(t) if t.s == "event_fork" => {
                args.take()?;
                Ok(true)
            }
            Some(t) => Err(args.error(t.col, format!("expected event_fork, found `{}`", t.s))),
        }
    }
    fn simpler(v: bool, _cx: &ArgCx) -> ArrayVec<bool, 4> {
        let mut out = ArrayVec::new();
        if v {
            out.push(false);
        }
        out
    }
    /// EVENT_FORK needs a monitor answering the fork event: not in the reproducers.
    fn realizable(_v: bool) -> bool {
        false
    }
    fn gen(g: &mut GenCx) -> bool {
        g.event_fork()
    }
}

/// A field whose values are a few names (an enum with `ALL` and `name`): one
/// byte modulo the count, printed and parsed by name, unknown names listed,
/// shrunk to the first value, drawn uniformly.
macro_rules! named_domain {
    ($ty:ident, $shape:literal, $what:literal) => {
        impl Domain for $ty {
            type Value = $ty;
            const SHAPE: &'static str = $shape;
            fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<$ty> {
                Ok($ty::ALL[(byte(u)? % $ty::ALL.len() as u8) as usize])
            }
            fn encode(v: $ty, out: &mut Vec<u8>) {
                out.push($ty::ALL.iter().position(|&x| x == v).unwrap_or(0) as u8);
            }
            fn print(v: $ty, out: &mut ArgPrinter) {
                out.arg(v.name());
            }
            fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<$ty, ParseError> {
                let t = args.take()?;
                $ty::ALL.iter().copied().find(|x| x.name() == t.s).ok_or_else(|| {
                    let names: Vec<_> = $ty::ALL.iter().map(|x| x.name()).collect();
                    args.error(t.col, format!(concat!("unknown ", $what, " `{}` (known: {})"), t.s, names.join(", ")))
                })
            }
            fn simpler(v: $ty, _cx: &ArgCx) -> ArrayVec<$ty, 4> {
                let mut out = ArrayVec::new();
                if v != $ty::ALL[0] {
                    out.push($ty::ALL[0]);
                }
                out
            }
            fn gen(g: &mut GenCx) -> $ty {
                use rand::Rng as _;
                $ty::ALL[g.rng.gen_range(0..$ty::ALL.len())]
            }
        }
    };
}

/// The features a process's userfaultfd asks for with UFFDIO_API, as the sets
/// that behave differently (UFFD_FEATURE_WP_ASYNC implies WP_UNPOPULATED).
/// Every set includes UFFD_FEATURE_WP_HUGETLBFS_SHMEM where the kernel has it
/// (the reproducers' context always asks for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UffdFeatures {
    /// No write-protect feature beyond the default (sync uffd-wp).
    Sync,
    /// UFFD_FEATURE_WP_UNPOPULATED (v6.4): none PTEs of anonymous VMAs get markers.
    WpUnpopulated,
    /// UFFD_FEATURE_WP_ASYNC (v6.7): faults resolve in the kernel, no message.
    WpAsync,
}

impl UffdFeatures {
    pub const ALL: [UffdFeatures; 3] = [UffdFeatures::Sync, UffdFeatures::WpUnpopulated, UffdFeatures::WpAsync];
    pub fn name(self) -> &'static str {
        match self {
            UffdFeatures::Sync => "sync",
            UffdFeatures::WpUnpopulated => "WP_UNPOPULATED",
            UffdFeatures::WpAsync => "WP_ASYNC",
        }
    }
}

named_domain!(UffdFeatures, "sync|WP_UNPOPULATED|WP_ASYNC", "uffd feature set");

/// What a PAGEMAP_SCAN call asks (every call reports PRESENT, SWAPPED, FILE,
/// PFNZERO, WRITTEN and SOFT_DIRTY of every page it returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanMode {
    /// Report every page of the range (no category filter, no write protection).
    Read,
    /// Wine's write-watch reset: `category_mask = PAGE_IS_WRITTEN`,
    /// `PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC`: report the written pages
    /// and write-protect them again (EPERM at a VMA that is not async uffd-wp).
    WpWritten,
}

impl ScanMode {
    pub const ALL: [ScanMode; 2] = [ScanMode::Read, ScanMode::WpWritten];
    pub fn name(self) -> &'static str {
        match self {
            ScanMode::Read => "read",
            ScanMode::WpWritten => "wp_written",
        }
    }
}

named_domain!(ScanMode, "read|wp_written", "PAGEMAP_SCAN mode");

/// The value a `write_val` store writes: 1..=3, a small domain so that stores
/// can give pages equal content (what KSM merges).
pub struct StoreValue;

/// The content token of value `v` (apart from the fresh tokens of `write`
/// and the probe's).
pub const fn value_token(v: u8) -> u16 {
    0x7ff0 + v as u16
}

impl Domain for StoreValue {
    type Value = u8;
    const SHAPE: &'static str = "value";
    fn decode(u: &mut Unstructured, _cx: &mut ArgCx) -> arbitrary::Result<u8> {
        Ok(1 + byte(u)? % 3)
    }
    fn encode(v: u8, out: &mut Vec<u8>) {
        out.push(v.saturating_sub(1));
    }
    fn print(v: u8, out: &mut ArgPrinter) {
        out.arg(v);
    }
    fn parse(args: &mut ArgParser, _cx: &mut ArgCx) -> Result<u8, ParseError> {
        page_num(args, "a stored value", 1, 3)
    }
    fn simpler(v: u8, _cx: &ArgCx) -> ArrayVec<u8, 4> {
        let mut out = ArrayVec::new();
        if v != 1 {
            out.push(1);
        }
        out
    }
    fn gen(g: &mut GenCx) -> u8 {
        use rand::Rng as _;
        g.rng.gen_range(1..=3)
    }
}
