//! Topic names, topic filters, matching and shared subscriptions (MQTT 3.1.1 §4.7,
//! MQTT 5.0 §4.7 and §4.8.2).
//!
//! Levels are separated by `/`; empty levels are levels (`/finance` has two levels, the
//! first empty). `+` matches exactly one level, `#` the parent level and any number of
//! child levels. Topics starting with `$` are not matched by a filter whose first level is a
//! wildcard [MQTT-4.7.2-1].

/// Longest topic name or filter: an MQTT UTF-8 string holds at most 65,535 bytes.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// A topic name a PUBLISH may carry: non-empty, no `+` or `#`, no U+0000, at most
/// 65,535 bytes [MQTT-4.7.3-1, -2; MQTT-3.3.2-2].
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && !name.bytes().any(|b| b == b'+' || b == b'#' || b == 0)
}

/// A topic filter a SUBSCRIBE may carry: non-empty, at most 65,535 bytes, no U+0000, `#`
/// only as the whole last level, `+` only as a whole level [MQTT-4.7.1-1, -2; MQTT-4.7.3-1].
/// A shared subscription (`$share/group/filter`) is valid when [`parse_shared`] accepts it.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.starts_with("$share/") {
        return parse_shared(filter).is_some();
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Whether `topic` (a topic name) matches `filter` (a plain topic filter, not `$share/…`).
///
/// `sport/#` also matches `sport` (the parent level) [MQTT-4.7.1-2]; a filter starting with
/// a wildcard does not match a topic starting with `$` [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The parts of a shared subscription filter `$share/{group}/{filter}` (MQTT 5.0 §4.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// Share name: non-empty, without `/`, `+` or `#` [MQTT-4.8.2-1, -2].
    pub group: &'a str,
    /// The topic filter the members share (a valid plain filter).
    pub filter: &'a str,
}

/// Splits `$share/group/filter`; `None` when `filter` is not a shared subscription or is
/// an invalid one (empty or wildcard group, missing or invalid filter).
pub fn parse_shared(filter: &str) -> Option<SharedFilter<'_>> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || !valid_plain_filter(inner) {
        return None;
    }
    Some(SharedFilter {
        group,
        filter: inner,
    })
}
