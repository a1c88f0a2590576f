//! Typed parsing of one YAML document that reports *every* unknown field,
//! not only the first: serde stops at the first error, so on an unknown
//! field the document is parsed again as a tree with that field removed,
//! until it parses or fails for another reason (which is reported too, and
//! ends the search). Each problem names its field path and position.

use serde::de::DeserializeOwned;

use super::source::{Diagnostic, Source};

/// At most this many unknown fields are reported per document.
const MAX_UNKNOWN: usize = 20;

/// Parse document `doc` of `source` as `T`. `nth` gives a deserializer
/// of the document's text; `at` turns a text error into a diagnostic with
/// its position.
pub fn typed<'de, T: DeserializeOwned>(
    source: &Source,
    doc: usize,
    nth: impl Fn() -> serde_yaml::Deserializer<'de>,
    at: impl Fn(serde_yaml::Error) -> Diagnostic,
) -> Result<T, Vec<Diagnostic>> {
    // From the text: YAML's own scalars as serde_yaml reads them (`8080`
    // for a string field is the string "8080"), errors with positions.
    let first = match serde_path_to_error::deserialize::<_, T>(nth()) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if unknown_field(&first.inner().to_string()).is_none() {
        return Err(vec![at(first.into_inner())]);
    }
    let mut tree: serde_yaml::Value = match serde::Deserialize::deserialize(nth()) {
        Ok(v) => v,
        Err(e) => return Err(vec![at(e)]),
    };
    let mut diags = Vec::new();
    let mut err = first;
    for _ in 0..MAX_UNKNOWN {
        let mut parent = err.path().to_string();
        let message = clean(&err.inner().to_string());
        let Some(field) = unknown_field(&message).map(str::to_string) else {
            let path = if parent == "." { String::new() } else { parent };
            diags.push(source.diag(doc, &path, message));
            return Err(diags);
        };
        // The error's path ends with the unknown field itself.
        let path = parent.clone();
        parent = match parent.strip_suffix(field.as_str()) {
            Some(p) => p.trim_end_matches('.').to_string(),
            None => parent,
        };
        diags.push(source.diag(doc, &path, message));
        if !remove(&mut tree, &parent, &field) {
            return Err(diags); // cannot find it in the tree: stop here
        }
        // Again, as text, without the fields found so far.
        let text = serde_yaml::to_string(&tree).unwrap_or_default();
        err = match serde_path_to_error::deserialize::<_, T>(serde_yaml::Deserializer::from_str(
            &text,
        )) {
            Ok(_) => return Err(diags),
            Err(e) => e,
        };
    }
    Err(diags)
}

/// serde_yaml's message without its own path prefix and position (the
/// diagnostic carries both, from the original text).
fn clean(message: &str) -> String {
    let m = message.split(" at line ").next().unwrap_or(message);
    match m.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => rest.to_string(),
        _ => m.to_string(),
    }
}

/// The field named by serde's "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

/// Remove key `field` of the mapping at `parent` (`spec.tasks[0]`).
fn remove(tree: &mut serde_yaml::Value, parent: &str, field: &str) -> bool {
    let mut node = tree;
    if parent != "." && !parent.is_empty() {
        for seg in parent.split('.') {
            let (key, indexes) = match seg.find('[') {
                Some(i) => (&seg[..i], &seg[i..]),
                None => (seg, ""),
            };
            if !key.is_empty() {
                let Some(next) = node.get_mut(key) else {
                    return false;
                };
                node = next;
            }
            for idx in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
                let Some(next) = idx.parse::<usize>().ok().and_then(|i| node.get_mut(i)) else {
                    return false;
                };
                node = next;
            }
        }
    }
    node.as_mapping_mut()
        .and_then(|m| m.remove(field))
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::super::Document;

    #[test]
    fn every_unknown_field_is_reported_with_its_line() {
        let text = "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: p, colour: red}\n\
                    spec:\n  tasks:\n    - name: a\n      uses: x\n      runafter: [b]\n    - name: b\n      uses: x\n      retrys: 2\n  finaly: []\n";
        let d = Document::parse("p.yaml", text).unwrap_err();
        let got: Vec<String> =
            d.0.iter()
                .map(|x| {
                    format!(
                        "{}:{} {}",
                        x.line,
                        x.path,
                        x.message.split(',').next().unwrap()
                    )
                })
                .collect();
        assert_eq!(
            got,
            [
                "3:metadata.colour unknown field `colour`",
                "8:spec.tasks[0].runafter unknown field `runafter`",
                "11:spec.tasks[1].retrys unknown field `retrys`",
                "12:spec.finaly unknown field `finaly`",
            ],
            "{d}"
        );
    }

    #[test]
    fn a_type_error_after_unknown_fields_is_reported_too() {
        let text = "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n\
                    spec:\n  tasks:\n    - name: a\n      uses: x\n      colour: red\n      retries: many\n";
        let d = Document::parse("p.yaml", text).unwrap_err();
        assert_eq!(d.0.len(), 2, "{d}");
        assert!(d.0[0].message.contains("unknown field `colour`"), "{d}");
        assert!(d.0[1].path.contains("retries"), "{d}");
    }
}
