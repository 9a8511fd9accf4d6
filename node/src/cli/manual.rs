//! `xchg completions` and `xchg man`: shell completions and manual pages, generated from the
//! clap definitions in [`super::args`], so they say what the binary accepts.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::args::{Args, CompletionsArgs, ManArgs};

/// Prints the completion script for `args.shell`.
///
/// # Errors
/// None today (the script is built in memory); kept fallible like every command.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Args::command(), "xchg", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}

/// The pages `clap_mangen::generate_to` writes for `command`: its own and one per command under
/// it, hidden ones and `help` left out.
fn pages(command: &clap::Command) -> usize {
    1 + command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .map(pages)
        .sum::<usize>()
}

/// Prints the top manual page, or writes one page per command into `args.out`.
///
/// # Errors
/// The directory cannot be created or written.
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let command = Args::command();
    match &args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            out!("{}", String::from_utf8_lossy(&page));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let pages = pages(&command);
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            outln!("wrote {pages} manual page(s) into {}", dir.display());
            outln!("read one with: man -l {}", dir.join("xchg.1").display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
