//! `xchg certificate verify FILE --root-key KEY`: checks a registration certificate offline
//! against an exchange's root key (PROTOCOL.md 10.3), printing each check; a failure exits 1
//! naming the check that failed and why.

use std::process::ExitCode;

use anyhow::Context as _;
use xchg_protocol::certificate::CHECKS;
use xchg_protocol::{
    ExchangeId, Limits, PublicKey, SignedCertificate, Timestamp, TrustStore, verify_certificate,
};

use super::args::CertificateVerifyArgs;

/// The largest file read: a certificate's JSON is a few kilobytes.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The certificate bytes in `text`: the JSON of `GET /v1/certificates/{number}` (its `signed`
/// field, and its readable `certificate` to compare), hex of the canonical CBOR, or the CBOR
/// itself.
fn certificate_bytes(raw: &[u8]) -> anyhow::Result<(Vec<u8>, Option<serde_json::Value>)> {
    let trimmed = raw.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        let value: serde_json::Value =
            serde_json::from_slice(trimmed).context("the file starts with { but is not JSON")?;
        let signed = value["signed"]
            .as_str()
            .context("the JSON has no \"signed\" field (the hex of the signed certificate)")?;
        let bytes = hex::decode(signed).context("\"signed\" is not hex")?;
        return Ok((bytes, value.get("certificate").cloned()));
    }
    if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit) {
        return Ok((hex::decode(trimmed).context("not hex")?, None));
    }
    Ok((raw.to_vec(), None))
}

/// The fields of the readable `shown` certificate whose values are not those signed.
fn disagreeing(shown: &serde_json::Value, signed: &serde_json::Value) -> Vec<String> {
    let Some(shown) = shown.as_object() else {
        return vec!["certificate (not an object)".to_owned()];
    };
    shown
        .iter()
        .filter(|(k, v)| signed.get(k.as_str()) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Verifies the certificate in `args.file`; exit 0 when valid, 1 when not.
///
/// # Errors
/// A file that cannot be read, or a root key that is not one.
pub fn verify(args: CertificateVerifyArgs) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut raw = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    anyhow::ensure!(
        raw.len() as u64 <= MAX_FILE_BYTES,
        "{} is over {MAX_FILE_BYTES} bytes: not a certificate",
        args.file.display()
    );
    let (bytes, shown) = certificate_bytes(&raw)?;
    let root = PublicKey::from_base64(&args.root_key)
        .or_else(|_| args.root_key.parse())
        .map_err(|_| {
            anyhow::anyhow!(
                "--root-key: not a public key: give it in base64 (as root_public_key in a node's \
                 config) or as 64 hex digits"
            )
        })?;
    // Trusted for the exchange given, or else for the one the certificate's delegation names:
    // the caller vouches that this is that exchange's root key.
    let exchange: ExchangeId = match &args.exchange {
        Some(e) => e.parse().map_err(|e| anyhow::anyhow!("--exchange: {e}"))?,
        None => SignedCertificate::from_bytes(&bytes, &Limits::default())
            .map(|s| s.delegation.delegation.exchange)
            .unwrap_or_else(|_| "unknown".parse().expect("a valid exchange id literal")),
    };
    let mut trust = TrustStore::default();
    trust.trust(exchange.clone(), root);
    let now = Timestamp::now();
    outln!("trusting root key {root} for exchange {exchange}; now {now}");
    outln!("checks, in order:");
    for (i, check) in CHECKS.iter().enumerate() {
        outln!("  {}. {check}", i + 1);
    }
    match verify_certificate(&bytes, &trust, now, &Limits::default()) {
        Ok(v) => {
            let c = &v.certificate;
            if let Some(shown) = &shown {
                let signed = serde_json::to_value(c).unwrap_or_default();
                let wrong = disagreeing(shown, &signed);
                if !wrong.is_empty() {
                    eprintln!(
                        "invalid: the signed bytes verify, but the file's readable certificate \
                         disagrees with them in: {} (trust only what was signed)",
                        wrong.join(", ")
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            let rights: Vec<String> = c
                .rights
                .iter()
                .map(|r| {
                    serde_json::to_value(r)
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect();
            outln!("valid: every check passed");
            outln!("  number     {}", c.number);
            outln!("  holder     {}", c.holder);
            outln!("  listing    {} (content {})", c.listing_id, c.content_id);
            outln!("  rights     {}", rights.join(", "));
            outln!("  zone       {} at {}", c.zone, c.issued_at);
            outln!("  signed by  node key {} ({})", v.signer, v.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("invalid: {}: {e}", e.kind());
            Ok(ExitCode::FAILURE)
        }
    }
}
