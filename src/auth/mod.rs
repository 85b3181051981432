//! Authentication shared by every listener.
//!
//! Until the users issue brings a real user store, the only user is RabbitMQ's default
//! `guest` / `guest`.

/// The user anonymous MQTT clients act as (RabbitMQ's `mqtt.default_user`).
pub const DEFAULT_USER: &str = "guest";

/// Whether `password` is right for `user`. Compared in constant time so the answer's
/// timing does not leak how much of a guess was right.
pub fn check_password(user: &str, password: &[u8]) -> bool {
    let known: &[(&str, &[u8])] = &[("guest", b"guest")];
    let mut ok = false;
    for (name, secret) in known {
        let same =
            constant_time_eq(name.as_bytes(), user.as_bytes()) & constant_time_eq(secret, password);
        ok |= same;
    }
    ok
}

/// Whether `user` is a known user (certificate login checks the certificate's CN).
pub fn user_exists(user: &str) -> bool {
    user == "guest"
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

    #[test]
    fn guest_is_known() {
        assert!(check_password("guest", b"guest"));
        assert!(!check_password("guest", b"gues"));
        assert!(!check_password("admin", b"guest"));
    }
}
