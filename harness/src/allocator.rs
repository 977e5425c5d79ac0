//! The binary's heap: mimalloc, called the way its C users call it.
//!
//! The `mimalloc` crate routes every Rust allocation through
//! `mi_malloc_aligned`, a third slower than `mi_malloc` under callgrind;
//! nearly every Rust allocation asks for 8-byte alignment or less, which
//! every mimalloc block already has, so only larger alignments take the
//! aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block is aligned to the machine word at least.
const WORD_ALIGN: usize = std::mem::size_of::<usize>();

pub struct Mimalloc;

// SAFETY: each method calls the mimalloc entry point with the same
// contract (size, alignment, a pointer mimalloc returned); blocks from the
// unaligned entry points are only used when the layout's alignment is at
// most a word, which every mimalloc block satisfies.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= WORD_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= WORD_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl's comment; the alignment is the block's own.
        unsafe {
            if layout.align() <= WORD_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Returns the pages mimalloc holds freed, this thread's and those of
/// threads that ended, to the system (`mi_collect(true)`), so that a
/// resident-memory reading counts what is in use.
pub fn release_freed() {
    // SAFETY: mi_collect takes no pointers; forcing it only costs time.
    unsafe { mi::mi_collect(true) }
}
