//! argon2id hashing of secrets (PHC strings stored in `status.secretHash`).

use super::material::SecretKey;
use super::KeyError;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommended argon2id parameters (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes a secret with a fresh random salt.
pub fn hash_secret(_secret: &SecretKey, _params: &HashParams) -> Result<String, KeyError> {
    todo!()
}

/// Whether `secret` matches the PHC string `hash` (constant-time; false on a malformed hash).
pub fn verify_secret(_secret: &SecretKey, _hash: &str) -> bool {
    todo!()
}
