//! Presented credentials: `Authorization: Basic base64(id:secret)` or `Bearer <token>`.

use base64::Engine;
use zeroize::Zeroizing;

use crate::keys::material::{AccessKeyId, SecretKey};
use crate::keys::token::parse_token;

/// An access ID and the secret presented with it. Has no `Debug`: it holds the secret.
pub struct Presented {
    pub access_key_id: AccessKeyId,
    pub secret: SecretKey,
}

/// Why presented credentials could not be read. Safe to log: never holds what was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    Missing,
    UnsupportedScheme,
    MalformedBasic,
    MalformedToken,
    TokenChecksum,
}

impl Unreadable {
    /// Short reason for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::Missing => "missing credentials",
            Unreadable::UnsupportedScheme => "unsupported authorization scheme",
            Unreadable::MalformedBasic => "malformed basic credentials",
            Unreadable::MalformedToken => "malformed token",
            Unreadable::TokenChecksum => "token checksum mismatch",
        }
    }
}

/// Reads the credentials of an `Authorization` header value.
pub fn from_authorization(header: Option<&str>) -> Result<Presented, Unreadable> {
    let header = header.map(str::trim).filter(|h| !h.is_empty());
    let (scheme, value) = header
        .ok_or(Unreadable::Missing)?
        .split_once(' ')
        .ok_or(Unreadable::UnsupportedScheme)?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        from_basic(value)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        from_token(value)
    } else {
        Err(Unreadable::UnsupportedScheme)
    }
}

/// Reads a bearer token; a bad checksum is refused before any lookup.
pub fn from_token(token: &str) -> Result<Presented, Unreadable> {
    match parse_token(token) {
        Ok((access_key_id, secret)) => Ok(Presented {
            access_key_id,
            secret,
        }),
        Err(crate::keys::KeyError::TokenChecksum) => Err(Unreadable::TokenChecksum),
        Err(_) => Err(Unreadable::MalformedToken),
    }
}

/// Reads an access ID and secret given separately.
pub fn from_pair(access_key_id: &str, secret: &str) -> Result<Presented, Unreadable> {
    let access_key_id =
        AccessKeyId::parse(access_key_id).map_err(|_| Unreadable::MalformedBasic)?;
    let secret = SecretKey::parse(secret).map_err(|_| Unreadable::MalformedBasic)?;
    Ok(Presented {
        access_key_id,
        secret,
    })
}

/// Room for `<access ID>:<secret>` decoded; longer Basic credentials are malformed.
const MAX_BASIC_DECODED: usize = 128;

fn from_basic(encoded: &str) -> Result<Presented, Unreadable> {
    // why: a fixed buffer keeps the hot path free of allocation, and is wiped when dropped.
    let mut decoded = Zeroizing::new([0u8; MAX_BASIC_DECODED]);
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(encoded, decoded.as_mut_slice())
        .map_err(|_| Unreadable::MalformedBasic)?;
    let text = decoded
        .get(..len)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or(Unreadable::MalformedBasic)?;
    let (id, secret) = text.split_once(':').ok_or(Unreadable::MalformedBasic)?;
    from_pair(id, secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::token::encode_token;

    fn basic(text: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }

    #[test]
    fn basic_and_bearer_carry_the_same_credentials() {
        let id = AccessKeyId::generate();
        let secret = SecretKey::generate();
        let from_basic =
            from_authorization(Some(&basic(&format!("{id}:{}", secret.expose())))).ok();
        let token = encode_token(&id, &secret);
        let from_bearer = from_authorization(Some(&format!("bearer {}", token.as_str()))).ok();
        for presented in [from_basic, from_bearer] {
            let presented = presented.expect("credentials are readable");
            assert_eq!(presented.access_key_id, id);
            assert_eq!(presented.secret.expose(), secret.expose());
        }
    }

    #[test]
    fn unreadable_credentials_say_why() {
        let id = AccessKeyId::generate();
        let token = encode_token(&id, &SecretKey::generate());
        let mut tampered = token.to_string();
        let last = tampered
            .pop()
            .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
        tampered.push(last);
        let cases = [
            (None, Unreadable::Missing),
            (Some("".to_owned()), Unreadable::Missing),
            (Some("Digest abc".to_owned()), Unreadable::UnsupportedScheme),
            (Some("Basic".to_owned()), Unreadable::UnsupportedScheme),
            (Some("Basic !!!".to_owned()), Unreadable::MalformedBasic),
            (Some(basic("no-colon")), Unreadable::MalformedBasic),
            (
                Some(basic(&format!("{id}:{}", "A".repeat(200)))),
                Unreadable::MalformedBasic,
            ),
            (
                Some(basic(&format!("{id}:short"))),
                Unreadable::MalformedBasic,
            ),
            (Some("Bearer nope".to_owned()), Unreadable::MalformedToken),
            (
                Some(format!("Bearer {tampered}")),
                Unreadable::TokenChecksum,
            ),
        ];
        for (header, expected) in cases {
            let result = from_authorization(header.as_deref()).err();
            assert_eq!(result, Some(expected), "header {header:?}");
        }
    }
}
