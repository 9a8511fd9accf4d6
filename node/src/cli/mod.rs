//! The commands of the `xchg` binary: the clap types in [`args`] in, human-readable output
//! out. Each command lives in its own module and takes its own argument struct; [`execute`]
//! only routes. Whole federations in one process are started by the library
//! ([`xchg_node::up`]); `up` here adds the printing, the signals and the demo catalog.

/// `print!` for a command's output: a reader that went away (`xchg config reference | head`)
/// ends the command quietly, where `print!` would panic.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!($($arg)*)) };
}

/// `println!` for a command's output, as [`out!`].
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => { out!("{}\n", format_args!($($arg)*)) };
}

pub mod application;
pub mod args;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod bench_federation;
pub mod bench_search;
pub mod certificate;
pub mod client;
pub mod config;
pub mod demo;
pub mod demo_parties;
pub mod federation;
pub mod manual;
pub mod run;
pub mod token;
pub mod up;

use std::process::ExitCode;

use args::{
    ApplicationCommand, AuditCommand, BenchCommand, CertificateCommand, Command, ConfigCommand,
    FederationCommand, IndexCommand, ListingCommand, TokenCommand,
};

/// The target of the log lines that say why a command ends (JSON logs only; text prints
/// `error: …`): `RUST_LOG` does not hide them.
pub const OUTCOME: &str = "xchg::outcome";

/// Logs go to stderr, filtered by `RUST_LOG` (default `default`) but for [`OUTCOME`]'s
/// warnings and errors, so stdout stays clean for output; as text, or as one JSON object a
/// line for log shippers.
pub fn init_tracing(default: &str, format: args::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // More specific than any level RUST_LOG sets for everything or for `xchg`.
    let filter = match format!("{OUTCOME}=warn").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    // Colours only for a terminal: a log redirected to a file or a pipe stays plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        args::LogFormat::Text => logs.init(),
        // The event's fields under "fields" (flattened, a field named `target`, as some of
        // openraft's are, would repeat the line's own key), with the span it happened in and
        // the spans around it.
        args::LogFormat::Json => {
            logs.json().init();
            // A panic is a log line like the others, not text among the JSON objects.
            std::panic::set_hook(Box::new(|info| {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let text = xchg_node::node::panic_text(info.payload());
                let thread = std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_owned();
                // With RUST_BACKTRACE set, as the default hook would print it.
                let backtrace = std::backtrace::Backtrace::capture();
                let backtrace = match backtrace.status() {
                    std::backtrace::BacktraceStatus::Captured => backtrace.to_string(),
                    _ => String::new(),
                };
                // Under the outcome target, which RUST_LOG does not silence.
                tracing::error!(target: OUTCOME, panic = %text, at = %at, thread = %thread,
                    backtrace = %backtrace, "panicked");
            }));
        }
    }
}

/// An error and its causes, `: ` between them, leaving out a cause the text already ends with
/// (errors written `"…: {source}"`, as most of ours are, would otherwise say it twice).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let words = cause.to_string();
        if text.is_empty() {
            text = words;
        } else if !text.ends_with(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
    }
    text
}

/// Writes a command's output to stdout. When the reader has gone (a closed pipe), the command
/// has nothing left to do: the process exits with status 0, as a command whose output was
/// cut short by `head` should. Any other error writing stdout ends it with status 1.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Carries out `command`.
///
/// # Errors
/// Whatever the command reports; the binary prints it and exits with status 1.
pub fn execute(command: Command, log_format: args::LogFormat) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) => {
            private_files();
            block_on(up::up(args))
        }
        Command::Run(args) => {
            private_files();
            block_on(run::run(args, log_format))
        }
        Command::Status(target) => block_on(client::status(target)),
        Command::Listing(ListingCommand::Submit(args)) => block_on(client::submit(args)),
        Command::Listing(ListingCommand::Approve(args)) => block_on(client::approve(args)),
        Command::Listing(ListingCommand::Search(args)) => block_on(client::search(args)),
        Command::Listing(ListingCommand::Show(args)) => block_on(client::show(args)),
        Command::Token(TokenCommand::Create(args)) => token::create_offline(args),
        Command::Application(ApplicationCommand::Submit(args)) => {
            block_on(application::submit(args))
        }
        Command::Application(ApplicationCommand::Approve(args)) => {
            block_on(application::approve(args))
        }
        Command::Application(ApplicationCommand::List(args)) => block_on(application::list(args)),
        Command::Certificate(CertificateCommand::Verify(args)) => certificate::verify(args),
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(args),
        Command::Federation(FederationCommand::Revoke(args)) => federation::revoke(args),
        Command::Config(ConfigCommand::Generate(args)) => config::generate(args),
        Command::Config(ConfigCommand::AddNode(args)) => config::add_node(args),
        Command::Config(ConfigCommand::Renew(args)) => config::renew(args),
        Command::Config(ConfigCommand::Validate(args)) => config::validate(&args.files),
        Command::Config(ConfigCommand::Reference) => {
            out!("{}", xchg_federation_config::REFERENCE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Zone(args)) => block_on(bench::zone(args)),
        Command::Bench(BenchCommand::Search(args)) => block_on(bench_search::search(args)),
        Command::Index(IndexCommand::Rebuild(args)) => block_on(bench_search::rebuild(args)),
        Command::Backup(args) => block_on(backup::backup(args)),
        Command::Restore(args) => backup::restore(&args),
        Command::Bench(BenchCommand::Federation(args)) => {
            block_on(bench_federation::federation(args))
        }
        Command::Completions(args) => manual::completions(&args),
        Command::Man(args) => manual::man(&args),
    }
}

/// A node's files are its own: whatever it creates from here on is readable by this user only
/// (umask 077), files that libraries create included (the search index's).
fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
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
