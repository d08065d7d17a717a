//! One property test over the whole op table: every op kind is generated,
//! decodes from its tag, prints and parses back, encodes and decodes back,
//! shrinks only to valid ops and minimizes to itself, and its `realizable`
//! column agrees with what `emit-c` can run.

use std::collections::HashSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use ptediff::emit_c;
use ptediff::fuzz::gen_op;
use ptediff::generate::{gen_op_of, gen_op_with, Focus};
use ptediff::minimize::minimize_by;
use ptediff::model::{self, Config, Restore, State};
use ptediff::op::{Op, OpKind, Program, NUM_OP_KINDS, OP_KINDS, OP_TABLE};
use ptediff::text;

/// Random states reached by generated programs, to draw ops against.
fn states(seed: u64, n: usize) -> Vec<State> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let cfg = Config::new(Restore::VmPageProt);
    let mut out = vec![State::new()];
    let mut s = State::new();
    for i in 0..n {
        if i % 16 == 0 {
            s = State::new();
        }
        let op = gen_op(&mut rng, &s);
        model::step(&mut s, &cfg, &op);
        out.push(s);
    }
    out
}

fn round_trips(op: &Op) {
    let t = op.to_string();
    let p = text::parse(&t).unwrap_or_else(|e| panic!("{e}: `{t}`"));
    assert_eq!(p.ops, vec![*op], "text round trip of `{t}`");
    let prog = Program::new(vec![*op]);
    assert_eq!(Program::from_bytes(&prog.to_bytes()), prog, "byte round trip of `{t}`");
}

#[test]
fn the_table_is_consistent() {
    assert_eq!(OP_TABLE.len(), OP_KINDS.len());
    assert_eq!(NUM_OP_KINDS as usize, OP_TABLE.len());
    let names: HashSet<&str> = OP_TABLE.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), OP_TABLE.len(), "op names are distinct");
    for (i, r) in OP_TABLE.iter().enumerate() {
        assert_eq!(r.kind as usize, i);
        assert_eq!(r.kind.info().name, r.name);
        assert_eq!(OpKind::from_name(r.name), Some(r.kind));
        assert!(r.weight > 0, "{} is never generated", r.name);
    }
}

#[test]
fn every_kind_decodes_from_its_tag_and_round_trips() {
    let mut rng = SmallRng::seed_from_u64(7);
    for r in OP_TABLE {
        for _ in 0..200 {
            let mut bytes = vec![r.tag];
            bytes.extend((0..8).map(|_| rng.gen::<u8>()));
            let p = Program::from_bytes(&bytes);
            assert_eq!(p.ops[0].kind(), r.kind, "tag {} decodes to {}", r.tag, r.name);
            round_trips(&p.ops[0]);
        }
    }
}

#[test]
fn every_kind_is_generated_and_round_trips() {
    let mut rng = SmallRng::seed_from_u64(8);
    let mut seen = HashSet::new();
    let mut seen_realizable = HashSet::new();
    for s in states(8, 3000) {
        let op = gen_op(&mut rng, &s);
        seen.insert(op.kind());
        round_trips(&op);
        let op = gen_op_with(&mut rng, &s, true);
        seen_realizable.insert(op.kind());
        round_trips(&op);
    }
    for r in OP_TABLE {
        assert!(seen.contains(&r.kind), "{} never generated", r.name);
        assert_eq!(seen_realizable.contains(&r.kind), r.realizable, "{} in realizable generation", r.name);
    }
}

#[test]
fn realizable_column_agrees_with_emit_c() {
    let mut rng = SmallRng::seed_from_u64(9);
    for s in states(9, 300) {
        for &k in OP_KINDS {
            let op = gen_op_of(&mut rng, &s, k, Focus::default()).realizable_fields();
            let refusal = emit_c::refusal(&op);
            assert_eq!(refusal.is_none(), k.info().realizable, "`{op}`: emit-c says {refusal:?}");
        }
    }
}

#[test]
fn every_kind_shrinks_to_valid_ops_and_minimizes() {
    let mut rng = SmallRng::seed_from_u64(10);
    let st = states(10, 400);
    for &k in OP_KINDS {
        for s in st.iter().step_by(20) {
            let op = gen_op_of(&mut rng, s, k, Focus::default());
            for c in op.simpler() {
                assert_ne!(c, op, "`{op}` shrinks to itself");
                round_trips(&c);
            }
            // Noise around the op; the predicate wants an op of kind k: the
            // minimizer removes everything else and shrinks the op's fields as
            // far as its domains allow.
            let mut ops: Vec<Op> = (0..6).map(|_| gen_op(&mut rng, s)).filter(|o| o.kind() != k).collect();
            ops.insert(3.min(ops.len()), op);
            let m = minimize_by(&Program::new(ops), |ops| ops.iter().any(|o| o.kind() == k));
            assert_eq!(m.ops.len(), 1, "{k:?}: {m}");
            assert!(m.ops[0].simpler().iter().all(|c| c.kind() != k), "`{}` could shrink further", m.ops[0]);
        }
    }
}
