//! The bearer token form: a fixed prefix, the access ID, the secret and a checksum, so that secret
//! scanners can recognise a leaked keywarden key offline.
//!
//! Layout: `kwk_<access ID>_<secret>_<checksum>`, where the checksum is the CRC32 (IEEE) of
//! everything before the last `_`, big-endian, in unpadded RFC 4648 base32 (7 characters).

use data_encoding::BASE32_NOPAD;
use zeroize::Zeroizing;

use super::material::{AccessKeyId, SecretKey, ACCESS_KEY_ID_LEN, SECRET_KEY_LEN};
use super::KeyError;

/// Prefix of every bearer token.
pub const TOKEN_PREFIX: &str = "kwk_";
/// Length of the checksum suffix.
pub const TOKEN_CHECKSUM_LEN: usize = 7;
/// Total length of a bearer token.
pub const TOKEN_LEN: usize =
    TOKEN_PREFIX.len() + ACCESS_KEY_ID_LEN + 1 + SECRET_KEY_LEN + 1 + TOKEN_CHECKSUM_LEN;
/// A regular expression matching tokens, for secret scanners.
pub const TOKEN_SCAN_PATTERN: &str = r"\bkwk_AKW[A-Z2-7]{20}_[A-Z2-7]{52}_[A-Z2-7]{7}\b";

fn checksum(body: &str) -> String {
    BASE32_NOPAD.encode(&crc32fast::hash(body.as_bytes()).to_be_bytes())
}

/// Encodes the bearer token for an issuance.
pub fn encode_token(id: &AccessKeyId, secret: &SecretKey) -> Zeroizing<String> {
    let mut token = Zeroizing::new(String::with_capacity(TOKEN_LEN));
    token.push_str(TOKEN_PREFIX);
    token.push_str(id.as_str());
    token.push('_');
    token.push_str(secret.expose());
    let sum = checksum(&token);
    token.push('_');
    token.push_str(&sum);
    token
}

/// Parses a bearer token, checking prefix and checksum before anything else.
pub fn parse_token(token: &str) -> Result<(AccessKeyId, SecretKey), KeyError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(KeyError::MalformedToken);
    }
    let (body, sum) = token.rsplit_once('_').ok_or(KeyError::MalformedToken)?;
    if sum.len() != TOKEN_CHECKSUM_LEN {
        return Err(KeyError::MalformedToken);
    }
    // why: comparing the canonical encoding also rejects checksums with non-zero padding bits.
    if checksum(body) != sum {
        return Err(KeyError::TokenChecksum);
    }
    // why: `body` may be shorter than the prefix (`kwk_` + a checksum of `kwk`), so no slicing.
    let (id, secret) = body
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .ok_or(KeyError::MalformedToken)?;
    let id = AccessKeyId::parse(id).map_err(|_| KeyError::MalformedToken)?;
    let secret = SecretKey::parse(secret).map_err(|_| KeyError::MalformedToken)?;
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> (AccessKeyId, SecretKey, Zeroizing<String>) {
        let id = AccessKeyId::generate();
        let secret = SecretKey::generate();
        let token = encode_token(&id, &secret);
        (id, secret, token)
    }

    /// Recomputes the checksum of a hand-made body so only the structure is wrong.
    fn with_valid_checksum(body: &str) -> String {
        format!("{body}_{}", checksum(body))
    }

    #[test]
    fn token_round_trips_to_id_and_secret() {
        let (id, secret, token) = issued();
        let (parsed_id, parsed_secret) = parse_token(&token).map_err(|e| e.to_string()).unwrap();
        assert_eq!(parsed_id, id);
        assert_eq!(parsed_secret.expose(), secret.expose());
    }

    #[test]
    fn token_has_fixed_layout() {
        let (id, secret, token) = issued();
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(
            &token[..TOKEN_LEN - TOKEN_CHECKSUM_LEN - 1],
            format!("kwk_{id}_{}", secret.expose())
        );
    }

    #[test]
    fn token_parts_match_the_scan_pattern() {
        // TOKEN_SCAN_PATTERN's shape, checked by hand (no regex crate in the tree).
        let (_, _, token) = issued();
        let parts: Vec<&str> = token.split('_').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "kwk");
        assert!(parts[1].starts_with("AKW"));
        assert_eq!(parts[1].len(), 23);
        assert_eq!(parts[2].len(), 52);
        assert_eq!(parts[3].len(), 7);
        assert!(parts[1..].iter().all(|p| p
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let (_, _, token) = issued();
        for index in 0..token.len() {
            for bit in 0..8 {
                let mut bytes = token.as_bytes().to_vec();
                bytes[index] ^= 1 << bit;
                let Ok(flipped) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(
                    parse_token(&flipped).is_err(),
                    "flip of bit {bit} at {index} accepted"
                );
            }
        }
    }

    #[test]
    fn changed_checksum_is_reported_as_checksum_mismatch() {
        let (_, _, token) = issued();
        let last = token.as_bytes()[TOKEN_LEN - 1];
        let replacement = if last == b'A' { 'B' } else { 'A' };
        let tampered = format!("{}{replacement}", &token[..TOKEN_LEN - 1]);
        assert_eq!(
            parse_token(&tampered).map(|_| ()),
            Err(KeyError::TokenChecksum)
        );
    }

    #[test]
    fn wrong_prefix_is_rejected_before_the_checksum() {
        let (_, _, token) = issued();
        let other = format!("ghp_{}", &token[TOKEN_PREFIX.len()..]);
        assert_eq!(
            parse_token(&other).map(|_| ()),
            Err(KeyError::MalformedToken)
        );
        // Even with a checksum that matches the altered body.
        let body = &other[..TOKEN_LEN - TOKEN_CHECKSUM_LEN - 1];
        assert_eq!(
            parse_token(&with_valid_checksum(body)).map(|_| ()),
            Err(KeyError::MalformedToken)
        );
    }

    #[test]
    fn structurally_invalid_tokens_with_valid_checksums_are_rejected() {
        let id = AccessKeyId::generate();
        let secret = SecretKey::generate();
        for body in [
            "kwk_".to_owned(),
            format!("kwk_{id}"),
            format!("kwk_{id}{}", secret.expose()),
            format!("kwk_{id}_{}_extra", secret.expose()),
            format!("kwk_{}_{}", &id.as_str()[1..], secret.expose()),
            format!("kwk_{id}_{}", &secret.expose()[1..]),
            format!("kwk_{id}_{}", secret.expose().to_lowercase()),
        ] {
            assert_eq!(
                parse_token(&with_valid_checksum(&body)).map(|_| ()),
                Err(KeyError::MalformedToken),
                "{body}"
            );
        }
    }

    #[test]
    fn checksum_over_a_body_shorter_than_the_prefix_is_rejected_without_panicking() {
        for body in ["", "k", "kwk"] {
            let token = format!("kwk_{}", checksum(body));
            assert!(parse_token(&token).is_err(), "{token}");
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "",
            "kwk",
            "kwk_",
            "kwk__",
            "Bearer kwk_x",
            "kwk_x_y_z",
            "kwk_é_é_ééé",
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn truncated_and_extended_tokens_are_rejected() {
        let (_, _, token) = issued();
        for cut in 0..token.len() {
            assert!(
                parse_token(&token[..cut]).is_err(),
                "prefix of length {cut}"
            );
        }
        assert!(parse_token(&format!("{}A", token.as_str())).is_err());
        assert!(parse_token(&format!(" {}", token.as_str())).is_err());
    }
}
