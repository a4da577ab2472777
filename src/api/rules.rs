//! The schema rules users hit when they write a key or a policy by hand, each with the sentence
//! the API server answers instead of a raw regular expression.
//!
//! CEL string literals would need every backslash doubled, so the patterns use bracket classes
//! (`[.]`, `[*]`) instead of escapes; each says what [`super::access_key`]'s `*_PATTERN`
//! constants say.

/// CEL on `spec.scopes` (and a policy's `allowedScopes`): every item is a scope.
pub const SCOPES_RULE: &str = "self.all(s, s.matches('^[a-z][a-z0-9-]*:(view|manage)$'))";
/// What a scope is.
pub const SCOPES_MESSAGE: &str = "each scope must be <resource>:view or <resource>:manage, where the resource is lower-case letters, digits and '-' starting with a letter (for example logs:view)";

/// CEL on `spec.allowedOrigins`: every item is an origin.
pub const ORIGINS_RULE: &str = "self.all(o, o.matches('^https?://([*][.])?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?([.][a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$'))";
/// What an origin is.
pub const ORIGINS_MESSAGE: &str = "each origin must be http:// or https:// followed by a lower-case host name and an optional :port, with no path or trailing slash (for example https://app.example.com:8443); *.example.com allows every subdomain of example.com";

/// CEL on a name of an object in the key's namespace: a DNS-1123 subdomain.
pub const DNS_SUBDOMAIN_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
/// What a Secret name is.
pub const SECRET_NAME_MESSAGE: &str = "a Secret name must consist of lower-case letters, digits, '-' and '.', and start and end with a letter or digit (for example ci-deployer-credentials)";
/// What a policy name is.
pub const POLICY_NAME_MESSAGE: &str = "policyName must name an AccessKeyPolicy: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (for example default)";

/// CEL on a policy duration.
pub const DURATION_RULE: &str = "self.matches('^(0|[0-9]{1,9}(s|m|h|d))$')";
/// What a policy duration is.
pub const DURATION_MESSAGE: &str = "a duration is a whole number followed by s, m, h or d (for example 90s, 5m, 36h or 180d), or 0 for never";

/// Longest scope accepted: bounds the cost of [`SCOPES_RULE`] as the API server estimates it.
pub const MAX_SCOPE_LENGTH: u32 = 253;
