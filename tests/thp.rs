//! Transparent huge pages in the model (src/model/huge_memory.rs): rule-by-rule
//! tests of the PMD paths, and a property run of random programs that start
//! from a THP, checking the invariants (one entry per huge PMD) after every step.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use ptediff::fuzz::gen_op;
use ptediff::model::invariants::check_invariants;
use ptediff::model::{
    self, step, ClearRefs, Config, Entry, FolioFlags, Kernel, MigKind, PteBits, Restore, State, StepResult, SwpBits,
    ZERO_PAGE,
};
use ptediff::text::parse;

fn run(text: &str, cfg: &Config) -> State {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    let mut s = State::new();
    for op in &prog.ops {
        assert_eq!(step(&mut s, cfg, op), StepResult::Ok, "`{op}` of\n{text}");
        check_invariants(&s).unwrap_or_else(|e| panic!("after `{op}`: {e}\n{text}"));
    }
    s
}

fn cfg_k(kernel: Kernel) -> Config {
    Config { kernel, ..Config::new(Restore::VmPageProt) }
}

fn present(s: &State, p: usize, a: usize) -> (PteBits, u8) {
    match s.procs[p].pt[a] {
        Entry::Present { bits, folio } => (bits, folio),
        e => panic!("p{p}[{a}] is not present: {e:?}"),
    }
}

/// A THP-enabled anonymous range of two PMDs (pages 0..8), nothing faulted in yet.
const THP: &str = "mmap(p0, 0, 4, rw-, anon)\nmmap(p0, 4, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nmadvise(p0, 4, 4, MADV_HUGEPAGE)";

#[test]
fn read_fault_maps_a_dirty_writable_pmd() {
    // do_huge_pmd_anonymous_page(): with use_zero_page=0 a read fault allocates a
    // THP, mapped by maybe_pmd_mkwrite(pmd_mkdirty(mk_huge_pmd())).
    let s = run(&format!("{THP}\nread(p0, 1)"), &cfg_k(Kernel::V612));
    assert!(s.procs[0].is_huge(0) && !s.procs[0].is_huge(4));
    let (b, head) = present(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD), "{b:?}");
    for i in 1..4 {
        assert_eq!(present(&s, 0, i), (b, head + i as u8));
    }
    assert!(s.folio(head).flags.contains(FolioFlags::LARGE | FolioFlags::ANON_EXCLUSIVE));
}

#[test]
fn no_thp_without_madv_hugepage_or_whole_pmd() {
    // enabled=madvise: no VM_HUGEPAGE, no THP; a VMA not covering the aligned
    // PMD range gets 4 KiB pages too; MADV_NOHUGEPAGE wins.
    for text in [
        "mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 1)",
        "mmap(p0, 1, 3, rw-, anon)\nmadvise(p0, 1, 3, MADV_HUGEPAGE)\nwrite(p0, 1)",
        "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nmadvise(p0, 0, 4, MADV_NOHUGEPAGE)\nwrite(p0, 1)",
        "mmap(p0, 0, 4, rw-, memfd, shared, 0)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 1)",
    ] {
        let s = run(text, &cfg_k(Kernel::V73));
        assert_eq!(s.procs[0].huge, 0, "{text}");
        assert!(!s.is_large(present(&s, 0, 1).1), "{text}");
    }
    // A PTE table already there (a 4 KiB page mapped before MADV_HUGEPAGE) keeps
    // the PMD from becoming huge.
    let s = run(
        "mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 1)",
        &cfg_k(Kernel::V73),
    );
    assert_eq!(s.procs[0].huge, 0);
}

#[test]
fn clear_refs_wrprotects_the_pmd_and_a_store_reuses_it_soft_dirty() {
    let s = run(&format!("{THP}\nwrite(p0, 0)\nclear_refs(p0)"), &cfg_k(Kernel::V612));
    let (b, _) = present(&s, 0, 2);
    assert!(!b.intersects(PteBits::W | PteBits::SD), "{b:?}");
    // do_huge_pmd_wp_page(): exclusive folio, reused dirty (so soft-dirty) and writable.
    let s = run(&format!("{THP}\nwrite(p0, 0)\nclear_refs(p0)\nwrite(p0, 3)"), &cfg_k(Kernel::V612));
    assert!(s.procs[0].is_huge(0));
    let (b, _) = present(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::SD | PteBits::D), "{b:?}");
}

#[test]
fn partial_mprotect_splits_the_pmd_and_hands_bits_down() {
    // __split_huge_pmd_locked(): W from the PMD, SD kept, the folio stays large.
    let s = run(&format!("{THP}\nwrite(p0, 0)\nmprotect(p0, 0, 2, r--)"), &cfg_k(Kernel::V612));
    assert!(!s.procs[0].is_huge(0));
    let (b0, f0) = present(&s, 0, 0);
    let (b3, f3) = present(&s, 0, 3);
    assert!(!b0.contains(PteBits::W) && b0.contains(PteBits::SD));
    assert!(b3.contains(PteBits::W | PteBits::SD | PteBits::D), "{b3:?}");
    assert!(s.is_large(f0) && s.folio_head(f3) == f0);
    // v6.1 hands the folio the dirty bit, the PTEs stay as the PMD's vm_page_prot built them.
    let s = run(&format!("{THP}\nwrite(p0, 0)\nmunmap(p0, 0, 1)"), &cfg_k(Kernel::V61));
    assert!(!s.procs[0].is_huge(0));
    assert!(present(&s, 0, 1).0.contains(PteBits::SD | PteBits::W));
    assert!(s.procs[0].pt[0].is_none());
}

#[test]
fn pmd_migration_restores_write_from_the_entry() {
    // set_pmd_migration_entry() / remove_migration_pmd(): a writable PMD comes back
    // writable, young/dirty/soft-dirty from the entry; the new folio is large.
    let s = run(&format!("{THP}\nwrite(p0, 0)\nmigrate_start(p0, 2)"), &cfg_k(Kernel::V73));
    assert!(s.procs[0].is_huge(0));
    match s.procs[0].pt[1] {
        Entry::Migration { kind, bits, .. } => {
            assert_eq!(kind, MigKind::Write);
            assert!(bits.contains(SwpBits::SD | SwpBits::DIRTY));
        }
        e => panic!("{e:?}"),
    }
    let s = run(&format!("{THP}\nwrite(p0, 0)\nmigrate(p0, 2)"), &cfg_k(Kernel::V73));
    assert!(s.procs[0].is_huge(0));
    let (b, f) = present(&s, 0, 0);
    assert!(b.contains(PteBits::W | PteBits::SD | PteBits::D), "{b:?}");
    assert!(s.is_large(f));
}

#[test]
fn clear_refs_on_a_pmd_migration_entry_leaves_it_writable_unless_the_candidate_fix() {
    // clear_soft_dirty_pmd(): a PMD migration entry only loses its soft-dirty bit;
    // remove_migration_pmd() then maps the THP writable, soft-dirty again only
    // through pmd_mkdirty() of a dirty entry. A clean one (after MADV_FREE) comes
    // back writable and not soft-dirty.
    {
        let clear_refs = ClearRefs::Kernel;
        let cfg = Config { clear_refs, ..cfg_k(Kernel::V73) };
        let s = run(&format!("{THP}\nwrite(p0, 0)\nmigrate_start(p0, 0)\nclear_refs(p0)\nmigrate_finish(p0, 0)"), &cfg);
        let (b, _) = present(&s, 0, 0);
        assert!(b.contains(PteBits::W | PteBits::SD | PteBits::D), "{clear_refs:?}: {b:?}");
        let s = run(
            &format!("{THP}\nwrite(p0, 0)\nmadvise(p0, 0, 4, MADV_FREE)\nmigrate_start(p0, 0)\nclear_refs(p0)\nmigrate_finish(p0, 0)"),
            &cfg,
        );
        let (b, _) = present(&s, 0, 0);
        assert!(b.contains(PteBits::W) && !b.contains(PteBits::SD), "{clear_refs:?}: {b:?}");
    }
    // The candidate fix closes the PTE case and, in clear_soft_dirty_pmd(), the PMD case.
    let cfg = Config { clear_refs: ClearRefs::WrprotectMigration, ..cfg_k(Kernel::V73) };
    let s = run(
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate_start(p0, 0)\nclear_refs(p0)\nmigrate_finish(p0, 0)",
        &cfg,
    );
    assert!(!present(&s, 0, 0).0.contains(PteBits::W));
    let s = run(
        &format!("{THP}\nwrite(p0, 0)\nmadvise(p0, 0, 4, MADV_FREE)\nmigrate_start(p0, 0)\nclear_refs(p0)\nmigrate_finish(p0, 0)"),
        &cfg,
    );
    assert!(s.procs[0].is_huge(0));
    assert!(!present(&s, 0, 0).0.contains(PteBits::W));
}

#[test]
fn fork_shares_the_pmd_read_only_and_a_store_splits_and_copies() {
    let s = run(&format!("{THP}\nwrite(p0, 0)\np1 = fork(p0)"), &cfg_k(Kernel::V612));
    for p in 0..2 {
        assert!(s.procs[p].is_huge(0), "p{p}");
        assert!(!present(&s, p, 0).0.contains(PteBits::W));
    }
    // do_huge_pmd_wp_page(): shared folio, not reusable: split, then do_wp_page copies one page.
    let s = run(&format!("{THP}\nwrite(p0, 0)\np1 = fork(p0)\nwrite(p1, 1)"), &cfg_k(Kernel::V612));
    assert!(!s.procs[1].is_huge(0) && s.procs[0].is_huge(0));
    let (b, f) = present(&s, 1, 1);
    assert!(b.contains(PteBits::W) && !s.is_large(f));
    assert!(s.is_large(present(&s, 1, 0).1));
}

#[test]
fn pageout_of_a_thp_splits_it_and_reclaims_one_page() {
    // MADV_PAGEOUT of one page: the folio is split (through remove_migration_pte,
    // zero-filled pages to the zero page on v6.12+ with their bits), then that
    // page is swapped out.
    let text = format!("{THP}\nwrite(p0, 0)\nwrite(p0, 1)\nuffd_register(p0, 0, 4)\nuffd_wp(p0, 0, 4)\npageout(p0, 1)");
    let s = run(&text, &cfg_k(Kernel::V73));
    assert_eq!(s.procs[0].huge, 0);
    match s.procs[0].pt[1] {
        Entry::Swap { bits, .. } => assert!(bits.contains(SwpBits::UW | SwpBits::SD | SwpBits::EXCL), "{bits:?}"),
        e => panic!("page 1: {e:?}"),
    }
    let (b0, f0) = present(&s, 0, 0);
    assert!(!s.is_large(f0) && b0.contains(PteBits::UW));
    let (b2, f2) = present(&s, 0, 2);
    assert!(f2 == ZERO_PAGE && b2.contains(PteBits::UW | PteBits::SD), "{b2:?}");
    // Mapped by a second process: left alone.
    let s = run(&format!("{THP}\nwrite(p0, 0)\np1 = fork(p0)\npageout(p0, 1)"), &cfg_k(Kernel::V73));
    assert!(s.procs[0].is_huge(0) && s.procs[1].is_huge(0));
}

#[test]
fn unmodelled_pages_keep_a_split_thp_shared_after_fork() {
    // After fork both map the THP; the parent's store splits its PMD and copies
    // the page, but the 508 unmodelled pages of its PMD still map the folio, so
    // the child's store cannot reuse the PMD either: it splits and copies.
    let text = format!("{THP}\nwrite(p0, 0)\np1 = fork(p0)\nwrite(p0, 1)\nwrite(p1, 2)");
    let s = run(&text, &cfg_k(Kernel::V612));
    assert!(!s.procs[0].is_huge(0) && !s.procs[1].is_huge(0));
    assert!(!s.is_large(present(&s, 1, 2).1));
    assert!(!present(&s, 1, 3).0.contains(PteBits::W));
    // munmap of the last page reaches the unmodelled pages: then the child's
    // PMD is the folio's only mapping and is reused.
    let text = format!("{THP}\nwrite(p0, 0)\np1 = fork(p0)\nwrite(p0, 1)\nmunmap(p0, 0, 4)\nwrite(p1, 2)");
    let s = run(&text, &cfg_k(Kernel::V612));
    assert!(s.procs[1].is_huge(0));
    assert!(present(&s, 1, 3).0.contains(PteBits::W));
}

#[test]
fn madv_free_of_a_whole_pmd_and_of_part() {
    // madvise_free_huge_pmd(): old and clean, still writable; folio lazy-free.
    let s = run(&format!("{THP}\nwrite(p0, 0)\nmadvise(p0, 0, 4, MADV_FREE)"), &cfg_k(Kernel::V73));
    assert!(s.procs[0].is_huge(0));
    let (b, f) = present(&s, 0, 0);
    assert!(b.contains(PteBits::W) && !b.intersects(PteBits::A | PteBits::D));
    assert!(s.folio(f).flags.contains(FolioFlags::LAZYFREE));
    // Part of it: the folio is split (through the restore of remove_migration_pte) first.
    let text = format!("{THP}\nwrite(p0, 0)\nwrite(p0, 3)\nmadvise(p0, 0, 2, MADV_FREE)");
    for k in [Kernel::V61, Kernel::V73] {
        let s = run(&text, &cfg_k(k));
        assert!(!s.procs[0].is_huge(0));
        assert!(!s.is_large(present(&s, 0, 3).1));
        assert!(s.folio(present(&s, 0, 0).1).flags.contains(FolioFlags::LAZYFREE));
        assert!(!s.folio(present(&s, 0, 3).1).flags.contains(FolioFlags::LAZYFREE));
        // v6.12+ maps the never-written pages to the shared zero page on the split.
        let (b, f) = present(&s, 0, 2);
        assert_eq!(f == ZERO_PAGE, k >= Kernel::V612, "{k:?}");
        assert_eq!(b.contains(PteBits::W), k < Kernel::V612, "{k:?}: {b:?}");
    }
}

#[test]
fn mremap_moves_an_aligned_pmd_whole_and_splits_an_unaligned_one() {
    let s = run(
        "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 0)\nmremap(p0, 0, 4, 8)",
        &cfg_k(Kernel::V612),
    );
    assert!(s.procs[0].is_huge(8) && !s.procs[0].is_huge(0));
    assert!(present(&s, 0, 9).0.contains(PteBits::SD));
    let s = run(
        "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 0)\nmremap(p0, 0, 4, 9)",
        &cfg_k(Kernel::V612),
    );
    assert_eq!(s.procs[0].huge, 0);
    assert!(s.is_large(present(&s, 0, 9).1));
}

#[test]
fn uffd_wp_on_a_pmd_blocks_the_store() {
    let prog =
        parse(&format!("{THP}\nwrite(p0, 0)\nuffd_register(p0, 0, 4)\nuffd_wp(p0, 0, 4)\nwrite(p0, 2)")).unwrap();
    let mut s = State::new();
    let cfg = cfg_k(Kernel::V73);
    let res: Vec<_> = prog.ops.iter().map(|op| step(&mut s, &cfg, op)).collect();
    assert_eq!(*res.last().unwrap(), StepResult::UffdWp);
    assert!(s.procs[0].is_huge(0));
    assert!(present(&s, 0, 0).0.contains(PteBits::UW));
}

#[test]
fn numa_hinting_a_pmd_and_the_fault_back() {
    let s = run(&format!("{THP}\nwrite(p0, 0)\nnuma_hint(p0, 1)"), &cfg_k(Kernel::V73));
    for a in 0..4 {
        assert!(present(&s, 0, a).0.contains(PteBits::PROTNONE), "page {a}");
    }
    let s = run(&format!("{THP}\nwrite(p0, 0)\nnuma_hint(p0, 1)\nread(p0, 3)"), &cfg_k(Kernel::V73));
    assert!(s.procs[0].is_huge(0));
    assert!(!present(&s, 0, 0).0.contains(PteBits::PROTNONE));
}

/// Random programs from a THP (two PMDs, one mapped huge, a fork sometimes):
/// the invariants hold after every step on every profile and variant, and the
/// runs really spend steps with a huge PMD (a test that cannot fail is a defect).
#[test]
fn invariants_hold_in_random_programs_from_a_thp() {
    let mut rng = SmallRng::seed_from_u64(15);
    let start = parse(&format!("{THP}\nwrite(p0, 0)\nwrite(p0, 5)")).unwrap();
    let (mut huge_steps, mut steps, mut pmd_migrations) = (0usize, 0usize, 0usize);
    for n in 0..3000 {
        let kernel = Kernel::ALL[n % Kernel::ALL.len()];
        let restore = [Restore::PreFix, Restore::FullRestore, Restore::VmPageProt, Restore::Stable61y][n / 5 % 4];
        let cfg = Config { kernel, ..Config::new(restore) };
        let mut s = State::new();
        let mut ops = start.ops.clone();
        for op in &start.ops {
            step(&mut s, &cfg, op);
        }
        for _ in 0..rng.gen_range(1..30) {
            let op = gen_op(&mut rng, &s);
            ops.push(op);
            step(&mut s, &cfg, &op);
            steps += 1;
            huge_steps += (s.procs.iter().any(|m| m.huge != 0)) as usize;
            pmd_migrations += s
                .procs
                .iter()
                .any(|m| (0..16u8).any(|a| m.is_huge(a) && matches!(m.pt[a as usize], Entry::Migration { .. })))
                as usize;
            if let Err(e) = check_invariants(&s) {
                panic!("{cfg:?}: after `{op}`: {e}\nprogram:\n{}", ptediff::op::Program::new(ops));
            }
        }
        model::finish(&mut s, &cfg);
        check_invariants(&s).unwrap_or_else(|e| panic!("after finish: {e}\n{}", ptediff::op::Program::new(ops)));
    }
    assert!(huge_steps * 4 > steps, "only {huge_steps} of {steps} steps had a huge PMD");
    assert!(pmd_migrations > 0, "no step saw a PMD migration entry");
}

#[test]
fn v61_pmd_migration_drops_uffd_wp_and_61y_keeps_it() {
    // set_pmd_migration_entry() before "mm/userfaultfd: fix uffd-wp handling for
    // THP migration entries": the entry has no uffd-wp bit, the THP comes back
    // read-only without it, and the store reuses it with no message.
    let text = format!("{THP}\nwrite(p0, 0)\nuffd_register(p0, 0, 4)\nuffd_wp(p0, 0, 4)\nmigrate(p0, 0)\nwrite(p0, 1)");
    for (k, blocked) in [(Kernel::V61, false), (Kernel::V61y, true), (Kernel::V73, true)] {
        let prog = parse(&text).unwrap();
        let mut s = State::new();
        let cfg = cfg_k(k);
        let res: Vec<_> = prog.ops.iter().map(|op| step(&mut s, &cfg, op)).collect();
        assert_eq!(*res.last().unwrap() == StepResult::UffdWp, blocked, "{k:?}: {res:?}");
        assert!(s.procs[0].is_huge(0), "{k:?}");
    }
}

#[test]
fn migration_splits_a_partially_mapped_thp_from_v612() {
    // munmap of one page leaves the THP partially mapped (deferred split); from
    // v6.12 migrate_pages_batch() splits it and migrates the one page.
    let text = format!("{THP}\nwrite(p0, 0)\nwrite(p0, 2)\nmunmap(p0, 0, 1)\nmigrate(p0, 2)");
    let s = run(&text, &cfg_k(Kernel::V61y));
    assert!(s.is_large(present(&s, 0, 2).1) && s.is_large(present(&s, 0, 1).1));
    let s = run(&text, &cfg_k(Kernel::V612));
    assert!(!s.is_large(present(&s, 0, 2).1));
}

#[test]
fn dontneed_of_a_whole_pmd_frees_the_pte_table_from_v618() {
    // After a split the PMD points to a PTE table; MADV_DONTNEED of the whole PMD
    // leaves it empty and CONFIG_PT_RECLAIM frees it, so a fault maps a THP again.
    let text = format!("{THP}\nwrite(p0, 0)\nmprotect(p0, 0, 2, r--)\nmprotect(p0, 0, 2, rw-)\nmadvise(p0, 0, 4, MADV_DONTNEED)\nwrite(p0, 1)");
    for (k, huge) in [(Kernel::V612, false), (Kernel::V618, true), (Kernel::V73, true)] {
        let s = run(&text, &cfg_k(k));
        assert_eq!(s.procs[0].is_huge(0), huge, "{k:?}");
    }
}

#[test]
fn a_load_through_a_present_pte_of_an_execute_only_mapping_faults() {
    let prog = parse("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmprotect(p0, 0, 1, --x)\nread(p0, 0)").unwrap();
    let mut s = State::new();
    let cfg = cfg_k(Kernel::V73);
    let res: Vec<_> = prog.ops.iter().map(|op| step(&mut s, &cfg, op)).collect();
    assert_eq!(*res.last().unwrap(), StepResult::Segv);
}

#[test]
fn mlock_of_part_of_a_thp_splits_it_before_populating() {
    // mlock_fixup() → __split_vma() splits the PMD (vma_adjust_trans_huge) before
    // the populate write-faults the locked page: the other pages stay read-only
    // after clear_refs. MADV_PAGEOUT then refuses the locked VMA.
    let s = run(&format!("{THP}\nwrite(p0, 0)\nclear_refs(p0)\nmlock(p0, 1, 1)\npageout(p0, 1)"), &cfg_k(Kernel::V73));
    assert!(!s.procs[0].is_huge(0));
    assert!(present(&s, 0, 1).0.contains(PteBits::W));
    for a in [0, 2, 3] {
        assert!(!present(&s, 0, a).0.contains(PteBits::W), "page {a}");
    }
}

#[test]
fn mprotect_batches_a_split_thp_and_ors_dirty_from_v618() {
    // A split THP's last page batches with the 508 unmodelled pages after it
    // (dirty from the split): change_pte_range() of v6.17+ rewrites the batch
    // dirty, and so soft-dirty, even after clear_refs.
    let text = format!("{THP}\nwrite(p0, 1)\nmprotect(p0, 0, 1, r--)\nclear_refs(p0)\nmprotect(p0, 3, 1, r--)");
    for (k, sd) in [(Kernel::V612, false), (Kernel::V618, true), (Kernel::V73, true)] {
        let s = run(&text, &cfg_k(k));
        assert_eq!(present(&s, 0, 3).0.contains(PteBits::SD), sd, "{k:?}");
        assert!(!present(&s, 0, 2).0.contains(PteBits::SD), "{k:?}: page 2 is not in the range");
    }
}

#[test]
fn pmd_modify_drops_a_pmds_dirty_bit_on_v618_only() {
    // x86 pmd_modify() of 6.6..7.3-rc4 (Debian's 6.18.15; 6.12.118 has the
    // stable fix): mprotect leaves the PMD clean, soft-dirty kept.
    let text = format!("{THP}\nwrite(p0, 1)\nmprotect(p0, 0, 4, r--)");
    for (k, dirty) in [(Kernel::V61y, true), (Kernel::V612, true), (Kernel::V618, false), (Kernel::V73, true)] {
        let s = run(&text, &cfg_k(k));
        let (b, _) = present(&s, 0, 1);
        assert!(s.procs[0].is_huge(1) && b.contains(PteBits::SD), "{k:?}: {b:?}");
        assert_eq!(b.contains(PteBits::D), dirty, "{k:?}: {b:?}");
    }
    // So a lazy-free THP written again and mprotected is discarded by reclaim
    // on 6.18: the store is lost (corpus/kc-thp-madv-free-mprotect-data-loss.ptd).
    let text = format!(
        "{THP}\nwrite(p0, 1)\nmadvise(p0, 0, 4, MADV_FREE)\nwrite(p0, 1)\nmprotect(p0, 0, 4, r--)\npageout(p0, 1)"
    );
    for (k, lost) in [(Kernel::V612, false), (Kernel::V618, true), (Kernel::V73, false)] {
        let s = run(&text, &cfg_k(k));
        let gone = matches!(s.procs[0].pt[1], Entry::None);
        assert_eq!(gone, lost, "{k:?}: {:?}", s.procs[0].pt[1]);
    }
}

#[test]
fn v612_pageout_skips_a_thp_mapped_more_often_than_it_has_pages() {
    // folio_likely_mapped_shared(): the parent maps 512 pages of the split THP,
    // the child 511 (not the first): shared on 6.12, not by 6.1.y's first page.
    let text = "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 0)\np1 = fork(p0)\n\
munmap(p1, 0, 1)\nmprotect(p0, 0, 1, r--)\npageout(p0, 0)";
    for (k, swapped) in [(Kernel::V61y, true), (Kernel::V612, false), (Kernel::V618, false), (Kernel::V73, false)] {
        let s = run(text, &cfg_k(k));
        assert_eq!(matches!(s.procs[0].pt[0], Entry::Swap { .. }), swapped, "{k:?}: {:?}", s.procs[0].pt[0]);
    }
}

#[test]
fn madv_collapse_copies_small_pages_into_a_dirty_soft_dirty_thp() {
    // No MADV_HUGEPAGE needed; the written pages keep their data, the empty
    // ones are zero-filled; the PMD is dirty, soft-dirty, writable, exclusive.
    let text = "mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 0)\nwrite(p0, 2)\nmadvise(p0, 0, 4, MADV_COLLAPSE)";
    for k in [Kernel::V61, Kernel::V612, Kernel::V618, Kernel::V73] {
        let before = run("mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 0)\nwrite(p0, 2)", &cfg_k(k));
        let s = run(text, &cfg_k(k));
        assert!(s.procs[0].is_huge(0), "{k:?}");
        let (b, head) = present(&s, 0, 0);
        assert!(b.contains(PteBits::W | PteBits::D | PteBits::SD) && !b.contains(PteBits::UW), "{k:?}: {b:?}");
        assert!(s.folio(head).flags.contains(FolioFlags::LARGE | FolioFlags::ANON_EXCLUSIVE));
        for a in 0..4 {
            let old = match before.procs[0].pt[a] {
                Entry::Present { folio, .. } => before.folio(folio).data,
                _ => 0,
            };
            assert_eq!(s.folio(present(&s, 0, a).1).data, old, "{k:?}: page {a}");
        }
    }
}

#[test]
fn madv_collapse_refusals_per_profile() {
    // A refused collapse is an error of the step; the state is what counts.
    let run = |text: &str, cfg: &Config| {
        let mut s = State::new();
        for op in &parse(text).unwrap().ops {
            step(&mut s, cfg, op);
            check_invariants(&s).unwrap_or_else(|e| panic!("after `{op}`: {e}\n{text}"));
        }
        s
    };
    let huge = |text: &str, k: Kernel| run(text, &cfg_k(k)).procs[0].is_huge(0);
    // No writable PTE (clear_refs write-protected them): SCAN_PAGE_RO before 6.18.
    let ro = "mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 0)\nclear_refs(p0)\nmadvise(p0, 0, 4, MADV_COLLAPSE)";
    for (k, want) in [(Kernel::V61y, false), (Kernel::V612, false), (Kernel::V618, true), (Kernel::V73, true)] {
        assert_eq!(huge(ro, k), want, "{k:?}: read-only PTEs");
    }
    // A VMA registered with userfaultfd: an empty entry is SCAN_EXCEED_NONE_PTE
    // (the 508 unmodelled entries are empty).
    let uffd = "mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 0)\nwrite(p0, 1)\nwrite(p0, 2)\nwrite(p0, 3)\n\
uffd_register(p0, 0, 4)\nmadvise(p0, 0, 4, MADV_COLLAPSE)";
    // A split THP in a registered VMA has no empty entry (its 508 unmodelled
    // pages are mapped): it collapses, unless a PTE has the uffd-wp bit
    // (SCAN_PTE_UFFD_WP). Never faulted (no anon_vma): EINVAL.
    let split = "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_HUGEPAGE)\nwrite(p0, 1)\nuffd_register(p0, 0, 4)\n";
    let wp = format!("{split}uffd_wp(p0, 0, 1)\nmadvise(p0, 0, 4, MADV_COLLAPSE)");
    let resplit = format!("{split}uffd_wp(p0, 0, 1)\nuffd_unwp(p0, 0, 1)\nmadvise(p0, 0, 4, MADV_COLLAPSE)");
    let fresh = "mmap(p0, 0, 4, rw-, anon)\nmadvise(p0, 0, 4, MADV_COLLAPSE)";
    for k in [Kernel::V61, Kernel::V612, Kernel::V618, Kernel::V73] {
        assert!(!huge(uffd, k), "{k:?}: uffd armed");
        assert!(!huge(fresh, k), "{k:?}: no anon_vma");
        let s = run(&wp, &cfg_k(k));
        assert!(!s.procs[0].is_huge(0) && present(&s, 0, 0).0.contains(PteBits::UW), "{k:?}: uffd-wp bit");
        assert!(huge(&resplit, k), "{k:?}: a registered, fully mapped split THP collapses");
    }
    // A fork child's shared pages are copied for the parent; the child keeps them.
    let fork = "mmap(p0, 0, 4, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nwrite(p0, 1)\nmadvise(p0, 0, 4, MADV_COLLAPSE)";
    let s = run(fork, &cfg_k(Kernel::V612));
    let (parent, child) = (present(&s, 0, 0).1, present(&s, 1, 0).1);
    assert!(s.procs[0].is_huge(0) && !s.procs[1].is_huge(0) && parent != child);
    assert_eq!(s.folio(parent).data, s.folio(child).data);
}
