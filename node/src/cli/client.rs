//! Client commands for operators: `xchg status`, `xchg listing submit|approve|search|show`,
//! against a node's HTTP API. Human-readable output by default, the API's JSON with `--json`.
//! Each takes its clap struct from [`super::args`]; [`TargetArgs::into_target`] resolves the
//! node and the token they share.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::args::{ApproveArgs, SearchArgs, ShowArgs, SubmitArgs, TargetArgs};

/// Where and as whom to call.
#[derive(Clone)]
pub struct Target {
    /// The node's API base URL.
    pub node: String,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Print the API's JSON instead of a summary.
    pub json: bool,
    /// The certificate authorities to trust for an `https://` node (PEM); none: an HTTPS node
    /// is refused.
    pub ca: Option<PathBuf>,
}

impl Target {
    /// Calls the node; an answer other than 2xx becomes an error naming its code, message
    /// and field.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_keyed(method, path, body, None).await
    }

    /// As [`Target::call`], sending `key` as the request's `Idempotency-Key` when given.
    pub(crate) async fn call_keyed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let http = xchg_node::api::tls::client_builder(self.ca.as_deref())?
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = format!("{}{path}", self.node.trim_end_matches('/'));
        if self.token.is_some() {
            warn_plain_http(&url);
        }
        let mut req = http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| unreachable(&url, self, e))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let e = &value["error"];
            let field = e["field"]
                .as_str()
                .map(|f| format!(" (field {f})"))
                .unwrap_or_default();
            bail!(
                "{} {}: {}{field}",
                status.as_u16(),
                e["code"].as_str().unwrap_or("error"),
                e["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(value)
    }

    /// Prints `value` as JSON with `--json`, else as `human` writes it.
    pub(crate) fn print(&self, value: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            human(value);
        }
    }
}

/// Says once, on standard error, that a token is about to cross the network in clear text:
/// `url` is plain HTTP to a host other than loopback.
pub(crate) fn warn_plain_http(url: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return;
    };
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "http"
        && !loopback
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        eprintln!(
            "warning: sending a bearer token over plain HTTP to {}: anyone on the path can read \
             it; use the node's https:// address",
            parsed.host_str().unwrap_or_default()
        );
    }
}

/// Why a call got no answer, with a hint for the TLS cases a user can fix.
fn unreachable(url: &str, target: &Target, e: reqwest::Error) -> anyhow::Error {
    let hint = if !url.starts_with("https://") {
        ""
    } else if target.ca.is_none() {
        " (an https:// node: give its CA certificate with --ca FILE or XCHG_CA; `xchg config \
         generate --api-tls` writes it as api-ca.pem beside layout.json)"
    } else {
        " (if the certificate was refused: is --ca the CA that issued it, and is the node's \
         certificate for this host name or address?)"
    };
    anyhow::Error::new(e).context(format!("cannot reach {url}{hint}"))
}

impl TargetArgs {
    /// The node and the token to call it with, the token read from `--token-file` if given.
    ///
    /// # Errors
    /// If a token is given twice (one of them may come from the environment), or the token
    /// file cannot be read.
    pub fn into_target(self) -> anyhow::Result<Target> {
        let token = match (self.token, self.token_file) {
            // One of them may come from the environment: say which, rather than pick one.
            (Some(_), Some(file)) => bail!(
                "a token is given twice: --token or XCHG_TOKEN, and --token-file {} (or \
                 XCHG_TOKEN_FILE); give one",
                file.display()
            ),
            (Some(token), None) => Some(token),
            (None, Some(file)) => Some(read_token_file(&file)?),
            (None, None) => None,
        };
        Ok(Target {
            node: self.node,
            token,
            json: self.json,
            ca: self.ca,
        })
    }
}

/// Longest token file read, in bytes: a token is about 60 characters.
const TOKEN_FILE_BYTES: u64 = 4096;

/// The token in `path`: its first line, without surrounding white space.
///
/// # Errors
/// If the file cannot be read, is larger than a token file can be, or holds no token.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("--token-file {}", path.display()))?;
    if text.len() as u64 > TOKEN_FILE_BYTES {
        bail!(
            "--token-file {}: longer than {TOKEN_FILE_BYTES} bytes, not a token file",
            path.display()
        );
    }
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        bail!(
            "--token-file {}: empty; it should hold the token on its first line",
            path.display()
        );
    }
    if let Some(mode) = xchg_federation_config::loose_mode(path) {
        eprintln!(
            "warning: {} (mode {mode:o}) can be read by other users of this machine; `chmod 600` it",
            path.display()
        );
    }
    Ok(token.to_owned())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// `xchg status`.
pub async fn status(target: TargetArgs) -> anyhow::Result<ExitCode> {
    let t = target.into_target()?;
    let v = t.call(reqwest::Method::GET, "/v1/status", None).await?;
    t.print(&v, |v| {
        outln!(
            "{} of zone {} ({}): {}, leader {}, term {}, commit {}, applied {}",
            s(&v["node"]),
            s(&v["zone"]),
            s(&v["exchange"]),
            s(&v["role"]),
            s(&v["leader"]),
            v["term"],
            v["commit_index"],
            v["applied_index"]
        );
        for m in v["members"].as_array().into_iter().flatten() {
            outln!("  member {:<16} {}", s(&m["name"]), s(&m["role"]));
        }
    });
    Ok(ExitCode::SUCCESS)
}

fn print_write(v: &Value) {
    outln!(
        "{}  version {}  {}",
        s(&v["id"]),
        v["version"],
        s(&v["state"])
    );
}

/// `xchg listing submit FILE` (`-` reads standard input).
pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let file = args.file.as_path();
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let body: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let v = t
        .call(reqwest::Method::POST, "/v1/listings", Some(body))
        .await?;
    t.print(&v, print_write);
    Ok(ExitCode::SUCCESS)
}

/// `xchg listing approve ID`.
pub async fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let body = match args.notes {
        Some(n) => serde_json::json!({ "notes": n }),
        None => serde_json::json!({}),
    };
    let v = t
        .call(
            reqwest::Method::POST,
            &format!("/v1/listings/{}/approve", args.id),
            Some(body),
        )
        .await?;
    t.print(&v, print_write);
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `xchg listing search QUERY`.
pub async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let mut path = format!(
        "/v1/listings?q={}&limit={}",
        encode(&args.query),
        args.limit
    );
    if let Some(o) = args.origin {
        path.push_str(&format!("&origin={}", encode(&o)));
    }
    let v = t.call(reqwest::Method::GET, &path, None).await?;
    t.print(&v, |v| {
        let items = v["items"].as_array().cloned().unwrap_or_default();
        outln!("{} match(es), showing {}", v["total"], items.len());
        for facet in ["category", "state", "origin"] {
            if let Some(counts) = v["facets"][facet].as_object()
                && !counts.is_empty()
            {
                let list: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
                outln!("  by {facet}: {}", list.join(", "));
            }
        }
        for l in items {
            let id = s(&l["id"]);
            let short = id.get(..19).unwrap_or(id);
            outln!(
                "{short}…  {:<10} {:<20} {}",
                s(&l["state"]),
                s(&l["origin"]),
                s(&l["title"])
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// `xchg listing show ID`.
pub async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let v = t
        .call(
            reqwest::Method::GET,
            &format!("/v1/listings/{}", args.id),
            None,
        )
        .await?;
    t.print(&v, |v| {
        outln!("{}", s(&v["title"]));
        outln!(
            "  id {}  version {}  {}  origin {}",
            s(&v["id"]),
            v["version"],
            s(&v["state"]),
            s(&v["origin"])
        );
        outln!(
            "  {} / {} / {}  provider {}",
            s(&v["category"]),
            s(&v["classification"]),
            v["delivery_modes"],
            s(&v["provider"]["name"])
        );
        for h in v["history"].as_array().into_iter().flatten() {
            outln!(
                "  {}  {:<10} by {} ({}) → {}",
                s(&h["at"]),
                s(&h["action"]),
                s(&h["actor"]),
                s(&h["role"]),
                s(&h["to_state"])
            );
        }
        let p = &v["provenance"];
        for r in p["recognitions"].as_array().into_iter().flatten() {
            outln!(
                "  recognition: {} under {} from {} ({})",
                s(&r["decision"]),
                s(&r["agreement"]),
                s(&r["origin"]),
                r["reason"].as_str().unwrap_or("")
            );
        }
        for e in p["export"].as_array().into_iter().flatten() {
            outln!(
                "  export of version {} ({}): {} {}",
                e["version"],
                s(&e["kind"]),
                s(&e["state"]),
                e["reason"].as_str().unwrap_or("")
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}
