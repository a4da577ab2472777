//! Whether the key's Secret data still holds the issued credentials. Checked only when the
//! Secret's resourceVersion moved since the controller last wrote or checked it; the data is
//! read once, compared and zeroized, never kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::Api;
use kube::ResourceExt;
use zeroize::Zeroize;

use super::context::{give_back_spare, Context};
use super::issuance::{
    self, Issuance, SecretState, DATA_ACCESS_KEY, DATA_ACCESS_KEY_ID, DATA_PASSWORD, DATA_TOKEN,
    DATA_USERNAME,
};
use super::{Error, Result};
use crate::api::conditions::{reasons, types};
use crate::api::{AccessKey, SecretType};
use crate::keys::hash::verify_secret;
use crate::keys::material::SecretKey;
use crate::keys::token::parse_token;
use crate::sync::lock;

/// The data of a Secret read for a check; zeroized on drop.
pub struct SecretData(BTreeMap<String, ByteString>);

impl SecretData {
    /// Moves the data out of `secret`, so that nothing else holds it.
    pub fn take(secret: &mut Secret) -> Self {
        Self(secret.data.take().unwrap_or_default())
    }

    fn text(&self, key: &str) -> Option<&str> {
        std::str::from_utf8(&self.0.get(key)?.0).ok()
    }
}

impl Drop for SecretData {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.0.zeroize();
        }
    }
}

/// The first data key that does not hold the issuance `access_key_id` whose secret hashes to
/// `secret_hash`; `None` when all of them do. Pays one argon2id verification.
pub fn modified_data_key(
    data: &SecretData,
    basic_auth: bool,
    access_key_id: &str,
    secret_hash: &str,
) -> Option<&'static str> {
    let Some(id) = data
        .text(DATA_ACCESS_KEY_ID)
        .filter(|id| *id == access_key_id)
    else {
        return Some(DATA_ACCESS_KEY_ID);
    };
    let Some(secret) = data
        .text(DATA_ACCESS_KEY)
        .and_then(|s| SecretKey::parse(s).ok())
        .filter(|s| verify_secret(s, secret_hash))
    else {
        return Some(DATA_ACCESS_KEY);
    };
    let token_matches = data
        .text(DATA_TOKEN)
        .and_then(|token| parse_token(token).ok())
        .is_some_and(|(token_id, token_secret)| {
            token_id.as_str() == id && token_secret.expose() == secret.expose()
        });
    if !token_matches {
        return Some(DATA_TOKEN);
    }
    if basic_auth {
        if data.text(DATA_USERNAME) != Some(id) {
            return Some(DATA_USERNAME);
        }
        if data.text(DATA_PASSWORD) != Some(secret.expose()) {
            return Some(DATA_PASSWORD);
        }
    }
    None
}

/// The `SecretPresent` message for Secret data changed by someone else.
pub fn modified_message(data_key: &str) -> String {
    format!(
        "Secret data {data_key:?} no longer holds the issued credentials (changed by someone \
         else); the issued key stays valid: restore the data or rotate the key"
    )
}

/// What a reconciliation knows of the key's Secret after checking its data when needed.
pub struct Checked {
    /// The Secret's state; re-read from the API when its data had to be checked.
    pub state: SecretState,
    /// The resource version the verdict holds for; `None` unless the Secret is held.
    pub resource_version: Option<String>,
    /// Why the data is not the issuance's (the `SecretPresent` message); `None` when it is.
    pub modified: Option<String>,
}

/// Checks the data of a held Secret unless the controller wrote (`own_write`) or checked its
/// current resource version already; `honoured` is the issuance the controller honours.
pub async fn check(
    key: &AccessKey,
    ctx: &Context,
    api: &Api<Secret>,
    state: SecretState,
    honoured: Option<&Issuance>,
    own_write: bool,
) -> Result<Checked> {
    let SecretState::Held {
        resource_version, ..
    } = &state
    else {
        return Ok(unchecked(state));
    };
    if own_write {
        ctx.secret_verdicts
            .record(key, resource_version.as_deref(), None);
        return Ok(Checked {
            resource_version: resource_version.clone(),
            state,
            modified: None,
        });
    }
    if let Some(verdict) = ctx
        .secret_verdicts
        .earlier(key, resource_version.as_deref())
    {
        return Ok(Checked {
            resource_version: resource_version.clone(),
            state,
            modified: verdict,
        });
    }
    // why: the cache holds metadata only; one GET, taken only after a change by someone else.
    let Some(mut fresh) = api
        .get_opt(&key.spec.secret_name(&key.name_any()))
        .await
        .map_err(Error::ReadSecret)?
    else {
        return Ok(unchecked(SecretState::Missing));
    };
    let data = SecretData::take(&mut fresh);
    let state = issuance::classify(Some(&fresh.metadata), key, &ctx.record_key);
    let SecretState::Held {
        issuance,
        resource_version,
    } = &state
    else {
        return Ok(unchecked(state));
    };
    let resource_version = resource_version.clone();
    if let Some(verdict) = ctx
        .secret_verdicts
        .earlier(key, resource_version.as_deref())
    {
        return Ok(Checked {
            resource_version,
            state,
            modified: verdict,
        });
    }
    // why: for the issuance the status knows, its hash is the one to honour; the Secret's
    // annotations may have been edited along with its data.
    let secret_hash = match honoured {
        Some(r) if r.access_key_id == issuance.access_key_id => r.secret_hash.clone(),
        _ => issuance.secret_hash.clone(),
    };
    let access_key_id = issuance.access_key_id.clone();
    let basic_auth = fresh.type_.as_deref() == Some(SecretType::BasicAuth.as_str());
    let modified = issuance::with_hash_pool(&ctx.hash_pool, move || {
        modified_data_key(&data, basic_auth, &access_key_id, &secret_hash)
    })
    .await?;
    if let Some(data_key) = modified {
        tracing::warn!(
            name = key.name_any(),
            namespace = key.namespace(),
            data_key,
            "Secret data changed by someone else"
        );
    }
    let modified = modified.map(modified_message);
    ctx.secret_verdicts
        .record(key, resource_version.as_deref(), modified.as_ref());
    Ok(Checked {
        resource_version,
        state,
        modified,
    })
}

fn unchecked(state: SecretState) -> Checked {
    Checked {
        state,
        resource_version: None,
        modified: None,
    }
}

/// The verdicts on a key's Secret data, each valid for one resource version of the Secret, and
/// the key versions this process's status writes replaced: what the key cache shows late.
#[derive(Default)]
pub struct Verdicts {
    /// This process's latest verdict per key UID: resource version and modified message.
    // why: the status write that records a verdict reaches the key cache after the Secret's
    // own change event reconciles the key again; without this, every issuance would pay a
    // second argon2id to check the controller's own write. Kept until the status shows it.
    recent: Mutex<HashMap<String, (String, Option<String>)>>,
    /// Per key UID, the resource version of the key that this process's last status write
    /// replaced; kept until the cache shows another.
    replaced: Mutex<HashMap<String, String>>,
}

impl Verdicts {
    /// The verdict on `key`'s Secret at `resource_version`, from its status or this process:
    /// `Some(None)` intact, `Some(Some(message))` modified, `None` not checked yet.
    fn earlier(&self, key: &AccessKey, resource_version: Option<&str>) -> Option<Option<String>> {
        let resource_version = resource_version?;
        let uid = key.uid()?;
        let mut recent = lock(&self.recent);
        let status = key.status.as_ref();
        if let Some(status) =
            status.filter(|s| s.secret_resource_version.as_deref() == Some(resource_version))
        {
            if recent
                .get(&uid)
                .is_some_and(|(rv, _)| rv == resource_version)
            {
                recent.remove(&uid);
                give_back_spare(&mut recent);
            }
            let modified = status
                .conditions
                .iter()
                .find(|c| c.type_ == types::SECRET_PRESENT && c.reason == reasons::SECRET_MODIFIED)
                .map(|c| c.message.clone());
            return Some(modified);
        }
        recent
            .get(&uid)
            .filter(|(rv, _)| rv == resource_version)
            .map(|(_, modified)| modified.clone())
    }

    /// Remembers the verdict on `key`'s Secret at `resource_version` until the status shows it.
    fn record(&self, key: &AccessKey, resource_version: Option<&str>, modified: Option<&String>) {
        if let (Some(uid), Some(rv)) = (key.uid(), resource_version) {
            let mut recent = lock(&self.recent);
            recent.insert(uid, (rv.to_string(), modified.cloned()));
        }
    }

    /// Remembers that a status write replaced `key` at its resource version.
    pub fn status_written(&self, key: &AccessKey) {
        if let (Some(uid), Some(rv)) = (key.uid(), key.resource_version()) {
            lock(&self.replaced).insert(uid, rv);
        }
    }

    /// Whether `key` is a version that a status write of this process has replaced: the write's
    /// own watch event is on its way and reconciles the key again with what it wrote.
    // why: the Secret's change event of an issuance reconciles the key before its status write
    // reaches the cache; deciding on the stale key again cost a status write refused with a
    // conflict, two reads and a requeue per issued key.
    pub fn superseded(&self, key: &AccessKey) -> bool {
        let (Some(uid), Some(rv)) = (key.uid(), key.resource_version()) else {
            return false;
        };
        let mut replaced = lock(&self.replaced);
        match replaced.get(&uid) {
            Some(old) if *old == rv => true,
            Some(_) => {
                replaced.remove(&uid);
                give_back_spare(&mut replaced);
                false
            }
            None => false,
        }
    }

    /// Forgets a deleted key.
    pub fn forget(&self, uid: &str) {
        let mut recent = lock(&self.recent);
        recent.remove(uid);
        give_back_spare(&mut recent);
        drop(recent);
        let mut replaced = lock(&self.replaced);
        replaced.remove(uid);
        give_back_spare(&mut replaced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash::{hash_secret, HashParams};
    use crate::keys::material::AccessKeyId;
    use crate::keys::token::encode_token;

    struct Issued {
        id: AccessKeyId,
        secret: SecretKey,
        hash: String,
    }

    fn issued() -> Issued {
        let secret = SecretKey::generate();
        let light = HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        Issued {
            id: AccessKeyId::generate(),
            hash: hash_secret(&secret, &light).unwrap(),
            secret,
        }
    }

    fn data(issued: &Issued, basic_auth: bool) -> BTreeMap<String, ByteString> {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        let mut data = BTreeMap::from([
            (DATA_ACCESS_KEY_ID.to_string(), bytes(issued.id.as_str())),
            (DATA_ACCESS_KEY.to_string(), bytes(issued.secret.expose())),
            (
                DATA_TOKEN.to_string(),
                bytes(&encode_token(&issued.id, &issued.secret)),
            ),
        ]);
        if basic_auth {
            data.insert(DATA_USERNAME.into(), bytes(issued.id.as_str()));
            data.insert(DATA_PASSWORD.into(), bytes(issued.secret.expose()));
        }
        data
    }

    fn verdict(
        issued: &Issued,
        data: BTreeMap<String, ByteString>,
        basic_auth: bool,
    ) -> Option<&'static str> {
        modified_data_key(
            &SecretData(data),
            basic_auth,
            issued.id.as_str(),
            &issued.hash,
        )
    }

    #[test]
    fn data_as_issued_is_intact_with_extra_keys_of_the_user() {
        let key = issued();
        let mut extra = data(&key, false);
        extra.insert("note".into(), ByteString(b"mine".to_vec()));
        assert_eq!(verdict(&key, extra, false), None);
        assert_eq!(verdict(&key, data(&key, true), true), None);
    }

    #[test]
    fn an_overwritten_or_deleted_data_key_is_named() {
        let key = issued();
        let other = issued();
        let cases = [
            (DATA_ACCESS_KEY_ID, Some(other.id.as_str().to_string())),
            (DATA_ACCESS_KEY_ID, None),
            (DATA_ACCESS_KEY, Some(other.secret.expose().to_string())),
            (DATA_ACCESS_KEY, Some("not a secret".into())),
            (DATA_ACCESS_KEY, None),
            (
                DATA_TOKEN,
                Some(encode_token(&key.id, &other.secret).to_string()),
            ),
            (DATA_TOKEN, Some("kwk_garbage".into())),
            (DATA_TOKEN, None),
        ];
        for (data_key, value) in cases {
            let mut edited = data(&key, false);
            match value {
                Some(v) => edited.insert(data_key.into(), ByteString(v.into_bytes())),
                None => edited.remove(data_key),
            };
            assert_eq!(verdict(&key, edited, false), Some(data_key), "{data_key}");
        }
    }

    #[test]
    fn basic_auth_username_and_password_must_match_too() {
        let key = issued();
        for data_key in [DATA_USERNAME, DATA_PASSWORD] {
            let mut edited = data(&key, true);
            edited.insert(data_key.into(), ByteString(b"changed".to_vec()));
            assert_eq!(verdict(&key, edited, true), Some(data_key));
        }
    }

    #[test]
    fn the_secret_is_verified_against_the_given_hash() {
        let key = issued();
        let other = issued();
        let data = SecretData(data(&key, false));
        assert_eq!(
            modified_data_key(&data, false, key.id.as_str(), &other.hash),
            Some(DATA_ACCESS_KEY)
        );
    }

    #[test]
    fn the_message_names_the_data_key() {
        let message = modified_message(DATA_TOKEN);
        assert!(message.contains("\"token\""), "{message}");
    }

    fn key_with_status(version: Option<&str>, modified: Option<&str>) -> AccessKey {
        let mut key: AccessKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "keywarden.io/v1alpha1",
            "kind": "AccessKey",
            "metadata": {"name": "ci", "namespace": "team-a", "uid": "uid-1"},
            "spec": {"owner": {"kind": "User", "name": "alice"}},
        }))
        .unwrap();
        let mut status = crate::api::AccessKeyStatus {
            secret_resource_version: version.map(str::to_string),
            ..Default::default()
        };
        if let Some(message) = modified {
            status.conditions = vec![crate::controller::status::condition(
                &[],
                types::SECRET_PRESENT,
                "False",
                reasons::SECRET_MODIFIED,
                message,
                None,
                chrono::Utc::now(),
            )];
        }
        key.status = Some(status);
        key
    }

    #[test]
    fn the_status_verdict_holds_for_its_version_only() {
        let verdicts = Verdicts::default();
        let intact = key_with_status(Some("7"), None);
        assert_eq!(verdicts.earlier(&intact, Some("7")), Some(None));
        assert_eq!(verdicts.earlier(&intact, Some("8")), None, "changed since");
        assert_eq!(verdicts.earlier(&intact, None), None);
        let modified = key_with_status(Some("7"), Some("data \"token\" changed"));
        assert_eq!(
            verdicts.earlier(&modified, Some("7")),
            Some(Some("data \"token\" changed".into()))
        );
    }

    #[test]
    fn a_verdict_of_this_process_bridges_a_key_cache_that_lags_behind_the_status_write() {
        let verdicts = Verdicts::default();
        let stale = key_with_status(None, None);
        verdicts.record(&stale, Some("9"), None);
        assert_eq!(verdicts.earlier(&stale, Some("9")), Some(None));
        assert_eq!(verdicts.earlier(&stale, Some("10")), None);

        let caught_up = key_with_status(Some("9"), None);
        assert_eq!(verdicts.earlier(&caught_up, Some("9")), Some(None));
        assert_eq!(
            verdicts.earlier(&stale, Some("9")),
            None,
            "forgotten once the status shows it"
        );

        verdicts.record(&stale, Some("11"), Some(&"changed".to_string()));
        assert_eq!(
            verdicts.earlier(&stale, Some("11")),
            Some(Some("changed".into()))
        );
        verdicts.forget("uid-1");
        assert_eq!(verdicts.earlier(&stale, Some("11")), None);
    }

    #[test]
    fn a_key_version_replaced_by_a_status_write_is_superseded_until_the_cache_moves_on() {
        let verdicts = Verdicts::default();
        let mut key = key_with_status(None, None);
        key.metadata.resource_version = Some("5".into());
        assert!(!verdicts.superseded(&key), "nothing written yet");
        verdicts.status_written(&key);
        assert!(verdicts.superseded(&key));
        let mut written = key.clone();
        written.metadata.resource_version = Some("6".into());
        assert!(!verdicts.superseded(&written));
        assert!(
            !verdicts.superseded(&key),
            "forgotten once the cache moved on"
        );
        verdicts.status_written(&key);
        verdicts.forget("uid-1");
        assert!(!verdicts.superseded(&key));
    }

    #[test]
    fn taking_the_data_leaves_none_in_the_secret() {
        let key = issued();
        let mut secret = Secret {
            data: Some(data(&key, false)),
            ..Secret::default()
        };
        let taken = SecretData::take(&mut secret);
        assert!(secret.data.is_none());
        assert_eq!(taken.text(DATA_ACCESS_KEY_ID), Some(key.id.as_str()));
    }
}
