//! Policies, queue purge and delete, closing connections, and definitions export and import.

use std::io::Read;

use serde_json::{json, Value};

use crate::client::{api, exit, Failure, Method};
use crate::lists::{self, no_vhost};
use crate::Context;

/// The failure for a queue that does not exist, in rabbitmqctl's words.
fn no_queue(queue: &str, vhost: &str) -> Failure {
    Failure::data(format!("queue '{queue}' in vhost '{vhost}' not found"))
}

/// `set_policy [-p VHOST] [--priority N] [--apply-to WHAT] NAME PATTERN DEFINITION`.
pub(crate) fn set_policy(
    context: &mut Context,
    [name, pattern, definition]: [&str; 3],
    priority: i64,
    apply_to: &str,
) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    let parsed: Value = serde_json::from_str(definition).map_err(|error| {
        Failure::data(format!(
            "the policy definition is not valid JSON ({error}): {definition}"
        ))
    })?;
    if !parsed.is_object() {
        return Err(Failure::data(format!(
            "the policy definition must be a JSON object, e.g. '{{\"max-length\": 1000}}', not {definition}"
        )));
    }
    context.out.banner(&format!(
        "Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" for vhost \"{vhost}\" ..."
    ));
    let body = json!({
        "pattern": pattern,
        "definition": parsed,
        "priority": priority,
        "apply-to": apply_to,
    });
    context.client.write(
        Method::Put,
        &api(&["policies", &vhost, name]),
        Some(&body),
        || no_vhost(&vhost),
    )
}

/// `clear_policy [-p VHOST] NAME`.
pub(crate) fn clear_policy(context: &mut Context, name: &str) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context.out.banner(&format!(
        "Clearing policy \"{name}\" on vhost \"{vhost}\" ..."
    ));
    context.client.write(
        Method::Delete,
        &api(&["policies", &vhost, name]),
        None,
        || {
            Failure::data(format!(
                "Policy \"{name}\" does not exist in vhost \"{vhost}\""
            ))
        },
    )
}

/// `list_policies [-p VHOST]`.
pub(crate) fn list_policies(context: &mut Context) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Listing policies for vhost \"{vhost}\" ..."));
    let items = context
        .client
        .get_list(&api(&["policies", &vhost]), || no_vhost(&vhost))?;
    lists::print(context, &lists::POLICIES, &[], &items)
}

/// `purge_queue [-p VHOST] QUEUE`.
pub(crate) fn purge_queue(context: &mut Context, queue: &str) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Purging queue '{queue}' in vhost '{vhost}' ..."));
    context.client.write(
        Method::Delete,
        &api(&["queues", &vhost, queue, "contents"]),
        None,
        || no_queue(queue, &vhost),
    )
}

/// `delete_queue [-p VHOST] QUEUE [--if-empty] [--if-unused]`: reads the queue first, to say
/// how many messages went with it as rabbitmqctl does.
pub(crate) fn delete_queue(
    context: &mut Context,
    queue: &str,
    if_empty: bool,
    if_unused: bool,
) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Deleting queue '{queue}' on vhost '{vhost}' ..."));
    let path = api(&["queues", &vhost, queue]);
    let shown = context.client.get(&path, || no_queue(queue, &vhost))?;
    let conditions: Vec<&str> = [("if-empty=true", if_empty), ("if-unused=true", if_unused)]
        .into_iter()
        .filter(|(_, wanted)| *wanted)
        .map(|(condition, _)| condition)
        .collect();
    let target = if conditions.is_empty() {
        path
    } else {
        format!("{path}?{}", conditions.join("&"))
    };
    context
        .client
        .write(Method::Delete, &target, None, || no_queue(queue, &vhost))?;
    let messages = shown.get("messages").and_then(Value::as_u64).unwrap_or(0);
    context.out.result(&format!(
        "Queue was successfully deleted with {messages} messages"
    ));
    Ok(())
}

/// An `X-Reason` header value: printable ASCII only, since HTTP header values cannot carry
/// anything else reliably.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `close_connection NAME EXPLANATION`.
pub(crate) fn close_connection(
    context: &mut Context,
    name: &str,
    explanation: &str,
) -> Result<(), Failure> {
    context.out.banner(&format!(
        "Closing connection \"{name}\", reason: {explanation}..."
    ));
    let reply = context.client.send(
        Method::Delete,
        &api(&["connections", name]),
        None,
        Some(&header_safe(explanation)),
    )?;
    context
        .client
        .check(reply, || {
            Failure::data(format!("connection \"{name}\" not found"))
        })
        .map(|_| ())
}

/// `export_definitions PATH` (`-`: standard output, nothing else printed there).
pub(crate) fn export_definitions(context: &mut Context, path: &str) -> Result<(), Failure> {
    if path != "-" {
        context.out.banner(&format!(
            "Exporting definitions in JSON to a file at \"{path}\" ..."
        ));
    }
    let reply = context
        .client
        .send(Method::Get, &api(&["definitions"]), None, None)?;
    let reply = context.client.check(reply, || {
        Failure::new(exit::SOFTWARE, "the node does not export definitions")
    })?;
    // Written as the node sent them, once known to be JSON.
    if let Err(error) = serde_json::from_str::<Value>(&reply.body) {
        return Err(Failure::new(
            exit::SOFTWARE,
            format!("the node's definitions are not JSON: {error}"),
        ));
    }
    let mut text = reply.body;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if path == "-" {
        context.out.raw(&text);
        return Ok(());
    }
    std::fs::write(path, text)
        .map_err(|error| Failure::new(exit::CANT_CREATE, format!("writing {path}: {error}")))
}

/// `import_definitions [PATH]` (`-` or none: standard input).
pub(crate) fn import_definitions(context: &mut Context, path: Option<&str>) -> Result<(), Failure> {
    let mut text = String::new();
    match path {
        None | Some("-") => {
            context
                .out
                .banner("Importing definitions in JSON from standard input ...");
            std::io::stdin()
                .lock()
                .read_to_string(&mut text)
                .map_err(|error| {
                    Failure::new(exit::NO_INPUT, format!("reading standard input: {error}"))
                })?;
        }
        Some(path) => {
            context.out.banner(&format!(
                "Importing definitions in JSON from a file at \"{path}\" ..."
            ));
            text = std::fs::read_to_string(path).map_err(|error| {
                Failure::new(exit::NO_INPUT, format!("reading {path}: {error}"))
            })?;
        }
    }
    let definitions: Value = serde_json::from_str(&text)
        .map_err(|error| Failure::data(format!("the definitions are not valid JSON: {error}")))?;
    if !definitions.is_object() {
        return Err(Failure::data(
            "the definitions must be a JSON object, as export_definitions writes them",
        ));
    }
    context.client.write(
        Method::Post,
        &api(&["definitions"]),
        Some(&definitions),
        || Failure::new(exit::SOFTWARE, "the node does not import definitions"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_made_header_safe() {
        assert_eq!(header_safe("maintenance window"), "maintenance window");
        assert_eq!(header_safe("bye\r\nX-Evil: 1"), "bye??X-Evil: 1");
        assert_eq!(header_safe("café"), "caf?");
    }
}
