//! Log output: human-readable text or one JSON object per line, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log line format. The level comes from RUST_LOG (default: info, without kube-client's
    /// line per failed request).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "KEYWARDEN_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// Installs the global tracing subscriber.
/// What is logged when `RUST_LOG` is unset: info and above, without kube-client's line per
/// failed request.
// why: kube-client logs every failed request at ERROR; with the API server away that is a line
// per retry and per freshness read, while keywarden logs each failure once where it is handled
// (with growing pauses between attempts).
pub const DEFAULT_FILTER: &str = "info,kube_client::client::builder=off";

pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
