//! The shipped proxy examples (`examples/nginx/nginx.conf`, `examples/caddy/Caddyfile`) run as
//! they are, with only their fixed addresses moved to free ports, and a recording API behind them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use axum::Router;

/// The text of `examples/<path>`.
pub fn example(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// One request as a stand-in server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `x-keywarden-*` header, sorted by name.
    pub fn keywarden_headers(&self) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-keywarden-"))
            .map(|(name, value)| {
                let value = value.to_str().unwrap_or("<binary>");
                (name.as_str().to_owned(), value.to_owned())
            })
            .collect();
        found.sort();
        found
    }
}

/// What a stand-in server received, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// Appends a request to `log` and returns it.
pub fn record(log: &Log, method: Method, uri: Uri, headers: HeaderMap) -> Seen {
    let seen = Seen {
        method,
        uri,
        headers,
    };
    log.lock().expect("log lock").push(seen.clone());
    seen
}

/// Serves `router` on a free loopback port.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a stand-in server");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// An API answering `api ok` to everything and recording what it received.
pub async fn recording_api() -> (SocketAddr, Log) {
    let calls = Log::default();
    let log = calls.clone();
    let api = serve(
        Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let log = log.clone();
            async move {
                record(&log, method, uri, headers);
                "api ok"
            }
        }),
    )
    .await;
    (api, calls)
}

fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

/// The example's configuration with its fixed addresses moved.
fn rewrite(config: &str, verifier: SocketAddr, api: SocketAddr, proxy: SocketAddr) -> String {
    config
        .replace("127.0.0.1:8080", &verifier.to_string())
        .replace("127.0.0.1:9000", &api.to_string())
        .replace("127.0.0.1:8000", &proxy.to_string())
}

/// A proxy process, stopped when the test ends however it ends.
pub struct Proxy {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Waits up to 10 s until the proxy accepts connections.
    async fn ready(self) -> Self {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.address).await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the proxy did not listen on {} within 10 s", self.address);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// Runs `examples/nginx/nginx.conf` asking `verifier` in front of `api`.
pub async fn start_nginx_example(nginx: &Path, verifier: SocketAddr, api: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().expect("temp dir");
    let address = free_address();
    let prefix = dir.path().display().to_string();
    // why: Debian's nginx keeps its temp files under /var/lib/nginx; a test keeps its own.
    let temp_paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .map(|kind| format!("    {kind}_temp_path {prefix}/{kind};\n"))
        .concat();
    let config = rewrite(&example("nginx/nginx.conf"), verifier, api, address).replacen(
        "http {\n",
        &format!("http {{\n{temp_paths}"),
        1,
    );
    let config_file = dir.path().join("nginx.conf");
    std::fs::write(&config_file, config).expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_file)
        .arg("-g")
        .arg(format!(
            "daemon off; master_process off; pid {prefix}/nginx.pid; error_log stderr;"
        ))
        .stdout(Stdio::null())
        .spawn()
        .expect("start nginx");
    Proxy {
        child,
        address,
        _dir: dir,
    }
    .ready()
    .await
}

/// Runs `examples/caddy/Caddyfile` asking `verifier` in front of `api`.
pub async fn start_caddy_example(caddy: &Path, verifier: SocketAddr, api: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().expect("temp dir");
    let address = free_address();
    let config_file = dir.path().join("Caddyfile");
    let config = rewrite(&example("caddy/Caddyfile"), verifier, api, address);
    std::fs::write(&config_file, config).expect("write Caddyfile");
    let child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config_file)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start caddy");
    Proxy {
        child,
        address,
        _dir: dir,
    }
    .ready()
    .await
}
