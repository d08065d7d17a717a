//! The judges: the differential check and signatures ([`check`]) and the
//! write-trap oracle ([`oracle`]).

pub mod check;
pub mod oracle;
