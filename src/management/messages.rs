//! Publishing and getting messages over HTTP, as RabbitMQ's management UI and `rabbitmqadmin`
//! do it for testing: `POST /api/exchanges/{vhost}/{name}/publish` and
//! `POST /api/queues/{vhost}/{name}/get`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::{error, json_response, permitted_body, vhost_or_404, Management};
use crate::auth::{Access, Resource};
use crate::core::definitions::{table_from_json, table_to_json};
use crate::core::{Message, Properties, RouteTargets, Routed};

/// Message properties from RabbitMQ's JSON (`delivery_mode`, `headers`, `content_type`, …).
fn properties_from_json(object: Option<&Map<String, Value>>) -> Properties {
    let Some(object) = object else {
        return Properties::default();
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| object.get(key).and_then(Value::as_u64);
    Properties {
        content_type: text("content_type"),
        content_encoding: text("content_encoding"),
        headers: object
            .get("headers")
            .and_then(Value::as_object)
            .map(table_from_json),
        delivery_mode: number("delivery_mode").and_then(|m| u8::try_from(m).ok()),
        priority: number("priority").and_then(|p| u8::try_from(p).ok()),
        correlation_id: text("correlation_id"),
        reply_to: text("reply_to"),
        expiration: text("expiration"),
        message_id: text("message_id"),
        timestamp: number("timestamp"),
        kind: text("type"),
        user_id: text("user_id"),
        app_id: text("app_id"),
        cluster_id: text("cluster_id"),
    }
}

/// Message properties as RabbitMQ's JSON writes them (only those set).
fn properties_to_json(properties: &Properties) -> Value {
    let mut object = Map::new();
    let mut text = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            object.insert(key.to_string(), json!(value));
        }
    };
    text("content_type", &properties.content_type);
    text("content_encoding", &properties.content_encoding);
    text("correlation_id", &properties.correlation_id);
    text("reply_to", &properties.reply_to);
    text("expiration", &properties.expiration);
    text("message_id", &properties.message_id);
    text("type", &properties.kind);
    text("user_id", &properties.user_id);
    text("app_id", &properties.app_id);
    text("cluster_id", &properties.cluster_id);
    if let Some(mode) = properties.delivery_mode {
        object.insert("delivery_mode".into(), json!(mode));
    }
    if let Some(priority) = properties.priority {
        object.insert("priority".into(), json!(priority));
    }
    if let Some(timestamp) = properties.timestamp {
        object.insert("timestamp".into(), json!(timestamp));
    }
    if let Some(headers) = &properties.headers {
        object.insert("headers".into(), Value::Object(table_to_json(headers)));
    }
    Value::Object(object)
}

/// `POST /api/exchanges/{vhost}/{name}/publish` with `routing_key`, `payload`,
/// `payload_encoding` (`string` or `base64`) and `properties`; answers `{"routed": bool}`.
pub(super) async fn publish(
    State(management): State<Arc<Management>>,
    Path((vhost_name, exchange_name)): Path<(String, String)>,
    caller: super::Caller,
    request: Request,
) -> Response {
    let exchange_name = super::exchange_in_path(&exchange_name).to_string();
    let object = match permitted_body(
        &management,
        request,
        &vhost_name,
        &[(Access::Write, Resource::Exchange, &exchange_name)],
    )
    .await
    {
        Ok(object) => object,
        Err(response) => return response,
    };
    let vhost = match vhost_or_404(&management, &vhost_name) {
        Ok(vhost) => vhost,
        Err(response) => return response,
    };
    let Ok(exchange) = vhost.exchange(&exchange_name) else {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    };
    let payload = object.get("payload").and_then(Value::as_str).unwrap_or("");
    let body = match object.get("payload_encoding").and_then(Value::as_str) {
        None | Some("string") => payload.as_bytes().to_vec(),
        Some("base64") => match base64::engine::general_purpose::STANDARD.decode(payload) {
            Ok(bytes) => bytes,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "payload is not base64",
                )
            }
        },
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("unknown payload_encoding {other}"),
            )
        }
    };
    let routing_key = object
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or("");
    // Topic permissions apply as they do to an AMQP publish.
    if !caller.is_administrator() && exchange.kind == crate::core::ExchangeKind::Topic {
        let mut check = crate::auth::AccessCheck::new(
            management.core.users().clone(),
            &caller.name,
            &vhost_name,
            "",
        );
        if let Err(refused) = check.check_topic(Access::Write, &exchange_name, routing_key) {
            return error(StatusCode::UNAUTHORIZED, "not_authorised", &refused.0);
        }
    }
    let message = Message {
        exchange: exchange_name.as_str().into(),
        routing_key: routing_key.into(),
        properties: properties_from_json(object.get("properties").and_then(Value::as_object)),
        body: body.into(),
        wire_cache: None,
        origin: None,
    };
    match vhost.publish(&exchange, Arc::new(message), &mut RouteTargets::default()) {
        Ok(Routed::Queued { .. }) => json_response(StatusCode::OK, &json!({ "routed": true })),
        Ok(Routed::Unroutable(_)) => json_response(StatusCode::OK, &json!({ "routed": false })),
        Err(refused) => error(StatusCode::BAD_REQUEST, "bad_request", &refused.to_string()),
    }
}

/// `POST /api/queues/{vhost}/{name}/get` with `count`, `ackmode` (`ack_requeue_true`,
/// `ack_requeue_false`, `reject_requeue_true`, `reject_requeue_false`), `encoding` (`auto` or
/// `base64`) and `truncate`.
pub(super) async fn get(
    State(management): State<Arc<Management>>,
    Path((vhost_name, queue_name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let object = match permitted_body(
        &management,
        request,
        &vhost_name,
        &[(Access::Read, Resource::Queue, &queue_name)],
    )
    .await
    {
        Ok(object) => object,
        Err(response) => return response,
    };
    // Looked up as a connection owning nothing: another connection's exclusive queue is
    // locked (405), as RabbitMQ answers.
    let found = match vhost_or_404(&management, &vhost_name) {
        Ok(vhost) => vhost.queue(&queue_name, crate::core::ConnectionId(0)),
        Err(response) => return response,
    };
    let queue = match found {
        Ok(queue) => queue,
        Err(crate::core::CoreError::ResourceLocked(reason)) => {
            return error(StatusCode::METHOD_NOT_ALLOWED, "resource_locked", &reason)
        }
        Err(_) => return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    };
    let count = object.get("count").and_then(Value::as_u64).unwrap_or(1);
    let requeue = match object.get("ackmode").and_then(Value::as_str) {
        Some("ack_requeue_true" | "reject_requeue_true") => true,
        Some("ack_requeue_false" | "reject_requeue_false") => false,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "ackmode must be ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false",
            )
        }
    };
    let base64_only = object.get("encoding").and_then(Value::as_str) == Some("base64");
    let truncate = object
        .get("truncate")
        .and_then(Value::as_u64)
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX));
    let mut taken = Vec::new();
    let mut messages = Vec::new();
    for _ in 0..count {
        // Messages to requeue stay unacknowledged until every one is taken, so the same
        // message is not fetched twice.
        let Some(result) = queue.get(!requeue) else {
            break;
        };
        let message = &result.message;
        let body =
            &message.body[..truncate.map_or(message.body.len(), |t| t.min(message.body.len()))];
        let (payload, encoding) = match (base64_only, std::str::from_utf8(body)) {
            (false, Ok(text)) => (text.to_string(), "string"),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(body),
                "base64",
            ),
        };
        messages.push(json!({
            "payload_bytes": message.body.len(),
            "redelivered": result.redelivered,
            "exchange": message.exchange.as_str(),
            "routing_key": message.routing_key.as_str(),
            "message_count": result.remaining,
            "properties": properties_to_json(&message.properties),
            "payload": payload,
            "payload_encoding": encoding,
        }));
        if requeue {
            taken.push(result.seq);
        }
    }
    if !taken.is_empty() {
        queue.requeue(taken);
    }
    json_response(StatusCode::OK, &Value::Array(messages))
}
