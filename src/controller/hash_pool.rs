//! The controller's argon2id workers: one thread per core, each taking the next hashing job
//! from a shared queue as soon as its last one ends.
//!
//! why: a semaphore in front of `spawn_blocking` left a core idle between two hashes while the
//! finished hash's task was woken on the async runtime to release its slot and the next
//! waiter's task was woken to take it and start a blocking thread: 6-7% of both cores in a
//! burst of 1,000 issuances (issue 16). Jobs queued here start without any async hop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

type Job = Box<dyn FnOnce() + Send>;

/// The name of the hashing threads (benchmarks read their CPU by it).
pub const THREAD_NAME: &str = "keywarden-hash";

/// A fixed set of hashing threads; at most one hash per thread runs at a time, which bounds
/// the memory argon2id holds (19 MiB per hash by default).
pub struct HashPool {
    jobs: Sender<Job>,
}

/// The job did not complete: it panicked, or the pool's threads are gone.
#[derive(Debug, thiserror::Error)]
#[error("the hashing job did not complete")]
pub struct JobLost;

impl HashPool {
    /// Starts `threads` hashing threads (at least one). They end once the pool is dropped and
    /// the queued jobs are done. Made within a tokio runtime, jobs run within it too.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        // why: `hashing::hash_secret` keeps its working memory between hashes only where it can
        // spawn the task that releases it later; outside a runtime it allocates (and clears)
        // 19 MiB for every hash, a tenth of the hash's CPU.
        let runtime = tokio::runtime::Handle::try_current().ok();
        for _ in 0..threads.max(1) {
            let (queue, runtime) = (Arc::clone(&queue), runtime.clone());
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                    work(&queue);
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on a hashing thread, after the jobs queued before it.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobLost> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // why: the caller may have stopped waiting (a cancelled reconcile).
                let _ = done.send(job());
            }))
            .map_err(|_| JobLost)?;
        result.await.map_err(|_| JobLost)
    }
}

/// One hashing thread: takes jobs until the pool is dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // why: the lock is held only while waiting; the job runs after it is released, so the
        // next idle thread waits for the next job meanwhile.
        let next = lock(queue).recv();
        let Ok(job) = next else { return };
        // why: a panicking job drops its result sender (its caller gets `JobLost`); the thread
        // must survive it, or the pool would shrink with every panic.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a hashing job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_run_on_the_pools_threads_at_most_one_per_thread() {
        let pool = HashPool::new(2).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..8).map(|i| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            pool.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                (i, std::thread::current().name().map(str::to_string))
            })
        });
        let results = futures::future::join_all(jobs).await;
        for (i, result) in results.into_iter().enumerate() {
            let (j, thread) = result.unwrap();
            assert_eq!(i, j);
            assert_eq!(thread.as_deref(), Some(THREAD_NAME));
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "two threads, two jobs at once"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_thread_keeps_working() {
        let pool = HashPool::new(1).unwrap();
        let lost = pool.run(|| -> u8 { panic!("argon2 failed") }).await;
        assert!(matches!(lost, Err(JobLost)));
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
