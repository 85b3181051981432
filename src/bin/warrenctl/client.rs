//! The management API over plain HTTP: basic authentication, path encoding, and the mapping of
//! transport failures and HTTP statuses to rabbitmqctl's messages and exit codes.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// Exit codes, from sysexits(3) as rabbitmqctl uses them.
pub(crate) mod exit {
    /// Bad command line.
    pub(crate) const USAGE: u8 = 64;
    /// Bad input, or an object that does not exist.
    pub(crate) const DATA: u8 = 65;
    /// A file to read is missing or unreadable.
    pub(crate) const NO_INPUT: u8 = 66;
    /// A user that does not exist.
    pub(crate) const NO_USER: u8 = 67;
    /// The node cannot be reached, or it refused the operation.
    pub(crate) const UNAVAILABLE: u8 = 69;
    /// The node answered something warrenctl does not understand.
    pub(crate) const SOFTWARE: u8 = 70;
    /// A file to write cannot be created.
    pub(crate) const CANT_CREATE: u8 = 73;
    /// Standard output could not be written.
    pub(crate) const IO: u8 = 74;
    /// The operation did not finish within the timeout.
    pub(crate) const TEMP_FAIL: u8 = 75;
    /// The credentials were refused (401) or lack a permission (403).
    pub(crate) const NO_PERMISSION: u8 = 77;
}

/// Why a command failed: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong, printed after `Error: `.
    pub(crate) message: String,
    /// The process exit code.
    pub(crate) code: u8,
}

impl Failure {
    /// A failure with `code`.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code,
        }
    }

    /// Bad input ([`exit::DATA`]).
    pub(crate) fn data(message: impl Into<String>) -> Failure {
        Failure::new(exit::DATA, message)
    }

    /// A bad command line ([`exit::USAGE`]).
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }
}

/// Where the node is and how to log in.
pub(crate) struct Settings {
    /// Base URL of the management API, e.g. `http://localhost:15672`.
    pub(crate) url: String,
    /// Management user.
    pub(crate) username: String,
    /// Its password.
    pub(crate) password: String,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// An HTTP answer of any status.
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: u16,
    /// The body, as text.
    pub(crate) body: String,
}

impl Reply {
    /// The `reason` (or else `error`) of RabbitMQ's `{"error": ..., "reason": ...}` error body,
    /// or the body itself when it is not that shape.
    pub(crate) fn reason(&self) -> String {
        let parsed: Option<Value> = serde_json::from_str(&self.body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|value| value.get(name))
                .and_then(|value| match value {
                    Value::String(text) => Some(text.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
        };
        field("reason")
            .or_else(|| field("error"))
            .unwrap_or_else(|| self.body.trim().to_string())
    }
}

/// The HTTP methods warrenctl uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Read.
    Get,
    /// Create or update.
    Put,
    /// Delete.
    Delete,
    /// Import definitions.
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Post => "POST",
        }
    }
}

/// A blocking client of one node's management API.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
    username: String,
    timeout: Duration,
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so that
/// the default vhost `/` becomes `%2F` as the API expects.
pub(crate) fn encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `/api/` followed by the encoded `segments`.
pub(crate) fn api(segments: &[&str]) -> String {
    let mut path = String::from("/api");
    for segment in segments {
        path.push('/');
        path.push_str(&encode(segment));
    }
    path
}

impl Client {
    /// A client for the node `settings` names. Refuses `https://` (warrenctl carries no TLS
    /// stack) and anything that is not an HTTP URL.
    pub(crate) fn new(settings: Settings) -> Result<Client, Failure> {
        let base = settings.url.trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            return Err(Failure::usage(format!(
                "{base}: warrenctl speaks plain HTTP only; give the management API's http:// URL"
            )));
        }
        if !base.starts_with("http://") {
            return Err(Failure::usage(format!(
                "{base} is not a management API URL (expected http://HOST:PORT)"
            )));
        }
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", settings.username, settings.password));
        Ok(Client {
            agent: ureq::AgentBuilder::new()
                .timeout(settings.timeout)
                // The node must be reached directly: a redirect would carry the credentials
                // elsewhere.
                .redirects(0)
                .build(),
            base,
            authorization: format!("Basic {credentials}"),
            username: settings.username,
            timeout: settings.timeout,
        })
    }

    /// The base URL, as messages name the node.
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    /// The per-request timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request and returns the answer whatever its status; fails only when no answer
    /// came (node unreachable, timeout).
    pub(crate) fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .agent
            .request(method.as_str(), &url)
            .set("Authorization", &self.authorization)
            .set("Accept", "application/json");
        if let Some(reason) = reason {
            request = request.set("X-Reason", reason);
        }
        let outcome = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(body),
            None => request.call(),
        };
        let response = match outcome {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => return Err(self.unreachable(&transport)),
        };
        let status = response.status();
        let mut text = String::new();
        // `into_string` stops at 10 MB; exported definitions may be larger.
        response
            .into_reader()
            .read_to_string(&mut text)
            .map_err(|error| {
                Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "the node at {} broke off its answer to {} {path}: {error}",
                        self.base,
                        method.as_str()
                    ),
                )
            })?;
        Ok(Reply { status, body: text })
    }

    fn unreachable(&self, transport: &ureq::Transport) -> Failure {
        let timed_out = std::error::Error::source(transport)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                )
            });
        if timed_out {
            return Failure::new(
                exit::TEMP_FAIL,
                format!(
                    "operation on the node at {} timed out. Timeout value used: {} seconds",
                    self.base,
                    self.timeout.as_secs_f64()
                ),
            );
        }
        Failure::new(
            exit::UNAVAILABLE,
            format!(
                "unable to perform an operation on the node at {}: {transport}. Is warren \
                 running there with its management API on (see --url, -n, WARRENCTL_URL)?",
                self.base
            ),
        )
    }

    /// Turns a non-2xx reply into the failure a user should see; `missing` says what a 404
    /// means for this request.
    pub(crate) fn check(
        &self,
        reply: Reply,
        missing: impl FnOnce() -> Failure,
    ) -> Result<Reply, Failure> {
        match reply.status {
            200..=299 => Ok(reply),
            404 => Err(missing()),
            401 => Err(Failure::new(
                exit::NO_PERMISSION,
                format!(
                    "access refused: the node at {} did not accept user '{}' ({}); check \
                     --username and --password (WARRENCTL_USERNAME, WARRENCTL_PASSWORD)",
                    self.base,
                    self.username,
                    reply.reason()
                ),
            )),
            403 => Err(Failure::new(
                exit::NO_PERMISSION,
                format!(
                    "access refused for user '{}': {}",
                    self.username,
                    reply.reason()
                ),
            )),
            400 | 409 | 412 | 415 | 422 => Err(Failure::data(reply.reason())),
            405 => Err(Failure::new(
                exit::SOFTWARE,
                format!(
                    "the node at {} does not support this operation ({})",
                    self.base,
                    reply.reason()
                ),
            )),
            status => Err(Failure::new(
                exit::UNAVAILABLE,
                format!(
                    "the node at {} answered {status}: {}",
                    self.base,
                    reply.reason()
                ),
            )),
        }
    }

    /// `GET path` as JSON; `missing` says what a 404 means.
    pub(crate) fn get(
        &self,
        path: &str,
        missing: impl FnOnce() -> Failure,
    ) -> Result<Value, Failure> {
        let reply = self.send(Method::Get, path, None, None)?;
        let reply = self.check(reply, missing)?;
        serde_json::from_str(&reply.body).map_err(|error| {
            Failure::new(
                exit::SOFTWARE,
                format!(
                    "the node at {} answered GET {path} with something that is not JSON: {error}",
                    self.base
                ),
            )
        })
    }

    /// `GET path`, which must answer a JSON array.
    pub(crate) fn get_list(
        &self,
        path: &str,
        missing: impl FnOnce() -> Failure,
    ) -> Result<Vec<Value>, Failure> {
        match self.get(path, missing)? {
            Value::Array(items) => Ok(items),
            // Paged answers (`?page=`) wrap the list; warrenctl never asks for one, but a
            // proxy or a newer node might.
            Value::Object(mut paged) => match paged.remove("items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Err(self.not_a_list(path)),
            },
            _ => Err(self.not_a_list(path)),
        }
    }

    fn not_a_list(&self, path: &str) -> Failure {
        Failure::new(
            exit::SOFTWARE,
            format!(
                "the node at {} answered GET {path} with something that is not a list",
                self.base
            ),
        )
    }

    /// A write (`PUT`, `DELETE`, `POST`) with an optional JSON body; `missing` says what a 404
    /// means.
    pub(crate) fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        missing: impl FnOnce() -> Failure,
    ) -> Result<(), Failure> {
        let text = body.map(Value::to_string);
        let reply = self.send(method, path, text.as_deref(), None)?;
        self.check(reply, missing).map(|_| ())
    }
}
