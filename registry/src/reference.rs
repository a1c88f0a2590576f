//! Plugin references as pipelines write them in `uses:`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::{Digest, Error};

/// Where a task's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `name@range`: the highest non-yanked version matching the semver range
    /// (Cargo's rules: `1` and `1.2` and `1.2.3` are caret ranges, `=1.2.3`
    /// is exact; prereleases only when the range names one).
    Range {
        name: String,
        req: semver::VersionReq,
    },
    /// `name@sha256:…`: one exact component.
    Digest { name: String, digest: Digest },
    /// A component file (`file:///abs/x.wasm`, or a path ending in `.wasm`,
    /// relative to the pipeline file). For development.
    File(PathBuf),
    /// `oci://host[:port]/path/name:version`.
    Oci(String),
}

impl Reference {
    /// Whether the registry resolves it (and the lock file pins it).
    pub fn is_registry(&self) -> bool {
        matches!(
            self,
            Reference::Range { .. } | Reference::Digest { .. } | Reference::Oci(_)
        )
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |message: &str| Error::BadReference {
            reference: s.to_string(),
            message: message.to_string(),
        };
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Reference::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("oci://") {
            if !rest.contains('/')
                || !rest
                    .rsplit('/')
                    .next()
                    .is_some_and(|last| last.contains(':'))
            {
                return Err(bad("expected oci://host[:port]/path/name:version"));
            }
            return Ok(Reference::Oci(s.to_string()));
        }
        if s.ends_with(".wasm") {
            return Ok(Reference::File(PathBuf::from(s)));
        }
        let Some((name, version)) = s.split_once('@') else {
            return Err(bad(
                "expected name@version-range (e.g. git-clone@1.2), name@sha256:<digest>, a path to a .wasm, \
                 or oci://…",
            ));
        };
        if !valid_name(name) {
            return Err(bad(
                "plugin names use lowercase letters, digits, `-` and `_`",
            ));
        }
        if version.starts_with("sha256:") {
            let digest = Digest::try_from(version.to_string()).map_err(|m| bad(&m))?;
            return Ok(Reference::Digest {
                name: name.to_string(),
                digest,
            });
        }
        let req = semver::VersionReq::parse(version)
            .map_err(|e| bad(&format!("version range `{version}`: {e}")))?;
        Ok(Reference::Range {
            name: name.to_string(),
            req,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Range { name, req } => write!(f, "{name}@{req}"),
            Reference::Digest { name, digest } => write!(f, "{name}@{digest}"),
            Reference::File(p) => write!(f, "{}", p.display()),
            Reference::Oci(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let r: Reference = "git-clone@1.2".parse().unwrap();
        assert!(
            matches!(&r, Reference::Range { name, req } if name == "git-clone" && req.to_string() == "^1.2")
        );
        let d = format!("git-clone@sha256:{}", "a".repeat(64));
        assert!(matches!(
            d.parse::<Reference>().unwrap(),
            Reference::Digest { .. }
        ));
        assert_eq!(
            "./x.wasm".parse::<Reference>().unwrap(),
            Reference::File("./x.wasm".into())
        );
        assert_eq!(
            "file:///a/b.wasm".parse::<Reference>().unwrap(),
            Reference::File("/a/b.wasm".into())
        );
        assert!(matches!(
            "oci://localhost:5000/p/git-clone:1.2.0"
                .parse::<Reference>()
                .unwrap(),
            Reference::Oci(_)
        ));
        for bad in [
            "git-clone",
            "Git@1",
            "x@not-a-range",
            "x@sha256:zz",
            "oci://nohost",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
