//! The userfaultfd context and its write-protect features (mm/userfaultfd.c in
//! v7.3, fs/userfaultfd.c before; include/linux/userfaultfd_k.h): UFFDIO_API,
//! and the two questions the fault and protection paths ask of a VMA.
//! The register, unregister and release paths are in [`super::vma`].

use super::types::*;
use super::vma::{Errno, KResult};
use super::Kernel;
use crate::op::UffdFeatures;

/// The context bits a feature set asks for.
pub fn ctx_features(f: UffdFeatures) -> UffdCtx {
    match f {
        UffdFeatures::Sync => UffdCtx::empty(),
        UffdFeatures::WpUnpopulated => UffdCtx::WP_UNPOPULATED,
        // userfaultfd_api(): WP_ASYNC turns WP_UNPOPULATED on too.
        UffdFeatures::WpAsync => UffdCtx::WP_ASYNC | UffdCtx::WP_UNPOPULATED,
    }
}

/// The feature a profile lacks for `f`, and the version that added it.
pub fn missing_feature(k: Kernel, f: UffdFeatures) -> Option<(&'static str, &'static str)> {
    match f {
        UffdFeatures::Sync => None,
        UffdFeatures::WpUnpopulated if !k.uffd_wp_unpopulated() => Some(("UFFD_FEATURE_WP_UNPOPULATED", "v6.4")),
        UffdFeatures::WpAsync if !k.uffd_wp_async() => Some(("UFFD_FEATURE_WP_ASYNC", "v6.7")),
        _ => None,
    }
}

/// `userfaultfd()` + `userfaultfd_api()`: a new context asking for `f`. The
/// process has one context here: asking again while it is open is UFFDIO_API
/// on an initialized context (EINVAL), and so is a feature the kernel does not
/// know (the context stays closed: the reproducer closes the file).
pub fn userfaultfd_api(s: &mut State, k: Kernel, p: usize, f: UffdFeatures) -> KResult<()> {
    let mm = &mut s.procs[p];
    if mm.uffd.contains(UffdCtx::OPEN) || missing_feature(k, f).is_some() {
        return Err(Errno::Einval);
    }
    mm.uffd = UffdCtx::OPEN | ctx_features(f);
    Ok(())
}

/// The context a first UFFDIO_REGISTER opens when none is (the reproducers'
/// `uffd_open()`: UFFDIO_API with no write-protect feature).
pub fn userfaultfd_open_default(mm: &mut Mm) {
    mm.uffd.insert(UffdCtx::OPEN);
}

/// `userfaultfd_wp_async()`: the VMA is registered with a WP_ASYNC context.
#[inline]
pub fn userfaultfd_wp_async(mm: &Mm, v: &Vma) -> bool {
    v.uffd && mm.uffd.contains(UffdCtx::WP_ASYNC)
}

/// `userfaultfd_wp_use_markers()`: a uffd-wp VMA protects none PTEs with
/// markers when it is file-backed, or anonymous with WP_UNPOPULATED.
#[inline]
pub fn userfaultfd_wp_use_markers(mm: &Mm, v: &Vma) -> bool {
    v.uffd_wp() && (!v.is_anonymous() || mm.uffd.contains(UffdCtx::WP_UNPOPULATED))
}
