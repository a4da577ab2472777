//! argon2id hashing of secrets (PHC strings stored in `status.secretHash`).

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, PasswordVerifier, Version};

use super::material::SecretKey;
use super::KeyError;

/// Largest argon2 memory cost [`verify_secret`] accepts (1 GiB), so a forged hash cannot exhaust
/// the verifier's memory.
pub const MAX_VERIFY_MEMORY_KIB: u32 = 1024 * 1024;
/// Largest argon2 iteration count [`verify_secret`] accepts, so a forged hash cannot pin a CPU.
pub const MAX_VERIFY_ITERATIONS: u32 = 64;

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

impl HashParams {
    /// An argon2id hasher with these parameters.
    fn hasher(&self) -> Result<Argon2<'static>, KeyError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| KeyError::HashParams(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Whether hashing with these parameters costs no more than `ceiling` in memory, time
    /// and lanes.
    pub fn fits_within(&self, ceiling: &HashParams) -> bool {
        self.memory_kib <= ceiling.memory_kib
            && self.iterations <= ceiling.iterations
            && self.parallelism <= ceiling.parallelism
    }

    /// Checks the parameters without hashing anything (for validating configuration).
    pub fn validate(&self) -> Result<(), KeyError> {
        self.hasher().map(|_| ())
    }
}

/// Hashes a secret with a fresh random salt.
pub fn hash_secret(secret: &SecretKey, params: &HashParams) -> Result<String, KeyError> {
    params
        .hasher()?
        .hash_password(secret.expose().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| KeyError::Hash(e.to_string()))
}

/// argon2id working memory kept from one hash to the next on the same thread.
///
/// [`hash_secret`] allocates the memory cost (19 MiB by default) for every hash and the allocator
/// hands it back zeroed: page faults or a 19 MiB memset per hash, about a tenth of the hash
/// itself. A run of hashes through one `HashMemory` pays that once. The memory holds nothing
/// that [`hash_secret`]'s freed allocation would not (it is overwritten by the next hash).
pub struct HashMemory {
    params: HashParams,
    hasher: Argon2<'static>,
    blocks: Vec<Block>,
}

impl HashMemory {
    /// Working memory for hashing with `params`.
    pub fn new(params: &HashParams) -> Result<Self, KeyError> {
        let hasher = params.hasher()?;
        let blocks = vec![Block::new(); hasher.params().block_count()];
        Ok(Self {
            params: *params,
            hasher,
            blocks,
        })
    }

    /// The parameters this memory hashes with.
    pub fn params(&self) -> &HashParams {
        &self.params
    }

    /// Hashes a secret with a fresh random salt: the same PHC string [`hash_secret`] makes.
    pub fn hash(&mut self, secret: &SecretKey) -> Result<String, KeyError> {
        let failed = |e: &dyn std::fmt::Display| KeyError::Hash(e.to_string());
        let salt = argon2::password_hash::try_generate_salt().map_err(|e| failed(&e))?;
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.hasher
            .hash_password_into_with_memory(
                secret.expose().as_bytes(),
                &salt,
                &mut output,
                &mut self.blocks,
            )
            .map_err(|e| failed(&e))?;
        let params = self.hasher.params();
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
            salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
            hash: Some(Output::new(&output).map_err(|e| failed(&e))?),
        };
        Ok(phc.to_string())
    }
}

/// The cost parameters of an argon2id PHC hash; `None` for anything else.
pub fn hash_cost(hash: &str) -> Option<HashParams> {
    let parsed = PasswordHash::new(hash).ok()?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return None;
    }
    let params = Params::try_from(&parsed).ok()?;
    Some(HashParams {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    })
}

/// Whether `secret` matches the PHC string `hash` (constant-time; false on a malformed hash).
pub fn verify_secret(secret: &SecretKey, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    match Params::try_from(&parsed) {
        Ok(params)
            if params.m_cost() <= MAX_VERIFY_MEMORY_KIB
                && params.t_cost() <= MAX_VERIFY_ITERATIONS => {}
        _ => return false,
    }
    // why: the PHC string's own parameters and salt are used; the output comparison inside
    // argon2 is constant-time.
    Argon2::default()
        .verify_password(secret.expose().as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the suite stays fast; the algorithm is the same.
    const FAST: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn hash(secret: &SecretKey, params: &HashParams) -> String {
        match hash_secret(secret, params) {
            Ok(hash) => hash,
            Err(e) => panic!("hashing failed: {e}"),
        }
    }

    #[test]
    fn default_params_are_owasp_and_valid() {
        let params = HashParams::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19_456, 2, 1)
        );
        assert_eq!(params.validate(), Ok(()));
    }

    #[test]
    fn hash_is_an_argon2id_phc_string_carrying_its_params() {
        let hash = hash(&SecretKey::generate(), &HashParams::default());
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
    }

    #[test]
    fn hash_never_contains_the_secret() {
        let secret = SecretKey::generate();
        let hash = hash(&secret, &FAST);
        assert!(!hash.contains(secret.expose()));
        assert!(!hash.contains(&secret.expose()[..16]));
    }

    #[test]
    fn secret_verifies_against_its_own_hash() {
        let secret = SecretKey::generate();
        let hash = hash(&secret, &HashParams::default());
        assert!(verify_secret(&secret, &hash));
    }

    #[test]
    fn other_secret_does_not_verify() {
        let hash = hash(&SecretKey::generate(), &FAST);
        assert!(!verify_secret(&SecretKey::generate(), &hash));
    }

    #[test]
    fn same_secret_hashes_differently_each_time() {
        let secret = SecretKey::generate();
        let (first, second) = (hash(&secret, &FAST), hash(&secret, &FAST));
        assert_ne!(first, second);
        assert!(verify_secret(&secret, &first) && verify_secret(&secret, &second));
    }

    #[test]
    fn one_character_change_in_the_secret_fails() {
        let secret = SecretKey::generate();
        let hash = hash(&secret, &FAST);
        let text = secret.expose();
        let replacement = if text.starts_with('A') { "B" } else { "A" };
        let Ok(near) = SecretKey::parse(&format!("{replacement}{}", &text[1..])) else {
            panic!("test secret should be well-formed");
        };
        assert!(!verify_secret(&near, &hash));
    }

    #[test]
    fn malformed_or_foreign_hashes_verify_false() {
        let secret = SecretKey::generate();
        let good = hash(&secret, &FAST);
        let argon2i = good.replacen("$argon2id$", "$argon2i$", 1);
        let huge_memory = good.replacen("m=64,", "m=4194304,", 1);
        let huge_iterations = good.replacen("t=1,", "t=1000000,", 1);
        let truncated = &good[..good.len() - 10];
        for bad in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$",
            truncated,
            argon2i.as_str(),
            huge_memory.as_str(),
            huge_iterations.as_str(),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            assert!(!verify_secret(&secret, bad), "{bad:?}");
        }
    }

    #[test]
    fn reused_memory_hashes_like_a_fresh_allocation() {
        let secret = SecretKey::generate();
        let mut memory = HashMemory::new(&HashParams::default()).unwrap();
        let (first, second) = (memory.hash(&secret).unwrap(), memory.hash(&secret).unwrap());
        assert_ne!(first, second, "a fresh salt each time");
        let fresh = hash(&secret, &HashParams::default());
        let prefix = |h: &str| h.rsplitn(3, '$').nth(2).map(str::to_string);
        assert_eq!(
            prefix(&first),
            prefix(&fresh),
            "same algorithm, version, parameters"
        );
        assert_eq!(first.len(), fresh.len(), "same salt and output lengths");
        for hash in [&first, &second] {
            assert!(verify_secret(&secret, hash));
            assert!(!verify_secret(&SecretKey::generate(), hash));
        }
        let mut light = HashMemory::new(&FAST).unwrap();
        assert_eq!(light.params(), &FAST);
        assert_eq!(hash_cost(&light.hash(&secret).unwrap()), Some(FAST));
    }

    #[test]
    fn invalid_params_are_an_error_not_a_panic() {
        let zero_iterations = HashParams {
            iterations: 0,
            ..FAST
        };
        assert!(matches!(
            hash_secret(&SecretKey::generate(), &zero_iterations),
            Err(KeyError::HashParams(_))
        ));
        assert!(zero_iterations.validate().is_err());
        assert!(HashMemory::new(&zero_iterations).is_err());
    }

    #[test]
    fn the_cost_of_a_hash_is_read_from_its_parameters() {
        let params = HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hash = hash_secret(&SecretKey::generate(), &params).unwrap();
        assert_eq!(hash_cost(&hash), Some(params));
        assert!(params.fits_within(&HashParams::default()));
        let costly = HashParams {
            memory_kib: 4 * 1024 * 1024,
            ..params
        };
        assert!(!costly.fits_within(&HashParams::default()));
        assert_eq!(
            hash_cost("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"),
            None
        );
        assert_eq!(hash_cost("not a hash"), None);
    }
}
