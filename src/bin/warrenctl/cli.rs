//! The command line: rabbitmqctl's command names, arguments and options.

use clap::{Parser, Subcommand};

use crate::output::Formatter;

/// warrenctl: rabbitmqctl for warren, over the management HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "warrenctl",
    version,
    about = "rabbitmqctl for warren: manages a node through its management HTTP API",
    after_help = "Exit codes (as rabbitmqctl's): 64 usage, 65 bad input or no such object, \
                  67 no such user, 69 node unreachable, 70 unexpected answer, 75 timeout, \
                  77 credentials refused."
)]
pub(crate) struct Cli {
    /// Management API of the node
    #[arg(
        long,
        global = true,
        env = "WARRENCTL_URL",
        default_value = "http://localhost:15672"
    )]
    pub(crate) url: String,
    /// Management user
    #[arg(
        long,
        global = true,
        env = "WARRENCTL_USERNAME",
        default_value = "guest"
    )]
    pub(crate) username: String,
    /// Its password
    #[arg(
        long,
        global = true,
        env = "WARRENCTL_PASSWORD",
        default_value = "guest",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub(crate) password: String,
    /// Virtual host
    #[arg(short = 'p', long, global = true, default_value = "/")]
    pub(crate) vhost: String,
    /// Node: a name such as warren@host is accepted and ignored; a URL replaces --url
    #[arg(short = 'n', long, global = true)]
    pub(crate) node: Option<String>,
    /// Timeout of each request, seconds (default 60; await_startup waits 300)
    #[arg(
        short = 't',
        long,
        global = true,
        value_name = "SECONDS",
        // Up to a year: a bound every clock can add to the current time.
        value_parser = clap::value_parser!(u64).range(1..=31_536_000)
    )]
    pub(crate) timeout: Option<u64>,
    /// No informational lines ("Listing queues ...")
    #[arg(
        short = 'q',
        long,
        global = true,
        visible_alias = "silent",
        short_alias = 's'
    )]
    pub(crate) quiet: bool,
    /// How to print lists and reports
    #[arg(long, global = true, value_enum, default_value_t = Formatter::Tsv)]
    pub(crate) formatter: Formatter,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands, under rabbitmqctl's names.
#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub(crate) enum Command {
    /// Creates a user with no tags (password from stdin if not given)
    AddUser {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
        /// Password (read from the first line of stdin when left out)
        #[arg(value_name = "PASSWORD")]
        pass: Option<String>,
    },
    /// Deletes a user
    DeleteUser {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Changes a user's password, keeping its tags
    ChangePassword {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
        /// New password (read from the first line of stdin when left out)
        #[arg(value_name = "PASSWORD")]
        pass: Option<String>,
    },
    /// Removes a user's password: it can then log in only by certificate
    ClearPassword {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Replaces a user's tags (none clears them)
    SetUserTags {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
        /// Tags, e.g. administrator monitoring management policymaker
        tags: Vec<String>,
    },
    /// Lists users (columns: user tags)
    ListUsers {
        /// Columns to show
        columns: Vec<String>,
    },
    /// Creates a virtual host
    AddVhost {
        /// Virtual host name
        name: String,
        /// Description
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated tags
        #[arg(long)]
        tags: Option<String>,
        /// Queue type of queues declared without one
        #[arg(long = "default-queue-type")]
        default_queue_type: Option<String>,
    },
    /// Deletes a virtual host and everything in it
    DeleteVhost {
        /// Virtual host name
        name: String,
    },
    /// Lists virtual hosts (default column: name; e.g. `name tracing`)
    ListVhosts {
        /// Columns to show
        columns: Vec<String>,
    },
    /// Sets a user's configure, write and read permissions in a vhost (-p)
    SetPermissions {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
        /// Regular expression of the resources the user may configure
        configure: String,
        /// Regular expression of the resources the user may write to
        write: String,
        /// Regular expression of the resources the user may read from
        read: String,
    },
    /// Revokes a user's permissions in a vhost (-p)
    ClearPermissions {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Lists the permissions in a vhost (-p; columns: user configure write read)
    ListPermissions,
    /// Lists a user's permissions in every vhost (columns: vhost configure write read)
    ListUserPermissions {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Sets a user's topic permissions on an exchange in a vhost (-p)
    SetTopicPermissions {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
        /// Topic exchange the permissions apply to
        exchange: String,
        /// Regular expression of the routing keys the user may publish with
        write: String,
        /// Regular expression of the routing keys the user may bind with
        read: String,
    },
    /// Revokes a user's topic permissions in a vhost (-p), on one exchange or all
    ClearTopicPermissions {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
        /// Only this exchange's
        exchange: Option<String>,
    },
    /// Lists the topic permissions in a vhost (-p; columns: user exchange write read)
    ListTopicPermissions,
    /// Lists a user's topic permissions in every vhost (columns: vhost exchange write read)
    ListUserTopicPermissions {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Lists queues in a vhost (-p; default columns: name messages)
    ListQueues {
        /// Columns: name messages messages_ready messages_unacknowledged consumers durable
        /// auto_delete exclusive arguments policy memory state type vhost ...
        columns: Vec<String>,
    },
    /// Lists exchanges in a vhost (-p; default columns: name type)
    ListExchanges {
        /// Columns: name type durable auto_delete internal arguments policy
        columns: Vec<String>,
    },
    /// Lists bindings in a vhost (-p)
    ListBindings {
        /// Columns: source_name source_kind destination_name destination_kind routing_key
        /// arguments
        columns: Vec<String>,
    },
    /// Lists client connections (default columns: user peer_host peer_port state)
    ListConnections {
        /// Columns: name user vhost peer_host peer_port state protocol channels ...
        columns: Vec<String>,
    },
    /// Lists channels (default columns: pid user consumer_count messages_unacknowledged)
    ListChannels {
        /// Columns: pid connection number user vhost consumer_count prefetch_count ...
        columns: Vec<String>,
    },
    /// Lists consumers in a vhost (-p)
    ListConsumers {
        /// Columns: queue_name channel_pid consumer_tag ack_required prefetch_count active
        /// arguments
        columns: Vec<String>,
    },
    /// Shows the node's status: version, uptime, memory, alarms, listeners
    Status,
    /// Shows the node's settings and resources as /api/nodes reports them
    Environment,
    /// Status and every list for every vhost, for a support request
    Report,
    /// Checks that the node's management API answers
    Ping,
    /// Waits until the node's management API answers (up to -t, default 300 seconds)
    AwaitStartup,
    /// Sets a policy in a vhost (-p)
    SetPolicy {
        /// Policy name
        name: String,
        /// Regular expression of the queue or exchange names it applies to
        pattern: String,
        /// The definition, a JSON object, e.g. '{"max-length": 1000}'
        definition: String,
        /// Priority: the highest matching policy applies
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        /// What the policy applies to
        #[arg(long = "apply-to", default_value = "all", value_parser = ["queues", "exchanges", "all"])]
        apply_to: String,
    },
    /// Removes a policy from a vhost (-p)
    ClearPolicy {
        /// Policy name
        name: String,
    },
    /// Lists policies in a vhost (-p; columns: vhost name pattern apply-to definition priority)
    ListPolicies,
    /// Removes every ready message from a queue in a vhost (-p)
    PurgeQueue {
        /// Queue name
        queue: String,
    },
    /// Deletes a queue in a vhost (-p)
    DeleteQueue {
        /// Queue name
        queue: String,
        /// Only if it has no messages
        #[arg(short = 'e', long = "if-empty")]
        if_empty: bool,
        /// Only if it has no consumers
        #[arg(short = 'u', long = "if-unused")]
        if_unused: bool,
    },
    /// Closes a client connection, telling the client why
    CloseConnection {
        /// Connection name, as list_connections name shows it
        connection_name: String,
        /// The reason the client is given
        explanation: String,
    },
    /// Writes the node's definitions (users, vhosts, permissions, queues, ...) as JSON
    ExportDefinitions {
        /// File to write, `-` for standard output
        path: String,
    },
    /// Imports definitions from a JSON file into the node
    ImportDefinitions {
        /// File to read, `-` (or nothing) for standard input
        path: Option<String>,
    },
}
