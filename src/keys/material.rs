//! Key material: public access IDs and 256-bit secrets from the OS CSPRNG.

use data_encoding::BASE32_NOPAD;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use rand::Rng;
use zeroize::{Zeroize, Zeroizing};

use super::KeyError;

/// Prefix of every access ID.
pub const ACCESS_KEY_ID_PREFIX: &str = "AKW";
/// Number of base32 characters after [`ACCESS_KEY_ID_PREFIX`] (100 random bits).
pub const ACCESS_KEY_ID_RANDOM_LEN: usize = 20;
/// Total length of an access ID.
pub const ACCESS_KEY_ID_LEN: usize = ACCESS_KEY_ID_PREFIX.len() + ACCESS_KEY_ID_RANDOM_LEN;
/// Bytes of entropy in a secret.
pub const SECRET_KEY_BYTES: usize = 32;
/// Length of a secret's text form (unpadded RFC 4648 base32 of 32 bytes).
pub const SECRET_KEY_LEN: usize = 52;

/// RFC 4648 base32 alphabet.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Fills `dest` from the operating system's CSPRNG.
pub(crate) fn fill_from_os(dest: &mut [u8]) {
    // why: an OS RNG failure leaves no safe way to issue keys; `UnwrapErr` panics rather than
    // returning predictable bytes, exactly like `rand::rng()` does.
    UnwrapErr(SysRng).fill_bytes(dest);
}

fn is_base32_char(c: u8) -> bool {
    c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)
}

/// Public identifier of one issuance (`AKW` + base32). Safe to log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessKeyId(String);

impl AccessKeyId {
    /// A fresh random ID.
    pub fn generate() -> Self {
        let mut random = [0u8; ACCESS_KEY_ID_RANDOM_LEN];
        fill_from_os(&mut random);
        let mut id = String::with_capacity(ACCESS_KEY_ID_LEN);
        id.push_str(ACCESS_KEY_ID_PREFIX);
        // why: 32 divides 256, so masking each byte to 5 bits keeps every character uniform.
        id.extend(
            random
                .iter()
                .map(|byte| char::from(BASE32_ALPHABET[usize::from(byte & 0x1f)])),
        );
        Self(id)
    }

    /// Parses and validates a presented or stored ID.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let random = s
            .strip_prefix(ACCESS_KEY_ID_PREFIX)
            .ok_or(KeyError::MalformedAccessKeyId)?;
        if random.len() != ACCESS_KEY_ID_RANDOM_LEN || !random.bytes().all(is_base32_char) {
            return Err(KeyError::MalformedAccessKeyId);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AccessKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AccessKeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A 256-bit secret in its text form. Has no `Debug`/`Display`; zeroized on drop.
pub struct SecretKey(Zeroizing<String>);

impl SecretKey {
    /// A fresh secret from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_KEY_BYTES]);
        fill_from_os(bytes.as_mut_slice());
        Self(Zeroizing::new(BASE32_NOPAD.encode(bytes.as_slice())))
    }

    /// Wraps a presented or stored secret after checking its format.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.len() != SECRET_KEY_LEN || !s.bytes().all(is_base32_char) {
            return Err(KeyError::MalformedSecret);
        }
        // why: decoding rejects non-canonical text (non-zero trailing bits), so each secret has
        // exactly one accepted spelling.
        let mut bytes = [0u8; SECRET_KEY_BYTES];
        let decoded = BASE32_NOPAD.decode_mut(s.as_bytes(), &mut bytes);
        bytes.zeroize();
        match decoded {
            Ok(SECRET_KEY_BYTES) => Ok(Self(Zeroizing::new(s.to_owned()))),
            _ => Err(KeyError::MalformedSecret),
        }
    }

    /// The secret text, for writing into the Secret or hashing. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_id_has_prefix_and_base32_body() {
        let id = AccessKeyId::generate();
        assert_eq!(id.as_str().len(), ACCESS_KEY_ID_LEN);
        assert!(id.as_str().starts_with("AKW"));
        assert!(id.as_str()[3..].bytes().all(is_base32_char));
        assert_eq!(id.to_string(), id.as_str());
    }

    #[test]
    fn generated_id_round_trips_through_parse() {
        let id = AccessKeyId::generate();
        assert_eq!(AccessKeyId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.as_str().parse::<AccessKeyId>(), Ok(id));
    }

    #[test]
    fn generated_ids_are_unique() {
        let ids: HashSet<_> = (0..10_000).map(|_| AccessKeyId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn generated_ids_use_the_whole_alphabet() {
        let seen: HashSet<u8> = (0..500)
            .flat_map(|_| AccessKeyId::generate().as_str().as_bytes()[3..].to_vec())
            .collect();
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let valid = AccessKeyId::generate();
        let body = &valid.as_str()[3..];
        for bad in [
            String::new(),
            "AKW".to_owned(),
            format!("AKX{body}"),
            format!("akw{body}"),
            format!("AKW{}", &body[1..]),
            format!("AKW{body}A"),
            format!("AKW{}1", &body[1..]),
            format!("AKW{}a", &body[1..]),
            format!("AKW{}=", &body[1..]),
            format!(" AKW{body}"),
            format!("AKW{}é", &body[2..]),
        ] {
            assert_eq!(
                AccessKeyId::parse(&bad),
                Err(KeyError::MalformedAccessKeyId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_secret_is_52_base32_chars() {
        let secret = SecretKey::generate();
        assert_eq!(secret.expose().len(), SECRET_KEY_LEN);
        assert!(secret.expose().bytes().all(is_base32_char));
    }

    #[test]
    fn generated_secret_round_trips_through_parse() {
        let secret = SecretKey::generate();
        let parsed = SecretKey::parse(secret.expose()).map(|s| s.expose().to_owned());
        assert_eq!(parsed, Ok(secret.expose().to_owned()));
    }

    #[test]
    fn generated_secrets_are_unique() {
        let secrets: HashSet<String> = (0..10_000)
            .map(|_| SecretKey::generate().expose().to_owned())
            .collect();
        assert_eq!(secrets.len(), 10_000);
    }

    #[test]
    fn malformed_secrets_are_rejected() {
        let valid = SecretKey::generate();
        let text = valid.expose();
        for bad in [
            String::new(),
            text[1..].to_owned(),
            format!("{text}A"),
            text.to_lowercase(),
            format!("{}=", &text[1..]),
            format!("{}1", &text[1..]),
            // Non-canonical: the last character carries non-zero padding bits.
            format!("{}B", &text[..SECRET_KEY_LEN - 1]),
        ] {
            assert!(
                matches!(SecretKey::parse(&bad), Err(KeyError::MalformedSecret)),
                "{bad:?}"
            );
        }
    }
}
