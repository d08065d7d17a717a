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
    /// Before v6.3 the UFFDIO_WRITEPROTECT resolve rebuilds PTEs from the VMA's
    /// flags, ignoring writenotify and soft-dirty ("mm/uffd: rely on
    /// vma->vm_page_prot in uffd_wp_range()").
    UffdWpResolve,
    /// Before v6.3 `pte_mkuffd_wp()` sets the uffd-wp bit without write-protecting
    /// ("mm/uffd: always wr-protect pte in pte|pmd_mkuffd_wp()").
    MkuffdWp,
    /// Before v6.3 NUMA hinting keeps the write bit in a protnone PTE and restores
    /// it without asking uffd-wp or soft-dirty ("mm: remove savedwrite").
    NumaSavedwrite,
    /// v6.1 fork copies a uffd-wp marker into a child VMA without uffd-wp
    /// (B3, "mm/uffd: fix pte marker when fork() without fork event", 6.1.y).
    ForkMarker,
    /// v6.1 mremap keeps uffd-wp bits of a source registered without EVENT_REMAP
    /// ("mm: clear uffd-wp PTE/PMD state on mremap()", v6.13, 6.1.y).
    MremapUffdWp,
    /// x86 `pmd_modify()` drops a PMD's dirty bit (v6.6 until the v7.3-rc4 fix
    /// "x86/mm: Fix user-space data loss with MADV_FREE and THP"; Debian's 6.18.15).
    PmdModifyDirty,
    /// KSM's `replace_page()` rebuilds the replaced PTE from `vm_page_prot`,
    /// dropping its uffd-wp bit (every tree) and soft-dirty bit (all but Debian's
    /// 6.12.118).
    KsmReplacePage,
    /// 6.18.15's full PAGEMAP_SCAN reports no unpopulated page WRITTEN (its
    /// WRITTEN-only fast path does; 6.12.118 and 7.3.4 report them in uffd-wp VMAs).
    ScanUnpopulated,
    /// MADV_GUARD_INSTALL over a uffd-wp marker of a file VMA restarts for
    /// ever: its walk stops at the marker and its zap keeps it (v6.13+; the
    /// candidate fix in patches/guard-install-uffd-wp-marker,
    /// [`Patches::GUARD_INSTALL_OVER_UFFD_WP`]).
    GuardInstallUffdWp,
    /// UFFDIO_WRITEPROTECT skips a guard marker, so the page is not protected
    /// once MADV_GUARD_REMOVE empties the PTE (v6.13+; closed in the model by a
    /// guard that carries uffd-wp, [`Patches::GUARD_KEEPS_UFFD_WP`], in no tree).
    UffdWpSkipsGuard,
}

impl Hole {
    /// Every hole, in the order the counterfactual tries them.
    /// Every hole, in the order the counterfactual tries them (the first whose
    /// patch removes the harm takes it).
    pub const ALL: [Hole; 13] = [
        Hole::ClearRefs,
        Hole::VmaMerge,
        Hole::UffdWpWritenotify,
        Hole::UffdWpResolve,
        Hole::MkuffdWp,
        Hole::NumaSavedwrite,
        Hole::ForkMarker,
        Hole::MremapUffdWp,
        Hole::PmdModifyDirty,
        Hole::KsmReplacePage,
        Hole::ScanUnpopulated,
        Hole::GuardInstallUffdWp,
        Hole::UffdWpSkipsGuard,
    ];

    /// Its name in verdicts (`-via-clear-refs`) and causes (`hole.clear-refs`).
    pub fn slug(self) -> &'static str {
        match self {
            Hole::ClearRefs => "clear-refs",
            Hole::VmaMerge => "vma-merge",
            Hole::UffdWpWritenotify => "uffd-wp-writenotify",
            Hole::UffdWpResolve => "uffd-wp-resolve",
            Hole::MkuffdWp => "mkuffd-wp",
            Hole::NumaSavedwrite => "numa-savedwrite",
            Hole::ForkMarker => "fork-marker",
            Hole::MremapUffdWp => "mremap-uffd-wp",
            Hole::PmdModifyDirty => "pmd-modify-dirty",
            Hole::KsmReplacePage => "ksm-replace-page",
            Hole::ScanUnpopulated => "pagemap-scan-unpopulated",
            Hole::GuardInstallUffdWp => "guard-install-uffd-wp",
            Hole::UffdWpSkipsGuard => "uffd-wp-skips-guard",
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
            Hole::UffdWpResolve => {
                "the pre-v6.3 uffd-wp resolve rebuilding PTEs from the VMA flags (fixed in v6.3 by using vm_page_prot)"
            }
            Hole::MkuffdWp => "the pre-v6.3 pte_mkuffd_wp() not write-protecting (fixed in v6.3)",
            Hole::NumaSavedwrite => "the pre-v6.3 NUMA savedwrite restoring the write bit (removed in v6.3)",
            Hole::ForkMarker => "v6.1's fork copying a uffd-wp marker into a child without uffd-wp (fixed by B3)",
            Hole::MremapUffdWp => "v6.1's mremap keeping uffd-wp without EVENT_REMAP (fixed in v6.13 and 6.1.y)",
            Hole::PmdModifyDirty => "x86 pmd_modify() dropping a THP's dirty bit (v6.6 until v7.3-rc4, Cc: stable)",
            Hole::KsmReplacePage => "KSM's replace_page() dropping the replaced PTE's uffd-wp and soft-dirty bits",
            Hole::ScanUnpopulated => "6.18.15's full PAGEMAP_SCAN reporting no unpopulated page WRITTEN",
            Hole::GuardInstallUffdWp => "MADV_GUARD_INSTALL restarting for ever over a uffd-wp marker (v6.13+)",
            Hole::UffdWpSkipsGuard => "UFFDIO_WRITEPROTECT skipping a guard marker (v6.13+)",
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
            Hole::UffdWpResolve => {
                "before v6.3 the UFFDIO_WRITEPROTECT resolve rebuilds PTEs from the VMA flags: shared pages come back \
                 writable without writenotify and without soft-dirty (fixed by \"mm/uffd: rely on vma->vm_page_prot \
                 in uffd_wp_range()\", v6.3)"
            }
            Hole::MkuffdWp => {
                "before v6.3 pte_mkuffd_wp() marks a PTE uffd-wp without write-protecting it, so a writable PTE can \
                 carry the mark and take stores silently (fixed by \"mm/uffd: always wr-protect pte in \
                 pte|pmd_mkuffd_wp()\", v6.3)"
            }
            Hole::NumaSavedwrite => {
                "before v6.3 NUMA hinting keeps the write bit of a protnone PTE (savedwrite) and do_numa_page() \
                 restores it without asking uffd-wp or soft-dirty (removed in v6.3)"
            }
            Hole::ForkMarker => {
                "v6.1 fork copies a uffd-wp marker into a child VMA that is not uffd-wp (WARN; fixed by B3 in 6.1.y)"
            }
            Hole::MremapUffdWp => {
                "v6.1 mremap keeps uffd-wp bits and markers of a source registered without EVENT_REMAP (fixed by \
                 \"mm: clear uffd-wp PTE/PMD state on mremap()\", v6.13, 6.1.y)"
            }
            Hole::PmdModifyDirty => {
                "x86 pmd_modify() drops a THP's dirty bit (mprotect, uffd-wp, NUMA hinting: change_huge_pmd), so \
                 reclaim discards a lazy-free THP written since MADV_FREE: the data is lost (v6.6 until \"x86/mm: \
                 Fix user-space data loss with MADV_FREE and THP\", v7.3-rc4, Cc: stable; Debian's 6.18.15)"
            }
            Hole::KsmReplacePage => {
                "a KSM merge rebuilds the PTE of the page it replaces from vm_page_prot (replace_page()): its uffd-wp \
                 bit is lost on every kernel, so a store to a write-protected page completes without a message (a \
                 snapshot misses the write), and its soft-dirty bit on all but Debian's 6.12.118 (a dump skips the \
                 page)"
            }
            Hole::ScanUnpopulated => {
                "6.18.15's full PAGEMAP_SCAN gives an unpopulated page of a uffd-wp VMA no category, so a page \
                 stored to and then zapped is not PAGE_IS_WRITTEN (a write watch misses the store; its WRITTEN-only \
                 fast path, 6.12.118 and 7.3.4 report it)"
            }
            Hole::GuardInstallUffdWp => {
                "MADV_GUARD_INSTALL over a uffd-wp marker of a file VMA (a write-protected shmem page, populated or \
                 not) never returns: its walk stops at the marker, its zap keeps the marker (and leaves one where a \
                 protected page was), and after three rounds it restarts the call, for ever (6.13 and later)"
            }
            Hole::UffdWpSkipsGuard => {
                "UFFDIO_WRITEPROTECT skips a guard marker (\"any access faults anyway\"), so once MADV_GUARD_REMOVE \
                 empties the PTE a store to the page completes without a message: on shmem its content is still \
                 in the page cache, and the snapshot misses the write (6.13 and later)"
            }
        }
    }

    /// Is the hole closed on this side (by its kernel or by a patch)?
    pub fn closed(self, c: &Config) -> bool {
        match self {
            Hole::ClearRefs => c.clear_refs == ClearRefs::WrprotectMigration,
            Hole::VmaMerge => c.sticky_softdirty_merges(),
            Hole::UffdWpWritenotify => c.b1_uffd_writenotify(),
            Hole::UffdWpResolve => c.uffd_wp_range_uses_vm_page_prot(),
            Hole::MkuffdWp => c.mkuffd_wp_wrprotects(),
            Hole::NumaSavedwrite => !c.numa_savedwrite(),
            Hole::ForkMarker => c.b3_fork_marker(),
            Hole::MremapUffdWp => c.mremap_clears_uffd_wp(),
            Hole::PmdModifyDirty => !c.pmd_modify_drops_dirty(),
            Hole::KsmReplacePage => c.ksm_replace_keeps_uffd_wp(),
            Hole::ScanUnpopulated => c.pagemap_scan_unpopulated() != crate::model::ScanUnpopulated::FastPathOnly,
            Hole::GuardInstallUffdWp => !c.kernel.guard_regions() || c.guard_install_over_uffd_wp(),
            Hole::UffdWpSkipsGuard => !c.kernel.guard_regions() || c.guard_keeps_uffd_wp(),
        }
    }

    /// One side with the hole patched.
    fn patch_side(self, c: Config) -> Config {
        match self {
            Hole::ClearRefs => Config { clear_refs: ClearRefs::WrprotectMigration, ..c },
            Hole::VmaMerge => Config { patches: c.patches | Patches::STICKY_SOFTDIRTY, ..c },
            Hole::UffdWpWritenotify => Config { patches: c.patches | Patches::UFFD_WRITENOTIFY, ..c },
            Hole::UffdWpResolve => Config { patches: c.patches | Patches::UFFD_WP_RESOLVE, ..c },
            Hole::MkuffdWp => Config { patches: c.patches | Patches::MKUFFD_WP_WRPROTECT, ..c },
            Hole::NumaSavedwrite => Config { patches: c.patches | Patches::NUMA_NO_SAVEDWRITE, ..c },
            Hole::ForkMarker => Config { patches: c.patches | Patches::FORK_MARKER, ..c },
            Hole::MremapUffdWp => Config { patches: c.patches | Patches::MREMAP_UFFD_WP, ..c },
            Hole::PmdModifyDirty => Config { patches: c.patches | Patches::PMD_MODIFY_KEEPS_DIRTY, ..c },
            Hole::KsmReplacePage => Config { patches: c.patches | Patches::KSM_REPLACE_KEEPS_BITS, ..c },
            Hole::ScanUnpopulated => Config { patches: c.patches | Patches::SCAN_UNPOPULATED_WRITTEN, ..c },
            Hole::GuardInstallUffdWp => Config { patches: c.patches | Patches::GUARD_INSTALL_OVER_UFFD_WP, ..c },
            Hole::UffdWpSkipsGuard => Config { patches: c.patches | Patches::GUARD_KEEPS_UFFD_WP, ..c },
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
