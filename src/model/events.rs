//! What a kernel step did that changes what user space is owed. Kernel code only
//! emits these ([`State::emit`]); the contract layer (`crate::judge::ghost`)
//! applies them after the step, in order. The kernel never reads anything of
//! the contract layer.

use tinyvec::ArrayVec;

use super::types::State;

/// One event of a kernel step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// `mmap_region()` created a mapping over `[start, end)`.
    Mapped { p: u8, start: u8, end: u8 },
    /// The process's VMAs or their uffd registration changed (munmap, mremap,
    /// unregister, close, exit, a new mapping, fork's child).
    Layout { p: u8 },
    /// `shmem_zero_setup()` made (or a reap freed) shared-anonymous object `file`.
    NewObject { file: u8 },
    /// `move_vma()` moved `[old, old + len)` to `new`.
    Moved { p: u8, old: u8, new: u8, len: u8 },
    /// `dup_mmap()` filled `child` from `parent`.
    Forked { parent: u8, child: u8, event_fork: bool },
    /// MADV_DONTNEED zapped `[start, end)` of a VMA (shared or not, anonymous or not).
    Zapped { p: u8, start: u8, end: u8, shared: bool, anon: bool },
    /// MADV_GUARD_INSTALL made every page of `[start, end)` a guard page.
    GuardInstalled { p: u8, start: u8, end: u8 },
    /// MADV_GUARD_INSTALL over `[start, end)` gave up and restarts for ever.
    GuardRestarts { p: u8, start: u8, end: u8 },
    /// MADV_GUARD_REMOVE cleared the guard pages of `[start, end)`.
    GuardRemoved { p: u8, start: u8, end: u8 },
    /// MADV_FREE marked `[start, end)` lazy-free.
    LazyFreed { p: u8, start: u8, end: u8 },
    /// A lazy-free page (or a freed swap entry) was discarded: it reads zero now.
    Discarded { p: u8, addr: u8 },
    /// `clear_refs_write()` cleared soft-dirty of the process.
    ClearedRefs { p: u8 },
    /// UFFDIO_WRITEPROTECT applied (`on`) or removed protection over `[start, end)`.
    WriteProtected { p: u8, start: u8, end: u8, on: bool },
    /// PAGEMAP_SCAN looked at the pages `looked` (those in async uffd-wp VMAs),
    /// returned those of `reported` as WRITTEN, and write-protected `protected`
    /// (PM_SCAN_WP_MATCHING; even when it failed and returned nothing).
    Scanned { p: u8, looked: u16, reported: u16, protected: u16 },
    /// `->page_mkwrite` ran for a file page.
    PageMkwrite { file: u8, index: u8 },
    /// A file page of a `page_mkwrite` file system became clean (read in, written back).
    FileClean { file: u8, index: u8 },
}

impl Default for Event {
    fn default() -> Event {
        Event::Layout { p: 0 }
    }
}

/// Most events one step can emit (a step emits a few; more is a model bug).
pub const MAX_EVENTS: usize = 32;

/// The events of the current step. Transient: not part of the state's identity
/// (equal and hashed alike whatever they hold), cleared when a step begins.
#[derive(Clone, Copy, Debug, Default)]
pub struct Events(ArrayVec<[Event; MAX_EVENTS]>);

impl Events {
    pub fn clear(&mut self) {
        self.0.clear();
    }
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.0.iter()
    }
}

impl PartialEq for Events {
    fn eq(&self, _: &Events) -> bool {
        true
    }
}

impl Eq for Events {}

impl std::hash::Hash for Events {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl State {
    /// Emit an event of this step for the contract layer.
    #[inline]
    pub fn emit(&mut self, e: Event) {
        // The same event twice in a row says nothing more (a Layout of nested calls).
        if self.events.0.last() == Some(&e) {
            return;
        }
        assert!(self.events.0.try_push(e).is_none(), "a model step emitted more than MAX_EVENTS events");
    }
}
