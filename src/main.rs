//! The `modstate` command: parse arguments, run, map the outcome to an exit code.
//!
//! `main` is the C entry point itself (`no_main`): Rust's runtime start-up would otherwise ask
//! glibc for the main thread's stack bounds, which parses `/proc/self/maps`, a measurable part
//! of a one-shot `artifact get` (issue 28). What it did that matters is done here: SIGPIPE
//! ignored, so a closed pipe is an EPIPE error the command reports, not a silent death. The
//! arguments are still read by `std::env::args` (glibc hands them to std at load time), and
//! `std::process::exit` still flushes stdout. Lost: the "has overflowed its stack" message (a
//! stack overflow is still stopped by the guard page). SQLite's memory statistics are turned off
//! here too, while no thread can be using SQLite (`store::skip_memory_statistics`).
//! (The unit-test build of this crate keeps the test harness's own `main`.)
#![cfg_attr(not(test), no_main)]

mod cli;
mod mcp;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN, and configuring SQLite, before any
    // thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        modstate::store::skip_memory_statistics();
    }
    std::process::exit(cli::main());
}

#[cfg(test)]
fn main() {
    std::process::exit(cli::main());
}
