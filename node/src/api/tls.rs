//! HTTPS for the API: the server's rustls configuration from `[api] tls_cert` / `tls_key`, and
//! the HTTP client that calls other nodes' APIs trusting `[api] ca_cert`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use xchg_federation_config::{ApiTls, DELEGATION_RENEWAL_MS};
use xchg_protocol::announcement::CLOCK_SKEW_MS;

/// Why the API's TLS setup failed; each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{}: {what}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the certificate and key (they do not match, or an algorithm is unsupported).
    #[error("the API certificate {} and key {} cannot be served: {source}", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: std::path::PathBuf,
        /// The key file.
        key: std::path::PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The certificates of a PEM file, in order; none is an error.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ApiTlsError> {
    let file = |what: String| ApiTlsError::File {
        path: path.to_owned(),
        what,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file(
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certs)
}

/// The acceptor that serves the API over TLS 1.3 or 1.2 with the configured certificate chain
/// and key (HTTP/1.1 by ALPN).
///
/// # Errors
/// [`ApiTlsError`]: a file is missing or unreadable, or the key does not fit the certificate.
pub fn acceptor(tls: &ApiTls) -> Result<TlsAcceptor, ApiTlsError> {
    let certs = read_certificates(&tls.cert)?;
    let now = i64::try_from(xchg_protocol::Timestamp::now().0 / 1000).unwrap_or(i64::MAX);
    match validity(&certs[0], now) {
        Ok(Some(warning)) => tracing::warn!(cert = %tls.cert.display(), "{warning}"),
        Ok(None) => {}
        Err(what) => {
            return Err(ApiTlsError::File {
                path: tls.cert.clone(),
                what,
            });
        }
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| ApiTlsError::File {
        path: tls.key.clone(),
        what: format!("no private key read (expected a PEM PKCS#8, SEC1 or PKCS#1 key): {e}"),
    })?;
    let refused = |source| ApiTlsError::Refused {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The API certificate's validity at `now` (Unix seconds), by a delegation's rules: an error
/// once it has ended or before it begins (no client would accept it; a clock
/// [`CLOCK_SKEW_MS`] behind is allowed for), a warning within [`DELEGATION_RENEWAL_MS`] of its
/// end.
fn validity(cert: &CertificateDer<'_>, now: i64) -> Result<Option<String>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("the first certificate does not parse as X.509: {e}"))?;
    let (from, to) = (parsed.validity().not_before, parsed.validity().not_after);
    let renew = "renew it (README: Renewing delegations and certificates)";
    if now >= to.timestamp() {
        return Err(format!(
            "the certificate expired at {to} ({now} now, Unix time); {renew}"
        ));
    }
    let secs = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    if now.saturating_add(secs(CLOCK_SKEW_MS)) < from.timestamp() {
        return Err(format!(
            "the certificate is not valid before {from}; is this machine's clock right?"
        ));
    }
    let left = to.timestamp() - now;
    Ok((left < secs(DELEGATION_RENEWAL_MS)).then(|| {
        format!(
            "the API certificate expires at {to}, in {} days; {renew}",
            left / (24 * 3600)
        )
    }))
}

/// A client builder trusting exactly the certificates of `ca` (a PEM file) for HTTPS, or none
/// when `ca` is `None` (then only plain-HTTP APIs are reachable).
///
/// # Errors
/// [`ApiTlsError`] if `ca` cannot be read or holds no certificate.
pub fn client_builder(ca: Option<&Path>) -> Result<reqwest::ClientBuilder, ApiTlsError> {
    Ok(client_builder_trusting(&trusted_certificates(ca)?))
}

/// The certificates of `ca` (a PEM file) as a client takes them; none without a file.
///
/// # Errors
/// [`ApiTlsError`] if `ca` cannot be read or holds no certificate.
pub fn trusted_certificates(ca: Option<&Path>) -> Result<Vec<reqwest::Certificate>, ApiTlsError> {
    let Some(path) = ca else {
        return Ok(Vec::new());
    };
    read_certificates(path)?
        .iter()
        .map(|cert| {
            reqwest::Certificate::from_der(cert).map_err(|e| ApiTlsError::File {
                path: path.to_owned(),
                what: format!("a certificate is unusable: {e}"),
            })
        })
        .collect()
}

/// A client builder trusting exactly `certificates` for HTTPS (read once by
/// [`trusted_certificates`]).
pub fn client_builder_trusting(certificates: &[reqwest::Certificate]) -> reqwest::ClientBuilder {
    certificates.iter().cloned().fold(
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false),
        reqwest::ClientBuilder::add_root_certificate,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 and its key, as PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> ApiTls {
        let tls = ApiTls {
            cert: dir.join("api.crt"),
            key: dir.join("api.key"),
        };
        std::fs::write(&tls.cert, cert).expect("write certificate");
        std::fs::write(&tls.key, key).expect("write key");
        tls
    }

    /// Found by an attacker's review: an expired API certificate was served without a word,
    /// and every client then failed.
    #[test]
    fn an_expired_certificate_is_refused_and_one_ending_soon_is_warned_about() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 7, 1);
        let cert = params.self_signed(&key).expect("certificate");
        let der = CertificateDer::from(cert.der().to_vec());
        let day = 24 * 3600;
        let (begins, ends) = (1_767_225_600, 1_782_864_000); // 2026-01-01, 2026-07-01 UTC
        assert_eq!(validity(&der, begins + day), Ok(None));
        let soon = validity(&der, ends - 10 * day).expect("still valid");
        assert!(soon.is_some_and(|w| w.contains("in 10 days")));
        let expired = validity(&der, ends).expect_err("ended");
        assert!(expired.contains("expired"), "{expired}");
        let early = validity(&der, begins - day).expect_err("not yet");
        assert!(early.contains("not valid before"), "{early}");
        // A clock a few minutes behind is allowed for.
        assert_eq!(validity(&der, begins - 60), Ok(None));
    }

    #[test]
    fn a_certificate_with_its_key_is_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed();
        acceptor(&files(dir.path(), &cert, &key)).expect("served");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let err = acceptor(&files(dir.path(), &cert, &other_key))
            .err()
            .expect("refused");
        assert!(matches!(err, ApiTlsError::Refused { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("api.crt") && text.contains("api.key"),
            "{text}"
        );
    }

    #[test]
    fn files_without_a_certificate_or_a_key_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed();
        for (c, k, bad) in [
            ("", key.as_str(), "api.crt"),
            (key.as_str(), key.as_str(), "api.crt"),
            (cert.as_str(), "", "api.key"),
            (cert.as_str(), cert.as_str(), "api.key"),
        ] {
            let err = acceptor(&files(dir.path(), c, k)).err().expect("refused");
            assert!(
                matches!(&err, ApiTlsError::File { path, .. } if path.ends_with(bad)),
                "{err}"
            );
        }
        let missing = ApiTls {
            cert: dir.path().join("nowhere.crt"),
            key: dir.path().join("api.key"),
        };
        let err = acceptor(&missing).err().expect("refused");
        assert!(err.to_string().contains("nowhere.crt"), "{err}");
        let err = client_builder(Some(&dir.path().join("nowhere.pem"))).expect_err("refused");
        assert!(err.to_string().contains("nowhere.pem"), "{err}");
    }
}
