//! rshell's executable: scrub the environment first, then run the pipeline.
//!
//! It starts from the C `main` that the C library calls, not from Rust's `fn main`: the Rust
//! runtime's start-up (the main thread's stack bounds, read by glibc from /proc/self/maps;
//! a signal stack) costs about 0.1 ms of every connection and buys rshell nothing;
//! `system::start_process` does the two parts of it that matter here (standard descriptors,
//! SIGPIPE), and the arguments are read from `argc`/`argv` (`std::env::args_os` is filled in
//! without the runtime on glibc only).
#![no_main]
#![deny(unsafe_code)]

use std::ffi::{c_char, c_int};

/// The program's entry point, called by the C library's start-up code.
// The one place outside src/system that uses `unsafe`: exporting the unmangled symbol `main`
// is sound because this is the only definition of it in the executable (`no_main` above),
// and `argc`/`argv` are handed on exactly as the C library passed them.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    rshell::system::start_process();
    // Before anything else (and before any NSS lookup): keep only sshd's variables.
    let ctx = rshell::system::scrub_environment();
    std::panic::set_hook(Box::new(|_| {
        eprintln!("rshell: denied: internal error (this is a bug; nothing was run)");
        std::process::exit(71);
    }));
    // SAFETY: `argc` and `argv` are main's own, from the C library's start-up code.
    let args = unsafe { rshell::system::c_args(argc, argv) };
    // process::exit flushes Rust's standard output, as returning from `fn main` would.
    std::process::exit(rshell::run(args, ctx));
}
