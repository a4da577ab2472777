//! The secret hash of a credential as the verifier keeps it: the argon2id PHC string from the
//! status decoded once, its parameters shared by every key hashed with them.
//!
//! why: the PHC string is ~100 bytes in an allocation of its own per credential; decoded, the
//! salt and output sit in place (48 bytes) and the parameters, the same for nearly every key,
//! are one shared value.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;

use crate::keys::hash::{verify_secret, HashParams, MAX_VERIFY_ITERATIONS, MAX_VERIFY_MEMORY_KIB};
use crate::keys::material::SecretKey;

/// Salt length the controller writes (argon2's recommended 16 bytes).
const SALT_LEN: usize = 16;
/// Output length the controller writes (argon2's default 32 bytes).
const OUTPUT_LEN: usize = 32;

/// argon2id parameters and version of a hash, shared between the credentials hashed with them.
#[derive(Debug, PartialEq, Eq)]
pub struct HashSpec {
    params: Params,
    version: Version,
}

impl HashSpec {
    /// The cost of hashing with this spec.
    pub fn cost(&self) -> HashParams {
        HashParams {
            memory_kib: self.params.m_cost(),
            iterations: self.params.t_cost(),
            parallelism: self.params.p_cost(),
        }
    }
}

/// A decoded argon2id hash: only argon2id hashes within the verify limits are ever built.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredHash {
    /// The controller's form: 16-byte salt, 32-byte output.
    Compact {
        spec: Arc<HashSpec>,
        salt: [u8; SALT_LEN],
        output: [u8; OUTPUT_LEN],
    },
    /// Any other salt or output length: the PHC string, verified as written.
    Phc { cost: HashParams, phc: Arc<str> },
}

impl StoredHash {
    /// Decodes a PHC string; `None` unless it is an argon2id hash the verifier would verify.
    /// `shared_spec` returns the one shared copy of a spec.
    pub fn parse(phc: &str, shared_spec: impl FnOnce(HashSpec) -> Arc<HashSpec>) -> Option<Self> {
        let parsed = PasswordHash::new(phc).ok()?;
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return None;
        }
        let params = Params::try_from(&parsed).ok()?;
        // why: the same limits as `verify_secret`, so a forged hash is refused here too.
        if params.m_cost() > MAX_VERIFY_MEMORY_KIB || params.t_cost() > MAX_VERIFY_ITERATIONS {
            return None;
        }
        let version = match parsed.version {
            Some(version) => Version::try_from(version).ok()?,
            None => Version::default(),
        };
        let salt = parsed.salt.as_ref()?;
        let output = parsed.hash.as_ref()?;
        let salt: Result<[u8; SALT_LEN], _> = salt.as_ref().try_into();
        let output: Result<[u8; OUTPUT_LEN], _> = output.as_bytes().try_into();
        let spec = HashSpec { params, version };
        match (salt, output) {
            (Ok(salt), Ok(output)) => Some(Self::Compact {
                spec: shared_spec(spec),
                salt,
                output,
            }),
            _ => Some(Self::Phc {
                cost: spec.cost(),
                phc: phc.into(),
            }),
        }
    }

    /// The cost of verifying a secret against this hash.
    pub fn cost(&self) -> HashParams {
        match self {
            Self::Compact { spec, .. } => spec.cost(),
            Self::Phc { cost, .. } => *cost,
        }
    }

    /// Whether `secret` matches (argon2id with the hash's own parameters and salt; the outputs
    /// are compared in constant time).
    pub fn verify(&self, secret: &SecretKey) -> bool {
        match self {
            Self::Compact { spec, salt, output } => {
                let argon2 = Argon2::new(Algorithm::Argon2id, spec.version, spec.params.clone());
                let mut computed = [0u8; OUTPUT_LEN];
                argon2
                    .hash_password_into(secret.expose().as_bytes(), salt, &mut computed)
                    .is_ok()
                    && bool::from(computed.ct_eq(output))
            }
            Self::Phc { phc, .. } => verify_secret(secret, phc),
        }
    }
}

// why: salt and output are what an offline guess is checked against; a Debug print of a record
// (logs, panics) shows the cost only.
impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredHash")
            .field("cost", &self.cost())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash::hash_secret;

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn parse(phc: &str) -> Option<StoredHash> {
        StoredHash::parse(phc, Arc::new)
    }

    #[test]
    fn a_debug_print_shows_neither_salt_nor_output() {
        let phc = hash_secret(&SecretKey::generate(), &CHEAP).unwrap();
        let stored = parse(&phc).unwrap();
        let StoredHash::Compact { salt, output, .. } = &stored else {
            panic!("the controller's form is compact");
        };
        let printed = format!("{stored:?}");
        for hidden in [
            "salt",
            "output",
            &format!("{salt:?}"),
            &format!("{output:?}"),
        ] {
            assert!(!printed.contains(hidden), "{printed}");
        }
        assert!(printed.contains("memory_kib: 64"), "{printed}");
    }

    #[test]
    fn the_compact_form_accepts_the_secret_and_refuses_any_other() {
        let secret = SecretKey::generate();
        let stored = parse(&hash_secret(&secret, &CHEAP).unwrap()).unwrap();
        assert!(matches!(stored, StoredHash::Compact { .. }));
        assert_eq!(stored.cost(), CHEAP);
        assert!(stored.verify(&secret));
        assert!(!stored.verify(&SecretKey::generate()));
    }

    #[test]
    fn every_part_of_the_hash_counts() {
        let secret = SecretKey::generate();
        let phc = hash_secret(&secret, &CHEAP).unwrap();
        let StoredHash::Compact { spec, salt, output } = parse(&phc).unwrap() else {
            panic!("compact expected");
        };
        let mut flipped_salt = salt;
        flipped_salt[0] ^= 1;
        let mut flipped_output = output;
        flipped_output[31] ^= 1;
        let other_params = Arc::new(HashSpec {
            params: Params::new(64, 2, 1, Some(OUTPUT_LEN)).unwrap(),
            version: spec.version,
        });
        let other_version = Arc::new(HashSpec {
            params: spec.params.clone(),
            version: Version::V0x10,
        });
        for altered in [
            StoredHash::Compact {
                spec: spec.clone(),
                salt: flipped_salt,
                output,
            },
            StoredHash::Compact {
                spec: spec.clone(),
                salt,
                output: flipped_output,
            },
            StoredHash::Compact {
                spec: other_params,
                salt,
                output,
            },
            StoredHash::Compact {
                spec: other_version,
                salt,
                output,
            },
        ] {
            assert!(!altered.verify(&secret));
        }
    }

    #[test]
    fn other_lengths_are_verified_from_the_phc_string() {
        let secret = SecretKey::generate();
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, Some(24)).unwrap(),
        );
        let mut output = [0u8; 24];
        let salt = *b"a longer salt of 24 byte";
        argon2
            .hash_password_into(secret.expose().as_bytes(), &salt, &mut output)
            .unwrap();
        let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
        use base64::Engine;
        let phc = format!(
            "$argon2id$v=19$m=64,t=1,p=1${}${}",
            engine.encode(salt),
            engine.encode(output)
        );
        let stored = parse(&phc).unwrap();
        assert!(matches!(stored, StoredHash::Phc { .. }));
        assert!(stored.verify(&secret));
        assert!(!stored.verify(&SecretKey::generate()));
    }

    #[test]
    fn only_argon2id_within_the_verify_limits_is_kept() {
        assert!(parse("$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g").is_none());
        assert!(parse("not a hash").is_none());
        let huge = format!(
            "$argon2id$v=19$m={},t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            MAX_VERIFY_MEMORY_KIB + 1
        );
        assert!(parse(&huge).is_none());
        assert!(parse("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g").is_some());
    }
}
