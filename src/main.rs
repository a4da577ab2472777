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
    match keywarden::cli::run(keywarden::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
