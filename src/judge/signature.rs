//! Typed outcomes of the differential check: a finding's [`Signature`] (what
//! separates one cause of a finding from another: the dedup key, and what the
//! minimizer preserves) and its [`Verdict`]. `Display` prints the slugs every
//! corpus file and findings folder holds; `FromStr` reads them back, so nothing
//! ever splits a signature string by hand.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::holes::Hole;
use crate::judge::contracts::Contract;
use crate::model::{Backing, Entry, FileKind, MigKind, PteBits, State, Variant, VmFlags, Vma, Why};

/// What kind of finding a signature describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// The variants disagree.
    Divergence,
    /// Both variants agree on an unsafe PTE or break a contract alike.
    Oracle,
}

/// Comparison class of an entry: what the differential check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryClass {
    None,
    Ro,
    Rw,
    MigR,
    MigRx,
    MigW,
    Swap,
    Marker,
    Guard,
}

impl EntryClass {
    pub const ALL: [EntryClass; 9] = [
        EntryClass::None,
        EntryClass::Ro,
        EntryClass::Rw,
        EntryClass::MigR,
        EntryClass::MigRx,
        EntryClass::MigW,
        EntryClass::Swap,
        EntryClass::Marker,
        EntryClass::Guard,
    ];

    /// The class of an entry.
    #[inline]
    pub fn of(e: Entry) -> EntryClass {
        match e {
            Entry::None => EntryClass::None,
            Entry::Present { bits, .. } if bits.contains(PteBits::W) => EntryClass::Rw,
            Entry::Present { .. } => EntryClass::Ro,
            Entry::Migration { kind: MigKind::Read, .. } => EntryClass::MigR,
            Entry::Migration { kind: MigKind::ReadExclusive, .. } => EntryClass::MigRx,
            Entry::Migration { kind: MigKind::Write, .. } => EntryClass::MigW,
            Entry::Swap { .. } => EntryClass::Swap,
            Entry::Marker => EntryClass::Marker,
            Entry::Guard { .. } => EntryClass::Guard,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EntryClass::None => "none",
            EntryClass::Ro => "ro",
            EntryClass::Rw => "rw",
            EntryClass::MigR => "mig_r",
            EntryClass::MigRx => "mig_rx",
            EntryClass::MigW => "mig_w",
            EntryClass::Swap => "swap",
            EntryClass::Marker => "marker",
            EntryClass::Guard => "guard",
        }
    }

    fn parse_prefix(s: &str) -> Option<(EntryClass, &str)> {
        // Longest names first: `mig_rx` before `mig_r`.
        let mut all = EntryClass::ALL;
        all.sort_by_key(|c| std::cmp::Reverse(c.name().len()));
        all.into_iter().find_map(|c| s.strip_prefix(c.name()).map(|r| (c, r)))
    }
}

/// Mapping class of a VMA (or `none` without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MappingClass {
    None,
    AnonPrivate,
    FilePrivate,
    MemfdShared,
    ShmemShared,
    Ext4Shared,
    RamfsShared,
}

impl MappingClass {
    pub const ALL: [MappingClass; 7] = [
        MappingClass::None,
        MappingClass::AnonPrivate,
        MappingClass::FilePrivate,
        MappingClass::MemfdShared,
        MappingClass::ShmemShared,
        MappingClass::Ext4Shared,
        MappingClass::RamfsShared,
    ];

    /// The class of VMA `v` in state `s`.
    pub fn of(s: &State, v: &Vma) -> MappingClass {
        let shared = v.flags.contains(VmFlags::SHARED);
        match v.backing {
            Backing::Anon => MappingClass::AnonPrivate,
            Backing::File(_) if !shared => MappingClass::FilePrivate,
            Backing::File(f) => match (s.file_kind(f), f) {
                (FileKind::Shmem, 0) => MappingClass::MemfdShared,
                (FileKind::Shmem, _) => MappingClass::ShmemShared,
                (FileKind::Ext4, _) => MappingClass::Ext4Shared,
                (FileKind::Ramfs, _) => MappingClass::RamfsShared,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MappingClass::None => "none",
            MappingClass::AnonPrivate => "anon-private",
            MappingClass::FilePrivate => "file-private",
            MappingClass::MemfdShared => "memfd-shared",
            MappingClass::ShmemShared => "shmem-shared",
            MappingClass::Ext4Shared => "ext4-shared",
            MappingClass::RamfsShared => "ramfs-shared",
        }
    }
}

impl fmt::Display for MappingClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What differs (a divergence) or what both sides agree on (an oracle finding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// The write bit differs: `permissive` is the writable side; `rw_by` made it
    /// writable, `ro_by` made the other side read-only.
    W { permissive: Variant, rw_by: Why, ro_by: Why },
    /// The entry kinds differ.
    Entry { a: Variant, ca: EntryClass, b: Variant, cb: EntryClass },
    /// Both sides break `contracts` (or, unsafe/latent, hold a writable PTE that
    /// must trap for them); `rw_by` made the PTE writable (None: no PTE).
    Oracle { contracts: Contract, rw_by: Option<Why> },
}

/// The judgement of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// A divergence that costs a spurious fault at most.
    Benign,
    /// A divergence where one side breaks `contracts` and the other does not
    /// (with contracts off: the proxy's unsafe PTE); `on` names the breaking side
    /// when it is not the permissive one; `via` a hole it exists only through.
    Harmful { contracts: Contract, on: Option<Variant>, via: Option<Hole> },
    /// The proxy saw an unsafe PTE on one side (a divergence) or on both (an
    /// oracle finding), but no contract breaks.
    Latent(Contract),
    /// Both sides break `contracts` at the same page; `via` the hole whose patch removes it.
    Broken { contracts: Contract, via: Option<Hole> },
    /// Contracts off: both sides hold an unsafe PTE.
    Unsafe(Contract),
}

impl Verdict {
    /// The contracts (or the proxy's reasons) the verdict names; empty for benign.
    pub fn contracts(self) -> Contract {
        match self {
            Verdict::Benign => Contract::empty(),
            Verdict::Harmful { contracts, .. } | Verdict::Broken { contracts, .. } => contracts,
            Verdict::Latent(c) | Verdict::Unsafe(c) => c,
        }
    }

    /// The hole the finding exists only through.
    pub fn via(self) -> Option<Hole> {
        match self {
            Verdict::Harmful { via, .. } | Verdict::Broken { via, .. } => via,
            _ => None,
        }
    }

    /// The verdict with a hole to exist through.
    pub fn through(self, hole: Hole) -> Verdict {
        match self {
            Verdict::Harmful { contracts, on, .. } => Verdict::Harmful { contracts, on, via: Some(hole) },
            Verdict::Broken { contracts, .. } => Verdict::Broken { contracts, via: Some(hole) },
            v => v,
        }
    }

    /// A contract breaks on one side only, or on both: what a user loses.
    pub fn breaks(self) -> bool {
        matches!(self, Verdict::Harmful { .. } | Verdict::Broken { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Verdict::Benign => f.write_str("benign"),
            Verdict::Harmful { contracts, on, via } => {
                write!(f, "harmful-{}", contracts.letters())?;
                if let Some(v) = on {
                    write!(f, "-on-{v}")?;
                }
                if let Some(h) = via {
                    write!(f, "-via-{h}")?;
                }
                Ok(())
            }
            Verdict::Latent(c) => write!(f, "latent-{}", c.letters()),
            Verdict::Broken { contracts, via } => {
                write!(f, "broken-{}", contracts.letters())?;
                if let Some(h) = via {
                    write!(f, "-via-{h}")?;
                }
                Ok(())
            }
            Verdict::Unsafe(c) => write!(f, "unsafe-{}", c.letters()),
        }
    }
}

/// Contract letters (`U+S`) at the start of `s`, and the rest.
fn letters_prefix(s: &str) -> Option<(Contract, &str)> {
    let end = s.find(|c: char| c != '+' && !Contract::is_letter(c)).unwrap_or(s.len());
    let (l, rest) = if s.starts_with("none") { s.split_at(4) } else { s.split_at(end) };
    Some((Contract::parse(l)?, rest))
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Verdict, String> {
        let bad = || {
            format!("unknown verdict `{s}` (benign, harmful-X[-on-VARIANT][-via-HOLE], latent-X, broken-X[-via-HOLE], unsafe-X)")
        };
        if s == "benign" {
            return Ok(Verdict::Benign);
        }
        let (class, rest) = s.split_once('-').ok_or_else(bad)?;
        let (contracts, mut rest) = letters_prefix(rest).ok_or_else(bad)?;
        let mut on = None;
        let mut via = None;
        if class == "harmful" {
            if let Some(r) = rest.strip_prefix("-on-") {
                let (v, r) = Variant::parse_prefix(r).ok_or_else(bad)?;
                on = Some(v);
                rest = r;
            }
        }
        if matches!(class, "harmful" | "broken") {
            if let Some(r) = rest.strip_prefix("-via-") {
                via = Some(Hole::from_slug(r).ok_or_else(bad)?);
                rest = "";
            }
        }
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(match class {
            "harmful" => Verdict::Harmful { contracts, on, via },
            "latent" => Verdict::Latent(contracts),
            "broken" => Verdict::Broken { contracts, via },
            "unsafe" => Verdict::Unsafe(contracts),
            _ => return Err(bad()),
        })
    }
}

/// What separates one cause of a finding from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature {
    pub shape: Shape,
    /// The mapping class of the page's VMA.
    pub backing: MappingClass,
    /// Who last changed the VMA's `vm_page_prot`.
    pub prot_by: Why,
    /// Who last changed the VMA's VM_SOFTDIRTY.
    pub softdirty_by: Why,
    /// The read-only side carries uffd-wp.
    pub uffd_wp: bool,
    /// Soft-dirty tracking is active on the VMA (VM_SOFTDIRTY clear).
    pub softdirty_tracking: bool,
    pub verdict: Verdict,
}

impl Signature {
    pub fn kind(&self) -> Kind {
        match self.shape {
            Shape::Oracle { .. } => Kind::Oracle,
            Shape::W { .. } | Shape::Entry { .. } => Kind::Divergence,
        }
    }

    /// A file-name-safe slug, unique per signature (its `Display`).
    pub fn slug(&self) -> String {
        self.to_string()
    }

    /// A harmful divergence (a contract breaks on one side only, or with
    /// contracts off the proxy's unsafe PTE); latent and benign ones are not.
    pub fn harmful(&self) -> bool {
        matches!(self.verdict, Verdict::Harmful { .. })
    }

    /// The variant named first: the writable side (W), side a (entry).
    pub fn first_variant(&self) -> Option<Variant> {
        match self.shape {
            Shape::W { permissive, .. } => Some(permissive),
            Shape::Entry { a, .. } => Some(a),
            Shape::Oracle { .. } => None,
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            Shape::W { permissive, rw_by, ro_by } => {
                write!(f, "W.{permissive}-rw.by-{}.ro-{}", rw_by.slug(), ro_by.slug())?
            }
            Shape::Oracle { contracts, rw_by } => {
                write!(f, "oracle.{}.by-{}", contracts.letters(), rw_by.map_or("no-pte", Why::slug))?
            }
            Shape::Entry { a, ca, b, cb } => write!(f, "entry.{a}:{}-vs-{b}:{}", ca.name(), cb.name())?,
        }
        write!(f, ".{}.prot-{}.sd-{}", self.backing, self.prot_by.slug(), self.softdirty_by.slug())?;
        if self.uffd_wp {
            f.write_str(".uffd-wp")?;
        }
        if self.softdirty_tracking {
            f.write_str(".sd-tracking")?;
        }
        write!(f, ".{}", self.verdict)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serialize contract letters as `U+S` (serde's `serialize_with`).
pub fn ser_letters<S: Serializer>(c: &Contract, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.letters())
}

/// A cursor over a slug being parsed.
struct Cur<'a>(&'a str);

impl<'a> Cur<'a> {
    fn tag(&mut self, t: &str) -> Option<()> {
        self.0 = self.0.strip_prefix(t)?;
        Some(())
    }
    /// Up to the next `.` (which is consumed).
    fn word(&mut self) -> Option<&'a str> {
        let (w, rest) = self.0.split_once('.')?;
        self.0 = rest;
        Some(w)
    }
    fn why(&mut self) -> Option<Why> {
        Why::from_slug(self.word()?)
    }
    fn variant(&mut self) -> Option<Variant> {
        let (v, rest) = Variant::parse_prefix(self.0)?;
        self.0 = rest;
        Some(v)
    }
    fn class(&mut self) -> Option<EntryClass> {
        let (c, rest) = EntryClass::parse_prefix(self.0)?;
        self.0 = rest;
        Some(c)
    }
}

fn parse_signature(s: &str) -> Option<Signature> {
    let mut c = Cur(s);
    let shape = if c.tag("W.").is_some() {
        let permissive = c.variant()?;
        c.tag("-rw.by-")?;
        let rw_by = c.why()?;
        c.tag("ro-")?;
        let ro_by = c.why()?;
        Shape::W { permissive, rw_by, ro_by }
    } else if c.tag("oracle.").is_some() {
        let contracts = Contract::parse(c.word()?)?;
        c.tag("by-")?;
        let w = c.word()?;
        let rw_by = if w == "no-pte" { None } else { Some(Why::from_slug(w)?) };
        Shape::Oracle { contracts, rw_by }
    } else {
        c.tag("entry.")?;
        let a = c.variant()?;
        c.tag(":")?;
        let ca = c.class()?;
        c.tag("-vs-")?;
        let b = c.variant()?;
        c.tag(":")?;
        let cb = c.class()?;
        c.tag(".")?;
        Shape::Entry { a, ca, b, cb }
    };
    let backing = c.word()?;
    let backing = MappingClass::ALL.into_iter().find(|m| m.name() == backing)?;
    c.tag("prot-")?;
    let prot_by = c.why()?;
    c.tag("sd-")?;
    let softdirty_by = c.why()?;
    let uffd_wp = c.tag("uffd-wp.").is_some();
    let softdirty_tracking = c.tag("sd-tracking.").is_some();
    let verdict: Verdict = c.0.parse().ok()?;
    Some(Signature { shape, backing, prot_by, softdirty_by, uffd_wp, softdirty_tracking, verdict })
}

impl FromStr for Signature {
    type Err = String;
    /// Read a slug back (the exact inverse of `Display`).
    fn from_str(s: &str) -> Result<Signature, String> {
        match parse_signature(s) {
            Some(sig) if sig.to_string() == s => Ok(sig),
            _ => Err(format!(
                "not a signature: `{s}` (expected W.VARIANT-rw.by-FN.ro-FN..., entry.A:CLASS-vs-B:CLASS... or oracle.LETTERS.by-FN..., as ptediff writes them)"
            )),
        }
    }
}
