//! A fetched pack, in memory: verified (trailer checksum, every entry
//! inflated, every delta resolved, every object id computed), indexed
//! (`.idx` v2) and read object by object for checkout.
//!
//! Hand-written here, and why: on wasm32-wasip2 gix-pack builds only
//! without its `streaming-input` feature (that feature needs gix-tempfile,
//! which gix-pack does not offer for wasm32), and its readers (`Bundle`,
//! `data::File`, `index::File`) memory-map files, which WASI cannot do. So
//! this module walks the pack itself with gix's pieces: entry headers from
//! `gix_pack::data::Entry`, inflation from `gix-zlib`, hashing from
//! `gix-hash`/`gix-object`, CRCs from `crc32fast`. Delta application (the
//! instruction format of git's pack-format.txt, about forty lines) is here
//! because gix-pack keeps its `apply` crate-private; every instruction is
//! bounds-checked. The `.idx` writer follows the same document.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::digest::{self, Sha1};
use crc32fast as crc32;
use gix_hash::{ObjectId, oid};
use gix_object::Kind;
use gix_pack::data::entry::Header;

const HASH: gix_hash::Kind = gix_hash::Kind::Sha1;

/// A resolved object: kind and content.
pub type Object = (Kind, Rc<Vec<u8>>);

/// A pack and its index.
pub struct Pack {
    pub(crate) pack: Vec<u8>,
    pub(crate) idx: Vec<u8>,
    /// object id → offset in the pack
    pub(crate) offsets: HashMap<ObjectId, u64>,
    /// Resolved objects by offset (bases are reused by many deltas).
    pub(crate) cache: RefCell<HashMap<u64, Object>>,
    /// One inflater, reset per object (its window is 32 KiB).
    pub(crate) inflater: RefCell<gix_zlib::Inflate>,
    /// Pack checksum (hex), which names the files.
    pub checksum: String,
    /// Opened from disk with its `.idx` (see `idx.rs`) rather than
    /// resolved whole: each object read is hashed and checked against the
    /// id it was asked for.
    pub(crate) verify_reads: bool,
}

impl Pack {
    /// Verify and index `pack`: every entry is inflated, every delta
    /// resolved, every object id computed; the trailer checksum is checked.
    pub fn index(pack: Vec<u8>) -> Result<Pack, String> {
        if pack.len() < 32 || &pack[..4] != b"PACK" {
            return Err("the server's pack is not a git pack".into());
        }
        let version = u32::from_be_bytes(pack[4..8].try_into().expect("4 bytes"));
        if version != 2 && version != 3 {
            return Err(format!("unsupported pack version {version}"));
        }
        let count = u32::from_be_bytes(pack[8..12].try_into().expect("4 bytes")) as usize;
        let body_end = pack.len() - HASH.len_in_bytes();
        let actual = digest::with(|sha| {
            sha.update(&pack[..body_end])?;
            sha.finish()
        })
        .map_err(|e| format!("hashing the pack: {e}"))?;
        if actual.as_slice() != &pack[body_end..] {
            return Err(
                "the pack's checksum does not match its content (truncated or corrupt)".into(),
            );
        }
        let (mut ids, deltas) = digest::with(|sha| scan(&pack, count, body_end, sha))?;
        let mut p = Pack {
            checksum: actual.to_string(),
            pack,
            idx: Vec::new(),
            offsets: ids.iter().map(|(id, _, off)| (*id, *off)).collect(),
            cache: RefCell::new(HashMap::new()),
            inflater: RefCell::new(gix_zlib::Inflate::default()),
            verify_reads: false,
        };
        // Pass 2: deltas (REF deltas whose base is not known yet are
        // retried after the others).
        let mut pending = deltas;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            let before = pending.len();
            for (off, crc) in pending {
                match p.at(off, 0) {
                    Ok((kind, data)) => {
                        let id = digest::with(|h| h.object_id(kind, &data))
                            .map_err(|e| format!("hashing object at {off}: {e}"))?;
                        p.offsets.insert(id, off);
                        ids.push((id, crc, off));
                    }
                    Err(e) if e.contains("is not in the pack") => retry.push((off, crc)),
                    Err(e) => return Err(e),
                }
            }
            if retry.len() == before {
                return Err(format!(
                    "{} delta(s) refer to objects the pack does not hold (a thin pack?)",
                    retry.len()
                ));
            }
            pending = retry;
        }
        // Bases stay cached for checkout; drop resolved blobs.
        p.cache.borrow_mut().retain(|_, (k, _)| *k != Kind::Blob);
        let checksum = p.checksum_bytes();
        p.idx = digest::with(|h| write_idx(&mut ids, &checksum, h))?;
        Ok(p)
    }

    fn checksum_bytes(&self) -> Vec<u8> {
        self.pack[self.pack.len() - HASH.len_in_bytes()..].to_vec()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn pack_bytes(&self) -> &[u8] {
        &self.pack
    }

    pub fn idx_bytes(&self) -> &[u8] {
        &self.idx
    }

    pub fn contains(&self, id: &oid) -> bool {
        self.offsets.contains_key(id)
    }

    /// An object's kind and content.
    pub fn find(&self, id: &oid) -> Result<(Kind, Rc<Vec<u8>>), String> {
        let offset = *self
            .offsets
            .get(id)
            .ok_or_else(|| format!("object {id} is not in the fetched pack"))?;
        let found = self.at(offset, 0)?;
        if self.verify_reads {
            let actual = digest::with(|h| h.object_id(found.0, &found.1))
                .map_err(|e| format!("hashing object {id}: {e}"))?;
            if actual != id {
                return Err(format!(
                    "object {id}: the pack holds {actual} there (its .idx does not match the pack)"
                ));
            }
        }
        Ok(found)
    }

    pub(crate) fn at(&self, offset: u64, depth: usize) -> Result<(Kind, Rc<Vec<u8>>), String> {
        if let Some(hit) = self.cache.borrow().get(&offset) {
            return Ok(hit.clone());
        }
        if depth > 10_000 {
            return Err("delta chain too deep (a cycle?)".into());
        }
        let bad = |m: &str| format!("malformed pack entry at offset {offset}: {m}");
        let start = usize::try_from(offset).map_err(|_| bad("offset"))?;
        if start >= self.pack.len() {
            return Err(bad("beyond the end of the pack"));
        }
        let entry = gix_pack::data::Entry::from_bytes(&self.pack[start..], offset, HASH)
            .map_err(|e| bad(&e.to_string()))?;
        let data_start = start + entry.header_size();
        let raw = inflate(
            &mut self.inflater.borrow_mut(),
            &self.pack[data_start..],
            entry.decompressed_size as usize,
        )
        .map_err(|e| bad(&e))?;
        let resolved = match entry.header {
            Header::Commit => (Kind::Commit, raw),
            Header::Tree => (Kind::Tree, raw),
            Header::Blob => (Kind::Blob, raw),
            Header::Tag => (Kind::Tag, raw),
            Header::OfsDelta { base_distance } => {
                let base_offset = offset
                    .checked_sub(base_distance)
                    .ok_or_else(|| bad("delta base before the start of the pack"))?;
                let (kind, base) = self.at(base_offset, depth + 1)?;
                (kind, apply_delta(&base, &raw).map_err(|e| bad(&e))?)
            }
            Header::RefDelta { base_id } => {
                let base_offset = *self
                    .offsets
                    .get(&base_id)
                    .ok_or_else(|| bad(&format!("delta base {base_id} is not in the pack")))?;
                let (kind, base) = self.at(base_offset, depth + 1)?;
                (kind, apply_delta(&base, &raw).map_err(|e| bad(&e))?)
            }
        };
        let out = (resolved.0, Rc::new(resolved.1));
        // Keep trees, commits and delta bases; blobs are read once.
        if out.0 != Kind::Blob || depth > 0 {
            self.cache.borrow_mut().insert(offset, out.clone());
        }
        Ok(out)
    }
}

/// How many input bytes the zlib stream of an entry takes, checking that it
/// inflates to exactly `size` bytes.
fn inflated_len(
    dec: &mut gix_zlib::Decompress,
    input: &[u8],
    size: usize,
    scratch: &mut [u8],
    each: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<usize, String> {
    let mut produced = 0usize;
    dec.reset();
    let consumed = inflate_with(dec, input, scratch, &mut |chunk| {
        produced += chunk.len();
        if produced > size {
            return Err(format!(
                "inflates to more than the {size} bytes its header says"
            ));
        }
        each(chunk)
    })?;
    if produced != size {
        return Err(format!("inflated {produced} bytes, the header says {size}"));
    }
    Ok(consumed)
}

/// Inflate one zlib stream at the start of `input`, handing each piece of
/// output to `sink`; returns how many input bytes the stream took.
pub(crate) fn inflate_stream(
    input: &[u8],
    scratch: &mut [u8],
    sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<usize, String> {
    inflate_with(&mut gix_zlib::Decompress::new(), input, scratch, sink)
}

/// [`inflate_stream`] with a decompressor the caller reuses (fresh or
/// reset).
fn inflate_with(
    dec: &mut gix_zlib::Decompress,
    input: &[u8],
    scratch: &mut [u8],
    sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<usize, String> {
    let mut consumed = 0usize;
    loop {
        let (before_in, before_out) = (dec.total_in(), dec.total_out());
        let status = dec
            .decompress(&input[consumed..], scratch, gix_zlib::FlushDecompress::None)
            .map_err(|e| format!("zlib: {e}"))?;
        consumed += (dec.total_in() - before_in) as usize;
        sink(&scratch[..(dec.total_out() - before_out) as usize])?;
        match status {
            gix_zlib::Status::StreamEnd => return Ok(consumed),
            _ if dec.total_in() == before_in && dec.total_out() == before_out => {
                return Err("zlib stream truncated".into());
            }
            _ => {}
        }
    }
}

/// Pass 1 over a pack's entries: boundaries and CRCs; whole objects are
/// hashed as they inflate (each is inflated once, as git's index-pack
/// does). Returns the whole objects' ids and the deltas left to resolve.
#[allow(clippy::type_complexity)]
fn scan(
    pack: &[u8],
    count: usize,
    body_end: usize,
    sha: &mut Sha1,
) -> Result<(Vec<(ObjectId, u32, u64)>, Vec<(u64, u32)>), String> {
    let mut deltas: Vec<(u64, u32)> = Vec::new();
    let mut ids: Vec<(ObjectId, u32, u64)> = Vec::with_capacity(count);
    let mut offset = 12usize;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut dec = gix_zlib::Decompress::new();
    for i in 0..count {
        if offset >= body_end {
            return Err(format!("the pack ends after {i} of {count} objects"));
        }
        let entry = gix_pack::data::Entry::from_bytes(&pack[offset..body_end], offset as u64, HASH)
            .map_err(|e| format!("malformed pack entry at offset {offset}: {e}"))?;
        let data_start = offset + entry.header_size();
        let whole = whole_kind(&entry.header);
        if let Some(kind) = whole {
            sha.start_object(kind, entry.decompressed_size)?;
        }
        let consumed = inflated_len(
            &mut dec,
            &pack[data_start..body_end],
            entry.decompressed_size as usize,
            &mut scratch,
            &mut |chunk| match whole {
                Some(_) => sha.update(chunk),
                None => Ok(()),
            },
        )
        .map_err(|e| format!("malformed pack entry at offset {offset}: {e}"))?;
        let end = data_start + consumed;
        let mut crc = crc32::Hasher::new();
        crc.update(&pack[offset..end]);
        let crc = crc.finalize();
        match whole {
            Some(_) => {
                let id = sha
                    .finish()
                    .map_err(|e| format!("hashing object at {offset}: {e}"))?;
                ids.push((id, crc, offset as u64));
            }
            None => deltas.push((offset as u64, crc)),
        }
        offset = end;
    }
    if offset != body_end {
        return Err("trailing data after the pack's last object".into());
    }
    Ok((ids, deltas))
}

/// The kind of a whole (non-delta) entry; `None` for deltas.
fn whole_kind(header: &Header) -> Option<Kind> {
    match header {
        Header::Commit => Some(Kind::Commit),
        Header::Tree => Some(Kind::Tree),
        Header::Blob => Some(Kind::Blob),
        Header::Tag => Some(Kind::Tag),
        Header::OfsDelta { .. } | Header::RefDelta { .. } => None,
    }
}

/// A pack index, version 2 (git's pack-format.txt).
fn write_idx(
    ids: &mut [(ObjectId, u32, u64)],
    pack_checksum: &[u8],
    sha: &mut Sha1,
) -> Result<Vec<u8>, String> {
    ids.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(8 + 1024 + ids.len() * 28 + 40);
    out.extend_from_slice(b"\xfftOc\0\0\0\x02");
    let mut fanout = [0u32; 256];
    for (id, _, _) in ids.iter() {
        fanout[id.as_bytes()[0] as usize] += 1;
    }
    let mut total = 0;
    for f in fanout.iter_mut() {
        total += *f;
        *f = total;
    }
    for f in fanout {
        out.extend_from_slice(&f.to_be_bytes());
    }
    for (id, _, _) in ids.iter() {
        out.extend_from_slice(id.as_bytes());
    }
    for (_, crc, _) in ids.iter() {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, _, off) in ids.iter() {
        if *off < 0x8000_0000 {
            out.extend_from_slice(&(*off as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&(0x8000_0000u32 | large.len() as u32).to_be_bytes());
            large.push(*off);
        }
    }
    for off in large {
        out.extend_from_slice(&off.to_be_bytes());
    }
    out.extend_from_slice(pack_checksum);
    sha.update(&out)?;
    let sum = sha
        .finish()
        .map_err(|e| format!("hashing the index: {e}"))?;
    out.extend_from_slice(sum.as_slice());
    Ok(out)
}

/// Inflate exactly `size` bytes.
fn inflate(inf: &mut gix_zlib::Inflate, input: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; size];
    inf.reset();
    let (_, _, written) = inf
        .once(input, &mut out)
        .map_err(|e| format!("zlib: {e}"))?;
    if written != size {
        return Err(format!("inflated {written} bytes, the header says {size}"));
    }
    Ok(out)
}

fn varint(data: &[u8], pos: &mut usize) -> Result<usize, String> {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let b = *data.get(*pos).ok_or("delta header truncated")?;
        *pos += 1;
        if shift > 56 {
            return Err("delta size too large".into());
        }
        value |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Apply a git delta to `base`, checking every copy against the base and
/// the declared sizes.
pub fn apply_delta(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, String> {
    let mut pos = 0;
    let base_size = varint(delta, &mut pos)?;
    let result_size = varint(delta, &mut pos)?;
    if base_size != base.len() {
        return Err(format!(
            "delta expects a {base_size}-byte base, the base has {}",
            base.len()
        ));
    }
    if result_size > 1 << 31 {
        return Err("delta result too large".into());
    }
    let mut out = Vec::with_capacity(result_size);
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut offset = 0usize;
            let mut size = 0usize;
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    offset |= (*delta.get(pos).ok_or("delta copy truncated")? as usize) << (8 * i);
                    pos += 1;
                }
            }
            for i in 0..3 {
                if op & (0x10 << i) != 0 {
                    size |= (*delta.get(pos).ok_or("delta copy truncated")? as usize) << (8 * i);
                    pos += 1;
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let end = offset
                .checked_add(size)
                .filter(|&e| e <= base.len())
                .ok_or_else(|| {
                    format!(
                        "delta copies {size} bytes at {offset}, out of range of the {}-byte base",
                        base.len()
                    )
                })?;
            out.extend_from_slice(&base[offset..end]);
        } else if op != 0 {
            let n = op as usize;
            let bytes = delta.get(pos..pos + n).ok_or("delta insert truncated")?;
            out.extend_from_slice(bytes);
            pos += n;
        } else {
            return Err("delta opcode 0 is reserved".into());
        }
        if out.len() > result_size {
            return Err("delta produces more than its declared size".into());
        }
    }
    if out.len() != result_size {
        return Err(format!(
            "delta produced {} bytes, it declares {result_size}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "pack_tests.rs"]
pub(crate) mod tests;
