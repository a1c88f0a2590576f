//! The page shell (header, navigation, sign-out) and small pieces every
//! page uses: status badges, times, durations, text made safe to show.

use maud::{DOCTYPE, Markup, html};

use super::Viewer;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Runs,
    Approvals,
    Registry,
    Repos,
    None,
}

/// Text from plugins, repositories or people, as shown: maud escapes
/// markup; control characters, bidi overrides and line separators are
/// written as visible escapes (`\u{1b}`), as at a terminal.
pub fn text(s: &str) -> String {
    crate::escape::for_terminal(s).into_owned()
}

/// A whole page.
pub fn page(title: &str, viewer: Option<&Viewer>, nav: Nav, body: Markup) -> Markup {
    let item = |n: Nav, href: &str, label: &str| {
        html! {
            @if n == nav {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Capstan" }
                link rel="stylesheet" href=(super::asset_url("app.css"));
                script src=(super::asset_url("app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/runs" { "Capstan" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            (item(Nav::Runs, "/ui/runs", "Runs"))
                            (item(Nav::Approvals, "/ui/approvals", "Approvals"))
                            (item(Nav::Registry, "/ui/registry", "Registry"))
                            (item(Nav::Repos, "/ui/repos", "Repositories"))
                        }
                        span.who { "Signed in as " strong #user { (text(&v.who.user)) } }
                        form.inline method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A run or task status as a badge (the word is always shown: colour is
/// never the only sign).
pub fn status(s: &str) -> Markup {
    html! { span class={ "badge st-" (s) } data-status=(s) { (s) } }
}

/// `2026-12-03 10:44:45` (UTC) for a unix-microsecond time.
pub fn when(us: i64) -> String {
    let t = crate::view::time(us);
    t.get(..19).unwrap_or(&t).replacen('T', " ", 1)
}

/// `1m 05s`, `850ms` between two unix-microsecond times.
pub fn duration(from: Option<i64>, to: Option<i64>) -> String {
    let (Some(a), Some(b)) = (from, to) else {
        return String::new();
    };
    let ms = (b - a).max(0) / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// The current time in unix microseconds (durations of running things).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A hidden CSRF field for a form of this session.
pub fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

/// A query string from pairs, values percent-encoded; empty values left out.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    let s = q.finish();
    if s.is_empty() { s } else { format!("?{s}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_plugins_cannot_become_markup_or_escape_sequences() {
        let v = Viewer {
            who: crate::api::Identity {
                user: "<script>alert(1)</script>\u{1b}[31m".into(),
                groups: vec![],
            },
            csrf: "c".into(),
        };
        let html = page(
            "t",
            Some(&v),
            Nav::Runs,
            html! { p { (text("a\u{202e}b")) } },
        )
        .into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\u{1b}[31m"),
            "{html}"
        );
        assert!(html.contains("a\\u{202e}b"), "{html}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(Some(0), Some(850_000)), "850ms");
        assert_eq!(duration(Some(0), Some(12_340_000)), "12.3s");
        assert_eq!(duration(Some(0), Some(65_000_000)), "1m 05s");
        assert_eq!(duration(Some(0), None), "");
        assert_eq!(
            query(&[("a", Some("x y")), ("b", None), ("c", Some(""))]),
            "?a=x+y"
        );
    }
}
