//! Programs: operations with their byte encoding ([`op`]) and their text form ([`text`]).

pub mod args;
pub mod op;
pub mod text;
