//! `renew`: new delegations (and, for HTTPS layouts, new API certificates) for the nodes of a
//! generated layout, before the old ones run out. A node whose delegation has expired no
//! longer loads its config, so a zone left alone for `valid_days` stops; the node warns 30 days
//! ahead, and this is what the operator then runs.
//!
//! Each node's config (in `nodes/` and in its bundle) keeps every line but its `delegation`,
//! which is signed anew by the exchange root key for the same node key; the certificate gets a
//! new key pair. A node's new files are all written beside the old ones and its configs checked
//! before any is renamed over its old one, so a failure leaves that node's files as they were.
//! The running nodes keep their old delegation until restarted with the new files.

use std::path::{Path, PathBuf};

use xchg_protocol::{PublicKey, Timestamp, ZoneId};

use super::add::{AddNodeError, file_stem, read_layout, root_key, zone_list};
use super::render::{Validity, delegation_hex};
use super::tls::{ApiCa, CA_CERT_FILE, node_files, write_new};
use super::{BUNDLE_CONFIG, GenerateError, bundle_dir, io_error};
use crate::secret::write_secret;
use crate::{Host, HostPort};

/// Which nodes to renew and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewOptions {
    /// The layout directory, as written by [`super::generate`].
    pub dir: PathBuf,
    /// Only this zone's nodes; every node of the layout when `None`.
    pub zone: Option<ZoneId>,
    /// How long the new delegations (and certificates) are valid, in days from now.
    pub valid_days: u32,
    /// Also give the layout's API certificate authority a new certificate (same key and name,
    /// ten years from now) before the nodes' certificates are issued, and every renewed bundle
    /// its copy (`--renew-ca`).
    pub renew_ca: bool,
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
    /// Nodes of `layout.json` whose config in `nodes/` is gone (removed from their zone, say):
    /// left alone.
    pub skipped: Vec<PathBuf>,
    /// Until when the new delegations are valid.
    pub not_after: Timestamp,
    /// Until when the layout's API CA certificate is valid, if the layout has one.
    pub ca_not_after: Option<Timestamp>,
    /// Whether the CA certificate was renewed.
    pub ca_renewed: bool,
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
            known: zone_list(&layout.exchanges),
        });
    }
    let validity = Validity::days_from(now, opts.valid_days);
    let mut ca = layout
        .api_ca
        .as_ref()
        .map(|record| ApiCa::load(&opts.dir, record))
        .transpose()?;
    // Every exchange with nodes to renew and its root key, read (and checked against the
    // layout) before anything is written: a renewal that cannot sign changes nothing, the CA
    // included.
    let mut signers = Vec::new();
    for exchange in &layout.exchanges {
        let zones: Vec<_> = exchange
            .zones
            .iter()
            .filter(|z| opts.zone.as_ref().is_none_or(|only| &z.id == only))
            .collect();
        if zones.is_empty() {
            continue;
        }
        let trusted =
            crate::validate::public_key_from_base64(&exchange.root_public_key).map_err(|e| {
                GenerateError::Inconsistent(format!(
                    "{}: root key of {}: {e}",
                    layout_file.display(),
                    exchange.id
                ))
            })?;
        signers.push((zones, root_key(&opts.dir, &exchange.id, trusted)?));
    }
    if opts.renew_ca {
        let Some(old) = ca.take() else {
            return Err(GenerateError::Inconsistent(format!(
                "{} has no API certificate authority (the layout was generated without \
                 --api-tls): there is no CA to renew",
                layout_file.display()
            ))
            .into());
        };
        // Written first, on its own: a renewed CA still signs what the old one signed (same
        // key and name), so nodes renewed or not keep working with either copy.
        let renewed = old.renewed(now)?;
        let mut staging = Staging::default();
        let staged = staging.file(
            &opts.dir.join(CA_CERT_FILE),
            renewed.cert_pem().as_bytes(),
            Mode::Public,
        );
        match staged {
            Ok(()) => staging.commit()?,
            Err(e) => {
                staging.abandon();
                return Err(e);
            }
        }
        ca = Some(renewed);
    }
    let mut nodes = Vec::new();
    let mut skipped = Vec::new();
    for (zones, root) in signers {
        for zone in zones {
            for node in &zone.nodes {
                let config = opts.dir.join(&node.config);
                let stem = file_stem(&config);
                // A node removed from its zone may have had its files deleted; layout.json
                // still lists it.
                let text = match std::fs::read_to_string(&config) {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        skipped.push(node.config.clone());
                        continue;
                    }
                    Err(source) => return Err(io_error(&config, source).into()),
                };
                let hex = delegation_hex(&root, &zone.id, node_key_of(&config, &text)?, validity);
                let certificate = match &ca {
                    Some(ca) => {
                        let host = api_host(&config, &node.api_url)?;
                        Some(ca.certificate(node.name.as_str(), &host, validity)?)
                    }
                    None => None,
                };
                // Every new file of the node is written beside its old one and checked; only
                // then are they renamed over the old ones, so a failure leaves the node's files
                // as they were.
                let bundle = bundle_dir(&opts.dir, &stem);
                let bundled = bundle.join(BUNDLE_CONFIG);
                let has_bundle = bundled.is_file();
                let mut staging = Staging::default();
                let staged = (|| {
                    staging.config(&config, &text, &hex, now)?;
                    if let Some((cert, key)) = &certificate {
                        let (cert_file, key_file) = node_files(&opts.dir, &stem);
                        staging.file(&cert_file, cert.as_bytes(), Mode::Public)?;
                        staging.file(&key_file, key.as_bytes(), Mode::Secret)?;
                    }
                    if has_bundle {
                        if let Some((cert, key)) = &certificate {
                            staging.file(&bundle.join("api.crt"), cert.as_bytes(), Mode::Public)?;
                            staging.file(&bundle.join("api.key"), key.as_bytes(), Mode::Secret)?;
                            let ca_file = opts.dir.join(CA_CERT_FILE);
                            let ca_pem =
                                std::fs::read(&ca_file).map_err(|e| io_error(&ca_file, e))?;
                            staging.file(&bundle.join(CA_CERT_FILE), &ca_pem, Mode::Public)?;
                        }
                        let text = std::fs::read_to_string(&bundled)
                            .map_err(|source| io_error(&bundled, source))?;
                        staging.config(&bundled, &text, &hex, now)?;
                    }
                    Ok::<_, AddNodeError>(())
                })();
                match staged {
                    Ok(()) => staging.commit()?,
                    Err(e) => {
                        staging.abandon();
                        return Err(e);
                    }
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
        skipped,
        not_after: validity.not_after,
        ca_not_after: ca.as_ref().map(ApiCa::not_after),
        ca_renewed: opts.renew_ca,
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

/// The host of an API URL `http(s)://host:port` (what the node's certificate names).
fn api_host(path: &Path, url: &str) -> Result<Host, AddNodeError> {
    let authority = url.split("://").nth(1).unwrap_or_default();
    authority.parse::<HostPort>().map(|a| a.host).map_err(|_| {
        GenerateError::Inconsistent(format!(
            "{}: api_url {url} is not http(s)://host:port",
            path.display()
        ))
        .into()
    })
}

/// How a staged file may be read.
#[derive(Clone, Copy)]
enum Mode {
    /// Certificates: as the generator writes them.
    Public,
    /// Keys and configs: mode 0600.
    Secret,
}

/// New files written beside the ones they replace (`<name>.renewing`), renamed over them at
/// [`Staging::commit`] or removed at [`Staging::abandon`].
#[derive(Default)]
struct Staging {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staging {
    /// Stages config `text` (at `path`) with its `delegation = "…"` line set to `hex`, after
    /// checking the result as a node would read it (its key file is not read: the workstation
    /// need not keep node keys).
    fn config(
        &mut self,
        path: &Path,
        text: &str,
        hex: &str,
        now: Timestamp,
    ) -> Result<(), AddNodeError> {
        let mut replaced = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with("delegation = \"") {
                    replaced += 1;
                    format!("delegation = \"{hex}\"")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        let existing = |source| AddNodeError::ExistingConfig {
            path: path.to_owned(),
            source,
        };
        if replaced != 1 {
            return Err(existing(crate::ConfigError::Invalid(vec![
                crate::Violation::error(
                    "zone.delegation",
                    format!("expected one line `delegation = \"…\"`, found {replaced}"),
                ),
            ])));
        }
        let new = format!("{}\n", lines.join("\n"));
        let base = path.parent().unwrap_or(Path::new("."));
        crate::parse(&new, base, now).map_err(existing)?;
        self.file(path, new.as_bytes(), Mode::Secret)
    }

    /// Stages `bytes` to replace `path`.
    fn file(&mut self, path: &Path, bytes: &[u8], mode: Mode) -> Result<(), AddNodeError> {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".renewing");
        let staged = path.with_file_name(name);
        let _ = std::fs::remove_file(&staged);
        match mode {
            Mode::Secret => {
                write_secret(&staged, bytes).map_err(|source| io_error(&staged, source))?;
            }
            Mode::Public => write_new(&staged, bytes)?,
        }
        self.files.push((staged, path.to_owned()));
        Ok(())
    }

    /// Renames every staged file over the one it replaces.
    fn commit(self) -> Result<(), AddNodeError> {
        for (staged, path) in &self.files {
            std::fs::rename(staged, path).map_err(|source| io_error(path, source))?;
        }
        Ok(())
    }

    /// Removes every staged file.
    fn abandon(self) {
        for (staged, _) in &self.files {
            let _ = std::fs::remove_file(staged);
        }
    }
}
