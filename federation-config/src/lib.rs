//! xchg-federation-config: typed, validated node configuration and the layout generator.
//!
//! A node's configuration is one TOML file (schema version 1, see [`raw`]) read in two steps:
//! the text becomes [`raw::RawConfig`], which only checks the file's shape; then every rule is
//! checked at once and the validated [`NodeConfig`] is built. Every problem is reported as a
//! [`Violation`] with its TOML path, so an operator fixes a file in one pass.
//!
//! - [`parse`] checks text; [`load`] reads a file and also checks the node's key file.
//! - [`layout::generate`] writes a whole federation: root and node keys, one config per node,
//!   tokens, and `layout.json`; [`layout::add_node`] grows one zone of it by a node.
//! - [`read_key_file`], [`write_key_file`], [`write_secret`], [`create_private_dir`],
//!   [`loose_mode`] and [`token_hash`] are shared with the node.

mod host;
pub mod layout;
mod model;
pub mod raw;

/// The configuration reference (`CONFIG.md`): every key, its type, default, unit and an
/// example; `xchg config reference` prints it. A test keeps it in step with [`raw`].
pub const REFERENCE: &str = include_str!("../CONFIG.md");
mod role;
mod secret;
mod syntax;
mod validate;
mod violation;

use std::path::Path;

use xchg_protocol::{PublicKey, Timestamp};

pub use host::{Host, HostError, HostPort, HostPortError};
pub use model::{
    Agreement, ApiSection, ApiTls, CategorySet, ExchangeSection, ExportPolicy, Gossip, HttpLimits,
    Listen, Member, ModeSet, NodeConfig, NodeSection, OutsideExchange, PersonalInfoExport,
    RaftTuning, TokenHash, ZoneSection,
};
pub use role::{Role, UnknownRole};
pub use secret::{
    KeyFileError, create_private_dir, loose_mode, read_key_file, token_hash, write_key_file,
    write_secret,
};
pub use validate::{DELEGATION_RENEWAL_MS, SCHEMA_VERSION, api_url, raft_addr};
pub use violation::{ConfigError, Severity, Violation};

/// A configuration that passed every check, and the warnings it drew.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: NodeConfig,
    /// Things the operator should fix, which do not stop the node.
    pub warnings: Vec<Violation>,
}

/// Checks configuration text. Relative paths in it are resolved against `base_dir` (the
/// directory of the file it came from); delegations are checked for validity at `now`. The key
/// file is not read: use [`load`] for that.
///
/// # Errors
/// [`ConfigError::Invalid`] with every error and warning if any rule is broken.
pub fn parse(text: &str, base_dir: &Path, now: Timestamp) -> Result<Loaded, ConfigError> {
    let raw = syntax::parse_raw(text).map_err(|v| ConfigError::Invalid(vec![v]))?;
    let checked = validate::check(&raw, base_dir, now);
    finish(checked.config, checked.report)
}

/// Reads and checks a configuration file, then checks the node's key file: it must exist, hold
/// 64 hex digits, and match this node's key in `zone.members`; on unix, a key file readable by
/// group or others draws a warning.
///
/// # Errors
/// [`ConfigError::Io`] if the configuration file cannot be read; [`ConfigError::Invalid`] with
/// every error and warning if any rule is broken.
pub fn load(path: &Path, now: Timestamp) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let raw = syntax::parse_raw(&text).map_err(|v| ConfigError::Invalid(vec![v]))?;
    let mut checked = validate::check(&raw, base_dir, now);
    if let Some(key_file) = &checked.key_file {
        check_key_file(&mut checked.report, key_file, checked.own_key);
    }
    if let Some(api) = checked.config.as_ref().map(|c| &c.api) {
        check_api_files(&mut checked.report, api);
    }
    finish(checked.config, checked.report)
}

/// The API's TLS files and CA file exist; the TLS key is private. Their contents are read (and
/// refused with the reason) when the node starts.
fn check_api_files(report: &mut violation::Report, api: &ApiSection) {
    let tls = api.tls.iter().flat_map(|t| {
        [
            ("api.tls_cert", t.cert.as_path()),
            ("api.tls_key", t.key.as_path()),
        ]
    });
    for (path, file) in tls.chain(api.ca_cert.iter().map(|f| ("api.ca_cert", f.as_path()))) {
        if !file.is_file() {
            report.error(path, format!("{} does not exist", file.display()));
        }
    }
    if let Some(mode) = api.tls.as_ref().and_then(|t| loose_mode(&t.key)) {
        report.warning(
            "api.tls_key",
            format!(
                "{} is readable by group or others (mode {mode:o}); run chmod 600 on it",
                api.tls
                    .as_ref()
                    .map_or_else(String::new, |t| t.key.display().to_string())
            ),
        );
    }
}

fn finish(config: Option<NodeConfig>, report: violation::Report) -> Result<Loaded, ConfigError> {
    let warnings = report.finish()?;
    // Every way a section can be unreadable records an error, which `finish` returned above.
    config
        .map(|config| Loaded { config, warnings })
        .ok_or_else(|| {
            ConfigError::Invalid(vec![Violation::error("(file)", "incomplete configuration")])
        })
}

/// The key file exists, holds a key, matches the member key, and is private.
fn check_key_file(
    report: &mut violation::Report,
    path: &Path,
    own_key: Option<(usize, PublicKey)>,
) {
    const PATH: &str = "node.key_file";
    let key = match read_key_file(path) {
        Ok(key) => key.public(),
        Err(KeyFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            report.error(PATH, format!("{} does not exist", path.display()));
            return;
        }
        Err(e) => {
            report.error(PATH, e.to_string());
            return;
        }
    };
    if let Some((index, member_key)) = own_key.filter(|(_, k)| *k != key) {
        report.error(
            PATH,
            format!(
                "key file holds public key {}, but zone.members[{index}].public_key is {}",
                key.to_base64(),
                member_key.to_base64()
            ),
        );
    }
    if let Some(mode) = loose_mode(path) {
        report.warning(
            PATH,
            format!(
                "{} is readable by group or others (mode {mode:o}); run chmod 600 on it",
                path.display()
            ),
        );
    }
}
