//! The judges: the differential check and signatures ([`check`]), the user
//! contracts and the end-of-program probe ([`contracts`]), the write-trap proxy
//! ([`oracle`]), root causes ([`causes`]) and which kernels have a hole
//! ([`affected`]).

pub mod affected;
pub mod analyze;
pub mod causes;
pub mod check;
pub mod contracts;
pub mod ghost;
pub mod holes;
pub mod oracle;
pub mod render;
pub mod runner;
pub mod signature;
pub mod world;
