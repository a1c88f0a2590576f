//! Text for people at a terminal. Plugin text (log lines, progress step
//! names, results, error messages, approval messages and comments) is
//! stored and served exactly as sent; when it is written for a person it
//! passes through [`for_terminal`], so it cannot forge lines (CR, LF), send
//! escape sequences (ESC, OSC 52 clipboard writes, C1 controls) or reorder
//! what is shown (Unicode bidi controls). JSON output keeps the exact value.

use std::borrow::Cow;

/// Is `c` escaped for a terminal: C0 controls but TAB (so CR, LF, ESC,
/// BEL), DEL, C1 controls, the Unicode bidi embedding/override/isolate
/// controls and marks, and the line/paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every [`is_unsafe`] character written as a Rust escape
/// (`\n`, `\r`, `\u{1b}`, `\u{202e}`): visible, and inert.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Multi-line text (error chains, diagnostics): each line escaped with
/// [`for_terminal`], the line breaks kept.
pub fn lines_for_terminal(s: &str) -> String {
    s.split('\n')
        .map(for_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_and_the_rest_kept() {
        assert!(matches!(for_terminal("plain\ttext ü ✓"), Cow::Borrowed(_)));
        assert_eq!(
            for_terminal("a\x1b]52;c;cHduZWQ=\x07b"),
            "a\\u{1b}]52;c;cHduZWQ=\\u{7}b"
        );
        assert_eq!(for_terminal("x\r✔ Succeeded\n"), "x\\r✔ Succeeded\\n");
        assert_eq!(for_terminal("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(for_terminal("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(for_terminal("\u{2067}x\u{2069}"), "\\u{2067}x\\u{2069}");
        assert_eq!(for_terminal("\x7f"), "\\u{7f}");
        assert_eq!(lines_for_terminal("a\nb\rc\x1b"), "a\nb\\rc\\u{1b}");
    }
}
