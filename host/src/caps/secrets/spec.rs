//! The `grants.secrets` entry a pipeline writes.

use serde::{Deserialize, Serialize};

/// One `grants.secrets` entry: a secret the plugin may open by name,
/// `NAME`, or `{ name: NAME, reveal: true }` to let it read the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretGrantSpec {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        reveal: bool,
    },
}

impl SecretGrantSpec {
    pub fn name(&self) -> &str {
        match self {
            SecretGrantSpec::Name(n) | SecretGrantSpec::Full { name: n, .. } => n,
        }
    }

    pub fn reveal(&self) -> bool {
        matches!(self, SecretGrantSpec::Full { reveal: true, .. })
    }
}
