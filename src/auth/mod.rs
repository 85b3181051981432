//! Users and authentication, shared by every listener.
//!
//! Passwords are kept as RabbitMQ keeps them (`rabbit_password_hashing_sha256`): a random
//! 4-byte salt followed by SHA-256 of the salt and the password, so definitions exported
//! from RabbitMQ carry hashes warren can check, and the other way round.
//!
//! Today the users come from the configuration (`default_user` / `default_pass`, RabbitMQ's
//! `guest` / `guest` by default); the operations work adds the store that changes them at
//! run time.

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};

/// RabbitMQ's default user.
pub const DEFAULT_USER: &str = "guest";

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Salt and SHA-256 hash, as RabbitMQ's `password_hash` (base64 in definitions); None:
    /// no password login (certificate only).
    pub password_hash: Option<Vec<u8>>,
    /// RabbitMQ tags (`administrator`, `monitoring`, ...).
    pub tags: Vec<String>,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (not told apart, as RabbitMQ does not).
    #[error("user '{0}' - invalid credentials")]
    InvalidCredentials(String),
    /// A loopback-only user connecting from elsewhere (`loopback_users`).
    #[error("user '{0}' can only connect via localhost")]
    LoopbackOnly(String),
}

/// How users log in: the users, and which of them may only come from the local host.
#[derive(Debug)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
    /// Users that may only connect from a loopback address (RabbitMQ's `loopback_users`,
    /// `guest` by default).
    loopback_only: Vec<String>,
}

/// What the configuration says about users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    /// The user created at start (`default_user`).
    pub default_user: String,
    /// Its password (`default_pass`).
    pub default_pass: String,
    /// Users allowed only from loopback addresses (`loopback_users.NAME = true`).
    pub loopback_only: Vec<String>,
}

impl Default for UserSettings {
    fn default() -> Self {
        UserSettings {
            default_user: DEFAULT_USER.to_string(),
            default_pass: DEFAULT_USER.to_string(),
            loopback_only: vec![DEFAULT_USER.to_string()],
        }
    }
}

impl Default for Users {
    fn default() -> Self {
        Users::new(&UserSettings::default())
    }
}

impl Users {
    /// The users the configuration asks for: the default user, with administrator rights.
    pub fn new(settings: &UserSettings) -> Users {
        let mut users = HashMap::new();
        users.insert(
            settings.default_user.clone(),
            User {
                name: settings.default_user.clone(),
                password_hash: Some(hash_password(
                    settings.default_pass.as_bytes(),
                    rand::random(),
                )),
                tags: vec!["administrator".to_string()],
            },
        );
        Users {
            users: RwLock::new(users),
            loopback_only: settings.loopback_only.clone(),
        }
    }

    /// Checks a password login from `peer`; Ok with the user's name.
    pub fn login(&self, user: &str, password: &[u8], peer: SocketAddr) -> Result<(), LoginError> {
        let matches = self
            .users
            .read()
            .get(user)
            .and_then(|known| known.password_hash.as_deref())
            .is_some_and(|stored| check_hash(stored, password));
        if !matches {
            return Err(LoginError::InvalidCredentials(user.to_string()));
        }
        self.check_peer(user, peer)
    }

    /// Checks a login without a password (a verified certificate's CN) from `peer`.
    pub fn login_without_password(&self, user: &str, peer: SocketAddr) -> Result<(), LoginError> {
        if !self.users.read().contains_key(user) {
            return Err(LoginError::InvalidCredentials(user.to_string()));
        }
        self.check_peer(user, peer)
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<User> {
        let mut users: Vec<User> = self.users.read().values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// The tags of `user` (none for an unknown user).
    pub fn tags(&self, user: &str) -> Vec<String> {
        self.users
            .read()
            .get(user)
            .map(|known| known.tags.clone())
            .unwrap_or_default()
    }

    /// Whether `user` exists.
    pub fn exists(&self, user: &str) -> bool {
        self.users.read().contains_key(user)
    }

    fn check_peer(&self, user: &str, peer: SocketAddr) -> Result<(), LoginError> {
        if self.loopback_only.iter().any(|name| name == user) && !is_loopback(peer) {
            return Err(LoginError::LoopbackOnly(user.to_string()));
        }
        Ok(())
    }
}

/// Whether `peer` is the local host: 127.0.0.0/8, ::1, or either as an IPv4-mapped IPv6
/// address.
pub fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: salt ++ SHA-256(salt ++ password).
pub fn hash_password(password: &[u8], salt: [u8; 4]) -> Vec<u8> {
    let mut digest = Sha256::new();
    digest.update(salt);
    digest.update(password);
    let mut hash = salt.to_vec();
    hash.extend_from_slice(&digest.finalize());
    hash
}

/// Decodes a `password_hash` from RabbitMQ's definitions (base64).
pub fn decode_hash(encoded: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

/// Encodes a hash as RabbitMQ's definitions write it (base64).
pub fn encode_hash(hash: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Whether `password` matches `stored` (salt ++ hash), in constant time.
fn check_hash(stored: &[u8], password: &[u8]) -> bool {
    let Some((salt, _)) = stored.split_first_chunk::<4>() else {
        return false;
    };
    constant_time_eq(&hash_password(password, *salt), stored)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    #[test]
    fn guest_logs_in_from_loopback_only() {
        let users = Users::default();
        assert_eq!(users.login("guest", b"guest", local()), Ok(()));
        assert!(matches!(
            users.login("guest", b"gues", local()),
            Err(LoginError::InvalidCredentials(_))
        ));
        assert!(matches!(
            users.login("admin", b"guest", local()),
            Err(LoginError::InvalidCredentials(_))
        ));
        let remote = SocketAddr::from(([10, 0, 0, 7], 40000));
        assert_eq!(
            users.login("guest", b"guest", remote),
            Err(LoginError::LoopbackOnly("guest".into()))
        );
        let v6 = SocketAddr::new("::1".parse().unwrap(), 1);
        let mapped_local = SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), 1);
        let mapped_remote = SocketAddr::new("::ffff:10.0.0.7".parse().unwrap(), 1);
        let v6_remote = SocketAddr::new("2001:db8::1".parse().unwrap(), 1);
        assert_eq!(users.login("guest", b"guest", v6), Ok(()));
        assert_eq!(users.login("guest", b"guest", mapped_local), Ok(()));
        assert!(users.login("guest", b"guest", mapped_remote).is_err());
        assert!(users.login("guest", b"guest", v6_remote).is_err());
    }

    #[test]
    fn the_loopback_rule_can_be_lifted_and_the_default_user_changed() {
        let users = Users::new(&UserSettings {
            default_user: "admin".into(),
            default_pass: "s3cret".into(),
            loopback_only: Vec::new(),
        });
        let remote = SocketAddr::from(([10, 0, 0, 7], 40000));
        assert_eq!(users.login("admin", b"s3cret", remote), Ok(()));
        assert!(users.login("guest", b"guest", local()).is_err());
        assert!(users.exists("admin"));
    }

    /// Hashes exported from RabbitMQ 3.10.8 (Debian's package: `rabbitmqctl add_user test
    /// test`, then `export_definitions`) check against their passwords.
    #[test]
    fn rabbitmq_hashes_check() {
        let test = decode_hash("CdpbITsCyIoJPZX4QEUkXg9FRiRzqhGxy9LCCD6FpHwoWFux").unwrap();
        assert!(check_hash(&test, b"test"));
        assert!(!check_hash(&test, b"tesT"));
        let guest = decode_hash("SJab6jbkDbrFNX4XgWSmnUNpszo0E33QhIYlYjKG6WmTlD6a").unwrap();
        assert!(check_hash(&guest, b"guest"));
        let ours = encode_hash(&hash_password(b"test", [0x9a, 0x01, 0x3c, 0x77]));
        assert_eq!(decode_hash(&ours).map(|h| h.len()), Some(36));
        assert!(!check_hash(&[1, 2], b"test"));
    }
}
