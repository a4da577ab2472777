//! Revocation latency: patch `spec.active: false` -> first 401, over 50 trials, against an
//! in-process devcluster and an in-process verifier.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keywarden::api::{AccessKey, AccessKeySpec, AccessKeyStatus, KeyOwner, OwnerKind, Phase};
use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use keywarden::verifier::{serve, VerifierArgs};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use tokio_util::sync::CancellationToken;

const TRIALS: usize = 50;
const NAMESPACE: &str = "bench";

/// Prints the revocation latency figures.
pub async fn report() {
    println!("== revocation latency: patch spec.active=false -> first 401, {TRIALS} trials");
    match measure().await {
        Ok(mut latencies) => {
            latencies.sort();
            let at = |q: f64| {
                latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)]
            };
            println!(
                "  p50 {:?}   p99 {:?}   max {:?}",
                at(0.5),
                at(0.99),
                latencies.last().copied().unwrap_or_default()
            );
            let p99 = at(0.99).as_secs_f64();
            println!("  RATIO p99 / 1 s: {p99:.3}x (target <= 1)");
        }
        Err(error) => println!("  skipped: {error:#}"),
    }
}

async fn measure() -> anyhow::Result<Vec<Duration>> {
    let cluster = devcluster::DevCluster::start().await?;
    let client = cluster.client()?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &AccessKey::crd())
        .await?;
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let keys: Api<AccessKey> = Api::namespaced(client.clone(), NAMESPACE);
    let id = AccessKeyId::generate();
    let secret = SecretKey::generate();
    let mut key = AccessKey::new(
        "revoked",
        AccessKeySpec {
            owner: KeyOwner {
                kind: OwnerKind::User,
                name: "bench".into(),
            },
            display_name: None,
            description: None,
            scopes: Vec::new(),
            owner_groups: Vec::new(),
            allowed_origins: Vec::new(),
            active: true,
            rotate_generation: 0,
            reactivate_generation: 0,
            policy_name: None,
            rollout: None,
            secret: Default::default(),
        },
    );
    key.metadata.namespace = Some(NAMESPACE.into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(error) = keys.create(&PostParams::default(), &key).await {
        anyhow::ensure!(Instant::now() < deadline, "creating the key: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = AccessKeyStatus {
        phase: Some(Phase::Active),
        access_key_id: Some(id.to_string()),
        secret_hash: Some(hash_secret(&secret, &HashParams::default())?),
        granted_scopes: Some(vec!["*".into()]),
        ..AccessKeyStatus::default()
    };
    keys.patch_status(
        "revoked",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/check", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let verifier = tokio::spawn(serve(
        client.clone(),
        VerifierArgs::default(),
        listener,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let authorization = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{id}:{}", secret.expose())
        )
    );
    let status_of = || async {
        http.get(&url)
            .header("authorization", &authorization)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let set_active = |active: bool| {
        let keys = keys.clone();
        async move {
            keys.patch(
                "revoked",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"active": active}})),
            )
            .await
        }
    };
    let mut latencies = Vec::with_capacity(TRIALS);
    for _ in 0..TRIALS {
        set_active(true).await?;
        wait_for(&status_of, 200).await?;
        let patched = Instant::now();
        set_active(false).await?;
        wait_for(&status_of, 401).await?;
        latencies.push(patched.elapsed());
    }
    shutdown.cancel();
    verifier.await??;
    Ok(latencies)
}

/// Polls until the check answers `expected`, for up to 10 s.
async fn wait_for<F, Fut>(status_of: &F, expected: u16) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of().await != expected {
        anyhow::ensure!(Instant::now() < deadline, "no {expected} within 10 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
