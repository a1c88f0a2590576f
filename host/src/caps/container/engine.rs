//! The local backend: the Docker Engine API over a Unix socket (Docker's,
//! or Podman's `podman system service`), through bollard.
//!
//! One container per call: created with the task's workspaces bind-mounted,
//! every capability dropped, no new privileges, no network unless granted,
//! an init process (so a PID 1 that ignores SIGTERM cannot stall a stop);
//! logs followed to the end (podman 4's `/wait` burns CPU while it waits,
//! so it is only asked once the logs have ended); killed on timeout; removed
//! afterwards, and on cancel (a dropped call) by [`Removal`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountBindOptions, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, LogsOptions, RemoveContainerOptions,
    WaitContainerOptions,
};
use futures::StreamExt;

/// Where the engine's socket is looked for, in order, after
/// `CAPSTAN_CONTAINER_HOST` and `DOCKER_HOST` (`unix://PATH`).
const DEFAULT_SOCKETS: &[&str] = &["/run/podman/podman.sock", "/var/run/docker.sock"];

/// An engine to run containers on.
pub struct Engine {
    docker: Docker,
    pub socket: String,
}

/// The longest an image pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a `root: true` container keeps of root's capabilities: what
/// unpacking and writing files as their owners needs (an image builder),
/// none of the network's, devices', kernel's or other processes'.
pub const ROOT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETUID",
    "SETGID",
    "SETFCAP",
];

/// One container to run (already checked against the grants).
pub struct Job {
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// Secrets as environment variables (the engine gets the values; a Pod
    /// refers to the Secret).
    pub secret_vars: Vec<SecretVar>,
    pub working_dir: Option<String>,
    /// Bind mounts: (host directory, path in the container, read-only).
    pub binds: Vec<(PathBuf, String, bool)>,
    pub network: bool,
    /// Granted `root`: uid 0 with [`ROOT_CAPABILITIES`] (else the image's
    /// user with every capability dropped).
    pub root: bool,
    pub nano_cpus: Option<i64>,
    pub memory: Option<i64>,
    pub timeout: Option<Duration>,
}

/// A secret as an environment variable.
pub struct SecretVar {
    /// The variable.
    pub name: String,
    /// The secret.
    pub secret: String,
    pub value: String,
}

/// How a container ended.
pub struct Ended {
    pub exit_code: i64,
    pub timed_out: bool,
}

/// Which output stream a piece of a container's log came from.
pub enum Stream {
    Out,
    Err,
}

impl Engine {
    /// The engine at `CAPSTAN_CONTAINER_HOST`, `DOCKER_HOST`, or the first
    /// default socket that exists; the error names where it looked.
    pub fn connect() -> Result<Engine, String> {
        let from_env = ["CAPSTAN_CONTAINER_HOST", "DOCKER_HOST"]
            .iter()
            .find_map(|k| {
                std::env::var(k)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (*k, v))
            });
        let socket = match &from_env {
            Some((k, v)) => v
                .strip_prefix("unix://")
                .map(str::to_string)
                .ok_or_else(|| {
                    // Not echoing the value: a tcp:// URL may carry credentials.
                    format!("{k} is not a Unix socket: only `unix:///PATH` is supported")
                })?,
            None => DEFAULT_SOCKETS
                .iter()
                .find(|p| Path::new(p).exists())
                .map(|p| p.to_string())
                .ok_or_else(|| {
                    format!(
                        "no container engine: no socket at {} (start Docker or `podman system service --time=0 unix:///run/podman/podman.sock`, or set CAPSTAN_CONTAINER_HOST=unix:///PATH)",
                        DEFAULT_SOCKETS.join(" or ")
                    )
                })?,
        };
        if !Path::new(&socket).exists() {
            return Err(format!(
                "no container engine: no socket at {socket} (is the engine running?)"
            ));
        }
        // The version podman 4 and Docker 20.10+ both serve.
        let version = bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        // Requests have no client timeout: a follow lasts as long as the
        // container; the task's timeout and the job's own bound it.
        let docker = Docker::connect_with_unix(&socket, 365 * 24 * 3600, &version)
            .map_err(|e| format!("container engine at {socket}: {e}"))?;
        Ok(Engine { docker, socket })
    }

    fn err(&self, what: &str, e: bollard::errors::Error) -> String {
        format!("container engine at {}: {what}: {e}", self.socket)
    }

    /// Pull `image` (granted, normalized), which the engine does not have
    /// (pulled when missing, as Kubernetes' `IfNotPresent`: pin a digest to
    /// get new content). With the engine's own credentials: podman's auth
    /// file (`podman login`); Docker's daemon has none of its own. The
    /// engine's status lines go to the task log, progress bars do not.
    async fn pull(
        &self,
        image: &str,
        out: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<(), String> {
        let started = std::time::Instant::now();
        out(
            Stream::Out,
            format!("capstan: pulling {image} (not in the container engine)\n").as_bytes(),
        );
        let options = bollard::query_parameters::CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut pulling = self.docker.create_image(Some(options), None, None);
        let mut last = String::new();
        while let Some(item) = pulling.next().await {
            let info = item.map_err(|e| format!("pulling image `{image}`: {e}"))?;
            let moving = info
                .progress_detail
                .as_ref()
                .is_some_and(|p| p.current.is_some());
            let Some(status) = info.status.filter(|_| !moving) else {
                continue;
            };
            let line = match &info.id {
                Some(id) => format!("capstan: {id}: {status}\n"),
                None => format!("capstan: {status}\n"),
            };
            if line != last {
                out(Stream::Out, line.as_bytes());
                last = line;
            }
        }
        out(
            Stream::Out,
            format!(
                "capstan: pulled {image} in {:.1}s\n",
                started.elapsed().as_secs_f64()
            )
            .as_bytes(),
        );
        // What the engine says it pulled must now be there by that name.
        self.docker
            .inspect_image(image)
            .await
            .map(|_| ())
            .map_err(|e| self.err(&format!("the pulled image `{image}`"), e))
    }

    /// Run `job`, handing its output to `out` as it comes.
    pub async fn run(
        &self,
        job: Job,
        out: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<Ended, String> {
        if let Err(e) = self.docker.inspect_image(&job.image).await {
            match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => {
                    // A stalled registry does not hold the task past its
                    // timeout (the pull counts in it, as in a Pod), nor
                    // past PULL_TIMEOUT without one.
                    let limit = job.timeout.unwrap_or(PULL_TIMEOUT).min(PULL_TIMEOUT);
                    tokio::time::timeout(limit, self.pull(&job.image, out))
                        .await
                        .map_err(|_| {
                            format!(
                                "pulling image `{}`: not done in {}s",
                                job.image,
                                limit.as_secs()
                            )
                        })??;
                }
                e => return Err(self.err("inspecting the image", e)),
            }
        }
        let mut env = job.env;
        env.extend(
            job.secret_vars
                .into_iter()
                .map(|v| format!("{}={}", v.name, v.value)),
        );
        let body = ContainerCreateBody {
            image: Some(job.image),
            entrypoint: job.entrypoint,
            cmd: (!job.cmd.is_empty()).then_some(job.cmd),
            env: Some(env),
            working_dir: job.working_dir,
            user: job.root.then(|| "0:0".to_string()),
            labels: Some(HashMap::from([(
                "dev.capstan.task".to_string(),
                "true".to_string(),
            )])),
            network_disabled: Some(!job.network),
            host_config: Some(HostConfig {
                // Typed mounts: a missing source fails (a `binds` string
                // would have it created, as root) and no `:` is parsed.
                mounts: Some(
                    job.binds
                        .into_iter()
                        .map(|(source, target, ro)| Mount {
                            typ: Some(MountType::BIND),
                            source: Some(source.display().to_string()),
                            target: Some(target),
                            read_only: Some(ro),
                            bind_options: Some(MountBindOptions {
                                create_mountpoint: Some(false),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                network_mode: (!job.network).then(|| "none".to_string()),
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: job
                    .root
                    .then(|| ROOT_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
                security_opt: Some(vec!["no-new-privileges".into()]),
                init: Some(true),
                memory: job.memory,
                // No swap beyond the limit (memory + swap = the limit).
                memory_swap: job.memory,
                nano_cpus: job.nano_cpus,
                pids_limit: Some(4096),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Named by us, so the removal guard exists before the create: a
        // call dropped mid-create still removes what the engine made.
        let name = unique_name();
        let removal = Removal {
            docker: Some(self.docker.clone()),
            id: name.clone(),
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.err("creating the container", e))?;
        let ended = self.start_and_follow(&name, job.timeout, out).await;
        removal.now().await;
        ended
    }

    /// The baseline `capstan bench --container` measures against: what any
    /// Engine API client does to run `cmd` in `image` (as `docker run`
    /// does: create, start, follow the output, wait, remove), with none of
    /// Capstan's checks, mounts or settings. Its exit code.
    pub async fn bare_run(&self, image: &str, cmd: Vec<String>) -> Result<i64, String> {
        let name = unique_name();
        let removal = Removal {
            docker: Some(self.docker.clone()),
            id: name.clone(),
        };
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(cmd),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.err("creating the container", e))?;
        let ended = self.start_and_follow(&name, None, &mut |_, _| {}).await;
        removal.now().await;
        ended.map(|e| e.exit_code)
    }

    async fn start_and_follow(
        &self,
        id: &str,
        timeout: Option<Duration>,
        out: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<Ended, String> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| self.err("starting the container", e))?;
        let follow = async {
            let mut logs = self.docker.logs(
                id,
                Some(LogsOptions {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            );
            while let Some(piece) = logs.next().await {
                match piece.map_err(|e| self.err("following the logs", e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out(Stream::Out, &message)
                    }
                    LogOutput::StdErr { message } => out(Stream::Err, &message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok::<(), String>(())
        };
        let timed_out = match timeout {
            Some(limit) => match tokio::time::timeout(limit, follow).await {
                Ok(r) => {
                    r?;
                    false
                }
                Err(_) => {
                    let kill = KillContainerOptions {
                        signal: "SIGKILL".into(),
                    };
                    let _ = self.docker.kill_container(id, Some(kill)).await;
                    true
                }
            },
            None => {
                follow.await?;
                false
            }
        };
        let exit_code = self.exit_code(id).await?;
        Ok(Ended {
            exit_code,
            timed_out,
        })
    }

    /// The exit code of a container whose logs have ended.
    async fn exit_code(&self, id: &str) -> Result<i64, String> {
        let mut wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err("waiting for the container", e)),
            None => Err(format!(
                "container engine at {}: the wait ended without a status",
                self.socket
            )),
        }
    }
}

/// `capstan-<pid>-<nanos>-<n>`: unique on this engine for this process.
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "capstan-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a container when dropped (a cancelled or timed-out task drops
/// the call mid-way), or now.
struct Removal {
    docker: Option<Docker>,
    id: String,
}

impl Removal {
    /// Remove it now, on a spawned task (so cancelling the caller
    /// mid-removal does not stop it), waiting for it to finish.
    async fn now(mut self) {
        if let Some(d) = self.docker.take() {
            let id = std::mem::take(&mut self.id);
            let _ = tokio::spawn(async move { remove(&d, &id).await }).await;
        }
    }
}

async fn remove(d: &Docker, id: &str) {
    if let Err(e) = d.remove_container(id, Some(force())).await {
        // A create that never happened leaves nothing to remove (404).
        if !matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ) {
            tracing::warn!(container = id, error = %e, "removing a task's container failed");
        }
    }
}

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if let (Some(d), Ok(rt)) = (self.docker.take(), tokio::runtime::Handle::try_current()) {
            let id = std::mem::take(&mut self.id);
            rt.spawn(async move { remove(&d, &id).await });
        }
    }
}

/// A path the engine can bind-mount for an open directory: where the
/// opened directory is now (its `/proc/self/fd` link, which follows the
/// directory, not the name it was opened by), checked to be that same
/// directory with no link on the way. The engine looks the path up again
/// when it mounts; a link planted in between by another task of the run is
/// the window left (the task making this call is itself blocked in it).
pub fn bind_source(dir: &cap_std::fs::Dir) -> Result<PathBuf, String> {
    use cap_std::fs::MetadataExt as _;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt as _;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|e| format!("locating a workspace: {e}"))?;
    let opened = dir
        .dir_metadata()
        .map_err(|e| format!("locating a workspace: {e}"))?;
    let same = std::fs::canonicalize(&path).is_ok_and(|c| c == path)
        && std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_dir() && m.dev() == opened.dev() && m.ino() == opened.ino());
    if !same {
        return Err(format!(
            "the workspace at {} is no longer where it was opened; not mounting it",
            path.display()
        ));
    }
    Ok(path)
}
