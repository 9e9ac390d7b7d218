//! Work-app messages: each notification round also goes, personally, to the notified people
//! whose roster `channels` include `work_app` ([`crate::workapp`]), recorded on the case as a
//! `work_app` delivery (pending, then delivered with WeCom's msgid or failed).

use super::*;
use crate::push::Notification;
use crate::roster::Channel;
use crate::workapp::{CHANNEL, Card, WorkJob};

impl Dispatcher {
    /// Queues the work-app message of notification `n` for each of `persons` who wants one.
    /// Returns whether the case changed.
    pub(super) fn work_app_round(
        &self,
        case: &mut Case,
        persons: &[String],
        n: &Notification,
        now: UtcMillis,
    ) -> bool {
        let Some(channel) = &self.work_app else {
            return false;
        };
        let roster = self.p.roster.current();
        let mut changed = false;
        for person in persons {
            let Some(p) = roster.person(person).filter(|p| p.wants(Channel::WorkApp)) else {
                continue;
            };
            let job = WorkJob {
                case: case.id.clone(),
                person: person.clone(),
                step: n.step,
                phone: p.phone().to_owned(),
                card: Card {
                    title: n.title.clone(),
                    description: n.details(),
                    url: n.url.clone(),
                },
            };
            let outcome = if channel.enqueue(job) {
                DeliveryOutcome::Pending
            } else {
                DeliveryOutcome::Failed {
                    error: "work app queue full; dropped".into(),
                }
            };
            changed |= case.record_delivery(
                DeliveryTarget::Person(person.clone()),
                CHANNEL,
                n.step,
                outcome,
                now,
            );
        }
        changed
    }
}
