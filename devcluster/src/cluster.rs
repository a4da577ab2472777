//! The `DevCluster` handle: start the server, get clients and kubeconfigs, shut down on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::authn::{
    self, Authenticator, Clock, SigningKeyError, StaticToken, TokenFileError,
};
use crate::auth::rbac::Rbac;
use crate::auth::{AlwaysAllow, AuthorizationMode, Authorizer, UserInfo, ADMIN_USER};
use crate::builtin::builtin_types;
use crate::faults::Faults;
use crate::registry::Registry;
use crate::server::counts::RequestCount;
use crate::server::Server;
use crate::store::{storage_key, Store, WriteContext};
use crate::tls::{Tls, TlsError};

/// Why devcluster could not start or produce a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("building the kube client: {0}")]
    Client(#[source] kube::Error),
    #[error("writing the kubeconfig to {path}: {source}")]
    WriteKubeconfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rendering the kubeconfig: {0}")]
    RenderKubeconfig(String),
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    #[error("making the serving certificate: {0}")]
    Tls(#[from] TlsError),
    #[error("no user \"{0}\" has a token (add one with add_user or the token file)")]
    UnknownUser(String),
}

/// How to run a devcluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// How many changes are kept for watches to resume from.
    pub history_capacity: usize,
    /// How often idle watches that allow bookmarks receive one.
    pub bookmark_interval: Duration,
    /// RBAC (default) or allow everything.
    pub authorization: AuthorizationMode,
    /// Static bearer tokens in kube-apiserver's `--token-auth-file` CSV format.
    pub token_auth_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_capacity: 100_000,
            bookmark_interval: Duration::from_secs(10),
            authorization: AuthorizationMode::Rbac,
            token_auth_file: None,
        }
    }
}

/// A running in-memory Kubernetes API server; dropping it shuts it down.
pub struct DevCluster {
    addr: SocketAddr,
    tls: Tls,
    faults: Faults,
    server: Arc<Server>,
    /// The accept loop while serving; `None` while stopped.
    serving: std::sync::Mutex<Option<Serving>>,
}

/// A running accept loop and the way to end it.
struct Serving {
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl DevCluster {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Result<Self, Error> {
        Self::start_with(Options {
            addr,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Result<Self, Error> {
        Self::start_serving(options, None).await
    }

    /// Starts with `authorizer` answering every authorization question, for tests that
    /// observe them.
    #[cfg(test)]
    pub(crate) async fn start_with_authorizer(
        options: Options,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Self, Error> {
        Self::start_serving(options, Some(authorizer)).await
    }

    /// The store, for tests that write behind a request's back.
    #[cfg(test)]
    pub(crate) fn store(&self) -> Arc<crate::store::Store> {
        self.server.store.clone()
    }

    async fn start_serving(
        options: Options,
        authorizer: Option<Arc<dyn Authorizer>>,
    ) -> Result<Self, Error> {
        let mut tokens = match &options.token_auth_file {
            Some(path) => authn::token_file::read(path)?,
            None => Vec::new(),
        };
        tokens.insert(
            0,
            StaticToken {
                token: new_token(),
                user: UserInfo::admin(),
            },
        );
        let authenticator = Authenticator::new(Clock::default(), tokens)?;
        let listener = TcpListener::bind(options.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: options.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.addr,
            source,
        })?;
        let tls = Tls::generate(addr.ip())?;
        let store = Arc::new(Store::new(options.history_capacity));
        let registry = Arc::new(Registry::new(builtin_types()));
        create_initial_namespaces(&store, &registry);
        create_initial_services(&store, &registry);
        crate::apiservices::sync(&mut store.lock(), &registry);
        let rbac = Rbac::install(&store);
        let faults = Faults::new(store.clone());
        let server = Arc::new(Server {
            store: store.clone(),
            registry,
            faults: faults.clone(),
            url: format!("https://{addr}"),
            bookmark_interval: options.bookmark_interval,
            authenticator,
            authorizer: authorizer.unwrap_or_else(|| match options.authorization {
                AuthorizationMode::Rbac => rbac.clone() as Arc<dyn Authorizer>,
                AuthorizationMode::AlwaysAllow => Arc::new(AlwaysAllow),
            }),
            rbac,
            requests: Default::default(),
        });
        let serving = Serving::start(listener, server.clone(), tls.acceptor.clone());
        Ok(Self {
            addr,
            tls,
            faults,
            server,
            serving: std::sync::Mutex::new(Some(serving)),
        })
    }

    /// Stops serving, as an API server that went away: the port is closed and every
    /// connection (and watch) dropped; the stored objects are kept for [`DevCluster::restart`].
    pub async fn stop(&self) {
        let serving = self.lock_serving().take();
        if let Some(serving) = serving {
            let _ = serving.shutdown.send(());
            let _ = serving.task.await;
        }
    }

    /// Serves again on the same address, with the same objects, after [`DevCluster::stop`]
    /// (a no-op while serving).
    pub async fn restart(&self) -> Result<(), Error> {
        if self.lock_serving().is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr,
                source,
            })?;
        let serving = Serving::start(listener, self.server.clone(), self.tls.acceptor.clone());
        *self.lock_serving() = Some(serving);
        Ok(())
    }

    fn lock_serving(&self) -> std::sync::MutexGuard<'_, Option<Serving>> {
        self.serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `https://127.0.0.1:<port>`: the API, served with a certificate of [`DevCluster::ca_pem`].
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>`: the same port, spoken without TLS (the fault endpoints, and
    /// clients that cannot be given the CA).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The cluster CA's certificate (PEM), which signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube client acting as the admin, `kubernetes-admin` in `system:masters` (default
    /// namespace `default`).
    pub fn client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config()?).map_err(Error::Client)
    }

    /// The admin's client configuration, to adjust (impersonation, timeouts) before building a
    /// client from it.
    pub fn config(&self) -> Result<kube::Config, Error> {
        let token = self
            .server
            .authenticator
            .token_of(ADMIN_USER)
            .ok_or_else(|| Error::UnknownUser(ADMIN_USER.into()))?;
        self.config_for_token(Some(&token))
    }

    /// A client configuration sending `token` as bearer token, or no credentials at all.
    pub fn config_for_token(&self, token: Option<&str>) -> Result<kube::Config, Error> {
        let uri = self
            .url()
            .parse::<http::Uri>()
            .map_err(|err| Error::RenderKubeconfig(err.to_string()))?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(vec![self.tls.ca_der.clone()]);
        if let Some(token) = token {
            config.auth_info = serde_json::from_value(json!({ "token": token }))
                .map_err(|err| Error::RenderKubeconfig(err.to_string()))?;
        }
        Ok(config)
    }

    /// A kube client sending `token` as its bearer token.
    pub fn client_for_token(&self, token: &str) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config_for_token(Some(token))?).map_err(Error::Client)
    }

    /// A kube client authenticated as `username` (added with [`DevCluster::add_user`] or from
    /// the token file).
    pub fn client_as(&self, username: &str) -> Result<kube::Client, Error> {
        let token = self
            .server
            .authenticator
            .token_of(username)
            .ok_or_else(|| Error::UnknownUser(username.into()))?;
        self.client_for_token(&token)
    }

    /// A kube client without credentials: `system:anonymous`.
    pub fn anonymous_client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config_for_token(None)?).map_err(Error::Client)
    }

    /// Adds user `username` in `groups` (plus `system:authenticated`) with a new static bearer
    /// token, and returns the token. The kubeconfig gets a context named after the user.
    pub fn add_user(&self, username: &str, groups: &[&str]) -> String {
        let token = new_token();
        self.server.authenticator.add_token(StaticToken {
            token: token.clone(),
            user: UserInfo {
                username: username.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..UserInfo::default()
            },
        });
        token
    }

    /// The clock ServiceAccount tokens expire by; `advance` it instead of waiting.
    pub fn clock(&self) -> Clock {
        self.server.authenticator.clock().clone()
    }

    /// A kubeconfig whose current context, `devcluster`, is the admin (`kubernetes-admin`),
    /// plus one context per user with a static token, named after the user.
    pub fn kubeconfig(&self) -> Result<kube::config::Kubeconfig, Error> {
        let users = self.server.authenticator.users();
        let contexts = users.iter().map(|(user, _)| {
            let name = if user == ADMIN_USER { "devcluster" } else { user.as_str() };
            json!({ "name": name, "context": { "cluster": "devcluster", "user": user, "namespace": "default" } })
        });
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "devcluster", "cluster": {
                "server": self.url(),
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&self.tls.ca_pem),
            } }],
            "users": users.iter().map(|(user, token)| json!({ "name": user, "user": { "token": token } })).collect::<Vec<_>>(),
            "contexts": contexts.collect::<Vec<_>>(),
            "current-context": "devcluster",
        });
        serde_json::from_value(config).map_err(|err| Error::RenderKubeconfig(err.to_string()))
    }

    /// Writes the kubeconfig as YAML to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let yaml = serde_yaml::to_string(&self.kubeconfig()?)
            .map_err(|err| Error::RenderKubeconfig(err.to_string()))?;
        std::fs::write(path, yaml).map_err(|source| Error::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Resource requests served so far, by user, verb and resource (as `/_devcluster/requests`).
    pub fn request_counts(&self) -> Vec<RequestCount> {
        self.server.requests.snapshot()
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(serving) = self.lock_serving().take() {
            let _ = serving.shutdown.send(());
        }
    }
}

impl Serving {
    fn start(listener: TcpListener, server: Arc<Server>, tls: TlsAcceptor) -> Self {
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, server, tls, stopped));
        Self { shutdown, task }
    }
}

/// A random bearer token (244 random bits, hex).
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn create_initial_namespaces(store: &Store, registry: &Registry) {
    let served = registry.snapshot();
    let Some(rt) = served.find("", "v1", "namespaces") else {
        return;
    };
    let key = storage_key(rt);
    let ctx = WriteContext {
        manager: "devcluster".into(),
        now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        managed_fields_done: true,
        ..WriteContext::default()
    };
    let mut state = store.lock();
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let namespace =
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        if let Err(err) = state.create(rt, &key, "", namespace, &ctx) {
            tracing::warn!(%err, name, "creating an initial namespace");
        }
    }
}

/// Serves one connection: TLS when it opens with a handshake, else plain HTTP.
async fn serve_connection(stream: TcpStream, server: Arc<Server>, tls: TlsAcceptor) {
    let service = service_fn(move |req| server.clone().handle(req));
    let mut first = [0u8; 1];
    let served = match stream.peek(&mut first).await {
        Ok(1) if first[0] == crate::tls::TLS_HANDSHAKE => match tls.accept(stream).await {
            Ok(stream) => {
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            }
            Err(err) => {
                tracing::debug!(%err, "TLS handshake failed");
                return;
            }
        },
        Ok(_) => {
            http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
        Err(err) => {
            tracing::debug!(%err, "reading the first byte");
            return;
        }
    };
    if let Err(err) = served {
        tracing::debug!(%err, "connection ended");
    }
}

/// The `kubernetes` Service in `default`, as kube-apiserver creates it for itself.
fn create_initial_services(store: &Store, registry: &Registry) {
    let served = registry.snapshot();
    let Some(rt) = served.find("", "v1", "services") else {
        return;
    };
    let ctx = WriteContext {
        manager: "kube-apiserver".into(),
        now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        managed_fields_done: true,
        ..WriteContext::default()
    };
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": { "component": "apiserver", "provider": "kubernetes" },
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.1",
            "clusterIPs": ["10.96.0.1"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443 }],
        },
    });
    if let Err(err) = store
        .lock()
        .create(rt, &storage_key(rt), "default", service, &ctx)
    {
        tracing::warn!(%err, "creating the kubernetes Service");
    }
}

/// Accepts connections until shutdown; then every connection (and watch) is dropped.
async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    tls: TlsAcceptor,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    let gc_store = server.store.clone();
    let gc_admission = crate::admission::SystemAdmission::new(server.authorizer.clone());
    connections.spawn(async move {
        let wakeup = gc_store.gc_wakeup();
        loop {
            wakeup.notified().await;
            gc_store.lock().collect_garbage_admitted(&gc_admission);
        }
    });
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                let tls = tls.clone();
                connections.spawn(serve_connection(stream, server, tls));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}
