//! MQTT sessions: what outlives a connection (subscriptions, QoS 2 handshakes in progress)
//! and the registry that hands a session to exactly one connection at a time, taking it
//! over from an older connection with the same client id [MQTT-3.1.4-3].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use parking_lot::Mutex;
use warren_mqtt::QoS;

use crate::core::ConnectionId;
pub(crate) use crate::stats::Kick;

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscription {
    /// The filter without any `$share/group/` prefix.
    pub(crate) filter: String,
    /// The granted QoS.
    pub(crate) qos: QoS,
    /// MQTT 5 "no local": messages this client publishes are not sent back to it.
    pub(crate) no_local: bool,
    /// MQTT 5 "retain as published": forwarded messages keep the RETAIN flag they were
    /// published with instead of having it cleared.
    pub(crate) retain_as_published: bool,
    /// The MQTT 5 subscription identifier.
    pub(crate) identifier: Option<u32>,
    /// The shared-subscription group, if any.
    pub(crate) group: Option<String>,
}

/// The state of a session between connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionState {
    /// Subscriptions by their full filter as the client wrote it.
    pub(crate) subscriptions: BTreeMap<String, Subscription>,
    /// Outbound QoS 2 deliveries whose PUBREC arrived and PUBCOMP did not: PUBREL is resent
    /// on reconnect [MQTT-4.4.0-1].
    pub(crate) pending_pubrel: BTreeSet<u16>,
    /// Inbound QoS 2 packet ids whose PUBREL has not arrived: a resent PUBLISH with one of
    /// these ids is not routed again.
    pub(crate) incoming_qos2: BTreeSet<u16>,
    /// How long the session outlives its connection (None = forever).
    pub(crate) expiry: Option<Duration>,
}

struct Slot {
    active: Option<(ConnectionId, Kick)>,
    /// Boxed: the registry holds one slot per connected client.
    stored: Option<Box<SessionState>>,
    /// Bumped at every claim, so delayed actions (expiry, will delay) can tell whether the
    /// session was resumed meanwhile.
    generation: u64,
}

/// What claiming a session yields.
pub(crate) struct Claim {
    /// The stored state, if a session existed.
    pub(crate) state: Option<SessionState>,
    /// Identifies this claim for [`Sessions::is_current`].
    pub(crate) generation: u64,
}

/// Every MQTT session, by (vhost, client id).
#[derive(Default)]
pub(crate) struct Sessions {
    /// Keyed by [`session_key`].
    slots: Mutex<HashMap<Box<str>, Slot>>,
}

/// One string for (vhost, client id): half the size of a pair of strings in every slot,
/// and one allocation instead of two. Client ids cannot contain U+0000 [MQTT-1.5.4-2], so
/// the key is unambiguous even for a vhost name that does.
fn session_key(vhost: &str, client_id: &str) -> Box<str> {
    let mut key = String::with_capacity(vhost.len() + 1 + client_id.len());
    key.push_str(vhost);
    key.push('\u{0}');
    key.push_str(client_id);
    key.into_boxed_str()
}

impl Sessions {
    /// Takes the session for `connection`, disconnecting the connection that holds it (by
    /// cancelling its token) and waiting until it has handed the session back.
    pub(crate) async fn claim(
        &self,
        vhost: &str,
        client_id: &str,
        connection: ConnectionId,
        kick: Kick,
    ) -> Claim {
        let key = session_key(vhost, client_id);
        // Bounded wait: a holder that does not let go within this time is overruled.
        for _ in 0..500 {
            {
                let mut slots = self.slots.lock();
                let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
                    active: None,
                    stored: None,
                    generation: 0,
                });
                match &slot.active {
                    Some((_, holder)) => holder.kick(),
                    None => return take(slot, connection, kick),
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut slots = self.slots.lock();
        let slot = slots.entry(key).or_insert_with(|| Slot {
            active: None,
            stored: None,
            generation: 0,
        });
        take(slot, connection, kick)
    }

    /// Hands the session back when `connection` ends; `state` None ends the session.
    pub(crate) fn release(
        &self,
        vhost: &str,
        client_id: &str,
        connection: ConnectionId,
        state: Option<SessionState>,
    ) {
        let key = session_key(vhost, client_id);
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(&key) else {
            return;
        };
        if !matches!(&slot.active, Some((holder, _)) if *holder == connection) {
            return;
        }
        slot.active = None;
        slot.stored = state.map(Box::new);
        if slot.stored.is_none() {
            slots.remove(&key);
        }
    }

    /// Registers a session recovered from disk as dormant; returns its generation.
    pub(crate) fn insert_dormant(&self, vhost: &str, client_id: &str, state: SessionState) -> u64 {
        let key = session_key(vhost, client_id);
        let mut slots = self.slots.lock();
        let slot = slots.entry(key).or_insert_with(|| Slot {
            active: None,
            stored: None,
            generation: 0,
        });
        slot.generation += 1;
        slot.stored = Some(Box::new(state));
        slot.generation
    }

    /// Whether the session is still unclaimed since `generation` (for expiry and will delay).
    pub(crate) fn is_dormant(&self, vhost: &str, client_id: &str, generation: u64) -> bool {
        let key = session_key(vhost, client_id);
        self.slots
            .lock()
            .get(&key)
            .is_some_and(|slot| slot.active.is_none() && slot.generation == generation)
    }

    /// Ends a dormant session (expiry); returns whether it was still dormant at `generation`.
    pub(crate) fn expire(&self, vhost: &str, client_id: &str, generation: u64) -> bool {
        let key = session_key(vhost, client_id);
        let mut slots = self.slots.lock();
        let dormant = slots
            .get(&key)
            .is_some_and(|slot| slot.active.is_none() && slot.generation == generation);
        if dormant {
            slots.remove(&key);
        }
        dormant
    }
}

/// Sessions without a connection, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OfflineSessions {
    /// Stored sessions whose client is not connected.
    pub sessions: u64,
    /// Their subscriptions.
    pub subscriptions: u64,
}

impl Sessions {
    /// Counts the sessions kept for clients that are not connected.
    pub(crate) fn offline(&self) -> OfflineSessions {
        let mut offline = OfflineSessions::default();
        for slot in self.slots.lock().values() {
            if let (None, Some(stored)) = (&slot.active, &slot.stored) {
                offline.sessions += 1;
                offline.subscriptions += stored.subscriptions.len() as u64;
            }
        }
        offline
    }

    /// Every session as (vhost, client id, whether its client is connected, and for one that
    /// is not its stored subscriptions as (filter, QoS)), for listings.
    #[allow(clippy::type_complexity)] // A listing row, used once.
    pub(crate) fn list(&self) -> Vec<(String, String, bool, Option<Vec<(String, u8)>>)> {
        self.slots
            .lock()
            .iter()
            .filter(|(_, slot)| slot.active.is_some() || slot.stored.is_some())
            .map(|(key, slot)| {
                let (vhost, client_id) = key.split_once('\u{0}').unwrap_or(("", key));
                let stored = slot.stored.as_ref().map(|state| {
                    state
                        .subscriptions
                        .iter()
                        .map(|(filter, subscription)| (filter.clone(), subscription.qos as u8))
                        .collect()
                });
                (
                    vhost.to_string(),
                    client_id.to_string(),
                    slot.active.is_some(),
                    stored,
                )
            })
            .collect()
    }

    /// Kicks every connected client (broker shutdown).
    pub(crate) fn kick_all(&self) {
        for slot in self.slots.lock().values() {
            if let Some((_, kick)) = &slot.active {
                kick.kick();
            }
        }
    }
}

fn take(slot: &mut Slot, connection: ConnectionId, kick: Kick) -> Claim {
    slot.generation += 1;
    slot.active = Some((connection, kick));
    Claim {
        state: slot.stored.take().map(|state| *state),
        generation: slot.generation,
    }
}
