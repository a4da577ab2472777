//! `devcluster bench`: throughput and memory figures of an in-process devcluster, measured
//! through a real kube client over loopback. Prints figures; asserts nothing.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::auth::AuthorizationMode;
use crate::{DevCluster, Options};

/// Objects created by each phase.
const OBJECTS: usize = 10_000;
/// Requests in flight at once from the one client.
const CONCURRENCY: usize = 32;
const WATCHERS: usize = 10;
const WATCHED_CREATES: usize = 1_000;

fn config_map(name: String) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name);
    cm.data = Some([("key".to_string(), "value".to_string())].into());
    cm
}

/// Resident set size of this process in bytes (Linux), if known.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU time (user + system) this process has used so far (Linux), if known.
///
/// why: on a machine shared with other work, throughput follows the load; CPU time per request
/// does not, so the cost of authorization shows through the noise.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // why: the command name (field 2) may hold spaces; fields after it are space-separated.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // why: the kernel reports USER_HZ ticks, 100 per second on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Runs every phase (only the authorization cost with `authorization_only`) and prints one
/// line per figure.
pub async fn run(authorization_only: bool) -> anyhow::Result<()> {
    if !authorization_only {
        throughput().await?;
    }
    authorization_cost().await
}

async fn throughput() -> anyhow::Result<()> {
    let cluster = DevCluster::start().await?;
    let client = cluster.client()?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let sequential = 1_000;
    let started = Instant::now();
    for i in 0..sequential {
        api.create(&PostParams::default(), &config_map(format!("seq-{i}")))
            .await?;
    }
    println!(
        "creates/s, sequential:        {:>10.0}",
        per_second(sequential, started.elapsed())
    );

    let rss_before = rss_bytes();
    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &config_map(format!("cm-{i}")))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    println!(
        "creates/s, {CONCURRENCY} in flight:       {:>10.0}",
        per_second(OBJECTS, started.elapsed())
    );
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        let per_object = after.saturating_sub(before) / OBJECTS as u64;
        println!("memory per stored object:     {per_object:>10} bytes (RSS delta, includes client buffers)");
    }

    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move { api.get(&format!("cm-{i}")).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    println!(
        "gets/s, {CONCURRENCY} in flight:          {:>10.0}",
        per_second(OBJECTS, started.elapsed())
    );

    let started = Instant::now();
    let listed = api.list(&ListParams::default()).await?;
    println!(
        "list of {} objects:        {:>10.1} ms",
        listed.items.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );

    let rv = listed.metadata.resource_version.unwrap_or_default();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = api.watch(&WatchParams::default(), &rv).await?;
        watchers.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut added = 0;
            while added < WATCHED_CREATES {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(_))) => added += 1,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            added
        }));
    }
    let started = Instant::now();
    for i in 0..WATCHED_CREATES {
        api.create(&PostParams::default(), &config_map(format!("watched-{i}")))
            .await?;
    }
    let mut delivered = 0;
    for watcher in watchers {
        delivered += watcher.await?;
    }
    println!(
        "watch fan-out to {WATCHERS} watchers:  {:>10.0} events/s delivered ({delivered} events)",
        per_second(delivered, started.elapsed())
    );
    Ok(())
}

/// Objects each authorization round creates: enough for a round to last about a second, as
/// shorter rounds measured mostly the other load on a shared machine.
const AUTHORIZED_CREATES: usize = 20_000;
/// Bindings of other users and groups, so the index has to pick the user's few.
const OTHER_BINDINGS: usize = 200;

/// Creates/s and CPU time per create of a non-admin user (a bearer token) whose RoleBinding
/// RBAC evaluates and whose writes three admission policies check on every request, against
/// the same user with every request allowed and no policies; best of two interleaved rounds
/// each.
async fn authorization_cost() -> anyhow::Result<()> {
    let mut allow_all = Round::default();
    let mut rbac_only = Round::default();
    let mut rbac = Round::default();
    for _ in 0..2 {
        allow_all.keep_best(creates_as_user(AuthorizationMode::AlwaysAllow, false).await?);
        rbac_only.keep_best(creates_as_user(AuthorizationMode::Rbac, false).await?);
        rbac.keep_best(creates_as_user(AuthorizationMode::Rbac, true).await?);
    }
    let throughput = |round: &Round| round.per_second / allow_all.per_second.max(f64::EPSILON);
    let cpu = |round: &Round| round.cpu_micros / allow_all.cpu_micros.max(f64::EPSILON);
    println!(
        "creates/s as a user, {CONCURRENCY} in flight, AlwaysAllow: {:>8.0}; CPU per create {:>5.1} us",
        allow_all.per_second, allow_all.cpu_micros
    );
    println!(
        "creates/s as a user, {CONCURRENCY} in flight, RBAC only:   {:>8.0} ({:.2}x); CPU per create {:>5.1} us ({:.2}x)",
        rbac_only.per_second,
        throughput(&rbac_only),
        rbac_only.cpu_micros,
        cpu(&rbac_only)
    );
    println!(
        "creates/s as a user, {CONCURRENCY} in flight, RBAC + {} admission policies: {:>8.0} ({:.2}x, goal >= 0.8x); CPU per create {:>5.1} us ({:.2}x)",
        ADMISSION_POLICIES.len(),
        rbac.per_second,
        throughput(&rbac),
        rbac.cpu_micros,
        cpu(&rbac)
    );
    Ok(())
}

/// The best of one configuration's rounds: the highest throughput and, apart, the least
/// CPU time (server and client, one process) per create.
#[derive(Default)]
struct Round {
    per_second: f64,
    cpu_micros: f64,
}

impl Round {
    fn keep_best(&mut self, other: Round) {
        self.per_second = self.per_second.max(other.per_second);
        if self.cpu_micros == 0.0 || (other.cpu_micros > 0.0 && other.cpu_micros < self.cpu_micros)
        {
            self.cpu_micros = other.cpu_micros;
        }
    }
}

fn rbac_object(
    kind: &str,
    body: serde_json::Value,
) -> anyhow::Result<(ApiResource, DynamicObject)> {
    let plural = format!("{}s", kind.to_lowercase());
    let resource = ApiResource {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: kind.into(),
        plural,
    };
    let mut body = body;
    body["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
    body["kind"] = json!(kind);
    Ok((resource, serde_json::from_value(body)?))
}

/// Creates `body` (a Role, RoleBinding or ClusterRoleBinding) as the admin.
async fn create_rbac(
    admin: &kube::Client,
    namespace: Option<&str>,
    kind: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let (resource, object) = rbac_object(kind, body)?;
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(admin.clone(), namespace, &resource),
        None => Api::all_with(admin.clone(), &resource),
    };
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

/// (name, validation expression) of the policies the RBAC round admits every ConfigMap with:
/// a field rule, a user rule and an authorizer check, as keywarden's own policies are.
const ADMISSION_POLICIES: &[(&str, &str)] = &[
    (
        "bench-names",
        "!object.metadata.name.startsWith('forbidden-')",
    ),
    (
        "bench-users",
        "request.userInfo.username != 'system:anonymous'",
    ),
    (
        "bench-authorizer",
        "authorizer.group('').resource('configmaps').namespace(request.namespace).check('create').allowed()",
    ),
];

/// Installs [`ADMISSION_POLICIES`] and their bindings, for ConfigMap creates.
async fn install_policies(admin: &kube::Client) -> anyhow::Result<()> {
    let resource = |kind: &str, plural: &str| ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let policies = resource("ValidatingAdmissionPolicy", "validatingadmissionpolicies");
    let bindings = resource(
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    );
    for (name, expression) in ADMISSION_POLICIES {
        let policy: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": name },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                    "operations": ["CREATE", "UPDATE"],
                }] },
                "validations": [{ "expression": expression }],
            },
        }))?;
        let binding: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": { "name": name },
            "spec": { "policyName": name, "validationActions": ["Deny"] },
        }))?;
        Api::<DynamicObject>::all_with(admin.clone(), &policies)
            .create(&PostParams::default(), &policy)
            .await?;
        Api::<DynamicObject>::all_with(admin.clone(), &bindings)
            .create(&PostParams::default(), &binding)
            .await?;
    }
    Ok(())
}

/// Creates/s and CPU time per create of user `bench` (group `bench-team`), allowed by a
/// RoleBinding among many others.
async fn creates_as_user(mode: AuthorizationMode, policies: bool) -> anyhow::Result<Round> {
    let cluster = DevCluster::start_with(Options {
        authorization: mode,
        ..Options::default()
    })
    .await?;
    let admin = cluster.client()?;
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some("bench".into());
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let rule = json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"] }]);
    create_rbac(
        &admin,
        Some("bench"),
        "Role",
        json!({ "metadata": { "name": "writer" }, "rules": rule }),
    )
    .await?;
    for i in 0..OTHER_BINDINGS {
        let subjects = json!([{ "kind": "User", "name": format!("user-{i}") }, { "kind": "Group", "name": format!("group-{i}") }]);
        create_rbac(&admin, Some("bench"), "RoleBinding", json!({
            "metadata": { "name": format!("other-{i}") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer" },
            "subjects": subjects.clone(),
        })).await?;
        create_rbac(&admin, None, "ClusterRoleBinding", json!({
            "metadata": { "name": format!("other-{i}") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
            "subjects": subjects,
        })).await?;
    }
    create_rbac(&admin, Some("bench"), "RoleBinding", json!({
        "metadata": { "name": "bench-team-writer" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer" },
        "subjects": [{ "kind": "Group", "name": "bench-team" }],
    })).await?;
    if policies {
        install_policies(&admin).await?;
    }
    let token = cluster.add_user("bench", &["bench-team"]);
    let api: Api<ConfigMap> = Api::namespaced(cluster.client_for_token(&token)?, "bench");
    let cpu_before = process_cpu();
    let started = Instant::now();
    futures::stream::iter(0..AUTHORIZED_CREATES)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &config_map(format!("cm-{i}")))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let per_second = per_second(AUTHORIZED_CREATES, started.elapsed());
    let cpu_micros = match (cpu_before, process_cpu()) {
        (Some(before), Some(after)) => {
            after.saturating_sub(before).as_secs_f64() * 1e6 / AUTHORIZED_CREATES as f64
        }
        _ => 0.0,
    };
    drop((api, admin));
    drop(cluster);
    // why: the cluster's objects and change history are freed by its tasks as they end; let
    // that finish here rather than be counted in the next round.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Round {
        per_second,
        cpu_micros,
    })
}
