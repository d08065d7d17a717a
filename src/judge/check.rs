//! The differential check, by concern: stepping both sides ([`super::runner`]),
//! judging a program ([`super::analyze`]), typed signatures and verdicts
//! ([`super::signature`]), the holes the counterfactual patches
//! ([`super::holes`]) and rendering ([`super::render`]). This module gathers
//! them under the name every caller uses (`crate::check`).

pub use super::analyze::{analyze, first_divergence, signature_of, Finding};
pub use super::holes::Hole;
pub use super::render::{check, show_entry, show_pte, show_vma, Outcome, PageDiff, Report};
pub use super::runner::{agree, differing_pages, Pair, Runner, Step};
pub use super::signature::{EntryClass, Kind, MappingClass, Shape, Signature, Verdict};
