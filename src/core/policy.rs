//! Policies as RabbitMQ has them: a name, a pattern on queue or exchange names, what they
//! apply to, a priority and a definition (`message-ttl`, `max-length`, ...). The policy with
//! the highest priority whose pattern matches an object is its effective policy; queues and
//! exchanges hold it, and get a new one whenever policies change.

use std::sync::Arc;

use fancy_regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::error::CoreError;

/// The definition keys warren accepts (RabbitMQ's names). The queue-features work gives
/// each its behaviour; here they are validated, stored and handed to the objects.
pub const POLICY_KEYS: &[&str] = &[
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "overflow",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "alternate-exchange",
    "delivery-limit",
    "max-priority",
    "queue-mode",
    "queue-master-locator",
    // RabbitMQ 3.x keys for features warren does not have (mirroring, federation, ...):
    // accepted and stored, so definitions from RabbitMQ import, and reported as ignored.
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-version",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "federation-upstream",
    "federation-upstream-set",
    "dead-letter-strategy",
    "single-active-consumer",
    "initial-cluster-size",
    "queue-leader-locator",
    "max-age",
    "stream-max-segment-size-bytes",
    "consumer-timeout",
];

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    /// Queues only.
    Queues,
    /// Exchanges only.
    Exchanges,
    /// Both.
    All,
}

impl ApplyTo {
    /// RabbitMQ's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }

    /// Parses RabbitMQ's word.
    pub fn parse(text: &str) -> Option<ApplyTo> {
        match text {
            "queues" => Some(ApplyTo::Queues),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }
}

/// A policy as definitions and the management API write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDefinition {
    /// Its vhost.
    #[serde(default)]
    pub vhost: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// The regular expression on object names.
    pub pattern: String,
    /// `queues`, `exchanges` or `all`.
    #[serde(rename = "apply-to", default = "default_apply_to")]
    pub apply_to: String,
    /// The keys it sets.
    pub definition: Map<String, Json>,
    /// Higher wins when several match.
    #[serde(default)]
    pub priority: i64,
}

fn default_apply_to() -> String {
    "all".to_string()
}

/// A validated policy.
#[derive(Debug)]
pub struct Policy {
    /// What it was made from.
    pub definition: PolicyDefinition,
    apply_to: ApplyTo,
    pattern: Regex,
}

impl Policy {
    /// Validates a definition: the pattern compiles, `apply-to` is known, every key is one
    /// of [`POLICY_KEYS`] with a value of the right type.
    pub fn new(definition: PolicyDefinition) -> Result<Arc<Policy>, CoreError> {
        let invalid = |reason: String| CoreError::PreconditionFailed(reason);
        let pattern = Regex::new(&definition.pattern).map_err(|error| {
            invalid(format!("invalid pattern '{}': {error}", definition.pattern))
        })?;
        let apply_to = ApplyTo::parse(&definition.apply_to).ok_or_else(|| {
            invalid(format!(
                "'{}' is not a valid apply-to value (queues, exchanges, all)",
                definition.apply_to
            ))
        })?;
        if definition.definition.is_empty() {
            return Err(invalid("a policy definition must not be empty".into()));
        }
        for (key, value) in &definition.definition {
            if !POLICY_KEYS.contains(&key.as_str()) {
                // RabbitMQ's wording, Erlang terms included: strings as <<"...">>.
                let term = match value {
                    Json::String(text) => format!("<<\"{text}\">>"),
                    other => other.to_string(),
                };
                return Err(invalid(format!(
                    "Validation failed\n\n[{{<<\"{key}\">>,{term}}}] are not recognised policy settings\n"
                )));
            }
            let well_typed = match key.as_str() {
                "message-ttl" | "expires" | "max-length" | "max-length-bytes"
                | "delivery-limit" | "max-priority" => value.as_u64().is_some(),
                "overflow" => matches!(
                    value.as_str(),
                    Some("drop-head" | "reject-publish" | "reject-publish-dlx")
                ),
                "dead-letter-exchange"
                | "dead-letter-routing-key"
                | "alternate-exchange"
                | "queue-mode"
                | "queue-master-locator" => value.is_string(),
                _ => true,
            };
            if !well_typed {
                return Err(invalid(format!(
                    "Validation failed\n\n{value} is not a valid value for {key}"
                )));
            }
        }
        Ok(Arc::new(Policy {
            definition,
            apply_to,
            pattern,
        }))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Whether it governs an object of this kind with this name.
    pub fn applies(&self, to_queue: bool, name: &str) -> bool {
        let kind = match self.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => to_queue,
            ApplyTo::Exchanges => !to_queue,
        };
        // Patterns are PCRE-like, as RabbitMQ's; one that exceeds the backtracking limit on this
        // name does not match.
        kind && self.pattern.is_match(name).unwrap_or(false)
    }

    /// One key of its definition.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.definition.definition.get(key)
    }
}

/// The effective policy among `policies` for an object: the highest priority match (the
/// first by name among equals, so the choice is stable).
pub fn effective(policies: &[Arc<Policy>], to_queue: bool, name: &str) -> Option<Arc<Policy>> {
    policies
        .iter()
        .filter(|policy| policy.applies(to_queue, name))
        .max_by(|a, b| {
            a.definition
                .priority
                .cmp(&b.definition.priority)
                .then_with(|| b.definition.name.cmp(&a.definition.name))
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, pattern: &str, priority: i64, apply_to: &str) -> Arc<Policy> {
        let mut definition = Map::new();
        definition.insert("message-ttl".into(), Json::from(1000));
        Policy::new(PolicyDefinition {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to: apply_to.into(),
            definition,
            priority,
        })
        .unwrap()
    }

    #[test]
    fn the_highest_priority_match_wins() {
        let policies = vec![
            policy("low", "^ttl", 1, "queues"),
            policy("high", "^ttl\\.x", 5, "all"),
            policy("exchanges", ".*", 10, "exchanges"),
        ];
        assert_eq!(effective(&policies, true, "ttl.x").unwrap().name(), "high");
        assert_eq!(effective(&policies, true, "ttl.y").unwrap().name(), "low");
        assert_eq!(
            effective(&policies, false, "ttl.y").unwrap().name(),
            "exchanges"
        );
        assert!(effective(&policies, true, "other").is_none());
    }

    #[test]
    fn bad_definitions_are_refused() {
        let mut definition = Map::new();
        definition.insert("no-such-key".into(), Json::from(1));
        let refused = Policy::new(PolicyDefinition {
            vhost: "/".into(),
            name: "p".into(),
            pattern: ".*".into(),
            apply_to: "queues".into(),
            definition,
            priority: 0,
        });
        assert!(refused.is_err());
        let mut definition = Map::new();
        definition.insert("max-length".into(), Json::from("ten"));
        assert!(Policy::new(PolicyDefinition {
            vhost: "/".into(),
            name: "p".into(),
            pattern: ".*".into(),
            apply_to: "queues".into(),
            definition,
            priority: 0,
        })
        .is_err());
    }
}
