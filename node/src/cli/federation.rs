//! `xchg federation revoke`: sign a key revocation with an exchange's root key, offline.

use std::process::ExitCode;

use anyhow::Context as _;
use xchg_federation_config::read_key_file;
use xchg_protocol::{Envelope, ExchangeId, PublicKey, Revocation, Timestamp};

use super::args::RevokeArgs;

/// Prints `{"envelope": "<hex>"}`, the body for `POST /v1/federation/revocations` (bytes are
/// lowercase hex in JSON, PROTOCOL.md 2.10). `key` is the node key in base64 (as in the zone's
/// configs) or in hex (as in the API's JSON).
pub fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let root = read_key_file(&args.root_key)
        .with_context(|| format!("reading the root key {}", args.root_key.display()))?;
    let exchange: ExchangeId = args
        .exchange
        .parse()
        .with_context(|| format!("--exchange {:?}", args.exchange))?;
    let key = args
        .key
        .parse::<PublicKey>()
        .or_else(|_| PublicKey::from_base64(&args.key))
        .with_context(|| {
            format!(
                "--key {:?}: expected base64 (as in configs) or hex",
                args.key
            )
        })?;
    let revocation = Revocation {
        exchange,
        key,
        reason: args.reason,
        revoked_at: Timestamp::now(),
    };
    revocation
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid revocation: {e}"))?;
    let envelope = Envelope::revocation(&revocation, &root).to_bytes();
    let body = serde_json::json!({ "envelope": hex::encode(envelope) });
    outln!("{body}");
    Ok(ExitCode::SUCCESS)
}
