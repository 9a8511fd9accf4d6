//! HTTPS for a layout's APIs (`--api-tls`): a certificate authority of the layout's own, and a
//! certificate from it for each node's API address.
//!
//! ```text
//! out/api-ca.pem              the CA certificate: what clients (`--ca`, XCHG_CA) and the
//!                             nodes themselves (`[api] ca_cert`) trust
//! out/root/api-ca.key         the CA's private key (0600), offline with the root keys; only
//!                             `xchg config add-node` needs it back
//! out/tls/<stem>.crt          a node's certificate, for its API address
//! out/tls/<stem>.key          its private key (0600)
//! ```
//!
//! The CA's name is kept in `layout.json`: with it and the key, `add-node` signs a new node's
//! certificate as the same issuer.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use xchg_protocol::Timestamp;

use super::render::Validity;
use super::{GenerateError, ROOT_KEY_DIR, io_error};
use crate::Host;
use crate::raw::RawApi;
use crate::secret::{create_private_dir, write_secret};

/// The CA certificate's file, in the layout directory.
pub const CA_CERT_FILE: &str = "api-ca.pem";
/// The CA key's file, in the layout's `root/`.
pub const CA_KEY_FILE: &str = "api-ca.key";
/// The folder of the nodes' certificates and keys.
pub const TLS_DIR: &str = "tls";

/// How long the CA is valid: ten years.
const CA_DAYS: u64 = 3650;

/// `layout.json`'s record of the layout's API certificate authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutApiCa {
    /// The CA certificate, relative to the layout directory (`api-ca.pem`).
    pub cert: PathBuf,
    /// The CA's subject common name, which every node certificate names as its issuer.
    pub name: String,
}

/// The layout's certificate authority, key in hand.
pub(super) struct ApiCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    name: String,
    /// When its certificate (`api-ca.pem`) runs out: no certificate it issues may outlast it,
    /// or clients that check the whole chain's dates (OpenSSL, curl, browsers) refuse it then.
    not_after: Timestamp,
}

/// The CA's certificate parameters; the same for issuing as when created, so that a CA
/// rebuilt from its key and name issues as the original did.
fn ca_params(name: &str, not_before: Timestamp) -> Result<CertificateParams, GenerateError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(inconsistent)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time_of(not_before)?;
    params.not_after = time_of(ca_not_after(not_before))?;
    Ok(params)
}

impl ApiCa {
    /// A new CA named after the layout's first exchange and a random suffix.
    pub(super) fn create(first_exchange: &str, now: Timestamp) -> Result<Self, GenerateError> {
        let key = KeyPair::generate().map_err(inconsistent)?;
        let suffix: String = hex::encode(&key.public_key_raw()[1..5]);
        let name = format!("xchg API CA {first_exchange} {suffix}");
        Self::certified(key, name, now)
    }

    /// The same CA (key and name, so every certificate it issued still chains to it) with a
    /// new certificate valid for ten years from a day before `now`: what `xchg config renew
    /// --renew-ca` writes to `api-ca.pem`.
    pub(super) fn renewed(self, now: Timestamp) -> Result<Self, GenerateError> {
        Self::certified(self.key, self.name, now)
    }

    /// The CA of `key` and `name` with a new self-signed certificate from a day before `now`
    /// (as the node certificates, see `Validity::days_from`, so a clock slightly behind accepts
    /// the chain), with a serial of its own: issuer and serial name one certificate (RFC 5280),
    /// and some clients refuse two certificates that share them.
    fn certified(key: KeyPair, name: String, now: Timestamp) -> Result<Self, GenerateError> {
        let not_before = Timestamp(now.millis().saturating_sub(24 * 60 * 60 * 1000));
        let cert = with_random_serial(ca_params(&name, not_before)?)
            .self_signed(&key)
            .map_err(inconsistent)?;
        Ok(ApiCa {
            cert,
            key,
            name,
            not_after: ca_not_after(not_before),
        })
    }

    /// Its certificate, PEM.
    pub(super) fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// When its certificate runs out.
    pub(super) fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// The CA of a layout in `dir`, from its key in `root/` and its name in `layout.json`.
    ///
    /// # Errors
    /// The key file is missing (with where to put it back) or unreadable.
    pub(super) fn load(dir: &Path, record: &LayoutApiCa) -> Result<Self, GenerateError> {
        let path = ca_key_file(dir);
        let pem = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                GenerateError::MissingCaKey(path.clone())
            } else {
                io_error(&path, source)
            }
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|e| {
            GenerateError::Inconsistent(format!("{}: not a PEM private key: {e}", path.display()))
        })?;
        let cert = ca_params(&record.name, Timestamp(0))?
            .self_signed(&key)
            .map_err(inconsistent)?;
        let cert_file = dir.join(&record.cert);
        let pem = std::fs::read_to_string(&cert_file).map_err(|e| io_error(&cert_file, e))?;
        let not_after = certificate_not_after(&pem)
            .map_err(|e| GenerateError::Inconsistent(format!("{}: {e}", cert_file.display())))?;
        Ok(ApiCa {
            cert,
            key,
            name: record.name.clone(),
            not_after,
        })
    }

    /// What `layout.json` records of it.
    pub(super) fn record(&self) -> LayoutApiCa {
        LayoutApiCa {
            cert: PathBuf::from(CA_CERT_FILE),
            name: self.name.clone(),
        }
    }

    /// Writes the CA certificate to `dir/api-ca.pem` and its key to `dir/root/api-ca.key`.
    pub(super) fn write(&self, dir: &Path) -> Result<(), GenerateError> {
        let cert = dir.join(CA_CERT_FILE);
        write_new(&cert, self.cert.pem().as_bytes())?;
        let key = ca_key_file(dir);
        write_secret(&key, self.key.serialize_pem().as_bytes())
            .map_err(|source| io_error(&key, source))
    }

    /// Issues the API certificate of node `stem` reached at `host`, valid as its delegation
    /// is, and writes it with its new key to `dir/tls/`.
    pub(super) fn issue(
        &self,
        dir: &Path,
        stem: &str,
        node_name: &str,
        host: &Host,
        validity: Validity,
    ) -> Result<(), GenerateError> {
        let (cert, key) = self.certificate(node_name, host, validity)?;
        let tls = dir.join(TLS_DIR);
        create_private_dir(&tls).map_err(|source| io_error(&tls, source))?;
        let (cert_file, key_file) = node_files(dir, stem);
        write_new(&cert_file, cert.as_bytes())?;
        write_secret(&key_file, key.as_bytes()).map_err(|source| io_error(&key_file, source))
    }

    /// A new API certificate for node `node_name` reached at `host` (its address or host
    /// name), valid as `validity`
    /// says, and its new key: both PEM.
    pub(super) fn certificate(
        &self,
        node_name: &str,
        host: &Host,
        validity: Validity,
    ) -> Result<(String, String), GenerateError> {
        // Certificates hold whole seconds.
        if validity.not_after.millis() / 1000 > self.not_after.millis() / 1000 {
            return Err(GenerateError::CaExpires {
                ca: self.not_after,
                wanted: validity.not_after,
            });
        }
        // An address becomes an IP subject name, a host name a DNS one.
        let mut names = vec![host.to_string()];
        if host.is_loopback() && *host != Host::Name("localhost".into()) {
            names.push("localhost".to_owned());
        }
        let mut params = CertificateParams::new(names).map_err(inconsistent)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = time_of(validity.not_before)?;
        params.not_after = time_of(validity.not_after)?;
        let key = KeyPair::generate().map_err(inconsistent)?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(inconsistent)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// `params` with a random positive 16-byte serial number (rcgen's default is derived from the
/// key, the same for a renewed CA certificate).
fn with_random_serial(mut params: CertificateParams) -> CertificateParams {
    use rand::RngCore as _;
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params
}

/// When a CA certificate made from `not_before` (a day before it is made) runs out: ten years
/// from when it is made, so that a node certificate of the longest validity issued with it
/// (`MAX_VALID_DAYS`) does not outlast it.
fn ca_not_after(not_before: Timestamp) -> Timestamp {
    not_before.plus_millis((CA_DAYS + 1) * 24 * 60 * 60 * 1000)
}

/// The end of the validity of the first certificate in `pem` (its `notAfter`), read from the
/// DER: certificate, to-be-signed part, version, serial, algorithm, issuer, then validity.
///
/// # Errors
/// Not a PEM certificate, or not the DER of one.
pub fn certificate_not_after(pem: &str) -> Result<Timestamp, String> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN CERTIFICATE-----")
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let bad = || "not the DER of a certificate".to_owned();
    let (certificate, _) = der_element(&der, 0x30).ok_or_else(bad)?;
    let (mut tbs, _) = der_element(certificate, 0x30).ok_or_else(bad)?;
    // An explicit version ([0]) comes first when present.
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs, 0xa0).ok_or_else(bad)?.1;
    }
    for tag in [0x02, 0x30, 0x30] {
        tbs = der_element(tbs, tag).ok_or_else(bad)?.1;
    }
    let (validity, _) = der_element(tbs, 0x30).ok_or_else(bad)?;
    let (_, rest) = der_time(validity).ok_or_else(bad)?;
    let (not_after, _) = der_time(rest).ok_or_else(bad)?;
    Ok(not_after)
}

/// The contents of the DER element at the start of `der` if its tag is `tag`, and what follows
/// it.
fn der_element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) at
/// the start of `der`, and what follows it.
fn der_time(der: &[u8]) -> Option<(Timestamp, &[u8])> {
    let (text, rest, century) = match der.first()? {
        0x17 => {
            let (t, rest) = der_element(der, 0x17)?;
            let yy: i32 = std::str::from_utf8(t.get(..2)?).ok()?.parse().ok()?;
            (
                t.get(2..)?,
                rest,
                Some(if yy < 50 { 2000 + yy } else { 1900 + yy }),
            )
        }
        0x18 => {
            let (t, rest) = der_element(der, 0x18)?;
            (t, rest, None)
        }
        _ => return None,
    };
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, text) = match century {
        Some(year) => (year, text),
        None => (text.get(..4)?.parse().ok()?, text.get(4..)?),
    };
    let field = |at: usize| -> Option<u8> { text.get(at..at + 2)?.parse().ok() };
    if text.len() != 10 {
        return None;
    }
    let month = time::Month::try_from(field(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
    let at = date
        .with_hms(field(4)?, field(6)?, field(8)?)
        .ok()?
        .assume_utc();
    let millis = u64::try_from(at.unix_timestamp()).ok()?.checked_mul(1000)?;
    Some((Timestamp(millis), rest))
}

/// Where the CA key of a layout in `dir` is kept.
pub fn ca_key_file(dir: &Path) -> PathBuf {
    dir.join(ROOT_KEY_DIR).join(CA_KEY_FILE)
}

/// A node's certificate and key files in a layout directory.
pub(super) fn node_files(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    let tls = dir.join(TLS_DIR);
    (
        tls.join(format!("{stem}.crt")),
        tls.join(format!("{stem}.key")),
    )
}

/// The `[api]` settings of a node config in `nodes/` whose certificate is `tls/<stem>.*`.
pub(super) fn with_tls(api: RawApi, stem: &str) -> RawApi {
    RawApi {
        tls_cert: Some(format!("../{TLS_DIR}/{stem}.crt")),
        tls_key: Some(format!("../{TLS_DIR}/{stem}.key")),
        ca_cert: Some(format!("../{CA_CERT_FILE}")),
        ..api
    }
}

/// Writes a file that must not exist yet (a certificate: public, mode 0644 by the umask).
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), GenerateError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| io_error(path, source))
}

fn time_of(t: Timestamp) -> Result<time::OffsetDateTime, GenerateError> {
    let secs = i64::try_from(t.millis() / 1000).map_err(|_| inconsistent("time out of range"))?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(inconsistent)
}

fn inconsistent(e: impl std::fmt::Display) -> GenerateError {
    GenerateError::Inconsistent(format!("API certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(tag: u8, text: &str) -> Vec<u8> {
        let mut der = vec![tag, u8::try_from(text.len()).expect("short")];
        der.extend_from_slice(text.as_bytes());
        der
    }

    #[test]
    fn utc_and_generalized_times_read_as_their_instant() {
        let at = |der: &[u8]| der_time(der).map(|(t, rest)| (t.millis() / 1000, rest.len()));
        // 2036-12-01T16:23:50Z.
        assert_eq!(at(&time(0x17, "361201162350Z")), Some((2_111_761_430, 0)));
        assert_eq!(at(&time(0x18, "20361201162350Z")), Some((2_111_761_430, 0)));
        // UTCTime's two digits: 49 is 2049, 50 is 1950.
        assert_eq!(at(&time(0x17, "491231235959Z")), Some((2_524_607_999, 0)));
        assert_eq!(
            at(&time(0x17, "500101000000Z")),
            None,
            "1950: before any timestamp"
        );
        for bad in [
            "3612011623Z",
            "361301162350Z",
            "361201162350",
            "20361201162350.5Z",
        ] {
            assert_eq!(at(&time(0x18, bad)), None, "{bad}");
        }
    }

    #[test]
    fn lengths_of_both_forms_are_read_and_a_short_element_is_refused() {
        assert_eq!(
            der_element(&[0x30, 0x02, 1, 2, 3], 0x30),
            Some((&[1u8, 2][..], &[3u8][..]))
        );
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        assert_eq!(
            der_element(&long, 0x30).map(|(c, r)| (c.len(), r.len())),
            Some((128, 0))
        );
        assert_eq!(der_element(&[0x30, 0x05, 1, 2], 0x30), None);
        assert_eq!(der_element(&[0x31, 0x00], 0x30), None);
    }

    #[test]
    fn a_generated_certificate_reads_back_its_end() {
        let key = KeyPair::generate().expect("key");
        let not_before = Timestamp(1_700_000_000_000);
        let cert = ca_params("test CA", not_before)
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(
            certificate_not_after(&cert.pem()),
            Ok(ca_not_after(not_before))
        );
        assert!(certificate_not_after("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n").is_err());
    }
}
