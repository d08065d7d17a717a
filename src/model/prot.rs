//! Protection computation: protection_map, writenotify, vm_page_prot.

use super::types::*;
use super::Config;

/// `vm_get_page_prot()` (mm/mmap.c) over the x86 `protection_map`
/// (arch/x86/mm/pgprot.c): RW only for SHARED+WRITE (PAGE_SHARED*); private
/// writable mappings get PAGE_COPY (read-only); no R/W/X gives PAGE_NONE.
pub fn vm_get_page_prot(flags: VmFlags) -> PageProt {
    if !flags.intersects(VmFlags::READ | VmFlags::WRITE | VmFlags::EXEC) {
        return PageProt::empty();
    }
    let mut p = PageProt::USER;
    if flags.contains(VmFlags::SHARED | VmFlags::WRITE) {
        p |= PageProt::RW;
    }
    if flags.contains(VmFlags::EXEC) {
        p |= PageProt::EXEC;
    }
    p
}

/// Does the VMA's file have `vm_ops->page_mkwrite` (or pfn_mkwrite)?
/// shmem has none; ext4 has ext4_page_mkwrite; ramfs uses generic_file_vm_ops,
/// whose page_mkwrite is filemap_page_mkwrite (mm/filemap.c).
pub fn has_page_mkwrite(s: &State, vma: &Vma) -> bool {
    match vma.backing {
        Backing::Anon => false,
        Backing::File(f) => matches!(s.file_kind(f), FileKind::Ext4 | FileKind::Ramfs),
    }
}

/// `mapping_can_writeback()` (include/linux/backing-dev.h): only a BDI with
/// BDI_CAP_WRITEBACK; shmem and ramfs sit on the noop BDI.
pub fn mapping_can_writeback(s: &State, file: u8) -> bool {
    s.file_kind(file) == FileKind::Ext4
}

/// `vma_wants_writenotify(vma, vm_page_prot)` (mm/mmap.c, v6.1), rules in kernel order.
/// With `cfg.kernel.b1` (6.1.y backport 51d3d5eb74ff) uffd-wp VMAs also want it.
pub fn vma_wants_writenotify(s: &State, cfg: &Config, vma: &Vma, prot: PageProt) -> bool {
    let f = vma.flags;
    // 1. Only shared writable mappings need write notification.
    if !f.contains(VmFlags::WRITE | VmFlags::SHARED) {
        return false;
    }
    // 2. The filesystem asked for page_mkwrite.
    if has_page_mkwrite(s, vma) {
        return true;
    }
    // 3. The open routine (or the caller's stale prot) changed protections:
    //    pgprot_modify(prot, vm_get_page_prot(flags)) != prot.
    if prot != vm_get_page_prot(f) {
        return false;
    }
    // 4. Soft-dirty tracking needs the write faults.
    if vma.soft_dirty_enabled() {
        return true;
    }
    // 5. (B1, 6.1.y / v6.2-rc4+) userfaultfd-wp needs them too.
    if cfg.b1_uffd_writenotify() && vma.uffd_wp() {
        return true;
    }
    // 6. VM_PFNMAP: not modelled. 7. Dirty accounting on a writeback BDI.
    match vma.backing {
        Backing::File(file) => mapping_can_writeback(s, file),
        Backing::Anon => false,
    }
}

/// `vma_set_page_prot()` (mm/mmap.c): recompute `vm_page_prot` from the flags,
/// dropping RW (the private protection) when writenotify is wanted.
pub fn vma_set_page_prot(s: &State, cfg: &Config, vma: &mut Vma, why: Why) {
    let prot = vm_get_page_prot(vma.flags);
    let new =
        if vma_wants_writenotify(s, cfg, vma, prot) { vm_get_page_prot(vma.flags - VmFlags::SHARED) } else { prot };
    if new != vma.prot {
        vma.prot_by = Prov { why, step: s.step };
    }
    vma.prot = new;
}

/// `userfaultfd_set_vm_flags()` (include/linux/userfaultfd_k.h, B1 only):
/// assign flags and recompute `vm_page_prot` of shared VMAs when VM_UFFD_WP flips.
/// Without B1 (v6.1 release) it is a plain assignment.
pub fn userfaultfd_set_vm_flags(s: &State, cfg: &Config, vma: &mut Vma, flags: VmFlags, why: Why) {
    let flip = (vma.flags ^ flags).contains(VmFlags::UFFD_WP);
    vma.flags = flags;
    if cfg.b1_uffd_writenotify() && flip && flags.contains(VmFlags::SHARED) {
        vma_set_page_prot(s, cfg, vma, why);
    }
}
