//! Scopes: `resource:view|manage`, and whether a key's scopes grant a required scope.
//!
//! `resource:manage` implies `resource:view`. These are a key's *granted* scopes (what the
//! controller found its owner holds): `*` is every permission of the owner and grants every
//! well-formed scope; an empty list grants none.

/// Level of access a scope grants on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    View,
    Manage,
}

/// One parsed scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    resource: String,
    access: Access,
}

impl Scope {
    /// Parses `resource:view` or `resource:manage` (resource: lowercase letters, digits, `-`,
    /// starting with a letter); `None` when malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let (resource, access) = text.split_once(':')?;
        let access = match access {
            "view" => Access::View,
            "manage" => Access::Manage,
            _ => return None,
        };
        let mut chars = resource.bytes();
        let starts_with_letter = chars.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_valid = chars.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (starts_with_letter && rest_valid).then(|| Self {
            resource: resource.to_owned(),
            access,
        })
    }

    /// The resource the scope names.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Whether the scope is `manage` (which implies `view`).
    pub fn is_manage(&self) -> bool {
        self.access == Access::Manage
    }

    /// Whether holding `self` grants `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        self.resource == required.resource && self.access >= required.access
    }
}

/// The granted scope that stands for every permission of the key's owner.
pub const ALL_SCOPES: &str = "*";

/// Whether a key granted `key_scopes` may use the scope `required`. Malformed required scopes
/// are never granted; malformed key scopes grant nothing; no scopes grant nothing.
pub fn grants_scope(key_scopes: &[String], required: &str) -> bool {
    let Some(required) = Scope::parse(required) else {
        return false;
    };
    key_scopes.iter().any(|scope| scope == ALL_SCOPES)
        || key_scopes
            .iter()
            .filter_map(|scope| Scope::parse(scope))
            .any(|scope| scope.grants(&required))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listed_scope_is_granted() {
        let key = scopes(&["logs:view", "collectors:manage"]);
        assert!(grants_scope(&key, "logs:view"));
        assert!(grants_scope(&key, "collectors:manage"));
        assert!(!grants_scope(&key, "logs:manage"));
        assert!(!grants_scope(&key, "metrics:view"));
    }

    #[test]
    fn manage_implies_view() {
        assert!(grants_scope(
            &scopes(&["collectors:manage"]),
            "collectors:view"
        ));
    }

    #[test]
    fn all_scopes_grant_every_well_formed_scope() {
        assert!(grants_scope(&scopes(&["*"]), "anything:manage"));
        assert!(!grants_scope(&scopes(&["*"]), "not a scope"));
    }

    #[test]
    fn no_granted_scope_grants_nothing() {
        assert!(!grants_scope(&[], "logs:view"));
        assert!(!grants_scope(&[], "anything:manage"));
    }

    #[test]
    fn malformed_scopes_are_never_granted() {
        let key = scopes(&["logs:view", "Logs:view", "logs:admin"]);
        for required in [
            "",
            "logs",
            "logs:",
            ":view",
            "Logs:view",
            "logs:admin",
            "1logs:view",
        ] {
            assert!(
                !grants_scope(&key, required),
                "{required:?} must not be granted"
            );
        }
        assert!(!grants_scope(&scopes(&["logs:admin"]), "logs:view"));
    }
}
