//! Giving freed memory back to the kernel.
//!
//! A node's exec probes come and go every few seconds; what each one allocated is freed when it
//! is deleted, but glibc keeps freed heap pages, so the shim's RSS would stay at the high-water
//! mark of the busiest moment (several execs overlapping) for the rest of its life. Trimming
//! after a process is deleted keeps RSS at what is live.

/// Returns free heap pages to the kernel (glibc's `malloc_trim`); nothing elsewhere.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
