//! `xchg token create --data-dir DIR --role admin`: the offline recovery of a zone that lost
//! its admin tokens ([`xchg_node::recovery`]).

use std::process::ExitCode;

use xchg_federation_config::Role;
use xchg_node::recovery;
use xchg_protocol::Timestamp;

use super::args::TokenCreateArgs;

/// Creates the token in the stopped node's data directory, prints it on standard output and
/// what happens next on standard error.
pub fn create_offline(args: TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let role: Role = args
        .role
        .parse()
        .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let made = recovery::add_offline_token(&args.data_dir, role, &args.label, Timestamp::now())?;
    outln!("{}", made.token);
    eprintln!(
        "created an admin token (hash {}); it is shown once, above, and only its hash is kept.\n\
         It works once the node is started again: the node hands it to its zone through Raft \
         (a majority of the zone must be up), and from then on every member accepts it. Until \
         then the request waits in {}.",
        made.hash,
        made.request_file.display()
    );
    Ok(ExitCode::SUCCESS)
}
