//! Generated `Host` impls for `capstan:plugin/secrets`.

use wasmtime::component::Resource;

use super::{Secret, SecretsState};
use crate::bindings::capstan::plugin::secrets::{Host, HostSecret};
use crate::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError};
use crate::caps::LogLevel;
use crate::caps::capability::View;

fn denied(target: &str, why: &str) -> TaskError {
    TaskError::Denied(Denial {
        capability: "secrets".into(),
        target: format!("{target}: {why}"),
        layer: GrantLayer::Pipeline,
    })
}

impl SecretsState {
    fn table_get<'a>(
        table: &'a wasmtime::component::ResourceTable,
        r: &Resource<Secret>,
    ) -> wasmtime::Result<&'a Secret> {
        Ok(table.get(r)?)
    }
}

/// The view the generated `Host` traits are implemented on.
pub type SecretsView<'a> = View<'a, SecretsState>;

impl HostSecret for SecretsView<'_> {
    fn name(&mut self, s: Resource<Secret>) -> String {
        SecretsState::table_get(self.table, &s)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn drop(&mut self, s: Resource<Secret>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl Host for SecretsView<'_> {
    fn open(&mut self, name: String) -> Result<Resource<Secret>, TaskError> {
        if !self.state.granted.contains_key(&name) {
            self.task.sink.log(
                LogLevel::Warn,
                &format!(
                    "denied: secrets open `{name}` (layer: pipeline; not in this task's grants.secrets)"
                ),
            );
            return Err(denied(&name, "not granted to this task"));
        }
        self.table
            .push(Secret { name })
            .map_err(|e| TaskError::Failed(format!("secret handle: {e}")))
    }

    fn reveal(&mut self, s: Resource<Secret>) -> Result<Vec<u8>, TaskError> {
        let name = SecretsState::table_get(self.table, &s)
            .map_err(|e| TaskError::Failed(format!("secret handle: {e}")))?
            .name
            .clone();
        match self.state.granted.get(&name) {
            Some(g) if g.reveal => Ok(g.value.to_vec()),
            _ => {
                self.task.sink.log(
                    LogLevel::Warn,
                    &format!(
                        "denied: secrets reveal `{name}` (layer: pipeline; the grant does not say `reveal: true`)"
                    ),
                );
                Err(denied(&name, "the grant does not allow reading the value"))
            }
        }
    }
}
