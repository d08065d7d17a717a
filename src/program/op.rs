//! Operations and programs.
//!
//! Every argument is stored already resolved into its small domain (a page is
//! `0..16`, a length `1..=4`, a process slot `0..3`), so every byte string decodes
//! to a valid program, the text form is lossless, and deleting an op never makes
//! the rest invalid: an op on a missing process or VMA simply fails, as the
//! syscall would.
//!
//! The byte encoding is one tag byte plus one byte per argument, each taken modulo
//! its domain. [`Op::encode`] is its exact inverse on canonical values, which is how
//! text programs become libFuzzer seeds.

use arbitrary::{Arbitrary, Unstructured};

use crate::model::types::{MAX_PROCS, NPAGES};

/// Longest program the decoders produce.
pub const MAX_OPS: usize = 256;

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
}

impl Advice {
    pub const ALL: [Advice; 8] = [
        Advice::DontNeed,
        Advice::Free,
        Advice::Random,
        Advice::Normal,
        Advice::DontFork,
        Advice::DoFork,
        Advice::WipeOnFork,
        Advice::KeepOnFork,
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
        }
    }
}

/// One operation. `p` is a process slot, `addr`/`new` pages, `len` pages (1..=4,
/// clipped at the end of the address space).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Mmap {
        p: u8,
        addr: u8,
        len: u8,
        prot: Prot,
        target: Target,
    },
    Munmap {
        p: u8,
        addr: u8,
        len: u8,
    },
    Mprotect {
        p: u8,
        addr: u8,
        len: u8,
        prot: Prot,
    },
    Madvise {
        p: u8,
        addr: u8,
        len: u8,
        advice: Advice,
    },
    Mlock {
        p: u8,
        addr: u8,
        len: u8,
    },
    Munlock {
        p: u8,
        addr: u8,
        len: u8,
    },
    Mremap {
        p: u8,
        addr: u8,
        len: u8,
        new: u8,
    },
    Read {
        p: u8,
        addr: u8,
    },
    Write {
        p: u8,
        addr: u8,
    },
    /// `echo 4 > /proc/pid/clear_refs`
    ClearRefs {
        p: u8,
    },
    /// UFFDIO_REGISTER with UFFDIO_REGISTER_MODE_WP
    UffdRegister {
        p: u8,
        addr: u8,
        len: u8,
    },
    UffdUnregister {
        p: u8,
        addr: u8,
        len: u8,
    },
    /// UFFDIO_WRITEPROTECT with MODE_WP
    UffdWp {
        p: u8,
        addr: u8,
        len: u8,
    },
    /// UFFDIO_WRITEPROTECT with mode 0 (resolve)
    UffdUnwp {
        p: u8,
        addr: u8,
        len: u8,
    },
    /// close() of the userfaultfd
    UffdClose {
        p: u8,
    },
    /// fork() of `parent` into slot `child`; `event_fork`: the parent's uffd has
    /// UFFD_FEATURE_EVENT_FORK.
    Fork {
        parent: u8,
        child: u8,
        event_fork: bool,
    },
    Exit {
        p: u8,
    },
    /// Migrate the folio mapped at addr (start + finish in one step).
    Migrate {
        p: u8,
        addr: u8,
    },
    /// Unmap the folio mapped at addr into migration entries.
    MigrateStart {
        p: u8,
        addr: u8,
    },
    /// Finish the migration whose entry is at addr.
    MigrateFinish {
        p: u8,
        addr: u8,
    },
    /// Reclaim the folio mapped at addr (swap-out / shmem swap / ext4 drop).
    Pageout {
        p: u8,
        addr: u8,
    },
    /// swapoff + swapon of the swap device.
    Swapoff,
    /// Write back the (ext4) folio mapped at addr.
    Writeback {
        p: u8,
        addr: u8,
    },
    /// NUMA hinting scan (change_prot_numa) of addr.
    NumaHint {
        p: u8,
        addr: u8,
    },
}

/// Number of op kinds (the tag domain).
pub const NUM_OP_KINDS: u8 = 24;

fn byte(u: &mut Unstructured) -> arbitrary::Result<u8> {
    u8::arbitrary(u)
}

impl Op {
    /// Stable kind index (the tag byte).
    pub fn kind(&self) -> u8 {
        match self {
            Op::Mmap { .. } => 0,
            Op::Munmap { .. } => 1,
            Op::Mprotect { .. } => 2,
            Op::Madvise { .. } => 3,
            Op::Mlock { .. } => 4,
            Op::Munlock { .. } => 5,
            Op::Mremap { .. } => 6,
            Op::Read { .. } => 7,
            Op::Write { .. } => 8,
            Op::ClearRefs { .. } => 9,
            Op::UffdRegister { .. } => 10,
            Op::UffdUnregister { .. } => 11,
            Op::UffdWp { .. } => 12,
            Op::UffdUnwp { .. } => 13,
            Op::UffdClose { .. } => 14,
            Op::Fork { .. } => 15,
            Op::Exit { .. } => 16,
            Op::Migrate { .. } => 17,
            Op::MigrateStart { .. } => 18,
            Op::MigrateFinish { .. } => 19,
            Op::Pageout { .. } => 20,
            Op::Swapoff => 21,
            Op::Writeback { .. } => 22,
            Op::NumaHint { .. } => 23,
        }
    }

    /// The op's name in program text.
    pub fn name(&self) -> &'static str {
        OP_NAMES[self.kind() as usize]
    }

    /// Encode as bytes that [`Op::arbitrary`] decodes back to `self`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind());
        match *self {
            Op::Mmap { p, addr, len, prot, target } => {
                out.extend([p, addr, len - 1, prot.0]);
                match target {
                    Target::Anon => out.push(0),
                    Target::SharedAnon => out.push(1),
                    Target::File { file, shared, pgoff } => {
                        let f = match file {
                            FileName::Memfd => 0,
                            FileName::Ext4 => 1,
                            FileName::Ramfs => 2,
                        };
                        out.push(2 + f * 2 + shared as u8);
                        // pgoff byte: values below 128 mean "pgoff = addr" when
                        // they agree (see decode); store the explicit form.
                        out.push(128 + pgoff);
                    }
                }
            }
            Op::Munmap { p, addr, len }
            | Op::Mlock { p, addr, len }
            | Op::Munlock { p, addr, len }
            | Op::UffdRegister { p, addr, len }
            | Op::UffdUnregister { p, addr, len }
            | Op::UffdWp { p, addr, len }
            | Op::UffdUnwp { p, addr, len } => out.extend([p, addr, len - 1]),
            Op::Mprotect { p, addr, len, prot } => out.extend([p, addr, len - 1, prot.0]),
            Op::Madvise { p, addr, len, advice } => {
                let a = Advice::ALL.iter().position(|&x| x == advice).unwrap() as u8;
                out.extend([p, addr, len - 1, a]);
            }
            Op::Mremap { p, addr, len, new } => out.extend([p, addr, len - 1, new]),
            Op::Read { p, addr }
            | Op::Write { p, addr }
            | Op::Migrate { p, addr }
            | Op::MigrateStart { p, addr }
            | Op::MigrateFinish { p, addr }
            | Op::Pageout { p, addr }
            | Op::Writeback { p, addr }
            | Op::NumaHint { p, addr } => out.extend([p, addr]),
            Op::ClearRefs { p } | Op::UffdClose { p } | Op::Exit { p } => out.push(p),
            Op::Fork { parent, child, event_fork } => out.extend([parent, child, event_fork as u8]),
            Op::Swapoff => {}
        }
    }
}

/// Op names in tag order.
pub const OP_NAMES: [&str; NUM_OP_KINDS as usize] = [
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "mlock",
    "munlock",
    "mremap",
    "read",
    "write",
    "clear_refs",
    "uffd_register",
    "uffd_unregister",
    "uffd_wp",
    "uffd_unwp",
    "uffd_close",
    "fork",
    "exit",
    "migrate",
    "migrate_start",
    "migrate_finish",
    "pageout",
    "swapoff",
    "writeback",
    "numa_hint",
];

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let np = MAX_PROCS as u8;
        let pages = NPAGES as u8;
        let tag = byte(u)? % NUM_OP_KINDS;
        let p = |u: &mut Unstructured<'a>| byte(u).map(|b| b % np);
        let pg = |u: &mut Unstructured<'a>| byte(u).map(|b| b % pages);
        let ln = |u: &mut Unstructured<'a>| byte(u).map(|b| 1 + b % 4);
        let pr = |u: &mut Unstructured<'a>| byte(u).map(|b| Prot(b % 8));
        Ok(match tag {
            0 => {
                let (p, addr, len, prot) = (p(u)?, pg(u)?, ln(u)?, pr(u)?);
                let t = byte(u)? % 8;
                let target = match t {
                    0 => Target::Anon,
                    1 => Target::SharedAnon,
                    _ => {
                        let file = match (t - 2) / 2 {
                            0 => FileName::Memfd,
                            1 => FileName::Ext4,
                            _ => FileName::Ramfs,
                        };
                        let shared = (t - 2) % 2 == 1;
                        // Bias towards pgoff == addr (identity file layout), so
                        // adjacent mappings of one file are pgoff-contiguous and
                        // can merge, as in the thread's scenario.
                        let b = byte(u)?;
                        let pgoff = if b < 128 { addr } else { (b - 128) % pages };
                        Target::File { file, shared, pgoff }
                    }
                };
                Op::Mmap { p, addr, len, prot, target }
            }
            1 => Op::Munmap { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            2 => Op::Mprotect { p: p(u)?, addr: pg(u)?, len: ln(u)?, prot: pr(u)? },
            3 => Op::Madvise { p: p(u)?, addr: pg(u)?, len: ln(u)?, advice: Advice::ALL[(byte(u)? % 8) as usize] },
            4 => Op::Mlock { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            5 => Op::Munlock { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            6 => Op::Mremap { p: p(u)?, addr: pg(u)?, len: ln(u)?, new: pg(u)? },
            7 => Op::Read { p: p(u)?, addr: pg(u)? },
            8 => Op::Write { p: p(u)?, addr: pg(u)? },
            9 => Op::ClearRefs { p: p(u)? },
            10 => Op::UffdRegister { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            11 => Op::UffdUnregister { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            12 => Op::UffdWp { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            13 => Op::UffdUnwp { p: p(u)?, addr: pg(u)?, len: ln(u)? },
            14 => Op::UffdClose { p: p(u)? },
            15 => Op::Fork { parent: p(u)?, child: p(u)?, event_fork: byte(u)? & 1 == 1 },
            16 => Op::Exit { p: p(u)? },
            17 => Op::Migrate { p: p(u)?, addr: pg(u)? },
            18 => Op::MigrateStart { p: p(u)?, addr: pg(u)? },
            19 => Op::MigrateFinish { p: p(u)?, addr: pg(u)? },
            20 => Op::Pageout { p: p(u)?, addr: pg(u)? },
            21 => Op::Swapoff,
            22 => Op::Writeback { p: p(u)?, addr: pg(u)? },
            _ => Op::NumaHint { p: p(u)?, addr: pg(u)? },
        })
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
