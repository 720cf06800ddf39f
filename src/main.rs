//! rshell's executable: scrub the environment first, then run the pipeline.
#![forbid(unsafe_code)]

fn main() {
    // Before anything else (and before any NSS lookup): keep only sshd's variables.
    let ctx = rshell::system::scrub_environment();
    std::panic::set_hook(Box::new(|_| {
        eprintln!("rshell: denied: internal error (this is a bug; nothing was run)");
        std::process::exit(71);
    }));
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(rshell::run(args, ctx));
}
