//! The `capstan:plugin/digest` capability: SHA-1 (collision-detecting, as
//! git's sha1dc) and SHA-256 computed by the host. Every task has it: a
//! digest is a pure function of its input, and a guest could compute it
//! itself, only four to eight times slower (git-clone hashes every object
//! of a pack: 115 MB for ripgrep's history).
//!
//! Attacker's eye: the host does the work, so each call is bounded (at most
//! [`MAX_UPDATE`] bytes, a few milliseconds of CPU, so epoch deadlines and
//! cancellation still land between calls) and a task holds at most
//! [`MAX_HASHERS`] hashers (host memory). A detected collision attack is an
//! error, never a digest.

mod host;

use sha2::Digest as _;
use wasmtime::component::Linker;

use super::capability::{Capability, Data, NoGrant, PrepareCtx, TaskCtx, TaskData, view};
use crate::bindings::capstan::plugin::digest::Algorithm;
use crate::bindings::capstan::plugin::types::TaskError;

/// Most bytes one `update` takes.
pub const MAX_UPDATE: usize = 16 << 20;
/// Most hashers a task holds at once.
pub const MAX_HASHERS: usize = 64;

/// The digest capability: every task has it.
pub struct DigestCap;

impl Capability for DigestCap {
    const NAME: &'static str = "digest";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/digest"];
    type Grant = NoGrant;
    type Prepared = ();
    type State = DigestState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::digest::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn prepare(_: &[NoGrant], _: &PrepareCtx<'_>) -> Result<(), String> {
        Ok(())
    }

    fn instantiate(_: (), _: &TaskCtx) -> DigestState {
        DigestState::default()
    }
}

/// Per-attempt state: how many hashers are live.
#[derive(Default)]
pub struct DigestState {
    live: usize,
}

/// A hasher resource.
pub enum Hasher {
    Sha1(Box<sha1dc::Hasher>),
    Sha256(Box<sha2::Sha256>),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha1 => Hasher::Sha1(Box::new(sha1dc::Hasher::new())),
            Algorithm::Sha256 => Hasher::Sha256(Box::default()),
        }
    }

    fn update(&mut self, data: &[u8]) -> Result<(), TaskError> {
        if data.len() > MAX_UPDATE {
            return Err(TaskError::Failed(format!(
                "digest update of {} bytes: at most {MAX_UPDATE} per call (feed longer input in pieces)",
                data.len()
            )));
        }
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
        Ok(())
    }

    /// The digest; the hasher starts over.
    fn finish(&mut self) -> Result<Vec<u8>, TaskError> {
        match self {
            Hasher::Sha1(h) => h
                .finalize_reset()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|c| {
                    TaskError::Failed(format!(
                        "SHA-1 collision attack detected in the hashed input (digest {c})"
                    ))
                }),
            Hasher::Sha256(h) => Ok(h.finalize_reset().to_vec()),
        }
    }
}
