//! [`Command`]s: hub → agent changes (watchlist, bike pairings, rule parameters), published as a
//! [`SignedCommand`] on `{prefix}/site/{site}/cmd`; the agent answers with a [`CommandReply`] on
//! `{prefix}/site/{site}/cmd/reply`.
//!
//! Anyone who can publish on the broker could otherwise reconfigure a site, so commands are
//! signed with the hub's Ed25519 key and agents hold only the public key. The signature covers
//! the exact bytes of the command's JSON text as sent (carried as a string inside the envelope),
//! so neither side needs canonical JSON; the `se-cmd-v1\n` prefix separates this use of the key
//! from any other. Replay and age checks (`seq`, `issued_at`) are the agent's, since only it
//! knows the last sequence number it applied and its clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::alert::Severity;
use crate::limits::MAX_COMMAND_BYTES;
use crate::time::UtcMillis;

/// Domain separation: what is signed is this, then the command's JSON bytes. Public so the
/// fuzz target (`fuzz/`) can sign arbitrary text and reach the parser behind the signature.
pub const SIGNING_CONTEXT: &[u8] = b"se-cmd-v1\n";

/// One command to one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Wire schema version ([`crate::SCHEMA_VERSION`]).
    pub schema: u32,
    /// The site the command is for; agents refuse commands for another site.
    pub site: String,
    /// Strictly increasing per site; the agent refuses `seq <=` the last one it applied.
    pub seq: u64,
    /// When the hub issued it; the agent refuses commands older than its max age or from the
    /// future.
    pub issued_at: UtcMillis,
    /// What to do.
    pub body: CommandBody,
}

/// What a command does; `op` on the wire names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandBody {
    /// Put a tag on the watchlist (布控).
    WatchAdd {
        tag: String,
        case_ref: String,
        #[serde(default)]
        note: String,
    },
    /// Take a tag off the watchlist.
    WatchRemove { tag: String },
    /// Pair a bike tag with its owner's key tags (replacing any earlier pairing).
    PairSet {
        bike: String,
        keys: Vec<String>,
        armed: bool,
    },
    /// Forget a bike's pairing.
    PairRemove { bike: String },
    /// Arm or disarm theft detection for a paired bike.
    PairArm { bike: String, armed: bool },
    /// Change common parameters of one rule of one camera.
    RuleParams(RuleParams),
}

/// Changes common parameters of one rule of one camera; absent fields stay unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    /// The camera's id in the agent's config.
    pub camera: String,
    /// The rule's id within that camera.
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Minimum detection score, `0..=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Minimum time between two alerts of the rule, `>= 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<i64>,
    /// Local-time windows in the rule config's format; an empty list means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_hours: Option<Vec<String>>,
}

/// On the wire: the [`Command`]'s JSON text and an Ed25519 signature over `b"se-cmd-v1\n"`
/// followed by exactly those bytes (domain-separated, no canonical JSON needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommand {
    /// The command, as JSON text.
    pub command: String,
    /// The 64-byte signature, base64 (standard alphabet, padded).
    pub signature: String,
}

/// Why a command could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command: {size} bytes > {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// Not JSON of the expected shape, or a signature that is not 64 bytes of base64; `detail`
    /// starts with the field concerned.
    #[error("command malformed: {detail}")]
    Malformed { detail: String },
    #[error("signature: does not verify with the hub's key")]
    BadSignature,
    #[error("key: {detail}")]
    BadKey { detail: String },
    #[error("command: schema: version {found} is not supported (this build reads {supported})")]
    UnknownSchema { found: u32, supported: u32 },
    #[error("command invalid: {}", problems.join("; "))]
    Invalid { problems: Vec<String> },
}

impl SignedCommand {
    /// Serialises `command` and signs the bytes.
    pub fn sign(command: &Command, key: &SigningKey) -> Self {
        // Serialising cannot fail: plain structs, string keys, no custom serialiser that errs.
        let text = serde_json::to_string(command).expect("a Command always serialises");
        let signature = key.sign(&signed_bytes(&text));
        Self {
            command: text,
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }

    /// Size limit, signature check, then JSON parse, schema check and [`Command::validate`].
    /// Does NOT check site, seq or age: that needs the agent's state and clock.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Command, CommandError> {
        check_size(self.command.len())?;
        let raw =
            STANDARD
                .decode(self.signature.as_bytes())
                .map_err(|e| CommandError::Malformed {
                    detail: format!("signature: not base64: {e}"),
                })?;
        let bytes: [u8; 64] = raw
            .try_into()
            .map_err(|raw: Vec<u8>| CommandError::Malformed {
                detail: format!("signature: {} bytes, expected 64", raw.len()),
            })?;
        // verify_strict also refuses small-order keys and non-canonical signatures, so one
        // command has exactly one valid signature.
        key.verify_strict(&signed_bytes(&self.command), &Signature::from_bytes(&bytes))
            .map_err(|_| CommandError::BadSignature)?;
        let command = crate::validate::parse_json::<Command>(self.command.as_bytes()).map_err(
            |e| match e {
                crate::validate::ParseError::UnknownSchema { found, supported } => {
                    CommandError::UnknownSchema { found, supported }
                }
                crate::validate::ParseError::Json { detail } => CommandError::Malformed {
                    detail: format!("command.{detail}"),
                },
            },
        )?;
        command.validate().map_err(|e| CommandError::Invalid {
            problems: e.problems,
        })?;
        Ok(command)
    }

    /// Parses the envelope: size limit, then JSON. The signature is checked by [`Self::verify`].
    pub fn from_slice(payload: &[u8]) -> Result<Self, CommandError> {
        check_size(payload.len())?;
        let de = &mut serde_json::Deserializer::from_slice(payload);
        serde_path_to_error::deserialize(de).map_err(|e| CommandError::Malformed {
            detail: crate::validate::json_detail(&e),
        })
    }
}

fn check_size(size: usize) -> Result<(), CommandError> {
    if size > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge {
            size,
            max: MAX_COMMAND_BYTES,
        });
    }
    Ok(())
}

fn signed_bytes(command: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + command.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(command.as_bytes());
    msg
}

/// 32 bytes from base64; surrounding whitespace (a key file's newline) is ignored.
fn key_bytes(what: &str, text: &str) -> Result<[u8; 32], CommandError> {
    let raw = STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|e| CommandError::BadKey {
            detail: format!("{what}: not base64: {e}"),
        })?;
    raw.try_into().map_err(|raw: Vec<u8>| CommandError::BadKey {
        detail: format!("{what}: {} bytes, expected 32", raw.len()),
    })
}

/// The hub's public key from base64 of its 32 bytes (what [`encode_verifying_key`] writes).
pub fn parse_verifying_key(text: &str) -> Result<VerifyingKey, CommandError> {
    let bytes = key_bytes("public key", text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| CommandError::BadKey {
        detail: "public key: not a valid Ed25519 point".to_string(),
    })
}

/// Base64 (standard, padded) of the public key's 32 bytes.
pub fn encode_verifying_key(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// The hub's signing key from base64 of its 32-byte seed (what [`encode_signing_key`] writes).
pub fn signing_key_from_base64(text: &str) -> Result<SigningKey, CommandError> {
    Ok(SigningKey::from_bytes(&key_bytes("signing key", text)?))
}

/// Base64 (standard, padded) of the signing key's 32-byte seed. This is the secret: store it
/// like a password.
pub fn encode_signing_key(key: &SigningKey) -> String {
    STANDARD.encode(key.to_bytes())
}

/// The agent's answer to a command, on `{prefix}/site/{site}/cmd/reply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandReply {
    /// Wire schema version ([`crate::SCHEMA_VERSION`]).
    pub schema: u32,
    /// The replying site.
    pub site: String,
    /// The command's `seq`; `None` when the command could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// What happened.
    pub outcome: ReplyOutcome,
    /// Why, for anything but `applied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the agent replied.
    pub time: UtcMillis,
}

/// What the agent did with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyOutcome {
    /// Done.
    Applied,
    /// The signature did not verify (or the envelope could not be read).
    BadSignature,
    /// `seq` was not above the last applied one.
    Replayed,
    /// Too old, or from the future.
    Stale,
    /// Meant for another site.
    WrongSite,
    /// Readable and signed, but not a valid command.
    Invalid,
    /// Valid, but applying it failed on the agent.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SCHEMA_VERSION;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn command() -> Command {
        Command {
            schema: SCHEMA_VERSION,
            site: "site-1".into(),
            seq: 7,
            issued_at: UtcMillis(1_795_334_400_000),
            body: CommandBody::WatchAdd {
                tag: "ABCD".into(),
                case_ref: "case-1".into(),
                note: String::new(),
            },
        }
    }

    #[test]
    fn signed_command_round_trips_through_the_wire() {
        let k = key(1);
        let signed = SignedCommand::sign(&command(), &k);
        let wire = serde_json::to_vec(&signed).unwrap();
        let back = SignedCommand::from_slice(&wire).unwrap();
        assert_eq!(back.verify(&k.verifying_key()).unwrap(), command());
    }

    #[test]
    fn a_tampered_byte_fails() {
        let k = key(1);
        let mut signed = SignedCommand::sign(&command(), &k);
        signed.command = signed.command.replace("\"seq\":7", "\"seq\":8");
        assert_eq!(
            signed.verify(&k.verifying_key()),
            Err(CommandError::BadSignature)
        );
    }

    #[test]
    fn another_keys_signature_fails() {
        let signed = SignedCommand::sign(&command(), &key(2));
        assert_eq!(
            signed.verify(&key(1).verifying_key()),
            Err(CommandError::BadSignature)
        );
    }

    #[test]
    fn a_bad_signature_encoding_names_the_signature() {
        let k = key(1);
        let mut signed = SignedCommand::sign(&command(), &k);
        for bad in ["not base64!".to_string(), STANDARD.encode([0u8; 63])] {
            signed.signature = bad;
            match signed.verify(&k.verifying_key()) {
                Err(CommandError::Malformed { detail }) => {
                    assert!(detail.starts_with("signature:"), "{detail}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn oversized_payloads_are_refused_before_parsing() {
        let payload = vec![b' '; 70 * 1024];
        assert_eq!(
            SignedCommand::from_slice(&payload),
            Err(CommandError::TooLarge {
                size: 70 * 1024,
                max: MAX_COMMAND_BYTES
            })
        );
        let huge = SignedCommand {
            command: "x".repeat(70 * 1024),
            signature: String::new(),
        };
        assert!(matches!(
            huge.verify(&key(1).verifying_key()),
            Err(CommandError::TooLarge { .. })
        ));
    }

    #[test]
    fn signed_but_wrong_commands_are_reported_by_kind() {
        let k = key(1);
        let sign_text = |text: &str| SignedCommand {
            command: text.to_string(),
            signature: STANDARD.encode(k.sign(&signed_bytes(text)).to_bytes()),
        };
        let unknown = sign_text(r#"{"schema":9,"whatever":true}"#);
        assert_eq!(
            unknown.verify(&k.verifying_key()),
            Err(CommandError::UnknownSchema {
                found: 9,
                supported: SCHEMA_VERSION
            })
        );
        let text = serde_json::to_string(&command()).unwrap();
        let malformed = sign_text(&text.replace("\"case_ref\"", "\"case\""));
        match malformed.verify(&k.verifying_key()) {
            Err(CommandError::Malformed { detail }) => {
                assert!(detail.starts_with("command.body"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        let invalid = sign_text(&text.replace("site-1", "a/b").replace("ABCD", ""));
        match invalid.verify(&k.verifying_key()) {
            Err(CommandError::Invalid { problems }) => {
                assert_eq!(problems.len(), 2, "{problems:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let k = key(3);
        let text = encode_signing_key(&k);
        assert_eq!(
            signing_key_from_base64(&text).unwrap().to_bytes(),
            k.to_bytes()
        );
        let public = encode_verifying_key(&k.verifying_key());
        assert_eq!(
            parse_verifying_key(&format!("{public}\n")).unwrap(),
            k.verifying_key()
        );
        for bad in ["", "!!", &STANDARD.encode([0u8; 31])] {
            assert!(
                matches!(parse_verifying_key(bad), Err(CommandError::BadKey { .. })),
                "{bad}"
            );
            assert!(
                matches!(
                    signing_key_from_base64(bad),
                    Err(CommandError::BadKey { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn body_is_tagged_by_op() {
        let body = CommandBody::RuleParams(RuleParams {
            camera: "cam1".into(),
            rule: "gate".into(),
            severity: None,
            threshold: Some(0.5),
            cooldown_ms: None,
            active_hours: None,
        });
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"op":"rule_params","camera":"cam1","rule":"gate","threshold":0.5}"#
        );
        assert_eq!(serde_json::from_str::<CommandBody>(&json).unwrap(), body);
        let note_left_out = r#"{"op":"watch_add","tag":"A","case_ref":"c"}"#;
        assert!(matches!(
            serde_json::from_str::<CommandBody>(note_left_out).unwrap(),
            CommandBody::WatchAdd { note, .. } if note.is_empty()
        ));
        for unknown in [
            r#"{"op":"watch_remove","tag":"A","extra":1}"#,
            r#"{"op":"rule_params","camera":"c","rule":"r","extra":1}"#,
            r#"{"op":"reboot"}"#,
        ] {
            assert!(
                serde_json::from_str::<CommandBody>(unknown).is_err(),
                "{unknown}"
            );
        }
    }
}
