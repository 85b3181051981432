//! Durable topology as a document in RabbitMQ's definitions format (the subset that
//! describes exchanges, queues and bindings), so it can be saved atomically by the store
//! and, later, exported and imported as RabbitMQ users expect.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value as Json};

use super::table::{Table, Value};

/// The durable topology.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Definitions {
    /// Durable exchanges (not the default or `amq.*` ones).
    #[serde(default)]
    pub exchanges: Vec<ExchangeDefinition>,
    /// Durable queues.
    #[serde(default)]
    pub queues: Vec<QueueDefinition>,
    /// Bindings between durable entities.
    #[serde(default)]
    pub bindings: Vec<BindingDefinition>,
}

/// One exchange.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExchangeDefinition {
    /// Its name.
    pub name: String,
    /// Its vhost (absent in a per-vhost export).
    #[serde(default)]
    pub vhost: String,
    /// Its type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Durable flag.
    #[serde(default)]
    pub durable: bool,
    /// Auto-delete flag.
    #[serde(default)]
    pub auto_delete: bool,
    /// Internal flag.
    #[serde(default)]
    pub internal: bool,
    /// Declare arguments.
    #[serde(default)]
    pub arguments: Map<String, Json>,
}

/// One queue.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueueDefinition {
    /// Its name.
    pub name: String,
    /// Its vhost (absent in a per-vhost export).
    #[serde(default)]
    pub vhost: String,
    /// Durable flag.
    #[serde(default)]
    pub durable: bool,
    /// Auto-delete flag.
    #[serde(default)]
    pub auto_delete: bool,
    /// Declare arguments.
    #[serde(default)]
    pub arguments: Map<String, Json>,
}

/// One binding.
#[derive(Debug, Serialize, Deserialize)]
pub struct BindingDefinition {
    /// The source exchange.
    pub source: String,
    /// Its vhost (absent in a per-vhost export).
    #[serde(default)]
    pub vhost: String,
    /// The destination queue or exchange.
    pub destination: String,
    /// "queue" or "exchange".
    pub destination_type: String,
    /// The binding key.
    #[serde(default)]
    pub routing_key: String,
    /// Binding arguments.
    #[serde(default)]
    pub arguments: Map<String, Json>,
}

/// A table as a JSON object (binary values become strings, as RabbitMQ exports them).
pub fn table_to_json(table: &Table) -> Map<String, Json> {
    table
        .iter()
        .map(|(key, value)| (key.clone(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Bool(v) => Json::Bool(*v),
        Value::F32(v) => Number::from_f64(f64::from(*v)).map_or(Json::Null, Json::Number),
        Value::F64(v) => Number::from_f64(*v).map_or(Json::Null, Json::Number),
        Value::Decimal { scale, value } => {
            let v = f64::from(*value) / 10f64.powi(i32::from(*scale));
            Number::from_f64(v).map_or(Json::Null, Json::Number)
        }
        Value::String(bytes) | Value::ByteArray(bytes) => {
            Json::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Value::Array(values) => Json::Array(values.iter().map(value_to_json).collect()),
        Value::Timestamp(v) => Json::Number((*v).into()),
        Value::Table(t) => Json::Object(table_to_json(t)),
        Value::Void => Json::Null,
        other => other
            .as_i64()
            .map_or(Json::Null, |i| Json::Number(i.into())),
    }
}

/// A JSON object as a table.
pub fn table_from_json(object: &Map<String, Json>) -> Table {
    Table(
        object
            .iter()
            .map(|(key, value)| (key.clone(), value_from_json(value)))
            .collect(),
    )
}

fn value_from_json(value: &Json) -> Value {
    match value {
        Json::Null => Value::Void,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(bytes::Bytes::from(s.clone())),
        Json::Array(values) => Value::Array(values.iter().map(value_from_json).collect()),
        Json::Object(object) => Value::Table(table_from_json(object)),
    }
}

/// A vhost in definitions: RabbitMQ 3.10 writes its description and tags at the top level
/// and in `metadata`; either is read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VhostDefinition {
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default, deserialize_with = "crate::auth::tags_from_json")]
    pub tags: Vec<String>,
    /// The queue type of queues declared without `x-queue-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
    /// RabbitMQ 3.10's nested form of description and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Json>>,
    /// Per-vhost limits (kept for round trips; not enforced).
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub limits: Json,
}

/// Everything definitions can carry, in RabbitMQ's format: `rabbitmqctl export_definitions`
/// and `GET /api/definitions` write it; `import_definitions`, `POST /api/definitions` and
/// `load_definitions` read it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FullDefinitions {
    /// The version that wrote it (RabbitMQ's field name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    /// The version that wrote it (newer field name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    /// The product that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// The product's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// Users with their password hashes and tags.
    #[serde(default)]
    pub users: Vec<crate::auth::UserDefinition>,
    /// Vhosts.
    #[serde(default)]
    pub vhosts: Vec<VhostDefinition>,
    /// Permissions.
    #[serde(default)]
    pub permissions: Vec<crate::auth::PermissionDefinition>,
    /// Topic permissions.
    #[serde(default)]
    pub topic_permissions: Vec<crate::auth::TopicPermissionDefinition>,
    /// Runtime parameters (federation, shovels, limits): not supported, ignored on import
    /// with a warning.
    #[serde(default)]
    pub parameters: Vec<Json>,
    /// Global parameters (cluster name): ignored on import with a warning.
    #[serde(default)]
    pub global_parameters: Vec<Json>,
    /// Policies.
    #[serde(default)]
    pub policies: Vec<crate::core::PolicyDefinition>,
    /// Queues.
    #[serde(default)]
    pub queues: Vec<QueueDefinition>,
    /// Exchanges.
    #[serde(default)]
    pub exchanges: Vec<ExchangeDefinition>,
    /// Bindings.
    #[serde(default)]
    pub bindings: Vec<BindingDefinition>,
}
