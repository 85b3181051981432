//! The management HTTP API on port 15672, with RabbitMQ's paths, JSON field names, HTTP basic
//! authentication and error shape (`{"error": …, "reason": …}`).
//!
//! So far it serves what monitoring tools read first: `/api/overview`, `/api/whoami`,
//! `/api/queues[/vhost[/name]]`, `/api/exchanges[/vhost[/name]]`, `/api/bindings[/vhost]`,
//! `/api/connections`, `/api/channels`, `/api/vhosts`, `/api/users`, `/api/nodes[/name]`,
//! the health checks and `/api/aliveness-test/{vhost}` ([`health`]); the writes of [`write`]
//! (declare, delete and purge queues, declare and delete exchanges, bind queues); and
//! [`messages`] (publish to an exchange, get from a queue). Lists take RabbitMQ's `page`,
//! `page_size`, `name`, `use_regex`, `sort`, `sort_reverse` and `columns` ([`listing`]).
//! Every request needs a user with a management tag (`administrator`, `monitoring`,
//! `management`, `policymaker`).

mod access;
mod health;
mod listing;
mod messages;
mod ui;
mod write;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::{Core, Queue};
use crate::prometheus::NodeIdentity;
use crate::stats::Registry;

/// Tags that may use the management API, as RabbitMQ's management plugin has them.
const MANAGEMENT_TAGS: [&str; 4] = ["administrator", "monitoring", "management", "policymaker"];

/// What the API reads.
pub(crate) struct Management {
    pub(crate) core: Arc<Core>,
    pub(crate) stats: Arc<Registry>,
    pub(crate) identity: NodeIdentity,
    /// Every listener: protocol name as RabbitMQ's overview writes it, and address.
    pub(crate) listeners: Vec<(&'static str, SocketAddr)>,
    /// The MQTT side (sessions, retained messages).
    pub(crate) mqtt: Arc<crate::mqtt::Shared>,
    /// The data directory (free disk space).
    pub(crate) data_dir: std::path::PathBuf,
    /// Connections allowed at most.
    pub(crate) max_connections: usize,
    /// When the broker started.
    pub(crate) started: std::time::Instant,
}

/// The authenticated user of a request.
#[derive(Clone)]
struct Caller {
    name: String,
    tags: Vec<String>,
}

impl Caller {
    fn is_administrator(&self) -> bool {
        self.tags.iter().any(|tag| tag == "administrator")
    }

    /// Whether the caller sees `vhost`: administrators and monitoring users see every
    /// vhost, management and policymaker users those they have permissions in.
    fn sees_vhost(&self, management: &Management, vhost: &str) -> bool {
        self.tags
            .iter()
            .any(|tag| tag == "administrator" || tag == "monitoring")
            || management.core.users().grant(&self.name, vhost).is_some()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Caller, Response> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "not_authorised", "Login failed"))
    }
}

/// Serves the API on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    management: Arc<Management>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/queues", get(all_queues))
        .route("/api/queues/{vhost}", get(vhost_queues))
        .route(
            "/api/queues/{vhost}/{name}",
            get(one_queue)
                .put(write::put_queue)
                .delete(write::delete_queue),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            delete(write::purge_queue),
        )
        .route("/api/queues/{vhost}/{name}/get", post(messages::get))
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(messages::publish),
        )
        .route("/api/exchanges", get(all_exchanges))
        .route("/api/exchanges/{vhost}", get(vhost_exchanges))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(one_exchange)
                .put(write::put_exchange)
                .delete(write::delete_exchange),
        )
        .route("/api/bindings", get(write::all_bindings))
        .route("/api/bindings/{vhost}", get(write::vhost_bindings))
        .route(
            "/api/bindings/{vhost}/e/{exchange}/q/{queue}",
            get(write::queue_bindings_between).post(write::bind_queue),
        )
        .route(
            "/api/bindings/{vhost}/e/{exchange}/q/{queue}/{props}",
            delete(write::unbind_queue),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{destination}",
            get(write::exchange_bindings_between).post(write::bind_exchange),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{destination}/{props}",
            delete(write::unbind_exchange),
        )
        .route(
            "/api/queues/{vhost}/{name}/bindings",
            get(write::queue_bindings),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/{side}",
            get(write::exchange_bindings),
        )
        .route("/api/connections", get(connections))
        .route(
            "/api/connections/{name}",
            get(one_connection).delete(access::close_connection),
        )
        .route("/api/channels", get(channels))
        .route("/api/consumers", get(access::consumers))
        .route("/api/consumers/{vhost}", get(access::vhost_consumers))
        .route("/api/vhosts", get(access::vhosts))
        .route(
            "/api/vhosts/{name}",
            get(access::vhost)
                .put(access::put_vhost)
                .delete(access::delete_vhost),
        )
        .route(
            "/api/vhosts/{name}/permissions",
            get(access::vhost_permissions),
        )
        .route(
            "/api/vhosts/{name}/topic-permissions",
            get(access::vhost_topic_permissions),
        )
        .route("/api/users", get(access::users))
        .route(
            "/api/users/{name}",
            get(access::user)
                .put(access::put_user)
                .delete(access::delete_user),
        )
        .route(
            "/api/users/{name}/permissions",
            get(access::user_permissions),
        )
        .route(
            "/api/users/{name}/topic-permissions",
            get(access::user_topic_permissions),
        )
        .route("/api/permissions", get(access::permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(access::permission)
                .put(access::put_permission)
                .delete(access::delete_permission),
        )
        .route("/api/topic-permissions", get(access::topic_permissions))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(access::topic_permission)
                .put(access::put_topic_permission)
                .delete(access::delete_topic_permission),
        )
        .route(
            "/api/definitions",
            get(access::definitions).post(access::import_definitions),
        )
        .route(
            "/api/definitions/{vhost}",
            get(access::vhost_definitions).post(access::import_vhost_definitions),
        )
        .route("/api/policies", get(access::policies))
        .route("/api/policies/{vhost}", get(access::vhost_policies))
        .route(
            "/api/policies/{vhost}/{name}",
            get(access::policy)
                .put(access::put_policy)
                .delete(access::delete_policy),
        )
        .route("/api/health/checks/alarms", get(health::alarms))
        .route("/api/health/checks/local-alarms", get(health::alarms))
        .route(
            "/api/health/checks/port-listener/{port}",
            get(health::port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health::protocol_listener),
        )
        .route(
            "/api/health/checks/virtual-hosts",
            get(health::virtual_hosts),
        )
        .route("/api/aliveness-test/{vhost}", get(health::aliveness))
        .route("/api/nodes", get(health::nodes))
        .route("/api/mqtt/sessions", get(mqtt_sessions))
        .route("/api/mqtt/retained", get(mqtt_retained))
        .route("/api/mqtt/topics", get(mqtt_topics))
        .route("/api/nodes/{name}", get(health::node))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            management.clone(),
            authenticate,
        ))
        .with_state(management);
    // The UI's pages need no login (they log in against the API); routes added after the
    // authentication layer are outside it.
    let app = ui::routes().merge(app);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await;
    if let Err(error) = served {
        tracing::error!(%error, "management listener failed");
    }
}

/// A JSON answer.
fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The exchange a path segment names: RabbitMQ's API calls the default exchange
/// `amq.default`.
fn exchange_in_path(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

/// RabbitMQ's error shape.
fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    json_response(status, &json!({ "error": error, "reason": reason }))
}

/// 401 unless the caller is an administrator (what writes need until permissions exist).
fn administrator(request: &Request) -> Result<(), Response> {
    let allowed = request
        .extensions()
        .get::<Caller>()
        .is_some_and(|caller| caller.tags.iter().any(|tag| tag == "administrator"));
    if allowed {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not administrator user",
        ))
    }
}

/// The largest request body accepted (a published message included).
const MAX_BODY: usize = 64 << 20;

/// An administrator's request body as a JSON object (an empty body is an empty object).
async fn administrator_body(request: Request) -> Result<serde_json::Map<String, Value>, Response> {
    administrator(&request)?;
    json_body(request).await
}

/// What a write does to which object, checked against the caller's permissions.
type Needs<'a> = &'a [(crate::auth::Access, crate::auth::Resource, &'a str)];

/// Whether the caller may make a write in `vhost`: administrators may make any; other
/// management users what their permissions in the vhost allow, as RabbitMQ checks the API's
/// writes against the user's configure / write / read patterns.
fn permitted(
    management: &Management,
    request: &Request,
    vhost: &str,
    needs: Needs<'_>,
) -> Result<(), Response> {
    let Some(caller) = request.extensions().get::<Caller>() else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Login failed",
        ));
    };
    if caller.is_administrator() {
        return Ok(());
    }
    let mut check =
        crate::auth::AccessCheck::new(management.core.users().clone(), &caller.name, vhost, "");
    if !check.vhost_allowed() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            &check.vhost_refusal().0,
        ));
    }
    for (access, resource, name) in needs {
        if let Err(refused) = check.check(*access, *resource, name) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "not_authorised",
                &refused.0,
            ));
        }
    }
    Ok(())
}

/// The body of a permitted write (see [`permitted`]) as a JSON object.
async fn permitted_body(
    management: &Management,
    request: Request,
    vhost: &str,
    needs: Needs<'_>,
) -> Result<serde_json::Map<String, Value>, Response> {
    permitted(management, &request, vhost, needs)?;
    json_body(request).await
}

/// A request body as a JSON object (an empty body is an empty object).
async fn json_body(request: Request) -> Result<serde_json::Map<String, Value>, Response> {
    let bad = |reason: &str| error(StatusCode::BAD_REQUEST, "bad_request", reason);
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| bad("body too large"))?;
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(parse) => Err(bad(&format!("not JSON: {parse}"))),
    }
}

/// The vhost named in a path, or 404.
fn vhost_or_404(management: &Management, name: &str) -> Result<Arc<crate::core::Vhost>, Response> {
    management
        .core
        .vhost(name)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"))
}

/// The vhost named in a path if the caller sees it (see [`Caller::sees_vhost`]), or 404.
fn visible_vhost(
    management: &Management,
    caller: &Caller,
    name: &str,
) -> Result<Arc<crate::core::Vhost>, Response> {
    if !caller.sees_vhost(management, name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "Object Not Found",
            "Not Found",
        ));
    }
    vhost_or_404(management, name)
}

/// HTTP basic authentication against the broker's users; a user needs a management tag.
async fn authenticate(
    State(management): State<Arc<Management>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    // The web UI asks with X-Requested-With and shows its own login form: no browser dialog.
    let from_ui = request.headers().contains_key("x-requested-with");
    let unauthorised = || {
        let mut response = error(StatusCode::UNAUTHORIZED, "not_authorised", "Login failed");
        if !from_ui {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    };
    let Some((user, password)) = basic_credentials(request.headers()) else {
        return unauthorised();
    };
    let users = management.core.users();
    if let Err(login) = users.login(&user, password.as_bytes(), peer) {
        tracing::warn!(%peer, %login, "management API login refused");
        return unauthorised();
    }
    let tags = users.tags(&user);
    if !tags
        .iter()
        .any(|tag| MANAGEMENT_TAGS.contains(&tag.as_str()))
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not management user",
        );
    }
    request.extensions_mut().insert(Caller { name: user, tags });
    next.run(request).await
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
}

async fn whoami(request: Request) -> Response {
    match request.extensions().get::<Caller>() {
        Some(caller) => json_response(
            StatusCode::OK,
            &json!({ "name": caller.name, "tags": caller.tags }),
        ),
        None => error(StatusCode::UNAUTHORIZED, "not_authorised", "Login failed"),
    }
}

async fn overview(State(management): State<Arc<Management>>) -> Response {
    let (mut ready, mut unacked, mut queues, mut consumers, mut exchanges) = (0u64, 0u64, 0, 0, 0);
    // Per protocol family: MQTT's queues are its sessions' (and shared subscriptions'),
    // named as RabbitMQ's MQTT plugin names them; their consumers are subscriptions.
    let (mut mqtt_queues, mut mqtt_consumers) = (0u64, 0u64);
    for vhost in management.core.vhosts() {
        exchanges += vhost.exchanges().len();
        for queue in vhost.queues() {
            let counts = queue.counts();
            queues += 1;
            ready += u64::from(counts.ready);
            unacked += u64::from(counts.unacked);
            consumers += u64::from(counts.consumers);
            if queue.name.starts_with("mqtt-subscription-")
                || queue.name.starts_with("mqtt-shared-")
            {
                mqtt_queues += 1;
                mqtt_consumers += u64::from(counts.consumers);
            }
        }
    }
    let connections = management.stats.connections();
    let channels: usize = connections.iter().map(|c| c.channel_count()).sum();
    let mqtt_connections = connections
        .iter()
        .filter(|connection| connection.protocol().is_mqtt())
        .count();
    let node = &management.identity.node;
    let listeners: Vec<Value> = management
        .listeners
        .iter()
        .map(|(protocol, address)| {
            json!({
                "node": node,
                "protocol": protocol,
                "ip_address": address.ip().to_string(),
                "port": address.port(),
            })
        })
        .collect();
    let version = env!("CARGO_PKG_VERSION");
    // RabbitMQ's message_stats counters (rates come from the difference between two
    // samples), overall and, for the web UI, per protocol family.
    let by_protocol = management.stats.message_totals_by_protocol();
    let stats_json = |totals: &crate::stats::MessageTotals| {
        json!({
            "publish": totals.received(),
            "confirm": totals.confirmed,
            "return_unroutable": totals.unroutable_returned,
            "drop_unroutable": totals.unroutable_dropped,
            "deliver": totals.delivered_consume_manual_ack,
            "deliver_no_ack": totals.delivered_consume_auto_ack,
            "get": totals.delivered_get_manual_ack,
            "get_no_ack": totals.delivered_get_auto_ack,
            "get_empty": totals.get_empty,
            "deliver_get": totals.delivered(),
            "redeliver": totals.redelivered,
            "ack": totals.acknowledged,
        })
    };
    let mut amqp = crate::stats::MessageTotals::default();
    let mut mqtt = crate::stats::MessageTotals::default();
    let mut all = crate::stats::MessageTotals::default();
    for (protocol, totals) in crate::stats::Protocol::ALL.iter().zip(&by_protocol) {
        if protocol.is_mqtt() {
            mqtt.add(totals);
        } else {
            amqp.add(totals);
        }
        all.add(totals);
    }
    let uptime_ms = u64::try_from(management.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    json_response(
        StatusCode::OK,
        &json!({
            "management_version": version,
            "product_name": "warren",
            "product_version": version,
            "rabbitmq_version": version,
            "erlang_version": "none (warren is written in Rust)",
            "cluster_name": management.identity.cluster,
            "node": node,
            "queue_totals": {
                "messages": ready + unacked,
                "messages_ready": ready,
                "messages_unacknowledged": unacked,
            },
            "object_totals": {
                "connections": connections.len(),
                "channels": channels,
                "exchanges": exchanges,
                "queues": queues,
                "consumers": consumers,
            },
            "listeners": listeners,
            "object_totals_by_protocol": {
                "amqp": {
                    "connections": connections.len() - mqtt_connections,
                    "channels": channels,
                    "queues": queues as u64 - mqtt_queues,
                    "consumers": consumers - mqtt_consumers,
                },
                "mqtt": {
                    "connections": mqtt_connections,
                    "channels": 0,
                    "queues": mqtt_queues,
                    "consumers": mqtt_consumers,
                },
            },
            "message_stats": stats_json(&all),
            "message_stats_by_protocol": {
                "amqp": stats_json(&amqp),
                "mqtt": stats_json(&mqtt),
            },
            "uptime": uptime_ms,
        }),
    )
}

/// A queue as RabbitMQ's `/api/queues` lists it (the fields tools read).
fn queue_json(vhost: &str, node: &str, queue: &Queue) -> Value {
    let metrics = queue.metrics();
    let counts = metrics.counts;
    let arguments = crate::core::definitions::table_to_json(&queue.arguments);
    let policy = queue.policy();
    json!({
        "name": queue.name,
        "vhost": vhost,
        "node": node,
        "type": if queue.is_quorum() { "quorum" } else { "classic" },
        "state": "running",
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner.is_some(),
        "arguments": arguments,
        "consumers": counts.consumers,
        "messages": u64::from(counts.ready) + u64::from(counts.unacked),
        "messages_ready": counts.ready,
        "messages_unacknowledged": counts.unacked,
        "message_bytes": metrics.bytes,
        "message_bytes_ready": metrics.bytes.saturating_sub(metrics.unacked_bytes),
        "message_bytes_unacknowledged": metrics.unacked_bytes,
        "message_bytes_paged_out": metrics.paged_bytes,
        "messages_paged_out": metrics.paged,
        "messages_persistent": metrics.persistent,
        // Counters since the queue was created; the UI turns them into rates.
        "message_stats": {
            "publish": metrics.published,
            "deliver_get": metrics.delivered,
        },
        "policy": policy.as_ref().map(|p| p.name().to_string()),
        "effective_policy_definition": policy
            .as_ref()
            .map_or_else(|| json!({}), |p| Value::Object(p.definition.definition.clone())),
    })
}

/// The vhost named, or every vhost; None when the named one does not exist.
/// Vhosts the caller does not see are left out (and a named one is missing).
fn selected_vhosts(
    management: &Management,
    caller: &Caller,
    vhost_name: Option<&str>,
) -> Option<Vec<Arc<crate::core::Vhost>>> {
    let mut vhosts = match vhost_name {
        Some(name) => vec![management.core.vhost(name)?],
        None => management.core.vhosts(),
    };
    vhosts.retain(|vhost| caller.sees_vhost(management, &vhost.name));
    if vhost_name.is_some() && vhosts.is_empty() {
        return None;
    }
    Some(vhosts)
}

/// The queues of the vhost named (or of every vhost the caller sees), by vhost then name,
/// with their vhost's name; None when the named vhost does not exist or is not visible.
fn queues_of(
    management: &Management,
    caller: &Caller,
    vhost_name: Option<&str>,
) -> Option<Vec<(String, Arc<Queue>)>> {
    let vhosts = selected_vhosts(management, caller, vhost_name)?;
    // Direct reply-to needs no queue in RabbitMQ, so its lists show none; warren's hidden
    // ones stay out of them too.
    let reply_prefix = format!("{}.", crate::core::vhost::REPLY_TO);
    let mut queues = Vec::new();
    for vhost in vhosts {
        let mut listed: Vec<Arc<Queue>> = vhost.queues();
        listed.retain(|queue| !queue.name.starts_with(&reply_prefix));
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        queues.extend(listed.into_iter().map(|queue| (vhost.name.clone(), queue)));
    }
    Some(queues)
}

/// A list of queues with RabbitMQ's list parameters; only the page's queues are serialised
/// when the list is sorted by name (see [`listing::list_lazily`]).
fn queue_list_response(
    management: &Management,
    queues: Vec<(String, Arc<Queue>)>,
    query: &HashMap<String, String>,
) -> Response {
    let node = &management.identity.node;
    let listed = listing::list_lazily(
        queues,
        query,
        |(_, queue)| queue.name.as_str(),
        |(vhost, queue)| queue_json(vhost, node, queue),
    );
    match listed {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(listing::BadRequest(reason)) => error(StatusCode::BAD_REQUEST, "bad_request", &reason),
    }
}

/// A list answer after RabbitMQ's list parameters; 400 for bad ones.
fn list_response(items: Vec<Value>, query: &HashMap<String, String>) -> Response {
    match listing::list(items, query) {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(listing::BadRequest(reason)) => error(StatusCode::BAD_REQUEST, "bad_request", &reason),
    }
}

async fn all_queues(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    let queues = queues_of(&management, &caller, None).unwrap_or_default();
    queue_list_response(&management, queues, &query)
}

async fn vhost_queues(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    match queues_of(&management, &caller, Some(&vhost)) {
        Some(queues) => queue_list_response(&management, queues, &query),
        None => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    }
}

/// An exchange as RabbitMQ's `/api/exchanges` lists it.
fn exchange_json(vhost: &str, exchange: &crate::core::Exchange) -> Value {
    json!({
        "name": exchange.name,
        "vhost": vhost,
        "type": exchange.kind.as_str(),
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": crate::core::definitions::table_to_json(&exchange.arguments),
        "policy": exchange.policy().map(|p| p.name().to_string()),
    })
}

fn exchanges_of(
    management: &Management,
    caller: &Caller,
    vhost_name: Option<&str>,
) -> Option<Vec<Value>> {
    let vhosts = selected_vhosts(management, caller, vhost_name)?;
    let mut exchanges = Vec::new();
    for vhost in vhosts {
        let mut listed = vhost.exchanges();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        exchanges.extend(
            listed
                .iter()
                .map(|exchange| exchange_json(&vhost.name, exchange)),
        );
    }
    Some(exchanges)
}

async fn all_exchanges(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    let exchanges = exchanges_of(&management, &caller, None).unwrap_or_default();
    list_response(exchanges, &query)
}

async fn vhost_exchanges(
    State(management): State<Arc<Management>>,
    Path(vhost): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    match exchanges_of(&management, &caller, Some(&vhost)) {
        Some(exchanges) => list_response(exchanges, &query),
        None => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    }
}

async fn one_exchange(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    caller: Caller,
) -> Response {
    let found = visible_vhost(&management, &caller, &vhost_name)
        .ok()
        .and_then(|vhost| {
            let exchange = vhost.exchange(exchange_in_path(&name)).ok()?;
            Some((vhost, exchange))
        });
    match found {
        Some((vhost, exchange)) => {
            json_response(StatusCode::OK, &exchange_json(&vhost.name, &exchange))
        }
        None => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    }
}

/// A connection as RabbitMQ's `/api/connections` lists it.
fn connection_json(node: &str, connection: &crate::stats::ConnectionStats) -> Value {
    let identity = connection.identity().unwrap_or_default();
    let protocol = match connection.protocol() {
        crate::stats::Protocol::Amqp091 => "AMQP 0-9-1",
        crate::stats::Protocol::Mqtt310 => "MQTT 3.1",
        crate::stats::Protocol::Mqtt311 => "MQTT 3.1.1",
        crate::stats::Protocol::Mqtt50 => "MQTT 5.0",
    };
    let local = connection.local;
    json!({
        "name": connection.name(),
        "node": node,
        "type": "network",
        "state": "running",
        "protocol": protocol,
        "user": identity.user,
        "vhost": identity.vhost,
        "peer_host": connection.peer.ip().to_string(),
        "peer_port": connection.peer.port(),
        "host": local.map(|l| l.ip().to_string()),
        "port": local.map(|l| l.port()),
        "ssl": matches!(connection.transport, "tls" | "wss"),
        "transport": connection.transport,
        "channels": connection.channel_count(),
        // RabbitMQ's fields for the client's own name: MQTT's client id, AMQP's
        // `connection_name` property.
        "client_properties": if connection.protocol().is_mqtt() {
            json!({ "client_id": identity.client })
        } else if identity.client.is_empty() {
            json!({})
        } else {
            json!({ "connection_name": identity.client })
        },
        "user_provided_name": (!connection.protocol().is_mqtt() && !identity.client.is_empty())
            .then_some(&identity.client),
        "recv_oct": connection.bytes_in.get(),
        "send_oct": connection.bytes_out.get(),
        "recv_cnt": connection.reads.get(),
        "send_cnt": connection.writes.get(),
    })
}

/// Whether the caller sees a connection: one in a vhost it sees (management users: its own).
fn sees_connection(
    management: &Management,
    caller: &Caller,
    connection: &crate::stats::ConnectionStats,
) -> bool {
    let identity = connection.identity().unwrap_or_default();
    if caller
        .tags
        .iter()
        .any(|tag| tag == "administrator" || tag == "monitoring")
    {
        return true;
    }
    identity.user == caller.name && caller.sees_vhost(management, &identity.vhost)
}

/// Every client connection, AMQP and MQTT, as RabbitMQ's `/api/connections` lists them.
async fn connections(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    let node = &management.identity.node;
    let mut listed: Vec<Value> = management
        .stats
        .connections()
        .iter()
        .filter(|connection| sees_connection(&management, &caller, connection))
        .map(|connection| connection_json(node, connection))
        .collect();
    listed.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    list_response(listed, &query)
}

/// `GET /api/connections/{name}`.
async fn one_connection(
    State(management): State<Arc<Management>>,
    Path(name): Path<String>,
    caller: Caller,
) -> Response {
    let found = management
        .stats
        .connections()
        .into_iter()
        .find(|connection| connection.name() == name)
        .filter(|connection| sees_connection(&management, &caller, connection));
    match found {
        Some(connection) => json_response(
            StatusCode::OK,
            &connection_json(&management.identity.node, &connection),
        ),
        None => not_found().await,
    }
}

/// Every AMQP channel, as RabbitMQ's `/api/channels` lists them.
async fn channels(
    State(management): State<Arc<Management>>,
    Query(query): Query<HashMap<String, String>>,
    caller: Caller,
) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let node = &management.identity.node;
    let mut listed = Vec::new();
    for connection in management.stats.connections() {
        if !sees_connection(&management, &caller, &connection) {
            continue;
        }
        let identity = connection.identity().unwrap_or_default();
        let connection_name = connection.name();
        for channel in connection.channels() {
            let counts = channel.message_totals();
            listed.push(json!({
                "name": format!("{connection_name} ({})", channel.number),
                "number": channel.number,
                "node": node,
                "state": "running",
                "user": identity.user,
                "vhost": identity.vhost,
                "connection_details": {
                    "name": connection_name,
                    "peer_host": connection.peer.ip().to_string(),
                    "peer_port": connection.peer.port(),
                },
                "consumer_count": channel.consumers.load(Relaxed),
                "prefetch_count": channel.prefetch.load(Relaxed),
                "messages_unacknowledged": counts.unacknowledged(),
                "messages_unconfirmed": counts.unconfirmed(),
                "message_stats": {
                    "publish": counts.received(),
                    "confirm": counts.confirmed,
                    "return_unroutable": counts.unroutable_returned,
                    "drop_unroutable": counts.unroutable_dropped,
                    "deliver": counts.delivered_consume_manual_ack,
                    "deliver_no_ack": counts.delivered_consume_auto_ack,
                    "get": counts.delivered_get_manual_ack,
                    "get_no_ack": counts.delivered_get_auto_ack,
                    "get_empty": counts.get_empty,
                    "deliver_get": counts.delivered(),
                    "redeliver": counts.redelivered,
                    "ack": counts.acknowledged,
                },
            }));
        }
    }
    listed.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    list_response(listed, &query)
}

async fn one_queue(
    State(management): State<Arc<Management>>,
    Path((vhost_name, name)): Path<(String, String)>,
    caller: Caller,
) -> Response {
    // Looked up among all queues: the API sees exclusive queues of any connection.
    let found = visible_vhost(&management, &caller, &vhost_name)
        .ok()
        .and_then(|vhost| {
            let queue = vhost
                .queues()
                .into_iter()
                .find(|queue| queue.name == name)?;
            Some((vhost, queue))
        });
    match found {
        Some((vhost, queue)) => json_response(
            StatusCode::OK,
            &queue_json(&vhost.name, &management.identity.node, &queue),
        ),
        None => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    }
}

/// warren's own: every MQTT session (online and offline) in the vhosts the caller sees, with
/// its subscriptions and queued messages — what RabbitMQ's UI does not show.
async fn mqtt_sessions(State(management): State<Arc<Management>>, caller: Caller) -> Response {
    let sessions: Vec<Value> = management
        .mqtt
        .session_summaries()
        .into_iter()
        .filter(|session| caller.sees_vhost(&management, &session.vhost))
        .map(|session| {
            let subscriptions: Vec<Value> = session
                .subscriptions
                .iter()
                .map(|(filter, qos)| json!({ "filter": filter, "qos": qos }))
                .collect();
            json!({
                "vhost": session.vhost,
                "client_id": session.client_id,
                "online": session.online,
                "subscriptions": subscriptions,
                "queued_messages": session.queued,
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(sessions))
}

/// Most payload bytes `/api/mqtt/retained` shows of each message.
const RETAINED_PREVIEW: usize = 256;

/// warren's own: the retained messages in the vhosts the caller sees.
async fn mqtt_retained(State(management): State<Arc<Management>>, caller: Caller) -> Response {
    let retained: Vec<Value> = management
        .mqtt
        .retained_messages()
        .into_iter()
        .filter(|(vhost, ..)| caller.sees_vhost(&management, vhost))
        .map(|(vhost, topic, qos, body)| {
            let preview = &body[..body.len().min(RETAINED_PREVIEW)];
            json!({
                "vhost": vhost,
                "topic": topic,
                "qos": qos,
                "payload_bytes": body.len(),
                "payload": String::from_utf8_lossy(preview),
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(retained))
}

/// warren's own: the topics MQTT clients published to lately (up to 2,000, newest first),
/// with the seconds since the last publish, in the vhosts the caller sees.
async fn mqtt_topics(State(management): State<Arc<Management>>, caller: Caller) -> Response {
    let topics: Vec<Value> = management
        .mqtt
        .recent_topics
        .list()
        .into_iter()
        .filter(|(vhost, ..)| caller.sees_vhost(&management, vhost))
        .map(|(vhost, topic, age)| json!({ "vhost": vhost, "topic": topic, "seconds_ago": age }))
        .collect();
    json_response(StatusCode::OK, &Value::Array(topics))
}
