//! rabbitmqctl's `list_*` commands: which API list each reads, its default columns, and how
//! rabbitmqctl's column names map onto the API's JSON fields.

use serde_json::Value;

use crate::client::{api, exit, Failure};
use crate::Context;

/// Where a column's value comes from in an API object.
#[derive(Clone, Copy)]
enum Source {
    /// The field of the same name.
    Field,
    /// A JSON pointer into the object.
    Pointer(&'static str),
    /// A fixed value (rabbitmqctl's `source_kind` is always `exchange`).
    Constant(&'static str),
}

/// One kind of list.
pub(crate) struct Spec {
    /// Columns shown when none are asked for.
    defaults: &'static [&'static str],
    /// Columns rabbitmqctl knows for this list; any other field the API answers works too.
    known: &'static [&'static str],
    /// Columns whose name differs from the API's field.
    renamed: &'static [(&'static str, Source)],
}

impl Spec {
    fn source(&self, column: &str) -> Source {
        self.renamed
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, source)| *source)
            .unwrap_or(Source::Field)
    }
}

/// Queues (`list_queues`).
pub(crate) const QUEUES: Spec = Spec {
    defaults: &["name", "messages"],
    known: &[
        "name",
        "vhost",
        "durable",
        "auto_delete",
        "arguments",
        "policy",
        "pid",
        "owner_pid",
        "exclusive",
        "exclusive_consumer_pid",
        "exclusive_consumer_tag",
        "messages_ready",
        "messages_unacknowledged",
        "messages",
        "messages_ready_ram",
        "messages_unacknowledged_ram",
        "messages_ram",
        "messages_persistent",
        "message_bytes",
        "message_bytes_ready",
        "message_bytes_unacknowledged",
        "message_bytes_ram",
        "message_bytes_persistent",
        "head_message_timestamp",
        "disk_reads",
        "disk_writes",
        "consumers",
        "consumer_utilisation",
        "consumer_capacity",
        "memory",
        "slave_pids",
        "synchronised_slave_pids",
        "state",
        "type",
        "leader",
        "members",
        "online",
    ],
    renamed: &[],
};

/// Exchanges (`list_exchanges`).
pub(crate) const EXCHANGES: Spec = Spec {
    defaults: &["name", "type"],
    known: &[
        "name",
        "vhost",
        "type",
        "durable",
        "auto_delete",
        "internal",
        "arguments",
        "policy",
    ],
    renamed: &[],
};

/// Bindings (`list_bindings`).
pub(crate) const BINDINGS: Spec = Spec {
    defaults: &[
        "source_name",
        "source_kind",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
    ],
    known: &[
        "source_name",
        "source_kind",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
        "vhost",
    ],
    renamed: &[
        ("source_name", Source::Pointer("/source")),
        ("source_kind", Source::Constant("exchange")),
        ("destination_name", Source::Pointer("/destination")),
        ("destination_kind", Source::Pointer("/destination_type")),
    ],
};

/// Connections (`list_connections`).
pub(crate) const CONNECTIONS: Spec = Spec {
    defaults: &["user", "peer_host", "peer_port", "state"],
    known: &[
        "pid",
        "name",
        "port",
        "host",
        "peer_port",
        "peer_host",
        "ssl",
        "ssl_protocol",
        "ssl_key_exchange",
        "ssl_cipher",
        "ssl_hash",
        "peer_cert_subject",
        "peer_cert_issuer",
        "peer_cert_validity",
        "state",
        "channels",
        "protocol",
        "auth_mechanism",
        "user",
        "vhost",
        "timeout",
        "frame_max",
        "channel_max",
        "client_properties",
        "recv_oct",
        "recv_cnt",
        "send_oct",
        "send_cnt",
        "send_pend",
        "connected_at",
    ],
    // warren has no Erlang pids: a connection's name stands for it.
    renamed: &[("pid", Source::Pointer("/name"))],
};

/// Channels (`list_channels`).
pub(crate) const CHANNELS: Spec = Spec {
    defaults: &["pid", "user", "consumer_count", "messages_unacknowledged"],
    known: &[
        "pid",
        "connection",
        "name",
        "number",
        "user",
        "vhost",
        "transactional",
        "confirm",
        "consumer_count",
        "messages_unacknowledged",
        "messages_uncommitted",
        "acks_uncommitted",
        "messages_unconfirmed",
        "prefetch_count",
        "global_prefetch_count",
    ],
    renamed: &[
        ("pid", Source::Pointer("/name")),
        ("connection", Source::Pointer("/connection_details/name")),
    ],
};

/// Consumers (`list_consumers`).
pub(crate) const CONSUMERS: Spec = Spec {
    defaults: &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "arguments",
    ],
    known: &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "activity_status",
        "exclusive",
        "arguments",
    ],
    renamed: &[
        ("queue_name", Source::Pointer("/queue/name")),
        ("channel_pid", Source::Pointer("/channel_details/name")),
    ],
};

/// Users (`list_users`).
pub(crate) const USERS: Spec = Spec {
    defaults: &["user", "tags"],
    known: &["user", "tags"],
    renamed: &[("user", Source::Pointer("/name"))],
};

/// Virtual hosts (`list_vhosts`).
pub(crate) const VHOSTS: Spec = Spec {
    defaults: &["name"],
    known: &[
        "name",
        "description",
        "tags",
        "default_queue_type",
        "tracing",
        "cluster_state",
        "metadata",
    ],
    renamed: &[],
};

/// A vhost's permissions (`list_permissions`).
pub(crate) const PERMISSIONS: Spec = Spec {
    defaults: &["user", "configure", "write", "read"],
    known: &["user", "configure", "write", "read"],
    renamed: &[],
};

/// A user's permissions (`list_user_permissions`).
pub(crate) const USER_PERMISSIONS: Spec = Spec {
    defaults: &["vhost", "configure", "write", "read"],
    known: &["vhost", "configure", "write", "read"],
    renamed: &[],
};

/// A vhost's topic permissions (`list_topic_permissions`).
pub(crate) const TOPIC_PERMISSIONS: Spec = Spec {
    defaults: &["user", "exchange", "write", "read"],
    known: &["user", "exchange", "write", "read"],
    renamed: &[],
};

/// A user's topic permissions (`list_user_topic_permissions`).
pub(crate) const USER_TOPIC_PERMISSIONS: Spec = Spec {
    defaults: &["vhost", "exchange", "write", "read"],
    known: &["vhost", "exchange", "write", "read"],
    renamed: &[],
};

/// A vhost's policies (`list_policies`).
pub(crate) const POLICIES: Spec = Spec {
    defaults: &[
        "vhost",
        "name",
        "pattern",
        "apply-to",
        "definition",
        "priority",
    ],
    known: &[
        "vhost",
        "name",
        "pattern",
        "apply-to",
        "definition",
        "priority",
    ],
    renamed: &[],
};

/// The columns asked for (space- or comma-separated, as rabbitmqctl takes them), or the
/// list's defaults.
fn columns(spec: &Spec, requested: &[String]) -> Vec<String> {
    let asked: Vec<String> = requested
        .iter()
        .flat_map(|argument| argument.split(','))
        .map(str::trim)
        .filter(|column| !column.is_empty())
        .map(str::to_string)
        .collect();
    if asked.is_empty() {
        spec.defaults.iter().map(|c| c.to_string()).collect()
    } else {
        asked
    }
}

/// One cell.
fn cell(spec: &Spec, column: &str, item: &Value) -> Value {
    match spec.source(column) {
        Source::Constant(value) => Value::String(value.to_string()),
        Source::Field => item.get(column).cloned().unwrap_or(Value::Null),
        Source::Pointer(pointer) => item.pointer(pointer).cloned().unwrap_or(Value::Null),
    }
}

/// Prints `items` (API objects) with the columns asked for. A column that is neither one
/// rabbitmqctl knows for this list nor a field of any item is refused, as rabbitmqctl refuses
/// an unknown info key.
pub(crate) fn print(
    context: &mut Context,
    spec: &Spec,
    requested: &[String],
    items: &[Value],
) -> Result<(), Failure> {
    let columns = columns(spec, requested);
    let unknown: Vec<&str> = columns
        .iter()
        .map(String::as_str)
        .filter(|column| {
            !spec.known.contains(column)
                && !spec.renamed.iter().any(|(name, _)| name == column)
                && !items.iter().any(|item| item.get(*column).is_some())
        })
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "Info key(s) {} are not supported. Valid keys are: {}",
                unknown.join(","),
                spec.known.join(", ")
            ),
        ));
    }
    let rows: Vec<Vec<Value>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(spec, c, item)).collect())
        .collect();
    context.out.table(&columns, &rows);
    Ok(())
}

/// The failure for a vhost that does not exist, in rabbitmqctl's words.
pub(crate) fn no_vhost(vhost: &str) -> Failure {
    Failure::data(format!("Virtual host '{vhost}' does not exist"))
}

/// `list_queues`.
pub(crate) fn queues(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context.out.banner(&format!(
        "Timeout: {:.1} seconds ...",
        context.client.timeout().as_secs_f64()
    ));
    context
        .out
        .banner(&format!("Listing queues for vhost {vhost} ..."));
    let items = context
        .client
        .get_list(&api(&["queues", &vhost]), || no_vhost(&vhost))?;
    print(context, &QUEUES, requested, &items)
}

/// `list_exchanges`.
pub(crate) fn exchanges(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Listing exchanges for vhost {vhost} ..."));
    let items = context
        .client
        .get_list(&api(&["exchanges", &vhost]), || no_vhost(&vhost))?;
    print(context, &EXCHANGES, requested, &items)
}

/// `list_bindings`.
pub(crate) fn bindings(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Listing bindings for vhost {vhost}..."));
    let items = context
        .client
        .get_list(&api(&["bindings", &vhost]), || no_vhost(&vhost))?;
    print(context, &BINDINGS, requested, &items)
}

/// `list_connections`.
pub(crate) fn connections(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    context.out.banner("Listing connections ...");
    let items = context.client.get_list(&api(&["connections"]), || {
        Failure::data("the node has no connection list")
    })?;
    print(context, &CONNECTIONS, requested, &items)
}

/// `list_channels`.
pub(crate) fn channels(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    context.out.banner("Listing channels ...");
    let items = context.client.get_list(&api(&["channels"]), || {
        Failure::data("the node has no channel list")
    })?;
    print(context, &CHANNELS, requested, &items)
}

/// `list_consumers`.
pub(crate) fn consumers(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Listing consumers in vhost {vhost} ..."));
    let items = context
        .client
        .get_list(&api(&["consumers", &vhost]), || no_vhost(&vhost))?;
    print(context, &CONSUMERS, requested, &items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_default_and_split_on_commas() {
        assert_eq!(columns(&QUEUES, &[]), vec!["name", "messages"]);
        assert_eq!(
            columns(&QUEUES, &["name,messages_ready".into(), "consumers".into()]),
            vec!["name", "messages_ready", "consumers"]
        );
    }

    #[test]
    fn renamed_columns_read_the_api_fields() {
        let binding =
            json!({"source": "amq.topic", "destination": "q", "destination_type": "queue"});
        assert_eq!(cell(&BINDINGS, "source_name", &binding), json!("amq.topic"));
        assert_eq!(cell(&BINDINGS, "source_kind", &binding), json!("exchange"));
        assert_eq!(
            cell(&BINDINGS, "destination_kind", &binding),
            json!("queue")
        );
        let consumer = json!({"queue": {"name": "q"}, "channel_details": {"name": "c (1)"}});
        assert_eq!(cell(&CONSUMERS, "queue_name", &consumer), json!("q"));
        assert_eq!(cell(&CONSUMERS, "channel_pid", &consumer), json!("c (1)"));
        assert_eq!(cell(&CONSUMERS, "arguments", &consumer), Value::Null);
    }
}
