use chrono::Duration;

use super::*;
use crate::builtin::builtin_types;
use crate::registry::ResourceType;
use crate::store::{storage_key, DeleteOptions, Store, WriteContext};

fn resource(plural: &str) -> ResourceType {
    if plural == "pods" {
        // why: Pods are not served yet; a Secret-shaped type stores them under `pods`.
        let mut pods = resource("secrets");
        pods.plural = "pods".into();
        pods.kind = "Pod".into();
        return pods;
    }
    builtin_types()
        .into_iter()
        .find(|rt| rt.group.is_empty() && rt.plural == plural)
        .expect("built-in type")
}

/// Creates `name` of `plural` in namespace `team-a` and returns its uid.
fn create(store: &Store, plural: &str, name: &str, spec: Value) -> String {
    let rt = resource(plural);
    let mut object = json!({ "metadata": { "name": name, "namespace": "team-a" } });
    if !spec.is_null() {
        object["spec"] = spec;
    }
    let created = store
        .lock()
        .create(
            &rt,
            &storage_key(&rt),
            "team-a",
            object,
            &WriteContext::default(),
        )
        .expect("created");
    str_at(&created, "/metadata/uid").to_string()
}

fn delete(store: &Store, plural: &str, name: &str) {
    let rt = resource(plural);
    store
        .lock()
        .delete(
            &rt,
            &storage_key(&rt),
            "team-a",
            name,
            &DeleteOptions::default(),
        )
        .expect("deleted");
}

fn spec(body: Value) -> TokenSpec {
    TokenSpec::from_request(&body).unwrap_or_else(|err| panic!("valid spec: {err}"))
}

fn mint(store: &Store, body: Value, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let state = store.lock();
    mint_claims(&state, &spec(body), "team-a", "builder", now).map(|(claims, _)| claims)
}

fn check(store: &Store, claims: &Value, now: DateTime<Utc>) -> Result<UserInfo, String> {
    validate(&store.lock(), claims, now)
}

#[test]
fn a_token_request_defaults_to_an_hour_for_the_api_servers_audience() {
    let store = Store::new(10);
    let uid = create(&store, "serviceaccounts", "builder", Value::Null);
    let now = Utc::now();
    let state = store.lock();
    let spec = spec(json!({}));
    let (claims, expiration) =
        mint_claims(&state, &spec, "team-a", "builder", now).expect("minted");
    assert_eq!(spec.audiences, vec![API_AUDIENCE]);
    assert_eq!(spec.expiration_seconds, 3600);
    assert_eq!(claims["iss"], API_AUDIENCE);
    assert_eq!(claims["aud"], json!([API_AUDIENCE]));
    assert_eq!(claims["sub"], "system:serviceaccount:team-a:builder");
    assert_eq!(claims["iat"], now.timestamp());
    assert_eq!(claims["nbf"], now.timestamp());
    assert_eq!(claims["exp"], now.timestamp() + 3600);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() == 36));
    assert_eq!(
        claims["kubernetes.io"],
        json!({ "namespace": "team-a", "serviceaccount": { "name": "builder", "uid": uid } })
    );
    assert_eq!(expiration, timestamp(now + Duration::seconds(3600)));
}

#[test]
fn an_expiration_under_ten_minutes_is_invalid_with_kube_apiservers_message() {
    let err = TokenSpec::from_request(&json!({ "spec": { "expirationSeconds": 599 } }))
        .err()
        .expect("refused");
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert_eq!(
        err.message,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    );
    assert_eq!(
        err.details,
        Some(json!({
            "group": "authentication.k8s.io",
            "kind": "TokenRequest",
            "causes": [{
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 599: may not specify a duration less than 10 minutes",
                "field": "spec.expirationSeconds",
            }],
        }))
    );
}

#[test]
fn an_expiration_over_two_to_the_32_seconds_is_invalid() {
    let err = TokenSpec::from_request(&json!({ "spec": { "expirationSeconds": 4294967297_i64 } }))
        .err()
        .expect("refused");
    assert_eq!(
        err.message,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"
    );
}

#[test]
fn a_body_naming_another_service_account_is_invalid() {
    let err = check_metadata(
        &json!({ "metadata": { "name": "other" } }),
        "team-a",
        "builder",
    )
    .expect_err("refused");
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert_eq!(
        err.message,
        "TokenRequest.authentication.k8s.io \"builder\" is invalid: metadata.name: Invalid value: \"other\": must match the service account name if specified"
    );
}

#[test]
fn a_missing_service_account_is_not_found() {
    let store = Store::new(10);
    let err = require_service_account(&store.lock(), "team-a", "builder").expect_err("missing");
    assert_eq!((err.code, err.reason), (404, "NotFound"));
    assert_eq!(err.message, "serviceaccounts \"builder\" not found");
}

#[test]
fn a_token_bound_to_a_secret_names_it_and_dies_with_it() {
    let store = Store::new(10);
    create(&store, "serviceaccounts", "builder", Value::Null);
    let secret_uid = create(&store, "secrets", "session", Value::Null);
    let now = Utc::now();
    let claims = mint(
        &store,
        json!({ "spec": { "boundObjectRef": { "kind": "Secret", "apiVersion": "v1", "name": "session", "uid": secret_uid } } }),
        now,
    )
    .expect("minted");
    assert_eq!(
        claims["kubernetes.io"]["secret"],
        json!({ "name": "session", "uid": secret_uid })
    );
    assert!(check(&store, &claims, now).is_ok());
    delete(&store, "secrets", "session");
    assert_eq!(
        check(&store, &claims, now),
        Err("service account token has been invalidated".to_string())
    );
    let recreated_uid = create(&store, "secrets", "session", Value::Null);
    assert_eq!(
        check(&store, &claims, now),
        Err(format!(
            "secret UID ({recreated_uid}) does not match service account secret ref claim ({secret_uid})"
        ))
    );
}

#[test]
fn binding_to_a_secret_with_another_uid_is_a_conflict() {
    let store = Store::new(10);
    create(&store, "serviceaccounts", "builder", Value::Null);
    create(&store, "secrets", "session", Value::Null);
    let err = mint(
        &store,
        json!({ "spec": { "boundObjectRef": { "kind": "Secret", "apiVersion": "v1", "name": "session", "uid": "stale" } } }),
        Utc::now(),
    )
    .expect_err("refused");
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on Secret \"session\": the UID in the bound object reference (stale) does not match the UID in record. The object might have been deleted and then recreated"
    );
}

#[test]
fn binding_to_a_missing_secret_is_not_found() {
    let store = Store::new(10);
    create(&store, "serviceaccounts", "builder", Value::Null);
    let err = mint(
        &store,
        json!({ "spec": { "boundObjectRef": { "kind": "Secret", "apiVersion": "v1", "name": "gone" } } }),
        Utc::now(),
    )
    .expect_err("refused");
    assert_eq!(
        (err.code, err.reason, err.message.as_str()),
        (404, "NotFound", "secrets \"gone\" not found")
    );
}

#[test]
fn binding_to_a_configmap_is_a_bad_request() {
    let store = Store::new(10);
    create(&store, "serviceaccounts", "builder", Value::Null);
    let err = mint(
        &store,
        json!({ "spec": { "boundObjectRef": { "kind": "ConfigMap", "apiVersion": "v1", "name": "c" } } }),
        Utc::now(),
    )
    .expect_err("refused");
    assert_eq!((err.code, err.reason), (400, "BadRequest"));
    assert_eq!(
        err.message,
        "cannot bind token to object of type /v1, Kind=ConfigMap"
    );
}

#[test]
fn a_pod_bound_token_names_the_pod_and_requires_the_pods_service_account() {
    let store = Store::new(10);
    create(&store, "serviceaccounts", "builder", Value::Null);
    let pod_uid = create(
        &store,
        "pods",
        "web",
        json!({ "serviceAccountName": "builder" }),
    );
    create(
        &store,
        "pods",
        "other",
        json!({ "serviceAccountName": "deployer" }),
    );
    let now = Utc::now();
    let claims = mint(
        &store,
        json!({ "spec": { "boundObjectRef": { "kind": "Pod", "apiVersion": "v1", "name": "web" } } }),
        now,
    )
    .expect("minted");
    let user = check(&store, &claims, now).expect("valid");
    assert_eq!(user.extra[POD_NAME_EXTRA], vec!["web"]);
    assert_eq!(user.extra[POD_UID_EXTRA], vec![pod_uid]);
    let err = mint(
        &store,
        json!({ "spec": { "boundObjectRef": { "kind": "Pod", "apiVersion": "v1", "name": "other" } } }),
        now,
    )
    .expect_err("refused");
    assert_eq!((err.code, err.reason), (400, "BadRequest"));
    assert_eq!(
        err.message,
        "cannot bind token for serviceaccount \"builder\" to pod running with different serviceaccount name."
    );
}

#[test]
fn a_valid_token_speaks_for_its_service_account_with_its_groups_and_credential_id() {
    let store = Store::new(10);
    let uid = create(&store, "serviceaccounts", "builder", Value::Null);
    let now = Utc::now();
    let claims = mint(&store, json!({}), now).expect("minted");
    let user = check(&store, &claims, now).expect("valid");
    assert_eq!(user.username, "system:serviceaccount:team-a:builder");
    assert_eq!(user.uid, uid);
    assert_eq!(
        user.groups,
        vec!["system:serviceaccounts", "system:serviceaccounts:team-a"]
    );
    let jti = claims["jti"].as_str().expect("jti");
    assert_eq!(
        user.extra,
        BTreeMap::from([(CREDENTIAL_ID_EXTRA.to_string(), vec![format!("JTI={jti}")])])
    );
}

#[test]
fn a_token_expires_a_minute_after_its_exp_claim() {
    let store = Store::new(10);
    create(&store, "serviceaccounts", "builder", Value::Null);
    let now = Utc::now();
    let claims =
        mint(&store, json!({ "spec": { "expirationSeconds": 600 } }), now).expect("minted");
    assert!(check(&store, &claims, now + Duration::seconds(660)).is_ok());
    assert_eq!(
        check(&store, &claims, now + Duration::seconds(661)),
        Err("service account token has expired".to_string())
    );
    assert_eq!(
        check(&store, &claims, now - Duration::seconds(61)),
        Err("service account token is not valid yet".to_string())
    );
}

#[test]
fn a_token_dies_with_its_service_account_and_stays_dead_when_it_is_recreated() {
    let store = Store::new(10);
    let old_uid = create(&store, "serviceaccounts", "builder", Value::Null);
    let now = Utc::now();
    let claims = mint(&store, json!({}), now).expect("minted");
    delete(&store, "serviceaccounts", "builder");
    assert_eq!(
        check(&store, &claims, now),
        Err("serviceaccounts \"builder\" not found".to_string())
    );
    let new_uid = create(&store, "serviceaccounts", "builder", Value::Null);
    assert_eq!(
        check(&store, &claims, now),
        Err(format!(
            "service account UID ({new_uid}) does not match claim ({old_uid})"
        ))
    );
}

#[test]
fn a_single_string_audience_is_read_as_a_list() {
    assert_eq!(audiences(&json!({ "aud": "vault" })), vec!["vault"]);
    assert_eq!(audiences(&json!({ "aud": ["a", "b"] })), vec!["a", "b"]);
    assert!(audiences(&json!({})).is_empty());
}
