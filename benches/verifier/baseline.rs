//! The baseline server: hyper's HTTP/1 server doing the essential work of a cached check and
//! nothing else: decode `Authorization: Basic`, look the access ID up in a hash map, and compare
//! an HMAC-SHA256 of the presented secret with the stored one in constant time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// One known key: the MAC its secret must produce.
struct Known {
    keyed: Hmac<Sha256>,
    macs: HashMap<String, [u8; 32]>,
}

impl Known {
    fn mac(&self, id: &str, secret: &str) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether the request presents the known secret for a known ID.
    fn admits(&self, request: &Request<Incoming>) -> bool {
        let Some(value) = request.headers().get(hyper::header::AUTHORIZATION) else {
            return false;
        };
        let Some(encoded) = value.to_str().ok().and_then(|v| v.strip_prefix("Basic ")) else {
            return false;
        };
        let mut decoded = [0u8; 128];
        let Ok(len) = base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut decoded)
        else {
            return false;
        };
        let Some((id, secret)) = std::str::from_utf8(&decoded[..len])
            .ok()
            .and_then(|text| text.split_once(':'))
        else {
            return false;
        };
        self.macs
            .get(id)
            .is_some_and(|stored| bool::from(stored.ct_eq(&self.mac(id, secret))))
    }
}

/// Serves the baseline on `listener`, printing the one valid credential before `READY`.
pub async fn serve(listener: tokio::net::TcpListener) {
    let (id, secret) = (AccessKeyId::generate(), SecretKey::generate());
    let mut known = Known {
        keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(&rand_key()).expect("any key length"),
        macs: HashMap::new(),
    };
    let mac = known.mac(id.as_str(), secret.expose());
    known.macs.insert(id.to_string(), mac);
    let pair = format!("{id}:{}", secret.expose());
    println!(
        "AUTH Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    println!("READY");
    let known = Arc::new(known);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let known = known.clone();
        tokio::spawn(async move {
            let check = hyper::service::service_fn(move |request| {
                let status = if known.admits(&request) {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                };
                let mut response = Response::new(Empty::<Bytes>::new());
                *response.status_mut() = status;
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), check)
                .await;
        });
    }
}

fn rand_key() -> [u8; 64] {
    use rand::Rng;
    let mut key = [0u8; 64];
    rand::rng().fill_bytes(&mut key);
    key
}
