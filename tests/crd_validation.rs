//! The CEL rules in the generated AccessKey schema, evaluated client-side with kube-cel exactly as
//! an apiserver evaluates `x-kubernetes-validations` on create and update.

use keywarden::api::{AccessKey, AccessKeySpec, KeyOwner, OwnerKind, SecretTemplate, SecretType};
use kube::core::cel::{validate_cel, validate_cel_update, ValidationErrors};

fn key(owner: &str) -> AccessKey {
    AccessKey::new(
        "ci-deployer",
        AccessKeySpec {
            owner: KeyOwner {
                kind: OwnerKind::User,
                name: owner.to_owned(),
            },
            display_name: Some("CI deployer".to_owned()),
            description: None,
            scopes: vec!["logs:view".to_owned()],
            allowed_origins: vec!["https://app.example.com".to_owned()],
            active: true,
            rotate_generation: 0,
            reactivate_generation: 0,
            policy_name: None,
            secret: SecretTemplate::default(),
        },
    )
}

fn with_secret_name(mut key: AccessKey, name: Option<&str>) -> AccessKey {
    key.spec.secret.name = name.map(str::to_owned);
    key
}

fn messages(result: Result<(), ValidationErrors>) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn new_key_passes_every_rule() {
    assert_eq!(messages(validate_cel(&key("alice"))), Vec::<String>::new());
}

#[test]
fn editing_mutable_fields_is_allowed() {
    let old = key("alice");
    let mut new = old.clone();
    new.spec.display_name = Some("renamed".to_owned());
    new.spec.active = false;
    new.spec.rotate_generation = 3;
    new.spec.scopes.push("collectors:manage".to_owned());
    assert_eq!(
        messages(validate_cel_update(&new, &old)),
        Vec::<String>::new()
    );
}

#[test]
fn changing_the_owner_name_is_rejected() {
    let old = key("alice");
    let new = key("mallory");
    assert_eq!(
        messages(validate_cel_update(&new, &old)),
        vec!["owner is immutable"]
    );
}

#[test]
fn changing_the_owner_kind_is_rejected() {
    let old = key("alice");
    let mut new = old.clone();
    new.spec.owner.kind = OwnerKind::ServiceAccount;
    assert_eq!(
        messages(validate_cel_update(&new, &old)),
        vec!["owner is immutable"]
    );
}

#[test]
fn changing_the_secret_name_is_rejected() {
    let old = with_secret_name(key("alice"), Some("first"));
    let new = with_secret_name(key("alice"), Some("second"));
    assert_eq!(
        messages(validate_cel_update(&new, &old)),
        vec!["spec.secret.name is immutable"]
    );
}

#[test]
fn setting_or_clearing_the_secret_name_after_creation_is_rejected() {
    let unnamed = with_secret_name(key("alice"), None);
    let named = with_secret_name(key("alice"), Some("creds"));
    for (old, new) in [(&unnamed, &named), (&named, &unnamed)] {
        assert_eq!(
            messages(validate_cel_update(new, old)),
            vec!["spec.secret.name is immutable"]
        );
    }
}

#[test]
fn keeping_the_secret_name_is_allowed() {
    let old = with_secret_name(key("alice"), Some("creds"));
    let mut new = old.clone();
    new.spec
        .secret
        .labels
        .insert("team".to_owned(), "a".to_owned());
    assert_eq!(
        messages(validate_cel_update(&new, &old)),
        Vec::<String>::new()
    );
}

#[test]
fn changing_the_secret_type_is_rejected() {
    let old = key("alice");
    let mut new = old.clone();
    new.spec.secret.type_ = SecretType::BasicAuth;
    assert_eq!(
        messages(validate_cel_update(&new, &old)),
        vec!["secret.type is immutable"]
    );
}
