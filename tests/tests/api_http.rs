//! The API's HTTP server under clients that misbehave at the connection level, with real
//! sockets against a real node: a silent client, a client that sends half a request or half a
//! body, a kept-alive client that goes quiet, a flood of connections over the cap, and heads
//! hyper refuses before any route runs. Every one is dropped within its bound, and every answer
//! the node writes is the JSON error shape.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use xchg_tests::Zone;

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// Slack for a loaded two-core machine between a limit running out and the socket closing.
const SLACK: Duration = Duration::from_millis(2500);

/// The `[api]` limits a test gives its node.
#[derive(Clone, Copy)]
struct Limits {
    max_connections: u32,
    header_read: Duration,
    idle: Duration,
    request: Duration,
}

/// Short limits, so that each test waits a second or two.
const SHORT: Limits = Limits {
    max_connections: 64,
    header_read: Duration::from_millis(1000),
    idle: Duration::from_millis(2500),
    request: Duration::from_millis(2000),
};

/// A one-node zone whose `[api]` has `limits`, and its API address.
async fn node(limits: Limits) -> anyhow::Result<(Zone, SocketAddr)> {
    let zone = zone_of(1, limits).await?;
    let addr = api_addr(&zone, 0)?;
    Ok((zone, addr))
}

/// Node `i`'s API address.
fn api_addr(zone: &Zone, i: usize) -> anyhow::Result<SocketAddr> {
    Ok(zone.nodes[i]
        .api_url
        .strip_prefix("http://")
        .context("an http:// API URL")?
        .parse()?)
}

/// A zone of `nodes` nodes whose `[api]` has `limits`, with a leader.
async fn zone_of(nodes: usize, limits: Limits) -> anyhow::Result<Zone> {
    let mut zone = Zone::generate("single-zone", nodes)?;
    for i in 0..nodes {
        zone.edit_config(i, |toml| {
            toml.replacen(
                "max_body_bytes = 1048576",
                &format!(
                    "max_body_bytes = 1048576\nmax_connections = {}\nheader_read_timeout_ms = {}\n\
                 idle_timeout_ms = {}\nrequest_timeout_ms = {}",
                    limits.max_connections,
                    limits.header_read.as_millis(),
                    limits.idle.as_millis(),
                    limits.request.as_millis()
                ),
                1,
            )
        })?;
    }
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    Ok(zone)
}

/// One HTTP answer read off a socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Parses the first answer in `bytes` (a head and a `content-length` body).
fn parse_answer(bytes: &[u8]) -> anyhow::Result<(Answer, usize)> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no complete head in {:?}", String::from_utf8_lossy(bytes)))?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .with_context(|| format!("no content-length in {head:?}"))?;
    let body_start = end + 4;
    let body = bytes
        .get(body_start..body_start + length)
        .with_context(|| format!("a body of {length} bytes is cut short"))?;
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    Ok((Answer { status, head, body }, body_start + length))
}

/// The answer is the JSON error shape with `status` and `code`.
fn expect_json_error(answer: &Answer, status: u16, code: &str) -> anyhow::Result<()> {
    ensure!(
        answer.status == status && answer.body["error"]["code"] == code,
        "expected {status} {code}, got {answer:?}"
    );
    ensure!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "not declared JSON: {answer:?}"
    );
    ensure!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message: {answer:?}"
    );
    Ok(())
}

/// Reads until the node closes the connection (or `within` passes); returns what came and when
/// the connection ended.
async fn read_until_closed(
    stream: &mut TcpStream,
    within: Duration,
) -> anyhow::Result<(Vec<u8>, Instant)> {
    let mut got = Vec::new();
    let until = Instant::now() + within;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => bail!(
                "the node kept the connection open for {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) => return Ok((got, Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            // A reset also ends it.
            Ok(Err(_)) => return Ok((got, Instant::now())),
        }
    }
}

/// Sends `request` on a new connection and reads everything until the node closes it.
async fn one_shot(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let (bytes, _) = read_until_closed(&mut stream, Duration::from_secs(20)).await?;
    Ok(parse_answer(&bytes)?.0)
}

/// Sends one complete GET on `stream` and reads its answer, leaving the connection open.
async fn get_on(stream: &mut TcpStream, path: &str) -> anyhow::Result<Answer> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: node\r\n\r\n").as_bytes())
        .await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Ok((answer, _)) = parse_answer(&got) {
            return Ok(answer);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .context("no answer within 10 s")??;
        ensure!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Files the node may open meanwhile for its own reasons (its database pool opens connections
/// as reads need them, each with its WAL; gossip redials), beside the API's connections.
const OTHER_FILES: usize = 8;

/// Open file descriptors of process `pid`.
fn open_files(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_head_gets_408_and_is_dropped_in_time()
-> anyhow::Result<()> {
    let (_zone, addr) = node(SHORT).await?;
    let mut stream = TcpStream::connect(addr).await?;
    let started = Instant::now();
    stream
        .write_all(b"GET /v1/status HTTP/1.1\r\nhost: node\r\nx-half: ")
        .await?;
    let (bytes, closed) = read_until_closed(&mut stream, SHORT.header_read + SLACK).await?;
    let took = closed - started;
    ensure!(
        took >= SHORT.header_read - Duration::from_millis(100),
        "closed after {took:?}, before the header timeout"
    );
    let (answer, _) = parse_answer(&bytes)?;
    expect_json_error(&answer, 408, "request_timeout")
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout_without_an_answer()
-> anyhow::Result<()> {
    let (_zone, addr) = node(SHORT).await?;
    let mut stream = TcpStream::connect(addr).await?;
    let (bytes, _) = read_until_closed(&mut stream, SHORT.header_read + SLACK).await?;
    ensure!(
        bytes.is_empty(),
        "answered {:?}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(())
}

#[tokio::test]
async fn a_kept_alive_connection_waits_the_idle_timeout_for_its_next_request() -> anyhow::Result<()>
{
    let (_zone, addr) = node(SHORT).await?;
    let mut stream = TcpStream::connect(addr).await?;
    let answer = get_on(&mut stream, "/v1/status").await?;
    ensure!(answer.status == 200, "{answer:?}");
    let answered = Instant::now();
    // Longer than the header timeout: between requests the idle timeout applies.
    tokio::time::sleep(SHORT.header_read + Duration::from_millis(500)).await;
    let again = get_on(&mut stream, "/v1/status").await?;
    ensure!(
        again.status == 200,
        "the kept-alive connection was dropped early: {again:?}"
    );
    let answered_again = Instant::now();
    let (bytes, closed) = read_until_closed(&mut stream, SHORT.idle + SLACK).await?;
    ensure!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    let idle = closed - answered_again;
    ensure!(
        idle >= SHORT.idle - Duration::from_millis(300),
        "closed after {idle:?} idle, before the idle timeout ({:?} after the first answer)",
        closed - answered
    );
    Ok(())
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_within_the_request_timeout() -> anyhow::Result<()> {
    let (zone, addr) = node(SHORT).await?;
    let provider = zone.tokens().provider.clone();
    let mut stream = TcpStream::connect(addr).await?;
    let started = Instant::now();
    stream
        .write_all(
            format!(
                "POST /v1/listings HTTP/1.1\r\nhost: node\r\nauthorization: Bearer {provider}\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"title\":"
            )
            .as_bytes(),
        )
        .await?;
    let (bytes, closed) = read_until_closed(&mut stream, SHORT.request + SLACK).await?;
    ensure!(
        closed - started >= SHORT.request - Duration::from_millis(100),
        "answered after {:?}, before the request timeout",
        closed - started
    );
    let (answer, _) = parse_answer(&bytes)?;
    expect_json_error(&answer, 408, "request_timeout")
}

#[tokio::test]
async fn connections_over_the_cap_get_503_while_the_open_ones_are_served() -> anyhow::Result<()> {
    let limits = Limits {
        max_connections: 16,
        header_read: Duration::from_secs(8),
        idle: Duration::from_secs(30),
        request: Duration::from_secs(10),
    };
    let (zone, addr) = node(limits).await?;
    let pid = zone.pid(0).context("the node runs")?;
    let mut kept = TcpStream::connect(addr).await?;
    ensure!(get_on(&mut kept, "/v1/status").await?.status == 200);
    let files_before = open_files(pid)?;

    // Issue #12's attack: 300 half-sent requests. Fifteen fill the cap beside `kept`.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr).await?;
        let _ = s.write_all(b"GET /v1/status HTTP/1.1\r\nhost: no").await;
        flood.push(s);
    }
    let flood_started = Instant::now();
    for s in &mut flood {
        let mut buf = [0u8; 4096];
        // A refused connection is answered and closed at once; a held one says nothing yet.
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(n)) if n > 0 => {
                let (answer, _) = parse_answer(&buf[..n])?;
                expect_json_error(&answer, 503, "too_many_connections")?;
                refused += 1;
            }
            // Closed, or reset (the answer may be lost when the client's bytes were unread).
            Ok(_) => refused += 1,
        }
    }
    ensure!(
        refused >= 300 - 15,
        "only {refused} of 300 connections over a cap of 16 were refused"
    );
    ensure!(
        flood_started.elapsed() < limits.header_read,
        "the flood took too long to check for this test's timing"
    );
    let files_during = open_files(pid)?;
    eprintln!(
        "open files of the node: {files_before} before, {files_during} during a flood of 300 \
         half-sent requests ({refused} refused)"
    );
    ensure!(
        files_during <= files_before + 15 + OTHER_FILES,
        "{files_during} files open during the flood, {files_before} before"
    );
    // The connection opened before the flood is still served.
    let answer = get_on(&mut kept, "/v1/status").await?;
    ensure!(answer.status == 200, "{answer:?}");

    // Once the held connections time out, new ones are served again.
    xchg_tests::eventually(
        limits.header_read + SLACK + Duration::from_secs(5),
        "a new connection served after the flood",
        || async {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return Ok(None);
            };
            match get_on(&mut s, "/v1/status").await {
                Ok(a) if a.status == 200 => Ok(Some(())),
                Ok(a) => Err(format!("{a:?}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    drop(flood);
    xchg_tests::eventually(
        SLACK,
        "the node's open files back to what they were",
        || async {
            let files = open_files(pid).map_err(|e| e.to_string())?;
            if files <= files_before + OTHER_FILES {
                Ok(Some(()))
            } else {
                Err(format!(
                    "{files} files open, {files_before} before the flood"
                ))
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_uri_over_64_kib_gets_414_in_the_json_error_shape() -> anyhow::Result<()> {
    let (_zone, addr) = node(SHORT).await?;
    let path = format!("/v1/listings?q={}", "a".repeat(90 * 1024));
    let answer = one_shot(
        addr,
        format!("GET {path} HTTP/1.1\r\nhost: node\r\n\r\n").as_bytes(),
    )
    .await?;
    expect_json_error(&answer, 414, "uri_too_long")
}

#[tokio::test]
async fn headers_over_the_buffer_get_431_in_the_json_error_shape() -> anyhow::Result<()> {
    let (_zone, addr) = node(SHORT).await?;
    let mut request = b"GET /v1/status HTTP/1.1\r\nhost: node\r\n".to_vec();
    for i in 0..40 {
        request.extend_from_slice(format!("x-filler-{i}: {}\r\n", "b".repeat(8000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = one_shot(addr, &request).await?;
    expect_json_error(&answer, 431, "headers_too_large")
}

#[tokio::test]
async fn a_malformed_request_line_gets_400_in_the_json_error_shape() -> anyhow::Result<()> {
    let (_zone, addr) = node(SHORT).await?;
    let answer = one_shot(addr, b"GET /v1/status HTTP/9\r\nhost: node\r\n\r\n").await?;
    expect_json_error(&answer, 400, "bad_request")?;
    let answer = one_shot(addr, b"G(T /v1/status HTTP/1.1\r\nhost: node\r\n\r\n").await?;
    expect_json_error(&answer, 400, "bad_request")
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_gets_400_in_the_json_error_shape() -> anyhow::Result<()> {
    let (zone, addr) = node(SHORT).await?;
    let buyer = zone.tokens().buyer.clone();
    let answer = one_shot(
        addr,
        format!(
            "GET /v1/listings/%FF%FE HTTP/1.1\r\nhost: node\r\nauthorization: Bearer {buyer}\r\n\
             connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    expect_json_error(&answer, 400, "bad_request")
}

#[tokio::test]
async fn a_write_still_at_work_at_the_request_limit_gets_504_timeout() -> anyhow::Result<()> {
    let mut zone = zone_of(3, SHORT).await?;
    let leader = zone.wait_for_leader(0, ELECTION).await?;
    // Without its followers the leader cannot commit: the write waits longer than the limit.
    for i in (0..3).filter(|i| *i != leader) {
        zone.kill(i);
    }
    let provider = zone.tokens().provider.clone();
    let body = serde_json::to_string(&xchg_tests::example_listing("stuck"))?;
    let started = Instant::now();
    let answer = one_shot(
        api_addr(&zone, leader)?,
        format!(
            "POST /v1/listings HTTP/1.1\r\nhost: node\r\nauthorization: Bearer {provider}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n\
             {body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let took = started.elapsed();
    expect_json_error(&answer, 504, "timeout")?;
    ensure!(
        took >= SHORT.request - Duration::from_millis(100) && took < SHORT.request + SLACK,
        "answered after {took:?}"
    );
    Ok(())
}
