//! `renew`: new delegations (and, for HTTPS layouts, new API certificates) for the nodes of a
//! generated layout, before the old ones run out. A node whose delegation has expired no
//! longer loads its config, so a zone left alone for `valid_days` stops; the node warns 30 days
//! ahead, and this is what the operator then runs.
//!
//! Each node's config (in `nodes/` and in its bundle) keeps every line but its `delegation`,
//! which is signed anew by the exchange root key for the same node key; the certificate gets a
//! new key pair. Every new file is loaded back before it replaces the old one (written beside
//! it, then renamed), so a node's files are either the old ones or the new ones. The running
//! nodes keep their old delegation until restarted with the new files.

use std::path::{Path, PathBuf};

use xchg_protocol::{Delegation, PublicKey, SignedDelegation, Timestamp, ZoneId};

use super::add::{AddNodeError, read_layout, root_key_in};
use super::render::Validity;
use super::tls::{ApiCa, CA_CERT_FILE, node_files};
use super::{BUNDLE_CONFIG, GenerateError, bundle_dir, io_error};
use crate::secret::{read_key_file, write_secret};

/// Which nodes to renew and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewOptions {
    /// The layout directory, as written by [`super::generate`].
    pub dir: PathBuf,
    /// Only this zone's nodes; every node of the layout when `None`.
    pub zone: Option<ZoneId>,
    /// How long the new delegations (and certificates) are valid, in days from now.
    pub valid_days: u32,
}

/// One node renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewedNode {
    /// Its zone.
    pub zone: ZoneId,
    /// Its config file in `nodes/`, relative to the layout directory.
    pub config: PathBuf,
    /// Its bundle folder, if the layout has one for it.
    pub bundle: Option<PathBuf>,
    /// Whether its API certificate was renewed too.
    pub certificate: bool,
}

/// What [`renew`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// The nodes, in layout order.
    pub nodes: Vec<RenewedNode>,
    /// Until when the new delegations are valid.
    pub not_after: Timestamp,
}

/// Renews the delegations (and API certificates) of the layout's nodes, or of one zone's.
///
/// # Errors
/// [`AddNodeError`]: an unreadable layout, an unknown zone, a config that does not parse, a
/// missing or wrong root key (or CA key), or an IO failure. Nodes renewed before the failure
/// keep their new files; running it again renews them again.
pub fn renew(opts: &RenewOptions, now: Timestamp) -> Result<Renewed, AddNodeError> {
    if !(1..=super::MAX_VALID_DAYS).contains(&opts.valid_days) {
        return Err(AddNodeError::ValidDays(opts.valid_days));
    }
    let layout_file = opts.dir.join("layout.json");
    let layout = read_layout(&layout_file)?;
    if let Some(zone) = &opts.zone
        && !layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .any(|z| &z.id == zone)
    {
        return Err(AddNodeError::UnknownZone {
            zone: zone.clone(),
            layout: layout_file,
            known: layout
                .exchanges
                .iter()
                .flat_map(|e| &e.zones)
                .map(|z| z.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let validity = Validity::days_from(now, opts.valid_days);
    let ca = layout
        .api_ca
        .as_ref()
        .map(|record| ApiCa::load(&opts.dir, record))
        .transpose()?;
    let mut nodes = Vec::new();
    for exchange in &layout.exchanges {
        let zones: Vec<_> = exchange
            .zones
            .iter()
            .filter(|z| opts.zone.as_ref().is_none_or(|only| &z.id == only))
            .collect();
        if zones.is_empty() {
            continue;
        }
        let root_file = root_key_in(&opts.dir, &exchange.id);
        let root = read_key_file(&root_file)?;
        if root.public().to_base64() != exchange.root_public_key {
            return Err(AddNodeError::RootKeyMismatch {
                path: root_file,
                found: root.public().to_base64(),
                expected: exchange.root_public_key.clone(),
            });
        }
        for zone in zones {
            for node in &zone.nodes {
                let config = opts.dir.join(&node.config);
                let stem = config
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text =
                    std::fs::read_to_string(&config).map_err(|source| GenerateError::Io {
                        path: config.clone(),
                        source,
                    })?;
                let node_key = node_key_of(&config, &text)?;
                let delegation = SignedDelegation::sign(
                    Delegation {
                        exchange: zone.id.exchange(),
                        zone: zone.id.clone(),
                        node_key,
                        not_before: validity.not_before,
                        not_after: validity.not_after,
                    },
                    &root,
                );
                let hex = hex::encode(delegation.to_bytes());
                let certificate = match &ca {
                    Some(ca) => {
                        let host = api_host(&config, &node.api_url)?;
                        Some(ca.certificate(node.name.as_str(), host, validity)?)
                    }
                    None => None,
                };
                // The layout's copy first, then the bundle's: the bundle is what gets copied to
                // the node's machine.
                replace_config(&config, &text, &hex, now)?;
                if let Some((cert, key)) = &certificate {
                    let (cert_file, key_file) = node_files(&opts.dir, &stem);
                    replace(&cert_file, cert.as_bytes())?;
                    replace(&key_file, key.as_bytes())?;
                }
                let bundle = bundle_dir(&opts.dir, &stem);
                let bundled = bundle.join(BUNDLE_CONFIG);
                let has_bundle = bundled.is_file();
                if has_bundle {
                    if let Some((cert, key)) = &certificate {
                        replace(&bundle.join("api.crt"), cert.as_bytes())?;
                        replace(&bundle.join("api.key"), key.as_bytes())?;
                        let ca_file = opts.dir.join(CA_CERT_FILE);
                        let ca_pem = std::fs::read(&ca_file).map_err(|e| io_error(&ca_file, e))?;
                        replace(&bundle.join(CA_CERT_FILE), &ca_pem)?;
                    }
                    let text = std::fs::read_to_string(&bundled)
                        .map_err(|source| io_error(&bundled, source))?;
                    replace_config(&bundled, &text, &hex, now)?;
                }
                nodes.push(RenewedNode {
                    zone: zone.id.clone(),
                    config: node.config.clone(),
                    bundle: has_bundle
                        .then(|| bundle.strip_prefix(&opts.dir).unwrap_or(&bundle).to_owned()),
                    certificate: certificate.is_some(),
                });
            }
        }
    }
    Ok(Renewed {
        nodes,
        not_after: validity.not_after,
    })
}

/// The node key a config's own member entry names (read without the full check, which an
/// expired delegation fails).
fn node_key_of(path: &Path, text: &str) -> Result<PublicKey, AddNodeError> {
    let unusable = |message: String| AddNodeError::ExistingConfig {
        path: path.to_owned(),
        source: crate::ConfigError::Invalid(vec![crate::Violation::error("(file)", message)]),
    };
    let raw = crate::syntax::parse_raw(text).map_err(|v| AddNodeError::ExistingConfig {
        path: path.to_owned(),
        source: crate::ConfigError::Invalid(vec![v]),
    })?;
    let own = raw
        .zone
        .members
        .iter()
        .find(|m| m.name == raw.node.name)
        .ok_or_else(|| unusable(format!("no zone.members entry for node {}", raw.node.name)))?;
    crate::validate::public_key_from_base64(&own.public_key).map_err(unusable)
}

/// The IP address of an API URL `http(s)://IP:port` (what the node's certificate names).
fn api_host(path: &Path, url: &str) -> Result<std::net::IpAddr, AddNodeError> {
    let authority = url.split("://").nth(1).unwrap_or_default();
    authority
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .map_err(|_| {
            GenerateError::Inconsistent(format!(
                "{}: api_url {url} is not http(s)://IP:port",
                path.display()
            ))
            .into()
        })
}

/// Replaces the `delegation = "…"` line of config `text` (at `path`) with `hex`, loads the
/// result (from a file beside it, so relative paths resolve), and renames it over `path`.
fn replace_config(path: &Path, text: &str, hex: &str, now: Timestamp) -> Result<(), AddNodeError> {
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("delegation = \"") {
                replaced += 1;
                format!("delegation = \"{hex}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if replaced != 1 {
        return Err(AddNodeError::ExistingConfig {
            path: path.to_owned(),
            source: crate::ConfigError::Invalid(vec![crate::Violation::error(
                "zone.delegation",
                format!("expected one line `delegation = \"…\"`, found {replaced}"),
            )]),
        });
    }
    let staged = staged(path);
    let _ = std::fs::remove_file(&staged);
    write_secret(&staged, format!("{}\n", lines.join("\n")).as_bytes())
        .map_err(|source| io_error(&staged, source))?;
    if let Err(source) = crate::load(&staged, now) {
        let _ = std::fs::remove_file(&staged);
        return Err(AddNodeError::ExistingConfig {
            path: path.to_owned(),
            source,
        });
    }
    std::fs::rename(&staged, path).map_err(|source| io_error(path, source).into())
}

/// Writes `bytes` beside `path` and renames it over `path` (mode 0600).
fn replace(path: &Path, bytes: &[u8]) -> Result<(), AddNodeError> {
    let staged = staged(path);
    let _ = std::fs::remove_file(&staged);
    write_secret(&staged, bytes).map_err(|source| io_error(&staged, source))?;
    std::fs::rename(&staged, path).map_err(|source| io_error(path, source).into())
}

fn staged(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".renewing");
    path.with_file_name(name)
}
