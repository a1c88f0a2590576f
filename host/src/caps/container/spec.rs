//! The `grants.container` entry a pipeline writes, and image references.

use serde::{Deserialize, Serialize};

/// One `grants.container` entry: images the task may run, as a pattern
/// over the full reference (`localhost/golang:*`,
/// `docker.io/library/golang@sha256:…`), and whether their containers get
/// a network (default: none, deny by default) and which secrets they may
/// be given as environment variables (by the host; the plugin only names
/// them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerGrant {
    pub image: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Named caches its containers may mount (kept across runs of the
    /// pipeline under STATE/caches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<String>,
    /// Its containers run as root (uid 0) with the container runtime's
    /// default capabilities, still unprivileged and without new
    /// privileges: what an image builder such as kaniko needs to unpack
    /// base layers. Without it a container runs with every capability
    /// dropped, and in the cluster as the controller's own uid. The
    /// platform policy must allow it (`container.root`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
}

/// An environment variable name a container may be given: letters, digits
/// and `_`, not starting with a digit, not `CAPSTAN_*` (the host's).
pub fn check_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "environment variable name `{}`: letters, digits and `_`, not starting with a digit",
            crate::caps::log::one_line(name)
        ));
    }
    if name.starts_with("CAPSTAN_") {
        return Err(format!("`{name}`: CAPSTAN_* is the host's"));
    }
    Ok(())
}

/// An image reference in full: `registry/repository` plus `:tag` and/or
/// `@digest` (`golang:1.22` → `docker.io/library/golang:1.22`; no tag and
/// no digest → `:latest`), or why it is not one.
pub fn normalize(image: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("image `{image}`: {why}"));
    if image.is_empty() || image.len() > 512 {
        return bad("must be 1 to 512 characters");
    }
    if !image
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
    {
        return bad("only letters, digits and `._-/:@` may appear in an image reference");
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("a digest must be `sha256:` and 64 hex digits");
        }
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    let (repo, tag) = match last.split_once(':') {
        Some((_, t)) => (&name[..name.len() - t.len() - 1], Some(t)),
        None => (name, None),
    };
    if repo.is_empty() || repo.split('/').any(str::is_empty) || repo.contains("..") {
        return bad("empty or malformed repository");
    }
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = match (has_registry, repo.contains('/')) {
        (true, _) => repo.to_string(),
        (false, true) => format!("docker.io/{repo}"),
        (false, false) => format!("docker.io/library/{repo}"),
    };
    let mut out = full;
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// Whether the full reference `image` matches `pattern` (itself
/// normalized): `*` stands for any run of characters other than `/`, `:`
/// and `@`, so `localhost/golang:*` allows any tag of that repository and
/// nothing else, and `…@sha256:…` allows exactly that content.
pub fn matches(pattern: &str, image: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => {
                let mut i = 0;
                loop {
                    if go(rest, &s[i..]) {
                        return true;
                    }
                    match s.get(i) {
                        Some(c) if !b"/:@".contains(c) => i += 1,
                        _ => return false,
                    }
                }
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), image.as_bytes())
}

/// A grant's pattern, normalized as images are (`*` allowed).
pub fn normalize_pattern(pattern: &str) -> Result<String, String> {
    // `*` is not a reference character: stand in for it while normalizing.
    normalize(&pattern.replace('*', "x0star0x")).map(|n| n.replace("x0star0x", "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized_as_docker_does() {
        for (short, full) in [
            ("golang", "docker.io/library/golang:latest"),
            ("golang:1.22", "docker.io/library/golang:1.22"),
            ("bitnami/kubectl:1.29", "docker.io/bitnami/kubectl:1.29"),
            ("localhost/busybox", "localhost/busybox:latest"),
            (
                "reg.example.com:5000/team/img:v1",
                "reg.example.com:5000/team/img:v1",
            ),
            (
                "golang@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/golang@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ] {
            assert_eq!(normalize(short).unwrap(), full, "{short}");
        }
        for bad in [
            "",
            "a b",
            "UPPER/../x",
            "x@sha256:12",
            "x@md5:00",
            "/x",
            "x//y",
            "$(id)",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_star_stays_inside_its_part() {
        let p = normalize_pattern("localhost/golang:*").unwrap();
        assert!(matches(&p, "localhost/golang:1.19"));
        assert!(!matches(&p, "localhost/golang-evil:1.19"));
        assert!(!matches(&p, "localhost/golang:1.19@sha256:00"));
        let p = normalize_pattern("localhost/team-*:*").unwrap();
        assert!(matches(&p, "localhost/team-go:1"));
        assert!(!matches(&p, "localhost/team-go/x:1"));
        assert!(!matches(&p, "evil.io/localhost/team-go:1"));
        let p = normalize_pattern("golang").unwrap();
        assert!(matches(&p, &normalize("golang:latest").unwrap()));
        assert!(!matches(&p, &normalize("golang:1.22").unwrap()));
    }
}
