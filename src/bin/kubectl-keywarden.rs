//! `kubectl-keywarden`: the kubectl plugin (`kubectl keywarden ...`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use keywarden::cli::plugin::{run, PluginCli};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(PluginCli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
