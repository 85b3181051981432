//! Broker URIs: `amqp[s]://user:pass@host:port/vhost`, `mqtt[s]://user:pass@host:port` and
//! `ws[s]://user:pass@host:port/path` (MQTT over WebSocket).
//!
//! As RabbitMQ's URI spec: user, password and vhost are percent-decoded (`%2f` is `/`); the
//! default ports are 5672 (amqp), 5671 (amqps), 1883 (mqtt), 8883 (mqtts), 15675 (ws) and
//! 15676 (wss); an AMQP URI without a path, or with an empty one, selects vhost `/`; user and
//! password default to `guest`/`guest` for AMQP and to none for MQTT. A WebSocket URI's path is
//! the upgrade request's path, `/ws` when the URI has none (RabbitMQ Web MQTT's and warren's).

use std::fmt;

use anyhow::{anyhow, bail, Result};

use std::sync::Arc;

use super::transport::{Endpoint, Transport};

/// A parsed `amqp://` or `amqps://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AmqpUri {
    /// [`Transport::Tcp`] or [`Transport::Tls`].
    pub(crate) transport: Transport,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) vhost: String,
}

/// A parsed `mqtt://`, `mqtts://`, `ws://` or `wss://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MqttUri {
    pub(crate) transport: Transport,
    /// The WebSocket path (with its leading `/`); empty for TCP and TLS.
    pub(crate) path: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

/// Either kind, as `--uri` accepts both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrokerUri {
    Amqp(AmqpUri),
    Mqtt(MqttUri),
}

impl BrokerUri {
    /// Parses an AMQP (`amqp`, `amqps`) or MQTT (`mqtt`, `mqtts`, `ws`, `wss`) URI.
    pub(crate) fn parse(uri: &str) -> Result<BrokerUri> {
        let (scheme, _) = uri
            .split_once("://")
            .ok_or_else(|| anyhow!("URI {uri:?}: expected amqp://… or mqtt://…"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "amqp" | "amqps" => AmqpUri::parse(uri).map(BrokerUri::Amqp),
            "mqtt" | "tcp" | "mqtts" | "ssl" | "ws" | "wss" => {
                MqttUri::parse(uri).map(BrokerUri::Mqtt)
            }
            other => bail!(
                "URI {uri:?}: unknown scheme {other:?} \
                 (use amqp://, amqps://, mqtt://, mqtts://, ws:// or wss://)"
            ),
        }
    }

    /// How the URI's connections are carried.
    pub(crate) fn transport(&self) -> Transport {
        match self {
            BrokerUri::Amqp(a) => a.transport,
            BrokerUri::Mqtt(m) => m.transport,
        }
    }
}

/// The scheme of `uri`, lower case (empty when there is none).
fn scheme_of(uri: &str) -> String {
    uri.split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The parts every scheme shares.
struct Parts {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    /// The path without its leading `/`, not yet decoded; `None` when there is no path.
    path: Option<String>,
}

fn split(uri: &str, scheme: &str) -> Result<Parts> {
    let rest = uri
        .split_once("://")
        .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("URI {uri:?}: expected {scheme}://"))?;
    if rest.contains('?') || rest.contains('#') {
        bail!("URI {uri:?}: query strings and fragments are not supported");
    }
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p.to_string())),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (Some(decode(user)?), Some(decode(pass)?)),
            None => (Some(decode(u)?), None),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| anyhow!("URI {uri:?}: unterminated IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| anyhow!("URI {uri:?}: junk after the IPv6 address"))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        bail!("URI {uri:?}: no host");
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| anyhow!("URI {uri:?}: bad port {p:?}"))?,
        ),
    };
    Ok(Parts {
        host,
        port,
        user,
        password,
        path,
    })
}

/// Percent-decodes `s` (`%2f` → `/`); `+` stays as it is.
fn decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("{s:?} does not decode to UTF-8"))
}

impl AmqpUri {
    /// Parses `amqp[s]://[user[:pass]@]host[:port][/vhost]`.
    pub(crate) fn parse(uri: &str) -> Result<AmqpUri> {
        let (scheme, transport, default_port) = match scheme_of(uri).as_str() {
            "amqps" => ("amqps", Transport::Tls, 5671),
            _ => ("amqp", Transport::Tcp, 5672),
        };
        let p = split(uri, scheme)?;
        let vhost = match p.path.as_deref() {
            None | Some("") => "/".to_string(),
            Some(v) => decode(v)?,
        };
        Ok(AmqpUri {
            transport,
            host: p.host,
            port: p.port.unwrap_or(default_port),
            user: p.user.unwrap_or_else(|| "guest".into()),
            password: p.password.unwrap_or_else(|| "guest".into()),
            vhost,
        })
    }

    /// Where and how to connect.
    pub(crate) fn endpoint<'a>(
        &'a self,
        tls: Option<&'a Arc<rustls::ClientConfig>>,
    ) -> Endpoint<'a> {
        Endpoint {
            host: &self.host,
            port: self.port,
            transport: self.transport,
            path: "",
            tls,
            idle: false,
        }
    }
}

impl MqttUri {
    /// Parses `mqtt[s]://[user[:pass]@]host[:port]` (`tcp://` and `ssl://` are accepted too)
    /// and `ws[s]://[user[:pass]@]host[:port][/path]`.
    pub(crate) fn parse(uri: &str) -> Result<MqttUri> {
        let scheme = scheme_of(uri);
        let (transport, default_port) = match scheme.as_str() {
            "mqtts" | "ssl" => (Transport::Tls, 8883),
            "ws" => (Transport::Ws, 15675),
            "wss" => (Transport::Wss, 15676),
            _ => (Transport::Tcp, 1883),
        };
        let scheme = match scheme.as_str() {
            s @ ("tcp" | "mqtts" | "ssl" | "ws" | "wss") => s,
            _ => "mqtt",
        };
        let p = split(uri, scheme)?;
        let path = match (transport, p.path) {
            (Transport::Ws | Transport::Wss, None) => "/ws".to_string(),
            (Transport::Ws | Transport::Wss, Some(path)) => format!("/{path}"),
            (_, Some(path)) if !path.is_empty() => {
                bail!("URI {uri:?}: an MQTT URI has no path (only ws:// and wss:// do)")
            }
            (_, _) => String::new(),
        };
        Ok(MqttUri {
            transport,
            path,
            host: p.host,
            port: p.port.unwrap_or(default_port),
            user: p.user,
            password: p.password,
        })
    }

    /// Where and how to connect.
    pub(crate) fn endpoint<'a>(
        &'a self,
        tls: Option<&'a Arc<rustls::ClientConfig>>,
    ) -> Endpoint<'a> {
        Endpoint {
            host: &self.host,
            port: self.port,
            transport: self.transport,
            path: &self.path,
            tls,
            idle: false,
        }
    }
}

/// Host for display: IPv6 addresses in brackets.
fn show_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl fmt::Display for AmqpUri {
    /// The URI with the password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vhost = self.vhost.replace('%', "%25").replace('/', "%2f");
        let scheme = match self.transport {
            Transport::Tcp => "amqp",
            _ => "amqps",
        };
        write!(
            f,
            "{scheme}://{}:***@{}:{}/{vhost}",
            self.user,
            show_host(&self.host),
            self.port
        )
    }
}

impl fmt::Display for MqttUri {
    /// The URI with the password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "mqtt",
            Transport::Tls => "mqtts",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        };
        let (host, port, path) = (show_host(&self.host), self.port, &self.path);
        match &self.user {
            Some(u) => write!(f, "{scheme}://{u}:***@{host}:{port}{path}"),
            None => write!(f, "{scheme}://{host}:{port}{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn amqp_defaults_and_vhost_decoding() {
        let u = AmqpUri::parse("amqp://localhost").unwrap();
        assert_eq!(
            u,
            AmqpUri {
                transport: Transport::Tcp,
                host: "localhost".into(),
                port: 5672,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into()
            }
        );
        assert_eq!(AmqpUri::parse("amqp://h/").unwrap().vhost, "/");
        let u = AmqpUri::parse("amqp://bob:s%40cret@10.0.0.1:5673/%2fprod").unwrap();
        assert_eq!((u.user.as_str(), u.password.as_str()), ("bob", "s@cret"));
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("10.0.0.1", 5673, "/prod")
        );
        assert_eq!(AmqpUri::parse("AMQP://h/dev").unwrap().vhost, "dev");
        assert_eq!(u.to_string(), "amqp://bob:***@10.0.0.1:5673/%2fprod");
    }

    #[test]
    fn ipv6_hosts() {
        let u = AmqpUri::parse("amqp://[::1]:5600/v").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5600));
        let m = MqttUri::parse("mqtt://[::1]").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("::1", 1883));
        assert_eq!(m.to_string(), "mqtt://[::1]:1883");
    }

    #[test]
    fn mqtt_uris() {
        let m = MqttUri::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((m.port, m.user.clone()), (1884, None));
        let m = MqttUri::parse("mqtt://dev:pw@h").unwrap();
        assert_eq!(
            (m.user.as_deref(), m.password.as_deref()),
            (Some("dev"), Some("pw"))
        );
        assert!(MqttUri::parse("tcp://h:1").is_ok());
        assert!(MqttUri::parse("mqtt://h/topic").is_err());
    }

    #[test]
    fn bad_uris_are_errors() {
        for bad in [
            "localhost:5672",
            "http://h",
            "amqps:/h",
            "mqtts://h/topic",
            "amqp://",
            "amqp://h:notaport",
            "amqp://h:70000",
            "amqp://h/%zz",
            "amqp://[::1",
            "amqp://h/?heartbeat=5",
        ] {
            assert!(BrokerUri::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            BrokerUri::parse("mqtt://h").unwrap(),
            BrokerUri::Mqtt(_)
        ));
        assert!(matches!(
            BrokerUri::parse("wss://h").unwrap(),
            BrokerUri::Mqtt(_)
        ));
        assert!(matches!(
            BrokerUri::parse("amqps://h").unwrap(),
            BrokerUri::Amqp(_)
        ));
        assert!(matches!(
            BrokerUri::parse("amqp://h").unwrap(),
            BrokerUri::Amqp(_)
        ));
    }
}

#[cfg(test)]
mod tls_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tls_and_websocket_schemes() {
        let a = AmqpUri::parse("amqps://h").unwrap();
        assert_eq!(
            (a.transport, a.port, a.vhost.as_str()),
            (Transport::Tls, 5671, "/")
        );
        assert_eq!(a.to_string(), "amqps://guest:***@h:5671/%2f");
        let a = AmqpUri::parse("AMQPS://u:p@h:5681/dev").unwrap();
        assert_eq!(
            (a.transport, a.port, a.vhost.as_str()),
            (Transport::Tls, 5681, "dev")
        );
        let m = MqttUri::parse("mqtts://h").unwrap();
        assert_eq!(
            (m.transport, m.port, m.path.as_str()),
            (Transport::Tls, 8883, "")
        );
        assert_eq!(MqttUri::parse("ssl://h").unwrap().transport, Transport::Tls);
        let m = MqttUri::parse("ws://h").unwrap();
        assert_eq!(
            (m.transport, m.port, m.path.as_str()),
            (Transport::Ws, 15675, "/ws")
        );
        assert_eq!(m.to_string(), "ws://h:15675/ws");
        let m = MqttUri::parse("wss://dev:pw@[::1]:9000/mqtt/x").unwrap();
        assert_eq!(
            (m.transport, m.port, m.path.as_str(), m.user.as_deref()),
            (Transport::Wss, 9000, "/mqtt/x", Some("dev"))
        );
        assert_eq!(m.to_string(), "wss://dev:***@[::1]:9000/mqtt/x");
        assert_eq!(MqttUri::parse("ws://h:1/").unwrap().path, "/");
        let m = MqttUri::parse("mqtt://h").unwrap();
        assert_eq!((m.transport, m.path.as_str()), (Transport::Tcp, ""));
    }
}
