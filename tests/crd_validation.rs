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
            owner_groups: Vec::new(),
            allowed_origins: vec!["https://app.example.com".to_owned()],
            active: true,
            rotate_generation: 0,
            reactivate_generation: 0,
            policy_name: None,
            rollout: None,
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

fn owned_by(kind: OwnerKind, name: &str) -> AccessKey {
    let mut key = key("alice");
    key.spec.owner = KeyOwner {
        kind,
        name: name.to_owned(),
    };
    key
}

#[test]
fn a_user_owner_may_not_name_a_system_identity() {
    let errors = messages(validate_cel(&owned_by(OwnerKind::User, "system:admin")));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("system:"), "{errors:?}");
    let serviceaccount = owned_by(OwnerKind::User, "system:serviceaccount:team-a:ci");
    assert_eq!(messages(validate_cel(&serviceaccount)).len(), 1);
}

#[test]
fn owner_names_with_surrounding_whitespace_or_control_characters_are_rejected() {
    for name in [
        " alice",
        "alice ",
        "al\u{0}ice",
        "alice\n",
        "al\u{7f}ice",
        "\talice",
    ] {
        let errors = messages(validate_cel(&owned_by(OwnerKind::User, name)));
        assert_eq!(errors.len(), 1, "{name:?}: {errors:?}");
        assert!(errors[0].contains("whitespace"), "{errors:?}");
    }
    let spaced = owned_by(OwnerKind::User, "Alice Example");
    assert_eq!(messages(validate_cel(&spaced)), Vec::<String>::new());
    let email = owned_by(OwnerKind::User, "alice@example.com");
    assert_eq!(messages(validate_cel(&email)), Vec::<String>::new());
}

#[test]
fn a_service_account_owner_is_a_dns_subdomain() {
    for name in ["CI", "ci_bot", "system:serviceaccount:team-a:ci", "-ci"] {
        let errors = messages(validate_cel(&owned_by(OwnerKind::ServiceAccount, name)));
        assert_eq!(errors.len(), 1, "{name:?}: {errors:?}");
        assert!(errors[0].contains("DNS-1123"), "{errors:?}");
    }
    let ci = owned_by(OwnerKind::ServiceAccount, "ci.deployer-1");
    assert_eq!(messages(validate_cel(&ci)), Vec::<String>::new());
}

#[test]
fn keywarden_keys_in_the_secret_template_are_rejected() {
    for reserved in [
        "keywarden.io/previous-keys",
        "keywarden.io/issued-at",
        "audit.keywarden.io/anything",
    ] {
        let mut annotated = key("alice");
        annotated
            .spec
            .secret
            .annotations
            .insert(reserved.to_owned(), "[]".to_owned());
        let errors = messages(validate_cel(&annotated));
        assert_eq!(errors.len(), 1, "{reserved}: {errors:?}");
        assert!(errors[0].contains("controller only"), "{errors:?}");

        let mut labelled = key("alice");
        labelled
            .spec
            .secret
            .labels
            .insert(reserved.to_owned(), "x".to_owned());
        assert_eq!(messages(validate_cel(&labelled)).len(), 1, "{reserved}");
    }
    let mut own = key("alice");
    own.spec
        .secret
        .annotations
        .insert("example.com/keywarden.io".to_owned(), "fine".to_owned());
    assert_eq!(messages(validate_cel(&own)), Vec::<String>::new());
}
