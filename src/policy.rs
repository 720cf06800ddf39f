//! The policy file (design §3): schema, loading, layering. (skeleton; filled in by the decision engine work)
#![forbid(unsafe_code)]

/// What the user may do under root (design §3 `access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

/// Landlock mode (design §3 `confine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfineMode {
    Auto,
    Require,
    Off,
}
