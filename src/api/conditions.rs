//! Condition types, condition reasons and event reasons (PascalCase, one place).

/// Condition types on an `AccessKey`.
pub mod types {
    /// The key can be used: issued, active, not expired.
    pub const READY: &str = "Ready";
    /// A secret has been issued for the current rotate generation.
    pub const ISSUED: &str = "Issued";
    /// The owner already holds the policy's maximum of issued keys.
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    /// The governing policy was found and selects the key's namespace.
    pub const POLICY_RESOLVED: &str = "PolicyResolved";
    /// The key's Secret exists and holds the current issuance.
    pub const SECRET_PRESENT: &str = "SecretPresent";
    /// The key's owner may `get` the key's Secret (a Role and RoleBinding controlled by the key).
    pub const OWNER_CAN_READ: &str = "OwnerCanRead";
    /// The owner holds every scope the key asks for (its `*` always).
    pub const SCOPES_HELD: &str = "ScopesHeld";
    /// On an `AccessKeyPolicy`: the spec is valid and applied.
    pub const ACCEPTED: &str = "Accepted";
    /// kstatus: the controller has work in flight for the current generation.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the object needs a person (the reason says why); `Ready` keeps its meaning.
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons and event reasons.
pub mod reasons {
    pub const ISSUED: &str = "Issued";
    pub const ROTATED: &str = "Rotated";
    pub const ACTIVATED: &str = "Activated";
    pub const DEACTIVATED: &str = "Deactivated";
    pub const REACTIVATED: &str = "Reactivated";
    pub const EXPIRED: &str = "Expired";
    pub const UNUSED: &str = "Unused";
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    pub const WITHIN_LIMIT: &str = "WithinLimit";
    pub const GRACE_PERIOD_ENDED: &str = "GracePeriodEnded";
    pub const DELETED: &str = "Deleted";
    pub const POLICY_RESOLVED: &str = "PolicyResolved";
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    pub const NAMESPACE_NOT_SELECTED: &str = "NamespaceNotSelected";
    pub const SCOPE_NOT_ALLOWED: &str = "ScopeNotAllowed";
    pub const ORIGINS_REQUIRED: &str = "OriginsRequired";
    pub const SECRET_PRESENT: &str = "SecretPresent";
    pub const SECRET_MISSING: &str = "SecretMissing";
    pub const SECRET_MODIFIED: &str = "SecretModified";
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    pub const PENDING: &str = "Pending";
    pub const INACTIVE: &str = "Inactive";
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
    pub const OWNER_ACCESS_GRANTED: &str = "OwnerAccessGranted";
    pub const OWNER_ACCESS_DISABLED: &str = "OwnerAccessDisabled";
    pub const OWNER_ACCESS_CONFLICT: &str = "OwnerAccessConflict";
    pub const NO_SECRET_OF_ITS_OWN: &str = "NoSecretOfItsOwn";
    pub const POLICY_UNRESOLVED: &str = "PolicyUnresolved";
    pub const ISSUING: &str = "Issuing";
    pub const ROTATING: &str = "Rotating";
    pub const RECONCILED: &str = "Reconciled";
    pub const SCOPES_HELD: &str = "ScopesHeld";
    pub const SCOPES_NOT_HELD: &str = "ScopesNotHeld";
}
