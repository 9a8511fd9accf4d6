//! `xchg`: the node daemon and the operator's command-line tool. This file only parses
//! arguments, starts logging and hands off: the commands are in the `cli` module
//! (`cli::args` declares them), and everything a test or a simulation also needs is in the
//! `xchg_node` library.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::args::Args::parse();
    let format = match args.log_format() {
        Ok(format) => format,
        Err(e) => {
            // As clap ends a command line it refuses.
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // RUST_LOG overrides the command's default.
    cli::init_tracing(args.command.default_log_filter(), format);
    // Before anything opens a database: SQLite takes a page cache only before its first use.
    if let Err(e) = xchg_node::store::pcache::install() {
        tracing::warn!(error = %e, "SQLite's page cache is used without xchg's layer");
    }
    match cli::execute(args.command, format) {
        Ok(code) => code,
        Err(e) => {
            let reason = cli::error_chain(&e);
            match format {
                cli::args::LogFormat::Text => eprintln!("error: {reason}"),
                // A log shipper sees why the command (a node, most often) ended as a line
                // like the others, whatever RUST_LOG lets through.
                cli::args::LogFormat::Json => {
                    tracing::error!(target: cli::OUTCOME, error = %reason, "failed");
                }
            }
            ExitCode::FAILURE
        }
    }
}
