//! Secret redaction: the one place that decides what a secret looks like in
//! text that leaves a task.
//!
//! A run's [`Redactor`] holds the value of every secret any of its tasks is
//! granted (revealed or host-side: an echo server or a remote command can
//! hand a host-side credential back to the plugin), so a value one task
//! wrote into a shared workspace is redacted from another's output too.
//! Every string leaving a task passes through it (see
//! `runtime::Runtime::call`): log lines and stdout/stderr before they are
//! cut to length, progress step names, result names and values, error
//! messages (traps too), and the suspend request (kind, state, detail —
//! hence approval messages, approvers, notifications and refusal reasons,
//! which are built from the stored detail).
//!
//! Matching is on bytes. For each value: the value itself (trailing
//! CR/LF trimmed); each line of a multi-line value (a private key printed
//! line by line); and for a value that is not UTF-8, its lossy UTF-8 form
//! (what stdout capture makes of it) and each valid UTF-8 run in it. Pieces
//! shorter than [`MIN_SECRET_BYTES`] are not matched — they would mangle
//! ordinary text — which is why `capstan secret set` and the cluster read
//! refuse secrets shorter than that ([`check_length`]).
//!
//! Not guaranteed: encoded or transformed forms (base64, hex, URL- or
//! JSON-escaped, reversed), a value split across separate log calls or
//! results, or one leaked through side channels (timing, result sizes).

use std::borrow::Cow;
use std::sync::Arc;

/// Secrets shorter than this are refused (and pieces shorter than this are
/// not matched).
pub const MIN_SECRET_BYTES: usize = 4;

/// The replacement for a secret value.
pub const MASK: &str = "***";

/// Refuse a secret value too short to be redacted reliably.
/// (Measured as redaction sees it: without trailing CR/LF.)
pub fn check_length(name: &str, value: &[u8]) -> Result<(), String> {
    let len = trim_line_end(value).len();
    if len < MIN_SECRET_BYTES {
        return Err(format!(
            "secret `{name}` is {len} bytes (without trailing newlines); Capstan refuses secrets shorter \
             than {MIN_SECRET_BYTES} bytes, which cannot be redacted from logs reliably"
        ));
    }
    Ok(())
}

fn trim_line_end(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = v {
        v = rest;
    }
    v
}

/// Replaces secret values with [`MASK`].
#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is removed whole.
    patterns: Vec<Vec<u8>>,
}

impl Redactor {
    /// A redactor for `values` (see the module doc for what is matched).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Redactor {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for v in values {
            let whole = trim_line_end(v);
            patterns.push(whole.to_vec());
            if whole.contains(&b'\n') {
                for line in whole.split(|&b| b == b'\n') {
                    patterns.push(line.trim_ascii().to_vec());
                }
            }
            if std::str::from_utf8(whole).is_err() {
                patterns.push(String::from_utf8_lossy(whole).into_owned().into_bytes());
                for chunk in whole.utf8_chunks() {
                    patterns.push(chunk.valid().as_bytes().to_vec());
                }
            }
        }
        patterns.retain(|p| p.len() >= MIN_SECRET_BYTES);
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        patterns.dedup();
        Redactor { patterns }
    }

    pub fn shared<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Arc<Redactor> {
        Arc::new(Redactor::new(values))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// How many trailing bytes of a stream cut mid-line may hold the start
    /// of a secret (kept back until more arrives). Multi-line values never
    /// match within one line, so only single-line patterns count.
    pub fn holdback(&self) -> usize {
        self.patterns
            .iter()
            .find(|p| !p.contains(&b'\n'))
            .map_or(0, |p| p.len() - 1)
    }

    /// A line that grew past `max` bytes without ending: the part to emit
    /// now (redacted), leaving in `buf` a tail that may hold the start of a
    /// secret (never splitting a UTF-8 character).
    pub fn take_long_line(&self, buf: &mut Vec<u8>) -> Vec<u8> {
        let line = self.bytes(buf).into_owned();
        let mut cut = line.len().saturating_sub(self.holdback());
        while cut > 0 && cut < line.len() && line[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
        if cut == 0 {
            cut = line.len(); // a secret longer than a line: cannot hold back
        }
        *buf = line[cut..].to_vec();
        let mut line = line;
        line.truncate(cut);
        line
    }

    /// `bytes` with every secret replaced.
    pub fn bytes<'b>(&self, bytes: &'b [u8]) -> Cow<'b, [u8]> {
        let mut out = Cow::Borrowed(bytes);
        for p in &self.patterns {
            let finder = memchr::memmem::Finder::new(p);
            if finder.find(&out).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(out.len());
            let mut last = 0;
            for at in finder.find_iter(&out) {
                if at < last {
                    continue;
                }
                next.extend_from_slice(&out[last..at]);
                next.extend_from_slice(MASK.as_bytes());
                last = at + p.len();
            }
            next.extend_from_slice(&out[last..]);
            out = Cow::Owned(next);
        }
        out
    }

    /// `text` with every secret replaced. A pattern that is valid UTF-8
    /// matches on character boundaries only (UTF-8 is self-synchronising),
    /// and the others cannot occur in a `str`, so the result stays UTF-8.
    pub fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(b) => Cow::Owned(
                String::from_utf8(b)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()),
            ),
        }
    }

    /// [`Redactor::text`] into an owned string.
    pub fn string(&self, text: String) -> String {
        match self.text(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(t) => t,
        }
    }

    /// Every string (keys too) in a JSON value.
    pub fn json(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => *s = self.string(std::mem::take(s)),
            // A numeric secret (a PIN, an account id) written as a number.
            Value::Number(n) => {
                let text = n.to_string();
                if let Cow::Owned(r) = self.text(&text) {
                    *v = Value::String(r);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| self.json(v)),
            Value::Object(o) => {
                let entries = std::mem::take(o);
                for (k, mut v) in entries {
                    self.json(&mut v);
                    o.insert(self.string(k), v);
                }
            }
            _ => {}
        }
    }
}

impl Redactor {
    /// Task results with secret values (in names or values) redacted; a
    /// warning on `sink` says which result held one.
    pub fn results(
        &self,
        sink: &dyn super::TaskSink,
        results: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        if self.is_empty() {
            return results;
        }
        results
            .into_iter()
            .map(|(name, value)| {
                let (n, v) = (self.string(name.clone()), self.string(value.clone()));
                if n != name || v != value {
                    sink.log(
                        super::LogLevel::Warn,
                        &format!("result `{n}` contained a secret value; it is stored redacted"),
                    );
                }
                (n, v)
            })
            .collect()
    }

    /// A suspend request's kind, state and every string of its detail.
    pub fn suspend(&self, kind: &mut String, state: &mut String, detail: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        *kind = self.string(std::mem::take(kind));
        *state = self.string(std::mem::take(state));
        self.json(detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lines_and_non_utf8_forms_are_matched() {
        let key = b"-----BEGIN KEY-----\nAAAAB3NzaC1yc2E\nEEEE\n-----END KEY-----\n".to_vec();
        let binary = b"\xffhunter2-pass\xfe!".to_vec();
        let r = Redactor::new([&b"s3cret-token"[..], &key, &binary, b"ab"]);
        assert_eq!(r.text("x s3cret-token y"), "x *** y");
        assert_eq!(r.text("AAAAB3NzaC1yc2E"), "***");
        assert_eq!(r.text("text hunter2-pass text"), "text *** text");
        let lossy = String::from_utf8_lossy(&binary).into_owned();
        assert_eq!(r.text(&format!("<{lossy}>")), "<***>");
        assert_eq!(r.bytes(b"<\xffhunter2-pass\xfe!>").as_ref(), b"<***>");
        // Short values are not matched (they are refused at `secret set`).
        assert_eq!(r.text("ab cd"), "ab cd");
        assert!(check_length("x", b"abc").is_err() && check_length("x", b"abcd").is_ok());
        assert!(check_length("x", b"abc\n").is_err());
        // The longest single-line pattern (the binary value's lossy form).
        assert_eq!(r.holdback(), String::from_utf8_lossy(&binary).len() - 1);
        // Borrowed when nothing matched.
        assert!(matches!(r.text("nothing"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_long_line_keeps_back_what_may_start_a_secret() {
        let r = Redactor::new([&b"s3cret-token"[..]]);
        let mut buf = b"xxxxxxxxxxxxxxxxxxxxs3cret-t".to_vec();
        let first = r.take_long_line(&mut buf);
        assert_eq!(first, b"xxxxxxxxxxxxxxxxx");
        buf.extend_from_slice(b"oken and more");
        assert_eq!(
            r.text(std::str::from_utf8(&buf).unwrap()),
            "xxx*** and more"
        );
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let r = Redactor::new([&b"s3cret-token"[..], b"12345678"]);
        let mut v = serde_json::json!({
            "id": 12345678,
            "message": "deploy with s3cret-token?",
            "approvers": ["alice", "s3cret-token"],
            "s3cret-token": 1,
            "n": 2
        });
        r.json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(v["n"], 2);
        assert_eq!(v["id"], "***");
        assert_eq!(v["approvers"][0], "alice");
    }
}
