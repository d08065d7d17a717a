//! The v6.12 profile's differences from v6.1, each shown by a program whose
//! outcome differs between the two (Debian 6.12.95 source, /tmp notes C.md).

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
    let pair = ptediff::check::Pair {
        a: Config { kernel: Kernel::V612, ..r.pair.a },
        b: Config { kernel: Kernel::V612, ..r.pair.b },
    };
    assert!(ptediff::check::check(&r.program, &pair).violation.is_none());
}
