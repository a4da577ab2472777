//! Pure domain logic of access keys: identifiers, secrets, tokens, hashing, durations, schedules,
//! per-owner limits, origins and scopes. No `kube` imports: everything here is unit-testable with
//! plain values.

pub mod duration;
pub mod hash;
pub mod limits;
pub mod material;
pub mod origin;
pub mod schedule;
pub mod scope;
pub mod seal;
pub mod token;

/// Why a key-domain operation failed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid duration {0:?}: expected a number followed by s, m, h or d (e.g. 90s, 5m, 36h, 180d), or 0")]
    InvalidDuration(String),
    #[error("malformed access key ID")]
    MalformedAccessKeyId,
    #[error("malformed secret")]
    MalformedSecret,
    #[error("malformed token")]
    MalformedToken,
    #[error("token checksum mismatch")]
    TokenChecksum,
    #[error("invalid argon2 parameters: {0}")]
    HashParams(String),
    #[error("record key must be 32 bytes, found {0}")]
    MalformedRecordKey(usize),
    #[error("hashing failed: {0}")]
    Hash(String),
}
