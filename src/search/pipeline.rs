//! The one finding pipeline every engine runs a hit through: **analyze** the
//! program → is the signature **known** with a program at least as short? →
//! **minimize** (keeping the signature) → hand the finding on to be
//! **recorded**. The built-in fuzzer (any number of workers), the libFuzzer
//! target and `explore` all call [`Pipeline::offer`]; what they do with a
//! [`Offer`] (send it to the findings database, print it) is theirs.

use std::collections::HashMap;
use std::time::Duration;

use crate::check::{analyze, Finding, Kind, Pair, Signature};
use crate::minimize::minimize;
use crate::op::Program;

/// A distinct divergence (or oracle violation) found by an engine.
#[derive(Clone, Debug)]
pub struct Found {
    pub signature: Signature,
    /// Provenance title of the minimized program's finding.
    pub title: String,
    /// Minimized program.
    pub program: Program,
    /// Programs that hit this signature.
    pub hits: u64,
    /// When it was first found, since the start.
    pub at: Duration,
}

/// What a hit came to.
#[derive(Clone, Debug)]
pub enum Offer {
    /// A signature the pipeline did not know.
    New(Found),
    /// A shorter program for a known signature.
    Shorter(Found),
    /// A known signature, with no shorter program: one more hit.
    Hit(Signature),
}

impl Offer {
    pub fn signature(&self) -> Signature {
        match self {
            Offer::New(f) | Offer::Shorter(f) => f.signature,
            Offer::Hit(s) => *s,
        }
    }
}

/// The pipeline of one engine (one worker, one libFuzzer process, one explore run).
pub struct Pipeline {
    pub pair: Pair,
    /// Keep only findings whose minimized program `emit-c` can run.
    pub realizable: bool,
    /// Signature -> length of the shortest program known.
    known: HashMap<Signature, usize>,
}

impl Pipeline {
    pub fn new(pair: Pair, realizable: bool) -> Pipeline {
        Pipeline { pair, realizable, known: HashMap::new() }
    }

    /// The signatures known and their shortest program lengths.
    pub fn known(&self) -> &HashMap<Signature, usize> {
        &self.known
    }

    /// Learn that `sig` has a program of `len` ops elsewhere (another worker, the folder).
    pub fn learn(&mut self, sig: Signature, len: usize) {
        let e = self.known.entry(sig).or_insert(len);
        *e = len.min(*e);
    }

    /// Analyze `program` for a finding of `kind` and run it through the pipeline.
    pub fn offer(&mut self, program: &Program, kind: Kind, at: Duration) -> Option<Offer> {
        let f = analyze(program, &self.pair, kind)?;
        self.offer_analyzed(program, f, at)
    }

    /// The pipeline after the analysis: known? → minimize → the finding.
    pub fn offer_analyzed(&mut self, program: &Program, f: Finding, at: Duration) -> Option<Offer> {
        let sig = f.signature;
        let best = self.known.get(&sig).copied();
        // A known signature: minimize only a program that is already shorter.
        if best.is_some_and(|b| program.ops.len() >= b) {
            return Some(Offer::Hit(sig));
        }
        let small = minimize(program, &self.pair, &sig);
        if self.realizable && crate::emit_c::realizable(&small).is_err() {
            return None;
        }
        if best.is_some_and(|b| small.ops.len() >= b) {
            return Some(Offer::Hit(sig));
        }
        let title = if small == *program {
            f.title
        } else {
            analyze(&small, &self.pair, sig.kind()).map_or(f.title, |g| g.title)
        };
        self.known.insert(sig, small.ops.len());
        let found = Found { signature: sig, title, program: small, hits: 1, at };
        Some(if best.is_none() { Offer::New(found) } else { Offer::Shorter(found) })
    }
}
