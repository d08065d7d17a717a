//! Triage layer tests: the write-trap oracle (reasons U, S, C, N, P) on real op
//! sequences, divergence verdicts and titles, oracle violations, the findings
//! database, and the `explain` / `triage` / `export` / `replay --bless` /
//! `fuzz --oracle` command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ptediff::check::{analyze, check, signature_of, Kind, Pair};
use ptediff::corpus;
use ptediff::findings::FindingsDb;
use ptediff::model::{step, Config, Entry, Kernel, PteBits, Restore, State, StepResult, VmFlags};
use ptediff::oracle::{must_trap, unsafe_reasons, Reasons};
use ptediff::text::parse;
use ptediff::Program;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn corpus_file(name: &str) -> PathBuf {
    corpus_dir().join(name)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ptediff"))
}

fn run_bin(args: &[&str]) -> Output {
    bin().args(args).output().expect("run ptediff")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn cfg_k(kernel: Kernel) -> Config {
    Config { kernel, ..Config::new(Restore::VmPageProt) }
}

fn v61() -> Config {
    cfg_k(Kernel::V61)
}

/// Run every op of `text` on a fresh state; every op must succeed.
fn run(text: &str, cfg: &Config) -> State {
    let mut s = State::new();
    more(&mut s, text, cfg);
    s
}

/// Run more ops on `s`; every op must succeed.
fn more(s: &mut State, text: &str, cfg: &Config) {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    for (i, op) in prog.ops.iter().enumerate() {
        let r = step(s, cfg, op);
        assert_eq!(r, StepResult::Ok, "op #{i} `{op}` of\n{text}\nreturned {r:?}");
    }
}

/// PTE bits of the present entry at `(p, addr)`.
fn bits(s: &State, p: usize, addr: u8) -> PteBits {
    match s.procs[p].pt[addr as usize] {
        Entry::Present { bits, .. } => bits,
        e => panic!("p{p}[{addr}] is not present: {e:?}"),
    }
}

fn writable(s: &State, p: usize, addr: u8) -> bool {
    bits(s, p, addr).contains(PteBits::W)
}

/// The PTE is writable and the oracle flags `r` as a reason it must trap.
fn assert_unsafe(s: &State, p: usize, addr: u8, r: Reasons, what: &str) {
    assert!(writable(s, p, addr), "{what}: p{p}[{addr}] should be writable");
    assert!(must_trap(s, p, addr).contains(r), "{what}: must_trap = {}", must_trap(s, p, addr).letters());
    assert!(
        unsafe_reasons(s, p, addr).contains(r),
        "{what}: unsafe_reasons = {}",
        unsafe_reasons(s, p, addr).letters()
    );
}

/// The PTE is present and has no unsafe reason at all.
fn assert_safe(s: &State, p: usize, addr: u8, what: &str) {
    let _ = bits(s, p, addr);
    assert!(
        unsafe_reasons(s, p, addr).is_empty(),
        "{what}: p{p}[{addr}] unsafe: {} (entry {:?})",
        unsafe_reasons(s, p, addr).letters(),
        s.procs[p].pt[addr as usize]
    );
}

fn load(name: &str) -> corpus::Reproducer {
    corpus::load(&corpus_file(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn prog(text: &str) -> Program {
    parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"))
}

fn ptd_files(dir: &Path) -> Vec<PathBuf> {
    corpus::collect_files(&[dir.to_path_buf()])
}

/// The lines of a reproducer that are not comments (the program).
fn program_lines(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).map(String::from).collect()
}

const SOFTDIRTY_MERGE: &str = "thread-softdirty-merge-migrate.ptd";
const MEMFD_UFFD_WP: &str = "thread-memfd-uffd-wp-migrate.ptd";
const STALE_PROT: &str = "vm-page-prot-stale-prot-after-munlock-merge.ptd";
const NO_DIVERGENCE: &str = "thread-memfd-uffd-wp-vm-page-prot.ptd";

// ---------------------------------------------------------------------------
// 1. Oracle reasons
// ---------------------------------------------------------------------------

const MPROTECT_UFFD_WP: &str = "mmap(p0, 5, 1, -w-, memfd, shared, 5)
uffd_register(p0, 5, 1)
uffd_wp(p0, 5, 1)
read(p0, 5)
mprotect(p0, 5, 1, rw-)";

#[test]
fn oracle_u_mprotect_of_uffd_wp_memfd_page_is_unsafe_on_v61() {
    let s = run(MPROTECT_UFFD_WP, &v61());
    assert!(s.procs[0].vma(5).unwrap().uffd_wp(), "VMA is uffd-wp");
    assert!(bits(&s, 0, 5).contains(PteBits::UW), "PTE carries uffd-wp");
    assert_unsafe(&s, 0, 5, Reasons::U, "v6.1 mprotect rw- of a uffd-wp page");
}

#[test]
fn oracle_u_mprotect_of_uffd_wp_memfd_page_is_safe_on_61y() {
    // B1: uffd-wp VMAs want writenotify, vm_page_prot is read-only.
    let s = run(MPROTECT_UFFD_WP, &cfg_k(Kernel::V61y));
    assert!(bits(&s, 0, 5).contains(PteBits::UW));
    assert!(!writable(&s, 0, 5), "6.1.y keeps the uffd-wp PTE read-only");
    assert!(must_trap(&s, 0, 5).contains(Reasons::U), "U is still a reason");
    assert_safe(&s, 0, 5, "6.1.y mprotect");
}

#[test]
fn oracle_u_mprotect_without_uffd_wp_is_writable_and_safe() {
    let s = run(
        "mmap(p0, 5, 1, -w-, memfd, shared, 5)
uffd_register(p0, 5, 1)
read(p0, 5)
mprotect(p0, 5, 1, rw-)",
        &v61(),
    );
    assert!(!bits(&s, 0, 5).contains(PteBits::UW));
    assert!(!must_trap(&s, 0, 5).contains(Reasons::U));
    assert_safe(&s, 0, 5, "no uffd_wp");
}

#[test]
fn oracle_s_uffd_resolve_ignores_softdirty_tracking() {
    let s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)
read(p0, 0)
clear_refs(p0)
uffd_register(p0, 0, 1)
uffd_close(p0)",
        &v61(),
    );
    let v = s.procs[0].vma(0).unwrap();
    assert!(v.soft_dirty_enabled(), "clear_refs turned tracking on");
    assert!(!bits(&s, 0, 0).contains(PteBits::SD));
    assert_unsafe(&s, 0, 0, Reasons::S, "uffd_close after clear_refs");
}

#[test]
fn oracle_s_write_after_clear_refs_sets_softdirty_and_is_safe() {
    let mut s = run(
        "mmap(p0, 0, 1, rw-, memfd, shared, 0)
read(p0, 0)
clear_refs(p0)",
        &v61(),
    );
    assert!(!writable(&s, 0, 0));
    assert!(must_trap(&s, 0, 0).contains(Reasons::S), "clean PTE under tracking");
    assert_safe(&s, 0, 0, "read-only under tracking");
    more(&mut s, "write(p0, 0)", &v61());
    assert!(writable(&s, 0, 0));
    assert!(bits(&s, 0, 0).contains(PteBits::SD), "the write fault recorded it");
    assert!(!must_trap(&s, 0, 0).contains(Reasons::S));
    assert_safe(&s, 0, 0, "write after clear_refs");
    // And the resolve after that write stays safe too.
    more(&mut s, "uffd_register(p0, 0, 1)\nuffd_close(p0)", &v61());
    assert_safe(&s, 0, 0, "resolve after a recorded write");
}

/// Private-mapping sequences that each end with `p`'s page `addr` present.
const PRIVATE_SEQUENCES: &[(&str, usize, u8)] = &[
    ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\nmigrate(p0, 0)", 0, 0),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nwrite(p0, 0)\nmigrate(p0, 0)",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nexit(p1)\nwrite(p0, 0)",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, ext4, private, 0)\nread(p0, 0)\nwrite(p0, 0)\np1 = fork(p0)\nexit(p1)\nmigrate(p0, 0)",
        0,
        0,
    ),
    ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)", 0, 0),
    ("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)", 1, 0),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmigrate(p0, 0)",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nmigrate(p1, 0)",
        1,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, anon)\nuffd_register(p0, 0, 1)\nwrite(p0, 0)\np1 = fork(p0)\nuffd_wp(p0, 0, 1)\nuffd_unwp(p0, 0, 1)",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\npageout(p0, 0)\nswapoff()",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)\nclear_refs(p0)\nmremap(p0, 0, 1, 8)",
        0,
        8,
    ),
    ("mmap(p0, 0, 1, rw-, anon)\nread(p0, 0)", 0, 0),
    (
        "mmap(p0, 0, 1, rw-, anon)\nread(p0, 0)\nmprotect(p0, 0, 1, r--)\nmprotect(p0, 0, 1, rw-)",
        0,
        0,
    ),
    ("mmap(p0, 0, 1, rw-, memfd, private, 0)\nread(p0, 0)", 0, 0),
    ("mmap(p0, 0, 1, rw-, ext4, private, 0)\nread(p0, 0)", 0, 0),
    (
        "mmap(p0, 0, 1, r--, ext4, private, 0)\nread(p0, 0)\nmprotect(p0, 0, 1, rw-)",
        0,
        0,
    ),
    (
        "mmap(p0, 0, 1, rw-, memfd, private, 0)\nread(p0, 0)\nmigrate(p0, 0)",
        0,
        0,
    ),
];

#[test]
fn oracle_c_read_only_cow_pte_after_fork_must_trap() {
    let s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)\np1 = fork(p0)", &v61());
    for p in [0, 1] {
        assert!(!writable(&s, p, 0), "p{p}: fork write-protects the COW page");
        assert!(must_trap(&s, p, 0).contains(Reasons::C), "p{p}: must_trap = {}", must_trap(&s, p, 0).letters());
        assert!(unsafe_reasons(&s, p, 0).is_empty(), "read-only: not unsafe");
    }
}

#[test]
fn oracle_c_written_exclusive_anon_page_has_no_c() {
    let mut s = run("mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)", &v61());
    assert!(writable(&s, 0, 0));
    assert!(!must_trap(&s, 0, 0).contains(Reasons::C));
    assert_safe(&s, 0, 0, "exclusive anon");
    // After fork, the child's write copies: its new page is exclusive again.
    more(&mut s, "p1 = fork(p0)\nwrite(p1, 0)", &v61());
    assert!(writable(&s, 1, 0));
    assert!(!must_trap(&s, 1, 0).contains(Reasons::C));
    assert_safe(&s, 1, 0, "child's copy");
}

#[test]
fn oracle_c_private_pte_is_never_writable_while_not_exclusive() {
    // The kernel's invariant (PageAnonExclusive / do_wp_page reuse rules): no
    // sequence tried here leaves a writable private PTE on a shared/page-cache page.
    let (mut with_c, mut writable_exclusive) = (0, 0);
    for cfg in [v61(), cfg_k(Kernel::V61y)] {
        for &(text, p, addr) in PRIVATE_SEQUENCES {
            let s = run(text, &cfg);
            let r = must_trap(&s, p, addr);
            if writable(&s, p, addr) {
                writable_exclusive += 1;
            }
            if r.contains(Reasons::C) {
                with_c += 1;
                assert!(!writable(&s, p, addr), "{text}\np{p}[{addr}] writable with C");
            }
            assert!(
                !unsafe_reasons(&s, p, addr).contains(Reasons::C),
                "{text}\n{}",
                unsafe_reasons(&s, p, addr).letters()
            );
        }
    }
    // Not vacuous: both kinds of PTE occur among the sequences.
    assert!(with_c >= 8, "{with_c} read-only COW PTEs");
    assert!(writable_exclusive >= 2, "{writable_exclusive} writable PTEs");
}

#[test]
fn oracle_c_file_private_page_cache_page_must_trap() {
    let s = run("mmap(p0, 0, 1, rw-, ext4, private, 0)\nread(p0, 0)", &v61());
    assert!(!writable(&s, 0, 0));
    assert!(must_trap(&s, 0, 0).contains(Reasons::C));
    let mut s = s;
    more(&mut s, "write(p0, 0)", &v61());
    assert!(writable(&s, 0, 0), "COW copy is writable");
    assert!(!must_trap(&s, 0, 0).contains(Reasons::C));
}

#[test]
fn oracle_n_ext4_shared_clean_page_writenotify() {
    let mut s = run("mmap(p0, 0, 1, rw-, ext4, shared, 0)\nread(p0, 0)", &v61());
    assert!(!writable(&s, 0, 0), "clean ext4 page maps read-only");
    assert!(must_trap(&s, 0, 0).contains(Reasons::N));
    assert_safe(&s, 0, 0, "clean read-only");

    more(&mut s, "write(p0, 0)", &v61());
    assert!(writable(&s, 0, 0), "page_mkwrite made it writable");
    assert!(!must_trap(&s, 0, 0).contains(Reasons::N), "dirty: no N");
    assert_safe(&s, 0, 0, "dirty writable");

    more(&mut s, "writeback(p0, 0)", &v61());
    assert!(!writable(&s, 0, 0), "folio_mkclean write-protects");
    assert!(!bits(&s, 0, 0).contains(PteBits::D), "PTE clean again");
    assert!(must_trap(&s, 0, 0).contains(Reasons::N), "clean again: N");
    assert!(unsafe_reasons(&s, 0, 0).is_empty());
}

#[test]
fn oracle_n_absent_for_memfd_shared() {
    // shmem has neither page_mkwrite nor writeback: no writenotify.
    let s = run("mmap(p0, 0, 1, rw-, memfd, shared, 0)\nread(p0, 0)", &v61());
    assert!(!must_trap(&s, 0, 0).contains(Reasons::N));
}

#[test]
fn oracle_p_read_only_mapping_must_trap() {
    for (kind, text) in [
        ("anon", "mmap(p0, 0, 1, rw-, anon)\nwrite(p0, 0)"),
        ("memfd", "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)"),
        ("ext4", "mmap(p0, 0, 1, rw-, ext4, shared, 0)\nwrite(p0, 0)"),
    ] {
        let mut s = run(text, &v61());
        assert!(writable(&s, 0, 0), "{kind}");
        assert!(!must_trap(&s, 0, 0).contains(Reasons::P), "{kind}: rw-, no P");
        assert_safe(&s, 0, 0, kind);
        more(&mut s, "mprotect(p0, 0, 1, r--)", &v61());
        assert!(!s.procs[0].vma(0).unwrap().flags.contains(VmFlags::WRITE));
        assert!(!writable(&s, 0, 0), "{kind}: r-- is read-only");
        assert!(must_trap(&s, 0, 0).contains(Reasons::P), "{kind}: P");
        assert!(unsafe_reasons(&s, 0, 0).is_empty(), "{kind}");
    }
}

#[test]
fn oracle_letters_and_words() {
    assert_eq!(Reasons::empty().letters(), "none");
    assert_eq!((Reasons::U | Reasons::S).letters(), "U+S");
    assert_eq!((Reasons::U | Reasons::S).words(), "uffd-wp, soft-dirty");
    assert_eq!(Reasons::all().letters(), "U+S+C+N+P+W+G");
}

// ---------------------------------------------------------------------------
// 2. Verdicts and titles
// ---------------------------------------------------------------------------

#[test]
fn verdict_softdirty_merge_is_benign() {
    let r = load(SOFTDIRTY_MERGE);
    let f = analyze(&r.program, &r.pair, Kind::Divergence).expect("diverges");
    assert_eq!(f.signature.verdict.to_string(), "benign");
    assert!(!f.signature.harmful());
    assert!(f.title.contains("benign"), "{}", f.title);
}

#[test]
fn verdict_memfd_uffd_wp_is_harmful_u_naming_prefix() {
    let r = load(MEMFD_UFFD_WP);
    let f = analyze(&r.program, &r.pair, Kind::Divergence).expect("diverges");
    // Harmful only through v6.1's writable vm_page_prot of uffd-wp shmem VMAs:
    // with B1 (the fix that landed) pre-fix's restore is safe, David's point.
    assert_eq!(f.signature.verdict.to_string(), "harmful-U-via-uffd-wp-writenotify");
    assert_eq!(f.signature.first_variant().map(|v| v.to_string()).as_deref(), Some("pre-fix"));
    assert!(f.signature.harmful());
    assert!(f.title.contains("harmful: pre-fix breaks uffd-wp (p0 page 0)"), "{}", f.title);
}

#[test]
fn verdict_stale_prot_is_harmful_s_naming_vm_page_prot() {
    let r = load(STALE_PROT);
    let f = analyze(&r.program, &r.pair, Kind::Divergence).expect("diverges");
    // Harmful only through the merge hole: with merges ORing VM_SOFTDIRTY (v6.19)
    // vm_page_prot stays right and vm-page-prot's restore is safe.
    assert_eq!(f.signature.verdict.to_string(), "harmful-S-via-vma-merge");
    assert!(f.title.contains("only through a VMA merge handing the survivor VM_SOFTDIRTY-clear flags"), "{}", f.title);
    assert_eq!(f.signature.first_variant().map(|v| v.to_string()).as_deref(), Some("vm-page-prot"));
    assert!(f.title.contains("harmful: vm-page-prot breaks soft-dirty (p0 page 15)"), "{}", f.title);
}

#[test]
fn divergence_title_names_provenance_functions() {
    let r = load(SOFTDIRTY_MERGE);
    let out = check(&r.program, &r.pair);
    let d = out.divergence.as_ref().expect("diverges");
    let t = &d.finding.title;
    for want in ["clear_refs_write", "mmap_region(expand)", "remove_migration_pte"] {
        assert!(t.contains(want), "title lacks {want}: {t}");
    }
    assert!(out.report().contains(t.as_str()));
}

// ---------------------------------------------------------------------------
// 3. Oracle violations
// ---------------------------------------------------------------------------

fn oracle_files() -> Vec<PathBuf> {
    let v: Vec<PathBuf> = ptd_files(&corpus_dir())
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("oracle-"))
        .collect();
    assert!(v.len() >= 5, "corpus has {} oracle files", v.len());
    v
}

#[test]
fn oracle_violations_reported_when_variants_agree_on_v61() {
    let mut n = 0;
    for f in oracle_files() {
        let r = corpus::load(&f).unwrap();
        // v6.1 files that state a violation (a v6.1 file may show that v6.1 lacks a
        // hole a later kernel has: it says `expect-oracle: none`).
        if r.pair.a.kernel != Kernel::V61 || r.expect_oracle == Some(None) {
            continue;
        }
        n += 1;
        let out = check(&r.program, &r.pair);
        assert!(out.divergence.is_none(), "{}: {}", f.display(), out.report());
        let v = out.violation.as_ref().unwrap_or_else(|| panic!("{}: no violation", f.display()));
        assert_eq!(v.finding.signature.kind(), Kind::Oracle);
        let verdict = v.finding.signature.verdict.to_string();
        assert!(verdict.starts_with("broken-") || verdict.starts_with("latent-"), "{verdict}");
        let lead = if verdict.starts_with("broken-") { "both variants break" } else { "both variants RW" };
        assert!(v.finding.title.starts_with(lead), "{}", v.finding.title);
        assert!(out.report().contains("ORACLE VIOLATION"));
        // It is what the file expects.
        assert_eq!(r.expect_oracle, Some(Some(v.finding.signature)), "{}", f.display());
    }
    assert!(n >= 4, "{n} v6.1 oracle files");
}

#[test]
fn oracle_violations_absent_on_61y_copies() {
    let mut n = 0;
    for f in oracle_files() {
        let r = corpus::load(&f).unwrap();
        if r.pair.a.kernel != Kernel::V61y {
            continue;
        }
        n += 1;
        let out = check(&r.program, &r.pair);
        assert!(out.violation.is_none(), "{}: {}", f.display(), out.report());
        assert!(out.divergence.is_none(), "{}", f.display());
    }
    assert!(n >= 2, "{n} 6.1.y oracle files");
}

// ---------------------------------------------------------------------------
// 4. FindingsDb
// ---------------------------------------------------------------------------

fn softdirty() -> (Pair, Program) {
    let r = load(SOFTDIRTY_MERGE);
    (r.pair, r.program)
}

/// The soft-dirty program with one extra op that fails (p2 does not exist).
fn softdirty_longer() -> Program {
    let (_, p) = softdirty();
    prog(&format!("{p}read(p2, 0)\n"))
}

fn json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("findings.json")).expect("findings.json");
    serde_json::from_str(&text).expect("findings.json parses")
}

#[test]
fn db_same_finding_twice_keeps_one_file_and_counts_hits() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    let mut db = FindingsDb::open(dir.path()).unwrap();
    assert!(db.add(&pair, &p, Kind::Divergence, 1).unwrap(), "new");
    assert!(!db.add(&pair, &p, Kind::Divergence, 1).unwrap(), "known");
    assert_eq!(ptd_files(dir.path()).len(), 1);
    assert_eq!(db.records.len(), 1);
    let rec = db.records.values().next().unwrap();
    assert_eq!(rec.hits, 2);
    let text = std::fs::read_to_string(&ptd_files(dir.path())[0]).unwrap();
    assert!(text.contains("# hits: 2"), "{text}");
    let j = json(dir.path());
    let arr = j.as_array().expect("array");
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["hits"], 2);
    assert_eq!(arr[0]["signature"], rec.signature.to_string());
}

#[test]
fn db_keeps_the_shorter_program() {
    let (pair, short) = softdirty();
    let long = softdirty_longer();
    assert_eq!(long.ops.len(), short.ops.len() + 1);
    assert_eq!(signature_of(&long, &pair), signature_of(&short, &pair), "the extra op must not change the signature");
    let dir = tempfile::tempdir().unwrap();
    let mut db = FindingsDb::open(dir.path()).unwrap();
    assert!(db.add(&pair, &long, Kind::Divergence, 1).unwrap());
    assert_eq!(db.records.values().next().unwrap().ops, long.ops.len());
    assert!(!db.add(&pair, &short, Kind::Divergence, 1).unwrap());
    assert_eq!(db.records.len(), 1);
    let rec = db.records.values().next().unwrap();
    assert_eq!(rec.ops, short.ops.len());
    assert_eq!(rec.hits, 2);
    assert_eq!(rec.program, short.to_string());
    let files = ptd_files(dir.path());
    assert_eq!(files.len(), 1);
    let r = corpus::load(&files[0]).unwrap();
    assert_eq!(r.program, short);
    assert_eq!(r.hits, 2);
    // A longer program again does not replace it.
    db.add(&pair, &long, Kind::Divergence, 1).unwrap();
    let r = corpus::load(&files[0]).unwrap();
    assert_eq!(r.program, short);
    assert_eq!(r.hits, 3);
    let j = json(dir.path());
    assert_eq!(j[0]["hits"], 3);
    assert_eq!(j[0]["ops"], short.ops.len());
}

#[test]
fn db_reopen_keeps_hits() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, p) = softdirty();
    {
        let mut db = FindingsDb::open(dir.path()).unwrap();
        db.add(&pair, &p, Kind::Divergence, 1).unwrap();
        db.add(&pair, &p, Kind::Divergence, 4).unwrap();
    }
    let mut db = FindingsDb::open(dir.path()).unwrap();
    assert!(db.unreadable.is_empty());
    assert_eq!(db.records.len(), 1);
    assert_eq!(db.records.values().next().unwrap().hits, 5);
    assert!(!db.add(&pair, &p, Kind::Divergence, 1).unwrap(), "still known");
    assert_eq!(db.records.values().next().unwrap().hits, 6);
    assert_eq!(json(dir.path())[0]["hits"], 6);
}

#[test]
fn db_oracle_finding_reopens_as_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let r = load("oracle-mprotect-uffd-wp-shmem.ptd");
    {
        let mut db = FindingsDb::open(dir.path()).unwrap();
        assert!(db.add(&r.pair, &r.program, Kind::Oracle, 1).unwrap());
        // No divergence: adding it as a divergence finds nothing.
        assert!(!db.add(&r.pair, &r.program, Kind::Divergence, 1).unwrap());
        assert_eq!(db.records.len(), 1);
    }
    let db = FindingsDb::open(dir.path()).unwrap();
    let rec = db.records.values().next().unwrap();
    assert_eq!(rec.kind, Kind::Oracle);
    assert!(rec.harmful);
    assert!(rec.signature.to_string().starts_with("oracle.U"), "{}", rec.signature);
}

#[test]
fn db_unreadable_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.ptd");
    let bytes: &[u8] = b"# ptediff reproducer\n# kernel: v9.9\nmmap(p0, 0, 1, rw-, anon)\n\xff\xfe";
    std::fs::write(&bad, bytes).unwrap();
    let bad2 = dir.path().join("garbage.ptd");
    std::fs::write(&bad2, "mmap(p0, 0, 99, rw-, anon\n").unwrap();
    let mut db = FindingsDb::open(dir.path()).unwrap();
    assert_eq!(db.unreadable.len(), 2, "{:?}", db.unreadable);
    assert!(db.unreadable.iter().any(|e| e.path == bad));
    assert!(db.unreadable.iter().any(|e| e.path == bad2));
    assert!(db.records.is_empty());
    let (pair, p) = softdirty();
    assert!(db.add(&pair, &p, Kind::Divergence, 1).unwrap());
    assert_eq!(std::fs::read(&bad).unwrap(), bytes, "left untouched");
    assert_eq!(std::fs::read_to_string(&bad2).unwrap(), "mmap(p0, 0, 99, rw-, anon\n");
    assert_eq!(json(dir.path()).as_array().unwrap().len(), 1);
}

#[test]
fn db_sorted_puts_harmful_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = FindingsDb::open(dir.path()).unwrap();
    let (pair, p) = softdirty();
    db.add(&pair, &p, Kind::Divergence, 10).unwrap();
    let h = load(STALE_PROT);
    db.add(&h.pair, &h.program, Kind::Divergence, 1).unwrap();
    let s = db.sorted();
    assert_eq!(s.len(), 2);
    assert!(s[0].harmful && s[0].verdict == "harmful-S-via-vma-merge", "{}", s[0].verdict);
    assert_eq!(s[1].verdict, "benign");
}

// ---------------------------------------------------------------------------
// 5. CLI
// ---------------------------------------------------------------------------

#[test]
fn cli_explain_prints_every_op_and_first_divergence() {
    let f = corpus_file(SOFTDIRTY_MERGE);
    let o = run_bin(&["explain", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    let r = load(SOFTDIRTY_MERGE);
    for op in &r.program.ops {
        assert!(out.contains(&op.to_string()), "missing `{op}`:\n{out}");
    }
    assert_eq!(out.matches("first divergence").count(), 1, "{out}");
    let line = out.lines().find(|l| l.contains("first divergence")).unwrap();
    assert!(line.contains("migrate(p0, 0)"), "{line}");
}

#[test]
fn cli_explain_json_has_steps() {
    let f = corpus_file(SOFTDIRTY_MERGE);
    let o = run_bin(&["explain", "--json", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let steps = v["steps"].as_array().expect("steps array");
    let r = load(SOFTDIRTY_MERGE);
    assert!(steps.len() >= r.program.ops.len());
    let firsts: Vec<_> = steps.iter().filter(|s| s["first_divergence"] == true).collect();
    assert_eq!(firsts.len(), 1);
    assert_eq!(firsts[0]["op"], "migrate(p0, 0)");
}

#[test]
fn cli_triage_lists_harmful_before_benign() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = FindingsDb::open(dir.path()).unwrap();
        let (pair, p) = softdirty();
        // More hits on the benign one: order must still be by harmfulness.
        db.add(&pair, &p, Kind::Divergence, 50).unwrap();
        let h = load(STALE_PROT);
        db.add(&h.pair, &h.program, Kind::Divergence, 1).unwrap();
    }
    let o = run_bin(&["triage", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    // Causes first, harmful first, whatever the hits.
    let harmful = out.find("| hole.vma-merge | harmful | 1 | 1 |").expect(&out);
    let benign = out.find("| benign.vm-page-prot | - | 1 | 50 |").expect(&out);
    assert!(harmful < benign, "{out}");
    assert!(!out.contains("| harmful-S-via-vma-merge |"), "buckets only on request: {out}");
    assert!(out.contains("2 findings (1 harmful) in 2 causes (1 harmful)"), "{out}");
    // Buckets under their cause on request.
    let o = run_bin(&["triage", "--buckets", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let out = stdout(&o);
    let section = out.find("### hole.vma-merge").expect(&out);
    let bucket = out.find("| harmful-S-via-vma-merge |").expect(&out);
    let benign = out.find("| benign |").expect(&out);
    assert!(section < bucket && bucket < benign, "{out}");
}

/// Every harmful and oracle entry of the corpus lands in the cause of its
/// mechanism; the misattributed finding of issue 9 is the clear_refs hole's,
/// not a vm-page-prot one; distinct mechanisms never share a cause.
#[test]
fn corpus_findings_land_in_the_cause_of_their_mechanism() {
    use ptediff::judge::causes::cause_of;
    let cause = |name: &str, kind: Kind| {
        let r = load(name);
        let out = check(&r.program, &r.pair);
        let rep = match kind {
            Kind::Divergence => out.divergence.expect(name),
            Kind::Oracle => out.violation.expect(name),
        };
        cause_of(&rep.finding.signature)
    };
    let want = [
        ("contract-harm-only-through-clear-refs.ptd", Kind::Divergence, "hole.clear-refs", true),
        ("oracle-clear-refs-writable-migration-entry.ptd", Kind::Oracle, "hole.clear-refs", true),
        ("oracle-clear-refs-dirty-migration-entry-6.12.ptd", Kind::Oracle, "hole.clear-refs", true),
        ("oracle-clear-refs-dirty-migration-entry-anon.ptd", Kind::Oracle, "hole.clear-refs", true),
        (STALE_PROT, Kind::Divergence, "hole.vma-merge", true),
        (STALE_PROT, Kind::Oracle, "hole.vma-merge", true),
        ("oracle-mprotect-uffd-wp-shmem.ptd", Kind::Oracle, "hole.uffd-wp-writenotify", true),
        ("oracle-numa-uffd-wp-shmem.ptd", Kind::Oracle, "hole.uffd-wp-writenotify", true),
        (MEMFD_UFFD_WP, Kind::Divergence, "hole.uffd-wp-writenotify", true),
        ("stable-b2-needs-b1.ptd", Kind::Divergence, "hole.uffd-wp-writenotify", true),
        ("oracle-uffd-resolve-ignores-softdirty.ptd", Kind::Oracle, "hole.uffd-wp-resolve", true),
        ("contract-softdirty-lost-with-shared-pte.ptd", Kind::Oracle, "broken.S.no-pte", true),
        ("kc-madvise-free-shared-clean-swapin.ptd", Kind::Oracle, "broken.C.do_anonymous_page", true),
        ("oracle-mremap-keeps-uffd-wp.ptd", Kind::Oracle, "latent.oracle.U", false),
        (SOFTDIRTY_MERGE, Kind::Divergence, "benign.vm-page-prot", false),
    ];
    for (name, kind, key, harmful) in want {
        let c = cause_of_checked(&cause(name, kind), name);
        assert_eq!((c.to_string().as_str(), c.harmful()), (key, harmful), "{name}: {}", c.title());
    }
    fn cause_of_checked(c: &ptediff::judge::causes::Cause, name: &str) -> ptediff::judge::causes::Cause {
        assert!(!c.title().is_empty() && !c.title().contains("- made"), "{name}: {}", c.title());
        *c
    }
}

/// Harm on the read-only side names that side: the breaking variant is in the
/// verdict (`-on-VARIANT`). Here the harm exists only through v6.1's uffd-wp
/// resolve (fixed in v6.3), so its cause is that hole, and on v6.12 the program
/// breaks nothing on either side.
#[test]
fn harm_on_the_read_only_side_names_the_breaking_variant() {
    use ptediff::judge::causes::cause_of;
    // v6.1: full-restore keeps uffd-wp on the restored page, vm-page-prot drops
    // it and maps the page writable; resolving the uffd-wp fault on v6.1 shmem
    // maps it writable without soft-dirty.
    let p = parse(
        "mmap(p0, 15, 1, -w-, memfd, shared, 15)\nread(p0, 15)\nuffd_register(p0, 15, 1)\nuffd_wp(p0, 15, 1)\n\
         mremap(p0, 15, 1, 0)\nread(p0, 0)\nmigrate(p0, 0)\nuffd_register(p0, 0, 1)\nclear_refs(p0)\nwrite(p0, 0)\n",
    )
    .unwrap();
    let pair = Pair::default();
    let f = analyze(&p, &pair, Kind::Divergence).expect("a divergence");
    assert!(f.signature.verdict.to_string().starts_with("harmful-S-on-full-restore"), "{}", f.signature);
    assert!(f.title.contains("full-restore breaks soft-dirty"), "{}", f.title);
    let c = cause_of(&f.signature);
    assert_eq!(c.to_string(), "hole.uffd-wp-resolve", "{}", c.title());
    assert!(f.signature.verdict.to_string().ends_with("-via-uffd-wp-resolve"), "{}", f.signature);
    let v612 = Pair::new(Config { kernel: Kernel::V612, ..pair.a }, Config { kernel: Kernel::V612, ..pair.b });
    assert!(analyze(&p, &v612, Kind::Divergence).is_none_or(|f| !f.signature.harmful()), "harmful on v6.12 too");
    // With that hole closed on v6.1 (its fix patched in), the harm is gone.
    let mut fixed = pair;
    fixed.a.patches |= ptediff::model::Patches::UFFD_WP_RESOLVE;
    fixed.b.patches |= ptediff::model::Patches::UFFD_WP_RESOLVE;
    assert!(analyze(&p, &fixed, Kind::Divergence).is_none_or(|f| !f.signature.harmful()));
}

#[test]
fn cli_export_replays_and_states_expectation() {
    let f = corpus_file(STALE_PROT);
    let o = run_bin(&["export", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let text = stdout(&o);
    assert!(text.contains("# expect: diverges "), "{text}");
    assert!(text.contains("# expect-oracle:"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exported.ptd");
    std::fs::write(&out, &text).unwrap();
    let o = run_bin(&["replay", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{text}", show(&o));
    let want = load(STALE_PROT).expect;
    assert_eq!(corpus::load(&out).unwrap().expect, want);
}

#[test]
fn cli_export_without_divergence_exits_1() {
    let f = corpus_file(NO_DIVERGENCE);
    let o = run_bin(&["export", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(o.stdout.is_empty(), "{}", show(&o));
}

#[test]
fn cli_export_oracle_replays() {
    let f = corpus_file("oracle-uffd-resolve-ignores-softdirty.ptd");
    let o = run_bin(&["export", "--oracle", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let text = stdout(&o);
    assert!(text.contains("# expect: pass"), "{text}");
    assert!(text.contains("# expect-oracle: oracle.S"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exported.ptd");
    std::fs::write(&out, &text).unwrap();
    let o = run_bin(&["replay", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{text}", show(&o));
}

#[test]
fn cli_replay_bless_fixes_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("wrong.ptd");
    let orig = std::fs::read_to_string(corpus_file(SOFTDIRTY_MERGE)).unwrap();
    let wrong: String = orig
        .lines()
        .map(|l| {
            if l.starts_with("# expect:") {
                "# expect: pass".to_string()
            } else if l.starts_with("# expect-oracle:") {
                "# expect-oracle: oracle.S.by-do_set_pte.memfd-shared.prot-clear_refs_write.sd-clear_refs_write.sd-tracking.broken-S-via-clear-refs".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    // A signature ptediff never writes is bad input (file:line:col), not a mismatch.
    let bogus = wrong.replace("# expect: pass", "# expect: diverges W.bogus");
    let g = dir.path().join("bogus.ptd");
    std::fs::write(&g, &bogus).unwrap();
    let o = run_bin(&["replay", g.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("bogus.ptd:") && show(&o).contains("not a signature: `W.bogus`"), "{}", show(&o));
    std::fs::write(&f, &wrong).unwrap();
    let fs = f.to_str().unwrap();
    let o = run_bin(&["replay", fs]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stdout(&o).contains("MISMATCH"));

    let o = run_bin(&["replay", "--bless", fs]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("BLESSED"));

    let o = run_bin(&["replay", fs]);
    assert!(o.status.success(), "{}", show(&o));
    let blessed = std::fs::read_to_string(&f).unwrap();
    assert_eq!(program_lines(&blessed), program_lines(&wrong));
    assert_eq!(blessed.lines().filter(|l| l.starts_with("# expect:")).count(), 1);
    let want = orig.lines().find(|l| l.starts_with("# expect:")).unwrap();
    assert!(blessed.lines().any(|l| l == want), "{blessed}");
    assert!(blessed.contains("# expect-oracle: none"), "{blessed}");
    // Every other comment line survives.
    for l in orig.lines().filter(|l| !l.starts_with("# expect")) {
        assert!(blessed.lines().any(|b| b == l), "lost `{l}`:\n{blessed}");
    }
}

// ---------------------------------------------------------------------------
// 6. fuzz --oracle
// ---------------------------------------------------------------------------

#[test]
fn cli_fuzz_oracle_writes_replayable_oracle_findings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings");
    let o = run_bin(&["fuzz", "--oracle", "--programs", "20000", "--seed", "3", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let oracle: Vec<PathBuf> = ptd_files(&out)
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("# finding: oracle."))
        .collect();
    assert!(!oracle.is_empty(), "no oracle finding in\n{}", show(&o));
    for f in &oracle {
        let r = corpus::load(f).unwrap();
        assert!(
            matches!(r.expect_oracle, Some(Some(ref s)) if s.to_string().starts_with("oracle.")),
            "{}",
            f.display()
        );
        let o = run_bin(&["replay", f.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", f.display(), show(&o));
    }
    let j = json(&out);
    let recs = j.as_array().unwrap();
    assert!(recs.iter().any(|r| r["kind"] == "Oracle"), "{j}");
}

/// The engine's cheap end-of-program gate must let the probe look at a private
/// page that lost its PTE while a process was still owed its data (the MADV_FREE
/// data loss: the probe's load reads zero). Before, the gate skipped pages
/// without a PTE and the engine never reported the loss.
#[test]
fn end_probe_gate_sees_a_private_page_owed_data_without_a_pte() {
    use ptediff::check::Runner;
    let p = parse(
        "mmap(p0, 10, 1, rw-, anon)\nwrite(p0, 10)\npageout(p0, 10)\nread(p0, 10)\np1 = fork(p0)\n\
         madvise(p0, 10, 1, MADV_FREE)\npageout(p0, 10)\n",
    )
    .unwrap();
    let mut cfg = Config::new(Restore::VmPageProt);
    cfg.kernel = Kernel::V618;
    let pair = Pair::new(cfg, cfg);
    let mut r = Runner::new(&pair);
    for op in &p.ops {
        r.step(op);
    }
    r.finish();
    assert!(!r.violation(), "no load has happened yet");
    assert!(r.end_violation(), "the probe's load of p1's page reads zero");
    let f = analyze(&p, &pair, Kind::Oracle).expect("an oracle finding");
    assert!(f.signature.verdict.to_string().starts_with("broken-C"), "{}", f.signature);
}

/// An oracle break of two contracts where patching one common hole removes one
/// of them at that step is that hole's (the rest is another cause, reported on
/// its own): on v6.1 clear_refs meets the writable migration entry of a uffd-wp
/// shmem page a fork copied writable (S, the clear_refs hole) while v6.1's
/// mprotect leaves it writable under uffd-wp (U); no single hole removes both.
#[test]
fn an_oracle_break_partly_removed_by_a_hole_patch_is_the_holes() {
    use ptediff::judge::causes::cause_of;
    let p = parse(
        "mmap(p0, 3, 1, -w-, memfd, shared, 3)\nuffd_register(p0, 3, 1)\nuffd_wp(p0, 3, 1)\nread(p0, 3)\n\
         mprotect(p0, 3, 1, -wx)\np1 = fork(p0, event_fork)\nmigrate_start(p1, 3)\nclear_refs(p1)\n\
         mprotect(p0, 3, 1, -w-)\n",
    )
    .unwrap();
    let pair = Pair::default();
    let f = analyze(&p, &pair, Kind::Oracle).expect("an oracle violation");
    assert_eq!(f.signature.verdict.to_string(), "broken-U+S-via-clear-refs", "{}", f.title);
    assert_eq!(cause_of(&f.signature).to_string(), "hole.clear-refs");
    // The clear_refs fix alone does not remove every break: it was partial.
    let mut fixed = pair;
    fixed.a.clear_refs = ptediff::model::ClearRefs::WrprotectMigration;
    fixed.b.clear_refs = ptediff::model::ClearRefs::WrprotectMigration;
    let g = analyze(&p, &fixed, Kind::Oracle).expect("a break is left");
    assert!(matches!(g.signature.verdict, ptediff::check::Verdict::Broken { .. }), "{}", g.signature);
}
