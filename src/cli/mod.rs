//! Command-line entry points: `keywarden` subcommands and the `kubectl-keywarden` plugin.

pub mod access_control;
pub mod crdgen;
pub mod dev;
pub mod logging;
pub mod manifests;
pub mod plugin;
pub mod serve;
pub mod shutdown;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::controller::ControllerArgs;
use crate::verifier::VerifierArgs;
use crdgen::CrdgenArgs;
use serve::Parts;

const AFTER_HELP: &str = "\
Try it without a cluster:
  keywarden dev                 # in-memory cluster, controller, verifier and examples

Install into a cluster: apply crds/ (or the Helm chart), then run `keywarden controller` and
`keywarden verifier`. Both read KUBECONFIG, or the in-cluster service account.";

/// Issues and governs API access keys declared as Kubernetes custom resources.
#[derive(Parser, Debug)]
#[command(name = "keywarden", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The `keywarden` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Reconcile AccessKeys and AccessKeyPolicies: issue secrets, enforce limits, fire timers.
    Controller(ControllerArgs),
    /// Serve the HTTP endpoint that proxies and apps call to check a presented key.
    Verifier(VerifierArgs),
    /// Run the controller and the verifier in one process.
    Run(RunArgs),
    /// Write the CRD manifests (crds/*.yaml) generated from the Rust types.
    Crdgen(CrdgenArgs),
    /// Try keywarden without a cluster: an in-memory Kubernetes API, the CRDs, controller,
    /// verifier and the examples, all in this process.
    Dev(dev::DevArgs),
}

/// Arguments of `keywarden run`: those of both parts.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub verifier: VerifierArgs,
}

/// Runs a parsed `keywarden` command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Crdgen(args) = &cli.command {
        let up_to_date = crdgen::run(args)?;
        return Ok(if up_to_date {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    logging::init(&cli.log)?;
    let parts = match cli.command {
        Command::Controller(args) => Parts {
            controller: Some(args),
            verifier: None,
        },
        Command::Verifier(args) => Parts {
            controller: None,
            verifier: Some(args),
        },
        Command::Run(args) => Parts {
            controller: Some(args.controller),
            verifier: Some(args.verifier),
        },
        Command::Crdgen(_) => return Ok(ExitCode::SUCCESS),
        Command::Dev(args) => {
            dev::run(args, shutdown::on_signal()).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let shutdown = shutdown::on_signal();
    let client = serve::default_client().await?;
    serve::run_parts(serve::PartClients::shared(client), parts, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn crdgen_parses_out_dir_and_check() {
        let cli =
            Cli::try_parse_from(["keywarden", "crdgen", "--check", "--out-dir", "x"]).unwrap();
        match cli.command {
            Command::Crdgen(args) => {
                assert!(args.check);
                assert_eq!(args.out_dir, std::path::PathBuf::from("x"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn log_format_accepts_json_anywhere() {
        let cli = Cli::try_parse_from(["keywarden", "run", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log.log_format, logging::LogFormat::Json);
        assert!(Cli::try_parse_from(["keywarden", "run", "--log-format", "xml"]).is_err());
    }
}
