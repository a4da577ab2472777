//! The bearer token form: a fixed prefix, the access ID, the secret and a checksum, so that secret
//! scanners can recognise a leaked keywarden key offline.

use zeroize::Zeroizing;

use super::material::{AccessKeyId, SecretKey};
use super::KeyError;

/// Prefix of every bearer token.
pub const TOKEN_PREFIX: &str = "kwk_";

/// Encodes the bearer token for an issuance.
pub fn encode_token(_id: &AccessKeyId, _secret: &SecretKey) -> Zeroizing<String> {
    todo!()
}

/// Parses a bearer token, checking prefix and checksum before anything else.
pub fn parse_token(_token: &str) -> Result<(AccessKeyId, SecretKey), KeyError> {
    todo!()
}
