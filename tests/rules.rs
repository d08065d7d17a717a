//! Rule-by-rule tests of the kernel model: each test drives the model through a
//! real op sequence (program text) and checks the PTE / VMA / folio state the
//! v6.1 (or 6.1.y) kernel would produce. Line references are to
//! linux-source-6.1 (6.1.192).

use ptediff::judge::contracts::Contract;
use ptediff::judge::world::World;
use ptediff::model::{
    step, Config, Entry, FolioFlags, FolioId, FolioKind, Kernel, MigKind, PageProt, PteBits, Restore, State,
    StepResult, SwpBits, VmFlags, ZERO_PAGE,
};
use ptediff::text::parse;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Run every op of `text` on a fresh state; every op must succeed (`StepResult::Ok`).
fn run(text: &str, cfg: &Config) -> State {
    let (s, res) = run_r(text, cfg);
    for (i, r) in res.iter().enumerate() {
        assert_eq!(*r, StepResult::Ok, "op #{i} of\n{text}\nreturned {r:?}");
    }
    s
}

/// Run every op of `text`, returning the state and each op's result.
fn run_r(text: &str, cfg: &Config) -> (State, Vec<StepResult>) {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    let mut s = State::new();
    let res = prog.ops.iter().map(|op| step(&mut s, cfg, op)).collect();
    (s, res)
}

/// Run more ops on an existing state; returns their results.
fn more(s: &mut State, text: &str, cfg: &Config) -> Vec<StepResult> {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    prog.ops.iter().map(|op| step(s, cfg, op)).collect()
}

/// Run every op of `text` on a fresh world (kernel and ghost, every contract).
fn run_world(text: &str, cfg: &Config) -> World {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    let mut w = World::new(Contract::all());
    for op in &prog.ops {
        assert_eq!(w.step(cfg, op), StepResult::Ok, "`{op}` of\n{text}");
    }
    w
}

fn cfg() -> Config {
    Config::new(Restore::VmPageProt)
}

fn cfg_k(kernel: Kernel) -> Config {
    Config { kernel, ..Config::new(Restore::VmPageProt) }
}

fn cfg_r(restore: Restore) -> Config {
    Config::new(restore)
}

/// The present PTE at `(p, addr)`.
fn pte(s: &State, p: usize, addr: usize) -> (PteBits, FolioId) {
    match s.procs[p].pt[addr] {
        Entry::Present { bits, folio } => (bits, folio),
        e => panic!("p{p}[{addr}] is not present: {e:?}"),
    }
}

fn bits(s: &State, p: usize, addr: usize) -> PteBits {
    pte(s, p, addr).0
}

/// The migration entry at `(p, addr)`.
fn mig(s: &State, p: usize, addr: usize) -> (MigKind, SwpBits, FolioId) {
    match s.procs[p].pt[addr] {
        Entry::Migration { kind, bits, folio } => (kind, bits, folio),
        e => panic!("p{p}[{addr}] is not a migration entry: {e:?}"),
    }
}

/// The real swap entry at `(p, addr)`.
fn swp(s: &State, p: usize, addr: usize) -> (SwpBits, u8) {
    match s.procs[p].pt[addr] {
        Entry::Swap { bits, slot } => (bits, slot),
        e => panic!("p{p}[{addr}] is not a swap entry: {e:?}"),
    }
}

fn vflags(s: &State, p: usize, addr: u8) -> VmFlags {
    s.procs[p].vma(addr).expect("vma").flags
}

fn vprot(s: &State, p: usize, addr: u8) -> PageProt {
    s.procs[p].vma(addr).expect("vma").prot
}

fn prot_w(s: &State, p: usize, addr: u8) -> bool {
    vprot(s, p, addr).contains(PageProt::RW)
}

fn fflags(s: &State, f: FolioId) -> FolioFlags {
    s.folio(f).flags
}

// ---------------------------------------------------------------------------
// 1. vma_wants_writenotify / vma_set_page_prot (mm/mmap.c:1534-1570, 90-102)
// ---------------------------------------------------------------------------

#[test]
fn writenotify_shared_memfd_after_mmap_is_rw_with_softdirty() {
    // __mmap_region sets VM_SOFTDIRTY (l.2882) before vma_set_page_prot: soft-dirty
    // tracking is off, shmem has no page_mkwrite and no writeback BDI -> PAGE_SHARED.
    let s = run("mmap(p0, 0, 2, rw-, memfd, shared, 0)", &cfg());
    assert!(vflags(&s, 0, 0).contains(VmFlags::SOFTDIRTY));
    assert!(prot_w(&s, 0, 0));
    // Shared anonymous memory is shmem too.
    let s = run("mmap(p0, 0, 2, rw-, shared-anon)", &cfg());
    assert!(vflags(&s, 0, 0).contains(VmFlags::SOFTDIRTY | VmFlags::SHARED));
    assert!(prot_w(&s, 0, 1));
}

#[test]
fn writenotify_clear_refs_makes_shmem_prot_readonly() {
    // clear_refs_write (fs/proc/task_mmu.c:1294-1300): VM_SOFTDIRTY cleared, then
    // vma_set_page_prot -> rule 4 (soft-dirty tracking) -> private prot (no RW).
    let s = run("mmap(p0, 0, 2, rw-, memfd, shared, 0)\nclear_refs(p0)", &cfg());
    assert!(!vflags(&s, 0, 0).contains(VmFlags::SOFTDIRTY));
    assert!(!prot_w(&s, 0, 0));
    assert!(vprot(&s, 0, 0).contains(PageProt::USER));
    // A new mmap next to it (not mergeable: different file offset) is RW again.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nclear_refs(p0)\nmmap(p0, 1, 1, rw-, memfd, shared, 5)", &cfg());
    assert!(!prot_w(&s, 0, 0));
    assert!(prot_w(&s, 0, 1));
}

#[test]
fn writenotify_page_mkwrite_filesystems_always_readonly() {
    // Rule 2: ext4_file_vm_ops and generic_file_vm_ops (ramfs) have page_mkwrite, so
    // the prot is read-only even with VM_SOFTDIRTY set.
    for file in ["ext4", "ramfs"] {
        let s = run(&format!("mmap(p0, 0, 2, rw-, {file}, shared, 0)"), &cfg());
        assert!(vflags(&s, 0, 0).contains(VmFlags::SOFTDIRTY), "{file}");
        assert!(!prot_w(&s, 0, 0), "{file}: prot must be read-only");
        assert!(vprot(&s, 0, 0).contains(PageProt::USER), "{file}");
    }
}

#[test]
fn writenotify_private_mappings_never_rw() {
    // protection_map: private+WRITE is PAGE_COPY (arch/x86/mm/pgprot.c).
    for target in ["anon", "memfd, private, 0", "ext4, private, 0", "ramfs, private, 0"] {
        let s = run(&format!("mmap(p0, 0, 2, rw-, {target})"), &cfg());
        assert!(!prot_w(&s, 0, 0), "{target}");
        let s = run(&format!("mmap(p0, 0, 2, rw-, {target})\nclear_refs(p0)"), &cfg());
        assert!(!prot_w(&s, 0, 0), "{target} after clear_refs");
    }
    // A shared mapping without PROT_WRITE is not RW either.
    let s = run("mmap(p0, 0, 2, r--, memfd, shared, 0)", &cfg());
    assert!(!prot_w(&s, 0, 0));
}

#[test]
fn writenotify_b1_uffd_wp_registered_memfd() {
    let text = "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)";
    // v6.1 release: plain flag assignment, the prot stays PAGE_SHARED.
    let s = run(text, &cfg_k(Kernel::V61));
    assert!(vflags(&s, 0, 0).contains(VmFlags::UFFD_WP));
    assert!(prot_w(&s, 0, 0));
    // 6.1.y (B1, mm/mmap.c:1560-1562 + fs/userfaultfd.c:118-131): recomputed, RO.
    let s = run(text, &cfg_k(Kernel::V61y));
    assert!(vflags(&s, 0, 0).contains(VmFlags::UFFD_WP));
    assert!(!prot_w(&s, 0, 0));
    // Unregistering flips VM_UFFD_WP back: B1 recomputes -> RW again.
    let s = run(&format!("{text}\nuffd_unregister(p0, 0, 2)"), &cfg_k(Kernel::V61y));
    assert!(!vflags(&s, 0, 0).contains(VmFlags::UFFD_WP));
    assert!(prot_w(&s, 0, 0));
    // ...unless soft-dirty tracking also wants writenotify.
    let s = run(
        "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nclear_refs(p0)\nuffd_register(p0, 0, 2)\nuffd_unregister(p0, 0, 2)",
        &cfg_k(Kernel::V61y),
    );
    assert!(!prot_w(&s, 0, 0));
}

#[test]
fn writenotify_mprotect_rule3_uses_old_prot_for_try_change_writable() {
    // mprotect_fixup (mm/mprotect.c:639-647): for shmem, vma_wants_writenotify(vma,
    // OLD prot) hits rule 3 when the protection bits change -> no
    // MM_CP_TRY_CHANGE_WRITABLE; with soft-dirty tracking the new prot is RO too.
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nclear_refs(p0)\nwrite(p0, 0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        &cfg(),
    );
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::D | PteBits::SD));
    assert!(!b.contains(PteBits::W), "shmem: no try-change-writable");
    // ext4: rule 2 comes first -> try-change-writable; the dirty pte is W again.
    let s = run(
        "mmap(p0, 0, 1, rw-, ext4, shared, 0)\nwrite(p0, 0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        &cfg(),
    );
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D), "{b:?}");
}

// ---------------------------------------------------------------------------
// 2. do_set_pte (mm/memory.c:4396-4426): read fault on shared writable memfd
// ---------------------------------------------------------------------------

#[test]
fn read_fault_shared_memfd_maps_writable_clean() {
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nread(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W), "no writenotify: mk_pte(PAGE_SHARED) is W");
    assert!(!b.intersects(PteBits::D | PteBits::SD | PteBits::UW));
    assert!(!fflags(&s, f).contains(FolioFlags::DIRTY));
    assert!(matches!(s.folio(f).kind, FolioKind::File { file: 0, index: 0 }));
    // A store through it sets D only (hardware), never SD.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nread(p0, 0)\nwrite(p0, 0)", &cfg());
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D));
    assert!(!b.contains(PteBits::SD));
}

#[test]
fn read_fault_after_clear_refs_maps_readonly_then_write_faults_soft_dirty() {
    let text = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nclear_refs(p0)\nread(p0, 0)";
    let s = run(text, &cfg());
    let b = bits(&s, 0, 0);
    assert!(!b.contains(PteBits::W), "writenotify for soft-dirty: read-only");
    assert!(!b.intersects(PteBits::D | PteBits::SD));
    // The write now faults: wp_page_shared -> wp_page_reuse: W, D, SD.
    let s = run(&format!("{text}\nwrite(p0, 0)"), &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
}

#[test]
fn write_fault_on_none_shared_memfd_is_writable_dirty_softdirty() {
    // do_shared_fault -> do_set_pte(write): maybe_mkwrite(pte_mkdirty()).
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nclear_refs(p0)\nwrite(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
}

// ---------------------------------------------------------------------------
// 3. clear_refs soft-dirty (fs/proc/task_mmu.c:1099-1123)
// ---------------------------------------------------------------------------

#[test]
fn clear_refs_wrprotects_and_clears_sd_of_present_ptes() {
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmmap(p0, 2, 1, rw-, memfd, shared, 0)\nwrite(p0, 2)\nclear_refs(p0)",
        &cfg(),
    );
    for a in [0, 2] {
        let b = bits(&s, 0, a);
        assert!(!b.contains(PteBits::W), "[{a}] W");
        assert!(!b.contains(PteBits::SD), "[{a}] SD");
        assert!(b.contains(PteBits::D), "[{a}] D is kept");
        assert!(!vflags(&s, 0, a as u8).contains(VmFlags::SOFTDIRTY));
    }
    // clear_refs does not touch UW.
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nclear_refs(p0)",
        &cfg(),
    );
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW | PteBits::D));
    assert!(!b.intersects(PteBits::W | PteBits::SD));
}

#[test]
fn clear_refs_keeps_writable_migration_entry_writable() {
    let text = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nmigrate_start(p0, 0)";
    let s = run(text, &cfg());
    let (k, b, _) = mig(&s, 0, 0);
    assert_eq!(k, MigKind::Write);
    assert!(b.contains(SwpBits::SD | SwpBits::DIRTY | SwpBits::YOUNG));
    let mut s = run(&format!("{text}\nclear_refs(p0)"), &cfg());
    let (k, b, _) = mig(&s, 0, 0);
    assert_eq!(k, MigKind::Write, "the entry type is not changed");
    assert!(!b.contains(SwpBits::SD), "swpSD cleared");
    assert!(b.contains(SwpBits::DIRTY));
    // Restore: MIG_W -> maybe_mkwrite; dirty entry -> pte_mkdirty sets SD again.
    assert_eq!(more(&mut s, "migrate_finish(p0, 0)", &cfg()), [StepResult::Ok]);
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
}

#[test]
fn clear_refs_clean_writable_migration_entry_loses_tracking() {
    // Kernel-semantics §3 "gap": a clean MIG_W entry during clear_refs is restored
    // W and not soft-dirty (no mkdirty on restore).
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nread(p0, 0)\nmigrate_start(p0, 0)\nclear_refs(p0)\nmigrate_finish(p0, 0)",
        &cfg(),
    );
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W));
    assert!(!b.intersects(PteBits::SD | PteBits::D));
    assert!(!vflags(&s, 0, 0).contains(VmFlags::SOFTDIRTY));
    assert!(!prot_w(&s, 0, 0), "prot is RO but MIG_W restored W");
}

#[test]
fn clear_refs_clears_swp_sd_of_swap_entries() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)", &cfg());
    assert!(swp(&s, 0, 0).0.contains(SwpBits::SD));
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\nclear_refs(p0)", &cfg());
    let (b, _) = swp(&s, 0, 0);
    assert!(!b.contains(SwpBits::SD));
    assert!(b.contains(SwpBits::EXCL));
}

// ---------------------------------------------------------------------------
// 4. fork (mm/memory.c:copy_present_pte 948-1002, vma_needs_copy 1251-1275)
// ---------------------------------------------------------------------------

#[test]
fn fork_wrprotects_private_anon_in_parent_and_child() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)", &cfg());
    let (_, f0) = pte(&s, 0, 0);
    assert!(fflags(&s, f0).contains(FolioFlags::ANON_EXCLUSIVE));
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)", &cfg());
    let (pb, pf) = pte(&s, 0, 0);
    let (cb, cf) = pte(&s, 1, 0);
    assert_eq!(pf, cf, "the page is shared");
    assert!(!pb.contains(PteBits::W) && !cb.contains(PteBits::W));
    assert!(!fflags(&s, pf).contains(FolioFlags::ANON_EXCLUSIVE));
    assert_eq!(s.folio(pf).mapcount, 2);
    assert!(pb.contains(PteBits::D | PteBits::A), "parent keeps D/A");
    assert!(cb.contains(PteBits::D), "private child keeps D");
    assert!(!cb.contains(PteBits::A), "child pte is old");
}

#[test]
fn fork_then_cow_copy_in_child_and_reuse_in_parent() {
    // do_wp_page: not exclusive and refcount 2 -> copy in the child; the parent is
    // then the only reference -> page_move_anon_rmap + reuse (same folio).
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nwrite(p1, 0)\nwrite(p0, 0)", &cfg());
    let (pb, pf) = pte(&s, 0, 0);
    let (cb, cf) = pte(&s, 1, 0);
    assert_ne!(pf, cf);
    assert!(pb.contains(PteBits::W) && cb.contains(PteBits::W));
    assert!(fflags(&s, pf).contains(FolioFlags::ANON_EXCLUSIVE));
    assert!(fflags(&s, cf).contains(FolioFlags::ANON_EXCLUSIVE));
    assert_eq!(s.folio(pf).mapcount, 1);
}

#[test]
fn fork_shared_memfd_without_uffd_copies_no_ptes() {
    let s = run("mmap(p0, 0, 2, rw-, memfd, shared, 0)\nwrite(p0, 0)\nread(p0, 1)\np1 = fork(p0)", &cfg());
    assert!(s.procs[1].pt[0].is_none());
    assert!(s.procs[1].pt[1].is_none());
    assert!(s.procs[1].vma(0).is_some(), "the VMA is duplicated");
    assert!(bits(&s, 0, 0).contains(PteBits::W), "parent shared pte untouched");
}

#[test]
fn fork_shared_uffd_child_pte_is_clean() {
    // With EVENT_FORK the child VMA stays uffd-wp, so vma_needs_copy copies ptes;
    // VM_SHARED -> pte_mkclean in the child (SD kept), not wrprotected (no COW).
    let s = run(
        "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nwrite(p0, 1)\nuffd_wp(p0, 1, 1)\np1 = fork(p0, event_fork)",
        &cfg(),
    );
    let (pb, pf) = pte(&s, 0, 0);
    let (cb, cf) = pte(&s, 1, 0);
    assert_eq!(pf, cf);
    assert!(pb.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(cb.contains(PteBits::W | PteBits::SD));
    assert!(!cb.intersects(PteBits::D | PteBits::A));
    // The uffd-wp'd pte keeps UW in a uffd-wp child.
    let cb1 = bits(&s, 1, 1);
    assert!(cb1.contains(PteBits::UW));
    assert!(!cb1.intersects(PteBits::W | PteBits::D));
}

#[test]
fn fork_marker_copy_b3() {
    // A private memfd mapping with an anon_vma has its ptes copied; the uffd-wp
    // marker on page 1 goes to a non-uffd-wp child only in v6.1 (with a WARN);
    // B3 (mm/memory.c:887-888) copies it only into a uffd-wp child.
    let text = "mmap(p0, 0, 2, rw-, memfd, private, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\np1 = fork(p0)";
    let s = run(text, &cfg_k(Kernel::V61));
    assert_eq!(s.procs[0].pt[1], Entry::Marker);
    assert_eq!(s.procs[1].pt[1], Entry::Marker);
    assert!(s.warned);
    // The child's anon pte loses UW (child VMA not uffd-wp).
    assert!(!bits(&s, 1, 0).contains(PteBits::UW));
    assert!(bits(&s, 0, 0).contains(PteBits::UW));
    let s = run(text, &cfg_k(Kernel::V61y));
    assert_eq!(s.procs[1].pt[1], Entry::None);
    assert!(!s.warned);
    let s = run(
        "mmap(p0, 0, 2, rw-, memfd, private, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\np1 = fork(p0, event_fork)",
        &cfg_k(Kernel::V61y),
    );
    assert_eq!(s.procs[1].pt[1], Entry::Marker);
    assert!(bits(&s, 1, 0).contains(PteBits::UW));
}

#[test]
fn fork_swap_entry_loses_exclusive_in_parent() {
    // copy_nonpresent_pte l.804-821: swpEXCL cleared in the parent, count++.
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\np1 = fork(p0)", &cfg());
    let (pb, ps) = swp(&s, 0, 0);
    let (cb, cs) = swp(&s, 1, 0);
    assert_eq!(ps, cs);
    assert!(!pb.contains(SwpBits::EXCL) && !cb.contains(SwpBits::EXCL));
    assert_eq!(s.slots[ps as usize].count, 2);
}

#[test]
fn fork_downgrades_migration_entries_of_cow_mappings() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate_start(p0, 0)\np1 = fork(p0)", &cfg());
    assert_eq!(mig(&s, 0, 0).0, MigKind::Read);
    assert_eq!(mig(&s, 1, 0).0, MigKind::Read);
    assert!(mig(&s, 0, 0).1.contains(SwpBits::SD | SwpBits::DIRTY));
}

// ---------------------------------------------------------------------------
// 5. try_to_migrate_one (mm/rmap.c:2093-2110) and restore exclusivity
// ---------------------------------------------------------------------------

#[test]
fn migrate_entry_kind_writable() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate_start(p0, 0)", &cfg());
    let (k, b, f) = mig(&s, 0, 0);
    assert_eq!(k, MigKind::Write);
    assert!(b.contains(SwpBits::YOUNG | SwpBits::DIRTY | SwpBits::SD));
    assert!(!b.contains(SwpBits::UW));
    assert!(!fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY | FolioFlags::MIGRATING));
    assert_eq!(s.folio(f).mapcount, 0);
}

#[test]
fn migrate_entry_kind_readable_exclusive() {
    // RO exclusive anon page (clear_refs wrprotected it).
    let mut s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nclear_refs(p0)\nmigrate_start(p0, 0)", &cfg());
    let (k, b, _) = mig(&s, 0, 0);
    assert_eq!(k, MigKind::ReadExclusive);
    assert!(!b.contains(SwpBits::SD));
    // Restore of MIG_RX: RMAP_EXCLUSIVE, W from the private prot (none).
    more(&mut s, "migrate_finish(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(!b.contains(PteBits::W));
    assert!(fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
    // The write then reuses the page (exclusive).
    more(&mut s, "write(p0, 0)", &cfg());
    let (b, f2) = pte(&s, 0, 0);
    assert_eq!(f, f2);
    assert!(b.contains(PteBits::W | PteBits::SD));
}

#[test]
fn migrate_entry_kind_readable_when_shared_after_fork() {
    let mut s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmigrate_start(p0, 0)", &cfg());
    assert_eq!(mig(&s, 0, 0).0, MigKind::Read);
    assert_eq!(mig(&s, 1, 0).0, MigKind::Read, "the rmap walk covers the child");
    more(&mut s, "migrate_finish(p0, 0)", &cfg());
    let (_, f) = pte(&s, 0, 0);
    assert_eq!(pte(&s, 1, 0).1, f);
    assert!(!fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
    assert_eq!(s.folio(f).mapcount, 2);
}

#[test]
fn migrate_entry_kind_readable_for_ro_file_page() {
    for text in [
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nclear_refs(p0)\nread(p0, 0)\nmigrate_start(p0, 0)",
        "mmap(p0, 0, 1, rw-, ext4, shared, 0)\nread(p0, 0)\nmigrate_start(p0, 0)",
        "mmap(p0, 0, 1, rw-, memfd, private, 0)\nread(p0, 0)\nmigrate_start(p0, 0)",
    ] {
        let s = run(text, &cfg());
        let (k, b, _) = mig(&s, 0, 0);
        assert_eq!(k, MigKind::Read, "{text}");
        assert!(!b.contains(SwpBits::DIRTY), "{text}");
    }
}

#[test]
fn migrate_entry_carries_soft_dirty_and_uffd_wp() {
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmigrate_start(p0, 0)",
        &cfg(),
    );
    let (k, b, _) = mig(&s, 0, 0);
    assert_eq!(k, MigKind::Read);
    assert!(b.contains(SwpBits::UW | SwpBits::SD | SwpBits::DIRTY | SwpBits::YOUNG));
}

#[test]
fn migrate_restore_not_young_clears_accessed() {
    // MADV_FREE clears A and D; the entry is not young: restore clears A.
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)\nmigrate(p0, 0)", &cfg());
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W));
    assert!(!b.intersects(PteBits::A | PteBits::D));
    assert!(b.contains(PteBits::SD), "swpSD carried");
}

// ---------------------------------------------------------------------------
// 6. mprotect / change_pte_range (mm/mprotect.c:75-289)
// ---------------------------------------------------------------------------

#[test]
fn mprotect_downgrades_writable_migration_entry_even_when_staying_writable() {
    let text = "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nmprotect(p0, 0, 1, rwx)";
    let s = run(text, &cfg());
    let (k, b, _) = mig(&s, 0, 0);
    assert_eq!(k, MigKind::ReadExclusive, "anon MIG_W -> MIG_RX");
    assert!(b.contains(SwpBits::SD | SwpBits::DIRTY));
    assert!(vflags(&s, 0, 0).contains(VmFlags::WRITE));
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nmprotect(p0, 0, 1, rwx)",
        &cfg(),
    );
    assert_eq!(mig(&s, 0, 0).0, MigKind::Read, "file MIG_W -> MIG_R");
}

#[test]
fn mprotect_try_change_writable_private_anon() {
    // Exclusive, dirty, soft-dirty tracking off -> can_change_pte_writable.
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmprotect(p0, 0, 1, r--)", &cfg());
    assert!(!bits(&s, 0, 0).contains(PteBits::W));
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)", &cfg());
    assert!(bits(&s, 0, 0).contains(PteBits::W | PteBits::D));
}

#[test]
fn mprotect_try_change_writable_refused_cases() {
    // Not exclusive (shared with a child after fork).
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        &cfg(),
    );
    assert!(!bits(&s, 0, 0).contains(PteBits::W), "shared anon page");
    // Clean (v6.1 requires pte_dirty even for exclusive anon).
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        &cfg(),
    );
    assert!(!bits(&s, 0, 0).contains(PteBits::W), "clean pte");
    // Soft-dirty tracking on and SD clear.
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nclear_refs(p0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        &cfg(),
    );
    assert!(!bits(&s, 0, 0).contains(PteBits::W), "soft-dirty tracking");
    // uffd-wp'd pte in a uffd-wp VMA.
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        &cfg(),
    );
    let b = bits(&s, 0, 0);
    assert!(!b.contains(PteBits::W) && b.contains(PteBits::UW), "uffd-wp");
}

#[test]
fn mprotect_v61_shmem_uffd_wp_to_rw_makes_uw_pte_writable() {
    // Kernel-semantics §2.3: in v6.1 release an mprotect to RW of a shmem uffd-wp
    // VMA makes every present pte W (newprot is W), UW included. B1 fixes it.
    let text = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)";
    let s = run(text, &cfg_k(Kernel::V61));
    assert!(bits(&s, 0, 0).contains(PteBits::W | PteBits::UW));
    let s = run(text, &cfg_k(Kernel::V61y));
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW) && !b.contains(PteBits::W));
}

// ---------------------------------------------------------------------------
// 7. userfaultfd write protection
// ---------------------------------------------------------------------------

#[test]
fn uffd_wp_protects_present_and_marks_none_on_shmem() {
    let text = "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)";
    let s = run(text, &cfg());
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW | PteBits::D | PteBits::SD));
    assert!(!b.contains(PteBits::W));
    assert_eq!(s.procs[0].pt[1], Entry::Marker);
    // Anonymous VMAs get no markers.
    let s = run("mmap(p0, 0, 2, rw-, anon)\nuffd_register(p0, 0, 2)\nuffd_wp(p0, 0, 2)", &cfg());
    assert_eq!(s.procs[0].pt[1], Entry::None);
}

#[test]
fn uffd_wp_write_blocks() {
    let (s, r) = run_r(
        "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\nwrite(p0, 0)\nwrite(p0, 1)",
        &cfg(),
    );
    assert_eq!(r[4], StepResult::UffdWp, "write to a UW pte");
    assert_eq!(r[5], StepResult::UffdWp, "write to a marker");
    // The marker fault maps the page write-protected with UW (do_set_pte l.4396+).
    let b = bits(&s, 0, 1);
    assert!(b.contains(PteBits::UW) && !b.contains(PteBits::W));
    // Reads are fine.
    let (_, r) =
        run_r("mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nuffd_wp(p0, 0, 2)\nread(p0, 1)", &cfg());
    assert_eq!(r[3], StepResult::Ok);
}

#[test]
fn uffd_unwp_shared_makes_every_present_pte_writable() {
    // v6.1 uffd_wp_range resolve: newprot = vm_get_page_prot(flags) (RW for shared),
    // ignoring soft-dirty tracking and (B1) the read-only vm_page_prot.
    for k in [Kernel::V61, Kernel::V61y] {
        let s = run(
            "mmap(p0, 0, 3, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 3)\nread(p0, 0)\nwrite(p0, 1)\nuffd_wp(p0, 0, 3)\nclear_refs(p0)\nuffd_unwp(p0, 0, 3)",
            &cfg_k(k),
        );
        assert!(!prot_w(&s, 0, 0), "{k:?}: prot is RO");
        for a in [0, 1] {
            let b = bits(&s, 0, a);
            assert!(b.contains(PteBits::W), "{k:?}[{a}] W");
            assert!(!b.intersects(PteBits::UW | PteBits::SD), "{k:?}[{a}]");
        }
        assert_eq!(s.procs[0].pt[2], Entry::None, "{k:?}: marker dropped");
    }
    // Private: PAGE_COPY -> every pte read-only.
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nuffd_unwp(p0, 0, 1)",
        &cfg(),
    );
    let b = bits(&s, 0, 0);
    assert!(!b.intersects(PteBits::W | PteBits::UW));
}

#[test]
fn uffd_markers_survive_dontneed_but_not_munmap() {
    let text = "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\nmadvise(p0, 0, 2, MADV_DONTNEED)";
    let s = run(text, &cfg());
    // Page 1's marker kept; page 0's UW pte becomes a marker
    // (zap_install_uffd_wp_if_needed, mm/memory.c:1387-1397).
    assert_eq!(s.procs[0].pt[0], Entry::Marker);
    assert_eq!(s.procs[0].pt[1], Entry::Marker);
    let (_, r) = run_r(&format!("{text}\nwrite(p0, 1)"), &cfg());
    assert_eq!(r[5], StepResult::UffdWp);
    let s = run(&format!("{text}\nmunmap(p0, 0, 2)"), &cfg());
    assert_eq!(s.procs[0].pt[0], Entry::None);
    assert_eq!(s.procs[0].pt[1], Entry::None);
    // A later mapping of the range starts clean.
    let (s, r) =
        run_r(&format!("{text}\nmunmap(p0, 0, 2)\nmmap(p0, 0, 2, rw-, memfd, shared, 0)\nwrite(p0, 1)"), &cfg());
    assert_eq!(r[7], StepResult::Ok);
    assert!(!bits(&s, 0, 1).contains(PteBits::UW));
}

#[test]
fn uffd_unregister_resolves_write_protection() {
    let (s, r) = run_r(
        "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\nuffd_unregister(p0, 0, 2)\nwrite(p0, 0)",
        &cfg(),
    );
    assert_eq!(r[5], StepResult::Ok);
    assert!(!bits(&s, 0, 0).contains(PteBits::UW));
    assert_eq!(s.procs[0].pt[1], Entry::None);
}

#[test]
fn uffd_register_requires_shmem_or_anon() {
    let (_, r) = run_r("mmap(p0, 0, 1, rw-, ext4, shared, 0)\nuffd_register(p0, 0, 1)", &cfg());
    assert_eq!(r[1], StepResult::Failed);
    let (_, r) = run_r("mmap(p0, 0, 1, rw-, ramfs, shared, 0)\nuffd_register(p0, 0, 1)", &cfg());
    assert_eq!(r[1], StepResult::Failed);
}

// ---------------------------------------------------------------------------
// 8. remove_migration_pte variants on the thread's scenarios (mm/migrate.c:174-268)
// ---------------------------------------------------------------------------

const MEMFD_UFFD_WP: &str = "\
mmap(p0, 0, 1, rw-, memfd, shared, 0)
uffd_register(p0, 0, 1)
write(p0, 0)
uffd_wp(p0, 0, 1)
migrate(p0, 0)
";

#[test]
fn thread_memfd_uffd_wp_then_migrate() {
    // Before migration: W=0, UW=1, prot PAGE_SHARED (v6.1, no B1): MIG_R + swpUW.
    let pre = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmigrate_start(p0, 0)",
        &cfg(),
    );
    assert_eq!(mig(&pre, 0, 0).0, MigKind::Read);
    assert!(prot_w(&pre, 0, 0));

    let expect = [
        (Restore::PreFix, true),
        (Restore::FullRestore, false),
        (Restore::VmPageProt, false),
        (Restore::Stable61y, true),
    ];
    for (restore, w) in expect {
        let c = cfg_r(restore);
        let mut s = run(MEMFD_UFFD_WP, &c);
        let b = bits(&s, 0, 0);
        assert!(b.contains(PteBits::UW), "{restore:?}: UW kept");
        assert_eq!(b.contains(PteBits::W), w, "{restore:?}: W");
        assert!(b.contains(PteBits::D | PteBits::SD), "{restore:?}");
        assert!(!s.warned, "{restore:?}");
        // The consequence: pre-fix lets the write through without a uffd event.
        let r = more(&mut s, "write(p0, 0)", &c);
        let want = if w { StepResult::Ok } else { StepResult::UffdWp };
        assert_eq!(r, [want], "{restore:?}");
    }
    // On 6.1.y (B1) the prot is read-only, so even the stable restore gives RO.
    let c = Config { kernel: Kernel::V61y, ..cfg_r(Restore::Stable61y) };
    let s = run(MEMFD_UFFD_WP, &c);
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW) && !b.contains(PteBits::W));
}

const SOFTDIRTY_MERGE: &str = "\
mmap(p0, 0, 1, rw-, memfd, shared, 0)
write(p0, 0)
clear_refs(p0)
mmap(p0, 1, 1, rw-, memfd, shared, 1)
migrate(p0, 0)
";

#[test]
fn thread_softdirty_merge_really_merges() {
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nclear_refs(p0)", &cfg());
    assert!(!prot_w(&s, 0, 0));
    assert!(!vflags(&s, 0, 0).contains(VmFlags::SOFTDIRTY));
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::D) && !b.intersects(PteBits::W | PteBits::SD));
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nclear_refs(p0)\nmmap(p0, 1, 1, rw-, memfd, shared, 1)",
        &cfg(),
    );
    assert_eq!(s.procs[0].vmas.len(), 1, "vma_expand of prev");
    let v = s.procs[0].vmas[0];
    assert_eq!((v.start, v.end, v.pgoff), (0, 2, 0));
    assert!(v.flags.contains(VmFlags::SOFTDIRTY));
    assert!(v.prot.contains(PageProt::RW));
    // The pte itself is untouched by the expansion.
    assert!(!bits(&s, 0, 0).contains(PteBits::W));
}

#[test]
fn thread_softdirty_merge_then_migrate() {
    let expect = [
        (Restore::PreFix, true),
        (Restore::FullRestore, false),
        (Restore::VmPageProt, true),
        (Restore::Stable61y, false),
    ];
    for (restore, w) in expect {
        let s = run(SOFTDIRTY_MERGE, &cfg_r(restore));
        let b = bits(&s, 0, 0);
        assert_eq!(b.contains(PteBits::W), w, "{restore:?}: W");
        // Dirty entry + dirty folio: pte_mkdirty -> D and SD.
        assert!(b.contains(PteBits::D | PteBits::SD), "{restore:?}");
        assert!(!b.contains(PteBits::UW));
    }
}

#[test]
fn full_restore_warns_on_writable_uffd_wp_migration_entry() {
    // A W+UW pte (v6.1 mprotect bug) migrates as MIG_W + swpUW: full-restore keeps
    // UW (and WARNs since W), the others drop UW.
    let text = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)\nmigrate(p0, 0)";
    let s = run(text, &cfg_r(Restore::FullRestore));
    assert!(s.warned);
    assert!(bits(&s, 0, 0).contains(PteBits::W | PteBits::UW));
    for r in [Restore::PreFix, Restore::VmPageProt, Restore::Stable61y] {
        let s = run(text, &cfg_r(r));
        assert!(!s.warned, "{r:?}");
        let b = bits(&s, 0, 0);
        assert!(b.contains(PteBits::W) && !b.contains(PteBits::UW), "{r:?}");
    }
}

// ---------------------------------------------------------------------------
// 9. Swap (mm/rmap.c:try_to_unmap_one, mm/memory.c:do_swap_page 3775-4130)
// ---------------------------------------------------------------------------

#[test]
fn swap_out_keeps_exclusive_and_swap_in_restores_it() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)", &cfg());
    let (b, slot) = swp(&s, 0, 0);
    assert!(b.contains(SwpBits::EXCL | SwpBits::SD));
    assert!(!b.contains(SwpBits::UW));
    assert_eq!(s.slots[slot as usize].count, 1);
    let mut s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\nread(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
    assert!(!b.contains(PteBits::W), "read swap-in: private prot");
    assert!(b.contains(PteBits::SD), "swpSD -> SD");
    // Exclusive: the write reuses the page.
    more(&mut s, "write(p0, 0)", &cfg());
    let (b, f2) = pte(&s, 0, 0);
    assert_eq!(f, f2);
    assert!(b.contains(PteBits::W | PteBits::D));
}

#[test]
fn swap_in_write_fault_on_exclusive_entry_maps_writable() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\nclear_refs(p0)\nwrite(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
}

#[test]
fn swap_after_fork_not_exclusive_and_write_copies() {
    let mut s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\np1 = fork(p0)\nread(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(!b.contains(PteBits::W));
    assert!(
        !fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE),
        "not exclusive: swpEXCL was cleared by fork and the swap cache holds a ref"
    );
    // The child still has its swap entry; a write in the parent must copy.
    more(&mut s, "write(p0, 0)", &cfg());
    let (b, f2) = pte(&s, 0, 0);
    assert_ne!(f, f2, "COW copy");
    assert!(b.contains(PteBits::W));
    assert!(matches!(s.procs[1].pt[0], Entry::Swap { .. }));
    // The child reads the original data (the swap-cache folio).
    more(&mut s, "read(p1, 0)", &cfg());
    assert_eq!(pte(&s, 1, 0).1, f);
}

#[test]
fn swap_in_with_swp_uffd_wp_restores_uw_readonly() {
    let text = "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\npageout(p0, 0)";
    let s = run(text, &cfg());
    assert!(swp(&s, 0, 0).0.contains(SwpBits::UW | SwpBits::EXCL));
    let s = run(&format!("{text}\nread(p0, 0)"), &cfg());
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW) && !b.contains(PteBits::W));
    // Write fault: the write is consumed by the exclusive path (mkdirty +
    // maybe_mkwrite), then swpUW wrprotects: W=0, D=1, SD=1, UW=1, and the retry
    // traps to userfaultfd (l.4052-4067).
    let (s, r) = run_r(&format!("{text}\nwrite(p0, 0)"), &cfg());
    assert_eq!(r[5], StepResult::UffdWp);
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW | PteBits::D | PteBits::SD));
    assert!(!b.contains(PteBits::W));
}

#[test]
fn swapoff_unuse_pte_restores_bits() {
    // unuse_pte (mm/swapfile.c:1779-1848): mkold(mk_pte(prot)), swpSD, swpUW,
    // exclusive iff swpEXCL.
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\npageout(p0, 0)\nswapoff()",
        &cfg(),
    );
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::UW | PteBits::SD));
    assert!(!b.intersects(PteBits::W | PteBits::A | PteBits::D));
    assert!(fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
    assert!(!fflags(&s, f).contains(FolioFlags::SWAPCACHE));
}

#[test]
fn shmem_pageout_leaves_none_or_marker() {
    // try_to_unmap_one file branch: pte cleared; marker only for UW in a uffd-wp VMA.
    let s = run(
        "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nwrite(p0, 1)\nuffd_wp(p0, 0, 1)\npageout(p0, 0)\npageout(p0, 1)",
        &cfg(),
    );
    assert_eq!(s.procs[0].pt[0], Entry::Marker);
    assert_eq!(s.procs[0].pt[1], Entry::None);
    // Swap-in through a fault: shmem_swapin_folio marks the folio dirty; the pte
    // comes from vm_page_prot (read fault: clean, SD lost).
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\npageout(p0, 0)\nread(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
    assert!(!b.intersects(PteBits::SD | PteBits::D));
}

// ---------------------------------------------------------------------------
// 10. MADV_FREE (mm/madvise.c:594-729) and lazy-free reclaim (mm/rmap.c:1673-1713)
// ---------------------------------------------------------------------------

#[test]
fn madv_free_keeps_w_clears_d_and_a() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::SD));
    assert!(!b.intersects(PteBits::D | PteBits::A));
    assert!(fflags(&s, f).contains(FolioFlags::LAZYFREE));
    assert!(!fflags(&s, f).contains(FolioFlags::DIRTY));
}

#[test]
fn lazyfree_clean_page_is_discarded_on_pageout() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)", &cfg());
    let f = pte(&s, 0, 0).1;
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)\npageout(p0, 0)", &cfg());
    assert_eq!(s.procs[0].pt[0], Entry::None, "discarded, no swap entry");
    assert_eq!(s.folio(f).kind, FolioKind::Free);
    assert!(s.slots.iter().all(|x| !x.in_use()));
}

#[test]
fn lazyfree_written_page_is_kept_on_pageout() {
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)\nwrite(p0, 0)\npageout(p0, 0)",
        &cfg(),
    );
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D), "pte put back unchanged");
    assert!(!fflags(&s, f).contains(FolioFlags::LAZYFREE), "swapbacked again");
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
}

#[test]
fn madv_free_frees_swap_entries() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)", &cfg());
    assert_eq!(s.procs[0].pt[0], Entry::None);
    assert!(s.slots.iter().all(|x| !x.in_use()));
}

#[test]
fn madv_free_refused_on_shared_or_file_mappings() {
    let (_, r) = run_r("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nmadvise(p0, 0, 1, MADV_FREE)", &cfg());
    assert_eq!(r[1], StepResult::Failed);
}

// ---------------------------------------------------------------------------
// 11. folio_mkclean via writeback (mm/rmap.c:946-1058, mm/page-writeback.c:2856)
// ---------------------------------------------------------------------------

#[test]
fn ext4_writeback_cleans_and_wrprotects_shared_pte() {
    let text = "mmap(p0, 0, 1, rw-, ext4, shared, 0)\nwrite(p0, 0)";
    let s = run(text, &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
    let mut s = run(&format!("{text}\nwriteback(p0, 0)"), &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(!b.intersects(PteBits::W | PteBits::D));
    assert!(b.contains(PteBits::SD), "SD untouched");
    assert!(!fflags(&s, f).contains(FolioFlags::DIRTY));
    // The next write goes through page_mkwrite again and re-dirties the folio.
    more(&mut s, "write(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
}

#[test]
fn ext4_read_then_write_goes_through_page_mkwrite() {
    let s = run("mmap(p0, 0, 1, rw-, ext4, shared, 0)\nread(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(!b.contains(PteBits::W), "writenotify: read fault maps RO");
    assert!(!fflags(&s, f).contains(FolioFlags::DIRTY));
    let s = run("mmap(p0, 0, 1, rw-, ext4, shared, 0)\nread(p0, 0)\nwrite(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
}

#[test]
fn writeback_does_nothing_on_shmem() {
    // shmem sits on the noop BDI: no mapping_can_writeback -> no folio_mkclean.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nwriteback(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D));
    assert!(fflags(&s, f).contains(FolioFlags::DIRTY));
}

// ---------------------------------------------------------------------------
// 12. mremap / move_ptes (mm/mremap.c:121-216)
// ---------------------------------------------------------------------------

#[test]
fn mremap_moves_entries_and_sets_soft_dirty() {
    let s = run(
        "mmap(p0, 0, 2, rw-, anon)\nwrite(p0, 0)\nwrite(p0, 1)\npageout(p0, 1)\nclear_refs(p0)\nmremap(p0, 0, 2, 8)",
        &cfg(),
    );
    assert!(s.procs[0].pt[0].is_none() && s.procs[0].pt[1].is_none());
    assert!(s.procs[0].vma(0).is_none());
    let b = bits(&s, 0, 8);
    assert!(b.contains(PteBits::SD | PteBits::D));
    assert!(!b.contains(PteBits::W), "W kept as it was (wrprotected)");
    let (sb, _) = swp(&s, 0, 9);
    assert!(sb.contains(SwpBits::SD | SwpBits::EXCL));
    let v = s.procs[0].vma(8).expect("moved vma");
    assert_eq!((v.start, v.end), (8, 10));
}

#[test]
fn mremap_uffd_wp_v61_keeps_uw_v61y_clears_it() {
    let text =
        "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmremap(p0, 0, 1, 8)";
    let s = run(text, &cfg_k(Kernel::V61));
    let b = bits(&s, 0, 8);
    assert!(b.contains(PteBits::UW) && !b.contains(PteBits::W));
    assert!(!vflags(&s, 0, 8).contains(VmFlags::UFFD_WP), "no EVENT_REMAP");
    let s = run(text, &cfg_k(Kernel::V61y));
    let b = bits(&s, 0, 8);
    assert!(!b.contains(PteBits::UW), "6.1.y move_ptes l.203-212");
    assert!(!b.contains(PteBits::W), "W is not changed");
    // Markers are dropped by the backport.
    let text = "mmap(p0, 0, 2, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 2)\nuffd_wp(p0, 0, 2)\nmremap(p0, 0, 2, 8)";
    let s = run(text, &cfg_k(Kernel::V61));
    assert_eq!(s.procs[0].pt[9], Entry::Marker);
    let s = run(text, &cfg_k(Kernel::V61y));
    assert_eq!(s.procs[0].pt[9], Entry::None);
}

// ---------------------------------------------------------------------------
// 13. do_numa_page (mm/memory.c:4787-4890)
// ---------------------------------------------------------------------------

const NUMA_UFFD: &str = "\
mmap(p0, 0, 1, rw-, memfd, shared, 0)
uffd_register(p0, 0, 1)
read(p0, 0)
uffd_wp(p0, 0, 1)
numa_hint(p0, 0)
";

#[test]
fn numa_hint_makes_pte_protnone() {
    let s = run(NUMA_UFFD, &cfg());
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::PROTNONE | PteBits::UW));
    assert!(!b.contains(PteBits::W));
}

#[test]
fn numa_fault_restores_w_from_vm_page_prot_ignoring_uw_v61() {
    // B1 changelog case (b): v6.1 do_numa_page does pte_modify(pte, vm_page_prot)
    // (PAGE_SHARED for a uffd-wp shmem VMA) and keeps UW: the write is not trapped.
    let (s, r) = run_r(&format!("{NUMA_UFFD}read(p0, 0)\nwrite(p0, 0)"), &cfg_k(Kernel::V61));
    assert_eq!(r[5], StepResult::Ok);
    assert_eq!(r[6], StepResult::Ok, "v6.1: write not trapped");
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::UW | PteBits::D));
    assert!(!b.contains(PteBits::PROTNONE));
    // 6.1.y: B1 makes vm_page_prot RO, so the write traps to userfaultfd.
    let (s, r) = run_r(&format!("{NUMA_UFFD}read(p0, 0)\nwrite(p0, 0)"), &cfg_k(Kernel::V61y));
    assert_eq!(r[6], StepResult::UffdWp);
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::UW) && !b.contains(PteBits::W));
}

#[test]
fn numa_fault_preserves_write_bit() {
    // preserve_write (savedwrite == W on x86) and was_writable in do_numa_page.
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nnuma_hint(p0, 0)\nread(p0, 0)", &cfg());
    let b = bits(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::A));
    assert!(!b.contains(PteBits::PROTNONE));
}

#[test]
fn numa_hint_does_not_skip_dirty_shmem_pages() {
    // mm/mprotect.c:change_pte_range l.145: `page_is_file_lru(page) &&
    // PageDirty(page)` -> skip. page_is_file_lru == !PageSwapBacked
    // (include/linux/mm_inline.h:27-35); shmem folios are swap-backed, so a dirty
    // shmem page IS made protnone.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nnuma_hint(p0, 0)", &cfg());
    assert!(bits(&s, 0, 0).contains(PteBits::PROTNONE));
}

#[test]
fn numa_hint_skips_dirty_ext4_pages() {
    let s = run("mmap(p0, 0, 1, rw-, ext4, shared, 0)\nwrite(p0, 0)\nnuma_hint(p0, 0)", &cfg());
    assert!(!bits(&s, 0, 0).contains(PteBits::PROTNONE));
}

// ---------------------------------------------------------------------------
// Misc: zero page, merges keep/replace flags, private file COW
// ---------------------------------------------------------------------------

#[test]
fn anon_read_maps_zero_page_then_write_copies() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nread(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert_eq!(f, ZERO_PAGE);
    assert!(!b.intersects(PteBits::W | PteBits::D | PteBits::SD));
    let s = run("mmap(p0, 0, 1, rw-, anon)\nread(p0, 0)\nwrite(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert_ne!(f, ZERO_PAGE);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
}

#[test]
fn private_file_write_is_cow_to_exclusive_anon() {
    let s = run("mmap(p0, 0, 1, rw-, memfd, private, 0)\nread(p0, 0)\nwrite(p0, 0)", &cfg());
    let (b, f) = pte(&s, 0, 0);
    assert_eq!(s.folio(f).kind, FolioKind::Anon);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(fflags(&s, f).contains(FolioFlags::ANON_EXCLUSIVE));
    // The page-cache page is untouched (not dirty).
    let pc = s.files[0].cache[0];
    assert!(!fflags(&s, pc).contains(FolioFlags::DIRTY));
}

#[test]
fn madvise_merge_replaces_softdirty_without_prot_recompute() {
    // madvise_update_vma (mm/madvise.c:140-190): on a merge the survivor takes the
    // target's flags (incl. VM_SOFTDIRTY) and keeps its stale vm_page_prot.
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nmadvise(p0, 0, 1, MADV_RANDOM)\nclear_refs(p0)\nmmap(p0, 1, 1, rw-, memfd, shared, 1)\nmadvise(p0, 1, 1, MADV_RANDOM)",
        &cfg(),
    );
    assert_eq!(s.procs[0].vmas.len(), 1);
    let v = s.procs[0].vmas[0];
    assert!(v.flags.contains(VmFlags::SOFTDIRTY | VmFlags::RAND_READ));
    assert!(!v.prot.contains(PageProt::RW), "stale read-only prot kept");
}

// ---------------------------------------------------------------------------
// More uffd-wp corner rules
// ---------------------------------------------------------------------------

#[test]
fn b1_prot_recomputed_when_child_or_mremap_target_loses_uffd_wp() {
    // dup_userfaultfd / mremap_userfaultfd_prep -> userfaultfd_set_vm_flags: with
    // B1 a shared VMA losing VM_UFFD_WP gets vma_set_page_prot (RW again).
    let text = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\np1 = fork(p0)\nmremap(p0, 0, 1, 8)";
    let s = run(text, &cfg_k(Kernel::V61y));
    assert!(!vflags(&s, 1, 0).contains(VmFlags::UFFD_WP));
    assert!(prot_w(&s, 1, 0), "child prot recomputed");
    assert!(!vflags(&s, 0, 8).contains(VmFlags::UFFD_WP));
    assert!(prot_w(&s, 0, 8), "mremap target prot recomputed");
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\np1 = fork(p0, event_fork)",
        &cfg_k(Kernel::V61y),
    );
    assert!(vflags(&s, 1, 0).contains(VmFlags::UFFD_WP));
    assert!(!prot_w(&s, 1, 0), "event_fork child keeps uffd-wp and RO prot");
}

#[test]
fn wp_page_reuse_keeps_uw_outside_uffd_wp_vma() {
    // v6.1 mremap keeps UW but the new VMA is not uffd-wp: the write is not
    // trapped (userfaultfd_pte_wp needs VM_UFFD_WP) and wp_page_reuse keeps UW
    // (mm/memory.c:3085-3110).
    let (s, r) = run_r(
        "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmremap(p0, 0, 1, 8)\nwrite(p0, 8)",
        &cfg_k(Kernel::V61),
    );
    assert_eq!(r[5], StepResult::Ok);
    let b = bits(&s, 0, 8);
    assert!(b.contains(PteBits::W | PteBits::UW | PteBits::D | PteBits::SD));
}

#[test]
fn stale_marker_in_non_uffd_wp_vma_is_cleared_on_fault() {
    // v6.1 copies the marker into a non-uffd-wp child; handle_pte_marker ->
    // pte_marker_handle_uffd_wp clears it and the fault proceeds normally.
    let (s, r) = run_r(
        "mmap(p0, 0, 2, rw-, memfd, private, 0)\nuffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\np1 = fork(p0)\nwrite(p1, 1)",
        &cfg_k(Kernel::V61),
    );
    assert_eq!(r[5], StepResult::Ok);
    let (b, f) = pte(&s, 1, 1);
    assert!(!b.contains(PteBits::UW));
    assert!(b.contains(PteBits::W | PteBits::D));
    assert_eq!(s.folio(f).kind, FolioKind::Anon);
}

#[test]
fn mmap_never_expands_uffd_registered_or_shared_anon_neighbours() {
    // __mmap_region (mm/mmap.c:2724-2750): candidates are tested with a NULL uffd
    // ctx; shared-anon has no file yet at that point.
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nmmap(p0, 1, 1, rw-, memfd, shared, 1)",
        &cfg(),
    );
    assert_eq!(s.procs[0].vmas.len(), 2);
    let s = run("mmap(p0, 0, 1, rw-, shared-anon)\nmmap(p0, 1, 1, rw-, shared-anon)", &cfg());
    assert_eq!(s.procs[0].vmas.len(), 2);
    // Control: the same memfd at a contiguous offset does expand.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nmmap(p0, 1, 1, rw-, memfd, shared, 1)", &cfg());
    assert_eq!(s.procs[0].vmas.len(), 1);
    // ...but not at a non-contiguous offset.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nmmap(p0, 1, 1, rw-, memfd, shared, 2)", &cfg());
    assert_eq!(s.procs[0].vmas.len(), 2);
}

/// mlock_fixup()/do_mlock() (mm/mlock.c): a range ending in a hole fails with
/// ENOMEM after locking the VMAs before it, and nothing is populated; the same
/// ENOMEM stops mprotect (do_mprotect_pkey) at a trailing hole.
#[test]
fn mlock_and_mprotect_stop_at_a_trailing_hole() {
    let (s, res) = run_r("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nmlock(p0, 0, 2)\n", &cfg());
    assert_eq!(res[1], StepResult::Failed);
    assert!(s.procs[0].vma(0).unwrap().flags.contains(VmFlags::LOCKED));
    assert_eq!(s.procs[0].pt[0], Entry::None, "not populated");
    let (s, res) = run_r("mmap(p0, 0, 1, rw-, anon)\nmprotect(p0, 0, 2, r--)\n", &cfg());
    assert_eq!(res[1], StepResult::Failed);
    assert!(!s.procs[0].vma(0).unwrap().flags.contains(VmFlags::WRITE), "the VMA before the hole is changed");
}

/// mremap_to() (mm/mremap.c): the destination is unmapped before vma_to_resize()
/// rejects an old range that crosses a VMA boundary.
#[test]
fn failed_mremap_still_unmaps_the_destination() {
    let (s, res) = run_r(
        "mmap(p0, 0, 2, rw-, memfd, private, 0)\nwrite(p0, 1)\nmmap(p0, 4, 1, rw-, memfd, shared, 4)\nmremap(p0, 4, 2, 0)\n",
        &cfg(),
    );
    assert_eq!(res[3], StepResult::Failed);
    assert!(s.procs[0].vma(0).is_none() && s.procs[0].vma(1).is_none());
    assert_eq!(s.procs[0].pt[1], Entry::None);
    assert!(s.procs[0].vma(4).is_some(), "the source stays");
}

/// x86 execute-only pkey (arch/x86/mm/pkeys.c): data accesses to a PROT_EXEC-only
/// mapping fault (SIGSEGV) and mlock does not populate it.
#[test]
fn exec_only_mappings_are_not_readable() {
    let (s, res) = run_r("mmap(p0, 5, 2, --x, memfd, shared, 5)\nmlock(p0, 5, 2)\nread(p0, 5)\n", &cfg());
    assert_eq!(res[1], StepResult::Ok);
    assert_eq!(res[2], StepResult::Segv);
    assert_eq!(s.procs[0].pt[5], Entry::None);
    let (s, res) = run_r("mmap(p0, 5, 1, r-x, memfd, shared, 5)\nread(p0, 5)\n", &cfg());
    assert_eq!(res[1], StepResult::Ok);
    assert!(matches!(s.procs[0].pt[5], Entry::Present { .. }));
}

/// VM_ACCOUNT (mm/mmap.c accountable_mapping, mm/mprotect.c mprotect_fixup): set on
/// private writable mappings and, on v6.1, never dropped, so a charged VMA does not
/// merge with an uncharged neighbour; v6.12 drops it on mprotect(PROT_READ) of an
/// anonymous VMA without an anon_vma.
#[test]
fn vm_account_keeps_vmas_apart_on_61_only() {
    let t = "mmap(p0, 0, 1, rw-, anon)\nmprotect(p0, 0, 1, r--)\nmmap(p0, 1, 1, r--, anon)\nmremap(p0, 0, 2, 4)\n";
    let (s, res) = run_r(t, &cfg());
    assert!(s.procs[0].vma(0).unwrap().flags.contains(VmFlags::ACCOUNT));
    assert_eq!(res[3], StepResult::Failed, "two VMAs: mremap across them fails on v6.1");
    let (s, res) = run_r(t, &cfg_k(Kernel::V612));
    assert_eq!(res[3], StepResult::Ok, "merged on v6.12");
    assert!(s.procs[0].vma(4).is_some_and(|v| v.start == 4 && v.end == 6));
}

/// is_mergeable_anon_vma() (mm/mmap.c): a forked child's anon_vma_chain is not
/// singular, so an anon_vma-less range does not merge into it.
#[test]
fn forked_anon_vma_chain_blocks_merges() {
    let (s, _) = run_r("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmmap(p1, 1, 1, rw-, anon)\n", &cfg());
    assert_eq!(s.procs[1].vmas.len(), 2);
    let (s, _) = run_r("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmmap(p0, 1, 1, rw-, anon)\n", &cfg());
    assert_eq!(s.procs[0].vmas.len(), 1, "the parent's own anon_vma is a single link: merged");
}

/// __mm_populate() (mm/gup.c): mlock's populate stops at the first VMA GUP refuses,
/// and a FOLL_WRITE touch of a clean writable PTE dirties the folio.
#[test]
fn mlock_populate_stops_at_prot_none_and_dirties_touched_pages() {
    let (s, _) = run_r("mmap(p0, 0, 1, ---, anon)\nmmap(p0, 1, 1, rw-, anon)\nmlock(p0, 0, 2)\n", &cfg());
    assert_eq!(s.procs[0].pt[1], Entry::None);
    let (s, _) = run_r(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)\nmlock(p0, 0, 1)\nmunlock(p0, 0, 1)\npageout(p0, 0)\n",
        &cfg(),
    );
    assert!(bits(&s, 0, 0).contains(PteBits::W), "dirtied by GUP, so not discarded");
}

// ---------------------------------------------------------------------------
// The candidate clear_soft_dirty() fix (`+clear-refs-fix`)
// ---------------------------------------------------------------------------

/// clear_refs meeting a page under migration: every kernel keeps a writable
/// migration entry writable, so the restore maps the page writable without SD (the
/// clean case on every profile). With the fix the entry becomes readable and the
/// restored PTE write-protected, so the next store faults and sets SD.
#[test]
fn clear_refs_fix_write_protects_a_writable_migration_entry() {
    let t = "mmap(p0, 4, 1, rw-, memfd, shared, 4)\nread(p0, 4)\nmigrate_start(p0, 4)\nclear_refs(p0)\n";
    for k in Kernel::ALL {
        for (name, rw) in [("vm-page-prot", true), ("vm-page-prot+clear-refs-fix", false)] {
            let c = Config::parse_variant(name, k).unwrap();
            let mut s = run(t, &c);
            match s.procs[0].pt[4] {
                Entry::Migration { kind, .. } => assert_eq!(kind == MigKind::Write, rw, "{name} {k:?}"),
                e => panic!("{e:?}"),
            }
            ptediff::model::finish(&mut s, &c);
            let b = match s.procs[0].pt[4] {
                Entry::Present { bits, .. } => bits,
                e => panic!("{e:?}"),
            };
            assert_eq!(b.contains(PteBits::W), rw, "{name} {k:?}");
            assert!(!b.contains(PteBits::SD));
        }
    }
    // An anonymous page's entry becomes readable-exclusive (it stays exclusive).
    let c = Config::parse_variant("vm-page-prot+clear-refs-fix", Kernel::V73).unwrap();
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nclear_refs(p0)\n", &c);
    assert!(matches!(s.procs[0].pt[0], Entry::Migration { kind: MigKind::ReadExclusive, .. }));
    assert_eq!(c.variant_name(), "vm-page-prot+clear-refs-fix");
    assert_eq!(
        Config::parse_variant("pre-fix+unuse-care+clear-refs-fix", Kernel::V61).unwrap().variant_name(),
        "pre-fix+unuse-care+clear-refs-fix"
    );
}

/// MADV_FREE of a swapped-out page frees the swap entry (madvise_free_pte_range(),
/// mm/madvise.c): the PTE is none and the page reads zero from now on, so like
/// MADV_DONTNEED it no longer counts as changed since clear_refs (a tracker sees
/// a page that is neither present nor swapped: zero).
#[test]
fn madvise_free_of_a_swap_entry_discards_the_page() {
    let c = cfg();
    let mut w = run_world("mmap(p0, 11, 1, rw-, anon)\nclear_refs(p0)\nwrite(p0, 11)\npageout(p0, 11)\n", &c);
    assert!(matches!(w.k.procs[0].pt[11], Entry::Swap { .. }));
    assert_ne!(w.g.procs[0].changed & (1 << 11), 0, "the store after clear_refs changed the page");
    let op = parse("madvise(p0, 11, 1, MADV_FREE)").unwrap().ops[0];
    assert_eq!(w.step(&c, &op), StepResult::Ok);
    assert_eq!(w.k.procs[0].pt[11], Entry::None);
    assert_eq!(w.g.procs[0].changed & (1 << 11), 0);
}

/// dup_mmap() with UFFD_FEATURE_EVENT_FORK copies write protection with the
/// PTEs; a VM_WIPEONFORK VMA starts empty in the child, and an empty anonymous
/// page carries no protection: the child owes no uffd-wp message there.
#[test]
fn wipeonfork_child_pages_are_not_write_protected() {
    let c = cfg();
    let w = run_world(
        "mmap(p0, 12, 1, rw-, anon)\nuffd_register(p0, 12, 1)\nread(p0, 12)\nuffd_wp(p0, 12, 1)\n\
         madvise(p0, 12, 1, MADV_WIPEONFORK)\np1 = fork(p0, event_fork)\n",
        &c,
    );
    assert_ne!(w.g.procs[0].user_wp & (1 << 12), 0, "the parent keeps its protection");
    assert_eq!(w.k.procs[1].pt[12], Entry::None);
    assert_eq!(w.g.procs[1].user_wp & (1 << 12), 0);
}

/// The merge hole's counterfactual (sticky VM_SOFTDIRTY patched into v6.1): a
/// uffd register merge keeps the survivor's VM_SOFTDIRTY although v6.1 assigns
/// the target's flags; without the patch the page loses it.
#[test]
fn sticky_softdirty_counterfactual_covers_uffd_register_merges() {
    let text = "mmap(p0, 0, 2, rw-, anon)\nmmap(p0, 2, 1, rw-, anon)\nuffd_register(p0, 0, 2)\nclear_refs(p0)\n\
                mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 3)\n";
    let plain = cfg_k(Kernel::V61);
    let sticky = Config { patches: ptediff::model::Patches::STICKY_SOFTDIRTY, ..plain };
    let sd = |c: &Config| run(text, c).procs[0].vma(0).unwrap().flags.contains(VmFlags::SOFTDIRTY);
    assert!(!sd(&plain));
    assert!(sd(&sticky));
}
