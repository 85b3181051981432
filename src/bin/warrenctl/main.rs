//! `warrenctl`: rabbitmqctl for warren. It speaks only to the node's management HTTP API
//! (RabbitMQ's paths and JSON), so it works from any host that reaches port 15672 and needs no
//! access to the node's files or process.

mod access;
mod cli;
mod client;
mod lists;
mod node;
mod objects;
mod output;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command};
use client::{exit, Client, Failure, Settings};
use output::Output;

/// Request timeout when `-t` is not given, as rabbitmqctl's.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `await_startup` waits when `-t` is not given, as rabbitmqctl's.
const DEFAULT_STARTUP_WAIT: Duration = Duration::from_secs(300);
/// The longest a single `await_startup` poll may take, so that the wait ends near its limit.
const STARTUP_POLL: Duration = Duration::from_secs(5);

/// What every command works with.
pub(crate) struct Context {
    /// The node's management API.
    pub(crate) client: Client,
    /// Standard output.
    pub(crate) out: Output,
    /// The vhost `-p` names.
    pub(crate) vhost: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let code = if error.use_stderr() { exit::USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let out = Output::stdout(cli.formatter, cli.quiet);
    let (outcome, mut out) = run(cli, out);
    let written = out.take_error();
    match (outcome, written) {
        (Err(failure), _) => {
            report_error(&failure);
            ExitCode::from(failure.code)
        }
        (Ok(()), Some(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            // `warrenctl list_queues | head`: the reader has what it wanted.
            ExitCode::SUCCESS
        }
        (Ok(()), Some(error)) => {
            report_error(&Failure::new(
                exit::IO,
                format!("writing the output: {error}"),
            ));
            ExitCode::from(exit::IO)
        }
        (Ok(()), None) => ExitCode::SUCCESS,
    }
}

/// Prints `Error: ...` on stderr. A stderr that cannot be written is ignored: the exit code
/// still tells.
pub(crate) fn report_error(failure: &Failure) {
    let _ = writeln!(std::io::stderr(), "Error: {}", failure.message);
}

/// Runs the command; hands the output back so that `main` can check it was written.
fn run(cli: Cli, out: Output) -> (Result<(), Failure>, Output) {
    // `-n` takes a node name (rabbitmqctl's habit, nothing to do with HTTP) or a URL.
    let url = match &cli.node {
        Some(node) if node.contains("://") => node.clone(),
        _ => cli.url.clone(),
    };
    let requested = cli.timeout.map(Duration::from_secs);
    let timeout = match cli.command {
        Command::AwaitStartup => requested.unwrap_or(DEFAULT_STARTUP_WAIT).min(STARTUP_POLL),
        _ => requested.unwrap_or(DEFAULT_TIMEOUT),
    };
    let client = match Client::new(Settings {
        url,
        username: cli.username,
        password: cli.password,
        timeout,
    }) {
        Ok(client) => client,
        Err(failure) => return (Err(failure), out),
    };
    let mut context = Context {
        client,
        out,
        vhost: cli.vhost,
    };
    let outcome = dispatch(&mut context, cli.command, requested);
    (outcome, context.out)
}

fn dispatch(
    context: &mut Context,
    command: Command,
    requested_timeout: Option<Duration>,
) -> Result<(), Failure> {
    match command {
        Command::AddUser { user, pass } => access::add_user(context, &user, pass.as_deref()),
        Command::DeleteUser { user } => access::delete_user(context, &user),
        Command::ChangePassword { user, pass } => {
            access::change_password(context, &user, pass.as_deref())
        }
        Command::ClearPassword { user } => access::clear_password(context, &user),
        Command::SetUserTags { user, tags } => access::set_user_tags(context, &user, &tags),
        Command::ListUsers { columns } => access::list_users(context, &columns),
        Command::AddVhost {
            name,
            description,
            tags,
            default_queue_type,
        } => access::add_vhost(
            context,
            &name,
            description.as_deref(),
            tags.as_deref(),
            default_queue_type.as_deref(),
        ),
        Command::DeleteVhost { name } => access::delete_vhost(context, &name),
        Command::ListVhosts { columns } => access::list_vhosts(context, &columns),
        Command::SetPermissions {
            user,
            configure,
            write,
            read,
        } => access::set_permissions(context, &user, [&configure, &write, &read]),
        Command::ClearPermissions { user } => access::clear_permissions(context, &user),
        Command::ListPermissions => access::list_permissions(context),
        Command::ListUserPermissions { user } => access::list_user_permissions(context, &user),
        Command::SetTopicPermissions {
            user,
            exchange,
            write,
            read,
        } => access::set_topic_permissions(context, &user, [&exchange, &write, &read]),
        Command::ClearTopicPermissions { user, exchange } => {
            access::clear_topic_permissions(context, &user, exchange.as_deref())
        }
        Command::ListTopicPermissions => access::list_topic_permissions(context),
        Command::ListUserTopicPermissions { user } => {
            access::list_user_topic_permissions(context, &user)
        }
        Command::ListQueues { columns } => lists::queues(context, &columns),
        Command::ListExchanges { columns } => lists::exchanges(context, &columns),
        Command::ListBindings { columns } => lists::bindings(context, &columns),
        Command::ListConnections { columns } => lists::connections(context, &columns),
        Command::ListChannels { columns } => lists::channels(context, &columns),
        Command::ListConsumers { columns } => lists::consumers(context, &columns),
        Command::Status => node::status(context),
        Command::Environment => node::environment(context),
        Command::Report => node::report(context),
        Command::Ping => node::ping(context),
        Command::AwaitStartup => {
            node::await_startup(context, requested_timeout.unwrap_or(DEFAULT_STARTUP_WAIT))
        }
        Command::SetPolicy {
            name,
            pattern,
            definition,
            priority,
            apply_to,
        } => objects::set_policy(context, [&name, &pattern, &definition], priority, &apply_to),
        Command::ClearPolicy { name } => objects::clear_policy(context, &name),
        Command::ListPolicies => objects::list_policies(context),
        Command::PurgeQueue { queue } => objects::purge_queue(context, &queue),
        Command::DeleteQueue {
            queue,
            if_empty,
            if_unused,
        } => objects::delete_queue(context, &queue, if_empty, if_unused),
        Command::CloseConnection {
            connection_name,
            explanation,
        } => objects::close_connection(context, &connection_name, &explanation),
        Command::ExportDefinitions { path } => objects::export_definitions(context, &path),
        Command::ImportDefinitions { path } => {
            objects::import_definitions(context, path.as_deref())
        }
    }
}
