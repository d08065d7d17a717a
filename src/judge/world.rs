//! A [`World`]: the kernel state and the ghost state of what user space is owed,
//! stepped together. The kernel step ([`model::step`]) knows nothing of the
//! contracts; it emits [`Event`](crate::model::events::Event)s, which the ghost
//! applies after the step, and the user accesses an op makes are checked here.

use super::ghost::Ghost;
use crate::model::events::Event;
use crate::model::{self, fault, Config, State, StepResult};
use crate::op::Op;

use super::contracts::Contract;

/// The kernel and what user space is owed, one side of a differential run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct World {
    pub k: State,
    pub g: Ghost,
}

impl World {
    /// The initial state, checking `contracts` (empty: none).
    pub fn new(contracts: Contract) -> World {
        World { k: State::new(), g: Ghost::new(contracts) }
    }

    /// Apply the events the last kernel step emitted to the ghost, in order,
    /// reading the state after the step; the layout of a process is reconciled
    /// once, after the others (a move reads what its source pages held).
    #[inline]
    fn follow(&mut self) {
        let mut layout = 0u8;
        for &e in self.k.events.iter() {
            match e {
                Event::Layout { p } => layout |= 1 << p,
                e => self.g.apply(&self.k, e),
            }
        }
        self.k.events.clear();
        while layout != 0 {
            let p = layout.trailing_zeros() as u8;
            layout &= layout - 1;
            self.g.apply(&self.k, Event::Layout { p });
        }
    }

    /// Apply one op (the model's next-state function); with contracts on, the
    /// ghost follows and pagemap is checked after the op.
    pub fn step(&mut self, cfg: &Config, op: &Op) -> StepResult {
        if !self.g.on() {
            return model::step(&mut self.k, cfg, op);
        }
        let access = match *op {
            Op::Read { p, addr } => Some((p as usize, addr, false)),
            Op::Write { p, addr } | Op::WriteVal { p, addr, .. } => Some((p as usize, addr, true)),
            _ => None,
        };
        let before = access.map(|(p, a, _)| self.g.before_access(&self.k, p, a));
        let r = model::step(&mut self.k, cfg, op);
        self.follow();
        if let (Some((p, a, write)), Some(b), StepResult::Ok) = (access, before, r) {
            self.g.after_access(&self.k, p, a, write, b);
        }
        self.g.check_pagemap(&self.k);
        r
    }

    /// A user load or store outside a program step (the end-of-program probe).
    pub fn access(&mut self, cfg: &Config, p: usize, a: u8, write: bool) -> fault::Access {
        let before = self.g.before_access(&self.k, p, a);
        self.k.events.clear();
        let r = fault::user_access(&mut self.k, cfg, p, a, write);
        if self.g.on() {
            self.follow();
            if r == fault::Access::Done {
                self.g.after_access(&self.k, p, a, write, before);
            }
        } else {
            self.k.events.clear();
        }
        r
    }

    /// End of a program: finish every migration still in flight.
    pub fn finish(&mut self, cfg: &Config) {
        self.k.events.clear();
        model::finish(&mut self.k, cfg);
        if self.g.on() {
            self.follow();
        } else {
            self.k.events.clear();
        }
    }
}
