//! Key material: public access IDs and 256-bit secrets from the OS CSPRNG.

use super::KeyError;

/// Prefix of every access ID.
pub const ACCESS_KEY_ID_PREFIX: &str = "AKW";

/// Public identifier of one issuance (`AKW` + base32). Safe to log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessKeyId(String);

impl AccessKeyId {
    /// A fresh random ID.
    pub fn generate() -> Self {
        todo!()
    }

    /// Parses and validates a presented or stored ID.
    pub fn parse(_s: &str) -> Result<Self, KeyError> {
        todo!()
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

/// A 256-bit secret in its text form. Has no `Debug`/`Display`; zeroized on drop.
pub struct SecretKey(zeroize::Zeroizing<String>);

impl SecretKey {
    /// A fresh secret from the OS CSPRNG.
    pub fn generate() -> Self {
        todo!()
    }

    /// Wraps a presented or stored secret after checking its format.
    pub fn parse(_s: &str) -> Result<Self, KeyError> {
        todo!()
    }

    /// The secret text, for writing into the Secret or hashing. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}
