//! Each kernel profile's differences from the one before it (v6.1 → v6.12 →
//! v6.18 → v7.3), every rule shown by a program whose outcome differs between the
//! two. Read from Debian's 6.12.95/6.12.117, 6.18.15 and 7.3.4 sources; the corpus
//! programs used here were checked on the real kernels (`ptediff kernel-check`).

use ptediff::model::{step, Config, Entry, Kernel, PteBits, Restore, State, StepResult};
use ptediff::text::parse;

fn run(text: &str, kernel: Kernel, restore: Restore) -> (State, Vec<StepResult>) {
    let cfg = Config { kernel, ..Config::new(restore) };
    let prog = parse(text).unwrap();
    let mut s = State::new();
    let res = prog.ops.iter().map(|op| step(&mut s, &cfg, op)).collect();
    ptediff::model::finish(&mut s, &cfg);
    (s, res)
}

fn bits(s: &State, p: usize, a: usize) -> PteBits {
    match s.procs[p].pt[a] {
        Entry::Present { bits, .. } => bits,
        e => panic!("p{p}[{a}]: {e:?}"),
    }
}

/// v6.3 "always wr-protect pte in pte|pmd_mkuffd_wp()": the pre-fix restore of a
/// uffd-wp entry is read-only on v6.12, writable (the memfd bypass) on v6.1.
#[test]
fn mkuffd_wp_write_protects_on_612() {
    let t = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\nuffd_wp(p0, 0, 1)\nmigrate(p0, 0)\n";
    let (a, _) = run(t, Kernel::V61, Restore::PreFix);
    let (b, _) = run(t, Kernel::V612, Restore::PreFix);
    assert!(bits(&a, 0, 0).contains(PteBits::W | PteBits::UW));
    assert!(!bits(&b, 0, 0).contains(PteBits::W) && bits(&b, 0, 0).contains(PteBits::UW));
}

/// v6.3 "rely on vma->vm_page_prot in uffd_wp_range()": resolving a clean shared
/// PTE leaves it read-only (TRY_CHANGE_WRITABLE needs D); v6.1 makes it writable.
#[test]
fn uffd_resolve_uses_vm_page_prot_on_612() {
    let t = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nread(p0, 0)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\nuffd_unwp(p0, 0, 1)\n";
    let (a, _) = run(t, Kernel::V61, Restore::VmPageProt);
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(bits(&a, 0, 0).contains(PteBits::W));
    assert!(!bits(&b, 0, 0).intersects(PteBits::W | PteBits::UW));
    // Even a dirty shmem PTE stays read-only: with writenotify applied,
    // vm_page_prot is the private protection, so rule 3 of vma_wants_writenotify()
    // ("prot differs from vm_pgprot_modify(prot, flags)") makes
    // vma_wants_manual_pte_write_upgrade() false (mm/vma.c, mm/vma.h in 6.12).
    let t = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\nuffd_unwp(p0, 0, 1)\n";
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(!bits(&b, 0, 0).contains(PteBits::W));
    // A private exclusive anon page is made writable by the resolve on v6.12
    // (TRY_CHANGE_WRITABLE for VM_WRITE); v6.1 maps every private PTE read-only.
    let t =
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\nuffd_unwp(p0, 0, 1)\n";
    let (a, _) = run(t, Kernel::V61, Restore::VmPageProt);
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(!bits(&a, 0, 0).contains(PteBits::W));
    assert!(bits(&b, 0, 0).contains(PteBits::W));
}

/// v6.2 "allow clean exclusive anon pages to be writable": mprotect makes a clean
/// exclusive anon PTE writable on v6.12 only.
#[test]
fn clean_exclusive_anon_writable_on_612() {
    let t = "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_FREE)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)\n";
    let (a, _) = run(t, Kernel::V61, Restore::VmPageProt);
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(!bits(&a, 0, 0).contains(PteBits::D));
    assert!(!bits(&a, 0, 0).contains(PteBits::W));
    assert!(bits(&b, 0, 0).contains(PteBits::W));
}

/// v6.12 restores soft-dirty from the entry only: a dirty writable migration entry
/// that lived through clear_refs comes back without SD (v6.1: mkdirty sets SD).
#[test]
fn restore_soft_dirty_from_entry_only_on_612() {
    let t = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nclear_refs(p0)\nmigrate_finish(p0, 0)\n";
    let (a, _) = run(t, Kernel::V61, Restore::VmPageProt);
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(bits(&a, 0, 0).contains(PteBits::W | PteBits::D | PteBits::SD));
    assert!(bits(&b, 0, 0).contains(PteBits::W | PteBits::D));
    assert!(!bits(&b, 0, 0).contains(PteBits::SD));
    assert!(ptediff::oracle::unsafe_reasons(&b, 0, 0).contains(ptediff::oracle::Reasons::S));
}

/// v6.12 do_swap_page maps an exclusive page writable on a read fault.
#[test]
fn swapin_read_maps_exclusive_page_writable_on_612() {
    let t = "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\npageout(p0, 0)\nread(p0, 0)\n";
    let (a, _) = run(t, Kernel::V61, Restore::VmPageProt);
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(!bits(&a, 0, 0).contains(PteBits::W));
    assert!(bits(&b, 0, 0).contains(PteBits::W));
    assert!(!bits(&b, 0, 0).contains(PteBits::D), "a read maps it clean");
    // ...but not while soft-dirty tracking wants the write fault.
    let t = "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nclear_refs(p0)\npageout(p0, 0)\nread(p0, 0)\n";
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(!bits(&b, 0, 0).contains(PteBits::W));
}

/// v6.3 dropped savedwrite: a NUMA-hinting PTE loses W; do_numa_page re-derives it
/// from vm_page_prot or can_change_pte_writable, so uffd-wp is respected (the B1
/// changelog case (b) program is safe on v6.12).
#[test]
fn numa_hinting_without_savedwrite_on_612() {
    let t = "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nnuma_hint(p0, 0)\n";
    let (a, _) = run(t, Kernel::V61, Restore::VmPageProt);
    let (b, _) = run(t, Kernel::V612, Restore::VmPageProt);
    assert!(bits(&a, 0, 0).contains(PteBits::W | PteBits::PROTNONE));
    assert!(bits(&b, 0, 0).contains(PteBits::PROTNONE) && !bits(&b, 0, 0).contains(PteBits::W));
    let (b, res) = run(&format!("{t}read(p0, 0)\n"), Kernel::V612, Restore::VmPageProt);
    assert_eq!(res.last(), Some(&StepResult::Ok));
    assert!(bits(&b, 0, 0).contains(PteBits::W), "exclusive anon page made writable again");
    let r = ptediff::corpus::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/corpus/oracle-numa-uffd-wp-shmem.ptd"
    )))
    .unwrap();
    let pair = ptediff::check::Pair::new(
        Config { kernel: Kernel::V612, ..r.pair.a },
        Config { kernel: Kernel::V612, ..r.pair.b },
    );
    assert!(ptediff::check::check(&r.program, &pair).violation.is_none());
}

// ---------------------------------------------------------------------------
// v6.12 rules found by kernel-check (Debian 6.12.117), v6.18 (6.18.15) and v7.3
// (7.3.4). Each test runs a corpus regression (checked on the real kernels) or a
// smaller program on the profile before and after the change.

fn layout(s: &State, p: usize) -> Vec<(u8, u8)> {
    s.procs[p].vmas.iter().map(|v| (v.start, v.end)).collect()
}

fn corpus_program(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/").to_string() + name;
    ptediff::corpus::load(std::path::Path::new(&path)).unwrap().program.to_string()
}

fn native(text: &str, k: Kernel) -> (State, Vec<StepResult>) {
    run(text, k, k.native_restore())
}

fn softdirty_vma(s: &State, p: usize, a: u8) -> bool {
    s.procs[p].vma(a).unwrap().flags.contains(ptediff::model::VmFlags::SOFTDIRTY)
}

/// `find_mergeable_anon_vma()` (every profile): a first fault reuses a compatible
/// neighbour's anon_vma, so a later mprotect merges the two VMAs.
#[test]
fn first_fault_reuses_a_neighbours_anon_vma() {
    let t = corpus_program("kc-anon-vma-reuse.ptd");
    for k in Kernel::ALL {
        let (s, res) = native(&t, k);
        assert_eq!(res.last(), Some(&StepResult::Ok), "{k:?}: the mremap of both pages succeeds");
        assert_eq!(layout(&s, 0), vec![(8, 10)], "{k:?}");
    }
}

/// v6.12 `vma_merge_new_range()`: an mmap between an unfaulted prev and a faulted
/// next merges all three; 6.1.y expanded next only.
#[test]
fn mmap_merges_prev_and_next_from_612() {
    let t = "mmap(p0, 2, 1, rw-, anon)\nwrite(p0, 2)\nmmap(p0, 0, 1, rw-, anon)\nmmap(p0, 1, 1, rw-, anon)\n";
    assert_eq!(layout(&native(t, Kernel::V61y).0, 0), vec![(0, 1), (1, 3)]);
    assert_eq!(layout(&native(t, Kernel::V612).0, 0), vec![(0, 3)]);
}

/// v6.12 NUMA hinting skips a COW page mapped more than once, not one with an
/// extra reference: a private file page in the page cache is made protnone.
#[test]
fn numa_hinting_skips_by_mapcount_from_612() {
    let t = "mmap(p0, 0, 1, rw-, memfd, private, 0)\nread(p0, 0)\nnuma_hint(p0, 0)\n";
    assert!(!bits(&native(t, Kernel::V61y).0, 0, 0).contains(PteBits::PROTNONE));
    assert!(bits(&native(t, Kernel::V612).0, 0, 0).contains(PteBits::PROTNONE));
}

/// v6.12 `mwriteprotect_range()` walks the VMAs of the range: a leading hole is skipped.
#[test]
fn uffd_wp_skips_a_leading_hole_from_612() {
    let t = corpus_program("kc-uffd-wp-leading-hole.ptd");
    let (a, ra) = native(&t, Kernel::V61y);
    let (b, rb) = native(&t, Kernel::V612);
    assert_eq!((ra[3], rb[3]), (StepResult::Failed, StepResult::Ok));
    assert!(bits(&a, 0, 1).contains(PteBits::W));
    assert!(bits(&b, 0, 1).contains(PteBits::UW) && !bits(&b, 0, 1).contains(PteBits::W));
}

/// v6.18 `remap_move()`: a move across two VMAs moves both; holes after the first
/// are skipped without unmapping their destination; a uffd-armed VMA fails before
/// (first) or after (later) the other slices moved.
#[test]
fn mremap_moves_vma_by_vma_from_618() {
    let t = corpus_program("kc-mremap-multi-vma.ptd");
    assert_eq!(layout(&native(&t, Kernel::V612).0, 0), vec![(0, 1), (1, 2)]);
    assert_eq!(layout(&native(&t, Kernel::V618).0, 0), vec![(4, 5), (5, 6)]);
    let t = corpus_program("kc-mremap-trailing-hole.ptd");
    assert_eq!(layout(&native(&t, Kernel::V612).0, 0), vec![(4, 5)]);
    let (s, _) = native(&t, Kernel::V618);
    assert_eq!(layout(&s, 0), vec![(0, 1), (1, 2)]);
    assert!(bits(&s, 0, 0).contains(PteBits::W), "page 4's folio moved to 0");
    let t = corpus_program("kc-mremap-uffd-first-efault.ptd");
    assert_eq!(layout(&native(&t, Kernel::V612).0, 0), vec![(0, 1), (1, 2)]);
    assert_eq!(layout(&native(&t, Kernel::V618).0, 0), vec![(0, 1), (1, 2), (4, 5)], "the destination survives");
    let t = corpus_program("kc-mremap-uffd-partial-move.ptd");
    let (s, res) = native(&t, Kernel::V618);
    assert_eq!(res.last(), Some(&StepResult::Failed));
    assert_eq!(layout(&s, 0), vec![(1, 2), (4, 5)], "the first slice moved");
}

/// v6.18 `is_mergeable_anon_vma()` case 1: a faulted range merges into an
/// unfaulted neighbour (not for a fork child).
#[test]
fn faulted_range_merges_into_unfaulted_neighbour_from_618() {
    let t = corpus_program("kc-anon-vma-merge-mprotect.ptd");
    let (a, _) = native(&t, Kernel::V612);
    let (b, _) = native(&t, Kernel::V618);
    assert!(!softdirty_vma(&a, 0, 0) && softdirty_vma(&b, 0, 0));
    assert_eq!(layout(&b, 0), vec![(0, 3)]);
    // A fork child's range does not.
    let t = "mmap(p0, 1, 1, rw-, anon)\nwrite(p0, 1)\np1 = fork(p0)\nmprotect(p1, 1, 1, r--)\nmmap(p1, 0, 1, rw-, anon)\nmprotect(p1, 1, 1, rw-)\n";
    assert_eq!(layout(&native(t, Kernel::V618).0, 1), vec![(0, 1), (1, 2)]);
}

/// v6.18 `set_pte_range()`: a read fault mapping a dirty folio writable sets D and SD.
#[test]
fn read_fault_of_dirty_folio_is_soft_dirty_from_618() {
    let t = corpus_program("kc-read-fault-dirty-folio.ptd");
    let a = bits(&native(&t, Kernel::V612).0, 0, 1);
    let b = bits(&native(&t, Kernel::V618).0, 0, 1);
    assert!(a.contains(PteBits::W) && !a.intersects(PteBits::D | PteBits::SD));
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD));
}

/// v6.19 sticky VM_SOFTDIRTY: every merge ORs the bit (mlock/madvise keep a stale
/// prot, mprotect recomputes it, uffd and copy_vma merges too), so the munlock
/// merge of the corpus's harmful case no longer turns tracking on under a writable
/// prot.
#[test]
fn softdirty_is_sticky_on_merges_from_73() {
    for (f, page) in [
        ("vm-page-prot-stale-prot-after-munlock-merge.ptd", 15),
        ("kc-sticky-softdirty-madvise.ptd", 0),
        ("kc-sticky-softdirty-uffd-register.ptd", 0),
        ("kc-sticky-softdirty-uffd-unregister.ptd", 0),
        ("kc-sticky-softdirty-copy-vma.ptd", 0),
    ] {
        let t = corpus_program(f);
        let (a, _) = native(&t, Kernel::V618);
        let (b, _) = native(&t, Kernel::V73);
        assert!(!softdirty_vma(&a, 0, page), "{f}: v6.18 survivor tracks");
        assert!(softdirty_vma(&b, 0, page), "{f}: v7.3 survivor has VM_SOFTDIRTY");
    }
    let t = corpus_program("kc-sticky-softdirty-mprotect.ptd");
    assert!(!bits(&native(&t, Kernel::V618).0, 0, 0).contains(PteBits::W));
    assert!(bits(&native(&t, Kernel::V73).0, 0, 0).contains(PteBits::W));
    // The harmful vm-page-prot case is closed on 7.3: no unsafe PTE at the end.
    let t = corpus_program("vm-page-prot-stale-prot-after-munlock-merge.ptd");
    assert!(ptediff::oracle::first_unsafe(&native(&t, Kernel::V618).0).is_some());
    assert!(ptediff::oracle::first_unsafe(&native(&t, Kernel::V73).0).is_none());
}

/// v7.x `vma_merge_copied_range()` does not merge a uffd-registered source's copy.
#[test]
fn copy_vma_keeps_uffd_source_apart_from_73() {
    let t = corpus_program("kc-copy-vma-uffd-source-no-merge.ptd");
    let (a, ra) = native(&t, Kernel::V618);
    let (b, rb) = native(&t, Kernel::V73);
    assert_eq!((ra.last(), rb.last()), (Some(&StepResult::Failed), Some(&StepResult::Ok)));
    assert_eq!(layout(&a, 0), vec![(0, 2)]);
    assert_eq!(layout(&b, 0), vec![(0, 1), (1, 2)]);
}

/// v7.x MAP_PRIVATE file merges need contiguous anonymous page offsets.
#[test]
fn cow_file_merges_need_anon_pgoff_from_73() {
    let t = corpus_program("kc-cow-file-anon-pgoff.ptd");
    assert_eq!(layout(&native(&t, Kernel::V618).0, 0), vec![(4, 6)]);
    assert_eq!(layout(&native(&t, Kernel::V73).0, 0), vec![(4, 5), (5, 6)]);
}

/// zram swap-in: up to 6.18 a single-reference entry skips the swap cache into a
/// fresh, exclusive folio; v7.x trusts only the entry's exclusive bit.
#[test]
fn swapin_exclusivity_on_zram() {
    let t = corpus_program("kc-swapin-sync-io-fresh-folio.ptd");
    assert!(bits(&native(&t, Kernel::V618).0, 0, 0).contains(PteBits::W));
    assert!(!bits(&native(&t, Kernel::V73).0, 0, 0).contains(PteBits::W));
    let t = corpus_program("kc-swapin-exclusive-from-entry-only.ptd");
    assert!(bits(&native(&t, Kernel::V618).0, 0, 0).contains(PteBits::W));
    assert!(!bits(&native(&t, Kernel::V73).0, 0, 0).contains(PteBits::W));
}
