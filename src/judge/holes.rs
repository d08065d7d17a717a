//! Holes common to every restore variant that the model can patch, for causal
//! verdicts: a divergence whose contract difference disappears when a hole is
//! patched on both sides is harmful only through that hole, and an oracle
//! violation that disappears is that hole's. Each hole knows the patch it
//! applies to a pair ([`Hole::patch`]), so a counterfactual is `hole.patch(pair)`.

use serde::Serialize;

use crate::check::Pair;
use crate::model::{ClearRefs, Config, Patches};

/// A hole the counterfactual can patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Hole {
    /// `clear_soft_dirty()` leaves a writable migration entry writable (every
    /// kernel up to v7.3; the candidate fix in patches/clear-refs-wrprotect-migration-entry).
    ClearRefs,
    /// A VMA merge hands the survivor VM_SOFTDIRTY-clear flags (until v6.19's
    /// sticky VM_SOFTDIRTY, "mm: propagate VM_SOFTDIRTY on merge").
    VmaMerge,
    /// v6.1 shmem VMAs registered for uffd-wp keep a writable `vm_page_prot`
    /// (B1, 51d3d5eb74ff, v6.2-rc4 and 6.1.y).
    UffdWpWritenotify,
}

impl Hole {
    /// Every hole, in the order the counterfactual tries them.
    pub const ALL: [Hole; 3] = [Hole::ClearRefs, Hole::VmaMerge, Hole::UffdWpWritenotify];

    /// Its name in verdicts (`-via-clear-refs`) and causes (`hole.clear-refs`).
    pub fn slug(self) -> &'static str {
        match self {
            Hole::ClearRefs => "clear-refs",
            Hole::VmaMerge => "vma-merge",
            Hole::UffdWpWritenotify => "uffd-wp-writenotify",
        }
    }

    /// The hole with this slug.
    pub fn from_slug(s: &str) -> Option<Hole> {
        Hole::ALL.into_iter().find(|h| h.slug() == s)
    }

    /// What it is, as a finding's title says "only through ...".
    pub fn what(self) -> &'static str {
        match self {
            Hole::ClearRefs => "clear_refs leaving a writable migration entry writable (common to every variant)",
            Hole::VmaMerge => {
                "a VMA merge handing the survivor VM_SOFTDIRTY-clear flags (fixed in v6.19 by sticky VM_SOFTDIRTY)"
            }
            Hole::UffdWpWritenotify => {
                "v6.1 shmem VMAs registered for uffd-wp keeping a writable vm_page_prot (fixed by B1)"
            }
        }
    }

    /// Its root cause's title.
    pub fn title(self) -> &'static str {
        match self {
            Hole::ClearRefs => {
                "clear_refs leaves a writable migration entry writable; the restore maps the page writable and not \
                 soft-dirty, so later stores are lost to soft-dirty (every variant, every kernel)"
            }
            Hole::UffdWpWritenotify => {
                "a v6.1 shmem VMA registered for uffd-wp keeps a writable vm_page_prot, so mprotect, NUMA hinting, \
                 migration restore and faults map write-protected pages writable (fixed by B1 51d3d5eb74ff in \
                 v6.2-rc4 and 6.1.y)"
            }
            Hole::VmaMerge => {
                "a VMA merge hands the survivor VM_SOFTDIRTY-clear flags (mlock, madvise, mprotect, uffd, mremap): \
                 pages changed since clear_refs read clean (until v6.19's sticky VM_SOFTDIRTY)"
            }
        }
    }

    /// Is the hole closed on this side (by its kernel or by a patch)?
    pub fn closed(self, c: &Config) -> bool {
        match self {
            Hole::ClearRefs => c.clear_refs == ClearRefs::WrprotectMigration,
            Hole::VmaMerge => c.sticky_softdirty_merges(),
            Hole::UffdWpWritenotify => c.b1_uffd_writenotify(),
        }
    }

    /// One side with the hole patched.
    fn patch_side(self, c: Config) -> Config {
        match self {
            Hole::ClearRefs => Config { clear_refs: ClearRefs::WrprotectMigration, ..c },
            Hole::VmaMerge => Config { patches: c.patches | Patches::STICKY_SOFTDIRTY, ..c },
            Hole::UffdWpWritenotify => Config { patches: c.patches | Patches::UFFD_WRITENOTIFY, ..c },
        }
    }

    /// The pair with the hole patched on both sides (None: a side has it closed
    /// already, so there is nothing to ask).
    pub fn patch(self, pair: &Pair) -> Option<Pair> {
        match self {
            // The clear_refs fix is a variant of its own: a pair with it on either
            // side already asks the question.
            Hole::ClearRefs if self.closed(&pair.a) || self.closed(&pair.b) => None,
            _ if self.closed(&pair.a) && self.closed(&pair.b) => None,
            _ => Some(pair.with_sides(self.patch_side(pair.a), self.patch_side(pair.b))),
        }
    }
}

impl std::fmt::Display for Hole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}
