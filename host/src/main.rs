//! The `wasmonkey` command.

fn main() -> std::process::ExitCode {
    wasmonkey::cli::main()
}

/// Transparent huge pages off for the whole process, before its first
/// allocation: mimalloc keeps the heap in one large arena that Linux backs
/// with 2 MiB pages as soon as any byte of one is touched, which made a
/// run's resident memory 11 MB larger for no measured speed
/// (docs/benchmarks.md). Run from `.init_array` because the Rust runtime
/// allocates before `main`; a kernel without the switch costs that memory
/// and nothing else.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "a constructor: the only code that runs before the runtime's first allocation"
)]
#[used]
#[link_section = ".init_array"]
static WITHOUT_HUGE_PAGES: extern "C" fn() = {
    extern "C" fn without_huge_pages() {
        // A bare prctl(2): no allocation, no std.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
    without_huge_pages
};
