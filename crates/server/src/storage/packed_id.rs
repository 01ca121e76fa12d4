//! Message ids as the store keeps them: the forms clients really make,
//! packed into their bytes (issue 17) — a hyphenated UUID (browsers) or a
//! 128-bit hex string (the Rust SDK) in 17 bytes instead of 36 or 32, the
//! server's own `srv-<hex>` in 13 instead of 28 — and anything else as its
//! text. Each id is stored twice (in the row and in the dedup index), so
//! this is about a fifth of a fix's bytes.
//!
//! The first byte says the form; unpacking gives back the exact text, so a
//! packed id and the id a client resends compare equal after packing.

/// The form byte.
const TEXT: u8 = 0;
const UUID: u8 = 1;
const HEX: u8 = 2;
const SERVER: u8 = 3;

/// The prefix of ids the server makes for clients that send none.
const SERVER_PREFIX: &str = "srv-";
/// Where a hyphenated UUID has its hyphens.
const UUID_HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// `id`'s stored bytes.
pub(crate) fn pack(id: &str) -> Vec<u8> {
    if let Some(bytes) = uuid(id) {
        return tagged(UUID, &bytes);
    }
    if let Some(bytes) = lower_hex(id) {
        return tagged(HEX, &bytes);
    }
    if let Some(bytes) = id.strip_prefix(SERVER_PREFIX).and_then(lower_hex) {
        return tagged(SERVER, &bytes);
    }
    tagged(TEXT, id.as_bytes())
}

/// The id `bytes` were packed from; `None` if they were not made by [`pack`].
pub(crate) fn unpack(bytes: &[u8]) -> Option<String> {
    let (&form, rest) = bytes.split_first()?;
    match form {
        TEXT => String::from_utf8(rest.to_vec()).ok(),
        HEX => Some(hex(rest)),
        SERVER => Some(format!("{SERVER_PREFIX}{}", hex(rest))),
        UUID if rest.len() == 16 => {
            let mut out = hex(rest);
            for at in UUID_HYPHENS {
                out.insert(at, '-');
            }
            Some(out)
        }
        _ => None,
    }
}

fn tagged(form: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(form);
    out.extend_from_slice(bytes);
    out
}

/// A lower-case hyphenated UUID's 16 bytes.
fn uuid(id: &str) -> Option<Vec<u8>> {
    if id.len() != 36 || UUID_HYPHENS.iter().any(|&at| id.as_bytes()[at] != b'-') {
        return None;
    }
    let digits: String = id.chars().filter(|&c| c != '-').collect();
    lower_hex(&digits).filter(|b| b.len() == 16)
}

/// The bytes of a non-empty, even-length, lower-case hex string.
fn lower_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_clients_make_pack_small_and_come_back_exactly() {
        let cases = [
            ("0f8e1c2a-5b3d-4e6f-8a9b-0c1d2e3f4a5b", 17),
            ("0123456789abcdef0123456789abcdef", 17),
            ("srv-00112233445566778899aabb", 13),
            ("fix-42", 7),
        ];
        for (id, len) in cases {
            let packed = pack(id);
            assert_eq!(packed.len(), len, "{id}");
            assert_eq!(unpack(&packed).as_deref(), Some(id));
        }
    }

    #[test]
    fn near_misses_stay_text_and_distinct() {
        let ids = [
            "0F8E1C2A-5B3D-4E6F-8A9B-0C1D2E3F4A5B",
            "0f8e1c2a-5b3d-4e6f-8a9b-0c1d2e3f4a5",
            "0f8e1c2a5b3d-4e6f-8a9b-0c1d2e3f4a5b-",
            "abc",
            "srv-",
            "srv-abc",
            "",
            "01",
            "srv-01",
            "\u{0}01",
            "ผู้ขับ-1",
        ];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let packed = pack(id);
            assert_eq!(unpack(&packed).as_deref(), Some(id), "{id:?}");
            assert!(seen.insert(packed), "{id:?} packs like another id");
        }
        assert_eq!(unpack(&[]), None);
        assert_eq!(unpack(&[UUID, 1, 2]), None);
        assert_eq!(unpack(&[9]), None);
    }
}
