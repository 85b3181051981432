//! Users, permissions and authentication, shared by every listener and the management API.
//!
//! Passwords are kept as RabbitMQ keeps them (`rabbit_password_hashing_sha256`): a random
//! 4-byte salt followed by SHA-256 of the salt and the password, so definitions exported
//! from RabbitMQ carry hashes warren can check, and the other way round.
//!
//! Users, permissions and topic permissions are one document in the store (in RabbitMQ's
//! definitions shape), rewritten atomically on every change and read back at start. A fresh
//! data directory starts with the configured default user (`guest` / `guest`, administrator,
//! full permissions on the default vhost), as RabbitMQ does.

pub mod permissions;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Store;
pub use permissions::{
    Access, AccessCheck, AccessRefused, Grant, Pattern, Permission, Resource, TopicPermission,
};

/// RabbitMQ's default user.
pub const DEFAULT_USER: &str = "guest";

/// RabbitMQ's default vhost.
pub const DEFAULT_VHOST: &str = "/";

/// The hashing algorithm name definitions carry for warren's (and RabbitMQ's) hashes.
pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// The store document holding users and permissions.
const ACCESS_DOCUMENT: &str = "access.json";

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

/// Why a change to users or permissions was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The user does not exist.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// A permission expression does not compile, or a value is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// How a user's password changes with [`Users::put_user`].
#[derive(Debug, Clone)]
pub enum PasswordChange {
    /// Keep what the user has (a new user gets no password).
    Keep,
    /// Hash this password with a fresh salt.
    Set(Vec<u8>),
    /// Take this salted hash as it is (from definitions).
    Hash(Vec<u8>),
    /// Remove the password: the user can only log in without one (certificates).
    Clear,
}

/// A user as definitions and the management API write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDefinition {
    /// Its name.
    pub name: String,
    /// Base64 of salt and hash; empty when the user has no password.
    #[serde(default)]
    pub password_hash: String,
    /// The algorithm of `password_hash`.
    #[serde(default = "default_hashing_algorithm")]
    pub hashing_algorithm: String,
    /// Tags (RabbitMQ 3.9+ writes an array; older versions a comma-separated string).
    #[serde(default, deserialize_with = "tags_from_json")]
    pub tags: Vec<String>,
    /// Per-user limits (kept for round trips; not enforced).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub limits: serde_json::Map<String, serde_json::Value>,
}

fn default_hashing_algorithm() -> String {
    HASHING_ALGORITHM.to_string()
}

/// Tags as RabbitMQ writes them: a list, or one comma-separated string.
pub fn tags_from_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Option::<Tags>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(Tags::List(list)) => list,
        Some(Tags::Text(text)) => parse_tags(&text),
    })
}

/// Splits a comma-separated tag list (`administrator,monitoring`), dropping empty entries.
pub fn parse_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_string)
        .collect()
}

/// A permission as definitions and the management API write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PermissionDefinition {
    /// The user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// Configure expression.
    pub configure: String,
    /// Write expression.
    pub write: String,
    /// Read expression.
    pub read: String,
}

/// A topic permission as definitions and the management API write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicPermissionDefinition {
    /// The user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// The topic exchange.
    pub exchange: String,
    /// Write expression (routing keys published with).
    pub write: String,
    /// Read expression (binding keys subscribed with).
    pub read: String,
}

/// The persisted document.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AccessDocument {
    #[serde(default)]
    users: Vec<UserDefinition>,
    #[serde(default)]
    permissions: Vec<PermissionDefinition>,
    #[serde(default)]
    topic_permissions: Vec<TopicPermissionDefinition>,
}

/// Users, permissions and topic permissions, in memory.
#[derive(Debug, Default)]
struct AccessState {
    users: HashMap<String, User>,
    /// By (vhost, user).
    permissions: BTreeMap<(String, String), Permission>,
    /// By (vhost, user, exchange).
    topic_permissions: BTreeMap<(String, String, String), TopicPermission>,
}

/// Who may log in and what they may do: users, permissions, topic permissions, and which
/// users may only come from the local host.
#[derive(Debug)]
pub struct Users {
    state: RwLock<AccessState>,
    /// Bumped on every change, so connections know to look again.
    generation: AtomicU64,
    /// Users that may only connect from a loopback address (RabbitMQ's `loopback_users`,
    /// `guest` by default).
    loopback_only: Vec<String>,
    store: Option<Arc<Store>>,
    /// Orders saves, so an older snapshot is never written after a newer one.
    save_lock: Mutex<()>,
}

/// What the configuration says about users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    /// The user created on a fresh node (`default_user`).
    pub default_user: String,
    /// Its password (`default_pass`).
    pub default_pass: String,
    /// The vhost created on a fresh node (`default_vhost`); the default user gets full
    /// permissions there.
    pub default_vhost: String,
    /// Users allowed only from loopback addresses (`loopback_users.NAME = true`).
    pub loopback_only: Vec<String>,
}

impl Default for UserSettings {
    fn default() -> Self {
        UserSettings {
            default_user: DEFAULT_USER.to_string(),
            default_pass: DEFAULT_USER.to_string(),
            default_vhost: DEFAULT_VHOST.to_string(),
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
    /// The users of a fresh node, kept in memory only: the default user, administrator, with
    /// full permissions on the default vhost.
    pub fn new(settings: &UserSettings) -> Users {
        Users::fresh(settings, None)
    }

    /// The users saved in `store` by an earlier run, or those of a fresh node (saved there).
    /// An unreadable document is an error: starting with the default user instead would
    /// overwrite every user and permission at the next change.
    pub fn open(settings: &UserSettings, store: Option<Arc<Store>>) -> Result<Users, AuthError> {
        let saved = store
            .as_ref()
            .and_then(|store| store.load_document(ACCESS_DOCUMENT));
        let Some(bytes) = saved else {
            return Ok(Users::fresh(settings, store));
        };
        let document = serde_json::from_slice::<AccessDocument>(&bytes).map_err(|error| {
            AuthError::Invalid(format!(
                "the users document {ACCESS_DOCUMENT} in the data directory is unreadable: {error}"
            ))
        })?;
        let users = Users::empty(settings, store);
        users.import(
            &document.users,
            &document.permissions,
            &document.topic_permissions,
        );
        Ok(users)
    }

    fn empty(settings: &UserSettings, store: Option<Arc<Store>>) -> Users {
        Users {
            state: RwLock::new(AccessState::default()),
            generation: AtomicU64::new(0),
            loopback_only: settings.loopback_only.clone(),
            store,
            save_lock: Mutex::new(()),
        }
    }

    /// A fresh node's users (saved in `store`, if any).
    fn fresh(settings: &UserSettings, store: Option<Arc<Store>>) -> Users {
        let users = Users::empty(settings, store);
        {
            let mut state = users.state.write();
            state.users.insert(
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
            state.permissions.insert(
                (
                    settings.default_vhost.clone(),
                    settings.default_user.clone(),
                ),
                Permission::full(),
            );
        }
        users.changed();
        users
    }

    /// Bumped by every change to users or permissions.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Checks a password login from `peer`.
    pub fn login(&self, user: &str, password: &[u8], peer: SocketAddr) -> Result<(), LoginError> {
        let matches = self
            .state
            .read()
            .users
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
        if !self.exists(user) {
            return Err(LoginError::InvalidCredentials(user.to_string()));
        }
        self.check_peer(user, peer)
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<User> {
        let mut users: Vec<User> = self.state.read().users.values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// One user.
    pub fn get(&self, user: &str) -> Option<User> {
        self.state.read().users.get(user).cloned()
    }

    /// The tags of `user` (none for an unknown user).
    pub fn tags(&self, user: &str) -> Vec<String> {
        self.state
            .read()
            .users
            .get(user)
            .map(|known| known.tags.clone())
            .unwrap_or_default()
    }

    /// Whether `user` exists.
    pub fn exists(&self, user: &str) -> bool {
        self.state.read().users.contains_key(user)
    }

    /// Creates or updates a user; true when it was created.
    pub fn put_user(&self, name: &str, password: PasswordChange, tags: Vec<String>) -> bool {
        let created = {
            let mut state = self.state.write();
            let existing = state.users.get(name).and_then(|u| u.password_hash.clone());
            let password_hash = match password {
                PasswordChange::Keep => existing,
                PasswordChange::Set(password) => Some(hash_password(&password, rand::random())),
                PasswordChange::Hash(hash) => Some(hash),
                PasswordChange::Clear => None,
            };
            state
                .users
                .insert(
                    name.to_string(),
                    User {
                        name: name.to_string(),
                        password_hash,
                        tags,
                    },
                )
                .is_none()
        };
        self.changed();
        created
    }

    /// Deletes a user and its permissions; false when it did not exist.
    pub fn delete_user(&self, name: &str) -> bool {
        let existed = {
            let mut state = self.state.write();
            let existed = state.users.remove(name).is_some();
            state.permissions.retain(|(_, user), _| user != name);
            state
                .topic_permissions
                .retain(|(_, user, _), _| user != name);
            existed
        };
        if existed {
            self.changed();
        }
        existed
    }

    /// Sets a user's permissions in a vhost (the caller checks that the vhost exists).
    pub fn set_permissions(&self, definition: &PermissionDefinition) -> Result<(), AuthError> {
        let permission = Permission {
            configure: Pattern::new(&definition.configure).map_err(AuthError::Invalid)?,
            write: Pattern::new(&definition.write).map_err(AuthError::Invalid)?,
            read: Pattern::new(&definition.read).map_err(AuthError::Invalid)?,
        };
        {
            let mut state = self.state.write();
            if !state.users.contains_key(&definition.user) {
                return Err(AuthError::NoSuchUser(definition.user.clone()));
            }
            state.permissions.insert(
                (definition.vhost.clone(), definition.user.clone()),
                permission,
            );
        }
        self.changed();
        Ok(())
    }

    /// Removes a user's permissions in a vhost; false when there were none.
    pub fn clear_permissions(&self, vhost: &str, user: &str) -> bool {
        let removed = self
            .state
            .write()
            .permissions
            .remove(&(vhost.to_string(), user.to_string()))
            .is_some();
        if removed {
            self.changed();
        }
        removed
    }

    /// Every permission, ordered by vhost and user.
    pub fn permissions(&self) -> Vec<PermissionDefinition> {
        self.state
            .read()
            .permissions
            .iter()
            .map(|((vhost, user), permission)| PermissionDefinition {
                user: user.clone(),
                vhost: vhost.clone(),
                configure: permission.configure.source().to_string(),
                write: permission.write.source().to_string(),
                read: permission.read.source().to_string(),
            })
            .collect()
    }

    /// Sets a user's topic permission on one exchange of a vhost.
    pub fn set_topic_permissions(
        &self,
        definition: &TopicPermissionDefinition,
    ) -> Result<(), AuthError> {
        let topic = TopicPermission {
            exchange: definition.exchange.clone(),
            write: Pattern::new(&definition.write).map_err(AuthError::Invalid)?,
            read: Pattern::new(&definition.read).map_err(AuthError::Invalid)?,
        };
        {
            let mut state = self.state.write();
            if !state.users.contains_key(&definition.user) {
                return Err(AuthError::NoSuchUser(definition.user.clone()));
            }
            state.topic_permissions.insert(
                (
                    definition.vhost.clone(),
                    definition.user.clone(),
                    definition.exchange.clone(),
                ),
                topic,
            );
        }
        self.changed();
        Ok(())
    }

    /// Removes a user's topic permissions in a vhost (on one exchange, or all); false when
    /// there were none.
    pub fn clear_topic_permissions(&self, vhost: &str, user: &str, exchange: Option<&str>) -> bool {
        let removed = {
            let mut state = self.state.write();
            let before = state.topic_permissions.len();
            state.topic_permissions.retain(|(v, u, e), _| {
                !(v == vhost && u == user && exchange.is_none_or(|x| x == e))
            });
            before != state.topic_permissions.len()
        };
        if removed {
            self.changed();
        }
        removed
    }

    /// Every topic permission, ordered by vhost, user and exchange.
    pub fn topic_permissions(&self) -> Vec<TopicPermissionDefinition> {
        self.state
            .read()
            .topic_permissions
            .iter()
            .map(
                |((vhost, user, exchange), topic)| TopicPermissionDefinition {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    exchange: exchange.clone(),
                    write: topic.write.source().to_string(),
                    read: topic.read.source().to_string(),
                },
            )
            .collect()
    }

    /// Forgets every permission in a deleted vhost.
    pub fn vhost_deleted(&self, vhost: &str) {
        {
            let mut state = self.state.write();
            state.permissions.retain(|(v, _), _| v != vhost);
            state.topic_permissions.retain(|(v, _, _), _| v != vhost);
        }
        self.changed();
    }

    /// What `user` may do in `vhost`; None when it has no permissions there (the vhost is
    /// refused).
    pub fn grant(&self, user: &str, vhost: &str) -> Option<Arc<Grant>> {
        let state = self.state.read();
        if !state.users.contains_key(user) {
            return None;
        }
        let permission = state
            .permissions
            .get(&(vhost.to_string(), user.to_string()))?
            .clone();
        let topics = state
            .topic_permissions
            .iter()
            .filter(|((v, u, _), _)| v == vhost && u == user)
            .map(|(_, topic)| topic.clone())
            .collect();
        Some(Arc::new(Grant { permission, topics }))
    }

    /// Users as definitions write them.
    pub fn user_definitions(&self) -> Vec<UserDefinition> {
        self.list()
            .into_iter()
            .map(|user| UserDefinition {
                name: user.name,
                password_hash: user
                    .password_hash
                    .as_deref()
                    .map(encode_hash)
                    .unwrap_or_default(),
                hashing_algorithm: HASHING_ALGORITHM.to_string(),
                tags: user.tags,
                limits: serde_json::Map::new(),
            })
            .collect()
    }

    /// Adds (or replaces) users, permissions and topic permissions from definitions. An
    /// expression the regex engine cannot compile grants nothing (with a warning); a hash in
    /// another algorithm than RabbitMQ's SHA-256 leaves the user without a password.
    pub fn import(
        &self,
        users: &[UserDefinition],
        permissions: &[PermissionDefinition],
        topic_permissions: &[TopicPermissionDefinition],
    ) {
        {
            let mut state = self.state.write();
            for user in users {
                let password_hash = if user.password_hash.is_empty() {
                    None
                } else if user.hashing_algorithm != HASHING_ALGORITHM {
                    tracing::warn!(user = %user.name, algorithm = %user.hashing_algorithm, "unsupported password hashing algorithm; the user can log in without a password only");
                    None
                } else {
                    decode_hash(&user.password_hash)
                };
                state.users.insert(
                    user.name.clone(),
                    User {
                        name: user.name.clone(),
                        password_hash,
                        tags: user.tags.clone(),
                    },
                );
            }
            for p in permissions {
                state.permissions.insert(
                    (p.vhost.clone(), p.user.clone()),
                    Permission {
                        configure: Pattern::lenient(&p.configure),
                        write: Pattern::lenient(&p.write),
                        read: Pattern::lenient(&p.read),
                    },
                );
            }
            for t in topic_permissions {
                state.topic_permissions.insert(
                    (t.vhost.clone(), t.user.clone(), t.exchange.clone()),
                    TopicPermission {
                        exchange: t.exchange.clone(),
                        write: Pattern::lenient(&t.write),
                        read: Pattern::lenient(&t.read),
                    },
                );
            }
        }
        self.changed();
    }

    fn check_peer(&self, user: &str, peer: SocketAddr) -> Result<(), LoginError> {
        if self.loopback_only.iter().any(|name| name == user) && !is_loopback(peer) {
            return Err(LoginError::LoopbackOnly(user.to_string()));
        }
        Ok(())
    }

    /// Bumps the generation and saves the document.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let Some(store) = &self.store else {
            return;
        };
        let _order = self.save_lock.lock();
        let document = AccessDocument {
            users: self.user_definitions(),
            permissions: self.permissions(),
            topic_permissions: self.topic_permissions(),
        };
        match serde_json::to_vec_pretty(&document) {
            Ok(bytes) => {
                if let Err(error) = store.save_private_document(ACCESS_DOCUMENT, &bytes) {
                    tracing::error!(%error, "cannot save users and permissions");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode users and permissions"),
        }
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
            default_vhost: "/".into(),
            loopback_only: Vec::new(),
        });
        let remote = SocketAddr::from(([10, 0, 0, 7], 40000));
        assert_eq!(users.login("admin", b"s3cret", remote), Ok(()));
        assert!(users.login("guest", b"guest", local()).is_err());
        assert!(users.exists("admin"));
    }

    /// Users and permissions come back from the store; an unreadable document stops the
    /// start instead of being replaced by the default user.
    #[test]
    fn users_persist_and_an_unreadable_document_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = crate::store::Store::open(dir.path()).unwrap();
        let settings = UserSettings::default();
        let users = Users::open(&settings, Some(store.clone())).unwrap();
        users.put_user("alice", PasswordChange::Set(b"pw".to_vec()), vec![]);
        users
            .set_permissions(&PermissionDefinition {
                user: "alice".into(),
                vhost: "/".into(),
                configure: "".into(),
                write: "^a".into(),
                read: ".*".into(),
            })
            .unwrap();
        let again = Users::open(&settings, Some(store.clone())).unwrap();
        assert_eq!(again.login("alice", b"pw", local()), Ok(()));
        assert_eq!(again.permissions().len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ACCESS_DOCUMENT))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "password hashes are readable by the owner only"
        );
        store.save_document(ACCESS_DOCUMENT, b"{ broken").unwrap();
        assert!(Users::open(&settings, Some(store)).is_err());
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
