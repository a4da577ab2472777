//! Where the bulk run's time goes: CPU per thread group, API requests by verb, reconcile count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use kube::Client;

/// CPU clock ticks used so far by this process's threads, summed by thread name.
///
/// Runtimes get distinct thread names (`devcluster`, `controller`, `bench`), so the sums say how
/// the cores were shared; the process's main thread only blocks on the bench runtime.
pub fn cpu_ticks_by_thread_name() -> anyhow::Result<BTreeMap<String, u64>> {
    cpu_ticks_by_thread_name_of("self")
}

/// CPU clock ticks used so far by the threads of process `pid` (a number or `self`), summed
/// by thread name.
pub fn cpu_ticks_by_thread_name_of(pid: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut ticks = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        // why: a thread may end between listing and reading; it is then simply not counted.
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        *ticks.entry(name.trim().to_string()).or_default() += stat_cpu_ticks(&stat);
    }
    Ok(ticks)
}

/// Requests sent by one client, counted by verb and resource (`create secrets`, `patch
/// accesskeys/status`, ...).
#[derive(Clone, Default)]
pub struct RequestCounts(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCounts {
    /// Counts one request.
    pub fn count<B>(&self, request: &Request<B>) {
        let label = request_label(request.method(), request.uri());
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(label).or_default() += 1;
    }

    /// Counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `verb resource[/subresource]` of a Kubernetes API request.
fn request_label(method: &Method, uri: &http::Uri) -> String {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // why: core paths are /api/v1/..., group paths /apis/GROUP/VERSION/...
    let skip = if segments.first() == Some(&"api") {
        2
    } else {
        3
    };
    let mut rest = segments.get(skip..).unwrap_or_default();
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        rest = &rest[2..];
    }
    let resource = match rest {
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_string(),
        [] => uri.path().to_string(),
    };
    let watch = uri.query().is_some_and(|q| q.contains("watch=true"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if rest.len() >= 2 => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "replace",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => method.as_str(),
    };
    format!("{verb} {resource}")
}

/// A client for devcluster at `url` that counts every request it sends into `counts`.
pub fn counting_client(config: kube::Config, counts: RequestCounts) -> anyhow::Result<Client> {
    let counting = tower::util::MapRequestLayer::new(move |request: Request<Body>| {
        counts.count(&request);
        request
    });
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&counting)
        .build())
}

/// The value of an unlabelled metric in the controller's `/metrics` text.
pub async fn scrape_metric(probe_port: u16, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{probe_port}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no metric {name} in /metrics"))
}

/// A loopback port that was free a moment ago (for the controller's probe endpoint).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident memory of process `pid` by kind of mapping, in KiB (Linux `smaps`).
#[derive(Debug, Default)]
pub struct ResidentBreakdown {
    /// The main heap (`[heap]`, grown with brk).
    pub heap: u64,
    /// Anonymous mappings: malloc arenas of other threads, large allocations, thread stacks.
    pub anonymous: u64,
    /// How many anonymous mappings hold 1 MiB or more (glibc arenas show up here).
    pub large_anonymous_mappings: usize,
    /// File-backed mappings: the executable and shared libraries.
    pub files: u64,
}

/// Reads how the resident memory of `pid` divides between heap, anonymous mappings and files.
pub fn resident_breakdown(pid: u32) -> anyhow::Result<ResidentBreakdown> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut breakdown = ResidentBreakdown::default();
    let mut mapping = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // why: a mapping header is "start-end perms offset dev inode [path]".
            mapping = fields.nth(4).unwrap_or_default().to_string();
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match mapping.as_str() {
                "[heap]" => breakdown.heap += kib,
                "" => {
                    breakdown.anonymous += kib;
                    if kib >= 1024 {
                        breakdown.large_anonymous_mappings += 1;
                    }
                }
                path if path.starts_with('/') => breakdown.files += kib,
                _ => breakdown.anonymous += kib,
            }
        }
    }
    Ok(breakdown)
}

/// User plus system clock ticks in the text of a `/proc/.../stat` file.
fn stat_cpu_ticks(stat: &str) -> u64 {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // why: utime and stime are fields 14 and 15 of stat; index from after "(comm)".
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum()
}
