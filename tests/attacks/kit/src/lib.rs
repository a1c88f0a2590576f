//! Shared helpers for the attack components in `tests/attacks/`.
//!
//! An attack tries one or more tricks. Each trick's result goes through
//! [`Tries`]: an `Err` means the sandbox refused it (good), an `Ok` means the
//! trick worked (an escape). The task's `outcome` result then reads
//! `denied N/N` followed by one line per trick, or `ESCAPED: …` naming the
//! tricks that worked, so the test asserts on the whole list and a failure
//! message says exactly which trick got through.

pub use capstan_plugin_sdk as sdk;
use sdk::capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};

/// The attack's `arg` param (a path, address, size …), or "".
pub fn arg(input: &TaskInput) -> String {
    param(input, "arg")
}

/// A string param, or "".
pub fn param(input: &TaskInput, name: &str) -> String {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        Some(ParamValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// A one-result task answer: `outcome` = `s`.
pub fn outcome(s: impl Into<String>) -> Result<Vec<TaskResult>, TaskError> {
    Ok(vec![TaskResult {
        name: "outcome".into(),
        value: s.into(),
    }])
}

/// The tricks an attack tried and what each got.
#[derive(Default)]
pub struct Tries {
    lines: Vec<String>,
    escaped: Vec<String>,
}

impl Tries {
    pub fn new() -> Self {
        Self::default()
    }

    /// A trick that must be refused: `Ok(what)` is an escape, `Err(why)` a denial.
    pub fn must_fail<T: std::fmt::Debug, E: std::fmt::Display>(
        &mut self,
        trick: &str,
        r: Result<T, E>,
    ) {
        match r {
            Ok(v) => {
                let got: String = format!("{v:?}").chars().take(120).collect();
                self.escaped.push(one_line(format!("{trick}: got {got}")));
            }
            Err(e) => self.lines.push(one_line(format!("{trick}: {e}"))),
        }
    }

    /// A trick judged by the attack itself: `escaped` = it worked.
    pub fn check(&mut self, trick: &str, escaped: bool, detail: impl std::fmt::Display) {
        let line = one_line(format!("{trick}: {detail}"));
        if escaped {
            self.escaped.push(line);
        } else {
            self.lines.push(line);
        }
    }

    /// `outcome`: `denied N/N` and one line per trick, or `ESCAPED: …`.
    pub fn finish(self) -> Result<Vec<TaskResult>, TaskError> {
        let n = self.lines.len() + self.escaped.len();
        if self.escaped.is_empty() {
            outcome(format!("denied {n}/{n}\n{}", self.lines.join("\n")))
        } else {
            outcome(format!(
                "ESCAPED: {} of {n} tricks worked\n{}",
                self.escaped.len(),
                self.escaped.join("\n")
            ))
        }
    }
}

/// One report line per trick: CR and LF shown escaped.
fn one_line(s: String) -> String {
    s.replace('\r', "\\r").replace('\n', "\\n")
}

/// Implement the task export with `$run` (a `fn(TaskInput) -> Result<…>`).
#[macro_export]
macro_rules! attack {
    ($run:path) => {
        struct Attack;
        impl $crate::sdk::exports::capstan::plugin::task::Guest for Attack {
            fn run(
                input: $crate::sdk::capstan::plugin::types::TaskInput,
            ) -> Result<
                Vec<$crate::sdk::capstan::plugin::types::TaskResult>,
                $crate::sdk::capstan::plugin::types::TaskError,
            > {
                $run(input)
            }
        }
        $crate::sdk::export!(Attack with_types_in $crate::sdk);
    };
}

/// HTTP straight over `wasi:http`, without the SDK's URL parsing, so the
/// authority and headers an attack sends are exactly what the host judges.
pub mod raw {
    use crate::sdk::wasi::http::outgoing_handler;
    use crate::sdk::wasi::http::types::{Fields, OutgoingRequest, Scheme};

    /// Send `GET path` to `authority` as given; `Ok(status)` if a response
    /// came back, `Err` with whichever part the host refused.
    pub fn get(
        https: bool,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<u16, String> {
        let list: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let fields =
            Fields::from_list(&list).map_err(|e| format!("the host refused the headers: {e:?}"))?;
        let req = OutgoingRequest::new(fields);
        req.set_scheme(Some(if https { &Scheme::Https } else { &Scheme::Http }))
            .map_err(|_| "the host refused the scheme".to_string())?;
        req.set_authority(Some(authority))
            .map_err(|_| format!("the host refused the authority `{authority}`"))?;
        req.set_path_with_query(Some(path))
            .map_err(|_| format!("the host refused the path `{path}`"))?;
        let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
        future.subscribe().block();
        match future.get() {
            Some(Ok(Ok(r))) => Ok(r.status()),
            Some(Ok(Err(e))) => Err(format!("{e:?}")),
            _ => Err("no response".into()),
        }
    }
}

/// Kubernetes requests for the kube attacks.
pub mod kube {
    use crate::sdk::capstan::plugin::kube::{Request, send};

    /// A request in namespace `ns` (`""`: none given).
    pub fn req(verb: &str, resource: &str, ns: &str, name: Option<&str>) -> Request {
        Request {
            verb: verb.into(),
            group: String::new(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: None,
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.map(str::to_string),
            body: None,
            content_type: None,
        }
    }

    /// Send it: `Ok(status)` if the API server answered 2xx (the attack
    /// worked), `Err` with the host's denial or the server's refusal.
    pub fn try_send(r: Request) -> Result<u16, String> {
        match send(&r) {
            Ok(resp) if (200..300).contains(&resp.status) => Ok(resp.status),
            Ok(resp) => Err(format!("API server said {}", resp.status)),
            Err(e) => Err(format!("{e:?}")),
        }
    }
}
