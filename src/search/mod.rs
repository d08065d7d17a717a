//! The engines that search: the built-in fuzzer ([`fuzz`]), the libFuzzer
//! target's side ([`libfuzzer`]), the bounded exhaustive explorer ([`explore`])
//! and the minimizer ([`minimize`]). All of them judge programs through
//! [`crate::check`].

pub mod explore;
pub mod fuzz;
pub mod generate;
pub mod libfuzzer;
pub mod minimize;
pub mod pipeline;
