//! Operations and programs: **the op table**. Every op is declared once, in
//! [`define_ops!`] below: its name in program text, its tag byte, its generator
//! weight, whether a real kernel can run it from user space, how the generator
//! places it, where the engine's focus goes after it, the op it shrinks to, and
//! its fields with their argument domains ([`super::args`]). From that one row
//! come the enum, [`OpKind`], names, tags, the byte decoding and encoding, the
//! text form (both ways), the shrinkers and the generator's choices. The model
//! ([`crate::model::step`]) and `emit-c` each keep one exhaustive match over
//! [`Op`], so adding a row makes the compiler name every place that must handle it.
//!
//! The byte encoding is one tag byte plus each field's bytes (one per field,
//! two for a file mapping's target), each taken modulo its domain, so every byte
//! string decodes to a program; [`Op::encode`] is its exact inverse on canonical
//! values, which is how text programs become libFuzzer seeds.

use arbitrary::{Arbitrary, Unstructured};
use arrayvec::ArrayVec;

pub use super::args::{Advice, FileName, Prot, ScanMode, Target, UffdFeatures};
use super::args::{ArgCx, Child, Dest, Domain, EventFork, Len, Page, Proc, Retarget, StoreValue};
use super::text::{ArgParser, ArgPrinter, ParseError};
use crate::search::generate::GenCx;

/// Longest program the decoders produce.
pub const MAX_OPS: usize = 256;

/// How the generator places an op beyond drawing each field from its domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Each field from its domain.
    Fields,
    /// Changes VMA flags: half of the time over a whole VMA, so it can merge
    /// with a neighbour (the kernel merges only ranges that reach a VMA's edges).
    WholeVma,
    /// mmap: often right next to an existing VMA, half of those mergeable with it.
    NextToVma,
    /// At a migration entry of the process if there is one.
    MigrationEntry,
    /// Usually a child process (exit of the only process ends everything).
    ChildFirst,
}

/// Where the engine's focus (the page the next op most likely acts on) goes after an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FocusRule {
    /// To the op's process and page.
    Page,
    /// To where the range went (mremap's destination).
    Moved,
    /// To no process in particular (fork, exit), keeping the page.
    AnyProcess,
    /// Unchanged (the op has no page).
    Keep,
}

/// What the table says about one op kind.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    pub kind: OpKind,
    /// Its name in program text.
    pub name: &'static str,
    /// Its tag byte (stable: byte programs and libFuzzer corpora depend on it).
    pub tag: u8,
    /// How often the generator draws it (relative).
    pub weight: u32,
    /// A real kernel can run it deterministically from user space (`emit-c`).
    pub realizable: bool,
    pub placement: Placement,
    pub focus: FocusRule,
    /// The argument shapes, for error messages (`p, addr, len`).
    pub shape: &'static [&'static str],
    /// Least and most text arguments.
    pub arity: (usize, usize),
}

/// The `shrinks to` column of [`define_ops!`]: push the op of that kind with
/// the same fields.
macro_rules! shrink_to {
    ($out:ident, [], { $($f:ident),* }) => {};
    ($out:ident, [$to:ident], { $($f:ident),* }) => {
        let _ = $out.try_push(Op::$to { $($f),* });
    };
}

macro_rules! define_ops {
    ($(
        $(#[$doc:meta])*
        $name:ident = $text:literal, tag $tag:literal, weight $w:literal, realizable $real:literal,
            $place:ident, focus $focus:ident $(, shrinks to $shrink:ident)?
            { $($field:ident : $dom:ty),* $(,)? }
    )*) => {
        /// One operation (see the module documentation for the table).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Op {
            $( $(#[$doc])* $name { $($field: <$dom as Domain>::Value),* }, )*
        }

        /// The kind of an op, without its arguments.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind {
            $( $name, )*
        }

        /// Every op kind, in table order.
        pub const OP_KINDS: &[OpKind] = &[ $( OpKind::$name, )* ];

        /// The table rows, in table order.
        pub const OP_TABLE: &[OpInfo] = &[ $(
            OpInfo {
                kind: OpKind::$name,
                name: $text,
                tag: $tag,
                weight: $w,
                realizable: $real,
                placement: Placement::$place,
                focus: FocusRule::$focus,
                shape: &[ $( <$dom as Domain>::SHAPE ),* ],
                arity: (0 $( + <$dom as Domain>::ARITY.0 )*, 0 $( + <$dom as Domain>::ARITY.1 )*),
            },
        )* ];

        impl OpKind {
            /// Its row of the table.
            pub fn info(self) -> &'static OpInfo {
                &OP_TABLE[self as usize]
            }

            /// Parse the text arguments of an op of this kind.
            pub(crate) fn parse_args(self, args: &mut ArgParser) -> Result<Op, ParseError> {
                match self { $(
                    OpKind::$name => {
                        #[allow(unused_mut, unused_variables)]
                        let mut cx = ArgCx::default();
                        $( let $field = <$dom as Domain>::parse(args, &mut cx)?; )*
                        Ok(Op::$name { $($field),* })
                    }
                )* }
            }

            /// Decode the fields of an op of this kind from bytes.
            fn decode(self, u: &mut Unstructured) -> arbitrary::Result<Op> {
                match self { $(
                    OpKind::$name => {
                        #[allow(unused_mut, unused_variables)]
                        let mut cx = ArgCx::default();
                        $( let $field = <$dom as Domain>::decode(u, &mut cx)?; )*
                        Ok(Op::$name { $($field),* })
                    }
                )* }
            }

            /// Draw the fields of an op of this kind (see `crate::search::generate`).
            pub(crate) fn gen_fields(self, g: &mut GenCx) -> Op {
                match self { $(
                    OpKind::$name => {
                        $( let $field = <$dom as Domain>::gen(g); )*
                        Op::$name { $($field),* }
                    }
                )* }
            }
        }

        impl Op {
            /// Its kind.
            #[inline]
            pub fn kind(&self) -> OpKind {
                match self { $( Op::$name { .. } => OpKind::$name, )* }
            }

            /// Encode as bytes that [`Op::arbitrary`] decodes back to `self`.
            pub fn encode(&self, out: &mut Vec<u8>) {
                match *self { $(
                    Op::$name { $($field),* } => {
                        out.push($tag);
                        $( <$dom as Domain>::encode($field, out); )*
                    }
                )* }
            }

            /// Print the arguments (program text).
            pub(crate) fn print_args(&self, out: &mut ArgPrinter) {
                match *self { $(
                    Op::$name { $($field),* } => { $( <$dom as Domain>::print($field, out); )* }
                )* }
            }

            /// The process the op runs in (its first process field; fork: the parent).
            #[inline]
            pub fn process(&self) -> Option<u8> {
                match *self { $(
                    #[allow(unused_variables)]
                    Op::$name { $($field),* } => {
                        #[allow(unused_mut)]
                        let mut r = None;
                        $( if r.is_none() { r = <$dom as Domain>::proc_of($field); } )*
                        r
                    }
                )* }
            }

            /// The process and page the op acts on (its first process and page fields), if it has both.
            #[inline]
            pub fn page(&self) -> Option<(u8, u8)> {
                match *self { $(
                    #[allow(unused_variables)]
                    Op::$name { $($field),* } => {
                        #[allow(unused_mut)]
                        let (mut p, mut a) = (None, None);
                        $(
                            if p.is_none() { p = <$dom as Domain>::proc_of($field); }
                            if a.is_none() { a = <$dom as Domain>::page_of($field); }
                        )*
                        Some((p?, a?))
                    }
                )* }
            }

            /// What the fields say about the op (its process, page and length).
            pub fn cx(&self) -> ArgCx {
                #[allow(unused_mut)]
                let mut cx = ArgCx::default();
                match *self { $(
                    Op::$name { $($field),* } => { $( <$dom as Domain>::note($field, &mut cx); )* }
                )* }
                cx
            }

            /// Simpler ops, simplest first: each field shrunk by its domain, then
            /// the op it shrinks to (the minimizer keeps a candidate only if the
            /// finding survives).
            pub fn simpler(&self) -> ArrayVec<Op, 16> {
                let mut out = ArrayVec::new();
                let cx = self.cx();
                match *self { $(
                    Op::$name { $($field),* } => {
                        $(
                            for v in <$dom as Domain>::simpler($field, &cx) {
                                let mut o = *self;
                                if let Op::$name { $field: ref mut x, .. } = o {
                                    *x = v;
                                }
                                let _ = out.try_push(o);
                            }
                        )*
                        shrink_to!(out, [$($shrink)?], { $($field),* });
                    }
                )* }
                out
            }

            /// The nearest op a real kernel can run (each field made realizable;
            /// the kind itself must be realizable too, see [`OpInfo::realizable`]).
            pub fn realizable_fields(&self) -> Op {
                match *self { $(
                    Op::$name { $($field),* } => Op::$name { $( $field: <$dom as Domain>::realizable($field) ),* },
                )* }
            }

            /// The op moved to `[addr, addr + len)` (its page and length fields).
            pub fn retarget(&self, addr: u8, len: u8) -> Op {
                #[allow(unused_mut, unused_variables)]
                let mut to = Retarget { addr: Some(addr), len: Some(len) };
                match *self { $(
                    Op::$name { $($field),* } => Op::$name { $( $field: <$dom as Domain>::retarget($field, &mut to) ),* },
                )* }
            }
        }

        /// The table's tags are `0..N`, each once (checked when the crate compiles).
        const _: () = {
            let tags = [ $( $tag ),* ];
            let mut seen = [false; OP_TABLE.len()];
            let mut i = 0;
            while i < tags.len() {
                let t = tags[i] as usize;
                assert!(t < OP_TABLE.len(), "an op tag is outside 0..N");
                assert!(!seen[t], "two ops share a tag");
                seen[t] = true;
                i += 1;
            }
        };
    };
}

define_ops! {
    /// mmap() of `len` pages at `addr`.
    Mmap = "mmap", tag 0, weight 12, realizable true, NextToVma, focus Page
        { p: Proc, addr: Page, len: Len, prot: Prot, target: Target }
    Munmap = "munmap", tag 1, weight 2, realizable true, Fields, focus Page
        { p: Proc, addr: Page, len: Len }
    Mprotect = "mprotect", tag 2, weight 6, realizable true, WholeVma, focus Page
        { p: Proc, addr: Page, len: Len, prot: Prot }
    Madvise = "madvise", tag 3, weight 5, realizable true, WholeVma, focus Page
        { p: Proc, addr: Page, len: Len, advice: Advice }
    Mlock = "mlock", tag 4, weight 2, realizable true, WholeVma, focus Page
        { p: Proc, addr: Page, len: Len }
    Munlock = "munlock", tag 5, weight 2, realizable true, WholeVma, focus Page
        { p: Proc, addr: Page, len: Len }
    /// mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of `len` pages from `addr` to `new`.
    Mremap = "mremap", tag 6, weight 2, realizable true, Fields, focus Moved
        { p: Proc, addr: Page, len: Len, new: Dest }
    /// A user load.
    Read = "read", tag 7, weight 6, realizable true, Fields, focus Page
        { p: Proc, addr: Page }
    /// A user store.
    Write = "write", tag 8, weight 10, realizable true, Fields, focus Page, shrinks to Read
        { p: Proc, addr: Page }
    /// `echo 4 > /proc/pid/clear_refs`
    ClearRefs = "clear_refs", tag 9, weight 5, realizable true, Fields, focus Keep
        { p: Proc }
    /// UFFDIO_REGISTER with UFFDIO_REGISTER_MODE_WP
    UffdRegister = "uffd_register", tag 10, weight 5, realizable true, WholeVma, focus Page
        { p: Proc, addr: Page, len: Len }
    UffdUnregister = "uffd_unregister", tag 11, weight 2, realizable true, WholeVma, focus Page
        { p: Proc, addr: Page, len: Len }
    /// UFFDIO_WRITEPROTECT with MODE_WP
    UffdWp = "uffd_wp", tag 12, weight 5, realizable true, Fields, focus Page
        { p: Proc, addr: Page, len: Len }
    /// UFFDIO_WRITEPROTECT with mode 0 (resolve)
    UffdUnwp = "uffd_unwp", tag 13, weight 3, realizable true, Fields, focus Page
        { p: Proc, addr: Page, len: Len }
    /// close() of the userfaultfd
    UffdClose = "uffd_close", tag 14, weight 1, realizable true, Fields, focus Keep
        { p: Proc }
    /// fork() of `parent` into slot `child`; `event_fork`: the parent's uffd has
    /// UFFD_FEATURE_EVENT_FORK.
    Fork = "fork", tag 15, weight 3, realizable true, Fields, focus AnyProcess
        { parent: Proc, child: Child, event_fork: EventFork }
    Exit = "exit", tag 16, weight 1, realizable true, ChildFirst, focus AnyProcess
        { p: Proc }
    /// Migrate the folio mapped at addr (start + finish in one step).
    Migrate = "migrate", tag 17, weight 8, realizable true, Fields, focus Page
        { p: Proc, addr: Page }
    /// Unmap the folio mapped at addr into migration entries.
    MigrateStart = "migrate_start", tag 18, weight 3, realizable false, Fields, focus Page, shrinks to Migrate
        { p: Proc, addr: Page }
    /// Finish the migration whose entry is at addr.
    MigrateFinish = "migrate_finish", tag 19, weight 3, realizable false, MigrationEntry, focus Page
        { p: Proc, addr: Page }
    /// Reclaim the folio mapped at addr (swap-out / shmem swap / ext4 drop).
    Pageout = "pageout", tag 20, weight 4, realizable true, Fields, focus Page
        { p: Proc, addr: Page }
    /// swapoff + swapon of the swap device.
    Swapoff = "swapoff", tag 21, weight 2, realizable true, Fields, focus Keep {}
    /// Write back the (ext4) folio mapped at addr.
    Writeback = "writeback", tag 22, weight 3, realizable false, Fields, focus Page
        { p: Proc, addr: Page }
    /// NUMA hinting scan (change_prot_numa) of addr.
    NumaHint = "numa_hint", tag 23, weight 3, realizable false, Fields, focus Page
        { p: Proc, addr: Page }
    /// userfaultfd() + UFFDIO_API asking for `features`: the process's uffd,
    /// which otherwise opens at the first uffd_register with none of them.
    UffdApi = "uffd_api", tag 24, weight 3, realizable true, Fields, focus Keep
        { p: Proc, features: UffdFeatures }
    /// ioctl(PAGEMAP_SCAN) over `len` pages at `addr` (fs/proc/task_mmu.c).
    PagemapScan = "pagemap_scan", tag 25, weight 4, realizable true, Fields, focus Page
        { p: Proc, addr: Page, len: Len, mode: ScanMode }
    /// A user store of a small value (1..=3): stores of one value give pages
    /// equal content, which KSM merges.
    WriteVal = "write_val", tag 26, weight 4, realizable true, Fields, focus Page
        { p: Proc, addr: Page, val: StoreValue }
    /// ksmd runs until two more full scans have passed (`/sys/kernel/mm/ksm/run`),
    /// merging the pages of equal content of MADV_MERGEABLE VMAs.
    KsmMerge = "ksm_merge", tag 27, weight 3, realizable true, Fields, focus Keep {}
}

/// Number of op kinds (the tag domain).
pub const NUM_OP_KINDS: u8 = OP_TABLE.len() as u8;

/// Tag byte -> kind (the tags are a permutation of `0..N`, checked at compile time).
const TAG_KINDS: [OpKind; OP_TABLE.len()] = {
    let mut t = [OpKind::Mmap; OP_TABLE.len()];
    let mut i = 0;
    while i < OP_TABLE.len() {
        t[OP_TABLE[i].tag as usize] = OP_TABLE[i].kind;
        i += 1;
    }
    t
};

/// The kind with this tag byte (taken modulo the number of kinds).
#[inline]
pub fn kind_of_tag(b: u8) -> OpKind {
    TAG_KINDS[(b % NUM_OP_KINDS) as usize]
}

impl OpKind {
    /// The kind named `name` in program text.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OP_TABLE.iter().find(|r| r.name == name).map(|r| r.kind)
    }
    pub fn name(self) -> &'static str {
        self.info().name
    }
}

impl Op {
    /// The op's name in program text.
    pub fn name(&self) -> &'static str {
        self.kind().info().name
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let kind = kind_of_tag(u8::arbitrary(u)?);
        kind.decode(u)
    }
}

/// A program: a list of ops run from the initial state (process `p0`, no VMAs).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Program {
    pub ops: Vec<Op>,
}

impl Program {
    pub fn new(ops: Vec<Op>) -> Program {
        Program { ops }
    }

    /// Decode ops until the bytes run out (no per-element continuation byte).
    pub fn from_bytes(data: &[u8]) -> Program {
        let mut u = Unstructured::new(data);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Program { ops }
    }

    /// Bytes that [`Program::from_bytes`] decodes back to this program.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ops.len() * 6);
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}

impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(Program { ops })
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}
