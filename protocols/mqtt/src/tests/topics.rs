//! Topic names, filters, matching and shared subscriptions.

use crate::topic::*;

#[test]
fn matching_table() {
    let table: &[(&str, &str, bool)] = &[
        // (filter, topic, matches)
        ("sport/tennis/player1", "sport/tennis/player1", true),
        ("sport/tennis/player1", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/tournament", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+", "sport", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        // [MQTT-4.7.2-1]: leading wildcards do not match $-topics.
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+", "$SYS/x", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        ("a//c", "a//c", true),
        ("a/+/c", "a//c", true),
        ("Sport", "sport", false),
    ];
    assert!(table.len() >= 20);
    for &(filter, topic, expected) in table {
        assert!(valid_topic_filter(filter), "{filter}");
        assert!(valid_topic_name(topic), "{topic}");
        assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
    }
}

#[test]
fn filter_validation() {
    for ok in [
        "#",
        "+",
        "a/#",
        "+/+",
        "/",
        "a/+/b",
        "sport/tennis/#",
        "$SYS/#",
        "+/",
    ] {
        assert!(valid_topic_filter(ok), "{ok}");
    }
    for bad in [
        "",
        "a#",
        "a/#/b",
        "#/a",
        "a+",
        "a/b+/c",
        "+a",
        "a\0b",
        "sport/tennis#",
        "##",
    ] {
        assert!(!valid_topic_filter(bad), "{bad:?}");
    }
    assert!(!valid_topic_filter(&"a".repeat(65_536)));
    assert!(valid_topic_filter(&"a".repeat(65_535)));
}

#[test]
fn name_validation() {
    for ok in ["a", "/", "a/b", "$SYS/x", "/finance", " "] {
        assert!(valid_topic_name(ok), "{ok}");
    }
    for bad in ["", "a/+", "#", "a/#", "a\0"] {
        assert!(!valid_topic_name(bad), "{bad:?}");
    }
    assert!(!valid_topic_name(&"a".repeat(65_536)));
}

#[test]
fn shared_subscriptions() {
    assert_eq!(
        parse_shared("$share/group1/sensors/+/temp"),
        Some(SharedFilter {
            group: "group1",
            filter: "sensors/+/temp"
        })
    );
    assert_eq!(
        parse_shared("$share/g/#"),
        Some(SharedFilter {
            group: "g",
            filter: "#"
        })
    );
    assert_eq!(
        parse_shared("$share/g//a"),
        Some(SharedFilter {
            group: "g",
            filter: "/a"
        })
    );
    for bad in [
        "$share//a",   // empty group
        "$share/g",    // no filter
        "$share/g/",   // empty filter
        "$share/g+/a", // wildcard in group
        "$share/#/a",  // wildcard in group
        "$share/g/a#", // invalid filter
        "sensors/+",   // not shared
        "$SHARE/g/a",  // case matters
        "$shared/g/a", // not the prefix
    ] {
        assert_eq!(parse_shared(bad), None, "{bad}");
    }
    assert!(valid_topic_filter("$share/g/a/+"));
    assert!(!valid_topic_filter("$share//a"));
    assert!(!valid_topic_filter("$share/g"));
}
