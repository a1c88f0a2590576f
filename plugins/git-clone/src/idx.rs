//! Open a pack already on disk through its `.idx` (version 2, as written
//! by `pack.rs` or by git), so updating a checkout does not resolve every
//! object of the previous clone again. The `.idx` is not trusted: offsets
//! are bounds-checked when read, the pack's trailer must match the
//! checksum the `.idx` names, and every object read is hashed and checked
//! against the id it was looked up by.

use std::cell::RefCell;
use std::collections::HashMap;

use gix_hash::ObjectId;

use super::pack::Pack;

const HASH_LEN: usize = 20;

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| "the .idx is truncated".to_string())
}

/// Object id → pack offset, from an `.idx` v2.
pub fn parse_idx(idx: &[u8]) -> Result<(HashMap<ObjectId, u64>, Vec<u8>), String> {
    if idx.get(..8) != Some(b"\xfftOc\0\0\0\x02") {
        return Err("not a version-2 pack index".into());
    }
    let count = be32(idx, 8 + 255 * 4)? as usize;
    let ids_at = 8 + 256 * 4;
    let offsets_at = ids_at + count * (HASH_LEN + 4);
    let large_at = offsets_at + count * 4;
    if idx.len() < large_at + 2 * HASH_LEN {
        return Err("the .idx is truncated".into());
    }
    let large_count = (idx.len() - large_at - 2 * HASH_LEN) / 8;
    let mut map = HashMap::with_capacity(count);
    for i in 0..count {
        let id = ObjectId::from_bytes_or_panic(&idx[ids_at + i * HASH_LEN..][..HASH_LEN]);
        let raw = be32(idx, offsets_at + i * 4)?;
        let offset = if raw & 0x8000_0000 == 0 {
            u64::from(raw)
        } else {
            let j = (raw & 0x7fff_ffff) as usize;
            if j >= large_count {
                return Err("the .idx names a large offset it does not hold".into());
            }
            let at = large_at + j * 8;
            u64::from_be_bytes(idx[at..at + 8].try_into().expect("8 bytes"))
        };
        map.insert(id, offset);
    }
    let end = idx.len() - 2 * HASH_LEN;
    Ok((map, idx[end..end + HASH_LEN].to_vec()))
}

impl Pack {
    /// A pack and its `.idx` from disk; objects are resolved when read.
    pub fn open(pack: Vec<u8>, idx: Vec<u8>) -> Result<Pack, String> {
        if pack.len() < 12 + HASH_LEN || &pack[..4] != b"PACK" {
            return Err("not a git pack".into());
        }
        let (offsets, pack_sum) = parse_idx(&idx)?;
        let trailer = &pack[pack.len() - HASH_LEN..];
        if trailer != pack_sum.as_slice() {
            return Err("the .idx belongs to another pack".into());
        }
        Ok(Pack {
            checksum: ObjectId::from_bytes_or_panic(trailer).to_string(),
            pack,
            idx,
            offsets,
            cache: RefCell::new(HashMap::new()),
            inflater: RefCell::new(gix_zlib::Inflate::default()),
            verify_reads: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack indexed here opens from its own `.idx` and reads the same
    /// objects; a damaged or foreign `.idx` is refused or caught on read.
    #[test]
    fn opened_packs_read_the_same_objects_and_lies_are_caught() {
        let pack = super::super::pack::tests::sample_pack();
        let indexed = Pack::index(pack.clone()).unwrap();
        let ids: Vec<ObjectId> = indexed.offsets.keys().copied().collect();
        let opened = Pack::open(pack.clone(), indexed.idx_bytes().to_vec()).unwrap();
        assert_eq!(opened.checksum, indexed.checksum);
        for id in &ids {
            assert_eq!(opened.find(id).unwrap(), indexed.find(id).unwrap());
        }
        // Swap two ids' offsets: each read is hashed, so the lie is caught.
        let mut idx = indexed.idx_bytes().to_vec();
        let count = ids.len();
        assert!(count >= 2);
        let offsets_at = 8 + 256 * 4 + count * 24;
        let (a, b) = (offsets_at, offsets_at + 4);
        let tmp: Vec<u8> = idx[a..a + 4].to_vec();
        idx.copy_within(b..b + 4, a);
        idx[b..b + 4].copy_from_slice(&tmp);
        let lying = Pack::open(pack.clone(), idx).unwrap();
        assert!(
            ids.iter()
                .any(|id| lying.find(id).is_err_and(|e| e.contains("does not match")))
        );
        // Truncated, or naming another pack.
        assert!(Pack::open(pack.clone(), indexed.idx_bytes()[..100].to_vec()).is_err());
        let mut other = indexed.idx_bytes().to_vec();
        let n = other.len();
        other[n - 40] ^= 1;
        assert!(
            Pack::open(pack, other)
                .err()
                .unwrap()
                .contains("another pack")
        );
    }
}
