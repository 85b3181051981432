//! Users, virtual hosts, permissions and topic permissions.

use std::io::BufRead;

use serde_json::{json, Value};

use crate::client::{api, exit, Failure, Method};
use crate::lists::{self, no_vhost};
use crate::Context;

/// The failure for a user that does not exist, in rabbitmqctl's words.
fn no_user(user: &str) -> Failure {
    Failure::new(exit::NO_USER, format!("User \"{user}\" does not exist"))
}

/// A permission write's failure: RabbitMQ's API answers 400 `vhost_or_user_not_found` when
/// either is missing (older nodes say `vhost_not_found` or `user_not_found`); say which,
/// asking the node whether the vhost exists when the answer does not tell.
fn permission_failure(context: &Context, failure: Failure, user: &str, vhost: &str) -> Failure {
    let message = &failure.message;
    if message.contains("vhost_or_user_not_found") {
        let vhost_exists = context
            .client
            .get(&api(&["vhosts", vhost]), || no_vhost(vhost))
            .is_ok();
        if vhost_exists {
            no_user(user)
        } else {
            no_vhost(vhost)
        }
    } else if message.contains("vhost_not_found") {
        no_vhost(vhost)
    } else if message.contains("user_not_found") {
        no_user(user)
    } else {
        failure
    }
}

/// The password argument, or the first line of stdin as rabbitmqctl reads it.
fn password_or_stdin(password: Option<&str>) -> Result<String, Failure> {
    if let Some(password) = password {
        return Ok(password.to_string());
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Failure::new(exit::NO_INPUT, format!("reading the password: {error}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Failure::usage(
            "no password given (as an argument or on standard input)",
        ));
    }
    Ok(password.to_string())
}

/// A user's tags from the API: a list, or a comma-separated string on older nodes.
fn tags_of(user: &Value) -> Vec<String> {
    match user.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(tags)) => tags
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn get_user(context: &Context, user: &str) -> Result<Value, Failure> {
    context.client.get(&api(&["users", user]), || no_user(user))
}

fn put_user(context: &Context, user: &str, body: &Value) -> Result<(), Failure> {
    context
        .client
        .write(Method::Put, &api(&["users", user]), Some(body), || {
            no_user(user)
        })
}

/// `add_user USER [PASSWORD]`: refused if the user exists, as rabbitmqctl does (a `PUT` alone
/// would silently replace the password).
pub(crate) fn add_user(
    context: &mut Context,
    user: &str,
    password: Option<&str>,
) -> Result<(), Failure> {
    let password = password_or_stdin(password)?;
    context.out.banner(&format!("Adding user \"{user}\" ..."));
    let reply = context
        .client
        .send(Method::Get, &api(&["users", user]), None, None)?;
    if reply.status != 404 {
        context.client.check(reply, || no_user(user))?;
        return Err(Failure::data(format!("User \"{user}\" already exists")));
    }
    put_user(context, user, &json!({ "password": password, "tags": "" }))
}

/// `delete_user USER`.
pub(crate) fn delete_user(context: &mut Context, user: &str) -> Result<(), Failure> {
    context.out.banner(&format!("Deleting user \"{user}\" ..."));
    context
        .client
        .write(Method::Delete, &api(&["users", user]), None, || {
            no_user(user)
        })
}

/// `change_password USER [PASSWORD]`: the user's tags are read first and sent back, so the
/// update keeps them.
pub(crate) fn change_password(
    context: &mut Context,
    user: &str,
    password: Option<&str>,
) -> Result<(), Failure> {
    let password = password_or_stdin(password)?;
    context
        .out
        .banner(&format!("Changing password for user \"{user}\" ..."));
    let existing = get_user(context, user)?;
    let tags = tags_of(&existing).join(",");
    put_user(
        context,
        user,
        &json!({ "password": password, "tags": tags }),
    )
}

/// `clear_password USER`: an empty `password_hash`, tags kept.
pub(crate) fn clear_password(context: &mut Context, user: &str) -> Result<(), Failure> {
    context
        .out
        .banner(&format!("Clearing password for user \"{user}\" ..."));
    let existing = get_user(context, user)?;
    let tags = tags_of(&existing).join(",");
    put_user(context, user, &json!({ "password_hash": "", "tags": tags }))
}

/// `set_user_tags USER TAG...`: the user's current hash is sent back with the new tags, so the
/// password is kept whatever the node does with a body that has no password.
pub(crate) fn set_user_tags(
    context: &mut Context,
    user: &str,
    tags: &[String],
) -> Result<(), Failure> {
    let tags: Vec<String> = tags
        .iter()
        .flat_map(|tag| tag.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_string)
        .collect();
    context.out.banner(&format!(
        "Setting tags for user \"{user}\" to [{}] ...",
        tags.join(", ")
    ));
    let existing = get_user(context, user)?;
    let mut body = json!({ "tags": tags.join(",") });
    if let Some(hash) = existing.get("password_hash").and_then(Value::as_str) {
        body["password_hash"] = json!(hash);
        if let Some(algorithm) = existing.get("hashing_algorithm") {
            body["hashing_algorithm"] = algorithm.clone();
        }
    }
    put_user(context, user, &body)
}

/// `list_users`.
pub(crate) fn list_users(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    context.out.banner("Listing users ...");
    let mut items = context.client.get_list(&api(&["users"]), || {
        Failure::data("the node has no user list")
    })?;
    // Older nodes send tags as one comma-separated string; rabbitmqctl shows a list either way.
    for item in &mut items {
        let tags = tags_of(item);
        if let Some(object) = item.as_object_mut() {
            object.insert("tags".into(), json!(tags));
        }
    }
    lists::print(context, &lists::USERS, requested, &items)
}

/// `add_vhost NAME`.
pub(crate) fn add_vhost(
    context: &mut Context,
    vhost: &str,
    description: Option<&str>,
    tags: Option<&str>,
    default_queue_type: Option<&str>,
) -> Result<(), Failure> {
    context.out.banner(&format!("Adding vhost \"{vhost}\" ..."));
    let mut body = json!({});
    if let Some(description) = description {
        body["description"] = json!(description);
    }
    if let Some(tags) = tags {
        body["tags"] = json!(tags);
    }
    if let Some(queue_type) = default_queue_type {
        body["default_queue_type"] = json!(queue_type);
    }
    context
        .client
        .write(Method::Put, &api(&["vhosts", vhost]), Some(&body), || {
            no_vhost(vhost)
        })
}

/// `delete_vhost NAME`.
pub(crate) fn delete_vhost(context: &mut Context, vhost: &str) -> Result<(), Failure> {
    context
        .out
        .banner(&format!("Deleting vhost \"{vhost}\" ..."));
    context
        .client
        .write(Method::Delete, &api(&["vhosts", vhost]), None, || {
            no_vhost(vhost)
        })
}

/// `list_vhosts [COLUMN...]`.
pub(crate) fn list_vhosts(context: &mut Context, requested: &[String]) -> Result<(), Failure> {
    context.out.banner("Listing vhosts ...");
    let items = context.client.get_list(&api(&["vhosts"]), || {
        Failure::data("the node has no vhost list")
    })?;
    lists::print(context, &lists::VHOSTS, requested, &items)
}

/// `set_permissions [-p VHOST] USER CONF WRITE READ`.
pub(crate) fn set_permissions(
    context: &mut Context,
    user: &str,
    [configure, write, read]: [&str; 3],
) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context.out.banner(&format!(
        "Setting permissions for user \"{user}\" in vhost \"{vhost}\" ..."
    ));
    let body = json!({ "configure": configure, "write": write, "read": read });
    context
        .client
        .write(
            Method::Put,
            &api(&["permissions", &vhost, user]),
            Some(&body),
            || no_vhost(&vhost),
        )
        .map_err(|failure| permission_failure(context, failure, user, &vhost))
}

/// `clear_permissions [-p VHOST] USER`.
pub(crate) fn clear_permissions(context: &mut Context, user: &str) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context.out.banner(&format!(
        "Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ..."
    ));
    context.client.write(
        Method::Delete,
        &api(&["permissions", &vhost, user]),
        None,
        || {
            Failure::data(format!(
                "User \"{user}\" has no permissions in vhost \"{vhost}\" (or either does not exist)"
            ))
        },
    )
}

/// `list_permissions [-p VHOST]`.
pub(crate) fn list_permissions(context: &mut Context) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context
        .out
        .banner(&format!("Listing permissions for vhost \"{vhost}\" ..."));
    let items = context
        .client
        .get_list(&api(&["vhosts", &vhost, "permissions"]), || {
            no_vhost(&vhost)
        })?;
    lists::print(context, &lists::PERMISSIONS, &[], &items)
}

/// `list_user_permissions USER`.
pub(crate) fn list_user_permissions(context: &mut Context, user: &str) -> Result<(), Failure> {
    context
        .out
        .banner(&format!("Listing permissions for user \"{user}\" ..."));
    let items = context
        .client
        .get_list(&api(&["users", user, "permissions"]), || no_user(user))?;
    lists::print(context, &lists::USER_PERMISSIONS, &[], &items)
}

/// `set_topic_permissions [-p VHOST] USER EXCHANGE WRITE READ`.
pub(crate) fn set_topic_permissions(
    context: &mut Context,
    user: &str,
    [exchange, write, read]: [&str; 3],
) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context.out.banner(&format!(
        "Setting topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{vhost}\" ..."
    ));
    let body = json!({ "exchange": exchange, "write": write, "read": read });
    context
        .client
        .write(
            Method::Put,
            &api(&["topic-permissions", &vhost, user]),
            Some(&body),
            || no_vhost(&vhost),
        )
        .map_err(|failure| permission_failure(context, failure, user, &vhost))
}

/// `clear_topic_permissions [-p VHOST] USER [EXCHANGE]`: one exchange's through `?exchange=`,
/// else all of the user's in the vhost.
pub(crate) fn clear_topic_permissions(
    context: &mut Context,
    user: &str,
    exchange: Option<&str>,
) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    let mut path = api(&["topic-permissions", &vhost, user]);
    match exchange {
        Some(exchange) => {
            context.out.banner(&format!(
                "Clearing topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{vhost}\" ..."
            ));
            path.push_str("?exchange=");
            path.push_str(&crate::client::encode(exchange));
        }
        None => context.out.banner(&format!(
            "Clearing topic permissions for user \"{user}\" in vhost \"{vhost}\" ..."
        )),
    }
    context.client.write(Method::Delete, &path, None, || {
        Failure::data(format!(
            "User \"{user}\" has no topic permissions in vhost \"{vhost}\" (or either does not exist)"
        ))
    })
}

/// `list_topic_permissions [-p VHOST]`.
pub(crate) fn list_topic_permissions(context: &mut Context) -> Result<(), Failure> {
    let vhost = context.vhost.clone();
    context.out.banner(&format!(
        "Listing topic permissions for vhost \"{vhost}\" ..."
    ));
    let items = context
        .client
        .get_list(&api(&["vhosts", &vhost, "topic-permissions"]), || {
            no_vhost(&vhost)
        })?;
    lists::print(context, &lists::TOPIC_PERMISSIONS, &[], &items)
}

/// `list_user_topic_permissions USER`.
pub(crate) fn list_user_topic_permissions(
    context: &mut Context,
    user: &str,
) -> Result<(), Failure> {
    context.out.banner(&format!(
        "Listing topic permissions for user \"{user}\" ..."
    ));
    let items = context
        .client
        .get_list(&api(&["users", user, "topic-permissions"]), || {
            no_user(user)
        })?;
    lists::print(context, &lists::USER_TOPIC_PERMISSIONS, &[], &items)
}
