//! Health checks and the node, as RabbitMQ's management API answers them:
//! `/api/health/checks/{alarms,local-alarms,port-listener/{port},protocol-listener/{protocol},
//! virtual-hosts}`, `/api/aliveness-test/{vhost}` and `/api/nodes[/{name}]`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, json_response, Management};
use crate::core::{ConnectionId, QueueDeclare, RouteTargets};

/// 200 `{"status":"ok"}`, or 503 with RabbitMQ's failure shape when an alarm is on.
pub(super) async fn alarms(State(management): State<Arc<Management>>) -> Response {
    let mut alarms = Vec::new();
    if management.core.memory().over_limit() {
        alarms.push(json!({ "node": management.identity.node, "resource": "memory" }));
    }
    let disk_free = crate::prometheus::disk_free(&management.data_dir);
    let disk_free_limit = management.core.disk().limit();
    if disk_free.is_some_and(|free| free < disk_free_limit) {
        alarms.push(json!({ "node": management.identity.node, "resource": "disk" }));
    }
    if alarms.is_empty() {
        json_response(StatusCode::OK, &json!({ "status": "ok" }))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "failed",
                "reason": "resource alarm(s) in effect in the cluster",
                "alarms": alarms,
            }),
        )
    }
}

/// Whether a listener is on `port`.
pub(super) async fn port_listener(
    State(management): State<Arc<Management>>,
    Path(port): Path<String>,
) -> Response {
    let Ok(port) = port.parse::<u16>() else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "not a port number");
    };
    let ports: Vec<u16> = management.listeners.iter().map(|(_, a)| a.port()).collect();
    if ports.contains(&port) {
        json_response(StatusCode::OK, &json!({ "status": "ok", "port": port }))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "failed",
                "reason": "No active listener",
                "missing": port,
                "ports": ports,
            }),
        )
    }
}

/// Whether a listener speaks `protocol` (`amqp`, `amqp/ssl`, `mqtt`, `http`, ...).
pub(super) async fn protocol_listener(
    State(management): State<Arc<Management>>,
    Path(protocol): Path<String>,
) -> Response {
    let protocols: Vec<&str> = management.listeners.iter().map(|(p, _)| *p).collect();
    let wanted = protocol.to_lowercase();
    let known = protocols
        .iter()
        .any(|p| *p == wanted || (wanted == "amqp091" && *p == "amqp"));
    if known {
        json_response(
            StatusCode::OK,
            &json!({ "status": "ok", "protocol": protocol }),
        )
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "failed",
                "reason": "No active listener",
                "missing": protocol,
                "protocols": protocols,
            }),
        )
    }
}

/// Every vhost is running.
pub(super) async fn virtual_hosts() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// Declares `aliveness-test` in the vhost, publishes a message to it and gets it back.
pub(super) async fn aliveness(
    State(management): State<Arc<Management>>,
    Path(vhost_name): Path<String>,
    caller: super::Caller,
) -> Response {
    let vhost = match super::visible_vhost(&management, &caller, &vhost_name) {
        Ok(vhost) => vhost,
        Err(response) => return response,
    };
    let failed = |reason: String| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "failed", "reason": reason }),
        )
    };
    let declare = QueueDeclare {
        name: "aliveness-test".into(),
        durable: false,
        ..QueueDeclare::default()
    };
    let queue = match vhost.declare_queue(declare, ConnectionId(0)) {
        Ok(declared) => declared.queue,
        Err(refused) => return failed(refused.to_string()),
    };
    let exchange = match vhost.exchange("") {
        Ok(exchange) => exchange,
        Err(refused) => return failed(refused.to_string()),
    };
    let message = crate::core::Message {
        exchange: "".into(),
        routing_key: "aliveness-test".into(),
        properties: crate::core::Properties::default(),
        body: bytes::Bytes::from_static(b"test_message"),
        wire_cache: None,
        origin: None,
    };
    if let Err(refused) = vhost.publish(&exchange, Arc::new(message), &mut RouteTargets::default())
    {
        return failed(refused.to_string());
    }
    match queue.get(true) {
        Some(_) => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        None => failed("the test message did not come back".into()),
    }
}

/// The node, with RabbitMQ's field names for what `/api/nodes` tools read.
fn node_json(management: &Management) -> Value {
    let process = crate::prometheus::process();
    let memory = management.core.memory();
    let disk_free = crate::prometheus::disk_free(&management.data_dir);
    let fd_total = process.max_fds;
    let sockets_total = (management.max_connections as u64).min(fd_total.unwrap_or(u64::MAX));
    json!({
        "name": management.identity.node,
        "type": "disc",
        "running": true,
        "mem_used": process.resident_bytes,
        "mem_limit": memory.limit(),
        "mem_alarm": memory.over_limit(),
        "disk_free": disk_free,
        "disk_free_limit": management.core.disk().limit(),
        "disk_free_alarm": disk_free.is_some_and(|free| free < management.core.disk().limit()),
        "fd_used": process.open_fds,
        "fd_total": fd_total,
        "sockets_used": management.stats.connections().len(),
        "sockets_total": sockets_total,
        "uptime": u64::try_from(management.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// `GET /api/nodes`.
pub(super) async fn nodes(State(management): State<Arc<Management>>) -> Response {
    json_response(StatusCode::OK, &Value::Array(vec![node_json(&management)]))
}

/// `GET /api/nodes/{name}`.
pub(super) async fn node(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
) -> Response {
    if name == management.identity.node {
        json_response(StatusCode::OK, &node_json(&management))
    } else {
        error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }
}
