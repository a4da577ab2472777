//! `kubectl keywarden create`: the console's "Generate new key" in one step — create a key owned
//! by the caller (or one of the namespace's ServiceAccounts), wait until it is issued, and print
//! its credentials once.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, watch_object};
use kube::{Api, Client};

use super::credentials::{Credentials, CredentialsFormat};
use crate::api::conditions::types;
use crate::api::{
    AccessKey, AccessKeySpec, AccessKeyStatus, KeyOwner, OwnerKind, Phase, SecretTemplate,
    SecretType,
};

/// The field manager of objects the plugin creates and changes.
pub const FIELD_MANAGER: &str = "kubectl-keywarden";
/// How long to wait before the watch of a new key retries after an error.
const WATCH_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The prefix of a ServiceAccount's Kubernetes username.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// What `kubectl keywarden create` asks for.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Name of the AccessKey.
    pub name: String,
    /// Human-readable name shown by tools.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Free-form description.
    #[arg(long)]
    pub description: Option<String>,
    /// A permission, `resource:view` or `resource:manage` (repeat; none = all of the owner's).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// A CORS origin allowed to use the key, `https://host[:port]` (repeat).
    #[arg(long = "origin", value_name = "ORIGIN")]
    pub origins: Vec<String>,
    /// The governing AccessKeyPolicy (default: the cluster's default policy).
    #[arg(long)]
    pub policy: Option<String>,
    /// Type of the Secret the credentials are written to.
    #[arg(long, value_enum, default_value = "opaque")]
    pub secret_type: SecretTypeArg,
    /// Owner: this ServiceAccount of the namespace instead of you.
    #[arg(long, value_name = "SA")]
    pub service_account: Option<String>,
    /// How the credentials are printed.
    #[arg(long, value_enum, default_value = "env")]
    pub format: CredentialsFormat,
    /// How long to wait for the key to be issued.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print the manifest instead of creating the key (`--dry-run -o yaml`, for GitOps).
    #[arg(long)]
    pub dry_run: bool,
    /// Output of `--dry-run`: the manifest as YAML.
    #[arg(short = 'o', long, value_enum, requires = "dry_run")]
    pub output: Option<ManifestFormat>,
}

/// `--secret-type`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretTypeArg {
    /// `Opaque` (data keys accessKeyId, accessKey, token).
    Opaque,
    /// `kubernetes.io/basic-auth` (also username = access ID, password = secret).
    BasicAuth,
}

/// `-o` with `--dry-run`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    Yaml,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::keys::duration::parse_duration(text)
        .map_err(|e| e.to_string())?
        .to_std()
        .map_err(|e| e.to_string())
}

/// Why a key did not become usable.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("accesskey {name:?} was not issued: {reason}: {message}")]
    Rejected {
        name: String,
        reason: String,
        message: String,
    },
    #[error("accesskey {name:?} was not issued within {timeout:?} (phase {phase}); see `kubectl describe accesskey {name}`")]
    Timeout {
        name: String,
        timeout: Duration,
        phase: String,
    },
    #[error("accesskey {name:?} was deleted before it was issued")]
    Deleted { name: String },
}

/// Who the caller is, per the API server (SelfSubjectReview, `kubectl auth whoami`).
pub struct Caller {
    pub username: String,
    /// The groups of the caller's requests, as the admission policy sees them.
    pub groups: Vec<String>,
}

/// Asks the API server who the caller is.
pub async fn caller(client: &Client) -> anyhow::Result<Caller> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    let username = user
        .username
        .filter(|name| !name.is_empty())
        .context("the API server's SelfSubjectReview named no user")?;
    Ok(Caller {
        username,
        groups: user.groups.unwrap_or_default(),
    })
}

/// The caller's username (SelfSubjectReview).
pub async fn caller_username(client: &Client) -> anyhow::Result<String> {
    Ok(caller(client).await?.username)
}

/// The owner of a key created by `username` in `namespace`: a ServiceAccount of that namespace
/// is itself; one of another namespace cannot own keys here; anyone else is a User.
pub fn owner_for(username: &str, namespace: &str) -> anyhow::Result<KeyOwner> {
    let Some(service_account) = username.strip_prefix(SERVICE_ACCOUNT_PREFIX) else {
        return Ok(KeyOwner {
            kind: OwnerKind::User,
            name: username.to_owned(),
        });
    };
    match service_account.split_once(':') {
        Some((own_namespace, name)) if own_namespace == namespace => Ok(KeyOwner {
            kind: OwnerKind::ServiceAccount,
            name: name.to_owned(),
        }),
        Some((own_namespace, _)) => anyhow::bail!(
            "you are {username}: a ServiceAccount owns keys in its own namespace only (use -n {own_namespace})"
        ),
        None => anyhow::bail!("cannot tell which ServiceAccount {username:?} is"),
    }
}

/// The AccessKey `args` describe, owned by `owner`.
pub fn manifest(args: &CreateArgs, namespace: &str, owner: KeyOwner) -> AccessKey {
    let spec = AccessKeySpec {
        owner,
        display_name: args.display_name.clone(),
        description: args.description.clone(),
        scopes: args.scopes.clone(),
        owner_groups: Vec::new(),
        allowed_origins: args.origins.clone(),
        active: true,
        rotate_generation: 0,
        reactivate_generation: 0,
        policy_name: args.policy.clone(),
        rollout: None,
        secret: SecretTemplate {
            type_: match args.secret_type {
                SecretTypeArg::Opaque => SecretType::Opaque,
                SecretTypeArg::BasicAuth => SecretType::BasicAuth,
            },
            ..SecretTemplate::default()
        },
    };
    let mut key = AccessKey::new(&args.name, spec);
    key.metadata = ObjectMeta {
        name: Some(args.name.clone()),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    };
    key
}

/// Creates the key, waits for its issuance and returns its credentials rendered in the
/// requested format (or, with `--dry-run`, the manifest).
pub async fn run(client: &Client, namespace: &str, args: &CreateArgs) -> anyhow::Result<String> {
    let Caller { username, groups } = caller(client).await?;
    let owner = match &args.service_account {
        Some(name) => KeyOwner {
            kind: OwnerKind::ServiceAccount,
            name: name.clone(),
        },
        None => owner_for(&username, namespace)?,
    };
    let mut key = manifest(args, namespace, owner);
    // why: a dry-run manifest is applied later by someone else (GitOps), whose name it cannot
    // carry; the admission policy would refuse it under the caller's.
    if args.dry_run {
        let mut value = serde_json::to_value(&key).context("rendering the manifest")?;
        if let Some(object) = value.as_object_mut() {
            object.remove("status");
        }
        return serde_yaml::to_string(&value).context("rendering the manifest");
    }
    key.metadata.annotations = Some(super::requested_by(&username, 1));
    // why: a User's groups are known only from their own requests; recorded here, the
    // controller checks the key's scopes with them (the admission policy takes them from the
    // owner only, and only as they are).
    if key.spec.owner.kind == OwnerKind::User && key.spec.owner.name == username {
        key.spec.owner_groups = groups;
    }
    let keys: Api<AccessKey> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    keys.create(&params, &key).await.with_context(|| {
        format!(
            "creating accesskey {:?} in namespace {namespace:?}",
            args.name
        )
    })?;
    let status = wait_for_issuance(&keys, &args.name, args.timeout).await?;
    let secret_name = status
        .secret_name
        .unwrap_or_else(|| key.spec.secret_name(&args.name));
    let secret = read_own_secret(&Api::namespaced(client.clone(), namespace), &secret_name)
        .await
        .with_context(|| {
            format!(
                "reading Secret {secret_name:?} of accesskey {:?}",
                args.name
            )
        })?;
    let credentials = Credentials::from_secret_data(&secret.data.unwrap_or_default())
        .with_context(|| format!("secret {secret_name:?} of accesskey {:?}", args.name))?;
    Ok(credentials.render(args.format).to_string())
}

/// Reads the key's Secret. The owner's Role and RoleBinding are written before the key is
/// Ready, but a real API server's authorizer sees new bindings a moment later, so a 403 is asked
/// again for a few seconds before it counts.
async fn read_own_secret(secrets: &Api<Secret>, name: &str) -> Result<Secret, kube::Error> {
    const ATTEMPTS: u32 = 10;
    let mut attempt = 1;
    loop {
        match secrets.get(name).await {
            Err(kube::Error::Api(status)) if status.code == 403 && attempt < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(WATCH_RETRY_PAUSE).await;
            }
            result => return result,
        }
    }
}

/// What a key's status says about its issuance.
#[derive(Debug, PartialEq)]
pub enum Issuance {
    Issued,
    Waiting,
    Refused { reason: String, message: String },
}

/// Reads one status: issued (Ready), still on its way, or refused with the reason a person
/// must act on (the owner's limit, a policy that does not admit the spec).
pub fn issuance(status: Option<&AccessKeyStatus>) -> Issuance {
    let Some(status) = status else {
        return Issuance::Waiting;
    };
    let condition = |kind: &str| status.conditions.iter().find(|c| c.type_ == kind);
    if condition(types::READY).is_some_and(|c| c.status == "True") {
        return Issuance::Issued;
    }
    let refusal = [types::LIMIT_EXCEEDED]
        .into_iter()
        .filter_map(|kind| condition(kind).filter(|c| c.status == "True"))
        .chain(
            [types::POLICY_RESOLVED]
                .into_iter()
                .filter_map(|kind| condition(kind).filter(|c| c.status == "False")),
        )
        .next();
    match (status.phase, refusal) {
        (_, Some(c)) => Issuance::Refused {
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
        (Some(Phase::Rejected), None) => Issuance::Refused {
            reason: "Rejected".into(),
            message: "the controller rejected the key".into(),
        },
        _ => Issuance::Waiting,
    }
}

async fn wait_for_issuance(
    keys: &Api<AccessKey>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<AccessKeyStatus> {
    let mut phase = String::from("not yet observed");
    let mut stream = watch_object(keys.clone(), name).boxed();
    let waited = tokio::time::timeout(timeout, async {
        while let Some(event) = stream.next().await {
            let key = match event {
                Ok(Some(key)) => key,
                Ok(None) => return Err(CreateError::Deleted { name: name.into() }.into()),
                Err(watcher::Error::WatchError(status)) => {
                    return Err(anyhow::anyhow!("watching accesskey {name:?}: {status}"))
                }
                Err(e) => {
                    // why: the watcher retries at once; a short pause keeps an unreachable API
                    // server from being asked in a tight loop until the timeout.
                    tracing::debug!(error = %e, "watch interrupted; retrying");
                    tokio::time::sleep(WATCH_RETRY_PAUSE).await;
                    continue;
                }
            };
            if let Some(p) = key.status.as_ref().and_then(|s| s.phase) {
                phase = format!("{p:?}");
            }
            match issuance(key.status.as_ref()) {
                Issuance::Issued => return Ok(key.status.unwrap_or_default()),
                Issuance::Waiting => {}
                Issuance::Refused { reason, message } => {
                    return Err(CreateError::Rejected {
                        name: name.into(),
                        reason,
                        message,
                    }
                    .into())
                }
            }
        }
        Err(anyhow::anyhow!("the watch of accesskey {name:?} ended"))
    })
    .await;
    match waited {
        Ok(result) => result,
        Err(_) => Err(CreateError::Timeout {
            name: name.into(),
            timeout,
            phase,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: kind.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn a_user_owns_keys_under_their_username() {
        let owner = owner_for("alice@example.com", "team-a").unwrap();
        assert_eq!(owner.kind, OwnerKind::User);
        assert_eq!(owner.name, "alice@example.com");
    }

    #[test]
    fn a_service_account_owns_keys_in_its_own_namespace_only() {
        let owner = owner_for("system:serviceaccount:team-a:ci", "team-a").unwrap();
        assert_eq!(owner.kind, OwnerKind::ServiceAccount);
        assert_eq!(owner.name, "ci");
        let elsewhere = owner_for("system:serviceaccount:team-a:ci", "team-b").unwrap_err();
        assert!(elsewhere.to_string().contains("-n team-a"), "{elsewhere}");
    }

    #[test]
    fn a_key_over_its_owners_limit_is_refused_with_the_controllers_message() {
        let status = AccessKeyStatus {
            phase: Some(Phase::Rejected),
            conditions: vec![
                condition(types::READY, "False", "LimitExceeded", "not issued"),
                condition(
                    types::LIMIT_EXCEEDED,
                    "True",
                    "LimitExceeded",
                    "alice already holds 5 of 5 keys",
                ),
            ],
            ..AccessKeyStatus::default()
        };
        assert_eq!(
            issuance(Some(&status)),
            Issuance::Refused {
                reason: "LimitExceeded".into(),
                message: "alice already holds 5 of 5 keys".into()
            }
        );
    }

    #[test]
    fn a_pending_key_is_waited_for_and_a_ready_one_is_issued() {
        assert_eq!(issuance(None), Issuance::Waiting);
        let pending = AccessKeyStatus {
            phase: Some(Phase::Pending),
            ..AccessKeyStatus::default()
        };
        assert_eq!(issuance(Some(&pending)), Issuance::Waiting);
        let ready = AccessKeyStatus {
            phase: Some(Phase::Active),
            conditions: vec![condition(types::READY, "True", "Issued", "")],
            ..AccessKeyStatus::default()
        };
        assert_eq!(issuance(Some(&ready)), Issuance::Issued);
    }

    #[test]
    fn the_dry_run_manifest_carries_what_was_asked() {
        let args = CreateArgs {
            name: "laptop".into(),
            display_name: Some("Laptop".into()),
            description: None,
            scopes: vec!["logs:view".into()],
            origins: vec!["https://app.example.com".into()],
            policy: Some("strict".into()),
            secret_type: SecretTypeArg::BasicAuth,
            service_account: None,
            format: CredentialsFormat::Env,
            timeout: Duration::from_secs(60),
            dry_run: true,
            output: Some(ManifestFormat::Yaml),
        };
        let owner = owner_for("alice", "team-a").unwrap();
        let key = manifest(&args, "team-a", owner);
        assert_eq!(key.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(key.spec.owner.name, "alice");
        assert_eq!(key.spec.scopes, ["logs:view"]);
        assert_eq!(key.spec.secret.type_, SecretType::BasicAuth);
        assert_eq!(key.spec.policy_name.as_deref(), Some("strict"));
    }
}
