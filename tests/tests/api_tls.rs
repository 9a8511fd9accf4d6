//! HTTPS on the API (issue #18): a zone generated with `--api-tls` serves its API over TLS only,
//! its certificates verify against the layout's CA (for clients, the CLI's `--ca`/`XCHG_CA`, and
//! the nodes' own calls to each other), and nothing that does not trust that CA gets through.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use xchg_tests::{Zone, xchg_binary};

const DEADLINE: Duration = Duration::from_secs(90);

/// `xchg status` against `url` with the environment `env`; its exit success and its output.
fn cli_status(url: &str, args: &[&str], env: &[(&str, &Path)]) -> anyhow::Result<(bool, String)> {
    let mut command = Command::new(xchg_binary());
    command
        .args(["status", "--json", "--node", url])
        .args(args)
        .env_remove("XCHG_CA")
        .env_remove("XCHG_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Asks `/v1/status` over a TLS connection limited to `version`, trusting `ca`; the first line
/// of the answer and the protocol version negotiated.
async fn status_over(
    api_url: &str,
    ca: &Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> anyhow::Result<(String, rustls::ProtocolVersion)> {
    let authority = api_url.trim_start_matches("https://");
    let addr: std::net::SocketAddr = authority.parse()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in xchg_node::api::tls::read_certificates(ca)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let mut tls = connector.connect(name, tcp).await?;
    let negotiated = tls
        .get_ref()
        .1
        .protocol_version()
        .context("no protocol version")?;
    tls.write_all(
        format!("GET /v1/status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    Ok((
        text.lines().next().unwrap_or_default().to_owned(),
        negotiated,
    ))
}

/// Every node view of an overview document.
fn node_views(overview: &Value) -> Vec<&Value> {
    overview["exchanges"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["zones"].as_array().into_iter().flatten())
        .flat_map(|z| z["nodes"].as_array().into_iter().flatten())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_generated_with_api_tls_serves_https_only_and_verifies_every_hop()
-> anyhow::Result<()> {
    let mut zone = Zone::generate_with("single-zone", 3, &["--api-tls"])?;
    let layout_dir = zone.dir.path().join("layout");
    let ca = layout_dir.join("api-ca.pem");
    assert!(
        ca.is_file(),
        "the generator writes the CA beside layout.json"
    );
    // A second layout's CA: what a node trusts when it is configured with the wrong one.
    let other = tempfile::tempdir()?;
    let generated = Command::new(xchg_binary())
        .args([
            "config",
            "generate",
            "--layout",
            "single-zone",
            "--nodes-per-zone",
            "1",
        ])
        .args(["--api-tls", "--base-port", "7100", "--out"])
        .arg(other.path().join("layout"))
        .stdout(Stdio::null())
        .status()?;
    assert!(generated.success());
    let other_ca = other.path().join("layout/api-ca.pem");
    zone.edit_config(2, |text| {
        text.replace(
            "ca_cert = \"../api-ca.pem\"",
            &format!("ca_cert = {:?}", other_ca.display().to_string()),
        )
    })?;
    zone.start_all()?;
    zone.wait_for_leader(0, DEADLINE).await?;
    let urls: Vec<String> = zone.nodes.iter().map(|n| n.api_url.clone()).collect();
    for url in &urls {
        assert!(url.starts_with("https://"), "{url}");
    }

    // The fixture's client trusts the CA: a write with a bearer token goes through.
    let tokens = zone.tokens().clone();
    let listing = xchg_tests::for_party(
        xchg_tests::example_listing("tls"),
        zone.zone_party("xuchang/municipal"),
    );
    let (status, body) = zone
        .post(0, "/v1/listings", &tokens.provider, &listing)
        .await?;
    assert!(
        status == 201 || status == 202,
        "submitting over HTTPS: {status} {body}"
    );

    // Plain HTTP to the same port gets no HTTP answer at all.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!(
            "{}/v1/status",
            urls[0].replacen("https://", "http://", 1)
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // A client that trusts no CA, or another one, is refused in the handshake.
    for trusted in [None, Some(other_ca.as_path())] {
        let refused = xchg_node::api::tls::client_builder(trusted)?
            .timeout(Duration::from_secs(10))
            .build()?
            .get(format!("{}/v1/status", urls[0]))
            .send()
            .await;
        assert!(
            refused.is_err(),
            "trusting {trusted:?} was answered: {refused:?}"
        );
    }

    // TLS 1.3 and 1.2 are both served.
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (line, negotiated) = status_over(&urls[1], &ca, version).await?;
        assert_eq!(line, "HTTP/1.1 200 OK", "{negotiated:?}");
        assert_eq!(negotiated, version.version);
    }

    // The CLI: --ca, or XCHG_CA; without either, an error that says what to give.
    let ca_text = ca.display().to_string();
    let (ok, out) = cli_status(&urls[0], &["--ca", &ca_text], &[])?;
    assert!(ok, "{out}");
    assert!(out.contains("\"leader\""), "{out}");
    let (ok, out) = cli_status(&urls[1], &[], &[("XCHG_CA", &ca)])?;
    assert!(ok, "{out}");
    let (ok, out) = cli_status(&urls[0], &[], &[])?;
    assert!(!ok, "answered without a CA: {out}");
    assert!(out.contains("--ca FILE or XCHG_CA"), "{out}");
    let (ok, out) = cli_status(&urls[0], &[], &[("XCHG_CA", &other_ca)])?;
    assert!(!ok, "answered trusting another CA: {out}");
    let (ok, out) = cli_status(&urls[0], &["--ca", &other_ca.display().to_string()], &[])?;
    assert!(!ok, "answered trusting another CA: {out}");
    assert!(out.contains("certificate was refused"), "{out}");

    // Node to node: the overview's status probes verify the members' certificates. Node 0
    // trusts the layout's CA and reaches every member; node 2 trusts another CA and reaches
    // none but itself (which answers from memory), saying why.
    let (status, overview) = zone
        .get(0, "/v1/federation/overview", Some(&tokens.operator))
        .await?;
    assert_eq!(status, 200, "{overview}");
    let views = node_views(&overview);
    assert_eq!(views.len(), 3, "{overview}");
    for view in &views {
        assert_eq!(view["reachable"], true, "{view}");
    }
    let (status, overview) = zone
        .get(2, "/v1/federation/overview", Some(&tokens.operator))
        .await?;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(node_views(&overview).len(), 3, "{overview}");
    for view in node_views(&overview) {
        if view["name"] == zone.nodes[2].name.as_str() {
            assert_eq!(view["reachable"], true, "{view}");
        } else {
            assert_eq!(view["reachable"], false, "{view}");
            assert!(
                view["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("TLS handshake failed"),
                "{view}"
            );
        }
    }
    Ok(())
}
