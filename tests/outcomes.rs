//! Typed outcomes: every signature, verdict and cause the judge produces prints
//! as its slug and reads back to itself, over random programs, every variant
//! pair and profile, contracts on and off; and every signature the corpus and
//! old findings folders state parses.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use ptediff::check::{analyze, Kind, Pair, Signature, Verdict};
use ptediff::fuzz::gen_op;
use ptediff::judge::causes::Cause;
use ptediff::model::{self, Config, Kernel, Variant};
use ptediff::op::Program;

fn programs(seed: u64, n: usize) -> Vec<Program> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let cfg = Config::new(model::Restore::VmPageProt);
    (0..n)
        .map(|_| {
            let mut s = model::State::new();
            let ops = (0..rng.gen_range(4..28))
                .map(|_| {
                    let op = gen_op(&mut rng, &s);
                    model::step(&mut s, &cfg, &op);
                    op
                })
                .collect();
            Program::new(ops)
        })
        .collect()
}

fn round_trip(sig: Signature, seen: &mut std::collections::HashSet<String>) {
    let slug = sig.to_string();
    assert_eq!(slug.parse::<Signature>(), Ok(sig), "{slug}");
    assert_eq!(sig.verdict.to_string().parse::<Verdict>(), Ok(sig.verdict));
    let c = Cause::of(&sig);
    assert_eq!(c.to_string().parse::<Cause>(), Ok(c), "{c}");
    seen.insert(c.to_string());
}

#[test]
fn signatures_verdicts_and_causes_round_trip() {
    let variants: Vec<Variant> = Variant::all().collect();
    let mut rng = SmallRng::seed_from_u64(5);
    let mut seen = std::collections::HashSet::new();
    // Random programs under random pairs.
    for (i, p) in programs(5, 1500).iter().enumerate() {
        let k = Kernel::ALL[i % Kernel::ALL.len()];
        let (va, vb) = (variants[rng.gen_range(0..variants.len())], variants[rng.gen_range(0..variants.len())]);
        let mut pair = Pair::new(
            Config { kernel: k, ..Config::new(va.restore).with_variant(va) },
            Config { kernel: k, ..Config::new(vb.restore).with_variant(vb) },
        );
        if i % 5 == 0 {
            pair.contracts = ptediff::judge::contracts::Contract::empty();
        }
        for kind in [Kind::Divergence, Kind::Oracle] {
            let Some(f) = analyze(p, &pair, kind) else { continue };
            assert_eq!(f.signature.kind(), kind);
            round_trip(f.signature, &mut seen);
        }
    }
    // What the engine finds in a moment on a few pairs.
    for (k, variants, contracts) in [
        (Kernel::V61, "full-restore,vm-page-prot", "all"),
        (Kernel::V61, "pre-fix,stable-6.1.y", "all"),
        (Kernel::V612, "full-restore,vm-page-prot+clear-refs-fix", "all"),
        (Kernel::V73, "full-restore,vm-page-prot", "none"),
    ] {
        let (a, b) = variants.split_once(',').unwrap();
        let mut pair = Pair::new(Config::parse_variant(a, k).unwrap(), Config::parse_variant(b, k).unwrap());
        let c = ptediff::corpus::parse_contracts(contracts).unwrap();
        pair.contracts = c;
        let opts = ptediff::fuzz::Options {
            pair,
            seed: 3,
            max_ops: 32,
            time: std::time::Duration::from_secs(30),
            max_programs: Some(30_000),
            fixed_len: false,
            oracle: true,
            realizable: false,
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        ptediff::fuzz::fuzz_jobs(&opts, 1, &stop, |m| {
            if let ptediff::fuzz::Message::Found(e) = m {
                round_trip(e.found.signature, &mut seen);
            }
        });
    }
    assert!(seen.len() >= 8, "few causes exercised: {seen:?}");
}

#[test]
fn malformed_signatures_are_refused() {
    for bad in [
        "",
        "W.",
        "W.bogus-rw.by-do_wp_page.ro-clear_refs_write.memfd-shared.prot-mmap_region.sd-mmap_region.benign",
        "W.vm-page-prot-rw.by-nope.ro-clear_refs_write.memfd-shared.prot-mmap_region.sd-mmap_region.benign",
        "W.vm-page-prot-rw.by-do_wp_page.ro-clear_refs_write.memfd-shared.prot-mmap_region.sd-mmap_region.harmful-Q",
        "oracle.S.by-do_set_pte.memfd-shared.prot-mmap_region.sd-mmap_region.broken-S-via-nothing",
        "W.vm-page-prot-rw.by-do_wp_page.ro-clear_refs_write.memfd-shared.prot-mmap_region.sd-mmap_region.benign.x",
    ] {
        assert!(bad.parse::<Signature>().is_err(), "{bad}");
    }
    assert!("hole.nothing".parse::<Cause>().is_err());
    assert!("harmful.S.nobody.vma-merge".parse::<Cause>().is_err());
}
