//! Root causes: findings (signature buckets) grouped by the mechanism behind
//! them, so a run that writes sixty buckets shows a handful of causes.
//!
//! The rule, from a finding's signature alone (so a cause is the same in every
//! run, seed and folder):
//!
//! 1. A finding whose harm disappears when a hole common to every variant is
//!    patched in the model on both sides (its verdict ends in `-via-HOLE`:
//!    `-via-clear-refs`, `-via-vma-merge`) has that hole as its cause, whatever
//!    made the page writable, whichever mapping: one cause for the hole's oracle
//!    violations, one per variant for divergences harmful only through it.
//! 2. Otherwise the cause is its kind and verdict class (harmful / latent /
//!    benign divergence; broken / latent oracle violation) with the contracts,
//!    the permissive variant (divergences), and for harmful and broken findings
//!    the mechanism (latent ones, the proxy's early warnings, are not split by
//!    it; benign ones by the function alone): `vma-merge` when
//!    a soft-dirty break's VMA got its VM_SOFTDIRTY from a merge (mlock,
//!    madvise, mprotect, uffd (un)register, copy_vma), `no-pte` when the broken
//!    page has no PTE, else the kernel function that made the PTE writable.
//!    What made the other side read-only, the mapping class and who set
//!    `vm_page_prot` only split buckets, never causes.
//!
//! Distinct harmful mechanisms never share a cause: they differ in the hole, the
//! contract, the variant or the function that made the page writable.

use serde::Serialize;

use super::check::{Kind, Signature};

/// A root cause: a stable key and a one-line title.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Cause {
    pub key: String,
    pub title: String,
    /// Harmful divergences and broken oracle contracts.
    pub harmful: bool,
}

/// The functions that can hand a VMA new VM_SOFTDIRTY through a merge (their
/// provenance on VM_SOFTDIRTY is only recorded when it changes, i.e. by a merge).
const MERGE_CALLERS: [&str; 6] = [
    "mlock_fixup",
    "madvise_update_vma",
    "mprotect_fixup",
    "userfaultfd_register",
    "userfaultfd_unregister",
    "copy_vma",
];

/// What the known common holes are called in titles.
fn hole_title(hole: &str) -> String {
    match hole {
        "clear-refs" => "clear_refs leaves a writable migration entry writable; the restore maps the page writable \
                         and not soft-dirty, so later stores are lost to soft-dirty (every variant, every kernel)"
            .into(),
        "uffd-wp-writenotify" => "a v6.1 shmem VMA registered for uffd-wp keeps a writable vm_page_prot, so \
                                  mprotect, NUMA hinting, migration restore and faults map write-protected pages \
                                  writable (fixed by B1 51d3d5eb74ff in v6.2-rc4 and 6.1.y)"
            .into(),
        "vma-merge" => "a VMA merge hands the survivor VM_SOFTDIRTY-clear flags (mlock, madvise, mprotect, uffd, \
                        mremap): pages changed since clear_refs read clean (until v6.19's sticky VM_SOFTDIRTY)"
            .into(),
        h => format!("the hole `{h}`"),
    }
}

/// Split `harmful-S-via-clear-refs` into (`harmful`, `S`, Some(`clear-refs`)).
fn parse_verdict(v: &str) -> (&str, &str, Option<&str>) {
    let (class, rest) = v.split_once('-').unwrap_or((v, ""));
    let (letters, via) = match rest.split_once("-via-") {
        Some((l, h)) => (l, Some(h)),
        None => (rest, None),
    };
    (class, letters, via)
}

fn contract_words(letters: &str) -> String {
    letters
        .split('+')
        .map(|l| match l {
            "U" => "uffd-wp",
            "S" => "soft-dirty",
            "C" => "COW",
            "N" => "writenotify",
            "P" => "mprotect",
            x => x,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cause of a finding with this signature.
pub fn cause_of(sig: &Signature) -> Cause {
    let (class, letters, via) = parse_verdict(&sig.verdict);
    let variant = sig.permissive.split(':').next().unwrap_or("").to_string();
    if let Some(hole) = via {
        return match sig.kind {
            Kind::Oracle => Cause { key: format!("hole.{hole}"), title: hole_title(hole), harmful: true },
            // A variant whose harm the hole alone makes possible stays apart from
            // the hole's own violations.
            Kind::Divergence => Cause {
                key: format!("hole.{hole}.{variant}"),
                title: format!("{variant} breaks {} only through: {}", contract_words(letters), hole_title(hole)),
                harmful: true,
            },
        };
    }
    let mechanism = if letters.contains('S') && MERGE_CALLERS.contains(&sig.softdirty_by) {
        "vma-merge".to_string()
    } else if sig.rw_by == "no-pte" {
        "no-pte".to_string()
    } else {
        sig.rw_by.to_string()
    };
    let mech_words = match mechanism.as_str() {
        "vma-merge" => "a VMA merge handed the page's VMA VM_SOFTDIRTY-clear flags".to_string(),
        "no-pte" => "the page has no PTE".to_string(),
        m => format!("{m} made the page writable"),
    };
    match (sig.kind, class) {
        (Kind::Divergence, "harmful") => Cause {
            key: format!("harmful.{letters}.{variant}.{mechanism}"),
            title: format!("{variant} breaks {} where the other side does not: {mech_words}", contract_words(letters)),
            harmful: true,
        },
        (Kind::Divergence, "latent") => Cause {
            key: format!("latent.{letters}.{variant}"),
            title: format!(
                "{variant} holds a writable PTE a store must trap on ({}), no contract breaks: {mech_words}",
                contract_words(letters)
            ),
            harmful: false,
        },
        (Kind::Divergence, _) => Cause {
            key: format!("benign.{variant}.{}", sig.rw_by),
            title: format!(
                "{variant} writable where the other side is read-only (a spurious fault): {} made it writable",
                sig.rw_by
            ),
            harmful: false,
        },
        (Kind::Oracle, "broken") => Cause {
            key: format!("broken.{letters}.{mechanism}"),
            title: format!("every variant breaks {}: {mech_words}", contract_words(letters)),
            harmful: true,
        },
        (Kind::Oracle, c) => Cause {
            key: format!("{c}.oracle.{letters}"),
            title: format!(
                "every variant holds a writable PTE a store must trap on ({}), no contract breaks: {mech_words}",
                contract_words(letters)
            ),
            harmful: c == "unsafe",
        },
    }
}
