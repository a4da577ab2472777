//! Real nginx and Caddy processes on free loopback ports, with configs generated into a temp
//! dir, in front of a tiny backend that echoes what the proxy forwarded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// The binary `name` from `PATH` or `/usr/sbin`; `None` (with a loud message) when missing and
/// `KEYWARDEN_REQUIRE_PROXIES` is unset; panics when missing and it is set.
pub fn proxy_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var_os("KEYWARDEN_REQUIRE_PROXIES").is_some() {
            panic!("{name} is required (KEYWARDEN_REQUIRE_PROXIES is set) but not installed; run scripts/ensure-proxies.sh");
        }
        eprintln!(
            "\n!!!!!!!! SKIPPED: {name} is not installed; run scripts/ensure-proxies.sh !!!!!!!!\n"
        );
    }
    found
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("bound address").port()
}

/// Waits up to 10 s for `process` to accept connections; panics with its log if it does not.
async fn wait_for_port(process: &mut ProxyProcess, what: &str, log: &Path) {
    let port = process.port;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(exit)) = process.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited ({exit}) before listening; log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not listen on {port} within 10 s; log:\n{log}");
}

/// A backend answering 200 `backend` and echoing the keywarden headers the proxy forwarded.
pub async fn start_backend() -> SocketAddr {
    async fn echo(headers: HeaderMap) -> (HeaderMap, &'static str) {
        let mut echoed = HeaderMap::new();
        for (name, value) in &headers {
            if let Some(rest) = name.as_str().strip_prefix("x-keywarden-") {
                let echo_name = format!("x-echo-{rest}");
                if let Ok(echo_name) = axum::http::HeaderName::from_bytes(echo_name.as_bytes()) {
                    echoed.insert(echo_name, value.clone());
                }
            }
        }
        (echoed, "backend")
    }
    let app = axum::Router::new().fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("backend serves") });
    addr
}

/// A proxy process, killed on drop.
pub struct ProxyProcess {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx `location` block that asks the verifier, with an optional required scope.
fn nginx_auth_location(name: &str, verifier: SocketAddr, scope: Option<&str>) -> String {
    let query = scope.map(|s| format!("?scope={s}")).unwrap_or_default();
    format!(
        r#"
        location = /_auth_{name} {{
            internal;
            proxy_pass http://{verifier}/v1/check{query};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}"#
    )
}

/// The nginx `location` that protects `path` with the auth location `name`.
fn nginx_protected_location(path: &str, name: &str, backend: SocketAddr) -> String {
    format!(
        r#"
        location {path} {{
            auth_request /_auth_{name};
            auth_request_set $keywarden_key_id $upstream_http_x_keywarden_key_id;
            auth_request_set $keywarden_owner $upstream_http_x_keywarden_owner;
            auth_request_set $keywarden_allow_origin $upstream_http_access_control_allow_origin;
            add_header Access-Control-Allow-Origin $keywarden_allow_origin always;
            proxy_set_header X-Keywarden-Key-Id $keywarden_key_id;
            proxy_set_header X-Keywarden-Owner $keywarden_owner;
            proxy_pass http://{backend};
        }}"#
    )
}

/// Starts nginx with `auth_request` to `verifier` in front of `backend`: `/` needs a valid key,
/// `/logs/` also the scope `logs:view`.
pub async fn start_nginx(binary: &Path, verifier: SocketAddr, backend: SocketAddr) -> ProxyProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().display().to_string();
    let port = free_port();
    let config = format!(
        r#"
master_process off;
daemon off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {auth_any}
        {auth_logs}
        {protected_logs}
        {protected_root}
    }}
}}
"#,
        auth_any = nginx_auth_location("any", verifier, None),
        auth_logs = nginx_auth_location("logs", verifier, Some("logs:view")),
        protected_logs = nginx_protected_location("/logs/", "logs", backend),
        protected_root = nginx_protected_location("/", "any", backend),
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).expect("write nginx.conf");
    // why: nginx reports config errors on stderr, before it opens its error_log.
    let log = dir.path().join("stderr.log");
    let log_file = std::fs::File::create(&log).expect("nginx log");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start nginx");
    let mut process = ProxyProcess {
        child,
        port,
        _dir: dir,
    };
    wait_for_port(&mut process, "nginx", &log).await;
    process
}

/// Starts Caddy with `forward_auth` to `verifier` in front of `backend`, with the same routes
/// as [`start_nginx`].
pub async fn start_caddy(binary: &Path, verifier: SocketAddr, backend: SocketAddr) -> ProxyProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let forward_auth = |scope: &str| {
        format!(
            r#"forward_auth {verifier} {{
                uri /v1/check{scope}
                copy_headers X-Keywarden-Key-Id X-Keywarden-Owner
            }}
            reverse_proxy {backend}"#
        )
    };
    let caddyfile = format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    handle /logs/* {{
        {logs}
    }}
    handle {{
        {any}
    }}
}}
"#,
        logs = forward_auth("?scope=logs:view"),
        any = forward_auth(""),
    );
    let config_path = dir.path().join("Caddyfile");
    std::fs::write(&config_path, caddyfile).expect("write Caddyfile");
    let log = dir.path().join("caddy.log");
    let log_file = std::fs::File::create(&log).expect("caddy log");
    let child = Command::new(binary)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config_path)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start caddy");
    let mut process = ProxyProcess {
        child,
        port,
        _dir: dir,
    };
    wait_for_port(&mut process, "caddy", &log).await;
    process
}
