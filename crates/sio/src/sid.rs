//! Session and socket ids: 120 random bits, URL-safe base64 (20 characters).

use base64::Engine as _;

/// A fresh id.
pub(crate) fn new() -> Box<str> {
    let mut buf = [0u8; 15];
    // Without the OS random source no id could be trusted: nothing to serve.
    getrandom::fill(&mut buf).expect("the OS random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf).into_boxed_str()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_twenty_url_safe_characters_and_differ() {
        let (a, b) = (super::new(), super::new());
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }
}
