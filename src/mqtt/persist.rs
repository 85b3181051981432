//! MQTT state that survives restarts: the subscriptions of persistent sessions and the
//! retained messages. (Queued messages of persistent sessions live in their durable queues
//! and need nothing here.)
//!
//! Changes mark the state dirty; a background task writes the documents atomically at most
//! every [`SAVE_DELAY`], and the broker writes them once more at shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use warren_mqtt::QoS;

use super::retained::{Retained, RetainedStore};
use super::session::{SessionState, Subscription};
use crate::store::Store;

/// Document with the persistent sessions.
const SESSIONS_DOCUMENT: &str = "mqtt-sessions.json";
/// Document with the retained messages.
const RETAINED_DOCUMENT: &str = "mqtt-retained.bin";
/// Changes arriving within this delay are saved together.
const SAVE_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedSubscription {
    full: String,
    filter: String,
    qos: u8,
    identifier: Option<u32>,
    group: Option<String>,
    #[serde(default)]
    no_local: bool,
    #[serde(default)]
    retain_as_published: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedSession {
    vhost: String,
    client_id: String,
    /// None: the session never expires.
    expiry_secs: Option<u64>,
    subscriptions: Vec<SavedSubscription>,
}

/// A persistent session loaded at start.
pub(crate) struct LoadedSession {
    pub(crate) vhost: String,
    pub(crate) client_id: String,
    pub(crate) state: SessionState,
}

/// Tracks what must be saved and saves it.
#[derive(Default)]
pub(crate) struct Persistence {
    sessions: Mutex<BTreeMap<(String, String), SavedSession>>,
    sessions_dirty: AtomicBool,
    retained_dirty: AtomicBool,
    wake: Notify,
}

impl Persistence {
    /// Records the current subscriptions of a persistent session.
    pub(crate) fn session_changed(&self, vhost: &str, client_id: &str, state: &SessionState) {
        let saved = SavedSession {
            vhost: vhost.to_string(),
            client_id: client_id.to_string(),
            expiry_secs: state.expiry.map(|d| d.as_secs()),
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(full, s)| SavedSubscription {
                    full: full.clone(),
                    filter: s.filter.clone(),
                    qos: s.qos.as_u8(),
                    identifier: s.identifier,
                    group: s.group.clone(),
                    no_local: s.no_local,
                    retain_as_published: s.retain_as_published,
                })
                .collect(),
        };
        self.sessions
            .lock()
            .insert((vhost.to_string(), client_id.to_string()), saved);
        self.mark_sessions();
    }

    /// Forgets a session that ended.
    pub(crate) fn session_ended(&self, vhost: &str, client_id: &str) {
        let removed = self
            .sessions
            .lock()
            .remove(&(vhost.to_string(), client_id.to_string()))
            .is_some();
        if removed {
            self.mark_sessions();
        }
    }

    /// Notes that the retained messages changed.
    pub(crate) fn retained_changed(&self) {
        self.retained_dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn mark_sessions(&self) {
        self.sessions_dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Reads the saved sessions and retained messages.
    pub(crate) fn load(&self, store: &Store, retained: &RetainedStore) -> Vec<LoadedSession> {
        let mut loaded = Vec::new();
        if let Some(bytes) = store.load_document(SESSIONS_DOCUMENT) {
            match serde_json::from_slice::<Vec<SavedSession>>(&bytes) {
                Ok(sessions) => {
                    let mut map = self.sessions.lock();
                    for saved in sessions {
                        let state = SessionState {
                            subscriptions: saved
                                .subscriptions
                                .iter()
                                .map(|s| {
                                    (
                                        s.full.clone(),
                                        Subscription {
                                            filter: s.filter.clone(),
                                            qos: QoS::from_u8(s.qos).unwrap_or(QoS::AtLeastOnce),
                                            no_local: s.no_local,
                                            retain_as_published: s.retain_as_published,
                                            identifier: s.identifier,
                                            group: s.group.clone(),
                                        },
                                    )
                                })
                                .collect(),
                            expiry: saved.expiry_secs.map(Duration::from_secs),
                            ..SessionState::default()
                        };
                        loaded.push(LoadedSession {
                            vhost: saved.vhost.clone(),
                            client_id: saved.client_id.clone(),
                            state,
                        });
                        map.insert((saved.vhost.clone(), saved.client_id.clone()), saved);
                    }
                }
                Err(error) => tracing::error!(%error, "MQTT sessions document unreadable"),
            }
        }
        if let Some(bytes) = store.load_document(RETAINED_DOCUMENT) {
            let mut count = 0;
            for (tags, message) in crate::store::decode_tagged_messages(bytes) {
                let [vhost, topic, qos] = tags.as_slice() else {
                    continue;
                };
                let qos = qos
                    .parse::<u8>()
                    .ok()
                    .and_then(QoS::from_u8)
                    .unwrap_or(QoS::AtMostOnce);
                retained.set(
                    vhost,
                    topic,
                    Some(Retained {
                        message: Arc::new(message),
                        qos,
                        expires_at: None,
                    }),
                );
                count += 1;
            }
            tracing::info!(count, "MQTT retained messages restored");
        }
        loaded
    }

    /// Writes whatever changed since the last save.
    pub(crate) fn save(&self, store: &Store, retained: &RetainedStore) {
        if self.sessions_dirty.swap(false, Ordering::AcqRel) {
            let sessions: Vec<SavedSession> = self.sessions.lock().values().cloned().collect();
            match serde_json::to_vec(&sessions) {
                Ok(bytes) => {
                    if let Err(error) = store.save_document(SESSIONS_DOCUMENT, &bytes) {
                        tracing::error!(%error, "cannot save MQTT sessions");
                    }
                }
                Err(error) => tracing::error!(%error, "cannot encode MQTT sessions"),
            }
        }
        if self.retained_dirty.swap(false, Ordering::AcqRel) {
            let entries = retained.entries();
            let qos_text: Vec<String> = entries
                .iter()
                .map(|(_, _, r)| r.qos.as_u8().to_string())
                .collect();
            let items = entries
                .iter()
                .zip(&qos_text)
                .map(|((vhost, topic, r), qos)| {
                    (
                        vec![vhost.as_str(), topic.as_str(), qos.as_str()],
                        &*r.message,
                    )
                });
            let bytes = crate::store::encode_tagged_messages(items);
            if let Err(error) = store.save_document(RETAINED_DOCUMENT, &bytes) {
                tracing::error!(%error, "cannot save retained messages");
            }
        }
    }

    /// Waits for the next change (then a short delay so bursts are saved together).
    pub(crate) async fn changed(&self) {
        self.wake.notified().await;
        tokio::time::sleep(SAVE_DELAY).await;
    }
}
