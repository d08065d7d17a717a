//! Bounded exhaustive exploration: shortest programs, certificates, dedup.

use std::sync::atomic::AtomicBool;

use ptediff::check::{analyze, Kind, Pair};
use ptediff::explore::{default_alphabet, explore, Options};
use ptediff::model::{Config, Restore};

fn run(pair: Pair, depth: usize, oracle: bool) -> ptediff::explore::Report {
    let opts = Options { pair, depth, threads: 2, oracle, alphabet: default_alphabet(), memory_mb: 64 };
    explore(&opts, &AtomicBool::new(false), |_, _, _, _| {})
}

#[test]
fn identical_variants_give_a_certificate() {
    let same = Pair::new(Config::new(Restore::FullRestore), Config::new(Restore::FullRestore));
    let r = run(same, 4, false);
    assert!(r.findings.is_empty());
    assert!(r.states > 100, "{} states", r.states);
    assert_eq!(r.levels.len(), 4);
}

#[test]
fn finds_the_thread_scenarios_with_shortest_programs() {
    let r = run(Pair::default(), 5, true);
    let slugs: Vec<String> = r.findings.iter().map(|f| f.0.slug()).collect();
    assert!(
        slugs.iter().any(|s| s.starts_with(
            "W.vm-page-prot-rw.by-remove_migration_pte.ro-clear_refs_write.memfd-shared.prot-mmap_region_expand"
        )),
        "{slugs:#?}"
    );
    assert!(slugs.iter().any(|s| s.starts_with("oracle.S.by-uffd_wp_range")), "{slugs:#?}");
    // Every reported program really has its signature, and none is reachable in fewer ops.
    let shallower = run(Pair::default(), 4, true);
    for (sig, prog, _) in &r.findings {
        assert_eq!(analyze(prog, &Pair::default(), sig.kind()).map(|f| f.signature).as_ref(), Some(sig), "{prog}");
        assert!(prog.ops.len() <= 5);
        if prog.ops.len() == 5 {
            assert!(!shallower.findings.iter().any(|(s, _, _)| s == sig), "{sig} also at depth 4");
        }
    }
    let pre = Pair::new(Config::new(Restore::PreFix), Config::new(Restore::FullRestore));
    let r = run(pre, 5, false);
    assert!(
        r.findings
            .iter()
            .any(|(s, _, _)| s.kind() == Kind::Divergence && s.verdict.to_string().starts_with("harmful-U")),
        "pre-fix uffd-wp bypass not found"
    );
}

#[test]
fn levels_grow_and_states_are_deduplicated() {
    let r = run(Pair::default(), 5, false);
    let alphabet = default_alphabet().len() as u64;
    let mut frontier = 1u64;
    for l in &r.levels {
        // Each level expands at most the previous level's new states.
        assert!(l.transitions <= frontier * alphabet, "{l:?}");
        frontier = l.states;
    }
    assert!(r.states < r.transitions, "dedup: {} states for {} transitions", r.states, r.transitions);
    assert!(r.collision_probability() < 1e-6);
}

/// The canonical renaming of content tokens is exact: two worlds that differ in
/// whether their 129th and 130th distinct tokens are equal get different
/// canonical bytes (a renaming that stopped at 128 names merged them).
#[test]
fn canonical_renaming_is_exact_past_128_tokens() {
    use ptediff::judge::contracts::Contract;
    use ptediff::judge::world::World;
    use ptediff::model::FolioKind;
    let mut a = World::new(Contract::all());
    let mut t = 1u16;
    for f in a.k.folios.iter_mut() {
        f.kind = FolioKind::Anon;
        f.data = t;
        t += 1;
    }
    for file in a.g.file.iter_mut() {
        for x in file.iter_mut() {
            *x = t;
            t += 1;
        }
    }
    assert!(t > 140, "{t} tokens");
    // b: the 130th distinct token is the 129th again.
    let mut b = a;
    b.g.file[4][2] = b.g.file[4][1];
    let (i129, i130) = (a.g.file[4][1], a.g.file[4][2]);
    assert_eq!((i129, i130), (64 + 4 * 16 + 2, 64 + 4 * 16 + 3));
    let ca = ptediff::explore::canonical_bytes(&a, None);
    let cb = ptediff::explore::canonical_bytes(&b, None);
    assert_ne!(ca, cb, "worlds differing past the 128th token share their canonical bytes");
    // Renaming alone never tells worlds apart: every token shifted by one is the same state.
    let mut c = a;
    for f in c.k.folios.iter_mut() {
        f.data += 1000;
    }
    for file in c.g.file.iter_mut() {
        for x in file.iter_mut() {
            *x += 1000;
        }
    }
    assert_eq!(ptediff::explore::canonical_bytes(&c, None), ca);
}

/// States past the memory budget are replayed from the root: the same search.
#[test]
fn replayed_states_give_the_same_search() {
    let kept = run(Pair::default(), 5, true);
    let opts = Options {
        pair: Pair::default(),
        depth: 5,
        threads: 2,
        oracle: true,
        alphabet: default_alphabet(),
        memory_mb: 0,
    };
    let replayed = explore(&opts, &AtomicBool::new(false), |_, _, _, _| {});
    assert_eq!((kept.states, kept.transitions), (replayed.states, replayed.transitions));
    let sigs = |r: &ptediff::explore::Report| r.findings.iter().map(|f| (f.0, f.1.clone())).collect::<Vec<_>>();
    assert_eq!(sigs(&kept), sigs(&replayed));
}

/// The tracking alphabet finds both holes of today's APIs on v6.18 from the
/// root, and the shortest programs are 6 ops. (Before the ghost's write-watch
/// bits and the uffd context were part of a state's bytes, states differing
/// only there were merged and the PAGEMAP_SCAN hole was never reached.)
#[test]
fn the_tracking_alphabet_finds_the_ksm_and_pagemap_scan_holes_on_6_18() {
    use ptediff::model::Kernel;
    let cfg = |r| Config { kernel: Kernel::V618, ..Config::new(r) };
    let pair = Pair::new(cfg(Restore::FullRestore), cfg(Restore::VmPageProt));
    let opts = Options {
        pair,
        depth: 6,
        threads: 2,
        oracle: true,
        alphabet: ptediff::explore::tracking_alphabet(),
        memory_mb: 64,
    };
    let r = explore(&opts, &AtomicBool::new(false), |_, _, _, _| {});
    let slugs: Vec<String> = r.findings.iter().map(|f| f.0.slug()).collect();
    assert!(slugs.iter().any(|s| s.ends_with("-via-ksm-replace-page")), "{slugs:#?}");
    assert!(slugs.iter().any(|s| s.ends_with("-via-pagemap-scan-unpopulated")), "{slugs:#?}");
}

/// The guard alphabet finds both faces of the guard/uffd-wp hole on v7.3 from
/// the root in 5 ops: the install that never returns (G) and the protection
/// lost once the guard is removed (U, seen by the end-of-program probe only:
/// before its pre-check looked at empty PTEs owed uffd-wp, the explorer missed it).
#[test]
fn the_guard_alphabet_finds_both_faces_of_the_guard_uffd_wp_hole() {
    use ptediff::model::Kernel;
    let cfg = |r| Config { kernel: Kernel::V73, ..Config::new(r) };
    let pair = Pair::new(cfg(Restore::FullRestore), cfg(Restore::VmPageProt));
    let opts = Options {
        pair,
        depth: 5,
        threads: 2,
        oracle: true,
        alphabet: ptediff::explore::guard_alphabet(),
        memory_mb: 64,
    };
    let r = explore(&opts, &AtomicBool::new(false), |_, _, _, _| {});
    let slugs: Vec<String> = r.findings.iter().map(|f| f.0.slug()).collect();
    for want in ["broken-G-via-guard-install-uffd-wp", "broken-U-via-uffd-wp-skips-guard"] {
        assert!(slugs.iter().any(|s| s.ends_with(want)), "{want}: {slugs:#?}");
    }
}
