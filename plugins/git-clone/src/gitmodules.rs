//! `.gitmodules`: the submodules' names, paths and URLs.
//!
//! Hand-written, and why: the file is git-config syntax, and the crates
//! that parse it (gix-config via gix-submodule) exist only in gitoxide
//! releases newer than the gix-object/gix-index this plugin builds on, so
//! adding them would put a second copy of a dozen gix crates into the
//! component. This reads the part of the syntax `.gitmodules` uses —
//! sections with quoted subsections, `key = value` with quotes, escapes,
//! comments and continuation lines — and is tested side by side with
//! `git config --file .gitmodules --list` on tricky inputs.

/// One `[submodule "NAME"]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submodule {
    pub name: String,
    pub path: Option<String>,
    pub url: Option<String>,
}

/// Every `(section.subsection.key, value)` in file order, keys lower-cased
/// except the subsection, as `git config --list` prints them.
pub fn entries(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_start();
        let at = |m: &str| format!(".gitmodules line {}: {m}", n + 1);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let (head, after) = parse_header(rest).ok_or_else(|| at("malformed section header"))?;
            section = Some(head);
            let after = after.trim_start();
            if after.is_empty() || after.starts_with('#') || after.starts_with(';') {
                continue;
            }
            // `[section] key = value` on one line.
            out.push(key_value(section.as_deref(), after, &mut lines).map_err(|e| at(&e))?);
            continue;
        }
        out.push(key_value(section.as_deref(), line, &mut lines).map_err(|e| at(&e))?);
    }
    Ok(out)
}

/// `section "sub"]` or `section]` (after the `[`): the dotted name and
/// what follows the `]`.
fn parse_header(s: &str) -> Option<(String, &str)> {
    let end_name = s.find([' ', '\t', ']'])?;
    let name = &s[..end_name];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return None;
    }
    let rest = s[end_name..].trim_start_matches([' ', '\t']);
    if let Some(after) = rest.strip_prefix(']') {
        return Some((name.to_ascii_lowercase(), after));
    }
    let mut chars = rest.strip_prefix('"')?.char_indices();
    let mut sub = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => sub.push(chars.next()?.1),
            '"' => {
                let after = rest[1 + i + 1..].strip_prefix(']')?;
                return Some((format!("{}.{sub}", name.to_ascii_lowercase()), after));
            }
            '\n' | '\0' => return None,
            c => sub.push(c),
        }
    }
    None
}

fn key_value<'a, I: Iterator<Item = (usize, &'a str)>>(
    section: Option<&str>,
    line: &str,
    more: &mut std::iter::Peekable<I>,
) -> Result<(String, String), String> {
    let section = section.ok_or("a key outside any section")?;
    let key_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(line.len());
    let key = &line[..key_end];
    if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("malformed key".into());
    }
    let rest = line[key_end..].trim_start_matches([' ', '\t']);
    let name = format!("{section}.{}", key.to_ascii_lowercase());
    if rest.is_empty() || rest.starts_with('#') || rest.starts_with(';') {
        return Ok((name, "true".into()));
    }
    let mut value_text = rest.strip_prefix('=').ok_or("expected `=`")?.to_string();
    let mut value = String::new();
    let mut quoted = false;
    // Trailing whitespace outside quotes is dropped; inside it is kept.
    let mut pending_space = String::new();
    loop {
        let mut chars = value_text.chars();
        let mut continued = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    None => {
                        continued = true;
                        break;
                    }
                    Some('n') => push(&mut value, &mut pending_space, '\n'),
                    Some('t') => push(&mut value, &mut pending_space, '\t'),
                    Some('b') => {
                        value.push_str(&pending_space);
                        pending_space.clear();
                        value.pop();
                    }
                    Some(c @ ('\\' | '"')) => push(&mut value, &mut pending_space, c),
                    Some(_) => return Err("bad escape in a value".into()),
                },
                '"' => {
                    value.push_str(&pending_space);
                    pending_space.clear();
                    quoted = !quoted;
                }
                '#' | ';' if !quoted => break,
                ' ' | '\t' if !quoted => {
                    if !value.is_empty() {
                        pending_space.push(c);
                    }
                }
                c => push(&mut value, &mut pending_space, c),
            }
        }
        if !continued {
            break;
        }
        match more.next() {
            Some((_, next)) => value_text = next.to_string(),
            None => break,
        }
    }
    if quoted {
        return Err("unterminated quote in a value".into());
    }
    Ok((name, value))
}

fn push(value: &mut String, pending: &mut String, c: char) {
    value.push_str(pending);
    pending.clear();
    value.push(c);
}

/// The submodules, in file order (the last value of a key wins, as in git).
pub fn parse(text: &str) -> Result<Vec<Submodule>, String> {
    let mut out: Vec<Submodule> = Vec::new();
    for (key, value) in entries(text)? {
        let Some(rest) = key.strip_prefix("submodule.") else {
            continue;
        };
        let Some((name, field)) = rest.rsplit_once('.') else {
            continue;
        };
        let i = match out.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                out.push(Submodule {
                    name: name.to_string(),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        match field {
            "path" => out[i].path = Some(value),
            "url" => out[i].url = Some(value),
            _ => {}
        }
    }
    Ok(out)
}

/// A submodule URL as git resolves it: `./x` and `../x` against the
/// superproject's remote URL (each `../` drops one path component);
/// absolute URLs as they are.
pub fn resolve_url(base: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut base = base.trim_end_matches('/').to_string();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            match base.rfind('/') {
                // Never past the authority (`scheme://host`).
                Some(i) if !base[..i].ends_with('/') => base.truncate(i),
                // scp-like `host:repo.git`: up to the colon (git's rule).
                None if crate::ssh::SshUrl::parse(&base).is_some() => {
                    let colon = base.find(':').map_or(0, |c| c + 1);
                    base.truncate(colon);
                    return format!("{base}{}", rest.trim_start_matches("../"));
                }
                _ => {}
            }
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: &str = "# comment\n\
[submodule \"lib\"]\n\
\tpath = vendor/lib\n\
\turl = ../lib.git\n\
[submodule \"we\\\"ird name\"] ; trailing\n\
\tPATH = \"spaced path \" # comment\n\
\turl = https://h/x.git ; c\n\
\tbranch\n\
[Submodule \"Case\"]\n\
\tpath = a\\\n\
b\n\
\turl = \"q\\\\u\"ote\\tx\n\
[core]\n\
\tbare = false\n\
[submodule \"lib\"]\n\
\turl = ../lib2.git\n";

    /// Side by side with `git config --file F --list`.
    #[test]
    fn entries_match_git_config() {
        let dir = std::env::temp_dir().join(format!("capstan-gitmodules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gitmodules");
        std::fs::write(&file, TRICKY).unwrap();
        let out = std::process::Command::new("git")
            .args(["config", "--file"])
            .arg(&file)
            .args(["--list", "-z"])
            .output()
            .expect("git must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<(String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(|kv| match kv.split_once('\n') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), "true".to_string()),
            })
            .collect();
        assert_eq!(entries(TRICKY).unwrap(), theirs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn submodules_and_urls() {
        let subs = parse(TRICKY).unwrap();
        assert_eq!(subs[0].name, "lib");
        assert_eq!(subs[0].path.as_deref(), Some("vendor/lib"));
        assert_eq!(
            subs[0].url.as_deref(),
            Some("../lib2.git"),
            "the last value wins"
        );
        assert_eq!(subs[1].name, "we\"ird name");
        assert_eq!(subs[1].path.as_deref(), Some("spaced path "));
        assert_eq!(
            resolve_url("http://h:8080/team/app.git", "../lib.git"),
            "http://h:8080/team/lib.git"
        );
        assert_eq!(
            resolve_url("http://h/team/app.git/", "./sub.git"),
            "http://h/team/app.git/sub.git"
        );
        assert_eq!(
            resolve_url("http://h/app.git", "../../x.git"),
            "http://h/x.git"
        );
        // scp-like, as git resolves them.
        assert_eq!(
            resolve_url("git@h:org/app.git", "../lib.git"),
            "git@h:org/lib.git"
        );
        assert_eq!(resolve_url("git@h:app.git", "../lib.git"), "git@h:lib.git");
        assert_eq!(
            resolve_url("http://h/a.git", "https://o/b.git"),
            "https://o/b.git"
        );
        assert!(entries("[submodule \"x\"\n").is_err());
        assert!(entries("key = outside\n").is_err());
    }
}
