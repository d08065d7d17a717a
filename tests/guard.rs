//! Guard regions in the model (MADV_GUARD_INSTALL / MADV_GUARD_REMOVE, v6.13),
//! per profile, with the guard contract (G). Rules read in 6.18.15 and 7.3.4
//! (mm/madvise.c, mm/memory.c, mm/mprotect.c, fs/proc/task_mmu.c).

use ptediff::judge::contracts::Contract;
use ptediff::judge::world::World;
use ptediff::model::{step, Config, Entry, Kernel, Restore, State, StepResult, SwpBits, VmFlags};
use ptediff::text::parse;

fn cfg(kernel: Kernel) -> Config {
    Config { kernel, ..Config::new(Restore::VmPageProt) }
}

fn run(text: &str, cfg: &Config) -> (State, Vec<StepResult>) {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    let mut s = State::new();
    let res = prog.ops.iter().map(|op| step(&mut s, cfg, op)).collect();
    (s, res)
}

fn world(text: &str, cfg: &Config) -> World {
    let prog = parse(text).unwrap_or_else(|e| panic!("parse error {e} in\n{text}"));
    let mut w = World::new(Contract::all());
    for op in &prog.ops {
        w.step(cfg, op);
    }
    w
}

fn is_guard(s: &State, p: usize, a: usize) -> bool {
    matches!(s.procs[p].pt[a], Entry::Guard { .. })
}

const GUARDED: &str = "mmap(p0, 0, 3, rw-, anon)\nwrite(p0, 0)\nmadvise(p0, 0, 2, MADV_GUARD_INSTALL)\n";

#[test]
fn a_profile_before_6_13_refuses_the_advice_with_its_version() {
    for k in [Kernel::V61y, Kernel::V612] {
        let r = run(GUARDED, &cfg(k)).1;
        assert_eq!(r[2], StepResult::NotInKernel { feature: "MADV_GUARD_INSTALL", since: "v6.13" }, "{k:?}");
    }
}

#[test]
fn an_install_zaps_the_range_and_every_access_to_a_guard_faults() {
    for k in [Kernel::V618, Kernel::V73] {
        let c = cfg(k);
        let (s, r) = run(&format!("{GUARDED}read(p0, 0)\nwrite(p0, 1)\nwrite(p0, 2)"), &c);
        assert_eq!(r[2], StepResult::Ok, "{k:?}");
        // The present page 0 was zapped, then guarded; page 2 is outside.
        assert!(is_guard(&s, 0, 0) && is_guard(&s, 0, 1), "{k:?}: {:?}", &s.procs[0].pt[..3]);
        assert_eq!(&r[3..], [StepResult::Segv, StepResult::Segv, StepResult::Ok], "{k:?}");
        // 7.3 marks the VMA VM_MAYBE_GUARD; 6.18 has no such flag.
        let maybe = s.procs[0].vmas.iter().any(|v| v.flags.contains(VmFlags::MAYBE_GUARD));
        assert_eq!(maybe, k == Kernel::V73, "{k:?}");
        // The kernel keeping its promise breaks nothing.
        assert!(world(&format!("{GUARDED}read(p0, 0)"), &c).g.breaks.contracts().is_empty(), "{k:?}");
    }
}

#[test]
fn remove_clears_guards_and_dontneed_free_and_mprotect_keep_them() {
    let c = cfg(Kernel::V73);
    let text = format!(
        "{GUARDED}madvise(p0, 0, 3, MADV_DONTNEED)\nmadvise(p0, 0, 3, MADV_FREE)\nmprotect(p0, 0, 3, r--)\nmprotect(p0, 0, 3, rw-)"
    );
    let (s, _) = run(&text, &c);
    assert!(is_guard(&s, 0, 0) && is_guard(&s, 0, 1));
    let (s, r) = run(&format!("{text}\nmadvise(p0, 0, 3, MADV_GUARD_REMOVE)\nwrite(p0, 0)"), &c);
    assert_eq!(r[r.len() - 1], StepResult::Ok);
    assert!(!is_guard(&s, 0, 1) && s.procs[0].pt[1] == Entry::None);
}

#[test]
fn munmap_drops_guards_and_fork_copies_them() {
    let c = cfg(Kernel::V618);
    let (s, r) = run(&format!("{GUARDED}p1 = fork(p0)\nread(p1, 1)\nread(p1, 2)"), &c);
    assert!(is_guard(&s, 1, 0) && is_guard(&s, 1, 1));
    assert_eq!(&r[4..], [StepResult::Segv, StepResult::Ok]);
    let (s, _) = run(&format!("{GUARDED}munmap(p0, 0, 3)\nmmap(p0, 0, 3, rw-, anon)"), &c);
    assert!(!is_guard(&s, 0, 0));
}

#[test]
fn a_locked_vma_refuses_an_install_and_mlock_over_a_guard_fails() {
    let c = cfg(Kernel::V73);
    let r = run("mmap(p0, 0, 2, rw-, anon)\nmlock(p0, 0, 2)\nmadvise(p0, 0, 2, MADV_GUARD_INSTALL)", &c).1;
    assert_eq!(r[2], StepResult::Failed);
    let r = run(&format!("{GUARDED}mlock(p0, 0, 3)"), &c).1;
    assert_eq!(r[3], StepResult::Failed);
}

/// An install over a uffd-wp protected shmem page: every zap without
/// zap_details leaves a uffd-wp marker where the protected page was, the walk
/// stops at it, and after three rounds the call restarts, for ever. The anon
/// twin completes (a zap of an anonymous VMA drops the protection).
#[test]
fn an_install_over_uffd_wp_on_shmem_never_returns() {
    let prot = "uffd_register(p0, 0, 2)\nwrite(p0, 0)\nuffd_wp(p0, 0, 2)\nmadvise(p0, 0, 2, MADV_GUARD_INSTALL)";
    let shmem = format!("mmap(p0, 0, 2, rw-, memfd, shared, 0)\n{prot}");
    let anon = format!("mmap(p0, 0, 2, rw-, anon)\n{prot}");
    for k in [Kernel::V618, Kernel::V73] {
        let c = cfg(k);
        let (s, r) = run(&shmem, &c);
        assert_eq!(r[4], StepResult::Failed, "{k:?}");
        assert!(!is_guard(&s, 0, 0), "{k:?}");
        assert!(world(&shmem, &c).g.breaks.contracts().contains(Contract::G), "{k:?}");
        let (s, r) = run(&anon, &c);
        assert_eq!(r[4], StepResult::Ok, "{k:?}");
        assert!(is_guard(&s, 0, 0) && is_guard(&s, 0, 1), "{k:?}");
        assert!(!world(&anon, &c).g.breaks.contracts().contains(Contract::G), "{k:?}");
    }
}

/// Each guard/uffd-wp finding is its own hole, closed by its own patch: the
/// install over a uffd-wp marker completes with the walk fix (and with it the
/// shmem page is a guard, no longer protected: nothing is owed while it stands);
/// the protection survives MADV_GUARD_REMOVE only with a guard that carries it.
#[test]
fn each_guard_uffd_wp_hole_explains_its_finding_and_its_patch_closes_it() {
    use ptediff::check::{analyze, Kind, Pair};
    use ptediff::model::Patches;
    let livelock = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\nmadvise(p0, 0, 1, MADV_GUARD_INSTALL)";
    let unguarded = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nwrite(p0, 0)\nmadvise(p0, 0, 1, MADV_GUARD_INSTALL)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\nmadvise(p0, 0, 1, MADV_GUARD_REMOVE)";
    // The same through fork with EVENT_FORK: the child's copy of the guard
    // (copy_pte_marker()) must carry the protection too.
    let forked = "mmap(p0, 0, 1, rw-, memfd, shared, 0)\nmadvise(p0, 0, 1, MADV_GUARD_INSTALL)\nuffd_register(p0, 0, 1)\nuffd_wp(p0, 0, 1)\np1 = fork(p0, event_fork)\nmadvise(p1, 0, 1, MADV_GUARD_REMOVE)";
    let cases = [
        (livelock, "broken-G-via-guard-install-uffd-wp", Patches::GUARD_INSTALL_OVER_UFFD_WP),
        (unguarded, "broken-U-via-uffd-wp-skips-guard", Patches::GUARD_KEEPS_UFFD_WP),
        (forked, "broken-U-via-uffd-wp-skips-guard", Patches::GUARD_KEEPS_UFFD_WP),
    ];
    // The oracle finding of `text` with `patches` on both sides (the
    // end-of-program probe included), as its signature.
    let finding = |text: &str, k: Kernel, patches: Patches| {
        let side = |r| Config { kernel: k, patches, ..Config::new(r) };
        let pair = Pair::new(side(Restore::FullRestore), side(Restore::VmPageProt));
        analyze(&parse(text).unwrap(), &pair, Kind::Oracle).map(|f| f.signature.to_string())
    };
    for k in [Kernel::V618, Kernel::V73] {
        for (text, broken, patch) in cases {
            let f = finding(text, k, Patches::empty()).expect("an oracle finding");
            assert!(f.ends_with(broken), "{k:?}: {f}");
            assert_eq!(finding(text, k, patch), None, "{k:?}: {text}");
        }
        let walk = Config { patches: Patches::GUARD_INSTALL_OVER_UFFD_WP, ..cfg(k) };
        let (s, r) = run(livelock, &walk);
        assert_eq!(r[3], StepResult::Ok);
        assert_eq!(s.procs[0].pt[0], Entry::Guard { bits: SwpBits::empty() }, "{k:?}");
        // The walk fix alone: the guard drops the protection, so after removal
        // the probe's store completes; with both patches the marker comes back.
        let then_remove = format!("{livelock}\nmadvise(p0, 0, 1, MADV_GUARD_REMOVE)");
        let f = finding(&then_remove, k, Patches::GUARD_INSTALL_OVER_UFFD_WP).expect("the lost protection");
        assert!(f.ends_with("broken-U-via-uffd-wp-skips-guard"), "{k:?}: {f}");
        let both = Patches::GUARD_INSTALL_OVER_UFFD_WP | Patches::GUARD_KEEPS_UFFD_WP;
        assert_eq!(finding(&then_remove, k, both), None, "{k:?}");
        let (s, _) = run(unguarded, &Config { patches: Patches::GUARD_KEEPS_UFFD_WP, ..cfg(k) });
        assert_eq!(s.procs[0].pt[0], Entry::Marker, "{k:?}: the removed guard leaves a uffd-wp marker");
    }
}
