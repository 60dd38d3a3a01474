//! Giving memory back to the system after a large interchange.
//!
//! mimalloc (the global allocator, `src/lib.rs`) keeps the pages a program frees for a while
//! before it returns them to the system, which is what makes it fast for the many small
//! allocations of reading messages. After a large interchange that means the memory of one
//! step is still resident when the next begins: the 200 MB MSCONS of `cargo bench --bench
//! memory` left the daemon at 312 MiB resident once journaled, before processing read the
//! bytes back and parsed them. [`after_large`] has mimalloc return what is free at once, after
//! an interchange of [`LARGE_BYTES`] or more (small ones never pay for it).
//!
//! Why this module allows `unsafe`: `mi_collect` is a C function (`libmimalloc-sys`, the
//! crate `mimalloc` is built on), so calling it is `unsafe` in Rust. It takes no pointer,
//! returns nothing, and may be called from any thread at any time (mimalloc's documentation of
//! `mi_collect`: "Eagerly free memory"); `force` also returns the pages of abandoned threads.
#![allow(unsafe_code)]

/// From this size on an interchange counts as large (a few hundred typical ones together).
pub const LARGE_BYTES: usize = 8 << 20;

/// Called when the work on an interchange of `bytes` is done and its buffers dropped: if it was
/// large, returns the memory the allocator holds free to the system now.
pub fn after_large(bytes: usize) {
    if bytes >= LARGE_BYTES {
        give_back();
    }
}

/// Has the allocator return the memory it holds free (nothing with the system's malloc).
fn give_back() {
    #[cfg(not(feature = "system-allocator"))]
    // SAFETY: no arguments but a flag, no return value, callable from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
