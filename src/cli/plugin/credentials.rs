//! `kubectl keywarden credentials`: the issued credentials, read from the key's Secret.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use zeroize::Zeroizing;

use crate::keys::material::{AccessKeyId, SecretKey};
use crate::keys::token::encode_token;

/// Secret data key holding the access ID.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
/// Secret data key holding the secret.
pub const SECRET_KEY_KEY: &str = "accessKey";
/// Secret data key holding the bearer token.
pub const TOKEN_KEY: &str = "token";
/// Header of the CSV key file, as consoles offer for download.
pub const CSV_HEADER: &str = "Access key ID,Secret access key";

/// How `credentials` prints the key.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsFormat {
    /// `KEYWARDEN_ACCESS_KEY_ID=...` lines (dotenv; `set -a; . file` exports them).
    Env,
    /// The console-style key file: header `Access key ID,Secret access key`, then one row.
    Csv,
    /// `{"accessKeyId": ..., "secretAccessKey": ..., "token": ...}`.
    Json,
    /// An `Authorization` header value: `Basic base64(accessKeyId:secret)`.
    Basic,
}

/// Access ID, secret and bearer token of one issuance. No `Debug`; zeroized on drop.
pub struct Credentials {
    pub access_key_id: AccessKeyId,
    pub secret: SecretKey,
    pub token: Zeroizing<String>,
}

/// Why a Secret's data does not hold usable credentials. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("the Secret has no {0:?} entry (not issued yet?)")]
    Missing(&'static str),
    #[error("the Secret's {0:?} entry is malformed")]
    Malformed(&'static str),
}

fn entry<'a>(
    data: &'a BTreeMap<String, ByteString>,
    key: &'static str,
) -> Result<&'a str, CredentialsError> {
    let value = data.get(key).ok_or(CredentialsError::Missing(key))?;
    std::str::from_utf8(&value.0).map_err(|_| CredentialsError::Malformed(key))
}

impl Credentials {
    /// Reads the credentials from a key Secret's `data`, checking each entry's format.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<Self, CredentialsError> {
        let access_key_id = AccessKeyId::parse(entry(data, ACCESS_KEY_ID_KEY)?)
            .map_err(|_| CredentialsError::Malformed(ACCESS_KEY_ID_KEY))?;
        let secret = SecretKey::parse(entry(data, SECRET_KEY_KEY)?)
            .map_err(|_| CredentialsError::Malformed(SECRET_KEY_KEY))?;
        // why: the token is derived from ID and secret, so a Secret without it is still usable.
        let token = match entry(data, TOKEN_KEY) {
            Ok(token) => Zeroizing::new(token.to_owned()),
            Err(CredentialsError::Missing(_)) => encode_token(&access_key_id, &secret),
            Err(e) => return Err(e),
        };
        Ok(Self {
            access_key_id,
            secret,
            token,
        })
    }

    /// The credentials printed in `format`, ending with a newline.
    pub fn render(&self, format: CredentialsFormat) -> Zeroizing<String> {
        let id = self.access_key_id.as_str();
        let secret = self.secret.expose();
        Zeroizing::new(match format {
            CredentialsFormat::Env => format!(
                "KEYWARDEN_ACCESS_KEY_ID={id}\nKEYWARDEN_SECRET_ACCESS_KEY={secret}\nKEYWARDEN_TOKEN={}\n",
                self.token.as_str()
            ),
            CredentialsFormat::Csv => format!("{CSV_HEADER}\n{id},{secret}\n"),
            CredentialsFormat::Json => {
                let json = serde_json::json!({
                    "accessKeyId": id,
                    "secretAccessKey": secret,
                    "token": self.token.as_str(),
                });
                format!("{json:#}\n")
            }
            CredentialsFormat::Basic => {
                let pair = Zeroizing::new(format!("{id}:{secret}"));
                format!(
                    "Basic {}\n",
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::token::parse_token;

    use super::*;

    fn secret_data(with_token: bool) -> (AccessKeyId, String, BTreeMap<String, ByteString>) {
        let id = AccessKeyId::generate();
        let secret = SecretKey::generate();
        let mut data = BTreeMap::new();
        data.insert(
            ACCESS_KEY_ID_KEY.to_owned(),
            ByteString(id.as_str().as_bytes().to_vec()),
        );
        data.insert(
            SECRET_KEY_KEY.to_owned(),
            ByteString(secret.expose().as_bytes().to_vec()),
        );
        if with_token {
            let token = encode_token(&id, &secret);
            data.insert(TOKEN_KEY.to_owned(), ByteString(token.as_bytes().to_vec()));
        }
        (id, secret.expose().to_owned(), data)
    }

    fn credentials(data: &BTreeMap<String, ByteString>) -> Credentials {
        match Credentials::from_secret_data(data) {
            Ok(credentials) => credentials,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn csv_matches_the_console_key_file() {
        let (id, secret, data) = secret_data(true);
        let csv = credentials(&data).render(CredentialsFormat::Csv);
        assert_eq!(
            csv.as_str(),
            format!("Access key ID,Secret access key\n{id},{secret}\n")
        );
    }

    #[test]
    fn env_has_one_assignment_per_credential() {
        let (id, secret, data) = secret_data(true);
        let creds = credentials(&data);
        let env = creds.render(CredentialsFormat::Env);
        let lines: Vec<&str> = env.lines().collect();
        assert_eq!(
            lines,
            [
                format!("KEYWARDEN_ACCESS_KEY_ID={id}"),
                format!("KEYWARDEN_SECRET_ACCESS_KEY={secret}"),
                format!("KEYWARDEN_TOKEN={}", creds.token.as_str()),
            ]
        );
    }

    #[test]
    fn json_carries_id_secret_and_a_parseable_token() {
        let (id, secret, data) = secret_data(true);
        let json: serde_json::Value =
            serde_json::from_str(&credentials(&data).render(CredentialsFormat::Json)).unwrap();
        assert_eq!(json["accessKeyId"], id.as_str());
        assert_eq!(json["secretAccessKey"], secret.as_str());
        let (token_id, token_secret) = parse_token(json["token"].as_str().unwrap()).unwrap();
        assert_eq!(token_id, id);
        assert_eq!(token_secret.expose(), secret);
    }

    #[test]
    fn basic_is_an_authorization_header_value() {
        let (id, secret, data) = secret_data(true);
        let basic = credentials(&data).render(CredentialsFormat::Basic);
        let encoded = basic.trim_end().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            format!("{id}:{secret}")
        );
    }

    #[test]
    fn missing_token_is_derived_from_id_and_secret() {
        let (id, secret, data) = secret_data(false);
        let creds = credentials(&data);
        let (token_id, token_secret) = parse_token(&creds.token).unwrap();
        assert_eq!((token_id, token_secret.expose()), (id, secret.as_str()));
    }

    #[test]
    fn missing_or_malformed_entries_are_reported_without_their_value() {
        let (_, secret, mut data) = secret_data(true);
        data.remove(SECRET_KEY_KEY);
        assert_eq!(
            Credentials::from_secret_data(&data).err(),
            Some(CredentialsError::Missing("accessKey"))
        );
        data.insert(
            SECRET_KEY_KEY.to_owned(),
            ByteString(format!("{secret}x").into_bytes()),
        );
        let error = Credentials::from_secret_data(&data).err();
        assert_eq!(error, Some(CredentialsError::Malformed("accessKey")));
        assert!(!error.unwrap().to_string().contains(&secret));
    }
}
