//! CORS origin allowlists: parsing presented `Origin` headers and matching allowlist entries.
