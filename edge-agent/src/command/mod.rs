//! Hub commands on the agent's side: checking them, remembering them, re-applying them.
//!
//! ```text
//! payload ──▶ CommandGate::check ──Command──▶ agent core applies (TagRules::apply,
//!   (gate.rs, pure: signature,                 Engine::update_params)
//!    site, seq, age, body)                          │ applied
//!        │ Refusal ──▶ reply                        ▼
//!                                   CommandStore::record (store.rs, sled: Overrides + last seq,
//!                                                         one batch, flushed)
//! start-up: CommandStore::open ──Overrides::apply_to(tag rules, cameras' rules)──▶ config as
//!           last changed
//!           CommandStore::last_seq ──▶ CommandGate::new (replays stay refused across restarts)
//! ```
//!
//! - [`gate`]: [`CommandGate`], the pure checks, and the [`Refusal`] they produce.
//! - [`store`]: [`CommandStore`], what the hub changed and the last applied seq, on disk.
//! - [`overrides`]: [`Overrides`], the latest state per changed key (not a journal), and how it
//!   is laid over the configuration at start-up. It is handed the tag rules and the cameras'
//!   rules, not the agent's whole config, so `command` does not depend on `agent`.
//!
//! The conversions from wire bodies to the agent's own update types live here ([`tag_update`],
//! [`rule_update`]) so that `tags` and `rules` do not depend on the wire format of commands.

pub mod gate;
pub mod overrides;
pub mod store;

pub use gate::{CommandGate, Refusal};
pub use overrides::Overrides;
pub use store::{CommandStore, CommandStoreError};

use protocol::{CommandBody, CommandReply, ReplyOutcome, RuleParams, UtcMillis};

use crate::rules::RuleUpdate;
use crate::tags::{Pairing, TagRuleUpdate, WatchEntry};

/// The tag-rule change a command body asks for, or `None` for a body that is not about tags
/// (rule parameters).
pub fn tag_update(body: &CommandBody) -> Option<TagRuleUpdate> {
    match body {
        CommandBody::WatchAdd {
            tag,
            case_ref,
            note,
        } => Some(TagRuleUpdate::Watch(WatchEntry {
            tag: tag.clone(),
            case_ref: case_ref.clone(),
            note: note.clone(),
        })),
        CommandBody::WatchRemove { tag } => Some(TagRuleUpdate::Unwatch { tag: tag.clone() }),
        CommandBody::PairSet { bike, keys, armed } => Some(TagRuleUpdate::Pair(Pairing {
            bike: bike.clone(),
            keys: keys.clone(),
            armed: *armed,
        })),
        CommandBody::PairRemove { bike } => Some(TagRuleUpdate::Unpair { bike: bike.clone() }),
        CommandBody::PairArm { bike, armed } => Some(TagRuleUpdate::Arm {
            bike: bike.clone(),
            armed: *armed,
        }),
        CommandBody::RuleParams(_) => None,
    }
}

/// The camera a rule-parameter command is for, and the change for that camera's engine.
pub fn rule_update(params: &RuleParams) -> (String, RuleUpdate) {
    let update = RuleUpdate {
        rule: params.rule.clone(),
        severity: params.severity,
        threshold: params.threshold,
        cooldown_ms: params.cooldown_ms,
        active_hours: params.active_hours.clone(),
    };
    (params.camera.clone(), update)
}

/// The reply to a command that was applied (and persisted).
pub fn applied_reply(site: &str, seq: u64, now_ms: i64) -> CommandReply {
    CommandReply {
        schema: protocol::SCHEMA_VERSION,
        site: site.to_string(),
        seq: Some(seq),
        outcome: ReplyOutcome::Applied,
        detail: None,
        time: UtcMillis(now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_and_pair_bodies_map_to_tag_updates_and_rule_params_do_not() {
        let watch = CommandBody::WatchAdd {
            tag: "ab".into(),
            case_ref: "WD-1".into(),
            note: "red".into(),
        };
        assert_eq!(
            tag_update(&watch),
            Some(TagRuleUpdate::Watch(WatchEntry {
                tag: "ab".into(),
                case_ref: "WD-1".into(),
                note: "red".into(),
            }))
        );
        let arm = CommandBody::PairArm {
            bike: "b1".into(),
            armed: false,
        };
        assert_eq!(
            tag_update(&arm),
            Some(TagRuleUpdate::Arm {
                bike: "b1".into(),
                armed: false
            })
        );
        let params = RuleParams {
            camera: "cam-1".into(),
            rule: "cordon".into(),
            severity: None,
            threshold: Some(0.6),
            cooldown_ms: None,
            active_hours: Some(vec![]),
        };
        assert_eq!(tag_update(&CommandBody::RuleParams(params.clone())), None);
        let (camera, update) = rule_update(&params);
        assert_eq!(camera, "cam-1");
        assert_eq!(
            update,
            RuleUpdate {
                rule: "cordon".into(),
                threshold: Some(0.6),
                active_hours: Some(vec![]),
                ..RuleUpdate::default()
            }
        );
    }
}
