//! `xchg`: the node daemon and the operator's command-line tool. This file only parses
//! arguments and starts logging; every command is carried out by the `cli` module and the
//! `xchg_node` library.

mod cli;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xchg",
    version,
    about = "Node software of a federated data-product exchange"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole federation on this machine (every node of a layout, in this process) until
    /// SIGINT or SIGTERM: the Xuchang city with its hub by default.
    Up {
        /// Data directory: the layout is generated here on first run and reused afterwards.
        #[arg(long, default_value = "xchg-data")]
        dir: PathBuf,
        /// xuchang (10 zones + Zhengzhou), single-zone or two-exchanges [default: xuchang, or
        /// what the data directory holds].
        #[arg(long)]
        layout: Option<String>,
        /// Nodes per zone on first run [default: 3, or what the data directory holds].
        #[arg(long)]
        nodes_per_zone: Option<usize>,
        /// Seed realistic demo listings across zones and exchanges (once per data directory).
        #[arg(long)]
        demo: bool,
        /// First TCP port, on a first run only; each node takes three consecutive ports
        /// [default: 7100].
        #[arg(long)]
        base_port: Option<u16>,
        /// Address every node listens on, on a first run only [default: 127.0.0.1].
        #[arg(long)]
        host: Option<IpAddr>,
        /// Print the dashboard URL with the hub's regulator token in it (`#token=…`). Without
        /// it the URL is printed bare and the token stays in DIR/dashboard.token.
        #[arg(long)]
        print_token: bool,
    },
    /// Run one node of a zone until SIGINT or SIGTERM.
    Run {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Join an existing zone (wait to be added with POST /v1/zone/members) instead of
        /// forming the zone from the config's member list.
        #[arg(long)]
        join: bool,
        /// Diagnostics: append every byte this node publishes on gossip or serves over
        /// request-response to FILE (records of a 4-byte big-endian length and the bytes).
        #[arg(long, value_name = "FILE")]
        capture_wire: Option<PathBuf>,
    },
    /// Generate and check node configurations (`xchg config reference` lists every key).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure throughput and latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Federation tools.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// A node's status (role, leader, term, indices, members).
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Submit, approve, search and show listings through a node's API.
    #[command(subcommand)]
    Listing(ListingCommand),
    /// API tokens kept in a node's data directory (offline admin recovery).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an admin token for a zone that has lost its admin tokens, in the data directory
    /// of one of its nodes while that node is stopped. The node hands it to the zone through
    /// Raft when it starts again; from then on it works on every member. Prints the token on
    /// standard output (once; only its hash is kept).
    Create {
        /// The stopped node's data directory (`node.data_dir` of its config).
        #[arg(long)]
        data_dir: PathBuf,
        /// The role: only `admin` can be created offline.
        #[arg(long)]
        role: String,
        /// A label for people, e.g. who holds it.
        #[arg(long, default_value = "offline recovery")]
        label: String,
    },
}

/// Which node to ask, and as whom.
#[derive(clap::Args)]
struct TargetArgs {
    /// The node's API base URL.
    #[arg(long, env = "XCHG_NODE", default_value = "http://127.0.0.1:7100")]
    node: String,
    /// Bearer token (role tokens are in layout.json). On a command line it is seen by other
    /// users of the machine (`ps`) and kept in shell history: prefer XCHG_TOKEN or --token-file.
    #[arg(long, env = "XCHG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from this file (its first line; e.g. the dashboard.token that
    /// `xchg up` writes).
    #[arg(long, value_name = "PATH", env = "XCHG_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

impl TargetArgs {
    fn target(self) -> anyhow::Result<cli::client::Target> {
        let token = match (self.token, self.token_file) {
            // One of them may come from the environment: say which, rather than pick one.
            (Some(_), Some(file)) => anyhow::bail!(
                "a token is given twice: --token or XCHG_TOKEN, and --token-file {} (or \
                 XCHG_TOKEN_FILE); give one",
                file.display()
            ),
            (Some(token), None) => Some(token),
            (None, Some(file)) => Some(cli::client::read_token_file(&file)?),
            (None, None) => None,
        };
        Ok(cli::client::Target {
            node: self.node,
            token,
            json: self.json,
        })
    }
}

#[derive(Subcommand)]
enum ListingCommand {
    /// Submit the listing in FILE (JSON; `-` for standard input) as a provider.
    Submit {
        /// The listing's JSON.
        file: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Approve a submitted listing as an operator.
    Approve {
        /// Listing id (sha256:…).
        id: String,
        /// Review notes.
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Full-text search (Chinese too).
    Search {
        /// Search terms.
        query: String,
        /// local, external, an exchange id or a zone id.
        #[arg(long)]
        origin: Option<String>,
        /// Most results.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// One listing with its history and provenance.
    Show {
        /// Listing id (sha256:…).
        id: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Subcommand)]
enum FederationCommand {
    /// Sign a node-key revocation with the exchange's root key (offline) and print the body for
    /// `POST /v1/federation/revocations`.
    Revoke {
        /// The exchange's root key file.
        #[arg(long)]
        root_key: PathBuf,
        /// The exchange whose root signs.
        #[arg(long)]
        exchange: String,
        /// The node key to revoke: base64 (as in the zone's member list) or 64 hex digits (as
        /// the API shows keys).
        #[arg(long)]
        key: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Start a local 3-node zone and submit listings at several concurrency levels.
    Zone {
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// Measured seconds per level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// `leader` (every request to the leader) or `all` (spread; followers forward).
        #[arg(long, default_value = "leader")]
        target: String,
        /// First port of the bench zone (9 consecutive ports).
        #[arg(long, default_value_t = 7400)]
        base_port: u16,
        /// Keep the zone's configs, data and logs in this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Set the nodes' `raft.snapshot_log_percent` (0: a snapshot every
        /// `raft.snapshot_every_entries` entries, as before the size condition).
        #[arg(long)]
        snapshot_log_percent: Option<u64>,
    },
    /// Start a whole federation and measure how long approved listings take to be recognised
    /// in every other zone.
    Federation {
        /// Layout: xuchang (10 zones + Zhengzhou) or two-exchanges.
        #[arg(long, default_value = "xuchang")]
        layout: String,
        /// Nodes per zone.
        #[arg(long, default_value_t = 1)]
        nodes_per_zone: usize,
        /// Listings approved (and measured).
        #[arg(long, default_value_t = 1000)]
        listings: usize,
        /// Concurrent approvers.
        #[arg(long, default_value_t = 8)]
        approvers: usize,
        /// Approvals per second, all approvers together (0: as fast as they go).
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Zone where the listings are approved.
        #[arg(long, default_value = "xuchang/yuzhou")]
        origin: String,
        /// Poll interval of the watchers, milliseconds.
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        /// First port of the layout (three per node).
        #[arg(long, default_value_t = 7600)]
        base_port: u16,
        /// Keep the layout's configs, data and logs in this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Generate keys, delegations, tokens and one config per node for a whole layout.
    Generate {
        /// Output directory; must not already hold a layout.
        #[arg(long)]
        out: PathBuf,
        /// Which federation to lay out: xuchang (10 zones + Zhengzhou), single-zone, two-exchanges.
        #[arg(long, default_value = "xuchang")]
        layout: String,
        /// Nodes per zone (1 to 9; odd numbers tolerate failures best).
        #[arg(long, default_value_t = 3)]
        nodes_per_zone: usize,
        /// First TCP port; each node takes three consecutive ports (API, Raft, libp2p).
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// Address every node listens on.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Validity of the node delegations, in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
    },
    /// Add a node to a zone of a generated layout: key, delegation and config for `run --join`.
    AddNode {
        /// Layout directory written by `xchg config generate`; layout.json there gains the node.
        #[arg(long)]
        layout: PathBuf,
        /// Zone to grow, e.g. xuchang/municipal.
        #[arg(long)]
        zone: String,
        /// Node name [default: <zone name>-<n>, n one above the zone's highest].
        #[arg(long)]
        name: Option<String>,
        /// Address the node listens on [default: the host of the zone's nodes].
        #[arg(long)]
        host: Option<IpAddr>,
        /// API port; Raft and libp2p take the next two [default: after the highest port in
        /// layout.json].
        #[arg(long)]
        base_port: Option<u16>,
        /// Validity of the node's delegation, in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
    },
    /// Check node config files; prints every violation and exits non-zero if any is an error.
    Validate {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the configuration reference: every key, its type, default, unit and an example.
    Reference,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `xchg up` prints its own progress; while 33 nodes find each other at start, Raft's
    // vote-request errors would bury it. RUST_LOG overrides either default.
    cli::init_tracing(match args.command {
        Command::Up { .. } => "warn,openraft=off",
        _ => "info",
    });
    let result = match args.command {
        Command::Up {
            dir,
            layout,
            nodes_per_zone,
            demo,
            base_port,
            host,
            print_token,
        } => match layout.map(|l| l.parse()).transpose() {
            Err(e) => Err(anyhow::anyhow!("--layout: {e}")),
            Ok(layout) => {
                let opts = cli::up::UpOptions {
                    dir,
                    layout,
                    nodes_per_zone,
                    demo,
                    base_port,
                    host,
                    print_token,
                };
                block_on(cli::up::up(opts))
            }
        },
        Command::Run {
            config,
            join,
            capture_wire,
        } => block_on(cli::run::run(&config, join, capture_wire)),
        Command::Status { target } => target
            .target()
            .and_then(|t| block_on(cli::client::status(&t))),
        Command::Listing(ListingCommand::Submit { file, target }) => target
            .target()
            .and_then(|t| block_on(cli::client::submit(&t, &file))),
        Command::Listing(ListingCommand::Approve { id, notes, target }) => target
            .target()
            .and_then(|t| block_on(cli::client::approve(&t, &id, notes))),
        Command::Listing(ListingCommand::Search {
            query,
            origin,
            limit,
            target,
        }) => target
            .target()
            .and_then(|t| block_on(cli::client::search(&t, &query, origin, limit))),
        Command::Listing(ListingCommand::Show { id, target }) => target
            .target()
            .and_then(|t| block_on(cli::client::show(&t, &id))),
        Command::Token(TokenCommand::Create {
            data_dir,
            role,
            label,
        }) => cli::token::create_offline(&data_dir, &role, &label),
        Command::Federation(FederationCommand::Revoke {
            root_key,
            exchange,
            key,
            reason,
        }) => cli::federation::revoke(&root_key, &exchange, &key, &reason),
        Command::Config(ConfigCommand::Generate {
            out,
            layout,
            nodes_per_zone,
            base_port,
            host,
            valid_days,
        }) => cli::config::generate(out, &layout, nodes_per_zone, base_port, host, valid_days),
        Command::Config(ConfigCommand::AddNode {
            layout,
            zone,
            name,
            host,
            base_port,
            valid_days,
        }) => cli::config::add_node(layout, &zone, name.as_deref(), host, base_port, valid_days),
        Command::Config(ConfigCommand::Validate { files }) => cli::config::validate(&files),
        Command::Config(ConfigCommand::Reference) => {
            print!("{}", xchg_federation_config::REFERENCE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Zone {
            clients,
            seconds,
            target,
            base_port,
            dir,
            snapshot_log_percent,
        }) => {
            let opts = cli::bench::BenchOptions {
                clients,
                seconds,
                target,
                base_port,
                dir,
                snapshot_log_percent,
            };
            block_on(cli::bench::zone(opts))
        }
        Command::Bench(BenchCommand::Federation {
            layout,
            nodes_per_zone,
            listings,
            approvers,
            rate,
            origin,
            poll_ms,
            base_port,
            dir,
        }) => match layout.parse() {
            Err(e) => Err(anyhow::anyhow!("--layout: {e}")),
            Ok(layout) => {
                let opts = cli::bench_federation::FederationBenchOptions {
                    layout,
                    nodes_per_zone,
                    listings,
                    approvers,
                    rate,
                    origin,
                    poll: std::time::Duration::from_millis(poll_ms.max(1)),
                    base_port,
                    dir,
                };
                block_on(cli::bench_federation::federation(opts))
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command's future on a fresh runtime.
fn block_on(
    f: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
    }
}
