//! Fuzz target bodies: each takes arbitrary bytes and must neither panic
//! nor hang, whatever it is given. Shared by the libFuzzer binaries in
//! `fuzz_targets/` and the corpus replay test `tests/fuzz_corpus.rs`.
//!
//! The git-clone and remote-shell parsers are compiled here from their
//! plugins' sources (those crates build only as wasm components).

#[path = "../../plugins/git-clone/src/digest.rs"]
pub mod digest;
#[path = "../../plugins/git-clone/src/idx.rs"]
pub mod idx;
#[path = "../../plugins/git-clone/src/pack.rs"]
pub mod pack;
#[path = "../../plugins/remote-shell/src/plan.rs"]
pub mod plan;
#[path = "../../plugins/git-clone/src/protocol.rs"]
pub mod protocol;

use std::sync::OnceLock;

/// Targets by name (the corpus directory names).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("pipeline", pipeline),
    ("manifest", manifest),
    ("lockfile", lockfile),
    ("packfile", packfile),
    ("pktline", pktline),
    ("sync_plan", sync_plan),
];

/// A plugin manifest every `uses:` resolves to while validating.
fn any_manifest() -> capstan::manifest::Manifest {
    static M: OnceLock<capstan::manifest::Manifest> = OnceLock::new();
    M.get_or_init(|| {
        toml::from_str(
            r#"
name = "any"
version = "1.0.0"
world = "http-task"
capabilities = ["http", "secrets", "ssh", "kube"]
[[params]]
name = "message"
default = ""
[[params]]
name = "items"
type = "array"
default = []
[[results]]
name = "out"
[[workspaces]]
name = "source"
optional = true
"#,
        )
        .expect("the fuzz manifest parses")
    })
    .clone()
}

/// The pipeline parser (YAML with positions) and the validator.
pub fn pipeline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = capstan::pipeline::Document::parse("fuzz.yaml", text) {
        let _ = capstan::pipeline::validate(
            &doc,
            &|_| Some(any_manifest()),
            &[("p".into(), "v".into())],
            &|_, _| Ok(()),
        );
    }
}

/// Plugin artifacts: component inspection (wasmparser, the embedded
/// manifest) and the manifest TOML on its own.
pub fn manifest(data: &[u8]) {
    let _ = capstan::manifest::inspect(data, "fuzz.wasm");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = toml::from_str::<capstan::manifest::Manifest>(text);
    }
}

/// `capstan.lock`.
pub fn lockfile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(lock) = capstan_registry::LockFile::parse(text, "capstan.lock")
    {
        for l in &lock.plugins {
            let _ = lock.get(&l.reference);
        }
    }
}

/// Pack indexing (entry headers, inflation, delta chains, checksums),
/// `.idx` parsing (a checkout's own, not trusted) and delta application:
/// the first byte picks which.
pub fn packfile(data: &[u8]) {
    match data.split_first() {
        Some((0, rest)) => {
            if let Ok(p) = pack::Pack::index(rest.to_vec()) {
                let _ = p.len();
            }
        }
        Some((1, rest)) => {
            let _ = idx::parse_idx(rest);
        }
        Some((b, rest)) => {
            let cut = (*b as usize).min(rest.len());
            let (base, delta) = rest.split_at(cut);
            let _ = pack::apply_delta(base, delta);
        }
        None => {}
    }
}

/// pkt-line framing of the smart HTTP protocol.
pub fn pktline(data: &[u8]) {
    let _ = protocol::lines(data);
}

/// remote-shell's sync planner: manifests from the remote side, globs and
/// sync-back paths.
pub fn sync_plan(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, ""));
    let local = plan::parse_manifest(a);
    let remote = plan::parse_manifest(b);
    let p = plan::plan(&local, &remote, true);
    let _ = plan::render_manifest(&remote);
    for path in p.upload.iter().chain(&p.delete) {
        let _ = plan::check_back_path(path);
        let _ = plan::glob(a.lines().next().unwrap_or("*"), path);
    }
}
