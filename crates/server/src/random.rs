//! Random ids and numbers from the OS source: stream ids, node ids, the ids
//! the server makes for clients that send none, jitter. One place, so every
//! id has the same form (lower-case hex, which the store packs small).

/// `bytes` random bytes as lower-case hex (twice as many characters).
pub(crate) fn hex_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random number in `[0, 1]`.
pub(crate) fn unit() -> f64 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("the OS random source is available");
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_of_the_length_asked_and_differ() {
        let (a, b) = (super::hex_id(16), super::hex_id(16));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert!((0.0..=1.0).contains(&super::unit()));
    }
}
