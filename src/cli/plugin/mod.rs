//! `kubectl keywarden`: rotate, activate, deactivate, reactivate, status and credentials.

pub mod create;
pub mod credentials;
pub mod owned;
pub mod status;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::api::{
    AccessKey, AccessKeyPolicy, REQUESTED_BY_ANNOTATION, REQUESTED_GENERATION_ANNOTATION,
};
use credentials::{Credentials, CredentialsFormat};
use owned::{next_generation, Field};

const AFTER_HELP: &str = "\
Examples:
  kubectl keywarden create laptop --scope logs:view --format csv > laptop.csv
  kubectl keywarden status --mine
  kubectl keywarden status -A
  kubectl keywarden rotate ci-deployer -n team-a
  kubectl keywarden credentials ci-deployer -n team-a --format csv > ci-deployer.csv";

/// Manage keywarden access keys: rotate, activate, deactivate, read credentials.
#[derive(clap::Parser, Debug)]
#[command(name = "kubectl keywarden", version, after_help = AFTER_HELP)]
pub struct PluginCli {
    /// Namespace of the AccessKey (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The plugin's subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Create a key owned by you (or by a ServiceAccount of the namespace), wait until it is
    /// issued and print its credentials once.
    Create(create::CreateArgs),
    /// Issue a new access ID and secret now (bumps spec.rotateGeneration); the old ones keep
    /// working for the policy's rotation grace period.
    Rotate { name: String },
    /// Deactivate a key (spec.active=false): the verifier refuses it within a second.
    Deactivate { name: String },
    /// Activate a manually deactivated key (spec.active=true).
    Activate { name: String },
    /// Reactivate a key deactivated for non-use (bumps spec.reactivateGeneration).
    Reactivate { name: String },
    /// Show keys (owner, access ID, phase, last use, expiry) and each owner's key limit usage.
    Status {
        /// One key; default: every key in the namespace.
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long, conflicts_with = "name")]
        all_namespaces: bool,
        /// Only your own keys, in every namespace you may list (else in the namespace).
        #[arg(long, conflicts_with_all = ["name", "all_namespaces"])]
        mine: bool,
    },
    /// Print a key's credentials from its Secret.
    Credentials {
        name: String,
        #[arg(long, value_enum, default_value = "env")]
        format: CredentialsFormat,
    },
}

/// Runs the plugin, writing its results to stdout.
pub async fn run(cli: PluginCli) -> anyhow::Result<()> {
    let (client, default_namespace) = connect(&cli).await?;
    let namespace = cli.namespace.clone().unwrap_or(default_namespace);
    let keys: Api<AccessKey> = Api::namespaced(client.clone(), &namespace);
    let target = |name: &str| {
        let (keys, namespace, name) = (keys.clone(), namespace.clone(), name.to_owned());
        let client = client.clone();
        async move {
            let caller = create::caller_username(&client).await?;
            anyhow::Ok(owned::Target {
                keys,
                namespace,
                name,
                caller,
            })
        }
    };
    let output = match cli.command {
        PluginCommand::Create(args) => create::run(&client, &namespace, &args).await?,
        PluginCommand::Status { mine: true, .. } => {
            let (shown, scope_note) = my_keys(&client, &keys, &namespace).await?;
            eprintln!("{scope_note}");
            if shown.is_empty() {
                return Ok(());
            }
            status_report(&client, &shown, true).await
        }
        PluginCommand::Rotate { name } => {
            let generation = owned::write(&target(&name).await?, Field::RotateGeneration, |k| {
                next_generation(k, Field::RotateGeneration).into()
            })
            .await?;
            format!("accesskey.keywarden.io/{name} rotation requested (rotateGeneration={generation})\n")
        }
        PluginCommand::Reactivate { name } => {
            let generation =
                owned::write(&target(&name).await?, Field::ReactivateGeneration, |k| {
                    next_generation(k, Field::ReactivateGeneration).into()
                })
                .await?;
            format!("accesskey.keywarden.io/{name} reactivation requested (reactivateGeneration={generation})\n")
        }
        PluginCommand::Activate { name } => {
            owned::write(&target(&name).await?, Field::Active, |_| true.into()).await?;
            format!("accesskey.keywarden.io/{name} activated\n")
        }
        PluginCommand::Deactivate { name } => {
            owned::write(&target(&name).await?, Field::Active, |_| false.into()).await?;
            format!("accesskey.keywarden.io/{name} deactivated\n")
        }
        PluginCommand::Status {
            name,
            all_namespaces,
            mine: false,
        } => {
            let scope = if all_namespaces {
                Api::all(client.clone())
            } else {
                keys.clone()
            };
            let shown = match &name {
                Some(name) => vec![get(&keys, &namespace, name).await?],
                None => scope.list(&ListParams::default()).await?.items,
            };
            if shown.is_empty() {
                return no_keys(&namespace, all_namespaces);
            }
            status_report(&client, &shown, all_namespaces).await
        }
        PluginCommand::Credentials { name, format } => {
            let key = get(&keys, &namespace, &name).await?;
            let secret_name = key
                .status
                .as_ref()
                .and_then(|s| s.secret_name.clone())
                .unwrap_or_else(|| key.spec.secret_name(&name));
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let secret = secrets.get_opt(&secret_name).await?.with_context(|| {
                format!("secret {secret_name:?} of accesskey {name:?} not found in namespace {namespace:?} (not issued yet?)")
            })?;
            let credentials = Credentials::from_secret_data(&secret.data.unwrap_or_default())
                .with_context(|| format!("secret {secret_name:?} of accesskey {name:?}"))?;
            credentials.render(format).to_string()
        }
    };
    std::io::stdout()
        .write_all(output.as_bytes())
        .context("writing to stdout")
}

/// The caller's own keys: across every namespace when they may list keys cluster-wide, else
/// in `namespace`; with a line saying which.
async fn my_keys(
    client: &Client,
    keys: &Api<AccessKey>,
    namespace: &str,
) -> anyhow::Result<(Vec<AccessKey>, String)> {
    let me = create::caller_username(client).await?;
    let (listed, scope) = match Api::<AccessKey>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => (list.items, "in every namespace".to_string()),
        Err(kube::Error::Api(status)) if status.code == 403 => (
            keys.list(&ListParams::default()).await?.items,
            format!("in namespace {namespace} (you may not list keys cluster-wide)"),
        ),
        Err(e) => return Err(e.into()),
    };
    let mine: Vec<AccessKey> = listed
        .into_iter()
        .filter(|key| owner_username(key) == me)
        .collect();
    let note = format!("{} key(s) owned by {me} {scope}.", mine.len());
    Ok((mine, note))
}

/// The Kubernetes username a key's owner speaks as.
fn owner_username(key: &AccessKey) -> String {
    match key.spec.owner.kind {
        crate::api::OwnerKind::User => key.spec.owner.name.clone(),
        crate::api::OwnerKind::ServiceAccount => format!(
            "system:serviceaccount:{}:{}",
            key.metadata.namespace.as_deref().unwrap_or_default(),
            key.spec.owner.name
        ),
    }
}

fn no_keys(namespace: &str, all_namespaces: bool) -> anyhow::Result<()> {
    if all_namespaces {
        eprintln!("No access keys found.");
    } else {
        eprintln!("No access keys found in namespace {namespace}.");
    }
    Ok(())
}

/// The key table plus owner limit usage, counted cluster-wide when the caller may list that.
async fn status_report(client: &Client, shown: &[AccessKey], all_namespaces: bool) -> String {
    let all_keys = match Api::<AccessKey>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(_) => shown.to_vec(),
    };
    let policies = Api::<AccessKeyPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .ok()
        .map(|list| list.items);
    let now = chrono::Utc::now();
    format!(
        "{}\n{}",
        status::key_table(shown, all_namespaces, now),
        status::owner_usage_table(shown, &all_keys, policies.as_deref())
    )
}

/// Reads one key; a missing key is an error that names it and its namespace.
async fn get(keys: &Api<AccessKey>, namespace: &str, name: &str) -> anyhow::Result<AccessKey> {
    keys.get_opt(name)
        .await
        .with_context(|| format!("reading accesskey {name:?} in namespace {namespace:?}"))?
        .with_context(|| format!("accesskey {name:?} not found in namespace {namespace:?}"))
}

/// The caller's mark on what the plugin writes: their name (the API server accepts only the
/// requester's) and the `metadata.generation` the write produces, so the mark signs that change
/// and no later one.
fn requested_by(caller: &str, generation: i64) -> std::collections::BTreeMap<String, String> {
    [
        (REQUESTED_BY_ANNOTATION.to_owned(), caller.to_owned()),
        (
            REQUESTED_GENERATION_ANNOTATION.to_owned(),
            generation.to_string(),
        ),
    ]
    .into()
}

/// A client and its default namespace from `--kubeconfig`/`--context`, KUBECONFIG, or in-cluster.
async fn connect(cli: &PluginCli) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer()
            .await
            .context("no kubeconfig found (set KUBECONFIG or pass --kubeconfig)")?,
    };
    let namespace = config.default_namespace.clone();
    Ok((Client::try_from(config)?, namespace))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        PluginCli::command().debug_assert();
    }

    #[test]
    fn kubectl_style_flags_go_anywhere() {
        let cli = PluginCli::try_parse_from([
            "kubectl-keywarden",
            "credentials",
            "ci",
            "-n",
            "team-a",
            "--format",
            "csv",
            "--context",
            "dev",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("team-a"));
        assert_eq!(cli.context.as_deref(), Some("dev"));
        assert!(matches!(
            cli.command,
            PluginCommand::Credentials { ref name, format: CredentialsFormat::Csv } if name == "ci"
        ));
    }

    #[test]
    fn status_takes_all_namespaces_but_not_with_a_name() {
        let all = PluginCli::try_parse_from(["kubectl-keywarden", "status", "-A"]).unwrap();
        assert!(matches!(
            all.command,
            PluginCommand::Status {
                name: None,
                all_namespaces: true,
                mine: false
            }
        ));
        assert!(PluginCli::try_parse_from(["kubectl-keywarden", "status", "x", "-A"]).is_err());
    }
}
