//! Unit tests of `pack.rs`: deltas, indexing round trips, and malicious
//! or garbage packs.
use super::*;

#[test]
fn deltas_apply_and_refuse_out_of_range_copies() {
    let base = b"hello world";
    // base 11, result 11: copy 0..6 ("hello "), insert "there"
    let delta = [11u8, 11, 0x90, 6, 5, b't', b'h', b'e', b'r', b'e'];
    assert_eq!(apply_delta(base, &delta).unwrap(), b"hello there");
    // copy offset 8 size 10: beyond the base
    let evil = [11u8, 10, 0x91, 8, 10];
    let e = apply_delta(base, &evil).unwrap_err();
    assert!(e.contains("out of range"), "{e}");
    assert!(
        apply_delta(base, &[11, 1, 0])
            .unwrap_err()
            .contains("reserved")
    );
    assert!(
        apply_delta(base, &[12, 1, 1, b'x'])
            .unwrap_err()
            .contains("base")
    );
    assert!(
        apply_delta(base, &[11, 5, 3, b'a'])
            .unwrap_err()
            .contains("truncated")
    );
}

#[test]
fn index_round_trips() {
    let a = ObjectId::from_hex(b"1111111111111111111111111111111111111111").unwrap();
    let b = ObjectId::from_hex(b"0011111111111111111111111111111111111111").unwrap();
    let mut ids = vec![(a, 1, 12), (b, 2, 3_000_000_000)];
    let idx = write_idx(&mut ids, &[0u8; 20], &mut super::Sha1::new().unwrap()).unwrap();
    let (map, _) = super::super::idx::parse_idx(&idx).unwrap();
    assert_eq!(map[&a], 12);
    assert_eq!(map[&b], 3_000_000_000);
}

/// A zlib stream with one stored (uncompressed) block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01, 0x01];
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A pack from (type, size, payload) entries; OFS deltas pass their
/// base distance.
pub(crate) fn build_pack(entries: &[(u8, usize, Option<u64>, &[u8])], count: u32) -> Vec<u8> {
    let mut p = b"PACK\0\0\0\x02".to_vec();
    p.extend_from_slice(&count.to_be_bytes());
    for (ty, size, ofs, payload) in entries {
        let mut size = *size;
        let mut byte = (ty << 4) | (size as u8 & 0x0f);
        size >>= 4;
        while size > 0 {
            p.push(byte | 0x80);
            byte = size as u8 & 0x7f;
            size >>= 7;
        }
        p.push(byte);
        if let Some(mut d) = *ofs {
            // git's offset encoding for OFS deltas
            let mut bytes = vec![(d & 0x7f) as u8];
            d >>= 7;
            while d > 0 {
                d -= 1;
                bytes.push(0x80 | (d & 0x7f) as u8);
                d >>= 7;
            }
            bytes.reverse();
            p.extend_from_slice(&bytes);
        }
        p.extend_from_slice(&zlib_stored(payload));
    }
    let mut h = gix_hash::hasher(HASH);
    h.update(&p);
    p.extend_from_slice(h.try_finalize().unwrap().as_slice());
    p
}

/// Two blobs, `hello` and `world!`.
pub(crate) fn sample_pack() -> Vec<u8> {
    build_pack(&[(3, 5, None, b"hello"), (3, 6, None, b"world!")], 2)
}

#[test]
fn packs_index_and_malicious_ones_are_refused() {
    let good = build_pack(&[(3, 5, None, b"hello")], 1);
    let pack = Pack::index(good).unwrap();
    // `printf hello | git hash-object --stdin`
    let id = ObjectId::from_hex(b"b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0").unwrap();
    assert_eq!(pack.find(&id).unwrap().1.as_slice(), b"hello");

    // An OFS delta copying past the end of its base.
    let base_len = 12 + 1 + zlib_stored(b"hello").len();
    let delta: &[u8] = &[5, 8, 0x91, 2, 8];
    let evil = build_pack(
        &[
            (3, 5, None, b"hello"),
            (6, delta.len(), Some((base_len - 12) as u64), delta),
        ],
        2,
    );
    let e = Pack::index(evil).err().unwrap();
    assert!(e.contains("out of range"), "{e}");

    // A size header that lies.
    let e = Pack::index(build_pack(&[(3, 7, None, b"hello")], 1))
        .err()
        .unwrap();
    assert!(e.contains("header says 7"), "{e}");

    // Fewer objects than announced.
    let e = Pack::index(build_pack(&[(3, 5, None, b"hello")], 2))
        .err()
        .unwrap();
    assert!(e.contains("ends after 1 of 2"), "{e}");
}

#[test]
fn garbage_is_not_a_pack() {
    assert!(Pack::index(b"not a pack at all, really not one".to_vec()).is_err());
    let mut truncated = b"PACK\0\0\0\x02\0\0\0\x05".to_vec();
    truncated.extend_from_slice(&[0u8; 30]);
    assert!(Pack::index(truncated).is_err());
}
