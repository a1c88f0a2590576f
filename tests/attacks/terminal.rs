//! Terminal attacks: plugin text with escape sequences (OSC 52 writes the
//! clipboard), a CR that forges a `Succeeded` line, C1 controls and a bidi
//! override, in log lines, stdout, a progress step, a result and an error
//! message. Every command that writes them for people (`run`'s live view
//! and summary, `logs`, `runs show`) shows them escaped; JSON keeps the
//! exact value.

use std::path::Path;
use std::process::Output;

use capstan_tests::expand;

/// The attack component's string (tests/attacks/term-escape).
const EVIL: &str = "osc52\x1b]52;c;cHduZWQ=\x07 forged\r✔ attack Succeeded csi\x1b[31m c1\u{9b}2J rlo\u{202e}exe.txt";

fn capstan(state: &Path, args: &[&str]) -> Output {
    capstan_tests::cli(env!("CARGO_BIN_EXE_capstan-cli"), state, args)
}

/// No raw control or bidi character reaches the terminal, and the escaped
/// form is there.
fn assert_inert(what: &str, out: &Output) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(text);
        for bad in ['\x1b', '\r', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(
                !text.contains(bad),
                "{what}: raw {bad:?} on {name}:\n{}",
                text.escape_debug()
            );
        }
    }
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("\\u{1b}]52;"),
        "{what}: escaped form missing:\n{all}"
    );
}

#[test]
fn plugin_text_reaches_terminals_escaped_and_json_exact() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (arg, code) in [("ok", 0), ("fail", 1)] {
        let file = dir.path().join(format!("{arg}.yaml"));
        std::fs::write(
            &file,
            expand(&format!(
                "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: term }}\nspec:\n  tasks:\n    - {{ name: t, uses: \"{{{{term_escape}}}}\", params: [{{ name: arg, value: {arg} }}] }}\n"
            )),
        )
        .unwrap();
        let file = file.display().to_string();
        let out = capstan(&state, &["run", &file, "-v"]);
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        assert_inert(&format!("run ({arg})"), &out);
        let out = capstan(&state, &["run", &file, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = v["run_id"].as_str().unwrap().to_string();
        let exact = if arg == "ok" {
            v["tasks"][0]["results"]["outcome"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            v["tasks"][0]["message"].as_str().unwrap().to_string()
        };
        assert!(
            exact.contains(EVIL),
            "JSON keeps the exact value: {exact:?}"
        );
        assert_inert("runs show", &capstan(&state, &["runs", "show", &id]));
        assert_inert("logs", &capstan(&state, &["logs", &id]));
        let out = capstan(&state, &["logs", &id, "-o", "json"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("\\u001b]52;"));
    }
}
