//! The argon2id ceiling of the bulk part: `threads` threads hashing at the default parameters in
//! a process of their own (this bench binary, re-executed in [`CEILING_MODE`]), measured before
//! anything else of the bench runs, so that nothing but the hashing shares the cores.
//!
//! Each thread hashes through its own [`HashMemory`], the cheapest way to hash a run of secrets
//! (no allocation per hash); `KW_BENCH_CEILING_ALLOCATING=1` measures [`hash_secret`] instead,
//! which allocates the memory cost for every hash.

use std::time::Instant;

use keywarden::keys::hash::{hash_secret, HashMemory, HashParams};
use keywarden::keys::material::SecretKey;

/// Environment variable that turns the bench binary into the ceiling process; its value is the
/// number of hashing threads.
pub const CEILING_MODE: &str = "KW_BENCH_HASH_CEILING";

/// Hashes each thread times (after one untimed warm-up hash); `KW_BENCH_CEILING_HASHES`.
// why: about 3 s at the default parameters; 48 (under a second) varied by a quarter run to run.
const DEFAULT_HASHES_PER_THREAD: usize = 160;

/// What the ceiling process measured.
pub struct Ceiling {
    pub threads: usize,
    pub hashes: usize,
    /// Wall-clock seconds of the timed hashes, all threads at once.
    pub wall: f64,
    /// CPU seconds the process used over them (user + system, /proc/self/stat).
    pub cpu: f64,
}

impl Ceiling {
    /// Hashes per second with every thread hashing: the issuance ceiling.
    pub fn rate(&self) -> f64 {
        self.hashes as f64 / self.wall
    }

    /// Wall-clock seconds one hash takes on one thread while the others hash too.
    pub fn wall_per_hash(&self) -> f64 {
        self.wall * self.threads as f64 / self.hashes as f64
    }

    /// CPU seconds of one hash while the others hash too.
    pub fn cpu_per_hash(&self) -> f64 {
        self.cpu / self.hashes as f64
    }
}

/// Runs the ceiling process and reads its figures.
pub fn measure_in_own_process(threads: usize) -> anyhow::Result<Ceiling> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .env(CEILING_MODE, threads.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the ceiling process failed: {}",
        output.status
    );
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [threads, hashes, wall, cpu] = fields[..] else {
        anyhow::bail!("unexpected ceiling output {text:?}");
    };
    Ok(Ceiling {
        threads: threads as usize,
        hashes: hashes as usize,
        wall,
        cpu,
    })
}

/// The ceiling process itself: hashes on `threads` threads and prints
/// `threads hashes wall_seconds cpu_seconds`.
pub fn run(threads: usize) -> anyhow::Result<()> {
    let per_thread = std::env::var("KW_BENCH_CEILING_HASHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_HASHES_PER_THREAD);
    let params = HashParams::default();
    let allocating = std::env::var_os("KW_BENCH_CEILING_ALLOCATING").is_some();
    let hash_on_threads = |rounds: usize| {
        std::thread::scope(|scope| {
            let hashing: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let secret = SecretKey::generate();
                        if allocating {
                            return (0..rounds)
                                .try_for_each(|_| hash_secret(&secret, &params).map(drop));
                        }
                        let mut memory = HashMemory::new(&params)?;
                        (0..rounds).try_for_each(|_| memory.hash(&secret).map(drop))
                    })
                })
                .collect();
            hashing.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("hashing thread panicked"))?
                    .map_err(anyhow::Error::from)
            })
        })
    };
    hash_on_threads(1)?;
    let cpu_before = process_cpu_seconds()?;
    let started = Instant::now();
    hash_on_threads(per_thread)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds()? - cpu_before;
    println!("{threads} {} {wall} {cpu}", threads * per_thread);
    Ok(())
}

/// CPU seconds this process used so far (Linux; clock ticks of 1/100 s).
fn process_cpu_seconds() -> anyhow::Result<f64> {
    Ok(super::support::cpu_ticks(std::process::id())? as f64 / 100.0)
}
