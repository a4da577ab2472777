//! Fixtures shared by the verifier and proxy tests: key builders and a verifier served on a
//! free loopback port.
#![allow(dead_code)]

pub mod cluster;
pub mod contracts;
pub mod examples;
pub mod partition;
pub mod proxies;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use keywarden::api::{
    AccessKey, AccessKeySpec, AccessKeyStatus, KeyOwner, OwnerKind, Phase, PreviousKey,
};
use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use keywarden::keys::token::encode_token;
use keywarden::verifier::{serve_http, AppState, Forwarding, HttpLimits, Settings, Verifier};
use tokio_util::sync::CancellationToken;

/// Cheap argon2id parameters: tests check behaviour, not hashing cost.
pub const TEST_HASH_PARAMS: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// One issued credential: the pair a client presents.
pub struct Issued {
    pub id: AccessKeyId,
    pub secret: SecretKey,
}

impl Issued {
    pub fn generate() -> Self {
        Self {
            id: AccessKeyId::generate(),
            secret: SecretKey::generate(),
        }
    }

    pub fn hash(&self) -> String {
        hash_secret(&self.secret, &TEST_HASH_PARAMS).expect("hashing works")
    }

    /// `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.id, self.secret.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// `Authorization: Bearer` value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", encode_token(&self.id, &self.secret).as_str())
    }

    /// The credentials as the verifier reads them.
    pub fn presented(&self) -> keywarden::verifier::Presented {
        keywarden::verifier::Presented {
            access_key_id: self.id.clone(),
            secret: SecretKey::parse(self.secret.expose()).expect("valid secret"),
        }
    }

    /// The same ID with another secret.
    pub fn with_wrong_secret(&self) -> Issued {
        Issued {
            id: self.id.clone(),
            secret: SecretKey::generate(),
        }
    }
}

/// Builds an `AccessKey` with the status the controller would write.
pub struct KeyBuilder {
    key: AccessKey,
}

impl KeyBuilder {
    /// An active key of user `alice` holding `issued`.
    pub fn new(namespace: &str, name: &str, issued: &Issued) -> Self {
        let spec = AccessKeySpec {
            owner: KeyOwner {
                kind: OwnerKind::User,
                name: "alice".into(),
            },
            display_name: None,
            description: None,
            scopes: Vec::new(),
            owner_groups: Vec::new(),
            allowed_origins: Vec::new(),
            active: true,
            rotate_generation: 0,
            reactivate_generation: 0,
            policy_name: None,
            rollout: None,
            secret: Default::default(),
        };
        let mut key = AccessKey::new(name, spec);
        key.metadata.namespace = Some(namespace.into());
        key.status = Some(AccessKeyStatus {
            phase: Some(Phase::Active),
            access_key_id: Some(issued.id.to_string()),
            secret_hash: Some(issued.hash()),
            // why: the verifier serves only what the controller granted; a key without scopes
            // is granted every permission of its owner.
            granted_scopes: Some(vec!["*".into()]),
            ..AccessKeyStatus::default()
        });
        Self { key }
    }

    /// Requested scopes, granted as the controller grants those the owner holds.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.key.spec.scopes = scopes.iter().map(|s| s.to_string()).collect();
        self.status().granted_scopes = Some(self.key.spec.scopes.clone());
        self
    }

    /// Scopes the controller granted (e.g. fewer than requested: the owner lacks the others).
    pub fn granted_scopes(mut self, scopes: &[&str]) -> Self {
        self.status().granted_scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn origins(mut self, origins: &[&str]) -> Self {
        self.key.spec.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn spec_active(mut self, active: bool) -> Self {
        self.key.spec.active = active;
        self
    }

    pub fn phase(mut self, phase: Option<Phase>) -> Self {
        self.status().phase = phase;
        self
    }

    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.status().expires_at = Some(at);
        self
    }

    pub fn service_account(mut self, name: &str) -> Self {
        self.key.spec.owner = KeyOwner {
            kind: OwnerKind::ServiceAccount,
            name: name.into(),
        };
        self
    }

    /// Adds a previous credential valid until `valid_until`.
    pub fn previous(mut self, issued: &Issued, valid_until: DateTime<Utc>) -> Self {
        let hash = issued.hash();
        self.status().previous_keys.push(PreviousKey {
            access_key_id: issued.id.to_string(),
            secret_hash: hash,
            valid_until,
        });
        self
    }

    pub fn build(self) -> AccessKey {
        self.key
    }

    fn status(&mut self) -> &mut AccessKeyStatus {
        self.key.status.get_or_insert_with(Default::default)
    }
}

/// `now` shifted by whole seconds.
pub fn seconds_from_now(seconds: i64) -> DateTime<Utc> {
    Utc::now() + Duration::seconds(seconds)
}

/// Believes `method_header` and the forwarded addresses of a proxy on 127.0.0.1.
pub fn loopback_proxy(method_header: Option<&'static str>) -> Forwarding {
    Forwarding {
        method_header: method_header.map(axum::http::HeaderName::from_static),
        trusted_proxies: vec!["127.0.0.1".parse().expect("loopback network")],
    }
}

/// A verifier with an in-memory index (no cluster) served on a free loopback port.
pub struct LocalVerifier {
    pub verifier: Arc<Verifier>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl LocalVerifier {
    /// A verifier that believes no forwarded header.
    pub async fn start(settings: Settings) -> Self {
        Self::start_with(settings, Forwarding::default(), HttpLimits::default()).await
    }

    /// A verifier behind a proxy on loopback that reports the method in `method_header`.
    pub async fn behind_proxy(settings: Settings, method_header: Option<&'static str>) -> Self {
        Self::start_with(
            settings,
            loopback_proxy(method_header),
            HttpLimits::default(),
        )
        .await
    }

    pub async fn start_with(
        settings: Settings,
        forwarding: Forwarding,
        limits: HttpLimits,
    ) -> Self {
        let verifier = Arc::new(Verifier::new(&settings));
        verifier.mark_ready();
        let state = AppState {
            verifier: verifier.clone(),
            forwarding: Arc::new(forwarding),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let server = tokio::spawn(async move {
            serve_http(listener, state, limits, CancellationToken::new())
                .await
                .expect("verifier serves");
        });
        Self {
            verifier,
            addr,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for LocalVerifier {
    fn drop(&mut self) {
        self.server.abort();
    }
}
