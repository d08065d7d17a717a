//! The engines that search: the built-in fuzzer ([`fuzz`]), the bounded
//! exhaustive explorer ([`explore`]) and the minimizer ([`minimize`]). All of them
//! judge programs through [`crate::check`].

pub mod explore;
pub mod fuzz;
pub mod minimize;
