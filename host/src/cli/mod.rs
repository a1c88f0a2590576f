//! The `capstan` command line. `main` (in `src/bin/capstan.rs`) parses
//! [`Cli`], calls [`Cli::execute`], prints the error chain and maps errors to
//! exit codes ([`ExitCode`]).

mod approve;
mod bench;
mod cache;
mod cluster;
mod lock;
mod output;
mod plugin;
mod progress;
mod registry;
mod repo;
mod run;
mod runs;
mod secret;
mod serve;
mod template;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use output::{ExitCode, Invalid, run_json, time};

/// Let a closed stdout end the program quietly, as it does for other Unix
/// tools (`capstan runs list | head -1`), instead of panicking in
/// `println!`. Rust ignores SIGPIPE by default; sockets are unaffected
/// either way (std writes them with `MSG_NOSIGNAL`). Not for the servers
/// (`serve`, `controller`): one whose log reader went away must keep
/// serving, not die at its next log line.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: called in `main` before any thread exists; it only
    // resets one signal's disposition to the default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Log lines to stderr; a stderr nobody reads any more (a closed pipe)
/// loses them instead of failing the code that logged.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The whole `capstan` program: parse arguments, set up tracing, run,
/// print the error chain, and return the exit code (0 ok, 1 a run did not
/// succeed, 2 invalid input, 3 other errors).
pub fn main() -> i32 {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Controller(_)) {
        default_sigpipe();
    }
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info,wasmtime=warn,cranelift=warn",
        _ => "debug,wasmtime=info,cranelift=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(|| LogWriter)
        .init();
    let code = match cli.execute() {
        Ok(code) => code,
        Err(e) => {
            // Errors may quote plugin or server text: escaped for the terminal.
            let text = crate::escape::lines_for_terminal;
            eprintln!("error: {}", text(&e.to_string()));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", text(&cause.to_string()));
            }
            let invalid = matches!(
                e.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::NoSuchRun(_))
            ) || e.downcast_ref::<crate::manifest::PluginError>().is_some()
                || e.downcast_ref::<Invalid>().is_some()
                || e.downcast_ref::<crate::policy::PolicyError>().is_some()
                || e.downcast_ref::<capstan_registry::Error>()
                    .is_some_and(|r| {
                        !matches!(
                            r,
                            capstan_registry::Error::Io { .. }
                                | capstan_registry::Error::Corrupt { .. }
                                | capstan_registry::Error::Oci { .. }
                        )
                    });
            let api = e
                .chain()
                .find_map(|c| c.downcast_ref::<crate::api::client::ApiCallError>());
            if let Some(a) = api {
                match a.status {
                    401 | 403 => ExitCode::Denied,
                    400 | 404 | 409 => ExitCode::Invalid,
                    _ => ExitCode::Error,
                }
            } else if invalid {
                ExitCode::Invalid
            } else {
                ExitCode::Error
            }
        }
    };
    code as i32
}

/// Capstan: CI/CD tasks as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, about, long_about = None)]
pub struct Cli {
    /// Where runs, logs and compiled plugins are kept.
    #[arg(long, global = true, env = "CAPSTAN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The plugin registry: a directory, or an OCI registry as
    /// oci://host[:port][/path] (default: the directory STATE_DIR/registry).
    #[arg(
        long,
        global = true,
        env = "CAPSTAN_REGISTRY",
        value_name = "DIR|oci://HOST/PATH"
    )]
    pub registry: Option<String>,

    /// Network timeout of each OCI registry request.
    #[arg(long, global = true, env = "CAPSTAN_REGISTRY_TIMEOUT", value_name = "DURATION",
          default_value = "30s", value_parser = humantime::parse_duration)]
    pub registry_timeout: std::time::Duration,

    /// The platform policy file (allow/deny, capability ceilings).
    #[arg(long, global = true, env = "CAPSTAN_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Where this scheduler's API is reached from outside (`capstan serve`
    /// or the controller's Service): approval notifications link to its
    /// approve/reject endpoints.
    #[arg(long, global = true, env = "CAPSTAN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Output format: `text` for people, `json` for programs (one JSON
    /// document on stdout; commands without a JSON form refuse it).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// More diagnostics on stderr (-v, -vv).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs: snake_case keys, RFC 3339 times.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file and wait for it to finish.
    Run(run::RunArgs),
    /// List, show, resume and cancel runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Print a run's task logs.
    Logs(runs::LogsArgs),
    /// Resolve a pipeline's registry references and pin them in capstan.lock.
    Lock(lock::LockArgs),
    /// Work with plugin components and the registry.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Manage the local secret store (values are never printed).
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// List or clear the named caches container steps keep across runs.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Operations on whole registries: mirror one into another.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Measure task start latency, DAG throughput and dependent-task gap.
    Bench(bench::BenchArgs),
    /// Print the CustomResourceDefinitions of Kubernetes mode.
    Crds,
    /// Run the Kubernetes controller: execute PipelineRuns in this process.
    Controller(cluster::ControllerArgs),
    /// Approve (or `--reject`) a task waiting for approval.
    Approve(approve::ApproveArgs),
    /// Approvals waiting for a decision.
    #[command(subcommand)]
    Approvals(approve::ApprovalsCommand),
    /// Serve the HTTP API (runs, logs, approvals, metrics) over the local state.
    Serve(serve::ServeArgs),
    /// Bearer tokens of the local API server.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// Repositories whose webhooks start runs (`capstan serve`), and their deliveries.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Print the version and the commit it was built from.
    Version,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  capstan completion bash > ~/.local/share/bash-completion/completions/capstan\n  \
        capstan completion zsh > \"${fpath[1]}/_capstan\"\n  \
        capstan completion fish > ~/.config/fish/completions/capstan.fish"
    )]
    Completion {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Whether the command has a JSON form (`-o json`); the others refuse
    /// it rather than print text a program would try to parse.
    fn has_json(&self) -> bool {
        !matches!(
            self,
            Command::Crds | Command::Controller(_) | Command::Serve(_) | Command::Completion { .. }
        )
    }
}

impl Cli {
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".capstan")
        })
    }

    /// The plugin registry (`--registry`).
    /// The registry to read from. An explicit `--registry` /
    /// `CAPSTAN_REGISTRY` directory must already be a registry (a typo is
    /// an error); the default one in the state directory is created.
    pub fn registry(&self) -> anyhow::Result<capstan_registry::Registry> {
        self.open_registry(self.registry_location(), false)
    }

    /// The registry to publish to (created if it is a new directory).
    pub fn registry_for_write(&self) -> anyhow::Result<capstan_registry::Registry> {
        self.open_registry(self.registry_location(), true)
    }

    /// `--registry`, with an empty `CAPSTAN_REGISTRY=` meaning unset.
    fn registry_location(&self) -> Option<&str> {
        self.registry.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// A registry by location (a directory or oci://…); `None` is the
    /// default directory (always created). An explicit directory is
    /// created only when `create` (publishing), else it must exist.
    pub fn open_registry(
        &self,
        location: Option<&str>,
        create: bool,
    ) -> anyhow::Result<capstan_registry::Registry> {
        let oci = self.oci_options();
        Ok(match location {
            None => {
                let default = self.state_dir().join("registry");
                capstan_registry::Registry::open(default.to_str().unwrap_or("registry"), &oci)?
            }
            Some(l) if create => capstan_registry::Registry::open(l, &oci)?,
            Some(l) => capstan_registry::Registry::open_existing(l, &oci)?,
        })
    }

    /// How OCI registries are reached (timeout, digest cache).
    pub fn oci_options(&self) -> capstan_registry::OciOptions {
        crate::resolve::oci_options(&self.state_dir(), Some(self.registry_timeout))
    }

    /// The platform policy: the `--policy` file, or no ceilings.
    pub fn policy(&self) -> anyhow::Result<std::sync::Arc<dyn crate::caps::grant::Policy>> {
        Ok(match &self.policy {
            Some(p) => std::sync::Arc::new(crate::policy::PolicyFile::load(p)?),
            None => std::sync::Arc::new(crate::caps::grant::NoCeilings),
        })
    }

    /// Run the command. Returns the process exit code.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        if self.output == Output::Json && !self.command.has_json() {
            return Err(Invalid("this command has no JSON output (drop -o json)".into()).into());
        }
        match &self.command {
            Command::Version => return Ok(version(self.output)),
            Command::Completion { shell } => {
                use clap::CommandFactory;
                let mut cmd = Cli::command();
                clap_complete::generate(*shell, &mut cmd, "capstan", &mut std::io::stdout());
                return Ok(ExitCode::Ok);
            }
            _ => {}
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        // The command runs on a worker thread, not in `block_on`: task
        // attempts the scheduler spawns then start from the worker's local
        // queue instead of waking a parked thread (≈50 µs per start).
        let cli = std::sync::Arc::new(self);
        rt.block_on(async move {
            tokio::spawn(async move {
                match &cli.command {
                    Command::Run(args) => run::run(&cli, args).await,
                    Command::Runs(cmd) => runs::runs(&cli, cmd).await,
                    Command::Logs(args) => runs::logs(&cli, args).await,
                    Command::Plugin(cmd) => plugin::plugin(&cli, cmd),
                    Command::Registry(cmd) => registry::registry(&cli, cmd),
                    Command::Secret(cmd) => secret::secret(&cli, cmd),
                    Command::Cache(cmd) => cache::cache(&cli, cmd),
                    Command::Lock(args) => lock::lock(&cli, args),
                    Command::Bench(args) => bench::bench(&cli, args).await,
                    Command::Crds => cluster::crds(&cli),
                    Command::Controller(args) => cluster::controller(&cli, args).await,
                    Command::Serve(args) => serve::serve(&cli, args).await,
                    Command::Approve(args) => approve::approve(&cli, args).await,
                    Command::Approvals(cmd) => approve::approvals(&cli, cmd).await,
                    Command::Token(cmd) => serve::token(&cli, cmd),
                    Command::Repo(cmd) => repo::run(&cli, cmd).await,
                    Command::Version | Command::Completion { .. } => Ok(ExitCode::Ok),
                }
            })
            .await?
        })
    }
}

/// Who runs this command, as runs record it (`triggeredBy`): the OS
/// account, or `unknown` (USER and LOGNAME unset, as in some containers).
pub(crate) fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `capstan version`.
fn version(output: Output) -> ExitCode {
    let (v, commit) = (env!("CARGO_PKG_VERSION"), env!("CAPSTAN_COMMIT"));
    match output {
        Output::Json => println!("{}", serde_json::json!({ "version": v, "commit": commit })),
        Output::Text => println!("capstan {v} (commit {commit})"),
    }
    ExitCode::Ok
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every command says what it does and every argument and option what
    /// it is (`--help` on each).
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path != " capstan" {
                missing.push(format!("{path}: no about"));
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} <{id}>: no help"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
