//! Definitions export and import: the whole broker (users, vhosts, permissions, topic
//! permissions, policies, exchanges, queues, bindings) or one vhost, in RabbitMQ's format, so
//! a definitions file moves between RabbitMQ and warren in either direction.

use serde_json::{Map, Value as Json};

use super::definitions::{FullDefinitions, VhostDefinition};
use super::queue::ConnectionId;
use super::table::Table;
use super::{Core, ExchangeDeclare, PolicyDefinition, QueueDeclare, VhostMetadata};

/// The RabbitMQ version warren's definitions say they come from: the format is 3.10's.
const FORMAT_VERSION: &str = "3.10.8";

/// Orders a vhost's topology by name, so exports are stable.
fn sort_topology(topology: &mut super::definitions::Definitions) {
    topology.queues.sort_by(|a, b| a.name.cmp(&b.name));
    topology.exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    topology.bindings.sort_by(|a, b| {
        (
            &a.source,
            &a.destination_type,
            &a.destination,
            &a.routing_key,
        )
            .cmp(&(
                &b.source,
                &b.destination_type,
                &b.destination,
                &b.routing_key,
            ))
    });
}

impl Core {
    /// Every definition, as `GET /api/definitions` answers.
    pub fn export_definitions(&self) -> FullDefinitions {
        let mut vhosts = self.vhosts();
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut definitions = FullDefinitions {
            rabbit_version: Some(FORMAT_VERSION.to_string()),
            rabbitmq_version: Some(FORMAT_VERSION.to_string()),
            product_name: Some("warren".to_string()),
            product_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            users: self.users().user_definitions(),
            permissions: self.users().permissions(),
            topic_permissions: self.users().topic_permissions(),
            ..FullDefinitions::default()
        };
        for vhost in &vhosts {
            let metadata = vhost.metadata();
            let mut nested = Map::new();
            nested.insert(
                "description".into(),
                Json::from(metadata.description.clone()),
            );
            nested.insert("tags".into(), Json::from(metadata.tags.clone()));
            definitions.vhosts.push(VhostDefinition {
                name: vhost.name.clone(),
                description: metadata.description,
                tags: metadata.tags,
                default_queue_type: metadata.default_queue_type,
                metadata: Some(nested),
                limits: Json::Array(Vec::new()),
            });
            definitions.policies.extend(
                vhost
                    .policies()
                    .iter()
                    .map(|policy| policy.definition.clone()),
            );
            let mut topology = vhost.definitions();
            sort_topology(&mut topology);
            definitions.queues.extend(topology.queues);
            definitions.exchanges.extend(topology.exchanges);
            definitions.bindings.extend(topology.bindings);
        }
        definitions
    }

    /// One vhost's definitions, as `GET /api/definitions/{vhost}` answers: policies, queues,
    /// exchanges and bindings, without vhost fields. None when the vhost does not exist.
    pub fn export_vhost_definitions(&self, vhost: &str) -> Option<Json> {
        let vhost = self.vhost(vhost)?;
        let mut topology = vhost.definitions();
        sort_topology(&mut topology);
        let policies: Vec<PolicyDefinition> = vhost
            .policies()
            .iter()
            .map(|policy| policy.definition.clone())
            .collect();
        let mut exported = serde_json::json!({
            "rabbit_version": FORMAT_VERSION,
            "rabbitmq_version": FORMAT_VERSION,
            "product_name": "warren",
            "product_version": env!("CARGO_PKG_VERSION"),
            "parameters": [],
            "policies": policies,
            "queues": topology.queues,
            "exchanges": topology.exchanges,
            "bindings": topology.bindings,
        });
        // As RabbitMQ 3.10: queues, exchanges and bindings lose their vhost; policies keep it.
        for list in ["queues", "exchanges", "bindings"] {
            if let Some(Json::Array(items)) = exported.get_mut(list) {
                for item in items {
                    if let Json::Object(object) = item {
                        object.remove("vhost");
                    }
                }
            }
        }
        Some(exported)
    }

    /// Imports definitions; with `into_vhost`, every object goes to that vhost (a per-vhost
    /// file, whose objects name none) and users, vhosts and permissions are not read.
    /// Objects are created in dependency order (users, vhosts, permissions, policies,
    /// exchanges, queues, bindings); what cannot be created is reported and the rest still
    /// imported, as RabbitMQ does. Runtime parameters are ignored with a warning.
    pub fn import_definitions(
        &self,
        definitions: &FullDefinitions,
        into_vhost: Option<&str>,
    ) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let vhost_of = |named: &str| into_vhost.unwrap_or(named).to_string();
        if into_vhost.is_none() {
            self.users().import(&definitions.users, &[], &[]);
            for vhost in &definitions.vhosts {
                let nested = vhost.metadata.as_ref();
                let description = nested
                    .and_then(|m| m.get("description"))
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| vhost.description.clone());
                // RabbitMQ 3.10 writes an empty tag list as "" and others as a list.
                let tags = match nested.and_then(|m| m.get("tags")) {
                    Some(Json::Array(tags)) => tags
                        .iter()
                        .filter_map(Json::as_str)
                        .map(str::to_string)
                        .collect(),
                    Some(Json::String(text)) => crate::auth::parse_tags(text),
                    _ => vhost.tags.clone(),
                };
                self.add_vhost(
                    &vhost.name,
                    VhostMetadata {
                        description,
                        tags,
                        default_queue_type: vhost.default_queue_type.clone(),
                    },
                );
            }
            let known = |vhost: &str, what: &str, user: &str, problems: &mut Vec<String>| {
                let ok = self.vhost(vhost).is_some();
                if !ok {
                    problems.push(format!("{what} of user '{user}': no vhost '{vhost}'"));
                }
                ok
            };
            let permissions: Vec<_> = definitions
                .permissions
                .iter()
                .filter(|p| known(&p.vhost, "permissions", &p.user, &mut problems))
                .cloned()
                .collect();
            let topic_permissions: Vec<_> = definitions
                .topic_permissions
                .iter()
                .filter(|p| known(&p.vhost, "topic permissions", &p.user, &mut problems))
                .cloned()
                .collect();
            self.users().import(&[], &permissions, &topic_permissions);
        }
        if !definitions.parameters.is_empty() || !definitions.global_parameters.is_empty() {
            tracing::warn!(
                parameters = definitions.parameters.len(),
                global_parameters = definitions.global_parameters.len(),
                "definitions: runtime parameters are not supported and were ignored"
            );
        }
        for policy in &definitions.policies {
            let mut policy = policy.clone();
            policy.vhost = vhost_of(&policy.vhost);
            let name = policy.name.clone();
            if let Err(error) = self.put_policy(policy) {
                problems.push(format!("policy '{name}': {error}"));
            }
        }
        let nobody = ConnectionId(0);
        for exchange in &definitions.exchanges {
            let Some(vhost) = self.vhost(&vhost_of(&exchange.vhost)) else {
                problems.push(format!(
                    "exchange '{}': no vhost '{}'",
                    exchange.name, exchange.vhost
                ));
                continue;
            };
            let declared = vhost.declare_exchange(ExchangeDeclare {
                name: exchange.name.clone(),
                kind: exchange.kind.clone(),
                passive: false,
                durable: exchange.durable,
                auto_delete: exchange.auto_delete,
                internal: exchange.internal,
                arguments: super::definitions::table_from_json(&exchange.arguments),
            });
            if let Err(error) = declared {
                problems.push(format!("exchange '{}': {error}", exchange.name));
            }
        }
        for queue in &definitions.queues {
            let Some(vhost) = self.vhost(&vhost_of(&queue.vhost)) else {
                problems.push(format!(
                    "queue '{}': no vhost '{}'",
                    queue.name, queue.vhost
                ));
                continue;
            };
            let declared = vhost.declare_queue(
                QueueDeclare {
                    name: queue.name.clone(),
                    passive: false,
                    durable: queue.durable,
                    exclusive: false,
                    auto_delete: queue.auto_delete,
                    arguments: super::definitions::table_from_json(&queue.arguments),
                },
                nobody,
            );
            if let Err(error) = declared {
                problems.push(format!("queue '{}': {error}", queue.name));
            }
        }
        for binding in &definitions.bindings {
            let Some(vhost) = self.vhost(&vhost_of(&binding.vhost)) else {
                problems.push(format!(
                    "binding from '{}': no vhost '{}'",
                    binding.source, binding.vhost
                ));
                continue;
            };
            let arguments: Table = super::definitions::table_from_json(&binding.arguments);
            let bound = if binding.destination_type == "exchange" {
                vhost.bind_exchange(
                    &binding.destination,
                    &binding.source,
                    &binding.routing_key,
                    arguments,
                )
            } else {
                vhost.bind_queue(
                    &binding.destination,
                    &binding.source,
                    &binding.routing_key,
                    arguments,
                    nobody,
                )
            };
            if let Err(error) = bound {
                problems.push(format!(
                    "binding '{}' -> '{}': {error}",
                    binding.source, binding.destination
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
