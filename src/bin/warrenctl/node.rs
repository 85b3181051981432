//! The node as a whole: `status`, `environment`, `report`, `ping` and `await_startup`.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::client::{api, exit, Failure, Method};
use crate::output::Formatter;
use crate::{access, lists, objects, Context};

/// What a listener's protocol is for, in the words of rabbitmqctl's `status`.
fn purpose(protocol: &str) -> &'static str {
    match protocol {
        "amqp" => "AMQP 0-9-1",
        "amqp/ssl" => "AMQP 0-9-1 over TLS",
        "mqtt" => "MQTT",
        "mqtt/ssl" => "MQTT over TLS",
        "http/web-mqtt" => "MQTT over WebSockets",
        "https/web-mqtt" => "MQTT over WebSockets and TLS",
        "http" => "HTTP API",
        "https" => "HTTP API over TLS (HTTPS)",
        "http/prometheus" => "Prometheus exporter API over HTTP",
        "https/prometheus" => "Prometheus exporter API over TLS (HTTPS)",
        "clustering" => "inter-node and CLI tool communication",
        _ => "",
    }
}

/// Bytes as rabbitmqctl's `status` prints them (`0.1328 gb`).
fn gigabytes(value: Option<&Value>) -> String {
    match value.and_then(Value::as_f64) {
        Some(bytes) => format!("{:.4} gb", bytes / 1e9),
        None => "unknown".into(),
    }
}

/// A field as text, `unknown` when the node does not report it.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "unknown".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// `/api/overview`, which every management user may read.
fn overview(context: &Context) -> Result<Value, Failure> {
    context.client.get(&api(&["overview"]), || {
        Failure::new(
            exit::UNAVAILABLE,
            format!(
                "{} does not serve a management API (no /api/overview)",
                context.client.url()
            ),
        )
    })
}

/// This node's `/api/nodes/{name}` entry.
fn node_details(context: &Context, name: &str) -> Result<Value, Failure> {
    context.client.get(&api(&["nodes", name]), || {
        Failure::data(format!("node {name} not found"))
    })
}

/// The status, as one JSON object (what `--formatter json` prints).
fn status_json(context: &Context) -> Result<Value, Failure> {
    let overview = overview(context)?;
    let name = overview
        .get("node")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let node = node_details(context, &name)?;
    let vhosts = context.client.get_list(&api(&["vhosts"]), || {
        Failure::data("the node has no vhost list")
    })?;
    let mut alarms = Vec::new();
    if node.get("mem_alarm") == Some(&Value::Bool(true)) {
        alarms.push(json!({ "node": name, "resource": "memory" }));
    }
    if node.get("disk_free_alarm") == Some(&Value::Bool(true)) {
        alarms.push(json!({ "node": name, "resource": "disk" }));
    }
    let listeners: Vec<Value> = overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(|listeners| {
            listeners
                .iter()
                .map(|listener| {
                    let protocol = listener
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    json!({
                        "interface": listener.get("ip_address"),
                        "port": listener.get("port"),
                        "protocol": protocol,
                        "purpose": purpose(protocol),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let totals = overview.get("object_totals");
    Ok(json!({
        "node_name": name,
        "product_name": overview.get("product_name"),
        "product_version": overview.get("product_version"),
        "rabbitmq_version": overview.get("rabbitmq_version"),
        "uptime": node.get("uptime").and_then(Value::as_u64).map(|ms| ms / 1000),
        "processors": node.get("processors"),
        "alarms": alarms,
        "memory": {
            "total": node.get("mem_used"),
            "limit": node.get("mem_limit"),
        },
        "file_descriptors": {
            "used": node.get("fd_used"),
            "limit": node.get("fd_total"),
            "sockets_used": node.get("sockets_used"),
            "sockets_limit": node.get("sockets_total"),
        },
        "disk_free": node.get("disk_free"),
        "disk_free_limit": node.get("disk_free_limit"),
        "totals": {
            "connection_count": totals.and_then(|t| t.get("connections")),
            "queue_count": totals.and_then(|t| t.get("queues")),
            "virtual_host_count": vhosts.len(),
        },
        "listeners": listeners,
    }))
}

/// Prints the status as rabbitmqctl's `status` lays it out.
fn print_status(context: &mut Context, status: &Value) {
    let name = text(status.get("node_name"));
    let out = &mut context.out;
    out.line("Runtime");
    out.line("");
    out.line(&format!("Uptime (seconds): {}", text(status.get("uptime"))));
    out.line(&format!(
        "{} version: {}",
        status
            .get("product_name")
            .and_then(Value::as_str)
            .unwrap_or("warren"),
        text(status.get("product_version"))
    ));
    out.line(&format!("Node name: {name}"));
    out.line(&format!("Processors: {}", text(status.get("processors"))));
    out.line("");
    out.line("Alarms");
    out.line("");
    let alarms = status
        .get("alarms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if alarms.is_empty() {
        out.line("(none)");
    }
    for alarm in &alarms {
        match alarm.get("resource").and_then(Value::as_str) {
            Some("disk") => out.line(&format!("Free disk space alarm on node {name}")),
            _ => out.line(&format!("Memory alarm on node {name}")),
        }
    }
    out.line("");
    out.line("Memory");
    out.line("");
    let memory = status.get("memory");
    out.line(&format!(
        "Total memory used: {}",
        gigabytes(memory.and_then(|m| m.get("total")))
    ));
    out.line("Calculation strategy: rss");
    out.line(&format!(
        "Memory high watermark setting: {}",
        gigabytes(memory.and_then(|m| m.get("limit")))
    ));
    out.line("");
    out.line("File Descriptors");
    out.line("");
    let fds = status.get("file_descriptors");
    let fd = |key: &str| text(fds.and_then(|f| f.get(key)));
    out.line(&format!("Total: {}, limit: {}", fd("used"), fd("limit")));
    out.line(&format!(
        "Sockets: {}, limit: {}",
        fd("sockets_used"),
        fd("sockets_limit")
    ));
    out.line("");
    out.line("Free Disk Space");
    out.line("");
    out.line(&format!(
        "Low free disk space watermark: {}",
        gigabytes(status.get("disk_free_limit"))
    ));
    out.line(&format!(
        "Free disk space: {}",
        gigabytes(status.get("disk_free"))
    ));
    out.line("");
    out.line("Totals");
    out.line("");
    let totals = status.get("totals");
    let total = |key: &str| text(totals.and_then(|t| t.get(key)));
    out.line(&format!("Connection count: {}", total("connection_count")));
    out.line(&format!("Queue count: {}", total("queue_count")));
    out.line(&format!(
        "Virtual host count: {}",
        total("virtual_host_count")
    ));
    out.line("");
    out.line("Listeners");
    out.line("");
    let listeners = status
        .get("listeners")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for listener in &listeners {
        out.line(&format!(
            "Interface: {}, port: {}, protocol: {}, purpose: {}",
            text(listener.get("interface")),
            text(listener.get("port")),
            text(listener.get("protocol")),
            text(listener.get("purpose")),
        ));
    }
}

/// `status`.
pub(crate) fn status(context: &mut Context) -> Result<(), Failure> {
    let status = status_json(context)?;
    if context.out.formatter() == Formatter::Json {
        context.out.line(&status.to_string());
        return Ok(());
    }
    context.out.banner(&format!(
        "Status of node {} ...",
        text(status.get("node_name"))
    ));
    print_status(context, &status);
    Ok(())
}

/// `environment`: the node's `/api/nodes/{name}` entry, one setting a row.
pub(crate) fn environment(context: &mut Context) -> Result<(), Failure> {
    let overview = overview(context)?;
    let name = text(overview.get("node"));
    let node = node_details(context, &name)?;
    if context.out.formatter() == Formatter::Json {
        context.out.line(&node.to_string());
        return Ok(());
    }
    context
        .out
        .banner(&format!("Application environment of node {name} ..."));
    let rows: Vec<Vec<Value>> = node
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .map(|(key, value)| vec![json!(key), value.clone()])
                .collect()
        })
        .unwrap_or_default();
    context
        .out
        .table(&["key".to_string(), "value".to_string()], &rows);
    Ok(())
}

/// `ping`: one request to the management API.
pub(crate) fn ping(context: &mut Context) -> Result<(), Failure> {
    context.out.banner(&format!(
        "Will ping the node at {}. This only checks that its management API answers. Timeout: {} ms.",
        context.client.url(),
        context.client.timeout().as_millis()
    ));
    overview(context)?;
    match context.out.formatter() {
        Formatter::Json => context.out.line(r#"{"result":"ok"}"#),
        _ => context.out.line("Ping succeeded"),
    }
    Ok(())
}

/// `await_startup`: polls `/api/overview` until it answers or `limit` passes. Credentials
/// refused end the wait at once: the node is up, waiting would not help.
pub(crate) fn await_startup(context: &mut Context, limit: Duration) -> Result<(), Failure> {
    context.out.banner(&format!(
        "Waiting for the node at {} to start (up to {} seconds) ...",
        context.client.url(),
        limit.as_secs()
    ));
    // `-t` is bounded by the command line, but an Instant cannot hold every Duration.
    let deadline = Instant::now().checked_add(limit);
    loop {
        let last = match context
            .client
            .send(Method::Get, &api(&["overview"]), None, None)
        {
            Ok(reply) if (200..300).contains(&reply.status) => return Ok(()),
            Ok(reply) if matches!(reply.status, 401 | 403) => {
                return context
                    .client
                    .check(reply, || Failure::data(""))
                    .map(|_| ())
            }
            Ok(reply) => format!("it answered {}: {}", reply.status, reply.reason()),
            Err(failure) => failure.message,
        };
        let left = deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return Err(Failure::new(
                exit::TEMP_FAIL,
                format!(
                    "the node at {} did not start within {} seconds; last: {last}",
                    context.client.url(),
                    limit.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200).min(left));
    }
}

/// The names of every vhost.
fn vhost_names(context: &Context) -> Result<Vec<String>, Failure> {
    let vhosts = context.client.get_list(&api(&["vhosts"]), || {
        Failure::data("the node has no vhost list")
    })?;
    Ok(vhosts
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// `report` as one JSON object: the status and the API's lists, by vhost.
fn report_json(context: &mut Context) -> Result<(), Failure> {
    let list = |path: String| -> Result<Value, Failure> {
        context
            .client
            .get_list(&path, || Failure::data(format!("{path}: not found")))
            .map(Value::Array)
    };
    let mut report = Map::new();
    report.insert("status".into(), status_json(context)?);
    report.insert("users".into(), list(api(&["users"]))?);
    report.insert("vhosts".into(), list(api(&["vhosts"]))?);
    report.insert("connections".into(), list(api(&["connections"]))?);
    report.insert("channels".into(), list(api(&["channels"]))?);
    let mut by_vhost = Map::new();
    for vhost in vhost_names(context)? {
        let mut lists = Map::new();
        for (key, path) in [
            ("queues", api(&["queues", &vhost])),
            ("exchanges", api(&["exchanges", &vhost])),
            ("bindings", api(&["bindings", &vhost])),
            ("consumers", api(&["consumers", &vhost])),
            ("permissions", api(&["vhosts", &vhost, "permissions"])),
            ("policies", api(&["policies", &vhost])),
        ] {
            lists.insert(key.into(), list(path)?);
        }
        by_vhost.insert(vhost, Value::Object(lists));
    }
    report.insert("by_vhost".into(), Value::Object(by_vhost));
    context.out.line(&Value::Object(report).to_string());
    Ok(())
}

/// `report`: the status, then every list for the node and for each vhost, each under its
/// title (shown even with `-q`). A section that fails is reported on stderr and the report
/// goes on; the first failure decides the exit code.
pub(crate) fn report(context: &mut Context) -> Result<(), Failure> {
    if context.out.formatter() == Formatter::Json {
        return report_json(context);
    }
    let quiet = context.out.set_quiet(false);
    let outcome = report_sections(context);
    context.out.set_quiet(quiet);
    outcome
}

fn report_sections(context: &mut Context) -> Result<(), Failure> {
    let status = status_json(context)?;
    let name = text(status.get("node_name"));
    context
        .out
        .banner(&format!("Reporting server status of node {name} ..."));
    context.out.line("");
    print_status(context, &status);
    let mut first: Option<Failure> = None;
    let mut section = |context: &mut Context, outcome: Result<(), Failure>| {
        context.out.line("");
        if let Err(failure) = outcome {
            crate::report_error(&failure);
            first.get_or_insert(failure);
        }
    };
    context.out.line("");
    let outcome = lists::connections(context, &[]);
    section(context, outcome);
    let outcome = lists::channels(context, &[]);
    section(context, outcome);
    let outcome = access::list_users(context, &[]);
    section(context, outcome);
    let outcome = access::list_vhosts(context, &[]);
    section(context, outcome);
    let saved = context.vhost.clone();
    for vhost in vhost_names(context)? {
        context.vhost = vhost;
        let outcome = lists::queues(context, &[]);
        section(context, outcome);
        let outcome = lists::exchanges(context, &[]);
        section(context, outcome);
        let outcome = lists::bindings(context, &[]);
        section(context, outcome);
        let outcome = lists::consumers(context, &[]);
        section(context, outcome);
        let outcome = access::list_permissions(context);
        section(context, outcome);
        let outcome = objects::list_policies(context);
        section(context, outcome);
    }
    context.vhost = saved;
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_gigabytes() {
        assert_eq!(gigabytes(Some(&json!(132_800_000u64))), "0.1328 gb");
        assert_eq!(gigabytes(None), "unknown");
    }
}
