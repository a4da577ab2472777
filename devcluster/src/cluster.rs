//! The `DevCluster` handle: start the server, get clients and kubeconfigs, shut down on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::auth::authn::Authenticator;
use crate::auth::rbac::Rbac;
use crate::auth::{AlwaysAllow, AuthorizationMode, Authorizer};
use crate::builtin::builtin_types;
use crate::faults::Faults;
use crate::registry::Registry;
use crate::server::Server;
use crate::store::{storage_key, Store, WriteContext};

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_capacity: 100_000,
            bookmark_interval: Duration::from_secs(10),
            authorization: AuthorizationMode::Rbac,
        }
    }
}

/// A running in-memory Kubernetes API server; dropping it shuts it down.
pub struct DevCluster {
    addr: SocketAddr,
    faults: Faults,
    shutdown: Option<oneshot::Sender<()>>,
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
        let store = Arc::new(Store::new(options.history_capacity));
        let registry = Arc::new(Registry::new(builtin_types()));
        create_initial_namespaces(&store, &registry);
        create_initial_services(&store, &registry);
        crate::apiservices::sync(&mut store.lock(), &registry);
        let faults = Faults::new(store.clone());
        let server = Arc::new(Server {
            store: store.clone(),
            registry,
            faults: faults.clone(),
            url: format!("http://{addr}"),
            bookmark_interval: options.bookmark_interval,
            authenticator: Authenticator::new(),
            authorizer: match options.authorization {
                AuthorizationMode::Rbac => Arc::new(Rbac::default()) as Arc<dyn Authorizer>,
                AuthorizationMode::AlwaysAllow => Arc::new(AlwaysAllow),
            },
        });
        let (shutdown, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, server, stopped));
        Ok(Self {
            addr,
            faults,
            shutdown: Some(shutdown),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube client talking to this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, Error> {
        let uri = self
            .url()
            .parse::<http::Uri>()
            .map_err(|err| Error::RenderKubeconfig(err.to_string()))?;
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).map_err(Error::Client)
    }

    /// A kubeconfig with one context, `devcluster`, pointing at this server.
    pub fn kubeconfig(&self) -> Result<kube::config::Kubeconfig, Error> {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "devcluster", "cluster": { "server": self.url() } }],
            "users": [{ "name": "devcluster", "user": {} }],
            "contexts": [{ "name": "devcluster", "context": { "cluster": "devcluster", "user": "devcluster", "namespace": "default" } }],
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
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
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
async fn serve(listener: TcpListener, server: Arc<Server>, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    let gc_store = server.store.clone();
    connections.spawn(async move {
        let wakeup = gc_store.gc_wakeup();
        loop {
            wakeup.notified().await;
            gc_store.lock().collect_garbage();
        }
    });
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| server.clone().handle(req));
                    if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(%err, "connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}
