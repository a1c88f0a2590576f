//! The `grants.http` entry a pipeline writes.

use serde::{Deserialize, Serialize};

/// One `grants.http` entry: an outbound HTTP authority,
/// `https://git.example.com`, or `{ url: …, secret: NAME, auth: basic|bearer,
/// proxy: URL, caSecret: NAME }` to have the host send the secret as the
/// `Authorization` header, go through an HTTP proxy, or trust a private CA.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HttpGrantSpec {
    Url(String),
    Bound(HttpGrantEntry),
}

/// A string or the long form, keeping the long form's own error (an
/// unknown field is named) rather than serde's "did not match any variant".
impl<'de> Deserialize<'de> for HttpGrantSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = HttpGrantSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or { url, secret, auth, proxy, caSecret }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(HttpGrantSpec::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                HttpGrantEntry::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(HttpGrantSpec::Bound)
            }
        }
        d.deserialize_any(V)
    }
}

/// The long form of a `grants.http` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGrantEntry {
    pub url: String,
    /// A secret the host sends as `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub auth: super::AuthScheme,
    /// An `http://host:port` proxy for this authority (else the proxy
    /// environment of the Capstan process applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// A secret holding PEM CA certificates: TLS to this authority trusts
    /// only those (as git's `http.sslCAInfo`), not the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
}

impl HttpGrantSpec {
    pub fn url(&self) -> &str {
        match self {
            HttpGrantSpec::Url(u) => u,
            HttpGrantSpec::Bound(e) => &e.url,
        }
    }

    pub fn secret(&self) -> Option<(&str, super::AuthScheme)> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound(e) => e.secret.as_deref().map(|s| (s, e.auth)),
        }
    }

    pub fn proxy(&self) -> Option<&str> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound(e) => e.proxy.as_deref(),
        }
    }

    pub fn ca_secret(&self) -> Option<&str> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound(e) => e.ca_secret.as_deref(),
        }
    }

    /// Every secret this entry names (the credential, the CA bundle).
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secret()
            .map(|(n, _)| n)
            .into_iter()
            .chain(self.ca_secret())
    }
}
