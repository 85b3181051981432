//! `warren.conf`: the broker's settings in RabbitMQ's `rabbitmq.conf` format (the "sysctl"
//! format: one `key = value` per line, `#` starts a comment), with RabbitMQ's key names.
//!
//! [`parse`] reads a file into [`FileSettings`], one optional value per setting, which the
//! binary lays between the built-in defaults and the command line (flags win). An unknown
//! key or a bad value is an error naming the file, the line and what is wrong.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Settings a `warren.conf` gave; None where the file says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSettings {
    /// The address part of the `listeners.*.default` values (all listeners share one).
    pub bind: Option<IpAddr>,
    /// `listeners.tcp.default`.
    pub amqp_port: Option<u16>,
    /// `listeners.ssl.default`.
    pub amqps_port: Option<u16>,
    /// `mqtt.listeners.tcp.default`.
    pub mqtt_port: Option<u16>,
    /// `mqtt.listeners.ssl.default`.
    pub mqtts_port: Option<u16>,
    /// `web_mqtt.tcp.port`.
    pub ws_port: Option<u16>,
    /// `web_mqtt.ssl.port`.
    pub wss_port: Option<u16>,
    /// `prometheus.tcp.port`.
    pub prometheus_port: Option<u16>,
    /// `management.tcp.port`.
    pub management_port: Option<u16>,
    /// `ssl_options.certfile`.
    pub tls_cert: Option<PathBuf>,
    /// `ssl_options.keyfile`.
    pub tls_key: Option<PathBuf>,
    /// `ssl_options.cacertfile`.
    pub tls_ca: Option<PathBuf>,
    /// `ssl_options.verify` (`verify_peer` or `verify_none`).
    pub tls_verify_peer: Option<bool>,
    /// `ssl_options.fail_if_no_peer_cert`.
    pub tls_fail_if_no_peer_cert: Option<bool>,
    /// `mqtt.ssl_cert_login`.
    pub mqtt_ssl_cert_login: Option<bool>,
    /// `handshake_timeout`, in milliseconds as RabbitMQ has it.
    pub handshake_timeout_ms: Option<u64>,
    /// `connection_max` (`infinity` = no limit).
    pub max_connections: Option<usize>,
    /// `mqtt.exchange`.
    pub mqtt_exchange: Option<String>,
    /// `data_dir` (warren's own key: RabbitMQ sets its data directory in the environment).
    pub data_dir: Option<PathBuf>,
    /// `heartbeat`, seconds.
    pub heartbeat: Option<u16>,
    /// `frame_max`, bytes.
    pub frame_max: Option<u32>,
    /// `channel_max`.
    pub channel_max: Option<u16>,
    /// `vm_memory_high_watermark.absolute`, or `.relative` times the machine's memory.
    pub memory_high_watermark: Option<u64>,
    /// `disk_free_limit.absolute`.
    pub disk_free_limit: Option<u64>,
    /// `log.console.level`, as a tracing filter (`debug`, `info`, `warn`, `error`, `off`).
    pub log_level: Option<String>,
    /// `log.file`: where logs go instead of the console; `Some(None)` for `log.file = false`.
    pub log_file: Option<Option<PathBuf>>,
    /// `mqtt.allow_anonymous`.
    pub mqtt_allow_anonymous: Option<bool>,
    /// `mqtt.default_user`.
    pub mqtt_default_user: Option<String>,
    /// `mqtt.default_pass`.
    pub mqtt_default_pass: Option<String>,
    /// `default_user`.
    pub default_user: Option<String>,
    /// `default_pass`.
    pub default_pass: Option<String>,
    /// `default_vhost`.
    pub default_vhost: Option<String>,
    /// `mqtt.vhost`: the vhost of MQTT clients whose user name names none.
    pub mqtt_vhost: Option<String>,
    /// `load_definitions`: a definitions file imported at every start.
    pub load_definitions: Option<PathBuf>,
    /// `loopback_users = none` and `loopback_users.NAME = true|false`, in file order.
    pub loopback_users: Vec<LoopbackRule>,
}

/// One `loopback_users` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopbackRule {
    /// `loopback_users = none`: no user is loopback-only.
    None,
    /// `loopback_users.NAME = true|false`.
    User(String, bool),
}

impl FileSettings {
    /// The loopback-only users: `defaults` changed by the file's `loopback_users` lines.
    pub fn loopback_users(&self, defaults: &[String]) -> Vec<String> {
        let mut users = defaults.to_vec();
        for rule in &self.loopback_users {
            match rule {
                LoopbackRule::None => users.clear(),
                LoopbackRule::User(name, true) => {
                    if !users.contains(name) {
                        users.push(name.clone());
                    }
                }
                LoopbackRule::User(name, false) => users.retain(|user| user != name),
            }
        }
        users
    }
}

/// Why a `warren.conf` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("{path}, line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// Its 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// RabbitMQ keys warren knows but does not act on yet: refused with a clear word rather
/// than ignored, so nobody believes they took effect.
const NOT_YET: &[(&str, &str)] = &[
    ("default_user_tags.", "users"),
    ("default_permissions.", "permissions"),
];

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<FileSettings, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(line, message)| ConfigFileError::Line {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Parses the text of a `warren.conf`; an error carries the 1-based line number.
pub fn parse(text: &str) -> Result<FileSettings, (usize, String)> {
    let mut settings = FileSettings::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err((line, format!("expected `key = value`, found `{content}`")));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err((line, format!("`{key}` has no value")));
        }
        apply(&mut settings, key, value).map_err(|message| (line, message))?;
    }
    Ok(settings)
}

/// Sets one key.
fn apply(settings: &mut FileSettings, key: &str, value: &str) -> Result<(), String> {
    let s = settings;
    match key {
        "listeners.tcp.default" => s.amqp_port = Some(listener(s, key, value)?),
        "listeners.ssl.default" => s.amqps_port = Some(listener(s, key, value)?),
        "mqtt.listeners.tcp.default" => s.mqtt_port = Some(listener(s, key, value)?),
        "mqtt.listeners.ssl.default" => s.mqtts_port = Some(listener(s, key, value)?),
        "web_mqtt.tcp.port" => s.ws_port = Some(port(key, value)?),
        "web_mqtt.ssl.port" => s.wss_port = Some(port(key, value)?),
        "prometheus.tcp.port" => s.prometheus_port = Some(port(key, value)?),
        "management.tcp.port" => s.management_port = Some(port(key, value)?),
        "ssl_options.certfile" => s.tls_cert = Some(PathBuf::from(value)),
        "ssl_options.keyfile" => s.tls_key = Some(PathBuf::from(value)),
        "ssl_options.cacertfile" => s.tls_ca = Some(PathBuf::from(value)),
        "ssl_options.verify" => {
            s.tls_verify_peer = Some(match value {
                "verify_peer" => true,
                "verify_none" => false,
                _ => return Err(bad(key, value, "`verify_peer` or `verify_none`")),
            })
        }
        "ssl_options.fail_if_no_peer_cert" => {
            s.tls_fail_if_no_peer_cert = Some(boolean(key, value)?)
        }
        "mqtt.ssl_cert_login" => s.mqtt_ssl_cert_login = Some(boolean(key, value)?),
        "handshake_timeout" => s.handshake_timeout_ms = Some(number(key, value)?),
        "connection_max" => {
            s.max_connections = Some(if value == "infinity" {
                usize::MAX
            } else {
                number(key, value)?
            })
        }
        "mqtt.exchange" => s.mqtt_exchange = Some(value.to_string()),
        "data_dir" => s.data_dir = Some(PathBuf::from(value)),
        "heartbeat" => s.heartbeat = Some(number(key, value)?),
        "frame_max" => s.frame_max = Some(number(key, value)?),
        "channel_max" => s.channel_max = Some(number(key, value)?),
        "vm_memory_high_watermark.absolute" => {
            s.memory_high_watermark = Some(information(key, value)?)
        }
        "vm_memory_high_watermark.relative" => {
            let fraction: f64 = value
                .parse()
                .ok()
                .filter(|f: &f64| *f > 0.0 && f.is_finite())
                .ok_or_else(|| bad(key, value, "a fraction of memory such as 0.4"))?;
            let total = super::total_memory().unwrap_or(super::FALLBACK_MEMORY);
            s.memory_high_watermark = Some((total as f64 * fraction) as u64);
        }
        "disk_free_limit.absolute" => s.disk_free_limit = Some(information(key, value)?),
        "log.console.level" => {
            s.log_level = Some(
                match value {
                    "debug" => "debug",
                    "info" => "info",
                    "warning" | "warn" => "warn",
                    "error" | "critical" => "error",
                    "none" => "off",
                    _ => {
                        return Err(bad(
                            key,
                            value,
                            "one of debug, info, warning, error, critical, none",
                        ))
                    }
                }
                .to_string(),
            )
        }
        "mqtt.allow_anonymous" => s.mqtt_allow_anonymous = Some(boolean(key, value)?),
        "mqtt.default_user" => s.mqtt_default_user = Some(value.to_string()),
        "mqtt.default_pass" => s.mqtt_default_pass = Some(value.to_string()),
        "default_user" => s.default_user = Some(value.to_string()),
        "default_pass" => s.default_pass = Some(value.to_string()),
        "default_vhost" => s.default_vhost = Some(value.to_string()),
        "mqtt.vhost" => s.mqtt_vhost = Some(value.to_string()),
        "load_definitions" => s.load_definitions = Some(PathBuf::from(value)),
        "loopback_users" if value == "none" => s.loopback_users.push(LoopbackRule::None),
        "loopback_users" => return Err(bad(key, value, "`none`, or `loopback_users.NAME = true`")),
        _ if key.starts_with("loopback_users.") => {
            let name = &key["loopback_users.".len()..];
            s.loopback_users
                .push(LoopbackRule::User(name.to_string(), boolean(key, value)?));
        }
        "log.file" => {
            s.log_file = Some(match value {
                "false" => None,
                path => Some(PathBuf::from(path)),
            })
        }
        _ => {
            if let Some((_, what)) = NOT_YET.iter().find(|(known, _)| {
                key == *known || (known.ends_with('.') && key.starts_with(known))
            }) {
                return Err(format!(
                    "`{key}` is RabbitMQ's key for {what}, which warren does not support yet"
                ));
            }
            return Err(format!("unknown key `{key}`"));
        }
    }
    Ok(())
}

fn bad(key: &str, value: &str, expected: &str) -> String {
    format!("`{key} = {value}`: expected {expected}")
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, value, "`true` or `false`")),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| bad(key, value, "a whole number in range"))
}

fn port(key: &str, value: &str) -> Result<u16, String> {
    value
        .parse()
        .map_err(|_| bad(key, value, "a port number (0 to 65535)"))
}

/// A listener value: `PORT` or `ADDRESS:PORT` (`[::1]:5672` or `::1:5672` for IPv6). The
/// address becomes the bind address of every listener, which must agree.
fn listener(settings: &mut FileSettings, key: &str, value: &str) -> Result<u16, String> {
    let Some((address, port_text)) = value.rsplit_once(':') else {
        return port(key, value);
    };
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = address
        .parse()
        .map_err(|_| bad(key, value, "`PORT` or `ADDRESS:PORT`"))?;
    match settings.bind {
        Some(bound) if bound != ip => {
            return Err(format!(
                "`{key} = {value}`: every listener binds to one address, and an earlier line set {bound}"
            ))
        }
        _ => settings.bind = Some(ip),
    }
    port(key, port_text)
}

/// A size in bytes: a whole number, optionally with a unit (`kB`, `MB`, `GB`, `TB` are
/// powers of 1000; `KiB`/`Ki`/`K`, `MiB`/`Mi`/`M`, `GiB`/`Gi`/`G`, `TiB`/`Ti`/`T` powers of
/// 1024), as RabbitMQ accepts them.
fn information(key: &str, value: &str) -> Result<u64, String> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let multiplier: u64 = match unit.trim() {
        "" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "k" | "K" | "Ki" | "KiB" => 1 << 10,
        "M" | "Mi" | "MiB" => 1 << 20,
        "G" | "Gi" | "GiB" => 1 << 30,
        "T" | "Ti" | "TiB" => 1 << 40,
        _ => return Err(bad(key, value, "a size such as 1073741824, 1GB or 1GiB")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| bad(key, value, "a size such as 1073741824, 1GB or 1GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_keys_set_their_settings() {
        let settings = parse(
            "# listeners\n\
             listeners.tcp.default = 127.0.0.1:5673\n\
             mqtt.listeners.tcp.default = 1884   # MQTT\n\
             web_mqtt.tcp.port = 15680\n\
             prometheus.tcp.port = 15693\n\
             \n\
             ssl_options.certfile = /etc/warren/cert.pem\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\n\
             vm_memory_high_watermark.absolute = 2GiB\n\
             disk_free_limit.absolute = 50MB\n\
             connection_max = infinity\n\
             handshake_timeout = 5000\n\
             log.console.level = warning\n\
             log.file = false\n",
        )
        .unwrap();
        assert_eq!(settings.bind, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(settings.amqp_port, Some(5673));
        assert_eq!(settings.mqtt_port, Some(1884));
        assert_eq!(settings.ws_port, Some(15680));
        assert_eq!(settings.prometheus_port, Some(15693));
        assert_eq!(
            settings.tls_cert,
            Some(PathBuf::from("/etc/warren/cert.pem"))
        );
        assert_eq!(settings.tls_verify_peer, Some(true));
        assert_eq!(settings.tls_fail_if_no_peer_cert, Some(true));
        assert_eq!(settings.memory_high_watermark, Some(2 << 30));
        assert_eq!(settings.disk_free_limit, Some(50_000_000));
        assert_eq!(settings.max_connections, Some(usize::MAX));
        assert_eq!(settings.handshake_timeout_ms, Some(5000));
        assert_eq!(settings.log_level.as_deref(), Some("warn"));
        assert_eq!(settings.log_file, Some(None));
        assert_eq!(settings.amqps_port, None);
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let (line, message) = parse("heartbeat = 30\nheartbeet = 30\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("unknown key `heartbeet`"), "{message}");
        let (line, message) = parse("\n\nheartbeat = soon\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("heartbeat = soon"), "{message}");
        let (line, message) = parse("listeners.tcp.default\n").unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("key = value"), "{message}");
        let (_, message) = parse("default_user_tags.administrator = true\n").unwrap_err();
        assert!(message.contains("does not support yet"), "{message}");
        let (_, message) = parse("ssl_options.verify = maybe\n").unwrap_err();
        assert!(message.contains("verify_peer"), "{message}");
        let (line, message) = parse(
            "listeners.tcp.default = 127.0.0.1:5672\nmqtt.listeners.tcp.default = 10.0.0.1:1883\n",
        )
        .unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("one address"), "{message}");
        assert!(parse("prometheus.tcp.port = 70000\n").is_err());
        assert!(parse("vm_memory_high_watermark.absolute = 1XB\n").is_err());
        assert!(parse("vm_memory_high_watermark.relative = -1\n").is_err());
    }

    #[test]
    fn loopback_rules_apply_in_order() {
        let defaults = vec!["guest".to_string()];
        let settings = parse("loopback_users.guest = false\nloopback_users.ops = true\n").unwrap();
        assert_eq!(settings.loopback_users(&defaults), vec!["ops".to_string()]);
        let settings = parse("loopback_users = none\n").unwrap();
        assert!(settings.loopback_users(&defaults).is_empty());
        assert_eq!(parse("").unwrap().loopback_users(&defaults), defaults);
        assert!(parse("loopback_users = all\n").is_err());
        assert!(parse("loopback_users.guest = maybe\n").is_err());
        let settings = parse("default_user = admin\ndefault_pass = s3cret\n").unwrap();
        assert_eq!(settings.default_user.as_deref(), Some("admin"));
        assert_eq!(settings.default_pass.as_deref(), Some("s3cret"));
    }

    #[test]
    fn ipv6_listener_addresses_parse() {
        let settings = parse("listeners.tcp.default = [::1]:5672\n").unwrap();
        assert_eq!(settings.bind, Some("::1".parse().unwrap()));
        let settings = parse("listeners.tcp.default = ::1:5672\n").unwrap();
        assert_eq!(settings.bind, Some("::1".parse().unwrap()));
        assert_eq!(settings.amqp_port, Some(5672));
    }
}
