//! Property tests over random programs: no panic, lossless text and byte round
//! trips, determinism, model invariants after every step, and a minimizer that
//! keeps the signature and ends 1-minimal.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use ptediff::check::{check, signature_of, Pair};
use ptediff::fuzz::gen_op;
use ptediff::minimize::{is_one_minimal, minimize};
use ptediff::model::invariants::check_invariants;
use ptediff::model::{self, Config, Kernel, Restore, State};
use ptediff::op::Program;
use ptediff::text;

/// Random programs two ways: raw bytes (as libFuzzer feeds them) and the engine's
/// state-aware generator.
fn programs(seed: u64, n: usize) -> Vec<Program> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..n {
        if i % 2 == 0 {
            let len = rng.gen_range(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            out.push(Program::from_bytes(&bytes));
        } else {
            let mut s = State::new();
            let cfg = Config::new(Restore::FullRestore);
            let mut ops = Vec::new();
            for _ in 0..rng.gen_range(1..40) {
                let op = gen_op(&mut rng, &s);
                model::step(&mut s, &cfg, &op);
                ops.push(op);
            }
            out.push(Program::new(ops));
        }
    }
    out
}

fn all_configs() -> Vec<Config> {
    let mut v = Vec::new();
    for k in Kernel::ALL {
        for r in [Restore::PreFix, Restore::FullRestore, Restore::VmPageProt, Restore::Stable61y] {
            for u in [model::Unuse::V61, model::Unuse::WithCare] {
                for c in [model::ClearRefs::Kernel, model::ClearRefs::WrprotectMigration] {
                    v.push(Config { restore: r, unuse: u, clear_refs: c, kernel: k, patches: model::Patches::empty() });
                }
            }
        }
    }
    v
}

#[test]
fn text_round_trip_is_lossless() {
    for p in programs(1, 3000) {
        let t = p.to_string();
        let q = text::parse(&t).unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(p, q, "{t}");
        assert_eq!(format!("{p:?}"), t, "Debug is the program text");
    }
}

#[test]
fn byte_round_trip_is_lossless() {
    for p in programs(2, 3000) {
        assert_eq!(Program::from_bytes(&p.to_bytes()), p, "{p}");
    }
}

#[test]
fn invariants_hold_after_every_step_in_every_configuration() {
    let configs = all_configs();
    for (n, p) in programs(3, 1500).into_iter().enumerate() {
        let cfg = &configs[n % configs.len()];
        let mut s = State::new();
        for (i, op) in p.ops.iter().enumerate() {
            model::step(&mut s, cfg, op);
            if let Err(e) = check_invariants(&s) {
                panic!("{cfg:?}: after step {} `{op}`: {e}\nprogram:\n{p}", i + 1);
            }
        }
        model::finish(&mut s, cfg);
        if let Err(e) = check_invariants(&s) {
            panic!("{cfg:?}: after finish: {e}\nprogram:\n{p}");
        }
        assert!(s.pending.is_empty());
    }
}

#[test]
fn check_is_deterministic() {
    let pair = Pair::default();
    for p in programs(4, 500) {
        assert_eq!(check(&p, &pair), check(&p, &pair), "{p}");
    }
}

#[test]
fn identical_variants_never_diverge() {
    for c in all_configs().into_iter().step_by(3) {
        let pair = Pair::new(c, c);
        for p in programs(5, 300) {
            assert!(signature_of(&p, &pair).is_none(), "{c:?}\n{p}");
        }
    }
}

#[test]
fn minimizer_keeps_the_signature_and_is_one_minimal() {
    let pair = Pair::default();
    let mut checked = 0;
    for p in programs(6, 40000).into_iter().skip(1).step_by(2) {
        let Some(sig) = signature_of(&p, &pair) else {
            continue;
        };
        let m = minimize(&p, &pair, &sig);
        assert_eq!(signature_of(&m, &pair).as_ref(), Some(&sig), "{p}\n=>\n{m}");
        assert!(m.ops.len() <= p.ops.len());
        assert!(is_one_minimal(&m, &pair, &sig), "{m}");
        checked += 1;
        if checked == 40 {
            break;
        }
    }
    assert!(checked >= 10, "too few divergent programs to test the minimizer: {checked}");
}

/// The runner's shortcut (stepping side b only once variant code can run) must
/// find exactly what naive lock-step finds.
#[test]
fn runner_shortcut_matches_naive_lock_step() {
    use ptediff::check::{agree, first_divergence};
    let pairs = [
        Pair::default(),
        Pair::new(Config::new(Restore::PreFix), Config::new(Restore::FullRestore)),
        Pair::new(
            Config { unuse: model::Unuse::WithCare, ..Config::new(Restore::PreFix) },
            Config::new(Restore::PreFix),
        ),
        Pair::new(
            Config { kernel: Kernel::V61y, ..Config::new(Restore::VmPageProt) },
            Config::new(Restore::VmPageProt),
        ),
    ];
    let mut diverged = 0;
    for (n, p) in programs(8, 12000).into_iter().enumerate() {
        let pair = &pairs[n % pairs.len()];
        let (mut a, mut b) = (State::new(), State::new());
        let mut naive = None;
        for (i, op) in p.ops.iter().enumerate() {
            model::step(&mut a, &pair.a, op);
            model::step(&mut b, &pair.b, op);
            if !agree(&a, &b) {
                naive = Some(i);
                break;
            }
        }
        if naive.is_none() {
            model::finish(&mut a, &pair.a);
            model::finish(&mut b, &pair.b);
            if !agree(&a, &b) {
                naive = Some(p.ops.len());
            }
        }
        let fast = first_divergence(&p, pair).map(|(i, _)| i);
        assert_eq!(fast, naive, "{pair:?}\n{p}");
        diverged += naive.is_some() as usize;
    }
    assert!(diverged > 20, "only {diverged} divergent programs exercised");
}
