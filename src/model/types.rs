//! Plain-data model state: page-table entries, VMAs, folios, files, swap slots.
//!
//! Everything here is `Copy` or fixed-capacity so that a whole [`State`] is one
//! allocation-free value that is cheap to clone, compare and hash.

use bitflags::bitflags;
use tinyvec::ArrayVec;

/// Virtual pages per process (addresses are page numbers `0..NPAGES`).
pub const NPAGES: usize = 16;
/// Process slots (`p0` is the initial process; `fork` fills the others).
pub const MAX_PROCS: usize = 3;
/// VMAs per process; an mmap/split that would exceed it fails with ENOMEM.
pub const MAX_VMAS: usize = 8;
/// Folio pool size; allocation failure makes the fault fail (VM_FAULT_OOM).
pub const MAX_FOLIOS: usize = 64;
/// File objects: the three named files plus shared-anonymous shmem objects.
pub const MAX_FILES: usize = 6;
/// Swap slots of the (single) anon swap device.
pub const MAX_SLOTS: usize = 32;
/// Migrations that may be in flight at once (between migrate_start and migrate_finish).
pub const MAX_PENDING: usize = 4;
/// Model pages per PMD (a huge page): the kernel's 512 PTEs of a PMD are
/// [`HPAGE_PMD_NR`] model pages, aligned (see `huge_memory` and the README).
pub const HPAGE_PMD_NR: u8 = 4;
/// PMDs per process (page groups `[4g, 4g + 4)`).
pub const NPMDS: usize = NPAGES / HPAGE_PMD_NR as usize;
/// The pages of a real PMD the model does not show (512 - 4), see [`Mm::tail`].
pub const UNMODELLED_PER_PMD: u32 = 512 - HPAGE_PMD_NR as u32;

/// A content token: what a page holds. 0 is zero-filled; every user store
/// writes a fresh one ([`State::next_token`]).
pub type Token = u16;

/// Folio id: index into [`State::folios`]; [`ZERO_PAGE`] is the shared zero page.
pub type FolioId = u8;
/// The shared zero page (not a normal page: `vm_normal_page()` returns NULL).
pub const ZERO_PAGE: FolioId = u8::MAX;
/// "No folio" in page-cache slots and swap slots.
pub const NO_FOLIO: FolioId = u8::MAX - 1;

bitflags! {
    /// `vma->vm_flags` (include/linux/mm.h), the subset that matters here.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct VmFlags: u32 {
        const READ = 1 << 0;
        const WRITE = 1 << 1;
        const EXEC = 1 << 2;
        const SHARED = 1 << 3;
        const MAYWRITE = 1 << 4;
        const MAYSHARE = 1 << 5;
        /// VM_SOFTDIRTY: set = "everything is soft-dirty", i.e. tracking *off*.
        const SOFTDIRTY = 1 << 6;
        const UFFD_WP = 1 << 7;
        const LOCKED = 1 << 8;
        /// VM_RAND_READ (MADV_RANDOM / MADV_NORMAL).
        const RAND_READ = 1 << 9;
        /// VM_DONTCOPY (MADV_DONTFORK / MADV_DOFORK).
        const DONTCOPY = 1 << 10;
        /// VM_WIPEONFORK (MADV_WIPEONFORK / MADV_KEEPONFORK).
        const WIPEONFORK = 1 << 11;
        /// VM_ACCOUNT: private writable memory charged at mmap/mprotect; never cleared.
        const ACCOUNT = 1 << 12;
        /// VM_HUGEPAGE (MADV_HUGEPAGE): THP allowed here with `enabled=madvise`.
        const HUGEPAGE = 1 << 13;
        /// VM_NOHUGEPAGE (MADV_NOHUGEPAGE): no THP, not even by MADV_COLLAPSE.
        const NOHUGEPAGE = 1 << 14;
        /// VM_MERGEABLE (MADV_MERGEABLE): ksmd may merge its anonymous pages.
        const MERGEABLE = 1 << 15;
        /// VM_MAYBE_GUARD (v6.19): MADV_GUARD_INSTALL ran in this VMA; sticky
        /// over merges, and fork copies the page tables of a VMA carrying it.
        const MAYBE_GUARD = 1 << 16;
    }
}

bitflags! {
    /// `vma->vm_page_prot` as the x86 protection_map produces it (pkeys and cache bits elided).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PageProt: u8 {
        /// _PAGE_USER/_PAGE_PRESENT; absent = PAGE_NONE (protnone).
        const USER = 1 << 0;
        /// _PAGE_RW.
        const RW = 1 << 1;
        /// !_PAGE_NX.
        const EXEC = 1 << 2;
    }
}

bitflags! {
    /// Bits of a present x86 PTE.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PteBits: u8 {
        /// _PAGE_RW: hardware write permission.
        const W = 1 << 0;
        /// _PAGE_DIRTY (hardware dirty).
        const D = 1 << 1;
        /// _PAGE_ACCESSED.
        const A = 1 << 2;
        /// _PAGE_SOFT_DIRTY (software).
        const SD = 1 << 3;
        /// _PAGE_UFFD_WP (software).
        const UW = 1 << 4;
        /// _PAGE_PROTNONE (PROT_NONE vma or NUMA hinting).
        const PROTNONE = 1 << 5;
    }
}

bitflags! {
    /// Software bits of a non-present (swap-format) entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SwpBits: u8 {
        /// Migration entry young bit (SWP_MIG_YOUNG).
        const YOUNG = 1 << 0;
        /// Migration entry dirty bit (SWP_MIG_DIRTY).
        const DIRTY = 1 << 1;
        /// _PAGE_SWP_SOFT_DIRTY.
        const SD = 1 << 2;
        /// _PAGE_SWP_UFFD_WP.
        const UW = 1 << 3;
        /// _PAGE_SWP_EXCLUSIVE (real swap entries only).
        const EXCL = 1 << 4;
    }
}

bitflags! {
    /// Folio state bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FolioFlags: u8 {
        const DIRTY = 1 << 0;
        /// PageAnonExclusive.
        const ANON_EXCLUSIVE = 1 << 1;
        /// PG_swapcache (anon folio in the swap cache; `Folio::slot` says where).
        const SWAPCACHE = 1 << 2;
        /// !PG_swapbacked: MADV_FREE'd lazy-free anon folio.
        const LAZYFREE = 1 << 3;
        /// Locked as the source of an in-flight migration.
        const MIGRATING = 1 << 4;
        /// A page of a large (PMD-sized) folio: the folio is the aligned run of
        /// [`HPAGE_PMD_NR`] slots starting at `id & !(HPAGE_PMD_NR - 1)`; folio-wide
        /// flags (DIRTY, LAZYFREE, MIGRATING, SWAPCACHE) are kept alike on every page.
        const LARGE = 1 << 5;
        /// A large folio some of whose pages lost their last mapping while
        /// others are still mapped (`folio_test_partially_mapped()`, on the
        /// deferred split queue; set on every page).
        const PARTIALLY_MAPPED = 1 << 6;
        /// A KSM page (`folio_test_ksm()`): shared by content, never reused
        /// by a write fault.
        const KSM = 1 << 7;
    }
}

bitflags! {
    /// The process's userfaultfd context (`struct userfaultfd_ctx`, one per
    /// process here): whether it is open (UFFDIO_API done; the reproducers open
    /// it at the first register) and the write-protect features it asked for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct UffdCtx: u8 {
        const OPEN = 1 << 0;
        /// UFFD_FEATURE_WP_UNPOPULATED (v6.4).
        const WP_UNPOPULATED = 1 << 1;
        /// UFFD_FEATURE_WP_ASYNC (v6.7; implies WP_UNPOPULATED).
        const WP_ASYNC = 1 << 2;
    }
}

/// Migration entry type (include/linux/swapops.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MigKind {
    /// make_readable_migration_entry
    Read,
    /// make_readable_exclusive_migration_entry (anon only)
    ReadExclusive,
    /// make_writable_migration_entry
    Write,
}

/// One page-table slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Entry {
    #[default]
    None,
    Present {
        bits: PteBits,
        folio: FolioId,
    },
    Migration {
        kind: MigKind,
        bits: SwpBits,
        folio: FolioId,
    },
    /// Real (anon) swap entry.
    Swap {
        bits: SwpBits,
        slot: u8,
    },
    /// PTE_MARKER_UFFD_WP.
    Marker,
    /// PTE_MARKER_GUARD (MADV_GUARD_INSTALL, v6.13): any access raises SIGSEGV.
    /// A swap-format entry: it can carry the swap soft-dirty bit (mremap's
    /// `move_soft_dirty_pte`) and the swap uffd-wp bit (`make_uffd_wp_pte`).
    Guard {
        bits: SwpBits,
    },
}

impl Entry {
    pub fn is_none(self) -> bool {
        matches!(self, Entry::None)
    }
    /// The hardware write bit of a present PTE.
    pub fn writable(self) -> bool {
        matches!(self, Entry::Present { bits, .. } if bits.contains(PteBits::W))
    }
}

/// What a file object is, which decides its vm_ops and BDI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// shmem/tmpfs/memfd: no page_mkwrite, noop BDI (no writeback), swap-backed.
    Shmem,
    /// A disk filesystem like ext4: page_mkwrite and BDI writeback.
    Ext4,
    /// ramfs: generic_file_vm_ops (filemap_page_mkwrite), no writeback, unevictable.
    Ramfs,
}

/// A file object with its page cache (index -> folio).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct File {
    pub kind: FileKind,
    pub in_use: bool,
    pub cache: [FolioId; NPAGES],
    /// shmem: indices whose data lives in swap (value entries in the xarray).
    pub swapped: u16,
    /// The data of each index outside the page cache (content tokens): on disk
    /// (ext4), in shmem's swap (shmem), zero (never written).
    pub stash: [Token; NPAGES],
}

impl File {
    pub const fn new(kind: FileKind, in_use: bool) -> File {
        File { kind, in_use, cache: [NO_FOLIO; NPAGES], swapped: 0, stash: [0; NPAGES] }
    }
}

/// A VMA's backing object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backing {
    #[default]
    Anon,
    File(u8),
}

/// Kernel function (or hardware event) that last changed a bit, for provenance and signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum Why {
    #[default]
    Unknown,
    MmapRegion,
    MmapExpand,
    MprotectFixup,
    MadviseUpdateVma,
    MlockFixup,
    UffdRegister,
    UffdUnregister,
    ClearRefs,
    ChangePteRange,
    UffdWpRange,
    DoAnonymousPage,
    DoSetPte,
    DoWpPage,
    DoSwapPage,
    DoNumaPage,
    HardwareWrite,
    CopyPresentPte,
    CopyNonpresentPte,
    RemoveMigrationPte,
    UnusePte,
    FolioMkclean,
    MovePtes,
    ChangeProtNuma,
    CopyVma,
    VmAreaDup,
    HandlePteFault,
    HandlePteMarker,
    TryToMigrateOne,
    TryToUnmapOne,
    ZapInstallUffdWp,
    MadviseFree,
    DoHugePmdAnonymousPage,
    DoHugePmdWpPage,
    SplitHugePmd,
    SetPmdMigrationEntry,
    RemoveMigrationPmd,
    MadviseFreeHugePmd,
    CollapseHugePage,
    MakeUffdWpPte,
    WriteProtectPage,
    ReplacePage,
    BreakKsm,
    GuardInstall,
    GuardRemove,
}

impl Why {
    /// Every value, in declaration order.
    pub const ALL: [Why; 45] = [
        Why::Unknown,
        Why::MmapRegion,
        Why::MmapExpand,
        Why::MprotectFixup,
        Why::MadviseUpdateVma,
        Why::MlockFixup,
        Why::UffdRegister,
        Why::UffdUnregister,
        Why::ClearRefs,
        Why::ChangePteRange,
        Why::UffdWpRange,
        Why::DoAnonymousPage,
        Why::DoSetPte,
        Why::DoWpPage,
        Why::DoSwapPage,
        Why::DoNumaPage,
        Why::HardwareWrite,
        Why::CopyPresentPte,
        Why::CopyNonpresentPte,
        Why::RemoveMigrationPte,
        Why::UnusePte,
        Why::FolioMkclean,
        Why::MovePtes,
        Why::ChangeProtNuma,
        Why::CopyVma,
        Why::VmAreaDup,
        Why::HandlePteFault,
        Why::HandlePteMarker,
        Why::TryToMigrateOne,
        Why::TryToUnmapOne,
        Why::ZapInstallUffdWp,
        Why::MadviseFree,
        Why::DoHugePmdAnonymousPage,
        Why::DoHugePmdWpPage,
        Why::SplitHugePmd,
        Why::SetPmdMigrationEntry,
        Why::RemoveMigrationPmd,
        Why::MadviseFreeHugePmd,
        Why::CollapseHugePage,
        Why::MakeUffdWpPte,
        Why::WriteProtectPage,
        Why::ReplacePage,
        Why::BreakKsm,
        Why::GuardInstall,
        Why::GuardRemove,
    ];

    /// The name as signatures spell it: [`Why::name`] without parentheses
    /// (`mmap_region(expand)` is `mmap_region_expand`).
    pub fn slug(self) -> &'static str {
        match self {
            Why::MmapExpand => "mmap_region_expand",
            w => w.name(),
        }
    }

    /// The value whose [`Why::slug`] is `s`.
    pub fn from_slug(s: &str) -> Option<Why> {
        Why::ALL.iter().copied().find(|w| w.slug() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Why::Unknown => "unknown",
            Why::MmapRegion => "mmap_region",
            Why::MmapExpand => "mmap_region(expand)",
            Why::MprotectFixup => "mprotect_fixup",
            Why::MadviseUpdateVma => "madvise_update_vma",
            Why::MlockFixup => "mlock_fixup",
            Why::UffdRegister => "userfaultfd_register",
            Why::UffdUnregister => "userfaultfd_unregister",
            Why::ClearRefs => "clear_refs_write",
            Why::ChangePteRange => "change_pte_range",
            Why::UffdWpRange => "uffd_wp_range",
            Why::DoAnonymousPage => "do_anonymous_page",
            Why::DoSetPte => "do_set_pte",
            Why::DoWpPage => "do_wp_page",
            Why::DoSwapPage => "do_swap_page",
            Why::DoNumaPage => "do_numa_page",
            Why::HardwareWrite => "hw_write",
            Why::CopyPresentPte => "copy_present_pte",
            Why::CopyNonpresentPte => "copy_nonpresent_pte",
            Why::RemoveMigrationPte => "remove_migration_pte",
            Why::UnusePte => "unuse_pte",
            Why::FolioMkclean => "folio_mkclean",
            Why::MovePtes => "move_ptes",
            Why::ChangeProtNuma => "change_prot_numa",
            Why::CopyVma => "copy_vma",
            Why::VmAreaDup => "vm_area_dup",
            Why::HandlePteFault => "handle_pte_fault",
            Why::HandlePteMarker => "handle_pte_marker",
            Why::TryToMigrateOne => "try_to_migrate_one",
            Why::TryToUnmapOne => "try_to_unmap_one",
            Why::ZapInstallUffdWp => "zap_install_uffd_wp_if_needed",
            Why::MadviseFree => "madvise_free_pte_range",
            Why::DoHugePmdAnonymousPage => "do_huge_pmd_anonymous_page",
            Why::DoHugePmdWpPage => "do_huge_pmd_wp_page",
            Why::SplitHugePmd => "__split_huge_pmd_locked",
            Why::SetPmdMigrationEntry => "set_pmd_migration_entry",
            Why::RemoveMigrationPmd => "remove_migration_pmd",
            Why::MadviseFreeHugePmd => "madvise_free_huge_pmd",
            Why::CollapseHugePage => "collapse_huge_page",
            Why::MakeUffdWpPte => "make_uffd_wp_pte",
            Why::WriteProtectPage => "write_protect_page",
            Why::ReplacePage => "replace_page",
            Why::BreakKsm => "break_ksm",
            Why::GuardInstall => "guard_install_set_pte",
            Why::GuardRemove => "guard_remove_pte_entry",
        }
    }
}

/// Provenance: the kernel function and program step (1-based; 0 = never) that
/// last changed something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prov {
    pub why: Why,
    pub step: u16,
}

impl Prov {
    pub fn describe(self) -> String {
        if self.step == 0 {
            self.why.name().to_string()
        } else {
            format!("{} (step {})", self.why.name(), self.step)
        }
    }
}

/// A VMA: `[start, end)` in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Vma {
    pub start: u8,
    pub end: u8,
    pub flags: VmFlags,
    /// Stored `vm_page_prot`: recomputed only where the kernel recomputes it.
    pub prot: PageProt,
    pub backing: Backing,
    /// `vm_pgoff` (file page offset of `start`; for anon, the creation address).
    pub pgoff: u8,
    /// The anonymous page offset of `start` (v7.x `vma_start_anon_pgoff()`): the
    /// address it was mapped at, kept linear by splits, merges and faulted moves;
    /// equal to `pgoff` for anonymous VMAs. Only MAP_PRIVATE file merges read it.
    pub anon_pgoff: u8,
    /// anon_vma identity (0 = none yet).
    pub anon_vma: u8,
    /// The anon_vma_chain has more than one link (anon_vma_fork() in a child).
    pub anon_forked: bool,
    /// Registered with this process's userfaultfd context.
    pub uffd: bool,
    /// Who last changed `vm_page_prot`.
    pub prot_by: Prov,
    /// Who last changed VM_SOFTDIRTY.
    pub softdirty_by: Prov,
    /// Who last changed VM_UFFD_WP.
    pub uffd_by: Prov,
}

impl Vma {
    pub fn contains(&self, addr: u8) -> bool {
        self.start <= addr && addr < self.end
    }
    pub fn is_anonymous(&self) -> bool {
        self.backing == Backing::Anon
    }
    /// is_cow_mapping(): private and may become writable.
    pub fn is_cow(&self) -> bool {
        !self.flags.contains(VmFlags::SHARED) && self.flags.contains(VmFlags::MAYWRITE)
    }
    /// File page index that `addr` maps.
    pub fn pgoff_of(&self, addr: u8) -> u8 {
        self.pgoff.wrapping_add(addr - self.start)
    }
    /// Anonymous page offset of `addr`.
    pub fn anon_pgoff_of(&self, addr: u8) -> u8 {
        self.anon_pgoff.wrapping_add(addr - self.start)
    }
    /// A MAP_PRIVATE file mapping (`vma_is_cow_mapping` of a file VMA): its merges
    /// need contiguous anonymous page offsets on v7.x.
    pub fn is_cow_file(&self) -> bool {
        matches!(self.backing, Backing::File(_)) && self.is_cow()
    }
    /// userfaultfd_wp(vma)
    pub fn uffd_wp(&self) -> bool {
        self.flags.contains(VmFlags::UFFD_WP)
    }
    /// vma_soft_dirty_enabled(): tracking is on while VM_SOFTDIRTY is clear.
    pub fn soft_dirty_enabled(&self) -> bool {
        !self.flags.contains(VmFlags::SOFTDIRTY)
    }
    /// PROT_EXEC without READ/WRITE: on x86 with protection keys (Debian enables
    /// CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS; PKU CPUs) mmap/mprotect give such a
    /// VMA the execute-only pkey (`execute_only_pkey()`, arch/x86/mm/pkeys.c), so
    /// data accesses fault with SIGSEGV and GUP refuses it
    /// (`arch_vma_access_permitted()`).
    pub fn pkey_exec_only(&self) -> bool {
        (self.flags & (VmFlags::READ | VmFlags::WRITE | VmFlags::EXEC)) == VmFlags::EXEC
    }
    /// vma_is_accessible()
    pub fn accessible(&self) -> bool {
        self.flags.intersects(VmFlags::READ | VmFlags::WRITE | VmFlags::EXEC)
    }
}

/// Per-PTE provenance: who last changed the write state (W, or the migration
/// entry's writability), the soft-dirty bit and the uffd-wp bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PteWhy {
    pub w: Prov,
    pub sd: Prov,
    pub uw: Prov,
}

/// A process address space (`struct mm_struct`) with its page table.
///
/// Page group `g` (pages `[4g, 4g + 4)`) is one PMD. Bit `g` of `huge` says the
/// PMD maps a huge page (present, or a PMD migration entry): then `pt` holds that
/// PMD entry once per page, each naming its own page of the large folio, and every
/// change to one goes to all four (`huge_memory`). Bit `g` of `ptable` says the PMD
/// points to a PTE table (even an empty one), which keeps a THP fault away.
///
/// `tail[g]`: the large folio whose 508 unmodelled pages (a real PMD has 512)
/// PMD `g` still maps by PTEs after a split ([`NO_FOLIO`]: none). Those pages
/// lie after the PMD's last model page in the reproducers' layout, so every
/// range that covers page `4g + 3` covers them too: they are zapped, moved and
/// copied with it, and they count in the folio's references and map count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mm {
    pub alive: bool,
    pub vmas: ArrayVec<[Vma; MAX_VMAS]>,
    pub pt: [Entry; NPAGES],
    pub why: [PteWhy; NPAGES],
    pub huge: u8,
    pub ptable: u8,
    pub tail: [FolioId; NPMDS],
    /// The userfaultfd context its VMAs register with.
    pub uffd: UffdCtx,
}

impl Mm {
    pub fn new(alive: bool) -> Mm {
        Mm {
            alive,
            vmas: ArrayVec::new(),
            pt: [Entry::None; NPAGES],
            why: [PteWhy::default(); NPAGES],
            huge: 0,
            ptable: 0,
            tail: [NO_FOLIO; NPMDS],
            uffd: UffdCtx::empty(),
        }
    }
    /// Is `addr` mapped by a huge PMD (present or migration entry)?
    #[inline]
    pub fn is_huge(&self, addr: u8) -> bool {
        self.huge & (1 << (addr / HPAGE_PMD_NR)) != 0
    }
    /// find_vma() for an exact address: the VMA containing `addr`.
    pub fn vma_index(&self, addr: u8) -> Option<usize> {
        self.vmas.iter().position(|v| v.contains(addr))
    }
    pub fn vma(&self, addr: u8) -> Option<&Vma> {
        self.vmas.iter().find(|v| v.contains(addr))
    }
}

/// What a folio is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FolioKind {
    #[default]
    Free,
    Anon,
    /// Page-cache folio of file `file` at `index`.
    File {
        file: u8,
        index: u8,
    },
}

/// A single-page folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Folio {
    pub kind: FolioKind,
    pub flags: FolioFlags,
    /// Number of present PTEs mapping it (page_mapcount).
    pub mapcount: u8,
    /// Swap slot while in the swap cache.
    pub slot: u8,
    /// What the page holds (a content token; 0 = zero-filled). The kernel copies
    /// data where the model copies this: COW, migration, swap and file I/O.
    pub data: Token,
}

impl Folio {
    pub fn is_anon(&self) -> bool {
        self.kind == FolioKind::Anon
    }
    /// folio_ref_count(): one reference per mapping, plus the swap cache's
    /// and the page cache's (no GUP pins are modelled).
    pub fn refcount(&self) -> u8 {
        let cache = matches!(self.kind, FolioKind::File { .. }) as u8;
        let swap = self.flags.contains(FolioFlags::SWAPCACHE) as u8;
        self.mapcount + cache + swap
    }
}

/// A swap slot: `count` swap PTEs refer to it; `folio` is its swap-cache folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub count: u8,
    pub folio: FolioId,
    /// The data written to the slot (content token).
    pub data: Token,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot { count: 0, folio: NO_FOLIO, data: 0 }
    }
}

impl Slot {
    pub fn in_use(&self) -> bool {
        self.count > 0 || self.folio != NO_FOLIO
    }
}

/// An in-flight migration: `old` is locked and unmapped; `new` receives it at finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pending {
    pub old: FolioId,
    pub new: FolioId,
}

/// The whole machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub procs: [Mm; MAX_PROCS],
    pub folios: [Folio; MAX_FOLIOS],
    pub files: [File; MAX_FILES],
    pub slots: [Slot; MAX_SLOTS],
    pub pending: ArrayVec<[Pending; MAX_PENDING]>,
    /// Next anon_vma identity.
    pub next_anon_vma: u8,
    /// Current step number (for provenance in reports).
    pub step: u16,
    /// A WARN_ON_ONCE the kernel would print fired (full-restore's MIG_W+uffd-wp,
    /// v6.1's marker copy into a non-uffd-wp child).
    pub warned: bool,
    /// How often variant-specific code (a restore, unuse_pte) ran. Two models on
    /// the same kernel stay identical between such steps.
    pub variant_hits: u16,
    /// The last content token a user store wrote (each store writes a fresh one).
    pub next_token: Token,
    /// What this step did that user space is owed for (transient, see [`super::events`]).
    pub events: super::events::Events,
}

/// Index of the memfd (shmem) file.
pub const FILE_MEMFD: u8 = 0;
/// Index of the ext4-like file.
pub const FILE_EXT4: u8 = 1;
/// Index of the ramfs file.
pub const FILE_RAMFS: u8 = 2;
/// First slot for shared-anonymous shmem objects.
pub const FILE_SHMEM_ANON0: u8 = 3;

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

impl State {
    /// The initial state: process `p0`, no VMAs, the three named files (built
    /// once, copied after).
    #[inline]
    pub fn new() -> State {
        static INIT: std::sync::OnceLock<State> = std::sync::OnceLock::new();
        *INIT.get_or_init(State::build)
    }

    fn build() -> State {
        let mut files = [File::new(FileKind::Shmem, false); MAX_FILES];
        files[FILE_MEMFD as usize] = File::new(FileKind::Shmem, true);
        files[FILE_EXT4 as usize] = File::new(FileKind::Ext4, true);
        files[FILE_RAMFS as usize] = File::new(FileKind::Ramfs, true);
        State {
            procs: [Mm::new(true), Mm::new(false), Mm::new(false)],
            folios: [Folio::default(); MAX_FOLIOS],
            files,
            slots: [Slot::default(); MAX_SLOTS],
            pending: ArrayVec::new(),
            next_anon_vma: 1,
            step: 0,
            warned: false,
            variant_hits: 0,
            next_token: 0,
            events: super::events::Events::default(),
        }
    }

    pub fn folio(&self, f: FolioId) -> &Folio {
        &self.folios[f as usize]
    }
    pub fn folio_mut(&mut self, f: FolioId) -> &mut Folio {
        &mut self.folios[f as usize]
    }

    /// Allocate a free folio, or None (OOM).
    pub fn alloc_folio(&mut self, kind: FolioKind) -> Option<FolioId> {
        let i = self.folios.iter().position(|f| f.kind == FolioKind::Free)?;
        self.folios[i] = Folio { kind, ..Folio::default() };
        Some(i as FolioId)
    }

    /// Allocate a free, aligned run of [`HPAGE_PMD_NR`] folio slots as one large
    /// anon folio (`vma_alloc_folio(.., HPAGE_PMD_ORDER, ..)`), or None: the
    /// caller falls back to small pages, as the kernel does.
    pub fn alloc_large_folio(&mut self) -> Option<FolioId> {
        let n = HPAGE_PMD_NR as usize;
        let head = (0..MAX_FOLIOS / n)
            .map(|i| i * n)
            .find(|&h| self.folios[h..h + n].iter().all(|f| f.kind == FolioKind::Free))?;
        for f in &mut self.folios[head..head + n] {
            *f = Folio { kind: FolioKind::Anon, flags: FolioFlags::LARGE, ..Folio::default() };
        }
        Some(head as FolioId)
    }

    /// The folio page `f` belongs to: its head if `f` is a page of a large folio.
    #[inline]
    pub fn folio_head(&self, f: FolioId) -> FolioId {
        if f != ZERO_PAGE && f != NO_FOLIO && self.folio(f).flags.contains(FolioFlags::LARGE) {
            f & !(HPAGE_PMD_NR - 1)
        } else {
            f
        }
    }

    /// The pages of the folio page `f` belongs to (`f` alone for a small folio).
    /// A large folio is allocated and freed whole; its pages become small folios
    /// of their own only by a split.
    pub fn folio_pages(&self, f: FolioId) -> impl Iterator<Item = FolioId> + '_ {
        let large = self.is_large(f);
        let head = self.folio_head(f);
        let n = if large { HPAGE_PMD_NR } else { 1 };
        (head..head + n).filter(move |&x| !large || self.in_large_folio(x, head))
    }

    /// Does anything still reference a page of the large folio at `head` (a
    /// mapping, the swap cache, a migration, unmodelled pages)?
    pub fn large_folio_referenced(&self, head: FolioId) -> bool {
        self.tail_maps(head) > 0
            || (head..head + HPAGE_PMD_NR).any(|x| {
                self.in_large_folio(x, head) && {
                    let fo = self.folio(x);
                    fo.mapcount > 0 || fo.flags.intersects(FolioFlags::SWAPCACHE | FolioFlags::MIGRATING)
                }
            })
    }

    /// How many PMDs of live processes map the unmodelled pages of the large
    /// folio at `head` by PTEs ([`Mm::tail`]).
    pub fn tail_maps(&self, head: FolioId) -> u32 {
        self.procs.iter().filter(|m| m.alive).map(|m| m.tail.iter().filter(|&&t| t == head).count() as u32).sum()
    }

    /// `folio_mapcount()` of the large folio at `head`, as a real PMD counts it:
    /// one per PMD mapping it, one per PTE mapping a page of it, 508 per PMD
    /// whose unmodelled pages map it.
    pub fn large_folio_mapcount(&self, head: FolioId) -> u32 {
        let mut n = self.tail_maps(head) * UNMODELLED_PER_PMD;
        for mm in self.procs.iter().filter(|m| m.alive) {
            for (a, e) in mm.pt.iter().enumerate() {
                if let Entry::Present { folio, .. } = *e {
                    if self.in_large_folio(folio, head)
                        && (!mm.is_huge(a as u8) || (a as u8).is_multiple_of(HPAGE_PMD_NR))
                    {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// `folio_ref_count()` of the large folio at `head`: its mappings plus the
    /// swap cache's references (one per page).
    pub fn large_folio_refcount(&self, head: FolioId) -> u32 {
        let cached = (head..head + HPAGE_PMD_NR)
            .filter(|&x| self.in_large_folio(x, head) && self.folio(x).flags.contains(FolioFlags::SWAPCACHE))
            .count() as u32;
        self.large_folio_mapcount(head) + cached
    }

    /// Is the large folio at `head` shared, as `p`'s MADV_PAGEOUT / MADV_FREE /
    /// NUMA hinting judge it on profile `k` ([`crate::model::Kernel::large_folio_sharing`])?
    pub fn large_folio_shared(&self, k: crate::model::Kernel, head: FolioId, p: usize) -> bool {
        use crate::model::Sharing;
        match k.large_folio_sharing() {
            Sharing::Mapcount => self.large_folio_mapcount(head) != 1,
            Sharing::FirstPage => self.first_page_mappings(head) > 1,
            Sharing::LikelyMappedShared => {
                let n = self.large_folio_mapcount(head);
                n > 1 && (self.large_folio_pmd_maps(head) > 0 || n > 512 || self.first_page_mappings(head) > 1)
            }
            Sharing::Processes => !self.large_folio_only_in(head, p),
        }
    }

    /// `folio_entire_mapcount()` of the large folio at `head`: the PMDs mapping it.
    pub fn large_folio_pmd_maps(&self, head: FolioId) -> usize {
        self.procs
            .iter()
            .filter(|m| m.alive)
            .map(|mm| {
                (0..NPMDS as u8)
                    .map(|g| g * HPAGE_PMD_NR)
                    .filter(|&a| {
                        mm.is_huge(a)
                            && matches!(mm.pt[a as usize], Entry::Present { folio, .. } if self.in_large_folio(folio, head))
                    })
                    .count()
            })
            .sum()
    }

    /// `page_mapcount()` of the first page of the large folio at `head`: the PMDs
    /// and PTEs that map it (`folio_estimated_sharers()`).
    pub fn first_page_mappings(&self, head: FolioId) -> usize {
        self.procs
            .iter()
            .filter(|m| m.alive)
            .map(|mm| mm.pt.iter().filter(|e| matches!(**e, Entry::Present { folio, .. } if folio == head)).count())
            .sum()
    }

    /// Are all mappings of the large folio at `head` in process `p`?
    pub fn large_folio_only_in(&self, head: FolioId, p: usize) -> bool {
        self.procs.iter().enumerate().filter(|(q, m)| *q != p && m.alive).all(|(_, m)| {
            !m.tail.contains(&head)
                && !m.pt.iter().any(|e| matches!(*e, Entry::Present { folio, .. } if self.in_large_folio(folio, head)))
        })
    }

    /// Mark the large folio at `head` partially mapped.
    pub fn mark_partially_mapped(&mut self, head: FolioId) {
        for x in head..head + HPAGE_PMD_NR {
            if self.in_large_folio(x, head) {
                self.folios[x as usize].flags.insert(FolioFlags::PARTIALLY_MAPPED);
            }
        }
    }

    /// Is `x` a page of the large folio whose head slot is `head`?
    #[inline]
    pub fn in_large_folio(&self, x: FolioId, head: FolioId) -> bool {
        self.is_large(x) && x & !(HPAGE_PMD_NR - 1) == head
    }

    /// Is `f` a page of a large folio?
    #[inline]
    pub fn is_large(&self, f: FolioId) -> bool {
        f != ZERO_PAGE && f != NO_FOLIO && self.folio(f).flags.contains(FolioFlags::LARGE)
    }

    pub fn file_kind(&self, file: u8) -> FileKind {
        self.files[file as usize].kind
    }

    /// Is the folio part of an in-flight migration (source locked)?
    pub fn is_migrating(&self, f: FolioId) -> bool {
        f != ZERO_PAGE && self.folio(f).flags.contains(FolioFlags::MIGRATING)
    }
}
