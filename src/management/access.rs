//! Users, vhosts, permissions, topic permissions and policies through the API, with
//! RabbitMQ's paths, bodies and answers (201 created, 204 updated or deleted, 404 missing,
//! 400 for a bad body). Changing them needs the `administrator` tag (policies also
//! `policymaker`); reading users needs `administrator`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{
    administrator, administrator_body, error, json_response, list_response, not_found, Caller,
    Management,
};
use crate::auth::{PasswordChange, PermissionDefinition, TopicPermissionDefinition};
use crate::core::{PolicyDefinition, VhostMetadata};

fn bad_request(reason: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", reason)
}

fn created_or_updated(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn user_json(user: &crate::auth::User) -> Value {
    json!({
        "name": user.name,
        "password_hash": user
            .password_hash
            .as_deref()
            .map(crate::auth::encode_hash)
            .unwrap_or_default(),
        "hashing_algorithm": crate::auth::HASHING_ALGORITHM,
        "tags": user.tags,
        "limits": {},
    })
}

/// `GET /api/users` (administrators only).
pub(super) async fn users(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    let listed = management
        .core
        .users()
        .list()
        .iter()
        .map(user_json)
        .collect();
    list_response(listed, &query)
}

/// `GET /api/users/{name}`.
pub(super) async fn user(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    match management.core.users().get(&name) {
        Some(user) => json_response(StatusCode::OK, &user_json(&user)),
        None => not_found().await,
    }
}

/// Tags in a body: a comma-separated string or a list.
fn tags_of(object: &Map<String, Value>) -> Option<Vec<String>> {
    match object.get("tags")? {
        Value::String(text) => Some(crate::auth::parse_tags(text)),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// `PUT /api/users/{name}` with `password` or `password_hash` (empty: no password) and
/// `tags`.
pub(super) async fn put_user(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let object = match administrator_body(request).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    let users = management.core.users();
    let password = match (object.get("password"), object.get("password_hash")) {
        (Some(Value::String(password)), _) => PasswordChange::Set(password.as_bytes().to_vec()),
        (Some(_), _) => return bad_request("password must be a string"),
        (None, Some(Value::String(hash))) if hash.is_empty() => PasswordChange::Clear,
        (None, Some(Value::String(hash))) => match crate::auth::decode_hash(hash) {
            Some(hash) if hash.len() > 4 => PasswordChange::Hash(hash),
            _ => return bad_request("password_hash is not a base64 salted hash"),
        },
        (None, Some(_)) => return bad_request("password_hash must be a string"),
        (None, None) if users.exists(&name) => PasswordChange::Keep,
        (None, None) => return bad_request("password or password_hash must be set"),
    };
    let tags = tags_of(&object)
        .or_else(|| users.get(&name).map(|user| user.tags))
        .unwrap_or_default();
    created_or_updated(users.put_user(&name, password, tags))
}

/// `DELETE /api/users/{name}`.
pub(super) async fn delete_user(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    if management.core.users().delete_user(&name) {
        // RabbitMQ closes a deleted user's connections.
        for connection in management.stats.connections() {
            if connection
                .identity()
                .is_some_and(|identity| identity.user == name)
            {
                connection.kick.kick_because("user was deleted");
            }
        }
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found().await
    }
}

fn vhost_json(vhost: &crate::core::Vhost) -> Value {
    let (mut ready, mut unacked) = (0u64, 0u64);
    for queue in vhost.queues() {
        let counts = queue.counts();
        ready += u64::from(counts.ready);
        unacked += u64::from(counts.unacked);
    }
    let metadata = vhost.metadata();
    json!({
        "name": vhost.name,
        "description": metadata.description,
        "tags": metadata.tags,
        "default_queue_type": metadata.default_queue_type.unwrap_or_else(|| "classic".into()),
        "metadata": {
            "description": metadata.description,
            "tags": metadata.tags,
        },
        "tracing": false,
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    })
}

/// `GET /api/vhosts`: the vhosts the caller may see.
pub(super) async fn vhosts(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    let mut listed: Vec<Value> = management
        .core
        .vhosts()
        .iter()
        .filter(|vhost| caller.sees_vhost(&management, &vhost.name))
        .map(|vhost| vhost_json(vhost))
        .collect();
    listed.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    list_response(listed, &query)
}

/// `GET /api/vhosts/{name}`.
pub(super) async fn vhost(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    caller: Caller,
) -> Response {
    match management.core.vhost(&name) {
        Some(vhost) if caller.sees_vhost(&management, &name) => {
            json_response(StatusCode::OK, &vhost_json(&vhost))
        }
        _ => not_found().await,
    }
}

/// `PUT /api/vhosts/{name}` with optional `description`, `tags`, `default_queue_type`. The
/// creating user gets full permissions on a new vhost, as RabbitMQ's management plugin does.
pub(super) async fn put_vhost(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    caller: Caller,
    request: Request,
) -> Response {
    let object = match administrator_body(request).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    if name.is_empty() {
        return bad_request("a vhost name must not be empty");
    }
    let metadata = VhostMetadata {
        description: object
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        tags: tags_of(&object).unwrap_or_default(),
        default_queue_type: object
            .get("default_queue_type")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let created = management.core.add_vhost(&name, metadata);
    if created {
        let full = PermissionDefinition {
            user: caller.name.clone(),
            vhost: name,
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        if let Err(refused) = management.core.users().set_permissions(&full) {
            tracing::warn!(%refused, "creator not granted the new vhost");
        }
    }
    created_or_updated(created)
}

/// `DELETE /api/vhosts/{name}`: deletes everything in it and closes its connections.
pub(super) async fn delete_vhost(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    if !management.core.delete_vhost(&name) {
        return not_found().await;
    }
    management
        .stats
        .close_vhost_connections(&name, "vhost is being deleted");
    StatusCode::NO_CONTENT.into_response()
}

fn permission_json(permission: &PermissionDefinition) -> Value {
    json!({
        "user": permission.user,
        "vhost": permission.vhost,
        "configure": permission.configure,
        "write": permission.write,
        "read": permission.read,
    })
}

fn topic_permission_json(permission: &TopicPermissionDefinition) -> Value {
    json!({
        "user": permission.user,
        "vhost": permission.vhost,
        "exchange": permission.exchange,
        "write": permission.write,
        "read": permission.read,
    })
}

/// The permissions the filters keep, as JSON.
fn permissions_where(management: &Management, keep: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    management
        .core
        .users()
        .permissions()
        .iter()
        .filter(|p| keep(&p.vhost, &p.user))
        .map(permission_json)
        .collect()
}

fn topic_permissions_where(
    management: &Management,
    keep: impl Fn(&str, &str) -> bool,
) -> Vec<Value> {
    management
        .core
        .users()
        .topic_permissions()
        .iter()
        .filter(|p| keep(&p.vhost, &p.user))
        .map(topic_permission_json)
        .collect()
}

/// `GET /api/permissions` (administrators only).
pub(super) async fn permissions(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    list_response(permissions_where(&management, |_, _| true), &query)
}

/// `GET /api/vhosts/{vhost}/permissions`.
pub(super) async fn vhost_permissions(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    if management.core.vhost(&vhost).is_none() {
        return not_found().await;
    }
    list_response(permissions_where(&management, |v, _| v == vhost), &query)
}

/// `GET /api/users/{user}/permissions`.
pub(super) async fn user_permissions(
    State(management): State<Arc<Management>>,
    Path(user): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    if !management.core.users().exists(&user) {
        return not_found().await;
    }
    list_response(permissions_where(&management, |_, u| u == user), &query)
}

/// `GET /api/permissions/{vhost}/{user}`.
pub(super) async fn permission(
    State(management): State<Arc<Management>>,
    Path((vhost, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    match permissions_where(&management, |v, u| v == vhost && u == user).pop() {
        Some(found) => json_response(StatusCode::OK, &found),
        None => not_found().await,
    }
}

/// A string field of a body, or 400.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, Response> {
    object
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request(&format!("{key} must be a string")))
}

/// Checks a vhost and a user named in a path; RabbitMQ answers 400 for either missing.
fn vhost_and_user(management: &Management, vhost: &str, user: &str) -> Result<(), Response> {
    if management.core.vhost(vhost).is_none() || !management.core.users().exists(user) {
        return Err(bad_request("vhost_or_user_not_found"));
    }
    Ok(())
}

/// `PUT /api/permissions/{vhost}/{user}` with `configure`, `write`, `read`.
pub(super) async fn put_permission(
    State(management): State<Arc<Management>>,
    Path((vhost, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    let object = match administrator_body(request).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    if let Err(response) = vhost_and_user(&management, &vhost, &user) {
        return response;
    }
    let definition = match (|| {
        Ok::<_, Response>(PermissionDefinition {
            configure: field(&object, "configure")?.to_string(),
            write: field(&object, "write")?.to_string(),
            read: field(&object, "read")?.to_string(),
            user: user.clone(),
            vhost: vhost.clone(),
        })
    })() {
        Ok(definition) => definition,
        Err(response) => return response,
    };
    let users = management.core.users();
    let existed = users.grant(&user, &vhost).is_some();
    match users.set_permissions(&definition) {
        Ok(()) => created_or_updated(!existed),
        Err(refused) => bad_request(&refused.to_string()),
    }
}

/// `DELETE /api/permissions/{vhost}/{user}`.
pub(super) async fn delete_permission(
    State(management): State<Arc<Management>>,
    Path((vhost, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    if management.core.users().clear_permissions(&vhost, &user) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found().await
    }
}

/// `GET /api/topic-permissions` (administrators only).
pub(super) async fn topic_permissions(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    list_response(topic_permissions_where(&management, |_, _| true), &query)
}

/// `GET /api/vhosts/{vhost}/topic-permissions`.
pub(super) async fn vhost_topic_permissions(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    list_response(
        topic_permissions_where(&management, |v, _| v == vhost),
        &query,
    )
}

/// `GET /api/users/{user}/topic-permissions`.
pub(super) async fn user_topic_permissions(
    State(management): State<Arc<Management>>,
    Path(user): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    list_response(
        topic_permissions_where(&management, |_, u| u == user),
        &query,
    )
}

/// `GET /api/topic-permissions/{vhost}/{user}`: one entry per exchange.
pub(super) async fn topic_permission(
    State(management): State<Arc<Management>>,
    Path((vhost, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    let found = topic_permissions_where(&management, |v, u| v == vhost && u == user);
    if found.is_empty() {
        return not_found().await;
    }
    json_response(StatusCode::OK, &Value::Array(found))
}

/// `PUT /api/topic-permissions/{vhost}/{user}` with `exchange`, `write`, `read`.
pub(super) async fn put_topic_permission(
    State(management): State<Arc<Management>>,
    Path((vhost, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    let object = match administrator_body(request).await {
        Ok(object) => object,
        Err(response) => return response,
    };
    if let Err(response) = vhost_and_user(&management, &vhost, &user) {
        return response;
    }
    let definition = match (|| {
        Ok::<_, Response>(TopicPermissionDefinition {
            exchange: field(&object, "exchange")?.to_string(),
            write: field(&object, "write")?.to_string(),
            read: field(&object, "read")?.to_string(),
            user: user.clone(),
            vhost: vhost.clone(),
        })
    })() {
        Ok(definition) => definition,
        Err(response) => return response,
    };
    let users = management.core.users();
    let existed = users
        .topic_permissions()
        .iter()
        .any(|p| p.vhost == vhost && p.user == user && p.exchange == definition.exchange);
    match users.set_topic_permissions(&definition) {
        Ok(()) => created_or_updated(!existed),
        Err(refused) => bad_request(&refused.to_string()),
    }
}

/// `DELETE /api/topic-permissions/{vhost}/{user}` (every exchange; `?exchange=` for one).
pub(super) async fn delete_topic_permission(
    State(management): State<Arc<Management>>,
    Path((vhost, user)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    let exchange = query.get("exchange").map(String::as_str);
    if management
        .core
        .users()
        .clear_topic_permissions(&vhost, &user, exchange)
    {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found().await
    }
}

fn policy_json(definition: &PolicyDefinition) -> Value {
    json!({
        "vhost": definition.vhost,
        "name": definition.name,
        "pattern": definition.pattern,
        "apply-to": definition.apply_to,
        "definition": definition.definition,
        "priority": definition.priority,
    })
}

fn policies_of(management: &Management, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    let mut listed = Vec::new();
    for v in management.core.vhosts() {
        if vhost.is_some_and(|name| name != v.name) || !caller.sees_vhost(management, &v.name) {
            continue;
        }
        listed.extend(v.policies().iter().map(|p| policy_json(&p.definition)));
    }
    listed.sort_by(|a, b| {
        (a["vhost"].as_str(), a["name"].as_str()).cmp(&(b["vhost"].as_str(), b["name"].as_str()))
    });
    listed
}

/// `GET /api/policies`.
pub(super) async fn policies(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    list_response(policies_of(&management, &caller, None), &query)
}

/// `GET /api/policies/{vhost}`.
pub(super) async fn vhost_policies(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    if management.core.vhost(&vhost).is_none() {
        return not_found().await;
    }
    list_response(policies_of(&management, &caller, Some(&vhost)), &query)
}

/// `GET /api/policies/{vhost}/{name}`.
pub(super) async fn policy(
    State(management): State<Arc<Management>>,
    Path((vhost, name)): Path<(String, String)>,
    caller: Caller,
) -> Response {
    let found = policies_of(&management, &caller, Some(&vhost))
        .into_iter()
        .find(|p| p["name"] == name.as_str());
    match found {
        Some(found) => json_response(StatusCode::OK, &found),
        None => not_found().await,
    }
}

/// 401 unless the caller may change policies in `vhost`: an administrator, or a
/// policymaker with access to the vhost.
fn policymaker(management: &Management, caller: &Caller, vhost: &str) -> Result<(), Response> {
    let tagged = caller
        .tags
        .iter()
        .any(|tag| tag == "administrator" || tag == "policymaker");
    if tagged && caller.sees_vhost(management, vhost) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not policymaker user",
        ))
    }
}

/// `PUT /api/policies/{vhost}/{name}` with `pattern`, `definition`, `priority`, `apply-to`.
pub(super) async fn put_policy(
    State(management): State<Arc<Management>>,
    Path((vhost, name)): Path<(String, String)>,
    caller: Caller,
    request: Request,
) -> Response {
    if let Err(refused) = policymaker(&management, &caller, &vhost) {
        return refused;
    }
    let body = match axum::body::to_bytes(request.into_body(), super::MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return bad_request("body too large"),
    };
    let mut definition: PolicyDefinition = match serde_json::from_slice(&body) {
        Ok(definition) => definition,
        Err(parse) => return bad_request(&format!("bad policy: {parse}")),
    };
    definition.vhost = vhost.clone();
    definition.name = name.clone();
    let Some(existing) = management.core.vhost(&vhost) else {
        return not_found().await;
    };
    let existed = existing.policies().iter().any(|p| p.name() == name);
    match management.core.put_policy(definition) {
        Ok(()) => created_or_updated(!existed),
        Err(refused) => bad_request(&refused.to_string()),
    }
}

/// `DELETE /api/policies/{vhost}/{name}`.
pub(super) async fn delete_policy(
    State(management): State<Arc<Management>>,
    Path((vhost, name)): Path<(String, String)>,
    caller: Caller,
) -> Response {
    if let Err(refused) = policymaker(&management, &caller, &vhost) {
        return refused;
    }
    if management.core.delete_policy(&vhost, &name) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found().await
    }
}

/// Every consumer, as RabbitMQ's `/api/consumers` lists them.
fn consumers_of(management: &Management, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    let connections: HashMap<u64, Arc<crate::stats::ConnectionStats>> = management
        .stats
        .connections()
        .into_iter()
        .filter_map(|c| Some((c.identity()?.connection, c)))
        .collect();
    let mut listed = Vec::new();
    for v in management.core.vhosts() {
        if vhost.is_some_and(|name| name != v.name) || !caller.sees_vhost(management, &v.name) {
            continue;
        }
        for queue in v.queues() {
            for consumer in queue.consumers() {
                let connection = connections.get(&consumer.owner.0);
                let name = connection.map(|c| c.name()).unwrap_or_default();
                listed.push(json!({
                    "queue": { "name": queue.name, "vhost": v.name },
                    "channel_details": {
                        "name": name,
                        "connection_name": name,
                        "peer_host": connection.map(|c| c.peer.ip().to_string()),
                        "peer_port": connection.map(|c| c.peer.port()),
                        "user": connection.and_then(|c| c.identity()).map(|i| i.user),
                        "node": management.identity.node,
                    },
                    "consumer_tag": consumer.tag,
                    "ack_required": !consumer.no_ack,
                    "exclusive": consumer.exclusive,
                    "prefetch_count": consumer.prefetch,
                    "active": consumer.active,
                    "activity_status": if consumer.active { "up" } else { "waiting" },
                    "arguments": {},
                }));
            }
        }
    }
    listed
}

/// `GET /api/consumers`.
pub(super) async fn consumers(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    list_response(consumers_of(&management, &caller, None), &query)
}

/// `GET /api/consumers/{vhost}`.
pub(super) async fn vhost_consumers(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    if management.core.vhost(&vhost).is_none() {
        return not_found().await;
    }
    list_response(consumers_of(&management, &caller, Some(&vhost)), &query)
}

/// `DELETE /api/connections/{name}`: closes the connection (`X-Reason` header says why).
pub(super) async fn close_connection(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    let Some(caller) = caller else {
        return error(StatusCode::UNAUTHORIZED, "not_authorised", "Login failed");
    };
    let target = management
        .stats
        .connections()
        .into_iter()
        .find(|c| c.name() == name);
    let Some(target) = target else {
        return not_found().await;
    };
    // Administrators close any connection; other management users only their own.
    let own = target
        .identity()
        .is_some_and(|identity| identity.user == caller.name);
    if !caller.is_administrator() && !own {
        return error(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not administrator user",
        );
    }
    let reason = request
        .headers()
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_string();
    management.stats.close_connection(&name, &reason);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /api/definitions` (administrators only).
pub(super) async fn definitions(
    State(management): State<Arc<Management>>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    match serde_json::to_value(management.core.export_definitions()) {
        Ok(exported) => json_response(StatusCode::OK, &exported),
        Err(failed) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            &failed.to_string(),
        ),
    }
}

/// `GET /api/definitions/{vhost}`.
pub(super) async fn vhost_definitions(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    match management.core.export_vhost_definitions(&vhost) {
        Some(exported) => json_response(StatusCode::OK, &exported),
        None => not_found().await,
    }
}

/// Reads a definitions body and imports it (into one vhost, or everywhere).
async fn import(management: &Management, into_vhost: Option<&str>, request: Request) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    let body = match axum::body::to_bytes(request.into_body(), super::MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return bad_request("body too large"),
    };
    let definitions: crate::core::definitions::FullDefinitions = match serde_json::from_slice(&body)
    {
        Ok(definitions) => definitions,
        Err(parse) => return bad_request(&format!("not a definitions file: {parse}")),
    };
    match management.core.import_definitions(&definitions, into_vhost) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problems) => bad_request(&problems.join("; ")),
    }
}

/// `POST /api/definitions`.
pub(super) async fn import_definitions(
    State(management): State<Arc<Management>>,
    request: Request,
) -> Response {
    import(&management, None, request).await
}

/// `POST /api/definitions/{vhost}`.
pub(super) async fn import_vhost_definitions(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = administrator(&request) {
        return refused;
    }
    if management.core.vhost(&vhost).is_none() {
        return not_found().await;
    }
    import(&management, Some(&vhost), request).await
}
