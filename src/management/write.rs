//! The management API's writes, as `rabbitmqadmin` and other tools send them: declare and
//! delete queues and exchanges, purge a queue, bind a queue, and list bindings.
//!
//! Administrators may make any write; other management users those their permissions in the
//! vhost allow (configure to declare and delete, write and read to bind, read to purge).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{error, list_response, permitted, permitted_body, vhost_or_404, Management, Needs};
use crate::auth::{Access, Resource};
use crate::core::definitions::{table_from_json, table_to_json};
use crate::core::exchange::Destination;
use crate::core::{ConnectionId, CoreError, ExchangeDeclare, QueueDeclare, Vhost};

/// The connection id the API acts as: owns nothing, so exclusive queues are out of reach.
const API: ConnectionId = ConnectionId(0);

/// A permitted write's JSON body and the vhost named in the path.
async fn read(
    management: &Management,
    vhost_name: &str,
    request: Request,
    needs: Needs<'_>,
) -> Result<(Map<String, Value>, Arc<Vhost>), Response> {
    let object = permitted_body(management, request, vhost_name, needs).await?;
    Ok((object, vhost_or_404(management, vhost_name)?))
}

/// A core refusal as RabbitMQ's API answers it.
fn refused(core: CoreError) -> Response {
    let reason = core.to_string();
    match core {
        CoreError::NotFound(_) => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
        CoreError::AccessRefused(_) => error(StatusCode::FORBIDDEN, "access_refused", &reason),
        CoreError::ResourceLocked(_) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "resource_locked", &reason)
        }
        _ => error(StatusCode::BAD_REQUEST, "bad_request", &reason),
    }
}

fn flag(object: &Map<String, Value>, key: &str, default: bool) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn arguments(object: &Map<String, Value>) -> crate::core::Table {
    match object.get("arguments") {
        Some(Value::Object(arguments)) => table_from_json(arguments),
        _ => crate::core::Table::default(),
    }
}

/// 201 for something created, 204 for something that was already there.
fn created_or_existing(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `PUT /api/queues/{vhost}/{name}` with `durable`, `auto_delete`, `arguments`.
pub(super) async fn put_queue(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (object, vhost) = match read(
        &management,
        &vhost_name,
        request,
        &[(Access::Configure, Resource::Queue, &name)],
    )
    .await
    {
        Ok(read) => read,
        Err(response) => return response,
    };
    let existed = vhost.queues().iter().any(|queue| queue.name == name);
    let declare = QueueDeclare {
        name,
        passive: false,
        durable: flag(&object, "durable", true),
        exclusive: false,
        auto_delete: flag(&object, "auto_delete", false),
        arguments: arguments(&object),
    };
    match vhost.declare_queue(declare, API) {
        Ok(_) => created_or_existing(!existed),
        Err(core) => refused(core),
    }
}

/// `DELETE /api/queues/{vhost}/{name}` (`if-unused`, `if-empty`).
pub(super) async fn delete_queue(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let vhost = match permitted(
        &management,
        &request,
        &vhost_name,
        &[(Access::Configure, Resource::Queue, &name)],
    )
    .and_then(|()| vhost_or_404(&management, &vhost_name))
    {
        Ok(vhost) => vhost,
        Err(response) => return response,
    };
    if !vhost.queues().iter().any(|queue| queue.name == name) {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    }
    let if_unused = query.get("if-unused").is_some_and(|v| v == "true");
    let if_empty = query.get("if-empty").is_some_and(|v| v == "true");
    match vhost.delete_queue(&name, if_unused, if_empty, API) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(core) => refused(core),
    }
}

/// `DELETE /api/queues/{vhost}/{name}/contents`: purge.
pub(super) async fn purge_queue(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let vhost = match permitted(
        &management,
        &request,
        &vhost_name,
        &[(Access::Read, Resource::Queue, &name)],
    )
    .and_then(|()| vhost_or_404(&management, &vhost_name))
    {
        Ok(vhost) => vhost,
        Err(response) => return response,
    };
    match vhost.purge_queue(&name, API) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(core) => refused(core),
    }
}

/// `PUT /api/exchanges/{vhost}/{name}` with `type`, `durable`, `auto_delete`, `internal`,
/// `arguments`.
pub(super) async fn put_exchange(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (object, vhost) = match read(
        &management,
        &vhost_name,
        request,
        &[(Access::Configure, Resource::Exchange, &name)],
    )
    .await
    {
        Ok(read) => read,
        Err(response) => return response,
    };
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the exchange type is missing",
        );
    };
    let existed = vhost.exchange(&name).is_ok();
    let declare = ExchangeDeclare {
        name,
        kind: kind.to_string(),
        passive: false,
        durable: flag(&object, "durable", true),
        auto_delete: flag(&object, "auto_delete", false),
        internal: flag(&object, "internal", false),
        arguments: arguments(&object),
    };
    match vhost.declare_exchange(declare) {
        Ok(_) => created_or_existing(!existed),
        Err(core) => refused(core),
    }
}

/// `DELETE /api/exchanges/{vhost}/{name}` (`if-unused`).
pub(super) async fn delete_exchange(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let vhost = match permitted(
        &management,
        &request,
        &vhost_name,
        &[(Access::Configure, Resource::Exchange, &name)],
    )
    .and_then(|()| vhost_or_404(&management, &vhost_name))
    {
        Ok(vhost) => vhost,
        Err(response) => return response,
    };
    if vhost.exchange(&name).is_err() {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    }
    let if_unused = query.get("if-unused").is_some_and(|v| v == "true");
    match vhost.delete_exchange(&name, if_unused) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(core) => refused(core),
    }
}

/// `POST /api/bindings/{vhost}/e/{exchange}/q/{queue}` with `routing_key`, `arguments`;
/// 201 with the binding's `Location`.
pub(super) async fn bind_queue(
    State(management): State<Arc<Management>>,
    Path((vhost_name, exchange, queue)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    bind(
        &management,
        &vhost_name,
        &exchange,
        &queue,
        Resource::Queue,
        request,
    )
    .await
}

/// Creates a binding from `source` to `destination` (a queue or an exchange) with the
/// body's `routing_key` and `arguments`, checked as RabbitMQ checks a bind: write on the
/// destination, read on the source, and the topic permission on the key of a topic source.
async fn bind(
    management: &Management,
    vhost_name: &str,
    source: &str,
    destination: &str,
    destination_kind: Resource,
    request: Request,
) -> Response {
    let caller = request.extensions().get::<super::Caller>().cloned();
    let needs = [
        (Access::Write, destination_kind, destination),
        (Access::Read, Resource::Exchange, source),
    ];
    let (object, vhost) = match read(management, vhost_name, request, &needs).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let routing_key = object
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let topic_source = vhost
        .exchange(source)
        .is_ok_and(|e| e.kind == crate::core::ExchangeKind::Topic);
    if let Some(caller) = caller.filter(|c| topic_source && !c.is_administrator()) {
        let mut check = crate::auth::AccessCheck::new(
            management.core.users().clone(),
            &caller.name,
            vhost_name,
            "",
        );
        if let Err(refused) = check.check_topic(Access::Read, source, &routing_key) {
            return error(StatusCode::UNAUTHORIZED, "not_authorised", &refused.0);
        }
    }
    let (bound, kind) = match destination_kind {
        Resource::Queue => (
            vhost.bind_queue(destination, source, &routing_key, arguments(&object), API),
            "q",
        ),
        Resource::Exchange => (
            vhost.bind_exchange(destination, source, &routing_key, arguments(&object)),
            "e",
        ),
    };
    match bound {
        Ok(()) => {
            let location = format!(
                "/api/bindings/{}/e/{}/{kind}/{}/{}",
                encode(vhost_name),
                encode(source),
                encode(destination),
                encode(&routing_key)
            );
            (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
        }
        Err(core) => refused(core),
    }
}

/// Percent-encodes a path segment.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every binding of the vhosts given, as RabbitMQ's `/api/bindings` lists them.
fn bindings_of(vhosts: Vec<Arc<Vhost>>) -> Vec<Value> {
    let mut listed = Vec::new();
    for vhost in vhosts {
        let mut exchanges = vhost.exchanges();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for exchange in exchanges {
            for binding in exchange.bindings() {
                let (destination, destination_type) = match &binding.destination {
                    Destination::Queue(queue) => (queue.name.clone(), "queue"),
                    Destination::Exchange(target) => (target.name.clone(), "exchange"),
                };
                listed.push(json!({
                    "source": exchange.name,
                    "vhost": vhost.name,
                    "destination": destination,
                    "destination_type": destination_type,
                    "routing_key": binding.routing_key,
                    "arguments": table_to_json(&binding.arguments),
                    "properties_key": if binding.routing_key.is_empty() {
                        "~".to_string()
                    } else {
                        binding.routing_key.clone()
                    },
                }));
            }
        }
    }
    listed
}

/// `GET /api/bindings`: the bindings of the vhosts the caller sees.
pub(super) async fn all_bindings(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: super::Caller,
) -> Response {
    let vhosts = management
        .core
        .vhosts()
        .into_iter()
        .filter(|vhost| caller.sees_vhost(&management, &vhost.name))
        .collect();
    list_response(bindings_of(vhosts), &query)
}

/// The bindings from `source` to `destination` (of `destination_type`).
fn bindings_between(
    vhost: &Arc<Vhost>,
    source: &str,
    destination: &str,
    destination_type: &str,
) -> Vec<Value> {
    bindings_of(vec![vhost.clone()])
        .into_iter()
        .filter(|b| {
            b["source"] == source
                && b["destination"] == destination
                && b["destination_type"] == destination_type
        })
        .collect()
}

/// `GET /api/bindings/{vhost}/e/{exchange}/q/{queue}`.
pub(super) async fn queue_bindings_between(
    State(management): State<Arc<Management>>,
    Path((vhost_name, exchange, queue)): Path<(String, String, String)>,
    caller: super::Caller,
) -> Response {
    match super::visible_vhost(&management, &caller, &vhost_name) {
        Ok(vhost) => super::json_response(
            StatusCode::OK,
            &Value::Array(bindings_between(&vhost, &exchange, &queue, "queue")),
        ),
        Err(response) => response,
    }
}

/// `GET /api/bindings/{vhost}/e/{source}/e/{destination}`.
pub(super) async fn exchange_bindings_between(
    State(management): State<Arc<Management>>,
    Path((vhost_name, source, destination)): Path<(String, String, String)>,
    caller: super::Caller,
) -> Response {
    match super::visible_vhost(&management, &caller, &vhost_name) {
        Ok(vhost) => super::json_response(
            StatusCode::OK,
            &Value::Array(bindings_between(&vhost, &source, &destination, "exchange")),
        ),
        Err(response) => response,
    }
}

/// `POST /api/bindings/{vhost}/e/{source}/e/{destination}` with `routing_key`,
/// `arguments`; 201 with the binding's `Location`.
pub(super) async fn bind_exchange(
    State(management): State<Arc<Management>>,
    Path((vhost_name, source, destination)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    bind(
        &management,
        &vhost_name,
        &source,
        &destination,
        Resource::Exchange,
        request,
    )
    .await
}

/// Removes the binding named by its properties key (the routing key, `~` when empty).
fn unbind(
    vhost: &Arc<Vhost>,
    source: &str,
    destination: &str,
    destination_type: &str,
    properties_key: &str,
) -> Response {
    let found = bindings_between(vhost, source, destination, destination_type)
        .into_iter()
        .find(|b| b["properties_key"] == properties_key);
    let Some(found) = found else {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    };
    let routing_key = found["routing_key"].as_str().unwrap_or_default();
    let arguments = match &found["arguments"] {
        Value::Object(arguments) => table_from_json(arguments),
        _ => crate::core::Table::default(),
    };
    let result = if destination_type == "queue" {
        vhost.unbind_queue(destination, source, routing_key, arguments, API)
    } else {
        vhost.unbind_exchange(destination, source, routing_key, arguments)
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(core) => refused(core),
    }
}

/// `DELETE /api/bindings/{vhost}/e/{exchange}/q/{queue}/{props}`.
pub(super) async fn unbind_queue(
    State(management): State<Arc<Management>>,
    Path((vhost_name, exchange, queue, props)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    match permitted(
        &management,
        &request,
        &vhost_name,
        &[
            (Access::Write, Resource::Queue, &queue),
            (Access::Read, Resource::Exchange, &exchange),
        ],
    )
    .and_then(|()| vhost_or_404(&management, &vhost_name))
    {
        Ok(vhost) => unbind(&vhost, &exchange, &queue, "queue", &props),
        Err(response) => response,
    }
}

/// `DELETE /api/bindings/{vhost}/e/{source}/e/{destination}/{props}`.
pub(super) async fn unbind_exchange(
    State(management): State<Arc<Management>>,
    Path((vhost_name, source, destination, props)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    match permitted(
        &management,
        &request,
        &vhost_name,
        &[
            (Access::Write, Resource::Exchange, &destination),
            (Access::Read, Resource::Exchange, &source),
        ],
    )
    .and_then(|()| vhost_or_404(&management, &vhost_name))
    {
        Ok(vhost) => unbind(&vhost, &source, &destination, "exchange", &props),
        Err(response) => response,
    }
}

/// `GET /api/queues/{vhost}/{name}/bindings`.
pub(super) async fn queue_bindings(
    State(management): State<Arc<Management>>,
    Path((vhost_name, queue)): Path<(String, String)>,
    caller: super::Caller,
) -> Response {
    match super::visible_vhost(&management, &caller, &vhost_name) {
        Ok(vhost) => {
            let listed: Vec<Value> = bindings_of(vec![vhost])
                .into_iter()
                .filter(|b| b["destination"] == queue.as_str() && b["destination_type"] == "queue")
                .collect();
            super::json_response(StatusCode::OK, &Value::Array(listed))
        }
        Err(response) => response,
    }
}

/// `GET /api/exchanges/{vhost}/{name}/bindings/source` and `.../destination`.
pub(super) async fn exchange_bindings(
    State(management): State<Arc<Management>>,
    Path((vhost_name, exchange, side)): Path<(String, String, String)>,
    caller: super::Caller,
) -> Response {
    let field = match side.as_str() {
        "source" => "source",
        "destination" => "destination",
        _ => return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    };
    match super::visible_vhost(&management, &caller, &vhost_name) {
        Ok(vhost) => {
            let listed: Vec<Value> = bindings_of(vec![vhost])
                .into_iter()
                .filter(|b| {
                    b[field] == exchange.as_str()
                        && (field == "source" || b["destination_type"] == "exchange")
                })
                .collect();
            super::json_response(StatusCode::OK, &Value::Array(listed))
        }
        Err(response) => response,
    }
}

/// `GET /api/bindings/{vhost}`.
pub(super) async fn vhost_bindings(
    State(management): State<Arc<Management>>,
    Path(vhost_name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    caller: super::Caller,
) -> Response {
    match super::visible_vhost(&management, &caller, &vhost_name) {
        Ok(vhost) => list_response(bindings_of(vec![vhost]), &query),
        Err(response) => response,
    }
}
