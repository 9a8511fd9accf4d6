//! The commands of the `xchg` binary: argument values in, human-readable output out.

pub mod bench;
pub mod bench_federation;
pub mod client;
pub mod config;
pub mod demo;
pub mod demo_parties;
pub mod federation;
pub mod run;
pub mod token;
pub mod up;

/// Logs go to stderr, filtered by `RUST_LOG` (default `default`), so stdout stays clean for
/// output.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
