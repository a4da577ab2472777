//! keywarden's identities, RBAC and admission policies (deploy/access-control.yaml, rendered
//! from the chart), and clients that act as the chart's ServiceAccounts: `keywarden dev` and
//! the test suites run the controller and the verifier exactly as the chart runs them, so a
//! missing permission fails locally.

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::AuthInfo;
use kube::{Api, Client, Config};

use super::manifests;

/// What the chart installs besides the workloads, for release `keywarden` in [`NAMESPACE`].
pub const ACCESS_CONTROL_YAML: &str = include_str!("../../deploy/access-control.yaml");
/// The namespace deploy/access-control.yaml installs into.
pub const NAMESPACE: &str = "keywarden-system";
/// The controller's ServiceAccount in [`NAMESPACE`].
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "keywarden-controller";
/// The verifier's ServiceAccount in [`NAMESPACE`].
pub const VERIFIER_SERVICE_ACCOUNT: &str = "keywarden-verifier";
/// Lifetime asked for the ServiceAccount tokens of a local run.
const TOKEN_SECONDS: i64 = 7 * 24 * 60 * 60;

/// The Kubernetes username of one of the chart's ServiceAccounts.
pub fn username(service_account: &str) -> String {
    format!("system:serviceaccount:{NAMESPACE}:{service_account}")
}

/// Installs (or updates) the ServiceAccounts, RBAC and admission policies.
pub async fn install(client: &Client) -> anyhow::Result<()> {
    for object in manifests::manifests(ACCESS_CONTROL_YAML)? {
        manifests::apply(client, &object).await?;
    }
    Ok(())
}

/// A token for `service_account` of [`NAMESPACE`] from the TokenRequest API.
pub async fn service_account_token(
    admin: &Client,
    service_account: &str,
) -> anyhow::Result<String> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .with_context(|| {
            format!("requesting a token for ServiceAccount {NAMESPACE}/{service_account}")
        })?
        .status
        .and_then(|status| status.token)
        .filter(|token| !token.is_empty())
        .with_context(|| format!("the TokenRequest for {service_account} returned no token"))?;
    Ok(token)
}

/// `base` (the same server) acting as `service_account` of [`NAMESPACE`], with a token from
/// the TokenRequest API.
pub async fn service_account_config(
    admin: &Client,
    base: &Config,
    service_account: &str,
) -> anyhow::Result<Config> {
    let token = service_account_token(admin, service_account).await?;
    let mut config = base.clone();
    config.auth_info = serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))
        .context("building the ServiceAccount's credentials")?;
    Ok(config)
}

/// A client acting as `service_account` of [`NAMESPACE`], talking to the same server as `base`.
pub async fn service_account_client(
    admin: &Client,
    base: &Config,
    service_account: &str,
) -> anyhow::Result<Client> {
    let config = service_account_config(admin, base, service_account).await?;
    Client::try_from(config).context("building the ServiceAccount's client")
}
