//! Root causes: findings (signature buckets) grouped by the mechanism behind
//! them, so a run that writes sixty buckets shows a handful of causes.
//!
//! The rule, from a finding's signature alone (so a cause is the same in every
//! run, seed and folder):
//!
//! 1. **A hole.** A finding whose harm disappears when a hole common to every
//!    variant is patched in the model on both sides (its verdict ends in
//!    `-via-HOLE`, see [`Hole`]) has that hole as its cause: its oracle
//!    violations and every divergence harmful only through it, whatever made
//!    the page writable, whichever variant happened to sit on it, whichever
//!    mapping.
//! 2. **Harmful divergences**: the contracts broken, the variant that breaks
//!    them (the writable side, or the one named by `-on-VARIANT`) and the
//!    [`Mechanism`].
//! 3. **Broken oracle contracts** (every variant): the contracts and the
//!    mechanism as above.
//! 4. **Latent** findings (the proxy's early warnings: an unsafe PTE but no
//!    contract breaks): one cause per contract set, divergences apart from
//!    oracle violations. **Benign** divergences (a spurious fault at most): one
//!    cause per writable variant.
//!
//! What made the other side read-only, the mapping class, who set
//! `vm_page_prot` and (for benign ones) the function only split buckets, never
//! causes. Distinct harmful mechanisms never share a cause: they differ in the
//! hole, the contract, the breaking variant or the mechanism.

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::holes::Hole;
use super::signature::{EntryClass, Shape, Signature, Verdict};
use crate::judge::contracts::Contract;
use crate::model::{Variant, Why};

/// How the breaking side came to break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// A merge handed the page's VMA VM_SOFTDIRTY-clear flags (a soft-dirty
    /// break whose VMA got its VM_SOFTDIRTY from mlock, madvise, mprotect, uffd
    /// (un)register or copy_vma: that provenance is only recorded by a merge).
    VmaMerge,
    /// The page has no PTE.
    NoPte,
    /// It kept uffd-wp (a read-only PTE or a marker) the other side dropped.
    KeepsUffdWp,
    /// The breaking side is the read-only one; this made its PTE read-only.
    ReadOnly(Why),
    /// Its entry is of this class where the other side's differs.
    Entry(EntryClass),
    /// This made the page writable.
    Writable(Why),
}

impl Mechanism {
    fn of(sig: &Signature, contracts: Contract, breaker: Option<Variant>, on_other_side: bool) -> Mechanism {
        let merge = matches!(
            sig.softdirty_by,
            Why::MlockFixup
                | Why::MadviseUpdateVma
                | Why::MprotectFixup
                | Why::UffdRegister
                | Why::UffdUnregister
                | Why::CopyVma
        );
        if contracts.contains(Contract::S) && merge {
            return Mechanism::VmaMerge;
        }
        let entry_class = |a: Variant, ca: EntryClass, b: Variant, cb: EntryClass| {
            [(a, ca), (b, cb)].into_iter().find(|(v, _)| Some(*v) == breaker).map(|(_, c)| c)
        };
        match sig.shape {
            Shape::Oracle { rw_by: None, .. } => Mechanism::NoPte,
            Shape::Oracle { rw_by: Some(w), .. } => Mechanism::Writable(w),
            Shape::W { .. } if on_other_side && sig.uffd_wp => Mechanism::KeepsUffdWp,
            Shape::W { ro_by, .. } if on_other_side => Mechanism::ReadOnly(ro_by),
            Shape::W { rw_by, .. } => Mechanism::Writable(rw_by),
            Shape::Entry { a, ca, b, cb } => match entry_class(a, ca, b, cb) {
                Some(EntryClass::Marker) => Mechanism::KeepsUffdWp,
                Some(c) => Mechanism::Entry(c),
                None => Mechanism::Entry(EntryClass::None),
            },
        }
    }

    fn key(self) -> String {
        match self {
            Mechanism::VmaMerge => "vma-merge".into(),
            Mechanism::NoPte => "no-pte".into(),
            Mechanism::KeepsUffdWp => "keeps-uffd-wp".into(),
            Mechanism::ReadOnly(w) => format!("read-only-{}", w.name()),
            Mechanism::Entry(c) => format!("entry-{}", c.name()),
            Mechanism::Writable(w) => w.name().to_string(),
        }
    }

    fn words(self) -> String {
        match self {
            Mechanism::VmaMerge => "a VMA merge handed the page's VMA VM_SOFTDIRTY-clear flags".into(),
            Mechanism::NoPte => "the page has no PTE".into(),
            Mechanism::KeepsUffdWp => {
                "it keeps the page's uffd-wp (a read-only PTE or a marker) where the other side dropped it".into()
            }
            Mechanism::ReadOnly(w) => format!("{} made its PTE read-only", w.name()),
            Mechanism::Entry(c) => format!("its entry is {} where the other side's differs", c.name()),
            Mechanism::Writable(w) => format!("{} made the page writable", w.name()),
        }
    }

    fn parse(s: &str) -> Option<Mechanism> {
        Some(match s {
            "vma-merge" => Mechanism::VmaMerge,
            "no-pte" => Mechanism::NoPte,
            "keeps-uffd-wp" => Mechanism::KeepsUffdWp,
            _ => {
                if let Some(w) = s.strip_prefix("read-only-") {
                    Mechanism::ReadOnly(Why::ALL.into_iter().find(|x| x.name() == w)?)
                } else if let Some(c) = s.strip_prefix("entry-") {
                    Mechanism::Entry(EntryClass::ALL.into_iter().find(|x| x.name() == c)?)
                } else {
                    Mechanism::Writable(Why::ALL.into_iter().find(|x| x.name() == s)?)
                }
            }
        })
    }
}

/// A root cause (its `Display` is its stable key, e.g. `hole.clear-refs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// `hole.HOLE`
    Hole(Hole),
    /// `harmful.LETTERS.VARIANT.MECHANISM`
    Harmful { contracts: Contract, breaker: Variant, mech: Mechanism },
    /// `broken.LETTERS.MECHANISM`
    Broken { contracts: Contract, mech: Mechanism },
    /// `latent.LETTERS` (divergences)
    Latent(Contract),
    /// `latent.oracle.LETTERS`
    OracleLatent(Contract),
    /// `unsafe.oracle.LETTERS` (contracts off)
    OracleUnsafe(Contract),
    /// `benign.VARIANT`
    Benign(Variant),
}

impl Cause {
    /// The cause of a finding with this signature.
    pub fn of(sig: &Signature) -> Cause {
        if let Some(hole) = sig.verdict.via() {
            // Which variant happened to sit on the hole is incidental: the hole is
            // common to every variant, and patching it removes the difference.
            return Cause::Hole(hole);
        }
        let first = sig.first_variant();
        match (sig.shape, sig.verdict) {
            (Shape::Oracle { .. }, Verdict::Broken { contracts, .. }) => {
                Cause::Broken { contracts, mech: Mechanism::of(sig, contracts, None, false) }
            }
            (Shape::Oracle { .. }, Verdict::Unsafe(c)) => Cause::OracleUnsafe(c),
            (Shape::Oracle { .. }, v) => Cause::OracleLatent(v.contracts()),
            (_, Verdict::Harmful { contracts, on, .. }) => {
                let breaker = on.or(first).expect("a divergence names its variants");
                Cause::Harmful { contracts, breaker, mech: Mechanism::of(sig, contracts, Some(breaker), on.is_some()) }
            }
            (_, Verdict::Latent(c)) => Cause::Latent(c),
            (_, Verdict::Benign | Verdict::Broken { .. } | Verdict::Unsafe(_)) => {
                Cause::Benign(first.expect("a divergence names its variants"))
            }
        }
    }

    /// Harmful divergences and broken oracle contracts (and, contracts off, the
    /// proxy's unsafe oracle PTEs): what a user loses.
    pub fn harmful(&self) -> bool {
        matches!(self, Cause::Hole(_) | Cause::Harmful { .. } | Cause::Broken { .. } | Cause::OracleUnsafe(_))
    }

    /// One line saying what it is.
    pub fn title(&self) -> String {
        let w = |c: Contract| c.words();
        match *self {
            Cause::Hole(h) => h.title().to_string(),
            Cause::Harmful { contracts, breaker, mech } => {
                format!("{breaker} breaks {} where the other side does not: {}", w(contracts), mech.words())
            }
            Cause::Broken { contracts, mech } => format!("every variant breaks {}: {}", w(contracts), mech.words()),
            Cause::Latent(c) => format!(
                "one variant holds a writable PTE a store must trap on ({}), but no contract breaks (the proxy's \
                 early warning)",
                w(c)
            ),
            Cause::OracleLatent(c) => {
                format!("every variant holds a writable PTE a store must trap on ({}), but no contract breaks", w(c))
            }
            Cause::OracleUnsafe(c) => format!("every variant holds a writable PTE a store must trap on ({})", w(c)),
            Cause::Benign(v) => format!(
                "{v} is writable or mapped where the other side is not: at most a spurious fault (the buckets say \
                 which function)"
            ),
        }
    }
}

/// The cause of a finding with this signature (see [`Cause::of`]).
pub fn cause_of(sig: &Signature) -> Cause {
    Cause::of(sig)
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::Hole(h) => write!(f, "hole.{h}"),
            Cause::Harmful { contracts, breaker, mech } => {
                write!(f, "harmful.{}.{breaker}.{}", contracts.letters(), mech.key())
            }
            Cause::Broken { contracts, mech } => write!(f, "broken.{}.{}", contracts.letters(), mech.key()),
            Cause::Latent(c) => write!(f, "latent.{}", c.letters()),
            Cause::OracleLatent(c) => write!(f, "latent.oracle.{}", c.letters()),
            Cause::OracleUnsafe(c) => write!(f, "unsafe.oracle.{}", c.letters()),
            Cause::Benign(v) => write!(f, "benign.{v}"),
        }
    }
}

impl FromStr for Cause {
    type Err = String;
    fn from_str(s: &str) -> Result<Cause, String> {
        let bad = || {
            format!("unknown cause `{s}` (hole.HOLE, harmful.LETTERS.VARIANT.MECHANISM, broken.LETTERS.MECHANISM, latent.LETTERS, latent.oracle.LETTERS, unsafe.oracle.LETTERS, benign.VARIANT)")
        };
        let letters = |l: &str| Contract::parse(l).ok_or_else(bad);
        let (class, rest) = s.split_once('.').ok_or_else(bad)?;
        let c = match class {
            "hole" => Cause::Hole(Hole::from_slug(rest).ok_or_else(bad)?),
            "benign" => Cause::Benign(rest.parse().map_err(|_| bad())?),
            "latent" => match rest.strip_prefix("oracle.") {
                Some(l) => Cause::OracleLatent(letters(l)?),
                None => Cause::Latent(letters(rest)?),
            },
            "unsafe" => Cause::OracleUnsafe(letters(rest.strip_prefix("oracle.").ok_or_else(bad)?)?),
            "broken" => {
                let (l, m) = rest.split_once('.').ok_or_else(bad)?;
                Cause::Broken { contracts: letters(l)?, mech: Mechanism::parse(m).ok_or_else(bad)? }
            }
            "harmful" => {
                let (l, rest) = rest.split_once('.').ok_or_else(bad)?;
                let (breaker, m) = Variant::parse_prefix(rest).ok_or_else(bad)?;
                let m = m.strip_prefix('.').ok_or_else(bad)?;
                Cause::Harmful { contracts: letters(l)?, breaker, mech: Mechanism::parse(m).ok_or_else(bad)? }
            }
            _ => return Err(bad()),
        };
        if c.to_string() != s {
            return Err(bad());
        }
        Ok(c)
    }
}

impl Serialize for Cause {
    /// `{key, title, harmful}`, as `findings.json` has always had it.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Cause", 3)?;
        st.serialize_field("key", &self.to_string())?;
        st.serialize_field("title", &self.title())?;
        st.serialize_field("harmful", &self.harmful())?;
        st.end()
    }
}
