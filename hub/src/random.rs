//! Randomness from the operating system, for device tokens and signing keys.

/// 32 random bytes.
pub fn bytes32() -> [u8; 32] {
    let mut b = [0u8; 32];
    // The OS generator failing means the machine cannot make secrets at all; nothing sensible
    // can continue, and it happens before any alert is in hand.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("the operating system's random generator failed");
    b
}

/// A 256-bit token as 64 lower-case hex digits (safe in TOML, MQTT passwords and shells).
pub fn token() -> String {
    bytes32().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (super::token(), super::token());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
