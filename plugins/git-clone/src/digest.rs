//! SHA-1 (collision-detecting, as git's sha1dc) for object ids and pack
//! checksums. Inside the sandbox the host's `digest` capability hashes at
//! native speed (hashing in wasm was most of a full clone's time: 115 MB of
//! objects for ripgrep's history); built natively (unit tests) gix-hash
//! does it.

use gix_hash::ObjectId;
use gix_object::Kind;

thread_local! {
    static SHARED: std::cell::RefCell<Option<Sha1>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with the plugin's one hasher, made on first use: the host lets
/// a task hold at most 64, and a clone may open many packs. If `f` fails
/// part-way, what it fed is discarded.
pub fn with<R>(f: impl FnOnce(&mut Sha1) -> Result<R, String>) -> Result<R, String> {
    SHARED.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "digest: the hasher is already in use".to_string())?;
        if slot.is_none() {
            *slot = Some(Sha1::new()?);
        }
        let sha = slot.as_mut().expect("just made");
        let out = f(sha);
        if out.is_err() {
            let _ = sha.finish();
        }
        out
    })
}

/// An incremental SHA-1 hasher, reused: `finish` starts it over.
pub struct Sha1(imp::Inner);

impl Sha1 {
    pub fn new() -> Result<Sha1, String> {
        imp::Inner::new().map(Sha1)
    }

    pub fn update(&mut self, data: &[u8]) -> Result<(), String> {
        self.0.update(data)
    }

    /// The id of everything fed since the last `finish`.
    pub fn finish(&mut self) -> Result<ObjectId, String> {
        let bytes = self.0.finish()?;
        ObjectId::try_from(bytes.as_slice()).map_err(|e| format!("digest: {e}"))
    }

    /// Feed an object's loose header (`blob 123\0`); its content follows.
    pub fn start_object(&mut self, kind: Kind, size: u64) -> Result<(), String> {
        self.update(&gix_object::encode::loose_header(kind, size))
    }

    /// A whole object's id.
    pub fn object_id(&mut self, kind: Kind, data: &[u8]) -> Result<ObjectId, String> {
        self.start_object(kind, data.len() as u64)?;
        self.update(data)?;
        self.finish()
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use capstan_plugin_sdk::capstan::plugin::digest::{Algorithm, Hasher, new_hasher};
    use capstan_plugin_sdk::capstan::plugin::types::TaskError;

    /// The host takes at most 16 MiB per call.
    const PIECE: usize = 16 << 20;

    pub struct Inner(Hasher);

    fn text(e: TaskError) -> String {
        match e {
            TaskError::Failed(m) | TaskError::InvalidParams(m) => m,
            TaskError::Denied(d) => format!("digest denied: {}", d.target),
        }
    }

    impl Inner {
        pub fn new() -> Result<Inner, String> {
            new_hasher(Algorithm::Sha1).map(Inner).map_err(text)
        }

        pub fn update(&mut self, data: &[u8]) -> Result<(), String> {
            for piece in data.chunks(PIECE) {
                self.0.update(piece).map_err(text)?;
            }
            Ok(())
        }

        pub fn finish(&mut self) -> Result<Vec<u8>, String> {
            self.0.finish().map_err(text)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub struct Inner(gix_hash::Hasher);

    fn fresh() -> gix_hash::Hasher {
        gix_hash::hasher(gix_hash::Kind::Sha1)
    }

    impl Inner {
        pub fn new() -> Result<Inner, String> {
            Ok(Inner(fresh()))
        }

        pub fn update(&mut self, data: &[u8]) -> Result<(), String> {
            self.0.update(data);
            Ok(())
        }

        pub fn finish(&mut self) -> Result<Vec<u8>, String> {
            let done = std::mem::replace(&mut self.0, fresh());
            done.try_finalize()
                .map(|id| id.as_slice().to_vec())
                .map_err(|e| format!("digest: {e}"))
        }
    }
}
