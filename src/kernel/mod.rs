//! The real-kernel side: C reproducers ([`emit_c`]) and running them on real
//! kernels under QEMU ([`kernel_check`]).

pub mod emit_c;
pub mod kernel_check;
