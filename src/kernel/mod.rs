//! The real-kernel side: C reproducers ([`emit_c`]), running them on real
//! kernels under QEMU ([`kernel_check`]), and testing a kernel patch
//! ([`kernel_build`]).

pub mod emit_c;
pub mod kernel_build;
pub mod kernel_check;
