//! Compact JWS tokens signed with ES256 (ECDSA P-256, SHA-256), as ServiceAccount tokens are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{json, Value};

/// The key pair could not be made.
#[derive(Debug, thiserror::Error)]
#[error("generating the ServiceAccount token signing key: {0}")]
pub struct SigningKeyError(String);

/// Why a token's signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("malformed token")]
    Malformed,
    // why: worded as go-jose, whose error kube-apiserver passes on.
    #[error("go-jose/go-jose: error in cryptographic primitive")]
    BadSignature,
}

/// Tokens whose signature checked out, before the cache of them is emptied.
const VERIFIED_CAPACITY: usize = 4096;

/// Signs and verifies tokens with one ES256 key made at start.
pub(crate) struct Signer {
    key: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
    /// Claims of tokens whose signature already checked out, by the whole token text.
    ///
    /// why: an ECDSA verification was the largest cost of a ServiceAccount's request; the
    /// same text signed by the same key (made at start, never replaced) always verifies the
    /// same way, and everything that can change (expiry, the ServiceAccount and bound object)
    /// is checked on every request after this.
    verified: Mutex<HashMap<String, Arc<Value>>>,
}

impl Signer {
    /// A signer with a fresh random key.
    pub(crate) fn generate() -> Result<Self, SigningKeyError> {
        let rng = SystemRandom::new();
        let algorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, &rng)
            .map_err(|err| SigningKeyError(err.to_string()))?;
        let key = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), &rng)
            .map_err(|err| SigningKeyError(err.to_string()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let key_id = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(Self {
            key,
            key_id,
            rng,
            verified: Mutex::default(),
        })
    }

    /// `header.payload.signature` for `claims`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, SigningKeyError> {
        let header = json!({ "alg": "ES256", "kid": self.key_id });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|err| SigningKeyError(err.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of `token` once its ES256 signature checks out against this key.
    pub(crate) fn verify(&self, token: &str) -> Result<Arc<Value>, VerifyError> {
        if let Some(claims) = self.already_verified(token) {
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_signature(token)?);
        let mut verified = self.verified_cache();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    /// The claims of `token` if its signature was verified before.
    pub(crate) fn already_verified(&self, token: &str) -> Option<Arc<Value>> {
        self.verified_cache().get(token).cloned()
    }

    fn verified_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Value>>> {
        // why: the map is only read or written whole-entry, so a poisoned one is consistent.
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn verify_signature(&self, token: &str) -> Result<Value, VerifyError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let claims = unverified_claims(token).ok_or(VerifyError::Malformed)?;
        let header = signing_input
            .split('.')
            .next()
            .and_then(decode_json)
            .ok_or(VerifyError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(VerifyError::BadSignature);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| VerifyError::Malformed)?;
        UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature)?;
        Ok(claims)
    }
}

/// The payload of a compact JWS without checking its signature (to see who issued it).
pub(crate) fn unverified_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    decode_json(payload).filter(Value::is_object)
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_yields_its_claims() {
        let signer = Signer::generate().expect("key");
        let claims = json!({ "iss": "me", "sub": "you" });
        let token = signer.sign(&claims).expect("signs");
        assert_eq!(signer.verify(&token), Ok(Arc::new(claims.clone())));
        assert_eq!(signer.verify(&token), Ok(Arc::new(claims.clone())));
        assert_eq!(unverified_claims(&token), Some(claims));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let token = Signer::generate()
            .expect("key")
            .sign(&json!({ "iss": "me" }))
            .expect("signs");
        let other = Signer::generate().expect("key");
        assert_eq!(other.verify(&token), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_token_with_altered_claims_is_refused() {
        let signer = Signer::generate().expect("key");
        let token = signer.sign(&json!({ "sub": "alice" })).expect("signs");
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(json!({ "sub": "admin" }).to_string()),
            parts[2]
        );
        assert_eq!(signer.verify(&forged), Err(VerifyError::BadSignature));
    }

    #[test]
    fn text_that_is_not_a_jws_is_malformed() {
        let signer = Signer::generate().expect("key");
        assert_eq!(signer.verify("not-a-token"), Err(VerifyError::Malformed));
        assert_eq!(unverified_claims("a.b"), None);
    }
}
