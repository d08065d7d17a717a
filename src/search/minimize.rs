//! Structural minimizer driven by a predicate (syzkaller's `prog/minimization.go`
//! shape): ddmin chunk deletion, single-op deletion, then each op's arguments
//! shrunk by their domains (the op table's shrinkers, [`Op::simpler`]),
//! repeated to a fixpoint. A candidate is kept only if the predicate still
//! holds, so the result is 1-minimal for it (deleting any single op loses it).
//! "Keeps the signature" ([`minimize`]) is one predicate; "keeps the cause" or
//! "still contradicts the real kernel" are others.

use crate::check::{analyze, Pair, Signature};
use crate::op::{Op, Program};

/// Minimize `program` keeping `sig` under `pair`.
pub fn minimize(program: &Program, pair: &Pair, sig: &Signature) -> Program {
    minimize_by(program, |ops| {
        analyze(&Program::new(ops.to_vec()), pair, sig.kind()).map(|f| f.signature).as_ref() == Some(sig)
    })
}

/// Minimize `program` while `keeps` holds (it must hold for `program` itself,
/// else `program` is returned as it is).
pub fn minimize_by(program: &Program, keeps: impl Fn(&[Op]) -> bool) -> Program {
    let mut ops = program.ops.clone();
    if !keeps(&ops) {
        return program.clone();
    }
    loop {
        let before = ops.clone();
        ddmin(&mut ops, &keeps);
        delete_singles(&mut ops, &keeps);
        simplify_args(&mut ops, &keeps);
        if ops == before {
            break;
        }
    }
    Program::new(ops)
}

/// Delta debugging over chunks (complements only).
fn ddmin(ops: &mut Vec<Op>, keeps: &impl Fn(&[Op]) -> bool) {
    let mut n = 2usize;
    while ops.len() >= 2 {
        let chunk = ops.len().div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < ops.len() {
            let end = (start + chunk).min(ops.len());
            let mut cand = ops[..start].to_vec();
            cand.extend_from_slice(&ops[end..]);
            if keeps(&cand) {
                *ops = cand;
                reduced = true;
                n = (n - 1).max(2);
                break;
            }
            start = end;
        }
        if !reduced {
            if n >= ops.len() {
                break;
            }
            n = (2 * n).min(ops.len());
        }
    }
}

/// Remove single ops until none can go.
fn delete_singles(ops: &mut Vec<Op>, keeps: &impl Fn(&[Op]) -> bool) {
    let mut i = ops.len();
    while i > 0 {
        i -= 1;
        if i >= ops.len() {
            continue;
        }
        let mut cand = ops.clone();
        cand.remove(i);
        if keeps(&cand) {
            *ops = cand;
        }
    }
}

/// Replace ops with simpler ones where the signature survives.
fn simplify_args(ops: &mut [Op], keeps: &impl Fn(&[Op]) -> bool) {
    for i in 0..ops.len() {
        let mut changed = true;
        while changed {
            changed = false;
            for cand in ops[i].simpler() {
                let old = ops[i];
                ops[i] = cand;
                if keeps(ops) {
                    changed = true;
                    break;
                }
                ops[i] = old;
            }
        }
    }
}

/// Is `program` 1-minimal for `sig` (no single op can be deleted)?
pub fn is_one_minimal(program: &Program, pair: &Pair, sig: &Signature) -> bool {
    (0..program.ops.len()).all(|i| {
        let mut ops = program.ops.clone();
        ops.remove(i);
        analyze(&Program::new(ops), pair, sig.kind()).map(|f| f.signature).as_ref() != Some(sig)
    })
}
