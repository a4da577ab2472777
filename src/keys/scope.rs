//! Scopes: `resource:view|manage`, and whether a key's scopes grant a required scope.
