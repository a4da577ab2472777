//! A TCP proxy a test can cut and heal: a network partition between one client (a verifier)
//! and the API server. TLS passes through it untouched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards every connection to `target` while healed; once cut, open connections are dropped
/// and new ones closed at once, until healed.
pub struct Partition {
    pub addr: SocketAddr,
    healed: Arc<AtomicBool>,
    /// Cancelled on a cut: ends every forwarded connection.
    connections: Arc<Mutex<CancellationToken>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Partition {
    /// Starts forwarding from a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the partition proxy");
        let addr = listener.local_addr().expect("proxy address");
        let healed = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        let accepting = tokio::spawn(accept(
            listener,
            target,
            healed.clone(),
            connections.clone(),
        ));
        Self {
            addr,
            healed,
            connections,
            accepting,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.healed.store(false, Ordering::SeqCst);
        let mut current = self.connections.lock().expect("connections lock");
        current.cancel();
        *current = CancellationToken::new();
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.healed.store(true, Ordering::SeqCst);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.accepting.abort();
        self.connections.lock().expect("connections lock").cancel();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    healed: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        // why: an accepted connection closed at once reads as a refused one to the client.
        if !healed.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let cut = connections.lock().expect("connections lock").clone();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let (mut client, mut upstream) = (client, upstream);
            tokio::select! {
                () = cut.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}
