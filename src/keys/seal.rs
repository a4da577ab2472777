//! Seals the controller's own records kept where others can write (a key's Secret
//! annotations): an HMAC-SHA256 under a key only the controller holds, so a record can be told
//! apart from one written or replayed by anybody else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::KeyError;

/// Bytes of a record key.
pub const RECORD_KEY_LEN: usize = 32;
/// Prefix of a seal; names the algorithm so it can change later.
const SEAL_PREFIX: &str = "hs256.";

/// The controller's record key. Neither `Debug` nor `Display`; zeroized on drop.
pub struct RecordKey(Zeroizing<[u8; RECORD_KEY_LEN]>);

impl RecordKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; RECORD_KEY_LEN]);
        super::material::fill_from_os(key.as_mut());
        Self(key)
    }

    /// A key read back from storage; exactly [`RECORD_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let key: [u8; RECORD_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::MalformedRecordKey(bytes.len()))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// The key's bytes, to store it.
    pub fn expose(&self) -> &[u8] {
        self.0.as_ref()
    }

    fn mac(&self, fields: &[&str]) -> Hmac<Sha256> {
        // why: HMAC zero-pads a short key to the block size; doing it here avoids a fallible
        // constructor, and the MAC is the one of the 32-byte key.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..RECORD_KEY_LEN].copy_from_slice(self.0.as_ref());
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
        for field in fields {
            // why: length-prefixed, so no two field lists hash the same bytes.
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// The seal of a record made of `fields`, in order.
    pub fn seal(&self, fields: &[&str]) -> String {
        let tag = self.mac(fields).finalize().into_bytes();
        format!("{SEAL_PREFIX}{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `seal` is this key's seal of `fields` (compared in constant time).
    pub fn verify(&self, fields: &[&str], seal: &str) -> bool {
        let Some(tag) = seal
            .strip_prefix(SEAL_PREFIX)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        else {
            return false;
        };
        self.mac(fields).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_only_for_the_same_fields_and_key() {
        let key = RecordKey::generate();
        let seal = key.seal(&["uid-1", "AKW1", "2026-01-01T00:00:00Z"]);
        assert!(key.verify(&["uid-1", "AKW1", "2026-01-01T00:00:00Z"], &seal));
        assert!(!key.verify(&["uid-2", "AKW1", "2026-01-01T00:00:00Z"], &seal));
        assert!(!key.verify(&["uid-1", "AKW1", "2099-01-01T00:00:00Z"], &seal));
        assert!(!RecordKey::generate().verify(&["uid-1", "AKW1", "2026-01-01T00:00:00Z"], &seal));
    }

    #[test]
    fn field_boundaries_are_part_of_the_seal() {
        let key = RecordKey::generate();
        assert!(!key.verify(&["ab", "c"], &key.seal(&["a", "bc"])));
    }

    #[test]
    fn malformed_seals_and_keys_are_refused() {
        let key = RecordKey::generate();
        assert!(!key.verify(&["x"], ""));
        assert!(!key.verify(&["x"], "hs256.!!"));
        assert!(!key.verify(&["x"], &key.seal(&["x"])[6..]));
        assert!(RecordKey::from_bytes(&[0; 16]).is_err());
        let copy = RecordKey::from_bytes(key.expose()).unwrap();
        assert!(copy.verify(&["x"], &key.seal(&["x"])));
    }
}
