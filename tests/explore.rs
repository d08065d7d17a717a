//! Bounded exhaustive exploration: shortest programs, certificates, dedup.

use std::sync::atomic::AtomicBool;

use ptediff::check::{analyze, Kind, Pair};
use ptediff::explore::{default_alphabet, explore, Options};
use ptediff::model::{Config, Restore};

fn run(pair: Pair, depth: usize, oracle: bool) -> ptediff::explore::Report {
    let opts = Options { pair, depth, threads: 2, oracle, alphabet: default_alphabet() };
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
