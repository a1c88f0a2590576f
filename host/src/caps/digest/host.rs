//! Generated `Host` impls for `capstan:plugin/digest`.

use wasmtime::component::Resource;

use super::{DigestState, Hasher, MAX_HASHERS};
use crate::bindings::capstan::plugin::digest::{Algorithm, Host, HostHasher};
use crate::bindings::capstan::plugin::types::TaskError;
use crate::caps::capability::View;

fn handle_error(e: impl std::fmt::Display) -> TaskError {
    TaskError::Failed(format!("digest hasher handle: {e}"))
}

impl HostHasher for View<'_, DigestState> {
    fn update(&mut self, h: Resource<Hasher>, data: Vec<u8>) -> Result<(), TaskError> {
        self.table.get_mut(&h).map_err(handle_error)?.update(&data)
    }

    fn finish(&mut self, h: Resource<Hasher>) -> Result<Vec<u8>, TaskError> {
        self.table.get_mut(&h).map_err(handle_error)?.finish()
    }

    fn drop(&mut self, h: Resource<Hasher>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        self.state.live = self.state.live.saturating_sub(1);
        Ok(())
    }
}

impl Host for View<'_, DigestState> {
    fn new_hasher(&mut self, algorithm: Algorithm) -> Result<Resource<Hasher>, TaskError> {
        if self.state.live >= MAX_HASHERS {
            return Err(TaskError::Failed(format!(
                "digest: at most {MAX_HASHERS} hashers at once (drop one first)"
            )));
        }
        let r = self
            .table
            .push(Hasher::new(algorithm))
            .map_err(handle_error)?;
        self.state.live += 1;
        Ok(r)
    }
}
