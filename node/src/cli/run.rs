//! `xchg run --config FILE`: run one node until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use xchg_federation_config::{ConfigError, Severity, read_key_file};
use xchg_node::node::{self, GossipLink, StartOptions, ZoneLink};
use xchg_protocol::Timestamp;

use super::args::{LogFormat, RunArgs};

/// Loads the config, binds the listeners, runs the node, stops it cleanly on a signal. With
/// `--log-format json` everything it says is a log line (where it serves the API is the "node
/// started" line's `api_addr`).
pub async fn run(args: RunArgs, format: LogFormat) -> anyhow::Result<ExitCode> {
    let config_path = args.config.as_path();
    let loaded = match xchg_federation_config::load(config_path, Timestamp::now()) {
        Ok(l) => l,
        Err(ConfigError::Invalid(violations)) => {
            for v in &violations {
                match format {
                    LogFormat::Text => eprintln!("{}: {v}", config_path.display()),
                    LogFormat::Json if v.severity == Severity::Warning => {
                        tracing::warn!(target: super::OUTCOME, config = %config_path.display(),
                            violation = %v, "the node config breaks a rule");
                    }
                    LogFormat::Json => {
                        tracing::error!(target: super::OUTCOME, config = %config_path.display(),
                            violation = %v, "the node config breaks a rule");
                    }
                }
            }
            anyhow::bail!("{} is not a valid node config", config_path.display());
        }
        Err(e) => return Err(e.into()),
    };
    for w in &loaded.warnings {
        tracing::warn!(config = %config_path.display(), "{w}");
    }
    let config = loaded.config;
    let key = read_key_file(&config.node.key_file)
        .with_context(|| format!("reading the node key {}", config.node.key_file.display()))?;
    let api = tokio::net::TcpListener::bind(config.listen.api)
        .await
        .with_context(|| format!("binding the API address {}", config.listen.api))?;
    let raft = tokio::net::TcpListener::bind(config.listen.raft)
        .await
        .with_context(|| format!("binding the Raft address {}", config.listen.raft))?;
    let name = config.node.name.clone();
    let scheme = config.api.scheme();
    let own_url = config.own_member().map(|m| m.api_url.clone());
    let options = StartOptions {
        join: args.join,
        ..StartOptions::default()
    };
    let handle = node::start(
        config,
        key,
        api,
        ZoneLink::Tls(raft),
        GossipLink::Libp2p {
            capture: args.capture_wire,
        },
        options,
    )
    .await?;
    // In JSON, the node's own "node started" line (`api_addr`) says it.
    if format == LogFormat::Text {
        let listening = format!("{scheme}://{}", handle.api_addr);
        outln!("{name} serving the API on {listening}");
        // The address clients use (and its certificate names) when it is another: a host
        // name, or the machine's address when the node listens on every interface.
        if let Some(url) = own_url.filter(|url| *url != listening) {
            outln!("{name} is reached at {url}");
        }
    }
    let failed = tokio::select! {
        () = shutdown_signal() => None,
        why = handle.failed() => Some(why),
    };
    match &failed {
        None => tracing::info!("shutting down"),
        Some(why) => tracing::error!(
            error = %why,
            "the node cannot go on; stopping it so that it is started again from its data \
             directory"
        ),
    }
    handle.shutdown().await;
    tracing::info!("stopped");
    match failed {
        None => Ok(ExitCode::SUCCESS),
        Some(why) => anyhow::bail!("the node cannot go on: {why}"),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
