//! Randomised fault soak: every run issues and rotates one key under a random fault schedule.

use std::time::{Duration, Instant};

use devcluster::Faults;
use futures::{stream, StreamExt};
use kube::api::PostParams;

use keywarden::api::Phase;
use keywarden::controller::{DATA_ACCESS_KEY, DATA_ACCESS_KEY_ID};
use keywarden::keys::hash::verify_secret;
use keywarden::keys::material::SecretKey;

use crate::support::{phase_of, secret_data, write_matcher, KeyBuilder, SecretWrites, TestCluster};

/// A small xorshift generator: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Injects 0 to 3 random faults on the given writes of `name`'s key and Secret.
fn random_faults(
    rng: &mut Rng,
    faults: &Faults,
    ns: &str,
    name: &str,
    writes: &[(&str, &str)],
) -> String {
    let mut schedule = Vec::new();
    for _ in 0..rng.below(4) {
        let (verb, resource) = writes[rng.below(writes.len() as u64) as usize];
        let matcher = write_matcher(verb, resource, ns, name);
        let times = 1 + rng.below(2) as u32;
        match rng.below(3) {
            0 => {
                faults.drop_response_next(matcher, times);
                schedule.push(format!("lose {verb} {resource} x{times}"));
            }
            1 => {
                faults.fail_next(matcher, times, 500);
                schedule.push(format!("500 {verb} {resource} x{times}"));
            }
            _ => {
                faults.fail_next(matcher, times, 409);
                schedule.push(format!("409 {verb} {resource} x{times}"));
            }
        }
    }
    schedule.join(", ")
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}"))
}

/// One run: issue under faults, rotate under faults, check one write per issuance.
async fn one_run(
    cluster: &TestCluster,
    faults: &Faults,
    writes: &SecretWrites,
    run: usize,
    seed: u64,
) -> Result<(), String> {
    let mut rng = Rng(seed ^ (run as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let name = format!("soak-{run}");
    let ns = cluster.namespace.clone();
    let issue = random_faults(
        &mut rng,
        faults,
        &ns,
        &name,
        &[("create", "secrets"), ("patch", "accesskeys")],
    );
    cluster
        .create_key(&KeyBuilder::new(&name, &name).build())
        .await;
    wait_until("Active", async || {
        cluster
            .keys()
            .get(&name)
            .await
            .ok()
            .and_then(|k| phase_of(&k))
            == Some(Phase::Active)
    })
    .await
    .map_err(|e| format!("{name} [{issue}]: {e}"))?;
    let rotate = random_faults(
        &mut rng,
        faults,
        &ns,
        &name,
        &[("update", "secrets"), ("patch", "accesskeys")],
    );
    // why: an update, not a patch, so injected status-patch faults hit only the controller.
    let mut bumped = cluster.keys().get(&name).await.map_err(|e| e.to_string())?;
    bumped.spec.rotate_generation = 1;
    bumped.status = None;
    cluster
        .keys()
        .replace(&name, &PostParams::default(), &bumped)
        .await
        .map_err(|e| e.to_string())?;
    wait_until("rotated", async || {
        cluster.keys().get(&name).await.ok().is_some_and(|k| {
            phase_of(&k) == Some(Phase::Active)
                && k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
    })
    .await
    .map_err(|e| format!("{name} [{issue}] then [{rotate}]: {e}"))?;
    let key = cluster.keys().get(&name).await.map_err(|e| e.to_string())?;
    let status = key.status.unwrap_or_default();
    let secret = cluster
        .secrets()
        .get(&format!("{name}-access-key"))
        .await
        .map_err(|e| e.to_string())?;
    let current = secret_data(&secret, DATA_ACCESS_KEY_ID);
    wait_until("tracker saw the rotation", async || {
        current.as_ref().is_some_and(|c| {
            writes
                .ids(&secret.metadata.name.clone().unwrap_or_default())
                .contains(c)
        })
    })
    .await?;
    let ids = writes.ids(&format!("{name}-access-key"));
    let plain = secret_data(&secret, DATA_ACCESS_KEY).and_then(|s| SecretKey::parse(&s).ok());
    let verifies =
        plain.is_some_and(|p| verify_secret(&p, status.secret_hash.as_deref().unwrap_or_default()));
    if ids.len() != 2 || status.access_key_id != current || !verifies {
        return Err(format!(
            "{name} [{issue}] then [{rotate}]: {} IDs written (want 2), status ID matches: {}, hash verifies: {verifies}",
            ids.len(),
            status.access_key_id == current
        ));
    }
    Ok(())
}

/// Runs `runs` randomised fault runs and prints the outcome.
pub async fn run(runs: usize) -> anyhow::Result<()> {
    let seed = std::env::var("KW_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros().unsigned_abs());
    let cluster = TestCluster::start().await;
    let faults = cluster
        .faults()
        .ok_or_else(|| anyhow::anyhow!("soak needs devcluster"))?;
    let writes = SecretWrites::track(cluster.secrets());
    let _controller = cluster.start_controller();
    let started = Instant::now();
    let failures: Vec<String> = stream::iter(0..runs)
        .map(|run| one_run(&cluster, &faults, &writes, run, seed))
        .buffer_unordered(8)
        .filter_map(|result| async move { result.err() })
        .collect()
        .await;
    println!(
        "fault soak: {runs} runs (seed {seed}) in {:.1} s: {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    for failure in &failures {
        println!("  FAILED {failure}");
    }
    anyhow::ensure!(failures.is_empty(), "{} soak runs failed", failures.len());
    Ok(())
}
