//! Workspaces: host directories mounted into the sandbox at
//! `/workspace/<name>`, read-write or read-only per binding. Nothing else of
//! the host file system is visible.

use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A workspace bound for one task attempt.
#[derive(Debug, Clone)]
pub struct WorkspaceMount {
    /// The plugin's workspace name.
    pub name: String,
    /// The host directory (must exist).
    pub host_path: PathBuf,
    pub read_only: bool,
}

impl WorkspaceMount {
    /// Where the guest sees it.
    pub fn guest_path(&self) -> String {
        format!("/workspace/{}", self.name)
    }

    pub(crate) fn preopen(&self, builder: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        let perms = if self.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&self.host_path, self.guest_path(), perms)
            .map_err(anyhow::Error::from)
            .map_err(|e| {
                e.context(format!(
                    "mounting workspace `{}` from {}",
                    self.name,
                    self.host_path.display()
                ))
            })?;
        Ok(())
    }
}
