//! [`CommandGate`]: whether a payload on the command topic is a command this agent should
//! apply. Pure: no I/O, the time comes in as an argument.
//!
//! Checks, in order, each refusal naming what failed:
//! 1. the envelope parses and the signature verifies with the hub's key (`bad_signature`);
//!    the signed JSON then parses and passes the wire validation (`invalid`);
//! 2. the command is for this site (`wrong_site`);
//! 3. its `seq` is above the last applied one (`replayed`): a captured command cannot be
//!    re-published to undo a later change, since the broker delivers at least once and anyone
//!    on it could repeat a signed message;
//! 4. it was issued at most `max_age_ms` ago and at most `max_future_ms` ahead (`stale`): a
//!    command held back (or signed ahead of time) cannot be played later;
//! 5. its body makes sense to this agent: tag ids are hex, pairings consistent, active hours
//!    parse (`invalid`). Whether the camera and rule exist is for the core to say.

use protocol::{Command, CommandBody, CommandError, CommandReply, ReplyOutcome, SignedCommand};

use crate::rules::TimeWindow;
use crate::tags::TagRuleUpdate;
use crate::tags::config::{pairing_problems, watch_entry_problems};
use crate::tags::read::normalize_tag;

/// Why a command was not accepted: what to reply and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The command's seq, when it could be read from signed text; `None` otherwise (an
    /// unverified seq is not echoed: anyone can write one).
    pub seq: Option<u64>,
    /// The reply's outcome.
    pub outcome: ReplyOutcome,
    /// What exactly was wrong, for the reply and the log.
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("command")?;
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        write!(
            f,
            " refused ({}): {}",
            outcome_name(self.outcome),
            self.detail
        )
    }
}

impl std::error::Error for Refusal {}

/// The outcome as it is spelt on the wire, for messages.
fn outcome_name(outcome: ReplyOutcome) -> &'static str {
    match outcome {
        ReplyOutcome::Applied => "applied",
        ReplyOutcome::BadSignature => "bad_signature",
        ReplyOutcome::Replayed => "replayed",
        ReplyOutcome::Stale => "stale",
        ReplyOutcome::WrongSite => "wrong_site",
        ReplyOutcome::Invalid => "invalid",
        ReplyOutcome::Failed => "failed",
    }
}

impl Refusal {
    fn new(seq: Option<u64>, outcome: ReplyOutcome, detail: impl Into<String>) -> Self {
        Self {
            seq,
            outcome,
            detail: detail.into(),
        }
    }

    /// The reply to send on `.../cmd/reply`.
    pub fn reply(&self, site: &str, now_ms: i64) -> CommandReply {
        CommandReply {
            schema: protocol::SCHEMA_VERSION,
            site: site.to_string(),
            seq: self.seq,
            outcome: self.outcome,
            detail: Some(self.detail.clone()),
            time: protocol::UtcMillis(now_ms),
        }
    }
}

/// The checks every command passes before the agent applies it, and the last applied seq they
/// compare against.
#[derive(Debug, Clone)]
pub struct CommandGate {
    site: String,
    key: ed25519_dalek::VerifyingKey,
    max_age_ms: i64,
    max_future_ms: i64,
    last_seq: Option<u64>,
}

impl CommandGate {
    /// A gate for commands to `site`, signed with the key whose public half is `key`.
    /// `last_seq` is the last applied seq (from [`super::CommandStore::last_seq`]), so replays
    /// stay refused across restarts.
    pub fn new(
        site: String,
        key: ed25519_dalek::VerifyingKey,
        max_age_ms: i64,
        max_future_ms: i64,
        last_seq: Option<u64>,
    ) -> Self {
        Self {
            site,
            key,
            max_age_ms,
            max_future_ms,
            last_seq,
        }
    }

    /// The last seq accepted.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Checks one payload from the command topic at `now_ms` (ms since the epoch). Does not
    /// change the gate: call [`Self::accepted`] once the command is taken.
    pub fn check(&self, payload: &[u8], now_ms: i64) -> Result<Command, Refusal> {
        let signed = SignedCommand::from_slice(payload)
            .map_err(|e| Refusal::new(None, ReplyOutcome::BadSignature, e.to_string()))?;
        let command = signed
            .verify(&self.key)
            .map_err(|e| verify_refusal(&signed, e))?;
        let seq = Some(command.seq);
        if command.site != self.site {
            return Err(Refusal::new(
                seq,
                ReplyOutcome::WrongSite,
                format!(
                    "site: the command is for {:?}, this is {:?}",
                    command.site, self.site
                ),
            ));
        }
        if let Some(last) = self.last_seq
            && command.seq <= last
        {
            return Err(Refusal::new(
                seq,
                ReplyOutcome::Replayed,
                format!("seq: {} is not above the last applied {last}", command.seq),
            ));
        }
        let issued = command.issued_at.0;
        let age = now_ms.saturating_sub(issued);
        if age > self.max_age_ms {
            return Err(Refusal::new(
                seq,
                ReplyOutcome::Stale,
                format!(
                    "issued_at: {} is {age} ms old, more than the {} ms allowed",
                    command.issued_at, self.max_age_ms
                ),
            ));
        }
        let ahead = issued.saturating_sub(now_ms);
        if ahead > self.max_future_ms {
            return Err(Refusal::new(
                seq,
                ReplyOutcome::Stale,
                format!(
                    "issued_at: {} is {ahead} ms ahead of this agent's clock, more than the {} \
                     ms allowed",
                    command.issued_at, self.max_future_ms
                ),
            ));
        }
        let problems = body_problems(&command.body);
        if !problems.is_empty() {
            return Err(Refusal::new(
                seq,
                ReplyOutcome::Invalid,
                problems.join("; "),
            ));
        }
        Ok(command)
    }

    /// Records that the command `seq` was taken: from now on it and every lower seq are
    /// replays.
    pub fn accepted(&mut self, seq: u64) {
        self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
    }
}

/// Maps a verification error to a refusal. Errors before the signature verified say nothing
/// trustworthy; errors after it are about signed text, whose seq is worth echoing.
fn verify_refusal(signed: &SignedCommand, error: CommandError) -> Refusal {
    let detail = error.to_string();
    match error {
        CommandError::BadSignature | CommandError::TooLarge { .. } => {
            Refusal::new(None, ReplyOutcome::BadSignature, detail)
        }
        // The signature's own encoding is checked before verifying; protocol names the field
        // first in `detail`, which is how the two kinds of Malformed are told apart.
        CommandError::Malformed { detail: d } if d.starts_with("signature") => {
            Refusal::new(None, ReplyOutcome::BadSignature, detail)
        }
        CommandError::Malformed { .. }
        | CommandError::UnknownSchema { .. }
        | CommandError::Invalid { .. } => {
            Refusal::new(signed_seq(signed), ReplyOutcome::Invalid, detail)
        }
        // Keys are parsed when the gate is built; verify never reports one.
        CommandError::BadKey { .. } => Refusal::new(None, ReplyOutcome::Failed, detail),
    }
}

/// The `seq` of signed command text that did not parse as a whole, if it has one.
fn signed_seq(signed: &SignedCommand) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(&signed.command)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// What the agent requires of a body beyond the wire validation, each as `body.field: problem`.
/// The tag checks are the tag rules' own, so the gate refuses what the core would refuse.
fn body_problems(body: &CommandBody) -> Vec<String> {
    let field = |(f, m): (String, String)| format!("body.{f}: {m}");
    match super::tag_update(body) {
        Some(TagRuleUpdate::Watch(entry)) => watch_entry_problems(&entry)
            .into_iter()
            .map(field)
            .collect(),
        Some(TagRuleUpdate::Pair(pairing)) => {
            pairing_problems(&pairing).into_iter().map(field).collect()
        }
        Some(TagRuleUpdate::Unwatch { tag }) => tag_problem("tag", &tag).into_iter().collect(),
        Some(TagRuleUpdate::Unpair { bike } | TagRuleUpdate::Arm { bike, .. }) => {
            tag_problem("bike", &bike).into_iter().collect()
        }
        None => match body {
            CommandBody::RuleParams(p) => p
                .active_hours
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, h)| {
                    TimeWindow::parse(h)
                        .err()
                        .map(|e| format!("body.active_hours[{i}]: {e}"))
                })
                .collect(),
            _ => Vec::new(),
        },
    }
}

fn tag_problem(field: &str, tag: &str) -> Option<String> {
    normalize_tag(tag)
        .err()
        .map(|e| format!("body.{field}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CommandBody, RuleParams, SigningKey, UtcMillis};

    const NOW: i64 = 1_800_000_000_000;
    const SITE: &str = "site-1";

    fn hub_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn gate(last_seq: Option<u64>) -> CommandGate {
        CommandGate::new(
            SITE.into(),
            hub_key().verifying_key(),
            300_000,
            30_000,
            last_seq,
        )
    }

    fn command(seq: u64, issued_at: i64, body: CommandBody) -> Command {
        Command {
            schema: protocol::SCHEMA_VERSION,
            site: SITE.into(),
            seq,
            issued_at: UtcMillis(issued_at),
            body,
        }
    }

    fn watch(tag: &str) -> CommandBody {
        CommandBody::WatchAdd {
            tag: tag.into(),
            case_ref: "WD-1".into(),
            note: String::new(),
        }
    }

    fn wire(command: &Command, key: &SigningKey) -> Vec<u8> {
        serde_json::to_vec(&SignedCommand::sign(command, key)).expect("serialises")
    }

    fn refusal(gate: &CommandGate, payload: &[u8]) -> Refusal {
        gate.check(payload, NOW).expect_err("accepted")
    }

    #[test]
    fn a_good_command_passes_and_then_counts_as_a_replay() {
        let mut g = gate(Some(4));
        let c = command(5, NOW - 1_000, watch("ab12"));
        assert_eq!(g.check(&wire(&c, &hub_key()), NOW), Ok(c.clone()));
        g.accepted(5);
        assert_eq!(g.last_seq(), Some(5));
        let r = refusal(&g, &wire(&c, &hub_key()));
        assert_eq!((r.seq, r.outcome), (Some(5), ReplyOutcome::Replayed));
    }

    #[test]
    fn a_bad_signature_is_refused_without_echoing_the_unverified_seq() {
        let g = gate(None);
        let c = command(5, NOW, watch("ab12"));
        let r = refusal(&g, &wire(&c, &SigningKey::from_bytes(&[8; 32])));
        assert_eq!((r.seq, r.outcome), (None, ReplyOutcome::BadSignature));
        let r = refusal(&g, b"{\"command\": 1}");
        assert_eq!(r.outcome, ReplyOutcome::BadSignature, "{r}");
        let mut signed = SignedCommand::sign(&c, &hub_key());
        signed.signature = "AAAA".into();
        let r = refusal(&g, &serde_json::to_vec(&signed).expect("serialises"));
        assert_eq!(r.outcome, ReplyOutcome::BadSignature, "{r}");
    }

    #[test]
    fn replayed_seqs_are_refused() {
        let g = gate(Some(9));
        for seq in [1, 9] {
            let r = refusal(&g, &wire(&command(seq, NOW, watch("ab")), &hub_key()));
            assert_eq!((r.seq, r.outcome), (Some(seq), ReplyOutcome::Replayed));
            assert!(r.detail.contains("last applied 9"), "{r}");
        }
    }

    #[test]
    fn old_and_future_commands_are_stale_at_the_limits_exactly() {
        let g = gate(None);
        let at = |issued| g.check(&wire(&command(1, issued, watch("ab")), &hub_key()), NOW);
        assert!(at(NOW - 300_000).is_ok(), "exactly max age");
        assert!(at(NOW + 30_000).is_ok(), "exactly max future");
        for issued in [NOW - 300_001, NOW + 30_001] {
            let r = at(issued).expect_err("accepted");
            assert_eq!((r.seq, r.outcome), (Some(1), ReplyOutcome::Stale), "{r}");
        }
    }

    #[test]
    fn a_command_for_another_site_is_refused() {
        let g = gate(None);
        let mut c = command(1, NOW, watch("ab"));
        c.site = "site-2".into();
        let r = refusal(&g, &wire(&c, &hub_key()));
        assert_eq!((r.seq, r.outcome), (Some(1), ReplyOutcome::WrongSite));
        assert!(r.detail.contains("site-2"), "{r}");
    }

    #[test]
    fn invalid_bodies_are_refused_with_every_problem() {
        let g = gate(None);
        let pair = CommandBody::PairSet {
            bike: "b1".into(),
            keys: vec!["B1".into(), "zz".into()],
            armed: true,
        };
        let r = refusal(&g, &wire(&command(3, NOW, pair), &hub_key()));
        assert_eq!((r.seq, r.outcome), (Some(3), ReplyOutcome::Invalid));
        assert_eq!(
            r.detail,
            "body.keys[0]: B1 is the bike's own tag; body.keys[1]: contains 'z'; a tag id is hex digits"
        );
        let params = CommandBody::RuleParams(RuleParams {
            camera: "cam-1".into(),
            rule: "cordon".into(),
            severity: None,
            threshold: None,
            cooldown_ms: None,
            active_hours: Some(vec!["20:00-06:00".into(), "late".into()]),
        });
        let r = refusal(&g, &wire(&command(4, NOW, params), &hub_key()));
        assert_eq!(r.outcome, ReplyOutcome::Invalid);
        assert!(r.detail.starts_with("body.active_hours[1]:"), "{r}");
        // Rejected by the wire validation inside verify: the signed seq is still echoed.
        let r = refusal(&g, &wire(&command(5, NOW, watch("")), &hub_key()));
        assert_eq!((r.seq, r.outcome), (Some(5), ReplyOutcome::Invalid), "{r}");
    }

    #[test]
    fn a_refusal_becomes_a_reply_with_its_seq_outcome_and_detail() {
        let r = Refusal::new(Some(3), ReplyOutcome::Stale, "too old");
        let reply = r.reply(SITE, NOW);
        assert_eq!(reply.seq, Some(3));
        assert_eq!(reply.outcome, ReplyOutcome::Stale);
        assert_eq!(reply.detail.as_deref(), Some("too old"));
        assert_eq!(reply.time, UtcMillis(NOW));
        assert_eq!(r.to_string(), "command seq 3 refused (stale): too old");
        let ok = super::super::applied_reply(SITE, 3, NOW);
        assert_eq!((ok.outcome, ok.detail), (ReplyOutcome::Applied, None));
    }
}
