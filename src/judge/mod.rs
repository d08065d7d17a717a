//! The judges: the differential check and signatures ([`check`]), the
//! write-trap oracle ([`oracle`]) and which kernels have a hole ([`affected`]).

pub mod affected;
pub mod check;
pub mod oracle;
