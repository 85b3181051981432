//! Retained messages: the last retained PUBLISH per topic and vhost, handed to new
//! subscribers whose filter matches (wildcard filters too, unlike RabbitMQ).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use warren_mqtt::QoS;

use crate::core::Message;

/// One retained message.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub(crate) message: Arc<Message>,
    pub(crate) qos: QoS,
    pub(crate) expires_at: Option<Instant>,
}

/// Retained messages of every vhost.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    by_vhost: RwLock<HashMap<String, HashMap<String, Retained>>>,
}

impl RetainedStore {
    /// Stores (or, with `None`, clears) the retained message of `topic`.
    pub(crate) fn set(&self, vhost: &str, topic: &str, retained: Option<Retained>) {
        let mut by_vhost = self.by_vhost.write();
        match retained {
            Some(retained) => {
                by_vhost
                    .entry(vhost.to_string())
                    .or_default()
                    .insert(topic.to_string(), retained);
            }
            None => {
                if let Some(topics) = by_vhost.get_mut(vhost) {
                    topics.remove(topic);
                }
            }
        }
    }

    /// How many retained messages there are, and their body bytes.
    pub(crate) fn summary(&self) -> (u64, u64) {
        let by_vhost = self.by_vhost.read();
        let mut count = 0u64;
        let mut bytes = 0u64;
        for topics in by_vhost.values() {
            count += topics.len() as u64;
            bytes += topics
                .values()
                .map(|r| r.message.body.len() as u64)
                .sum::<u64>();
        }
        (count, bytes)
    }

    /// Every retained message, as (vhost, topic, message).
    pub(crate) fn entries(&self) -> Vec<(String, String, Retained)> {
        self.by_vhost
            .read()
            .iter()
            .flat_map(|(vhost, topics)| {
                topics
                    .iter()
                    .map(move |(topic, r)| (vhost.clone(), topic.clone(), r.clone()))
            })
            .collect()
    }

    /// Every live retained message whose topic matches `filter`, as (topic, message).
    pub(crate) fn matching(&self, vhost: &str, filter: &str) -> Vec<(String, Retained)> {
        let now = Instant::now();
        let by_vhost = self.by_vhost.read();
        let Some(topics) = by_vhost.get(vhost) else {
            return Vec::new();
        };
        topics
            .iter()
            .filter(|(topic, retained)| {
                retained.expires_at.is_none_or(|at| at > now)
                    && warren_mqtt::topic::matches(filter, topic)
            })
            .map(|(topic, retained)| (topic.clone(), retained.clone()))
            .collect()
    }
}
