//! [`HugePages`]: the system allocator, with every block of at least two huge pages marked for
//! transparent huge pages (`madvise(MADV_HUGEPAGE)` on Linux) before anything is written to it.
//!
//! The kernels stream and gather through matrices of tens to hundreds of megabytes: the TopK
//! step reads 131 072 decoder rows and 262 144 parameter and moment rows of 3 KB a step, each at
//! a random place in a 50 MB matrix, so that with 4 KiB pages nearly every row costs a TLB miss
//! and a page walk. Many systems set THP to `madvise` (huge pages only where a program asks):
//! the same step with all of its memory in 2 MiB pages measured about 3 % faster on an Intel
//! Xeon and an AMD EPYC (PERF.md). The dense objective's operands are read in order and did not
//! measurably change.
//!
//! It is advice: where the kernel has no THP, or the system setting is `never`, nothing
//! changes; `SAE_HUGE_PAGES=off` (or `0`) in the environment turns it off for one process
//! (huge pages cost a compaction stall where memory is fragmented). Only the 2 MiB-aligned
//! part inside each block is marked, so no other allocation shares a marked page, and a block
//! touched in part costs at most one huge page more than it touches at each end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// The global allocator of the `sae` command, its benchmarks and its Python module:
///
/// ```no_run
/// #[global_allocator]
/// static ALLOCATOR: sae::HugePages = sae::HugePages;
/// ```
///
/// A program that embeds the library chooses its own allocator; this one is the system's with
/// the advice added.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

/// The transparent huge page of x86_64 and most 64-bit Linux systems (a PMD's span).
pub const HUGE_PAGE: usize = 2 << 20;

/// Marks the whole huge pages inside `size` bytes at `block` (if any) for huge pages.
fn advise(block: *mut u8, size: usize) -> *mut u8 {
    if size >= 2 * HUGE_PAGE && !block.is_null() && enabled() {
        let start = (block as usize).next_multiple_of(HUGE_PAGE);
        let end = (block as usize + size) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            mark(start, end - start);
        }
    }
    block
}

/// Whether `SAE_HUGE_PAGES` leaves the advice on, read at the first large allocation.
fn enabled() -> bool {
    const UNREAD: u8 = 0;
    const ON: u8 = 1;
    const OFF: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNREAD);
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = !matches!(environment_says(), Some(b"0" | b"off" | b"false" | b"no"));
            STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// The value of `SAE_HUGE_PAGES`, read without allocating (this runs inside the allocator).
#[cfg(unix)]
fn environment_says() -> Option<&'static [u8]> {
    // SAFETY: the name is a NUL-terminated string; `getenv` returns null or a NUL-terminated
    // string owned by the environment, which this process's safe code never rewrites
    // (`std::env::set_var` is itself unsafe for that reason).
    unsafe {
        let value = libc::getenv(c"SAE_HUGE_PAGES".as_ptr());
        (!value.is_null()).then(|| std::ffi::CStr::from_ptr(value).to_bytes())
    }
}

#[cfg(not(unix))]
fn environment_says() -> Option<&'static [u8]> {
    None
}

#[cfg(target_os = "linux")]
fn mark(start: usize, len: usize) {
    // SAFETY: `MADV_HUGEPAGE` changes how the kernel backs the range, never its contents or
    // mapping: no memory is read, written or freed, and the range lies inside one block that the
    // system allocator just returned (page-aligned, as madvise requires). A failure (no THP in
    // this kernel) leaves the range as it was, which is the advice's fallback.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn mark(_start: usize, _len: usize) {}

// SAFETY: every block comes from `System` with the caller's layout and goes back to it with
// the same layout; the advice does not touch the memory (see `mark`).
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        advise(System.alloc(layout), layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // A large zeroed block is fresh pages from the kernel that nothing has touched yet: the
        // advice comes before its first write, so its pages fault in huge.
        advise(System.alloc_zeroed(layout), layout.size())
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        System.dealloc(block, layout)
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        advise(System.realloc(block, layout, new_size), new_size)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping of `/proc/self/smaps` that holds `address`.
    fn vm_flags(address: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((from, to)) = range.filter(|(from, to)| !from.contains(':') && !to.contains(':')) {
                if let (Ok(from), Ok(to)) = (usize::from_str_radix(from, 16), usize::from_str_radix(to, 16)) {
                    inside = (from..to).contains(&address);
                    continue;
                }
            }
            if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| inside) {
                return flags.trim().to_string();
            }
        }
        panic!("no mapping holds {address:#x}")
    }

    /// Whether this kernel has THP and says what each mapping was advised (`VmFlags`, which
    /// some sandboxes leave out of `smaps`).
    fn kernel_has_thp() -> bool {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() && smaps.contains("VmFlags:")
    }

    #[test]
    fn a_large_block_is_marked_for_huge_pages_and_a_small_one_is_not() {
        if !kernel_has_thp() {
            eprintln!("skipped: no transparent huge pages, or no VmFlags in /proc/self/smaps");
            return;
        }
        for zeroed in [false, true] {
            let layout = Layout::from_size_align(8 * HUGE_PAGE + 123, 64).unwrap();
            // SAFETY: a non-zero size; freed below with the same layout.
            let block = unsafe {
                if zeroed {
                    HugePages.alloc_zeroed(layout)
                } else {
                    HugePages.alloc(layout)
                }
            };
            assert!(!block.is_null());
            let inside = (block as usize).next_multiple_of(HUGE_PAGE);
            let flags = vm_flags(inside);
            // SAFETY: allocated above with `layout`.
            unsafe { HugePages.dealloc(block, layout) };
            assert!(flags.split(' ').any(|f| f == "hg"), "zeroed {zeroed}: VmFlags {flags}");
        }
        // One huge page's worth is left alone: at most half of it could be marked.
        let mut small = vec![1u8; HUGE_PAGE];
        let flags = vm_flags(small.as_mut_ptr() as usize + HUGE_PAGE / 2);
        assert!(!flags.split(' ').any(|f| f == "hg"), "VmFlags {flags}");
    }

    /// Run by the test below in a process of its own with `SAE_HUGE_PAGES=off` (the setting is
    /// read once per process); does nothing in any other environment.
    #[test]
    #[ignore]
    fn child_with_huge_pages_off() {
        if std::env::var("SAE_HUGE_PAGES").as_deref() != Ok("off") {
            return;
        }
        let layout = Layout::from_size_align(8 * HUGE_PAGE, 64).unwrap();
        // SAFETY: a non-zero size; freed below with the same layout.
        let block = unsafe { HugePages.alloc_zeroed(layout) };
        let flags = vm_flags((block as usize).next_multiple_of(HUGE_PAGE));
        // SAFETY: allocated above with `layout`.
        unsafe { HugePages.dealloc(block, layout) };
        assert!(!flags.split(' ').any(|f| f == "hg"), "VmFlags {flags}");
    }

    #[test]
    fn sae_huge_pages_off_turns_the_advice_off() {
        if !kernel_has_thp() {
            eprintln!("skipped: no transparent huge pages, or no VmFlags in /proc/self/smaps");
            return;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kernels::huge_pages::tests::child_with_huge_pages_off", "--ignored", "--quiet"])
            .env("SAE_HUGE_PAGES", "off")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the child test failed: the advice was given with SAE_HUGE_PAGES=off");
    }

    #[test]
    fn blocks_keep_their_contents_through_growth_and_shrinking() {
        let layout = Layout::array::<u64>(1 << 16).unwrap();
        // SAFETY: each pointer is used within the size it was (re)allocated with, then freed
        // with the layout of that size.
        unsafe {
            let block = HugePages.alloc(layout) as *mut u64;
            for i in 0..1 << 16 {
                block.add(i).write(i as u64);
            }
            let grown = HugePages.realloc(block as *mut u8, layout, 8 * HUGE_PAGE) as *mut u64;
            let values = std::slice::from_raw_parts(grown, 1 << 16);
            assert!(values.iter().enumerate().all(|(i, &v)| v == i as u64));
            let big = Layout::from_size_align(8 * HUGE_PAGE, layout.align()).unwrap();
            let shrunk = HugePages.realloc(grown as *mut u8, big, 64) as *mut u64;
            assert_eq!(std::slice::from_raw_parts(shrunk, 8), &[0, 1, 2, 3, 4, 5, 6, 7]);
            HugePages.dealloc(shrunk as *mut u8, Layout::from_size_align(64, layout.align()).unwrap());
            let zeroed = HugePages.alloc_zeroed(big);
            assert!(std::slice::from_raw_parts(zeroed, 8 * HUGE_PAGE).iter().all(|&b| b == 0));
            HugePages.dealloc(zeroed, big);
        }
    }
}
