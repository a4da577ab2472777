//! `keywarden`: the operator binary (controller, verifier, crdgen, dev).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

// why: with glibc malloc the controller's RSS was about twice its live heap (memory freed by one
// thread's arena stays resident); mimalloc returns it. Controller with 10,000 keys: see README.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // why: with transparent huge pages set to "always" (a common kernel default), every 2 MiB
    // region the allocator touches becomes resident in full: 10 MiB more RSS with 10,000 keys
    // in the controller benchmark, for no measurable speed.
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("warning: transparent huge pages stay enabled: {err}");
    }
    match keywarden::cli::run(keywarden::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
