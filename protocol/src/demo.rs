//! The demo's command-signing key, published in the repository
//! (`configs/hub/demo-signing.key`), so both daemons can recognise it by its *value* and
//! refuse it outside the demo: the hub as its signing key, the agent as the public key it
//! trusts. Anyone can sign commands with it, so an agent that trusts it obeys anyone.

use ed25519_dalek::VerifyingKey;

use crate::command::signing_key_from_base64;

/// The committed demo signing key, as the file holds it (base64 of the 32-byte seed).
pub const DEMO_SIGNING_KEY: &str = include_str!("../../configs/hub/demo-signing.key");

/// The demo key's public half, derived from [`DEMO_SIGNING_KEY`] (so a regenerated demo key
/// is still recognised).
pub fn demo_verifying_key() -> VerifyingKey {
    // The file is part of this build; a test below proves it decodes.
    match signing_key_from_base64(DEMO_SIGNING_KEY.trim()) {
        Ok(k) => k.verifying_key(),
        Err(e) => panic!("configs/hub/demo-signing.key is not a signing key: {e}"),
    }
}

/// Whether `key` is the demo key's public half.
pub fn is_demo_key(key: &VerifyingKey) -> bool {
    *key == demo_verifying_key()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{encode_verifying_key, parse_verifying_key};

    #[test]
    fn the_demo_key_is_the_one_the_example_agent_config_trusts() {
        let vtest = include_str!("../../configs/vtest.toml");
        let public = encode_verifying_key(&demo_verifying_key());
        assert!(
            vtest.contains(&format!("public_key = \"{public}\"")),
            "{public}"
        );
        assert!(is_demo_key(&parse_verifying_key(&public).unwrap()));
        let other = crate::SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(!is_demo_key(&other));
    }
}
