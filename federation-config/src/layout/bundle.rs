//! One directory per node, ready to copy to that node's machine: `bundles/<stem>/`.
//!
//! ```text
//! bundles/<stem>/node.toml     the node's config; every path in it is relative to this folder
//! bundles/<stem>/node.key      its secret key (0600)
//! bundles/<stem>/api.crt       with --api-tls: its API certificate,
//! bundles/<stem>/api.key         the certificate's key (0600),
//! bundles/<stem>/api-ca.pem      and the layout's API CA, which it trusts for the others
//! ```
//!
//! A bundle holds no other node's secret and no root or CA key: it is what
//! `deploy/xchg@.service` expects in `/var/lib/xchg/<stem>/` (the node keeps its data in
//! `data/` beside the config).

use std::path::{Path, PathBuf};

use xchg_protocol::{Keypair, Timestamp};

use super::tls::{CA_CERT_FILE, node_files};
use super::{GenerateError, io_error, write_raw_config};
use crate::raw::RawConfig;
use crate::secret::{create_private_dir, write_key_file, write_secret};

/// The folder of the bundles in a layout directory.
pub const BUNDLE_DIR: &str = "bundles";
/// A bundle's config file.
pub const BUNDLE_CONFIG: &str = "node.toml";

/// Where node `stem`'s bundle is in the layout `dir`.
pub fn bundle_dir(dir: &Path, stem: &str) -> PathBuf {
    dir.join(BUNDLE_DIR).join(stem)
}

/// Writes node `stem`'s bundle from its config `raw` (as written to `nodes/`), its `key`, and,
/// when `raw` serves HTTPS, its certificate, key and CA from the layout `dir`. Nothing is
/// overwritten; the config is loaded back.
pub(super) fn write(
    dir: &Path,
    stem: &str,
    raw: &RawConfig,
    key: &Keypair,
    now: Timestamp,
) -> Result<(), GenerateError> {
    let bundle = bundle_dir(dir, stem);
    create_private_dir(&bundle).map_err(|source| io_error(&bundle, source))?;
    let key_file = bundle.join("node.key");
    write_key_file(&key_file, key).map_err(|source| io_error(&key_file, source))?;
    let mut raw = raw.clone();
    raw.node.key_file = "node.key".to_owned();
    raw.node.data_dir = "data".to_owned();
    if let Some(api) = raw.api.as_mut()
        && api.tls_cert.is_some()
    {
        let (cert, cert_key) = node_files(dir, stem);
        for (from, name) in [
            (cert, "api.crt"),
            (cert_key, "api.key"),
            (dir.join(CA_CERT_FILE), CA_CERT_FILE),
        ] {
            let to = bundle.join(name);
            let bytes = std::fs::read(&from).map_err(|source| io_error(&from, source))?;
            write_secret(&to, &bytes).map_err(|source| io_error(&to, source))?;
        }
        api.tls_cert = Some("api.crt".to_owned());
        api.tls_key = Some("api.key".to_owned());
        api.ca_cert = Some(CA_CERT_FILE.to_owned());
    }
    write_raw_config(&bundle.join(BUNDLE_CONFIG), &raw, now).map(drop)
}
