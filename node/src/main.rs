//! `xchg`: the node daemon and the operator's command-line tool. This file only parses
//! arguments, starts logging and hands off: the commands are in the `cli` module
//! (`cli::args` declares them), and everything a test or a simulation also needs is in the
//! `xchg_node` library.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::args::Args::parse();
    // RUST_LOG overrides the command's default.
    cli::init_tracing(args.command.default_log_filter(), args.log_format);
    match cli::execute(args.command, args.log_format) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
