//! Keeping the process's memory bounded, not only its heap.
//!
//! glibc's allocator serves large blocks (page buffers, batches) with
//! `mmap` and returns them to the system on free, but only up to a
//! threshold that it raises every time such a block is freed, to as much
//! as 32 MiB. After the first few backfill pages every buffer then comes
//! from the arenas, which give memory back only from their top: measured
//! on a 1.2 M record backfill, the resident size reached 37-50 MiB for a
//! heap that never exceeded 22 MiB. Fixing the threshold keeps blocks of
//! [`MMAP_THRESHOLD`] and more out of the arenas (peak 24-27 MiB in the
//! same run). Buffers are recycled, so the extra `mmap` calls are few.

/// Blocks of at least this many bytes are mapped on their own.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes the allocator's `mmap` threshold (glibc only; elsewhere a no-op).
/// Call it first thing in `main`, before any thread starts. Returns false
/// when the allocator refused the setting (the agent works either way).
pub fn bound_heap_growth() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes a tuning parameter of glibc's
        // allocator; it takes no pointers and glibc serialises it with the
        // allocator's own lock, so it is sound at any time. It is needed
        // because glibc has no other interface for this setting besides
        // the MALLOC_MMAP_THRESHOLD_ environment variable, which a program
        // cannot set for itself once it runs.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}

/// Hands free memory inside the allocator's arenas back to the system
/// (glibc only; elsewhere a no-op). Arenas otherwise keep the pages freed
/// by a hundred tenants' backfills for good. Cheap when little is free;
/// the service calls it every few seconds.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes no pointers and only returns free
        // pages of glibc's own arenas to the kernel, under the arenas'
        // locks; it cannot invalidate any allocation, so it is sound to
        // call from any thread at any time. No safe interface exists.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_takes_the_threshold_and_still_works() {
        assert!(bound_heap_growth());
        // Large and small blocks still allocate, fill and free.
        let big = vec![7u8; MMAP_THRESHOLD * 4];
        let small = Box::new([9u8; 64]);
        assert_eq!(
            big.iter().map(|&b| u64::from(b)).sum::<u64>(),
            7 * big.len() as u64
        );
        assert_eq!(small[63], 9);
        drop(big);
        release_free_memory();
        assert_eq!(small[0], 9, "live memory is untouched");
    }
}
