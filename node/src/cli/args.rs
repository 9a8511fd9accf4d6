//! The `xchg` command line as clap types: one struct per command, and these structs are what
//! the command functions in the sibling modules take, so a flag is declared once.
//!
//! The `///` lines on variants and fields are the help text: README.md and the suites in
//! `tests/` quote them, so change them only together.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The whole command line.
#[derive(Parser)]
#[command(
    name = "xchg",
    version,
    about = "Node software of a federated data-product exchange",
    after_long_help = ENVIRONMENT
)]
pub struct Args {
    /// How logs are written to stderr: `text` for people, `json` for log shippers (one JSON
    /// object a line: timestamp, level, target, the event's fields, its spans). Without the
    /// flag, from XCHG_LOG_FORMAT; `text` when neither is given.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The command to carry out.
    #[command(subcommand)]
    pub command: Command,
}

/// The environment variables `xchg` reads, for `--help` and the manual page.
const ENVIRONMENT: &str = "\
Environment:
  RUST_LOG           Which log lines are written (tracing's filter syntax); `info` when unset,
                     `warn,openraft=off` for `xchg up`.
  XCHG_LOG_FORMAT    `text` or `json`, when `--log-format` is not given.
  XCHG_NODE          The client commands' `--node` (the node's API base URL).
  XCHG_TOKEN         The client commands' `--token` (its value is never shown).
  XCHG_TOKEN_FILE    The client commands' `--token-file`.
  XCHG_CA            The client commands' `--ca` (the API CA certificate for HTTPS).
  SQLITE_TMPDIR, TMPDIR
                     Where `xchg restore` keeps its scratch catalog while it checks that every
                     row of a backup loads (else /var/tmp or /tmp).";

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people to read.
    Text,
    /// One JSON object a line.
    Json,
}

impl Args {
    /// The log format: the flag's, else `XCHG_LOG_FORMAT`'s (an empty variable counts as
    /// unset), else text. Read here rather than by clap so that the flag overrides a variable
    /// holding something else, and the error names the variable.
    ///
    /// # Errors
    /// `XCHG_LOG_FORMAT` holds neither `text` nor `json` and no flag overrides it.
    pub fn log_format(&self) -> Result<LogFormat, String> {
        if let Some(format) = self.log_format {
            return Ok(format);
        }
        match std::env::var("XCHG_LOG_FORMAT") {
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Ok(v) if v.trim().is_empty() => Ok(LogFormat::Text),
            Ok(v) => <LogFormat as clap::ValueEnum>::from_str(v.trim(), true).map_err(|_| {
                format!("XCHG_LOG_FORMAT={v:?} is no log format: text or json (or unset it)")
            }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err("XCHG_LOG_FORMAT is not UTF-8: text or json (or unset it)".into())
            }
        }
    }
}

/// The top-level commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run a whole federation on this machine (every node of a layout, in this process) until
    /// SIGINT or SIGTERM: the Xuchang city with its hub by default.
    Up(UpArgs),
    /// Run one node of a zone until SIGINT or SIGTERM.
    Run(RunArgs),
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
    Status(TargetArgs),
    /// Submit, approve, search and show listings through a node's API.
    #[command(subcommand)]
    Listing(ListingCommand),
    /// API tokens kept in a node's data directory (offline admin recovery).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Apply for one listing and one scenario (buyer), approve (operator), list.
    #[command(subcommand)]
    Application(ApplicationCommand),
    /// Registration certificates: verify one offline.
    #[command(subcommand)]
    Certificate(CertificateCommand),
    /// The audit log: verify it against its signed tree head.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The search index of a node's data directory.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Back up a node: online through its API (`--node`, an admin token), or a stopped node's
    /// data directory (`--data-dir`). One file: the zone's replicated state and log position.
    Backup(BackupArgs),
    /// Restore a backup into an empty data directory: the node started on it loads the
    /// catalog, rejoins its zone and catches up with what came after.
    Restore(RestoreArgs),
    /// Print a completion script for a shell (e.g. `xchg completions bash >
    /// /etc/bash_completion.d/xchg`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff: `xchg man | man -l -`), or write one page per command.
    Man(ManArgs),
}

/// `xchg completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `xchg man`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// Write `xchg.1` and one page per command (`xchg-listing-submit.1`, …) into this
    /// directory (created if missing) rather than printing the top page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `xchg backup`.
#[derive(clap::Args)]
pub struct BackupArgs {
    /// The backup file to write; must not exist. Written whole or not at all, mode 0600 (it
    /// holds every party's contact and every token's hash).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Back up the stopped node whose data directory this is (`node.data_dir` of its
    /// config), instead of asking a running node.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Online: copy the node's replica as it is, even without a leader (default: at the zone's
    /// commit point, every acknowledged write included).
    #[arg(long)]
    pub local: bool,
    /// The node to ask online, and its admin token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup file (`xchg backup --out`).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The node's data directory (`node.data_dir` of its config): empty or missing; the node
    /// must be stopped.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The config of the node that will run on it: the backup must be of that node's zone
    /// (checked again when the node starts).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `xchg index …`.
#[derive(Subcommand)]
pub enum IndexCommand {
    /// Drop a stopped node's search index and build it again from its catalog, showing
    /// progress (a node also rebuilds it by itself when the index is missing or damaged).
    Rebuild(IndexRebuildArgs),
}

/// `xchg index rebuild`.
#[derive(clap::Args)]
pub struct IndexRebuildArgs {
    /// The node's data directory (`node.data_dir` of its config); the node must be stopped.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// `xchg audit …`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole audit log against the zone's signed tree head (PROTOCOL.md 12): the
    /// head's signature and delegation, every record's chain link and hash, the leaves and the
    /// root; exits 1 naming the first record (seq and field) that does not match.
    Verify(AuditVerifyArgs),
}

/// `xchg audit verify`.
#[derive(clap::Args)]
pub struct AuditVerifyArgs {
    /// The node to ask, and a regulator's or admin's token (which reads the records).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Check a stopped node's data directory offline instead, against the last head that node
    /// signed (`audit-head.cbor`) and its Merkle tree.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The exchange's root public key (base64, as in node configs, or 64 hex digits) [default:
    /// the one the head's delegation names, which only shows the head is self-consistent].
    #[arg(long)]
    pub root_key: Option<String>,
}

/// `xchg certificate …`.
#[derive(Subcommand)]
pub enum CertificateCommand {
    /// Check a certificate offline against the exchange's root key (PROTOCOL.md 10.3); exits 1
    /// naming the failed check.
    Verify(CertificateVerifyArgs),
}

/// `xchg certificate verify`.
#[derive(clap::Args)]
pub struct CertificateVerifyArgs {
    /// The certificate: the JSON of `GET /v1/certificates/{number}`, the hex of its `signed`
    /// field, or those bytes.
    pub file: PathBuf,
    /// The exchange's root public key (base64, as in node configs, or 64 hex digits).
    #[arg(long)]
    pub root_key: String,
    /// The exchange that root key belongs to [default: the one the certificate's delegation
    /// names].
    #[arg(long)]
    pub exchange: Option<String>,
}

/// `xchg up`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Data directory: the layout is generated here on first run and reused afterwards.
    #[arg(long, default_value = "xchg-data")]
    pub dir: PathBuf,
    /// xuchang (10 zones + Zhengzhou), single-zone or two-exchanges [default: xuchang, or
    /// what the data directory holds].
    // A string, not a LayoutKind: an unknown name is this command's error (exit 1), as before.
    #[arg(long)]
    pub layout: Option<String>,
    /// Nodes per zone on first run [default: 3, or what the data directory holds].
    #[arg(long)]
    pub nodes_per_zone: Option<usize>,
    /// Seed realistic demo listings across zones and exchanges (once per data directory).
    #[arg(long)]
    pub demo: bool,
    /// First TCP port, on a first run only; each node takes three consecutive ports
    /// [default: 7100].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Address every node listens on, on a first run only [default: 127.0.0.1].
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// Print the dashboard URL with the hub's regulator token in it (`#token=…`). Without
    /// it the URL is printed bare and the token stays in DIR/dashboard.token.
    #[arg(long)]
    pub print_token: bool,
}

/// `xchg run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The node's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Join an existing zone (wait to be added with POST /v1/zone/members) instead of
    /// forming the zone from the config's member list.
    #[arg(long)]
    pub join: bool,
    /// Diagnostics: append every byte this node publishes on gossip or serves over
    /// request-response to FILE (records of a 4-byte big-endian length and the bytes).
    #[arg(long, value_name = "FILE")]
    pub capture_wire: Option<PathBuf>,
}

/// `xchg token …`.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an admin token for a zone that has lost its admin tokens, in the data directory
    /// of one of its nodes while that node is stopped. The node hands it to the zone through
    /// Raft when it starts again; from then on it works on every member. Prints the token on
    /// standard output (once; only its hash is kept).
    Create(TokenCreateArgs),
}

/// `xchg token create`.
#[derive(clap::Args)]
pub struct TokenCreateArgs {
    /// The stopped node's data directory (`node.data_dir` of its config).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The role: only `admin` can be created offline.
    #[arg(long)]
    pub role: String,
    /// A label for people, e.g. who holds it.
    #[arg(long, default_value = "offline recovery")]
    pub label: String,
}

/// Which node to ask, and as whom: flattened into every command that calls a node's API.
#[derive(clap::Args)]
pub struct TargetArgs {
    /// The node's API base URL.
    #[arg(long, env = "XCHG_NODE", default_value = "http://127.0.0.1:7100")]
    pub node: String,
    /// Bearer token (role tokens are in layout.json). On a command line it is seen by other
    /// users of the machine (`ps`) and kept in shell history: prefer XCHG_TOKEN or --token-file.
    #[arg(long, env = "XCHG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from this file (its first line; e.g. the dashboard.token that
    /// `xchg up` writes).
    #[arg(long, value_name = "PATH", env = "XCHG_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the certificate authority to trust for an https:// node (the api-ca.pem
    /// that `xchg config generate --api-tls` writes); no system roots are used.
    #[arg(long, value_name = "FILE", env = "XCHG_CA")]
    pub ca: Option<PathBuf>,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `xchg listing …`.
#[derive(Subcommand)]
pub enum ListingCommand {
    /// Submit the listing in FILE (JSON; `-` for standard input) as a provider.
    Submit(SubmitArgs),
    /// Approve a submitted listing as an operator.
    Approve(ApproveArgs),
    /// Full-text search (Chinese too).
    Search(SearchArgs),
    /// One listing with its history and provenance.
    Show(ShowArgs),
}

/// `xchg listing submit`.
#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The listing's JSON.
    pub file: PathBuf,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg listing approve`.
#[derive(clap::Args)]
pub struct ApproveArgs {
    /// Listing id (sha256:…).
    pub id: String,
    /// Review notes.
    #[arg(long)]
    pub notes: Option<String>,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg listing search`.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// Search terms.
    pub query: String,
    /// local, external, an exchange id or a zone id.
    #[arg(long)]
    pub origin: Option<String>,
    /// Most results.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg listing show`.
#[derive(clap::Args)]
pub struct ShowArgs {
    /// Listing id (sha256:…).
    pub id: String,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg federation …`.
#[derive(Subcommand)]
pub enum FederationCommand {
    /// Sign a node-key revocation with the exchange's root key (offline) and print the body for
    /// `POST /v1/federation/revocations`.
    Revoke(RevokeArgs),
}

/// `xchg federation revoke`.
#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The exchange's root key file.
    #[arg(long)]
    pub root_key: PathBuf,
    /// The exchange whose root signs.
    #[arg(long)]
    pub exchange: String,
    /// The node key to revoke: base64 (as in the zone's member list) or 64 hex digits (as
    /// the API shows keys).
    #[arg(long)]
    pub key: String,
    /// Why, for the record.
    #[arg(long)]
    pub reason: String,
}

/// `xchg bench …`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Start a local 3-node zone and submit listings at several concurrency levels.
    Zone(BenchZoneArgs),
    /// Start a whole federation and measure how long approved listings take to be recognised
    /// in every other zone.
    Federation(BenchFederationArgs),
    /// Load a synthetic catalog into a node's catalog and search index, then time every class
    /// of search query (p50/p99/max), the load and index rates, and the bytes per listing.
    Search(BenchSearchArgs),
}

/// `xchg bench search`.
#[derive(clap::Args)]
pub struct BenchSearchArgs {
    /// Listings to load.
    #[arg(long, default_value_t = 100_000)]
    pub listings: u64,
    /// Times each query class is asked.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Keep the data directory here (loading is skipped if it already holds the listings).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seed of the synthetic catalog.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
}

// The two benches both take a first port and a directory to keep, but with their own defaults
// and help (a zone's 9 ports from 7400, a layout's from 7600): a shared flattened struct would
// change what `--help` says, so each declares its own.

/// `xchg bench zone`.
#[derive(clap::Args)]
pub struct BenchZoneArgs {
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Measured seconds per level.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// `leader` (every request to the leader) or `all` (spread; followers forward).
    #[arg(long, default_value = "leader")]
    pub target: String,
    /// First port of the bench zone (9 consecutive ports).
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// Keep the zone's configs, data and logs in this directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Set the nodes' `raft.snapshot_log_percent` (0: a snapshot every
    /// `raft.snapshot_every_entries` entries, as before the size condition).
    #[arg(long)]
    pub snapshot_log_percent: Option<u64>,
}

/// `xchg bench federation`.
#[derive(clap::Args)]
pub struct BenchFederationArgs {
    /// Layout: xuchang (10 zones + Zhengzhou) or two-exchanges.
    #[arg(long, default_value = "xuchang")]
    pub layout: String,
    /// Nodes per zone.
    #[arg(long, default_value_t = 1)]
    pub nodes_per_zone: usize,
    /// Listings approved (and measured).
    #[arg(long, default_value_t = 1000)]
    pub listings: usize,
    /// Concurrent approvers.
    #[arg(long, default_value_t = 8)]
    pub approvers: usize,
    /// Approvals per second, all approvers together (0: as fast as they go).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Zone where the listings are approved.
    #[arg(long, default_value = "xuchang/yuzhou")]
    pub origin: String,
    /// Poll interval of the watchers, milliseconds.
    #[arg(long, default_value_t = 50)]
    pub poll_ms: u64,
    /// First port of the layout (three per node).
    #[arg(long, default_value_t = 7600)]
    pub base_port: u16,
    /// Keep the layout's configs, data and logs in this directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `xchg config …`.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Generate keys, delegations, tokens and one config per node for a whole layout.
    Generate(GenerateArgs),
    /// Add a node to a zone of a generated layout: key, delegation and config for `run --join`.
    AddNode(AddNodeArgs),
    /// Renew the delegations (and API certificates) of a generated layout's nodes before they
    /// expire; needs the root key (and the API CA key) back in the layout's root/.
    Renew(RenewArgs),
    /// Check node config files; prints every violation and exits non-zero if any is an error.
    Validate(ValidateArgs),
    /// Print the configuration reference: every key, its type, default, unit and an example.
    Reference,
}

/// `xchg config generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Output directory; must not already hold a layout.
    #[arg(long)]
    pub out: PathBuf,
    /// Lay out the federation an inventory file describes (exchanges, zones, each node's host
    /// and ports, agreements, export policies, outside exchanges; see
    /// federation-config/INVENTORY.md) instead of a built-in layout.
    #[arg(
        long,
        value_name = "FILE.toml",
        conflicts_with_all = ["layout", "nodes_per_zone", "base_port", "host", "valid_days", "api_tls"]
    )]
    pub inventory: Option<PathBuf>,
    /// Which federation to lay out: xuchang (10 zones + Zhengzhou), single-zone, two-exchanges.
    #[arg(long, default_value = "xuchang")]
    pub layout: String,
    /// Nodes per zone (1 to 9; odd numbers tolerate failures best).
    #[arg(long, default_value_t = 3)]
    pub nodes_per_zone: usize,
    /// First TCP port; each node takes three consecutive ports (API, Raft, libp2p).
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// Address or DNS host name every node is reached at; an address is also where they
    /// listen, `localhost` has them listen on 127.0.0.1, another host name on every interface.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: xchg_federation_config::Host,
    /// Validity of the node delegations, in days.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u32,
    /// Serve every node's API over HTTPS: makes a certificate authority for the layout
    /// (api-ca.pem; its key in root/) and a certificate for each node's address (tls/).
    #[arg(long)]
    pub api_tls: bool,
}

/// `xchg config add-node`.
#[derive(clap::Args)]
pub struct AddNodeArgs {
    /// Layout directory written by `xchg config generate`; layout.json there gains the node.
    #[arg(long)]
    pub layout: PathBuf,
    /// Zone to grow, e.g. xuchang/municipal.
    #[arg(long)]
    pub zone: String,
    /// Node name [default: <zone name>-<n>, n one above the zone's highest].
    #[arg(long)]
    pub name: Option<String>,
    /// Address or DNS host name the node is reached at [default: the host of the zone's
    /// nodes].
    #[arg(long)]
    pub host: Option<xchg_federation_config::Host>,
    /// Address the node listens on [default: the host when it is an address; 127.0.0.1 for
    /// localhost; 0.0.0.0 for another host name].
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// API port; Raft and libp2p take the next two [default: after the highest port in
    /// layout.json].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Validity of the node's delegation, in days.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u32,
}

/// `xchg config renew`.
#[derive(clap::Args)]
pub struct RenewArgs {
    /// Layout directory written by `xchg config generate`.
    #[arg(long)]
    pub layout: PathBuf,
    /// Only this zone's nodes, e.g. xuchang/municipal [default: every node of the layout].
    #[arg(long)]
    pub zone: Option<String>,
    /// Validity of the new delegations (and certificates), in days from now.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u32,
    /// Also renew the layout's API certificate authority's certificate (same key and name,
    /// valid ten years from now), needed when the certificates would outlast it; replace
    /// clients' copies of api-ca.pem (XCHG_CA, --ca) with the new one.
    #[arg(long)]
    pub renew_ca: bool,
}

/// `xchg config validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Config files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

impl Command {
    /// The log filter when `RUST_LOG` is unset.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            // `xchg up` prints its own progress; while 33 nodes find each other at start,
            // Raft's vote-request errors would bury it.
            Command::Up(_) => "warn,openraft=off",
            _ => "info",
        }
    }
}

/// A `--layout` name, or the error naming the flag (exit 1, as the commands always did).
///
/// # Errors
/// If `name` is no layout.
pub fn parse_layout(name: &str) -> anyhow::Result<xchg_federation_config::layout::LayoutKind> {
    name.parse().map_err(|e| anyhow::anyhow!("--layout: {e}"))
}

/// `xchg application …`.
#[derive(Subcommand)]
pub enum ApplicationCommand {
    /// Apply, as a buyer, to use a listing for one of its scenarios.
    Submit(ApplicationSubmitArgs),
    /// Approve an application as an operator, as asked or narrowed.
    Approve(ApplicationApproveArgs),
    /// The applications the token may see, newest first.
    List(ApplicationListArgs),
}

/// `xchg application submit`.
#[derive(clap::Args)]
pub struct ApplicationSubmitArgs {
    /// Listing id (sha256:…).
    #[arg(long)]
    pub listing: String,
    /// One of the listing's scenarios, as it is written there.
    #[arg(long)]
    pub scenario: String,
    /// What the data will be used for.
    #[arg(long)]
    pub purpose: String,
    /// Delivery mode: file, api, sandbox, privacy_computing, model_output or verification.
    #[arg(long)]
    pub mode: String,
    /// Days from approval (1 to 1096).
    #[arg(long)]
    pub days: u32,
    /// Calls in all.
    #[arg(long)]
    pub limit: u64,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg application approve`.
#[derive(clap::Args)]
pub struct ApplicationApproveArgs {
    /// Application number.
    pub id: u64,
    /// Fewer days than asked.
    #[arg(long)]
    pub days: Option<u32>,
    /// Fewer calls than asked.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Another delivery mode the listing offers.
    #[arg(long)]
    pub mode: Option<String>,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `xchg application list`.
#[derive(clap::Args)]
pub struct ApplicationListArgs {
    /// Only in this state: forwarding, submitted, approved or rejected.
    #[arg(long)]
    pub state: Option<String>,
    /// Only for this listing (sha256:…).
    #[arg(long)]
    pub listing: Option<String>,
    /// Most results.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// The node and token.
    #[command(flatten)]
    pub target: TargetArgs,
}
