//! Root causes: findings (signature buckets) grouped by the mechanism behind
//! them, so a run that writes sixty buckets shows a handful of causes.
//!
//! The rule, from a finding's signature alone (so a cause is the same in every
//! run, seed and folder):
//!
//! 1. **A hole.** A finding whose harm disappears when a hole common to every
//!    variant is patched in the model on both sides (its verdict ends in
//!    `-via-HOLE`: `-via-clear-refs`, `-via-vma-merge`,
//!    `-via-uffd-wp-writenotify`) has that hole as its cause: its oracle
//!    violations and every divergence harmful only through it, whatever made
//!    the page writable, whichever variant happened to sit on it, whichever
//!    mapping.
//! 2. **Harmful divergences**: the contracts broken, the variant that breaks
//!    them (the writable side, or the one named by `-on-VARIANT`) and the
//!    mechanism: `vma-merge` when a soft-dirty break's VMA got its
//!    VM_SOFTDIRTY from a merge (mlock, madvise, mprotect, uffd (un)register,
//!    copy_vma), `no-pte` when the page has no PTE, `keeps-uffd-wp` when the
//!    breaking side kept uffd-wp the other side dropped, else the kernel
//!    function that made its PTE writable (or read-only, or the entry class).
//! 3. **Broken oracle contracts** (every variant): the contracts and the
//!    mechanism as above.
//! 4. **Latent** findings (the proxy's early warnings: an unsafe PTE but no
//!    contract breaks): one cause per contract set, divergences apart from
//!    oracle violations. **Benign** divergences (a spurious fault at most): one
//!    cause per writable variant.
//!
//! What made the other side read-only, the mapping class, who set
//! `vm_page_prot` and (for benign ones) the function only split buckets, never
//! causes.
//!
//! Distinct harmful mechanisms never share a cause: they differ in the hole, the
//! contract, the breaking variant or the mechanism.

use serde::Serialize;

use super::check::{Kind, Signature};
use crate::model::ghost::Contract;

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

/// Split `harmful-S-on-full-restore-via-clear-refs` into (`harmful`, `S`,
/// Some(`full-restore`), Some(`clear-refs`)).
fn parse_verdict(v: &str) -> (&str, &str, Option<&str>, Option<&str>) {
    let (class, rest) = v.split_once('-').unwrap_or((v, ""));
    let (rest, via) = match rest.split_once("-via-") {
        Some((l, h)) => (l, Some(h)),
        None => (rest, None),
    };
    let (letters, on) = match rest.split_once("-on-") {
        Some((l, side)) => (l, Some(side)),
        None => (rest, None),
    };
    (class, letters, on, via)
}

/// "uffd-wp, soft-dirty" for `U+S` (the verdict's letters as given if they do not parse).
fn contract_words(letters: &str) -> String {
    Contract::parse(letters).map_or_else(|| letters.to_string(), Contract::words)
}

/// The entry class of `side` in an entry signature's `A:class-vs-B:class`.
fn entry_class<'a>(permissive: &'a str, side: &str) -> Option<&'a str> {
    let (a, b) = permissive.split_once("-vs-")?;
    [a, b].into_iter().find_map(|x| x.split_once(':').filter(|(v, _)| *v == side).map(|(_, c)| c))
}

/// How the breaking side came to break, from the signature: a merge handed its
/// VMA VM_SOFTDIRTY-clear flags, it has no PTE, it kept uffd-wp where the other
/// side dropped it, or the kernel function that made its PTE writable.
fn mechanism(sig: &Signature, letters: &str, breaker: &str, on_other_side: bool) -> (String, String) {
    if letters.contains('S') && MERGE_CALLERS.contains(&sig.softdirty_by) {
        return ("vma-merge".into(), "a VMA merge handed the page's VMA VM_SOFTDIRTY-clear flags".into());
    }
    if sig.rw_by == "no-pte" {
        return ("no-pte".into(), "the page has no PTE".into());
    }
    let keeps_uffd_wp = match sig.what {
        "W" => on_other_side && sig.uffd_wp,
        "entry" => entry_class(&sig.permissive, breaker) == Some("marker"),
        _ => false,
    };
    if keeps_uffd_wp {
        return (
            "keeps-uffd-wp".into(),
            "it keeps the page's uffd-wp (a read-only PTE or a marker) where the other side dropped it".into(),
        );
    }
    match sig.what {
        "W" if on_other_side => (format!("read-only-{}", sig.ro_by), format!("{} made its PTE read-only", sig.ro_by)),
        "entry" => {
            let class = entry_class(&sig.permissive, breaker).unwrap_or("-");
            (format!("entry-{class}"), format!("its entry is {class} where the other side's differs"))
        }
        _ => (sig.rw_by.to_string(), format!("{} made the page writable", sig.rw_by)),
    }
}

/// The cause of a finding with this signature.
pub fn cause_of(sig: &Signature) -> Cause {
    let (class, letters, on, via) = parse_verdict(&sig.verdict);
    // The variant named first: the writable side (W), side a (entry).
    let first = sig.permissive.split(':').next().unwrap_or("").to_string();
    if let Some(hole) = via {
        // Which variant happened to sit on the hole is incidental: the hole is
        // common to every variant, and patching it removes the difference.
        return Cause { key: format!("hole.{hole}"), title: hole_title(hole), harmful: true };
    }
    match (sig.kind, class) {
        (Kind::Divergence, "harmful") => {
            let breaker = on.map_or(first.clone(), str::to_string);
            let (mech, words) = mechanism(sig, letters, &breaker, on.is_some());
            Cause {
                key: format!("harmful.{letters}.{breaker}.{mech}"),
                title: format!("{breaker} breaks {} where the other side does not: {words}", contract_words(letters)),
                harmful: true,
            }
        }
        (Kind::Divergence, "latent") => Cause {
            key: format!("latent.{letters}"),
            title: format!(
                "one variant holds a writable PTE a store must trap on ({}), but no contract breaks (the proxy's \
                 early warning)",
                contract_words(letters)
            ),
            harmful: false,
        },
        (Kind::Divergence, _) => Cause {
            key: format!("benign.{first}"),
            title: format!(
                "{first} is writable or mapped where the other side is not: at most a spurious fault (the buckets \
                 say which function)"
            ),
            harmful: false,
        },
        (Kind::Oracle, "broken") => {
            let (mech, words) = mechanism(sig, letters, "", false);
            Cause {
                key: format!("broken.{letters}.{mech}"),
                title: format!("every variant breaks {}: {words}", contract_words(letters)),
                harmful: true,
            }
        }
        (Kind::Oracle, c) => Cause {
            key: format!("{c}.oracle.{letters}"),
            title: format!(
                "every variant holds a writable PTE a store must trap on ({}){}",
                contract_words(letters),
                if c == "unsafe" { "" } else { ", but no contract breaks" }
            ),
            harmful: c == "unsafe",
        },
    }
}
