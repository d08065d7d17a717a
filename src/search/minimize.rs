//! Structural minimizer: ddmin chunk deletion, single-op deletion, argument
//! simplification, repeated to a fixpoint. Keeps the **same** divergence
//! signature, and ends 1-minimal (deleting any single op loses it).

use crate::check::{analyze, Pair, Signature};
use crate::op::{Advice, FileName, Op, Program, Prot, Target};

/// Minimize `program` keeping `sig` under `pair`.
pub fn minimize(program: &Program, pair: &Pair, sig: &Signature) -> Program {
    let keeps =
        |ops: &[Op]| analyze(&Program::new(ops.to_vec()), pair, sig.kind).map(|f| f.signature).as_ref() == Some(sig);
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

/// Simpler variants of an op, simplest first: smaller lengths, fewer protection
/// bits, lower process slots, no event_fork, identity file offsets, anon/memfd.
fn simpler(op: &Op) -> Vec<Op> {
    let mut out = Vec::new();
    let lens = |len: u8| (1..len).collect::<Vec<u8>>();
    match *op {
        Op::Mmap { p, addr, len, prot, target } => {
            for l in lens(len) {
                out.push(Op::Mmap { p, addr, len: l, prot, target });
            }
            for pr in simpler_prot(prot) {
                out.push(Op::Mmap { p, addr, len, prot: pr, target });
            }
            if let Target::File { file, shared, pgoff } = target {
                if pgoff != addr {
                    out.push(Op::Mmap { p, addr, len, prot, target: Target::File { file, shared, pgoff: addr } });
                }
                if file != FileName::Memfd {
                    out.push(Op::Mmap {
                        p,
                        addr,
                        len,
                        prot,
                        target: Target::File { file: FileName::Memfd, shared, pgoff },
                    });
                }
            }
        }
        Op::Mprotect { p, addr, len, prot } => {
            for l in lens(len) {
                out.push(Op::Mprotect { p, addr, len: l, prot });
            }
            for pr in simpler_prot(prot) {
                out.push(Op::Mprotect { p, addr, len, prot: pr });
            }
        }
        Op::Munmap { p, addr, len } => lens(len).into_iter().for_each(|l| out.push(Op::Munmap { p, addr, len: l })),
        Op::Mlock { p, addr, len } => lens(len).into_iter().for_each(|l| out.push(Op::Mlock { p, addr, len: l })),
        Op::Munlock { p, addr, len } => lens(len).into_iter().for_each(|l| out.push(Op::Munlock { p, addr, len: l })),
        Op::UffdRegister { p, addr, len } => {
            lens(len).into_iter().for_each(|l| out.push(Op::UffdRegister { p, addr, len: l }))
        }
        Op::UffdUnregister { p, addr, len } => {
            lens(len).into_iter().for_each(|l| out.push(Op::UffdUnregister { p, addr, len: l }))
        }
        Op::UffdWp { p, addr, len } => lens(len).into_iter().for_each(|l| out.push(Op::UffdWp { p, addr, len: l })),
        Op::UffdUnwp { p, addr, len } => lens(len).into_iter().for_each(|l| out.push(Op::UffdUnwp { p, addr, len: l })),
        Op::Madvise { p, addr, len, advice } => {
            lens(len).into_iter().for_each(|l| out.push(Op::Madvise { p, addr, len: l, advice }));
            if advice != Advice::DontNeed {
                out.push(Op::Madvise { p, addr, len, advice: Advice::DontNeed });
            }
        }
        Op::Mremap { p, addr, len, new } => {
            lens(len).into_iter().for_each(|l| out.push(Op::Mremap { p, addr, len: l, new }))
        }
        Op::Fork { parent, child, event_fork: true } => out.push(Op::Fork { parent, child, event_fork: false }),
        Op::MigrateStart { p, addr } => out.push(Op::Migrate { p, addr }),
        Op::Write { p, addr } => out.push(Op::Read { p, addr }),
        _ => {}
    }
    out
}

fn simpler_prot(prot: Prot) -> Vec<Prot> {
    let mut out = Vec::new();
    for bit in [Prot::X, Prot::R] {
        if prot.0 & bit != 0 && prot.0 != bit {
            out.push(Prot(prot.0 & !bit));
        }
    }
    out
}

/// Replace ops with simpler ones where the signature survives.
fn simplify_args(ops: &mut [Op], keeps: &impl Fn(&[Op]) -> bool) {
    for i in 0..ops.len() {
        let mut changed = true;
        while changed {
            changed = false;
            for cand in simpler(&ops[i]) {
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
        analyze(&Program::new(ops), pair, sig.kind).map(|f| f.signature).as_ref() != Some(sig)
    })
}
