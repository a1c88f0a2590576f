//! Pipelines: loading YAML documents with source positions, validating them
//! against the plugins they use, and planning the DAG.
//!
//! ```
//! let text = r#"
//! apiVersion: capstan.dev/v1alpha1
//! kind: Pipeline
//! metadata: { name: demo }
//! spec:
//!   tasks:
//!     - name: a
//!       uses: ./echo.wasm
//! "#;
//! let doc = capstan::pipeline::Document::parse("demo.yaml", text).unwrap();
//! assert_eq!(doc.name, "demo");
//! assert_eq!(doc.spec.tasks[0].name, "a");
//! ```

pub mod duration;
mod fields;
pub mod model;
pub mod size;
pub mod source;
pub mod step;
pub mod subst;
mod validate;

use std::path::{Path, PathBuf};

pub use model::*;
pub use source::{Diagnostic, Diagnostics, Source};
pub use validate::{Plan, PlannedTask, RUN_CONTEXT, Timeouts, validate};

/// A loaded pipeline file: the pipeline to run and, if the file has one,
/// the `PipelineRun` that binds it.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    pub name: String,
    pub spec: PipelineSpec,
    /// Document index and field path of the pipeline spec (for positions).
    pub spec_doc: usize,
    pub spec_path: String,
    pub run: Option<(PipelineRunSpec, usize)>,
    /// What run ids start with: the PipelineRun's `name` (then `-`), or its
    /// `generateName` as written.
    pub run_name: Option<String>,
}

#[derive(serde::Deserialize)]
struct Header {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

impl Document {
    /// Read and parse a pipeline file.
    pub fn load(path: &Path) -> Result<Document, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        let mut doc = Document::parse(&path.display().to_string(), &text)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        doc.base_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ok(doc)
    }

    /// Parse pipeline text. `file` names it in errors. The text holds a
    /// `Pipeline`, a `PipelineRun` with `pipelineSpec`, or both (a
    /// `PipelineRun` whose `pipelineRef` names the `Pipeline`).
    pub fn parse(file: &str, text: &str) -> Result<Document, Diagnostics> {
        let source = Source::new(file, text);
        let mut diags = Vec::new();
        let mut pipelines: Vec<(Pipeline, usize)> = Vec::new();
        let mut runs: Vec<(PipelineRun, usize)> = Vec::new();
        let yaml_err = |e: serde_yaml::Error, doc: usize| {
            let (line, column) =
                e.location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or_else(|| {
                        let p = source.locate(doc, "");
                        (p.line, p.col)
                    });
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            Diagnostic {
                file: file.to_string(),
                line,
                column,
                path: String::new(),
                message: msg,
            }
        };
        for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let header: Header = match serde::Deserialize::deserialize(de) {
                Ok(h) => h,
                Err(e) => {
                    // A syntax error ends the stream: serde_yaml would yield
                    // it again for every following "document".
                    diags.push(yaml_err(e, i));
                    break;
                }
            };
            match header.api_version.as_deref() {
                Some(API_VERSION) => {}
                Some(other) => {
                    diags.push(source.diag(
                        i,
                        "apiVersion",
                        format!("must be `{API_VERSION}`, not `{other}`"),
                    ));
                    continue;
                }
                None => {
                    diags.push(source.diag(i, "", format!("missing `apiVersion: {API_VERSION}`")));
                    continue;
                }
            }
            let nth = || {
                serde_yaml::Deserializer::from_str(text)
                    .nth(i)
                    .expect("document exists")
            };
            match header.kind.as_deref() {
                Some("Pipeline") => match fields::typed(&source, i, nth, |e| yaml_err(e, i)) {
                    Ok(p) => pipelines.push((p, i)),
                    Err(d) => diags.extend(d),
                },
                Some("PipelineRun") => match fields::typed(&source, i, nth, |e| yaml_err(e, i)) {
                    Ok(r) => runs.push((r, i)),
                    Err(d) => diags.extend(d),
                },
                Some(other) => diags.push(source.diag(
                    i,
                    "kind",
                    format!("unknown kind `{other}`; expected Pipeline or PipelineRun"),
                )),
                None => diags.push(source.diag(i, "", "missing `kind` (Pipeline or PipelineRun)")),
            }
        }
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        if runs.len() > 1 {
            return Err(Diagnostics(vec![source.diag(
                runs[1].1,
                "kind",
                "more than one PipelineRun in the file",
            )]));
        }
        let run = runs.pop();
        let (name, spec, spec_doc, spec_path) = match &run {
            Some((r, doc)) => match (&r.spec.pipeline_ref, &r.spec.pipeline_spec) {
                (Some(_), Some(_)) => {
                    return Err(Diagnostics(vec![source.diag(
                        *doc,
                        "spec",
                        "set either pipelineRef or pipelineSpec, not both",
                    )]));
                }
                (None, Some(spec)) => (
                    r.metadata.name.clone(),
                    spec.clone(),
                    *doc,
                    "spec.pipelineSpec".to_string(),
                ),
                (Some(pref), None) => {
                    match pipelines.iter().find(|(p, _)| p.metadata.name == pref.name) {
                        Some((p, d)) => (
                            p.metadata.name.clone(),
                            p.spec.clone(),
                            *d,
                            "spec".to_string(),
                        ),
                        None => {
                            return Err(Diagnostics(vec![source.diag(
                                *doc,
                                "spec.pipelineRef.name",
                                format!("no Pipeline named `{}` in this file", pref.name),
                            )]));
                        }
                    }
                }
                (None, None) => {
                    return Err(Diagnostics(vec![source.diag(
                        *doc,
                        "spec",
                        "needs pipelineRef or pipelineSpec",
                    )]));
                }
            },
            None => match pipelines.as_slice() {
                [(p, d)] => (
                    p.metadata.name.clone(),
                    p.spec.clone(),
                    *d,
                    "spec".to_string(),
                ),
                [] => {
                    return Err(Diagnostics(vec![source.diag(
                        0,
                        "",
                        "no Pipeline or PipelineRun in the file",
                    )]));
                }
                _ => {
                    return Err(Diagnostics(vec![source.diag(
                        pipelines[1].1,
                        "",
                        "several Pipelines and no PipelineRun choosing one",
                    )]));
                }
            },
        };
        let run_name = match &run {
            Some((r, doc)) => match (r.metadata.name.as_str(), &r.metadata.generate_name) {
                ("", None) => None,
                (n, None) => Some(n.to_string()),
                ("", Some(prefix)) => Some(prefix.clone()),
                (_, Some(_)) => {
                    return Err(Diagnostics(vec![source.diag(
                        *doc,
                        "metadata.generateName",
                        "set `name` or `generateName`, not both",
                    )]));
                }
            },
            None => None,
        };
        let mut doc = Document {
            source,
            base_dir: PathBuf::new(),
            name,
            spec,
            spec_doc,
            spec_path,
            run: run.map(|(r, d)| (r.spec, d)),
            run_name,
        };
        doc.desugar_steps()?;
        Ok(doc)
    }

    /// Container steps (`image:`) become the `script` plugin's tasks.
    fn desugar_steps(&mut self) -> Result<(), Diagnostics> {
        let mut diags = Vec::new();
        for (list, tasks) in [
            ("tasks", &mut self.spec.tasks),
            ("finally", &mut self.spec.finally),
        ] {
            for (i, t) in tasks.iter_mut().enumerate() {
                for (field, message) in step::desugar(t) {
                    let at = match field.as_str() {
                        "" => format!("{list}[{i}]"),
                        f => format!("{list}[{i}].{f}"),
                    };
                    diags.push((at, message));
                }
            }
        }
        if diags.is_empty() {
            return Ok(());
        }
        Err(Diagnostics(
            diags.into_iter().map(|(at, m)| self.diag(&at, m)).collect(),
        ))
    }

    /// Diagnostic at a field of the pipeline spec (`tasks[0].uses`).
    pub fn diag(&self, rel_path: &str, message: impl Into<String>) -> Diagnostic {
        let path = if rel_path.is_empty() {
            self.spec_path.clone()
        } else {
            format!("{}.{rel_path}", self.spec_path)
        };
        self.source.diag(self.spec_doc, &path, message)
    }

    /// Diagnostic at a field of the PipelineRun.
    pub fn run_diag(&self, rel_path: &str, message: impl Into<String>) -> Diagnostic {
        let doc = self.run.as_ref().map(|(_, d)| *d).unwrap_or(self.spec_doc);
        self.source.diag(doc, &format!("spec.{rel_path}"), message)
    }

    /// Every task, main then finally, with its field path.
    pub fn all_tasks(&self) -> impl Iterator<Item = (String, &PipelineTask)> {
        let main = self
            .spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("tasks[{i}]"), t));
        let fin = self
            .spec
            .finally
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("finally[{i}]"), t));
        main.chain(fin)
    }
}
