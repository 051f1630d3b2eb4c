//! The memory allocator's settings for the `pagefork` process, set once, first thing in
//! `main`, before any other thread runs.
//!
//! glibc takes a large block from its heaps instead of mapping it once its "dynamic mmap
//! threshold" has risen past the block's size (the threshold follows the largest mapped
//! block freed, up to 32 MiB), and then zeroes it by hand for a `calloc`. fuser allocates
//! a zeroed 16 MiB request buffer for each thread of a mount (five per mount): from the
//! heap, that is 16 MiB written before the first request is read. On the benchmark
//! machine, whose host backs guest memory on first touch, an endpoint's mount took 12-36
//! ms that way, and 1-4 ms with a fixed threshold. A fixed threshold of 4 MiB keeps the
//! smaller blocks on the heaps, reused from one request to the next (a mount's 1 MiB
//! requests and replies, the layers' 1 MiB encoding chunks), and maps the larger ones,
//! whose pages the kernel zeroes when first touched: a request buffer is touched only as
//! far as requests fill it.

/// Blocks of this size and larger are mapped, never taken from the heaps.
const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;

/// Sets the allocator's parameters (a no-op but on glibc). Returns whether they were
/// taken.
pub(crate) fn configure() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets a parameter of glibc's allocator (under its own
        // lock), and no pointer is passed; called before `main` starts any thread.
        #[allow(unsafe_code)]
        let taken = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
        taken == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_fixed_mmap_threshold() {
        assert!(super::configure(), "mallopt refused M_MMAP_THRESHOLD");
    }
}
