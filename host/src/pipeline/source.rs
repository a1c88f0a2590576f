//! Source positions for pipeline documents, so every error names
//! `file:line:column` and the field path.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a source file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path, e.g. `spec.tasks[1].params[0].value`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All problems found; never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the pipeline:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// A pipeline file's text with an index from field path to position, per
/// YAML document.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub text: String,
    docs: Vec<HashMap<String, Pos>>,
}

impl Source {
    pub fn new(file: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let mut index = Indexer::default();
        let mut parser = Parser::new_from_str(&text);
        // Syntax errors are reported by serde_yaml with positions; an index
        // that stops early only makes later positions coarser.
        let _ = parser.load(&mut index, true);
        Source {
            file: file.into(),
            text,
            docs: index.docs,
        }
    }

    /// Position of `path` in document `doc`, or of its nearest ancestor.
    pub fn locate(&self, doc: usize, path: &str) -> Pos {
        let Some(map) = self.docs.get(doc) else {
            return Pos { line: 1, col: 1 };
        };
        let mut p = path;
        loop {
            if let Some(pos) = map.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return map.get("").copied().unwrap_or(Pos { line: 1, col: 1 }),
            }
        }
    }

    pub fn diag(&self, doc: usize, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.locate(doc, path);
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.col,
            path: path.to_string(),
            message: message.into(),
        }
    }
}

enum Frame {
    Map { key: Option<String>, path: String },
    Seq { index: usize, path: String },
}

#[derive(Default)]
struct Indexer {
    docs: Vec<HashMap<String, Pos>>,
    stack: Vec<Frame>,
}

impl Indexer {
    /// Path of the node that starts now, or None if it is a mapping key.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { key: Some(k), path }) => {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                Some(p)
            }
            Some(Frame::Seq { index, path }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }

    fn value_done(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        if let Some(doc) = self.docs.last_mut() {
            doc.entry(path.to_string()).or_insert(Pos {
                line: mark.line(),
                col: mark.col() + 1,
            });
        }
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.docs.push(HashMap::new());
                self.stack.clear();
            }
            Event::Scalar(value, ..) => match self.next_path() {
                None => {
                    // A mapping key: remember it and point the key's path here.
                    let path = match self.stack.last() {
                        Some(Frame::Map { path, .. }) if !path.is_empty() => {
                            format!("{path}.{value}")
                        }
                        _ => value.clone(),
                    };
                    self.record(&path, mark);
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                }
                Some(path) => {
                    self.record(&path, mark);
                    self.value_done();
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.next_path() {
                    self.record(&path, mark);
                }
                self.value_done();
            }
            Event::MappingStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Map { key: None, path });
            }
            Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Seq { index: 0, path });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_paths_per_document() {
        let text =
            "a: 1\nspec:\n  tasks:\n    - name: x\n      uses: y\n    - name: z\n---\nkind: B\n";
        let s = Source::new("f.yaml", text);
        // A field points at its key, so block values point at the key's line.
        assert_eq!(s.locate(0, "spec.tasks[1].name"), Pos { line: 6, col: 7 });
        assert_eq!(s.locate(0, "spec.tasks[0].uses"), Pos { line: 5, col: 7 });
        // A missing field falls back to its parent (the first task, line 4).
        assert_eq!(s.locate(0, "spec.tasks[0].nope").line, 4);
        assert_eq!(s.locate(1, "kind"), Pos { line: 8, col: 1 });
    }
}
