//! Every receiver-side decoder of `protocol`: the first byte picks the message type, the rest
//! is the payload as it would arrive over MQTT.
//!
//! Beyond "does not panic": whatever a decoder accepts must serialise and decode again to an
//! equal value (a hub that re-publishes or stores a message must not produce one the next
//! reader refuses), and a command text signed with the right key must never be refused as
//! a bad signature.

use std::fmt::Debug;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use protocol::command::SIGNING_CONTEXT;
use protocol::{
    CommandError, DecodeError, SignedCommand, SigningKey, decode_alert, decode_command_reply,
    decode_sightings, decode_status,
};
use serde::Serialize;

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    // Seeds in corpus/protocol/ start with the selector byte of their message type.
    match selector % 5 {
        0 => round_trip(payload, decode_alert),
        1 => round_trip(payload, decode_status),
        2 => round_trip(payload, decode_sightings),
        3 => round_trip(payload, decode_command_reply),
        _ => command(payload),
    }
}

fn round_trip<T: Serialize + PartialEq + Debug>(
    payload: &[u8],
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) {
    let Ok(value) = decode(payload) else {
        return;
    };
    let bytes = serde_json::to_vec(&value).expect("an accepted message serialises");
    let again = decode(&bytes).unwrap_or_else(|e| {
        panic!(
            "an accepted message, re-serialised, is refused: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(value, again, "re-serialised message decodes differently");
}

/// The envelope as received, then the payload as the command text inside a correctly signed
/// envelope, so the fuzzer reaches the command parser and validation behind the signature.
fn command(payload: &[u8]) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let verifying = key.verifying_key();
    if let Ok(envelope) = SignedCommand::from_slice(payload) {
        // Random bytes never carry a valid signature of ours; it must only not panic.
        let _ = envelope.verify(&verifying);
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let mut signed = SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(text.as_bytes());
    let envelope = SignedCommand {
        command: text.to_string(),
        signature: STANDARD.encode(key.sign(&signed).to_bytes()),
    };
    match envelope.verify(&verifying) {
        Ok(command) => {
            let again = SignedCommand::sign(&command, &key)
                .verify(&verifying)
                .unwrap_or_else(|e| panic!("an accepted command, re-signed, is refused: {e}"));
            assert_eq!(command, again, "re-signed command decodes differently");
        }
        Err(CommandError::BadSignature) => panic!("a correctly signed command failed to verify"),
        Err(_) => {}
    }
}
