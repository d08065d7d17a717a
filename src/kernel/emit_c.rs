//! `ptediff emit-c`: a program as one standalone C reproducer (kselftest style,
//! libc + kernel UAPI headers only) that runs it on a real kernel and prints, for
//! every page at the end, what the kernel did next to what each kernel profile
//! of the model predicts.
//!
//! Processes are real processes driven over pipes by a controller; every process
//! has its own userfaultfd (opened on first use) with a handler thread. At the end
//! each process reads `/proc/self/pagemap` (bits 55 soft-dirty, 57 uffd-wp, 63
//! present) for all pages, then probes each writable page with one store: a uffd-wp
//! message means `uffd`, a minor fault (getrusage, warmed up first) means `fault`,
//! neither means `writable`. Output lines:
//!
//! ```text
//! PTEDIFF-BEGIN name
//! PTEDIFF-PAGE name p0 3 obs=writable sd=1 uw=0 present=1
//! PTEDIFF-PREDICT name v6.12 p0 3 obs=writable sd=1 uw=0 present=1
//! PTEDIFF-END name
//! ```

use std::fmt::Write as _;

use crate::model::{self, Config, Entry, Kernel, PteBits, State, StepResult, SwpBits, VmFlags, MAX_PROCS, NPAGES};
use crate::op::{FileName, Op, Program, Target};

/// Profiles whose predictions a reproducer carries: the kernel's own restore.
pub const PROFILES: [Kernel; 4] = [Kernel::V61y, Kernel::V612, Kernel::V618, Kernel::V73];

/// Why a program cannot be turned into a deterministic C reproducer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrealizable(pub String);

impl std::fmt::Display for Unrealizable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The model's observation of one page at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageObs {
    /// `writable`, `fault`, `uffd` or `noaccess` (no VM_WRITE: not probed).
    pub obs: &'static str,
    pub sd: bool,
    pub uw: bool,
    pub present: bool,
}

impl PageObs {
    pub fn render(&self) -> String {
        format!("obs={} sd={} uw={} present={}", self.obs, self.sd as u8, self.uw as u8, self.present as u8)
    }
}

/// The configuration a kernel profile runs as (its own restore).
pub fn native(k: Kernel) -> Config {
    Config { kernel: k, ..Config::new(k.native_restore()) }
}

/// Check that every op of the program can be realised deterministically, under
/// every profile; returns the final states.
pub fn realizable(program: &Program) -> Result<Vec<State>, Unrealizable> {
    let mut finals = Vec::new();
    for k in PROFILES {
        let cfg = native(k);
        let mut s = State::new();
        for (i, op) in program.ops.iter().enumerate() {
            let n = i + 1;
            let refuse = |why: &str| Err(Unrealizable(format!("step {n} `{op}`: {why}")));
            match *op {
                Op::MigrateStart { .. } | Op::MigrateFinish { .. } => {
                    return refuse("user space cannot hold a migration between unmap and restore")
                }
                Op::NumaHint { .. } => return refuse("NUMA hinting scans cannot be triggered on demand"),
                Op::Writeback { .. } => return refuse("writeback needs an ext4 file, which the test system lacks"),
                Op::Mmap { target: Target::File { file: FileName::Ext4, .. }, .. } => {
                    return refuse("ext4 files are not available in the test system")
                }
                Op::Fork { event_fork: true, .. } => {
                    return refuse("UFFD_FEATURE_EVENT_FORK hands the child's uffd to the parent; not supported")
                }
                Op::Pageout { p, addr } => {
                    // MADV_PAGEOUT leaves pages mapped more than once alone.
                    if let Entry::Present { folio, .. } = s.procs[p as usize].pt[addr as usize] {
                        if folio != model::ZERO_PAGE && s.folio(folio).mapcount > 1 {
                            return refuse("MADV_PAGEOUT skips a page mapped more than once");
                        }
                    }
                }
                _ => {}
            }
            match model::step(&mut s, &cfg, op) {
                StepResult::UffdWp => return refuse("the store blocks on uffd-wp until a handler resolves it"),
                StepResult::Segv => return refuse("the access raises SIGSEGV"),
                _ => {}
            }
            if !s.pending.is_empty() {
                return refuse("a migration is left in flight");
            }
        }
        finals.push(s);
    }
    Ok(finals)
}

/// What the model says the end-of-program probe of `(p, page)` will see.
pub fn predict(s: &State, p: usize, page: usize) -> Option<PageObs> {
    let mm = &s.procs[p];
    if !mm.alive {
        return None;
    }
    let v = mm.vma(page as u8)?;
    let vsd = v.flags.contains(VmFlags::SOFTDIRTY);
    let (present, sd, uw) = match mm.pt[page] {
        Entry::Present { bits, .. } => (true, bits.contains(PteBits::SD), bits.contains(PteBits::UW)),
        Entry::Swap { bits, .. } | Entry::Migration { bits, .. } => {
            (false, bits.contains(SwpBits::SD), bits.contains(SwpBits::UW))
        }
        Entry::Marker => (false, false, true),
        Entry::None => (false, false, false),
    };
    let obs = if !v.flags.contains(VmFlags::WRITE) {
        "noaccess"
    } else {
        match mm.pt[page] {
            Entry::Present { bits, .. } if bits.contains(PteBits::W) => "writable",
            Entry::Present { bits, .. } if bits.contains(PteBits::UW) && v.uffd_wp() => "uffd",
            Entry::Marker if v.uffd_wp() => "uffd",
            Entry::Swap { bits, .. } if bits.contains(SwpBits::UW) && v.uffd_wp() => "uffd",
            _ => "fault",
        }
    };
    Some(PageObs { obs, sd: sd || vsd, uw, present })
}

/// Per process and page: 'w' (pagemap and one store: some profile has a writable
/// VMA there, or no profile has any, so a kernel that kept or made a mapping the
/// model lacks is seen), 'r' (pagemap only: a VMA without write), '.' (a process
/// no profile keeps alive).
fn probe_layout(finals: &[State]) -> [[char; NPAGES]; MAX_PROCS] {
    let mut out = [['.'; NPAGES]; MAX_PROCS];
    for s in finals {
        for (p, row) in out.iter_mut().enumerate() {
            let mm = &s.procs[p];
            if !mm.alive {
                continue;
            }
            for (a, c) in row.iter_mut().enumerate() {
                // Precedence: w > r > - (no VMA) > . (no process).
                match mm.vma(a as u8) {
                    Some(v) if v.flags.contains(VmFlags::WRITE) => *c = 'w',
                    Some(_) if *c != 'w' => *c = 'r',
                    None if *c == '.' => *c = '-',
                    _ => {}
                }
            }
        }
    }
    for row in out.iter_mut() {
        for c in row.iter_mut() {
            if *c == '-' {
                *c = 'w';
            }
        }
    }
    out
}

/// The prediction for a probed page: [`predict`], or for a page this profile has
/// no VMA at, an empty pagemap entry and (when probed with a store) SIGSEGV.
fn predict_probe(s: &State, p: usize, page: usize, probe: char) -> Option<PageObs> {
    if probe == '.' {
        return None;
    }
    predict(s, p, page).or(Some(PageObs {
        obs: if probe == 'w' { "segv" } else { "noaccess" },
        sd: false,
        uw: false,
        present: false,
    }))
}

fn c_prot(p: crate::op::Prot) -> String {
    let mut v = Vec::new();
    if p.read() {
        v.push("PROT_READ");
    }
    if p.write() {
        v.push("PROT_WRITE");
    }
    if p.exec() {
        v.push("PROT_EXEC");
    }
    if v.is_empty() {
        "PROT_NONE".into()
    } else {
        v.join("|")
    }
}

/// The slot an op runs in (`None`: the controller).
fn slot_of(op: &Op) -> Option<u8> {
    match *op {
        Op::Fork { parent, .. } => Some(parent),
        Op::Swapoff => None,
        Op::Mmap { p, .. }
        | Op::Munmap { p, .. }
        | Op::Mprotect { p, .. }
        | Op::Madvise { p, .. }
        | Op::Mlock { p, .. }
        | Op::Munlock { p, .. }
        | Op::Mremap { p, .. }
        | Op::Read { p, .. }
        | Op::Write { p, .. }
        | Op::ClearRefs { p }
        | Op::UffdRegister { p, .. }
        | Op::UffdUnregister { p, .. }
        | Op::UffdWp { p, .. }
        | Op::UffdUnwp { p, .. }
        | Op::UffdClose { p }
        | Op::Exit { p }
        | Op::Migrate { p, .. }
        | Op::MigrateStart { p, .. }
        | Op::MigrateFinish { p, .. }
        | Op::Pageout { p, .. }
        | Op::Writeback { p, .. }
        | Op::NumaHint { p, .. } => Some(p),
    }
}

fn c_len(addr: u8, len: u8) -> u8 {
    (addr + len).min(NPAGES as u8) - addr
}

/// The C statement(s) of one op, run in its process.
fn c_op(op: &Op) -> String {
    match *op {
        Op::Mmap { addr, len, prot, target, .. } => {
            let n = c_len(addr, len);
            let (flags, fd, off) = match target {
                Target::Anon => ("MAP_PRIVATE|MAP_ANONYMOUS".to_string(), "-1".to_string(), 0),
                Target::SharedAnon => ("MAP_SHARED|MAP_ANONYMOUS".to_string(), "-1".to_string(), 0),
                Target::File { file, shared, pgoff } => {
                    let fd = if file == FileName::Ramfs { "ramfd" } else { "memfd" };
                    let m = if shared { "MAP_SHARED" } else { "MAP_PRIVATE" };
                    (m.to_string(), fd.to_string(), pgoff)
                }
            };
            format!(
                "r = (long)mmap(PG({addr}), {n} * PAGE, {}, {flags}|MAP_FIXED, {fd}, {off} * PAGE); if (r == -1L) r = -errno;",
                c_prot(prot)
            )
        }
        Op::Munmap { addr, len, .. } => format!("r = munmap(PG({addr}), {} * PAGE);", c_len(addr, len)),
        Op::Mprotect { addr, len, prot, .. } => {
            format!("r = mprotect(PG({addr}), {} * PAGE, {});", c_len(addr, len), c_prot(prot))
        }
        Op::Madvise { addr, len, advice, .. } => {
            format!("r = madvise(PG({addr}), {} * PAGE, {});", c_len(addr, len), advice.name())
        }
        Op::Mlock { addr, len, .. } => format!("r = mlock(PG({addr}), {} * PAGE);", c_len(addr, len)),
        Op::Munlock { addr, len, .. } => format!("r = munlock(PG({addr}), {} * PAGE);", c_len(addr, len)),
        Op::Mremap { addr, len, new, .. } => format!(
            "r = (long)mremap(PG({addr}), {n} * PAGE, {n} * PAGE, MREMAP_MAYMOVE|MREMAP_FIXED, PG({new})); if (r == -1L) r = -errno;",
            n = c_len(addr, len)
        ),
        Op::Read { addr, .. } => format!("r = *(volatile char *)PG({addr});"),
        Op::Write { addr, .. } => format!("*(volatile char *)PG({addr}) = 1; r = 0;"),
        Op::ClearRefs { .. } => "r = clear_refs();".into(),
        Op::UffdRegister { addr, len, .. } => format!("r = uffd_register(PG({addr}), {});", c_len(addr, len)),
        Op::UffdUnregister { addr, len, .. } => format!("r = uffd_unregister(PG({addr}), {});", c_len(addr, len)),
        Op::UffdWp { addr, len, .. } => format!("r = uffd_wp(PG({addr}), {}, 1);", c_len(addr, len)),
        Op::UffdUnwp { addr, len, .. } => format!("r = uffd_wp(PG({addr}), {}, 0);", c_len(addr, len)),
        Op::UffdClose { .. } => "r = uffd_close();".into(),
        Op::Fork { child, .. } => format!("r = do_fork({child});"),
        Op::Exit { .. } => "ack(0); _exit(0);".into(),
        Op::Migrate { addr, .. } => format!("r = migrate(PG({addr}));"),
        Op::Pageout { addr, .. } => format!("r = madvise(PG({addr}), PAGE, 21 /* MADV_PAGEOUT */);"),
        Op::Swapoff => "r = swap_cycle();".into(),
        Op::MigrateStart { .. } | Op::MigrateFinish { .. } | Op::Writeback { .. } | Op::NumaHint { .. } => {
            unreachable!("refused by realizable()")
        }
    }
}

const PRELUDE: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#define UNUSED __attribute__((unused))
#define PAGE 4096UL
#define NPAGES 16
/* 64 KiB-aligned, so the 16 pages are exactly one fault-around window. */
#define BASE 0x7e0000000000UL
#define PG(i) ((void *)(BASE + (unsigned long)(i) * PAGE))

static const char *NAME;
static int memfd = -1, ramfd = -1;
static int cmdp[3][2], ackp[3][2];
static int uffd = -1;
static int uffd_stop[2] = { -1, -1 };
static pthread_t uffd_thread;
static volatile int uffd_hit[NPAGES];

static void fail(const char *what) {
	printf("PTEDIFF-END %s error %s: %s\n", NAME, what, strerror(errno));
	fflush(stdout);
	_exit(1);
}

static void ack(long r) {
	char c = r < 0;
	if (write(ackp[0][1], &c, 1) != 1) fail("ack");
	(void)r;
}

static void *uffd_handler(void *arg) {
	int fd = (int)(long)arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = uffd_stop[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) continue;
		if (p[1].revents) return NULL; /* uffd_close(): let go of the file first */
		struct uffd_msg m;
		if (read(fd, &m, sizeof m) != sizeof m) continue;
		if (m.event != UFFD_EVENT_PAGEFAULT) continue;
		unsigned long a = m.arg.pagefault.address & ~(PAGE - 1);
		if (a >= BASE && a < BASE + NPAGES * PAGE) uffd_hit[(a - BASE) / PAGE] = 1;
		struct uffdio_writeprotect wp = { .range = { .start = a, .len = PAGE }, .mode = 0 };
		if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	}
	return NULL;
}

static int uffd_open(void) {
	if (uffd >= 0) return 0;
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(uffd, UFFDIO_API, &api)) return -errno;
	uint64_t want = UFFD_FEATURE_WP_HUGETLBFS_SHMEM & api.features;
	close(uffd);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api2 = { .api = UFFD_API, .features = want };
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api2)) return -errno;
	if (pipe(uffd_stop)) return -errno;
	if (pthread_create(&uffd_thread, NULL, uffd_handler, (void *)(long)uffd)) return -1;
	return 0;
}

UNUSED static long uffd_register(void *a, int n) {
	if (uffd_open()) return -1;
	struct uffdio_register r = { .range = { .start = (unsigned long)a, .len = n * PAGE }, .mode = UFFDIO_REGISTER_MODE_WP };
	return ioctl(uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

UNUSED static long uffd_unregister(void *a, int n) {
	if (uffd < 0) return -EINVAL;
	struct uffdio_range r = { .start = (unsigned long)a, .len = n * PAGE };
	return ioctl(uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

UNUSED static long uffd_wp(void *a, int n, int on) {
	if (uffd < 0) return -EINVAL;
	struct uffdio_writeprotect wp = { .range = { .start = (unsigned long)a, .len = n * PAGE },
					  .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

UNUSED static long uffd_close(void) {
	if (uffd < 0) return -EINVAL;
	/* Stop the handler first: a thread inside poll() holds a reference to the
	 * file, and userfaultfd_release() only runs when the last one goes. */
	if (write(uffd_stop[1], "x", 1) != 1) return -errno;
	pthread_join(uffd_thread, NULL);
	close(uffd_stop[0]);
	close(uffd_stop[1]);
	close(uffd);
	uffd = -1;
	return 0;
}

UNUSED static long clear_refs(void) {
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd < 0) return -errno;
	long r = write(fd, "4", 1) == 1 ? 0 : -errno;
	close(fd);
	return r;
}

UNUSED static long migrate(void *a) {
	void *pages[1] = { a };
	int status[1] = { -1 }, node[1];
	if (syscall(SYS_move_pages, 0, 1, pages, NULL, status, 0)) return -errno;
	if (status[0] < 0) return status[0];
	node[0] = !status[0];
	if (syscall(SYS_move_pages, 0, 1, pages, node, status, 4 /* MPOL_MF_MOVE_ALL */)) return -errno;
	return status[0] < 0 ? status[0] : 0;
}

UNUSED static long swap_cycle(void) {
	if (swapoff("/dev/zram0")) return -errno;
	return swapon("/dev/zram0", 0) ? -errno : 0;
}

static uint64_t pagemap(int fd, int i) {
	uint64_t e = 0;
	if (pread(fd, &e, 8, (off_t)((BASE / PAGE + i) * 8)) != 8) return 0;
	return e;
}

static sigjmp_buf probe_jmp;
static void probe_segv(int sig) {
	(void)sig;
	siglongjmp(probe_jmp, 1);
}

/* The end-of-program probe of this process: pagemap first, then one store each
 * (a store where this kernel has no writable VMA reports segv). */
static void probe(int slot, const char *writable) {
	struct sigaction sa = { .sa_handler = probe_segv };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t pm[NPAGES];
	for (int i = 0; i < NPAGES; i++) pm[i] = fd >= 0 ? pagemap(fd, i) : 0;
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	getrusage(RUSAGE_SELF, &r1);
	for (int i = 0; i < NPAGES; i++) {
		if (writable[i] == '.') continue;
		const char *obs = "noaccess";
		if (writable[i] == 'w') {
			uffd_hit[i] = 0;
			/* sigsetjmp() writes probe_jmp (in .bss, write-protected after
			 * clear_refs): do it before the fault count starts. */
			if (sigsetjmp(probe_jmp, 1)) {
				obs = "segv";
			} else {
				getrusage(RUSAGE_SELF, &r0);
				*(volatile char *)PG(i) = 2;
				getrusage(RUSAGE_SELF, &r1);
				/* A fault that reads the page (swap-in, page cache) is a major one. */
				long f = (r1.ru_minflt - r0.ru_minflt) + (r1.ru_majflt - r0.ru_majflt);
				obs = uffd_hit[i] ? "uffd" : f > 0 ? "fault" : "writable";
			}
		}
		printf("PTEDIFF-PAGE %s p%d %d obs=%s sd=%d uw=%d present=%d\n", NAME, slot, i, obs,
		       (int)(pm[i] >> 55 & 1), (int)(pm[i] >> 57 & 1), (int)(pm[i] >> 63 & 1));
	}
	fflush(stdout);
	if (fd >= 0) close(fd);
}
"#;

/// Generate the C reproducer. `name` labels the output lines.
pub fn emit_c(program: &Program, name: &str) -> Result<String, Unrealizable> {
    let finals = realizable(program)?;
    let mut c = String::new();
    let _ = writeln!(c, "/* Generated by `ptediff emit-c` from {name}. Build: gcc -static -O1 -pthread.");
    let _ = writeln!(c, " * Program:");
    for op in &program.ops {
        let _ = writeln!(c, " *   {op}");
    }
    let _ = writeln!(c, " */");
    c.push_str(PRELUDE);
    // Per-op functions.
    let _ =
        writeln!(c, "\nstatic long do_fork(int child);\nstatic void run_op(int i) {{\n\tlong r = 0;\n\tswitch (i) {{");
    for (i, op) in program.ops.iter().enumerate() {
        let _ = writeln!(c, "\tcase {i}: /* {op} */\n\t\t{}\n\t\tbreak;", c_op(op));
    }
    let _ = writeln!(c, "\t}}\n\t(void)r;\n\tack(r);\n}}");
    // Which pages each slot probes, over the union of the profiles' layouts:
    // 'w' some profile has a writable VMA there or none has a VMA (one store), 'r' a VMA without
    // write (pagemap only), '.' none.
    let layout = probe_layout(&finals);
    let _ = writeln!(c, "\nstatic const char *PROBE[3] = {{");
    for s in &layout {
        let s: String = s.iter().collect();
        let _ = writeln!(c, "\t\"{s}\",");
    }
    let _ = writeln!(c, "}};");
    c.push_str(
        r#"
static void serve(int slot);

UNUSED static long do_fork(int child) {
	pid_t pid = fork();
	if (pid < 0) return -errno;
	if (pid == 0) {
		/* No UFFD_FEATURE_EVENT_FORK: the child's VMAs lose their registration.
		 * The handler thread did not survive the fork; drop the inherited fds. */
		if (uffd >= 0) {
			close(uffd);
			close(uffd_stop[0]);
			close(uffd_stop[1]);
		}
		uffd = -1;
		serve(child);
	}
	return 0;
}

static void serve(int slot) {
	for (;;) {
		int i;
		if (read(cmdp[slot][0], &i, sizeof i) != sizeof i) _exit(0);
		if (i == -1) {
			probe(slot, PROBE[slot]);
			ack(0);
			continue;
		}
		if (i == -2) _exit(0);
		run_op(i);
	}
}

static void send(int slot, int i) {
	char c;
	if (write(cmdp[slot][1], &i, sizeof i) != sizeof i) fail("command pipe");
	if (read(ackp[0][0], &c, 1) != 1) fail("ack pipe");
}

int main(int argc, char **argv) {
	NAME = argc > 1 ? argv[1] : strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("PTEDIFF-BEGIN %s\n", NAME);
	memfd = memfd_create("ptediff", 0);
	if (memfd < 0 || ftruncate(memfd, NPAGES * PAGE)) fail("memfd");
	ramfd = open("/mnt/ramfs/ptediff", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ramfd >= 0 && ftruncate(ramfd, NPAGES * PAGE)) fail("ramfs file");
	for (int s = 0; s < 3; s++)
		if (pipe(cmdp[s])) fail("pipe");
	if (pipe(ackp[0])) fail("pipe");
	pid_t p0 = fork();
	if (p0 < 0) fail("fork");
	if (p0 == 0) serve(0);
	/* The controller: one op at a time, in the process that runs it. */
"#,
    );
    // Ops on a process that does not exist (or a fork into a taken slot) fail in
    // the model without doing anything; there is nobody to send them to.
    let mut sim = State::new();
    let cfg = native(PROFILES[0]);
    for (i, op) in program.ops.iter().enumerate() {
        let runs = match *op {
            Op::Fork { parent, child, .. } => {
                sim.procs[parent as usize].alive && !sim.procs[child as usize].alive && parent != child
            }
            _ => slot_of(op).is_none_or(|sl| sim.procs[sl as usize].alive),
        };
        match slot_of(op) {
            _ if !runs => {
                let _ = writeln!(c, "\t/* {op}: no such process, nothing to do */");
            }
            Some(sl) => {
                let _ = writeln!(c, "\tsend({sl}, {i});");
            }
            None => {
                let _ = writeln!(c, "\t{{ long r; {} (void)r; }}", c_op(op));
            }
        }
        model::step(&mut sim, &cfg, op);
    }
    for p in 0..MAX_PROCS {
        if sim.procs[p].alive {
            let _ = writeln!(c, "\tsend({p}, -1);");
        }
    }
    // Predictions, per profile, for every probed page.
    for (k, s) in PROFILES.iter().zip(finals.iter()) {
        for (p, row) in layout.iter().enumerate() {
            for (a, &probe) in row.iter().enumerate() {
                if let Some(o) = predict_probe(s, p, a, probe) {
                    let _ =
                        writeln!(c, "\tprintf(\"PTEDIFF-PREDICT %s {} p{p} {a} {}\\n\", NAME);", k.name(), o.render());
                }
            }
        }
    }
    c.push_str(
        r#"	for (int s = 0; s < 3; s++) {
		int q = -2;
		if (write(cmdp[s][1], &q, sizeof q) < 0) { }
	}
	printf("PTEDIFF-END %s\n", NAME);
	return 0;
}
"#,
    );
    Ok(c)
}
