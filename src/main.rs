//! `keywarden`: the operator binary (controller, verifier, crdgen, dev).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// How long background work (blocking hashing, open connections) may delay the exit once the
/// command has finished.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

// why: with glibc malloc the controller's RSS was about twice its live heap (memory freed by one
// thread's arena stays resident); mimalloc returns it. Controller with 10,000 keys: see README.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // why: with transparent huge pages set to "always" (a common kernel default), every 2 MiB
    // region the allocator touches becomes resident in full: 10 MiB more RSS with 10,000 keys
    // in the controller benchmark, for no measurable speed.
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("warning: transparent huge pages stay enabled: {err}");
    }
    let cli = keywarden::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(keywarden::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // why: dropping a runtime waits for every blocking task without bound, and its signal
    // handlers stay installed, so a stuck task would leave a process that ignores SIGINT/SIGTERM.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    code
}
