//! Raft RPC between zone members over TCP and mutually authenticated TLS 1.3.
//!
//! Each node presents a certificate self-signed with its ed25519 node key. There is no CA: a
//! peer is accepted only if the key in its certificate is one of the zone's current member keys
//! ([`MemberKeys`]), checked on both sides of every handshake, and the TLS handshake signature
//! proves the peer holds that key. There is no plaintext path.
//!
//! Frames are a 4-byte big-endian length followed by CBOR; a frame longer than
//! [`MAX_FRAME`] ends the connection before anything is allocated for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use xchg_protocol::Keypair;

use super::transport::{
    BoxFuture, FRAME_FORMAT, MAX_FRAME, Peer, TransportError, ZoneRequest, ZoneResponse,
    ZoneService, ZoneTransport, decode_frame, encode_frame,
};
use super::{MemberNode, NodeId};

/// The name both sides use in SNI; identity is the pinned key, not the name.
const SERVER_NAME: &str = "xchg-zone-member";
/// Idle pooled connections kept per peer.
const POOL_PER_PEER: usize = 4;

pub use super::members::MemberKeys;

/// Why the TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Certificate generation failed.
    #[error("cannot build the node certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// PKCS#8 v1 encoding of an ed25519 seed (RFC 8410): a fixed 16-byte prefix and the seed.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

/// A self-signed certificate for `key`, and the private key in rustls form.
///
/// # Errors
/// [`TlsSetupError::Certificate`].
pub fn certificate(
    key: &Keypair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsSetupError> {
    let der = pkcs8(&key.seed());
    let pkcs8 = PrivatePkcs8KeyDer::from(der.clone());
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    let cert = params.self_signed(&signer)?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
    ))
}

/// Reads one DER TLV at `at`: (tag, content start, content end).
fn tlv(der: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(at)?;
    let first = *der.get(at + 1)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), at + 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = der.get(at + 2..at + 2 + n)?;
        (
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            at + 2 + n,
        )
    };
    let end = start.checked_add(len)?;
    (end <= der.len()).then_some((tag, start, end))
}

/// The ed25519 public key in a certificate's SubjectPublicKeyInfo, if it has one.
pub fn ed25519_key_of(cert: &[u8]) -> Option<[u8; 32]> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serialNumber,
    //   signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
    let (_, cert_start, _) = tlv(cert, 0).filter(|t| t.0 == 0x30)?;
    let (_, tbs_start, tbs_end) = tlv(cert, cert_start).filter(|t| t.0 == 0x30)?;
    let mut pos = tbs_start;
    let (tag, _, end) = tlv(cert, pos)?;
    if tag == 0xa0 {
        pos = end;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        let (_, _, end) = tlv(cert, pos)?;
        pos = end;
    }
    let (tag, spki_start, spki_end) = tlv(cert, pos)?;
    if tag != 0x30 || spki_end > tbs_end {
        return None;
    }
    // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits, 32 key bytes) }
    let spki = &cert[spki_start..spki_end];
    let prefix = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    let key = spki.strip_prefix(&prefix[..])?;
    key.try_into().ok()
}

/// Accepts exactly the certificates whose ed25519 key is a current member's.
#[derive(Debug)]
struct PinnedKeys {
    keys: MemberKeys,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedKeys {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match ed25519_key_of(cert.as_ref()) {
            Some(key) if self.keys.admits(&key) => Ok(()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }
}

impl PinnedKeys {
    /// Both configurations allow TLS 1.3 only, so a 1.2 signature never needs checking.
    fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "zone members speak TLS 1.3 only".into(),
        ))
    }

    /// The handshake signature proves the peer holds the pinned key.
    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PinnedKeys {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PinnedKeys {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Client and server TLS configurations for one node.
#[derive(Clone)]
pub struct TlsConfigs {
    /// For dialing members.
    pub client: Arc<rustls::ClientConfig>,
    /// For accepting members.
    pub server: Arc<rustls::ServerConfig>,
    /// This node's certificate and key, for a client configuration pinned to one other key
    /// ([`TlsTransport`]'s probes).
    identity: Arc<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
}

/// A TLS 1.3-only client configuration presenting `identity` and accepting servers whose key is
/// one of `members`.
fn client_config(
    identity: &(CertificateDer<'static>, PrivateKeyDer<'static>),
    members: MemberKeys,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedKeys {
        keys: members,
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.0.clone()], identity.1.clone_key())?)
}

/// Builds the TLS 1.3-only configurations for `key`, pinned to `members`.
///
/// # Errors
/// [`TlsSetupError`].
pub fn configs(key: &Keypair, members: MemberKeys) -> Result<TlsConfigs, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedKeys {
        keys: members.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let (cert, private) = certificate(key)?;
    let identity = Arc::new((cert.clone(), private.clone_key()));
    let client = client_config(&identity, members)?;
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], private)?;
    Ok(TlsConfigs {
        client: Arc::new(client),
        server: Arc::new(server),
        identity,
    })
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    if bytes.len() > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    w.write_u32(len).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Dials members over mutual TLS, keeping a few idle connections per member.
pub struct TlsTransport {
    connector: TlsConnector,
    idle: Mutex<BTreeMap<NodeId, Vec<ClientStream>>>,
    identity: Arc<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
}

impl TlsTransport {
    /// A transport using `tls.client`.
    pub fn new(tls: &TlsConfigs) -> Self {
        TlsTransport {
            connector: TlsConnector::from(tls.client.clone()),
            idle: Mutex::new(BTreeMap::new()),
            identity: tls.identity.clone(),
        }
    }

    async fn connect(&self, node: &MemberNode) -> Result<ClientStream, TransportError> {
        self.connect_with(&self.connector, node).await
    }

    async fn connect_with(
        &self,
        connector: &TlsConnector,
        node: &MemberNode,
    ) -> Result<ClientStream, TransportError> {
        let tcp = TcpStream::connect(&node.raft_addr)
            .await
            .map_err(|e| TransportError::Unreachable(format!("{}: {e}", node.raft_addr)))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(SERVER_NAME)
            .map_err(|e| TransportError::Network(e.to_string()))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError::Unreachable(format!("TLS with {}: {e}", node.name)))
    }

    fn take_idle(&self, target: NodeId) -> Option<ClientStream> {
        self.idle.lock().ok()?.get_mut(&target)?.pop()
    }

    fn put_idle(&self, target: NodeId, stream: ClientStream) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(target).or_default();
            if list.len() < POOL_PER_PEER {
                list.push(stream);
            }
        }
    }

    async fn exchange(
        &self,
        stream: &mut ClientStream,
        request: &[u8],
    ) -> Result<ZoneResponse, TransportError> {
        write_frame(stream, request)
            .await
            .map_err(|e| TransportError::Network(e.to_string()))?;
        let answer = read_frame(stream)
            .await
            .map_err(|e| TransportError::Network(e.to_string()))?;
        decode_frame(&answer)
            .map(|(response, _)| response)
            .map_err(|e| TransportError::Network(format!("bad answer: {e}")))
    }
}

/// `request` as a frame, refused if larger than a member accepts.
fn request_frame(request: &ZoneRequest) -> Result<Vec<u8>, TransportError> {
    let bytes = encode_frame(request, FRAME_FORMAT)
        .map_err(|e| TransportError::Network(format!("cannot encode request: {e}")))?;
    if bytes.len() > MAX_FRAME {
        return Err(TransportError::TooLarge {
            bytes: bytes.len(),
            limit: MAX_FRAME,
        });
    }
    Ok(bytes)
}

impl ZoneTransport for TlsTransport {
    fn call<'a>(
        &'a self,
        target: NodeId,
        node: &'a MemberNode,
        request: ZoneRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ZoneResponse, TransportError>> {
        Box::pin(async move {
            let bytes = request_frame(&request)?;
            let work = async {
                // A pooled connection may have been closed by the peer; one retry on a fresh one.
                if let Some(mut stream) = self.take_idle(target)
                    && let Ok(answer) = self.exchange(&mut stream, &bytes).await
                {
                    self.put_idle(target, stream);
                    return Ok(answer);
                }
                let mut stream = self.connect(node).await?;
                let answer = self.exchange(&mut stream, &bytes).await?;
                self.put_idle(target, stream);
                Ok(answer)
            };
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| TransportError::Timeout(timeout))?
        })
    }

    /// On a new connection, never pooled, that accepts only `node.public_key`: whatever else
    /// answers at `node.raft_addr` (another member, an old machine) fails the handshake.
    fn probe<'a>(
        &'a self,
        _target: NodeId,
        node: &'a MemberNode,
        request: ZoneRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ZoneResponse, TransportError>> {
        Box::pin(async move {
            let key = <[u8; 32]>::try_from(node.public_key.as_slice())
                .map_err(|_| TransportError::Network("the key is not 32 bytes".into()))?;
            let only = MemberKeys::default();
            only.set([key]);
            let config = client_config(&self.identity, only)
                .map_err(|e| TransportError::Network(e.to_string()))?;
            let connector = TlsConnector::from(Arc::new(config));
            let bytes = request_frame(&request)?;
            let work = async {
                let mut stream = self.connect_with(&connector, node).await?;
                self.exchange(&mut stream, &bytes).await
            };
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| TransportError::Timeout(timeout))?
        })
    }
}

/// TLS handshakes under way at once; a connection beyond them is closed at once. Members hold
/// a handful of connections each, so only a flood reaches this.
const MAX_HANDSHAKES: usize = 32;
/// Handshakes under way at once from one IP address: a flood from one source cannot take every
/// handshake slot from the members.
const MAX_HANDSHAKES_PER_IP: usize = 8;
/// Connections served at once (members pool [`POOL_PER_PEER`] each, per direction).
const MAX_CONNECTIONS: usize = 256;
/// How long a peer has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning about refused connections per this interval (a flood of strangers must
/// not flood the log); the warning counts what it stands for.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Warns about refused connections at most once per [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct RefusalLog {
    last: Mutex<Option<(std::time::Instant, u64)>>,
}

impl RefusalLog {
    fn refused(&self, peer: SocketAddr, why: &str) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        match &mut *last {
            Some((at, count)) if now.duration_since(*at) < REFUSAL_LOG_EVERY => *count += 1,
            _ => {
                let before = last.map_or(0, |(_, c)| c);
                tracing::warn!(
                    %peer,
                    reason = why,
                    refused_since_last_warning = before,
                    "refused Raft connection"
                );
                *last = Some((now, 0));
            }
        }
    }
}

/// One handshake slot of an IP address, given back when dropped.
struct IpSlot {
    counts: Arc<Mutex<BTreeMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl IpSlot {
    fn take(
        counts: &Arc<Mutex<BTreeMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
    ) -> Option<Self> {
        let mut c = counts.lock().ok()?;
        let n = c.entry(ip).or_default();
        if *n >= MAX_HANDSHAKES_PER_IP {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock()
            && let Some(n) = c.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// Accepts members' connections on `listener` and serves their requests until `shutdown`
/// resolves; then every connection task is stopped. At most [`MAX_HANDSHAKES`] handshakes and
/// [`MAX_CONNECTIONS`] connections are under way; the peer is checked against the current
/// membership on every request, not only at the handshake ([`ZoneService::handle`]).
pub async fn serve(
    listener: TcpListener,
    tls: TlsConfigs,
    service: ZoneService,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls.server.clone());
    let mut connections = tokio::task::JoinSet::new();
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let per_ip: Arc<Mutex<BTreeMap<std::net::IpAddr, usize>>> = Arc::default();
    let refusals = Arc::new(RefusalLog::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let Some(slot) = IpSlot::take(&per_ip, peer.ip()) else {
                    refusals.refused(peer, "too many handshakes at once from this address");
                    continue;
                };
                let permit = match handshakes.clone().try_acquire_owned() {
                    Ok(p) if connections.len() < MAX_CONNECTIONS => (p, slot),
                    _ => {
                        refusals.refused(peer, "too many connections or handshakes at once");
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let service = service.clone();
                let refusals = refusals.clone();
                connections.spawn(async move {
                    serve_connection(acceptor, tcp, peer, service, permit, &refusals).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    service: ZoneService,
    handshake_permit: (tokio::sync::OwnedSemaphorePermit, IpSlot),
    refusals: &RefusalLog,
) {
    // A fenced member takes no connection: its zone's leader then sees it unreachable and
    // backs off, instead of reconnecting and logging at every heartbeat.
    if service.fenced() {
        return;
    }
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    drop(handshake_permit);
    let mut stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            refusals.refused(peer, &e.to_string());
            return;
        }
        Err(_) => {
            refusals.refused(peer, "TLS handshake timed out");
            return;
        }
    };
    // The verifier admitted only a member's key; it is read back to check it on every request.
    let Some(key) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| ed25519_key_of(c.as_ref()))
    else {
        return;
    };
    loop {
        let frame = match read_frame(&mut stream).await {
            Ok(f) => f,
            Err(_) => return,
        };
        let (request, format): (ZoneRequest, u16) = match decode_frame(&frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable Raft frame; closing");
                return;
            }
        };
        // A member removed or revoked since the handshake gets nothing more.
        let Some(response) = service.handle(request, Peer::Key(key)).await else {
            return;
        };
        // Answered in the request's format: a leader of the previous release reads it.
        let Ok(bytes) = encode_frame(&response, format) else {
            return;
        };
        if write_frame(&mut stream, &bytes).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_exactly_the_node_key() {
        let key = Keypair::from_seed(&[5; 32]);
        let (cert, _) = certificate(&key).expect("certificate");
        assert_eq!(
            ed25519_key_of(cert.as_ref()),
            Some(*key.public().as_bytes())
        );
    }
}
