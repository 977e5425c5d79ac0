//! Heap allocations counted per thread, so `harness bench` can report how
//! many the host makes per request (the issue's "allocations per request
//! counted and cut"). The harness binary installs [`Counting`] around its
//! allocator as the global allocator; a library user who does not gets
//! `None` back.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    // `const` with a plain Cell: reading or bumping it never allocates,
    // which an allocator's bookkeeping must not.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// An allocator `A`, counting allocations (and reallocations) on the
/// thread that makes them.
pub struct Counting<A>(pub A);

fn bump() {
    // try_with: a thread being torn down has no counter left; not counting
    // there is fine.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `A` with the caller's arguments; the
// counter is a thread-local Cell that never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; the caller upholds alloc's contract.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { self.0.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far on this thread, or `None` when [`Counting`] is
/// not the global allocator (nothing was ever counted here).
pub fn on_this_thread() -> Option<u64> {
    let n = ALLOCATIONS.with(Cell::get);
    (n > 0).then_some(n)
}
