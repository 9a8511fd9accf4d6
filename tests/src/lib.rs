//! xchg-tests: fixtures for the integration suites in `tests/tests/`, which run real `xchg`
//! processes on loopback addresses and stop everything they start.
//!
//! [`Zone`] generates a layout with the real `xchg config generate`, starts and kills node
//! processes, and offers small HTTP helpers; [`in_process::Federation`] runs a whole federation
//! inside the test process. Waits are conditions with deadlines ([`eventually`]), never fixed
//! sleeps.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use xchg_federation_config::layout::{Layout, LayoutParty, ZoneTokens};

pub mod in_process;

/// The `xchg` binary built alongside the tests (`target/<profile>/xchg`).
///
/// `cargo test --workspace` builds it because `xchg-node` has integration tests of its own.
pub fn xchg_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("XCHG_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash> → target/<profile>/xchg
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("xchg")
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `deadline` saying `what`.
///
/// # Errors
/// When the deadline passes; the message names the condition and the last observation.
pub async fn eventually<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let until = Instant::now() + deadline;
    let mut last = String::from("no observation yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= until {
            bail!("timed out after {deadline:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a write is retried while the zone answers `504 outcome_unknown`.
pub const OUTCOME_UNKNOWN_RETRIES_FOR: Duration = Duration::from_secs(60);

/// Whether an answer is a node's `504 outcome_unknown`: the zone did not commit the write in
/// time, and it may or may not have been applied.
pub fn is_outcome_unknown(status: u16, body: &Value) -> bool {
    status == 504 && body["error"]["code"] == "outcome_unknown"
}

/// A key for `Idempotency-Key` no other write of this test run uses.
pub fn fresh_idempotency_key() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends a write with `send` again for as long as it answers `504 outcome_unknown`, up to
/// [`OUTCOME_UNKNOWN_RETRIES_FOR`], as a client must on a busy machine: `send` makes the retry
/// safe (the same `Idempotency-Key`, or a read-back first). The last answer.
///
/// # Errors
/// Transport errors from `send`.
pub async fn while_outcome_unknown<F, Fut>(mut send: F) -> anyhow::Result<(u16, Value)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u16, Value)>>,
{
    let until = Instant::now() + OUTCOME_UNKNOWN_RETRIES_FOR;
    loop {
        let (s, v) = send().await?;
        if !is_outcome_unknown(s, &v) || Instant::now() >= until {
            return Ok((s, v));
        }
    }
}

/// A loopback host and base port whose 3 × `nodes` ports are free right now. Each fixture gets
/// its own 127.x.y.1 address, so parallel tests do not collide.
///
/// # Errors
/// If no free range is found.
pub fn free_addresses(nodes: usize) -> anyhow::Result<(Ipv4Addr, u16)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..64 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
        let host = Ipv4Addr::new(127, 1 + (n % 250) as u8, ((n >> 8) % 250) as u8 + 1, 1);
        let base = 20_000 + ((n >> 16) % 30_000) as u16;
        if ports_free(host, base, 3 * nodes) {
            return Ok((host, base));
        }
    }
    bail!("no free loopback address and port range found")
}

/// Whether the `count` ports from `base` can all be bound on `host` right now.
pub fn ports_free(host: Ipv4Addr, base: u16, count: usize) -> bool {
    (0..count).all(|i| {
        u16::try_from(i)
            .ok()
            .and_then(|i| base.checked_add(i))
            .is_some_and(|port| TcpListener::bind(SocketAddr::from((host, port))).is_ok())
    })
}

/// One node process of a fixture.
pub struct NodeProcess {
    /// Node name.
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its API base URL.
    pub api_url: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Option<Child>,
}

/// A generated layout and its running node processes.
pub struct Zone {
    /// The layout directory (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The generated layout.
    pub layout: Layout,
    /// Every node of the layout, in layout order.
    pub nodes: Vec<NodeProcess>,
    http: reqwest::Client,
}

impl Zone {
    /// Generates `layout` with `nodes_per_zone` nodes per zone on a private loopback address.
    ///
    /// # Errors
    /// If the generator fails.
    pub fn generate(layout: &str, nodes_per_zone: usize) -> anyhow::Result<Zone> {
        Self::generate_with(layout, nodes_per_zone, &[])
    }

    /// As [`Zone::generate`], with more arguments for `xchg config generate` (e.g.
    /// `--api-tls`; the fixture's client then trusts the layout's API CA).
    ///
    /// # Errors
    /// If the generator fails.
    pub fn generate_with(
        layout: &str,
        nodes_per_zone: usize,
        extra: &[&str],
    ) -> anyhow::Result<Zone> {
        let dir = tempfile::tempdir()?;
        let zones = match layout {
            "single-zone" => 1,
            "two-exchanges" => 2,
            _ => 11,
        };
        let (host, base) = free_addresses(zones * nodes_per_zone)?;
        let out = dir.path().join("layout");
        let status = Command::new(xchg_binary())
            .args(["config", "generate", "--layout", layout, "--nodes-per-zone"])
            .arg(nodes_per_zone.to_string())
            .arg("--base-port")
            .arg(base.to_string())
            .arg("--host")
            .arg(host.to_string())
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", xchg_binary().display()))?;
        if !status.success() {
            bail!("xchg config generate failed: {status}");
        }
        Zone::open(dir)
    }

    /// The layout `xchg config generate` wrote into `dir/layout` (from an inventory, say), its
    /// nodes not started.
    ///
    /// # Errors
    /// If `layout.json` cannot be read or the CA it names cannot be loaded.
    pub fn open(dir: tempfile::TempDir) -> anyhow::Result<Zone> {
        let out = dir.path().join("layout");
        let layout: Layout = serde_json::from_slice(&std::fs::read(out.join("layout.json"))?)?;
        let nodes = layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .flat_map(|z| &z.nodes)
            .map(|n| NodeProcess {
                name: n.name.to_string(),
                config: out.join(&n.config),
                api_url: n.api_url.clone(),
                log: dir.path().join(format!("{}.log", n.name)),
                child: None,
            })
            .collect();
        let ca = layout.api_ca.as_ref().map(|ca| out.join(&ca.cert));
        let http = xchg_node::api::tls::client_builder(ca.as_deref())?
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Zone {
            dir,
            layout,
            nodes,
            http,
        })
    }

    /// Adds a node to `zone` with `xchg config add-node` (not started); returns its index and
    /// the body an admin posts to `/v1/zone/members` to admit it.
    ///
    /// # Errors
    /// If the command fails or its output cannot be read back.
    pub fn add_node(&mut self, zone: &str) -> anyhow::Result<(usize, Value)> {
        self.add_node_with(zone, &[])
    }

    /// As [`Zone::add_node`], with more arguments for `xchg config add-node` (e.g. `--host`).
    ///
    /// # Errors
    /// As [`Zone::add_node`].
    pub fn add_node_with(&mut self, zone: &str, extra: &[&str]) -> anyhow::Result<(usize, Value)> {
        let out = self.dir.path().join("layout");
        let status = Command::new(xchg_binary())
            .args(["config", "add-node", "--zone", zone, "--layout"])
            .arg(&out)
            .args(extra)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("xchg config add-node failed: {status}");
        }
        self.layout = serde_json::from_slice(&std::fs::read(out.join("layout.json"))?)?;
        let added = self
            .layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .flat_map(|z| &z.nodes)
            .find(|n| self.nodes.iter().all(|p| p.name != n.name.as_str()))
            .ok_or_else(|| anyhow::anyhow!("add-node wrote no new node into layout.json"))?;
        let config_path = out.join(&added.config);
        let config =
            xchg_federation_config::load(&config_path, xchg_protocol::Timestamp::now())?.config;
        let member = config
            .own_member()
            .ok_or_else(|| anyhow::anyhow!("the new config lacks its own member"))?;
        let body = serde_json::json!({
            "name": member.name.to_string(),
            "raft_addr": member.raft_addr.to_string(),
            "api_url": member.api_url,
            "public_key": member.public_key.to_base64(),
        });
        self.nodes.push(NodeProcess {
            name: added.name.to_string(),
            config: config_path,
            api_url: added.api_url.clone(),
            log: self.dir.path().join(format!("{}.log", added.name)),
            child: None,
        });
        Ok((self.nodes.len() - 1, body))
    }

    /// The role tokens of the first zone.
    pub fn tokens(&self) -> &ZoneTokens {
        &self.layout.exchanges[0].zones[0].tokens
    }

    /// The role tokens of zone `zone` (e.g. `zhengzhou/main`).
    ///
    /// # Panics
    /// If the layout has no such zone (a mistake in the test).
    pub fn zone_tokens(&self, zone: &str) -> &ZoneTokens {
        self.layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .find(|z| z.id.as_str() == zone)
            .map(|z| &z.tokens)
            .unwrap_or_else(|| panic!("no zone {zone} in the layout"))
    }

    /// The party the provider token of zone `zone` is bound to (`provider_party` in
    /// `layout.json`).
    ///
    /// # Panics
    /// If the layout has no such zone (a mistake in the test).
    pub fn zone_party(&self, zone: &str) -> &LayoutParty {
        self.layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .find(|z| z.id.as_str() == zone)
            .map(|z| &z.provider_party)
            .unwrap_or_else(|| panic!("no zone {zone} in the layout"))
    }

    /// The party of the zone whose role tokens are `tokens`.
    fn party_of(&self, tokens: &ZoneTokens) -> Option<&LayoutParty> {
        self.layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .find(|z| z.tokens == *tokens)
            .map(|z| &z.provider_party)
    }

    /// Indices (into [`Zone::nodes`]) of the nodes of zone `zone`.
    pub fn zone_nodes(&self, zone: &str) -> Vec<usize> {
        let names: Vec<String> = self
            .layout
            .exchanges
            .iter()
            .flat_map(|e| &e.zones)
            .filter(|z| z.id.as_str() == zone)
            .flat_map(|z| &z.nodes)
            .map(|n| n.name.to_string())
            .collect();
        (0..self.nodes.len())
            .filter(|i| names.contains(&self.nodes[*i].name))
            .collect()
    }

    /// Node `i`'s data directory, from its config.
    ///
    /// # Errors
    /// If the config cannot be loaded.
    pub fn data_dir(&self, i: usize) -> anyhow::Result<PathBuf> {
        let loaded =
            xchg_federation_config::load(&self.nodes[i].config, xchg_protocol::Timestamp::now())?;
        Ok(loaded.config.node.data_dir)
    }

    /// Rewrites node `i`'s config file with `edit` (before it starts).
    ///
    /// # Errors
    /// If the file cannot be read or written.
    pub fn edit_config(&self, i: usize, edit: impl FnOnce(String) -> String) -> anyhow::Result<()> {
        let path = &self.nodes[i].config;
        let text = std::fs::read_to_string(path)?;
        std::fs::write(path, edit(text))?;
        Ok(())
    }

    /// Submits `listing` to node `i` as `provider` and approves it as `operator`; returns its id.
    ///
    /// # Errors
    /// If either call does not succeed.
    pub async fn approve_new(
        &self,
        i: usize,
        tokens: &ZoneTokens,
        listing: &Value,
    ) -> anyhow::Result<String> {
        // The zone's provider token lists only for the zone's demo party.
        let listing = match self.party_of(tokens) {
            Some(party) => for_party(listing.clone(), party),
            None => listing.clone(),
        };
        let node = &self.nodes[i].api_url;
        submit_and_approve_by(&self.http, node, node, tokens, &listing).await
    }

    /// Registers listed listing `id` on node `i` as `provider` (source `collected`, the
    /// holding right, one evidence hash) and approves the registration as `operator`; the
    /// certificate's number.
    ///
    /// # Errors
    /// If either call does not succeed.
    pub async fn certify(&self, i: usize, tokens: &ZoneTokens, id: &str) -> anyhow::Result<String> {
        let registration = serde_json::json!({
            "listing_id": id,
            "source": "collected",
            "rights": ["holding"],
            "evidence_hashes": [format!("sha256:{}", "0e".repeat(32))],
        });
        let (s, v) = self
            .post(i, "/v1/registrations", &tokens.provider, &registration)
            .await?;
        if s != 201 {
            bail!("register answered {s}: {v}");
        }
        let path = format!("/v1/registrations/{}/approve", v["id"]);
        let (s, v) = self
            .post(i, &path, &tokens.operator, &serde_json::json!({}))
            .await?;
        match v["certificate_number"].as_str() {
            Some(number) if s == 200 => Ok(number.to_owned()),
            _ => bail!("approve registration answered {s}: {v}"),
        }
    }

    /// The zone's buyer applies on node `i` to use listed listing `id` for `scenario` by API
    /// for 30 days and `limit` calls, and `operator` approves it as asked; the authorisation's
    /// id.
    ///
    /// # Errors
    /// If either call does not succeed.
    pub async fn authorise(
        &self,
        i: usize,
        tokens: &ZoneTokens,
        id: &str,
        scenario: &str,
        limit: u64,
    ) -> anyhow::Result<u64> {
        let application = serde_json::json!({
            "listing_id": id,
            "scenario": scenario,
            "purpose": "授信前核验企业登记状态",
            "delivery_mode": "api",
            "duration_days": 30,
            "usage_limit": limit,
        });
        let (s, v) = self
            .post(i, "/v1/applications", &tokens.buyer, &application)
            .await?;
        if s != 201 {
            bail!("apply answered {s}: {v}");
        }
        let path = format!("/v1/applications/{}/approve", v["id"]);
        let (s, v) = self
            .post(i, &path, &tokens.operator, &serde_json::json!({}))
            .await?;
        match v["authorization_id"].as_u64() {
            Some(auth) if s == 200 => Ok(auth),
            _ => bail!("approve application answered {s}: {v}"),
        }
    }

    /// Waits until listing `id` is in `state` on every node of `nodes` (their own replicas),
    /// within `deadline`.
    ///
    /// # Errors
    /// When the deadline passes; the message names a node that does not have it so.
    pub async fn wait_for_state(
        &self,
        nodes: &[usize],
        token: &str,
        id: &str,
        state: &str,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        eventually(deadline, &format!("{id} {state} on every node"), || async {
            for &i in nodes {
                let s = self
                    .state_on(i, token, id)
                    .await
                    .map_err(|e| e.to_string())?;
                if s.as_deref() != Some(state) {
                    return Err(format!("{} has it as {s:?}", self.nodes[i].name));
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// The state of listing `id` on node `i`'s own replica, or `None` if it holds no such listing.
    ///
    /// # Errors
    /// Transport errors and unexpected statuses.
    pub async fn state_on(
        &self,
        i: usize,
        token: &str,
        id: &str,
    ) -> anyhow::Result<Option<String>> {
        let (s, v) = self
            .get(
                i,
                &format!("/v1/listings/{id}?consistency=local"),
                Some(token),
            )
            .await?;
        match s {
            200 => Ok(v["state"].as_str().map(str::to_owned)),
            404 => Ok(None),
            _ => bail!("GET listing answered {s}: {v}"),
        }
    }

    /// Starts node `i` (`xchg run`), with extra arguments.
    ///
    /// # Errors
    /// If the process cannot be spawned or is already running.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) -> anyhow::Result<()> {
        self.spawn(i, extra, Command::new(xchg_binary()))
    }

    /// Starts node `i` with the file-creation mask `umask` (octal, e.g. `000`), through
    /// `sh -c 'umask …; exec xchg …'`, so the node process itself runs under it.
    ///
    /// # Errors
    /// As [`Zone::start_with`].
    pub fn start_under_umask(&mut self, i: usize, umask: &str) -> anyhow::Result<()> {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(xchg_binary());
        self.spawn(i, &[], shell)
    }

    fn spawn(&mut self, i: usize, extra: &[&str], mut command: Command) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            bail!("{} is already running", node.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&node.config)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("XCHG_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // The suites read the text logs.
            .env_remove("XCHG_LOG_FORMAT")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// Starts node `i`.
    ///
    /// # Errors
    /// As [`Zone::start_with`].
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        self.start_with(i, &[])
    }

    /// Starts every node.
    ///
    /// # Errors
    /// As [`Zone::start`].
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        (0..self.nodes.len()).try_for_each(|i| self.start(i))
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs node `i` and waits up to `deadline` for it to exit; returns its exit status.
    ///
    /// # Errors
    /// If it does not exit in time (it is then killed).
    pub fn terminate(
        &mut self,
        i: usize,
        deadline: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let Some(child) = self.nodes[i].child.as_ref() else {
            bail!("{} is not running", self.nodes[i].name)
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        self.wait_for_exit(i, deadline)
    }

    /// Waits up to `deadline` for node `i`'s process to exit by itself; its exit status.
    ///
    /// # Errors
    /// If it is not running, or still runs at the deadline (it is then killed).
    pub fn wait_for_exit(
        &mut self,
        i: usize,
        deadline: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.nodes[i].child.take() else {
            bail!("{} is not running", self.nodes[i].name)
        };
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not exit within {deadline:?}", self.nodes[i].name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether node `i`'s process is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// GET `path` on node `i` with `token`; the status and JSON body.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn get(
        &self,
        i: usize,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(i, reqwest::Method::GET, path, token, None).await
    }

    /// Sends `method` `path` with a raw body to node `i`; the status and JSON body.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.nodes[i].api_url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// POSTs JSON to node `i`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn post(
        &self,
        i: usize,
        path: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(
            i,
            reqwest::Method::POST,
            path,
            Some(token),
            Some(("application/json", serde_json::to_vec(body)?)),
        )
        .await
    }

    /// Node `i`'s `applied_index` from `/v1/status`, or why it could not be read (for
    /// [`eventually`]).
    ///
    /// # Errors
    /// A transport error or an answer without the field, as text.
    pub async fn applied_index(&self, i: usize) -> Result<u64, String> {
        let (_, s) = self
            .get(i, "/v1/status", None)
            .await
            .map_err(|e| e.to_string())?;
        s["applied_index"].as_u64().ok_or_else(|| s.to_string())
    }

    /// Waits up to `deadline` until node `i` has applied as far as node `leader` had when
    /// asked.
    ///
    /// # Errors
    /// If `leader` cannot be read, or `i` does not get there in time.
    pub async fn wait_caught_up(
        &self,
        i: usize,
        leader: usize,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let target = self
            .applied_index(leader)
            .await
            .map_err(anyhow::Error::msg)?;
        eventually(deadline, "a member to catch up with its leader", || async {
            Ok((self.applied_index(i).await? >= target).then_some(()))
        })
        .await
    }

    /// Waits until node `i` reports a leader, and returns the leader's node index.
    ///
    /// # Errors
    /// If none is reported within `deadline`.
    pub async fn wait_for_leader(&self, i: usize, deadline: Duration) -> anyhow::Result<usize> {
        eventually(deadline, "a zone leader", || async {
            let (_, status) = self
                .get(i, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            let Some(leader) = status["leader"].as_str() else {
                return Ok(None);
            };
            // Only a leader that says so itself counts (a follower may remember a dead one).
            let Some(idx) = self.nodes.iter().position(|n| n.name == leader) else {
                return Ok(None);
            };
            if !self.is_running(idx) {
                return Ok(None);
            }
            let (_, own) = self
                .get(idx, "/v1/status", None)
                .await
                .map_err(|e| e.to_string())?;
            Ok((own["role"] == "leader").then_some(idx))
        })
        .await
    }

    /// The contents of node `i`'s log file (for failure messages).
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // For a post-mortem: XCHG_TEST_KEEP=1 keeps the configs, data and logs.
        if std::env::var_os("XCHG_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept the zone's files in {}", self.dir.path().display());
        }
    }
}

/// The party the provider token of the first zone of every generated layout
/// (`xuchang/municipal`: the single-zone layout's zone, the Xuchang hub) is bound to.
pub const FIRST_ZONE_PARTY: (&str, &str) = ("xuchang-big-data-bureau", "许昌市大数据局");

/// Makes the node catalog at `catalog` (its `catalog.db`, while the node runs) refuse every new
/// listing, as a damaged file or a full disk would refuse a write: a trigger that raises
/// `injected fault`. The node's next apply of a submission fails and its Raft stops.
///
/// # Errors
/// SQLite's.
pub fn refuse_listings(catalog: &Path) -> anyhow::Result<()> {
    let db = rusqlite::Connection::open(catalog)?;
    db.busy_timeout(Duration::from_secs(10))?;
    db.execute_batch(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON listings
         BEGIN SELECT RAISE(ABORT, 'injected fault: this catalog refuses listings'); END;",
    )?;
    Ok(())
}

/// The listing body of the API issue, with a distinguishing title suffix, in the name of
/// [`FIRST_ZONE_PARTY`], whose listings the first zone's provider token may submit.
pub fn example_listing(suffix: &str) -> Value {
    let mut draft = xchg_protocol::vectors::credit_draft();
    draft.title = format!("{} {suffix}", draft.title);
    let listing = serde_json::to_value(draft).expect("a listing draft always serialises");
    with_provider(listing, FIRST_ZONE_PARTY.0, FIRST_ZONE_PARTY.1)
}

/// `listing` in the name of `party` (its `provider.id` and `provider.name`).
pub fn for_party(listing: Value, party: &LayoutParty) -> Value {
    with_provider(listing, party.id.as_str(), &party.name)
}

/// The body of `POST /v1/parties` for party `id` of `kinds`: a valid made-up credit code of
/// Xuchang's division drawn from the id (as the generated layouts make them), a contact by
/// e-mail.
///
/// # Panics
/// If `id` is not a party id or a kind is unknown (a mistake in the test).
pub fn party_application(id: &str, kinds: &[&str]) -> Value {
    let party: xchg_protocol::PartyId = id.parse().expect("a party id");
    let profile = xchg_federation_config::layout::demo_profile(
        &party,
        &format!("{id} 有限公司"),
        "91",
        "411000",
        xchg_federation_config::layout::DemoRole::Provider,
    )
    .expect("a demo profile");
    let mut body = serde_json::to_value(profile).expect("a profile serialises");
    body["kinds"] = kinds.iter().map(|k| Value::from(*k)).collect();
    body
}

/// POSTs JSON `body` to `url` with `token`, and `key` as its `Idempotency-Key` (which the
/// fixtures' own POSTs never send); the status and JSON answer.
///
/// # Errors
/// Transport errors.
pub async fn post_with_key(
    url: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    post_with_key_by(&reqwest::Client::new(), url, token, key, body).await
}

/// As [`post_with_key`], through `http` (e.g. a client that trusts a layout's API CA).
///
/// # Errors
/// Transport errors.
pub async fn post_with_key_by(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Submits `listing` through the node at `submit_to` with the zone's provider token and
/// approves it through the node at `approve_at` with its operator token (base URLs); its id.
/// A zone slow to commit answers `504 outcome_unknown`; as its message says, the submit is then
/// sent again with the same `Idempotency-Key`, and the approval again after the listing's state
/// is read back (a 409 after an unknown outcome may be the first approval having landed).
///
/// # Errors
/// If either write does not succeed.
pub async fn submit_and_approve(
    submit_to: &str,
    approve_at: &str,
    tokens: &ZoneTokens,
    listing: &Value,
) -> anyhow::Result<String> {
    submit_and_approve_by(
        &reqwest::Client::new(),
        submit_to,
        approve_at,
        tokens,
        listing,
    )
    .await
}

/// As [`submit_and_approve`], through `http` (e.g. a client that trusts a layout's API CA).
///
/// # Errors
/// If either write does not succeed.
pub async fn submit_and_approve_by(
    http: &reqwest::Client,
    submit_to: &str,
    approve_at: &str,
    tokens: &ZoneTokens,
    listing: &Value,
) -> anyhow::Result<String> {
    let key = fresh_idempotency_key();
    let url = format!("{submit_to}/v1/listings");
    let (s, v) =
        while_outcome_unknown(|| post_with_key_by(http, &url, &tokens.provider, &key, listing))
            .await?;
    if s != 201 {
        bail!("submit answered {s}: {v}");
    }
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let approve = format!("{approve_at}/v1/listings/{id}/approve");
    let read_back = format!("{approve_at}/v1/listings/{id}");
    let unknown = std::cell::Cell::new(false);
    let (s, v) = while_outcome_unknown(|| async {
        let answer = http
            .post(&approve)
            .bearer_auth(&tokens.operator)
            .json(&serde_json::json!({}))
            .send()
            .await?;
        let s = answer.status().as_u16();
        let v: Value = answer.json().await.unwrap_or(Value::Null);
        if is_outcome_unknown(s, &v) || (unknown.get() && s == 409) {
            unknown.set(true);
            let state = http
                .get(&read_back)
                .bearer_auth(&tokens.regulator)
                .send()
                .await?;
            if state.status().is_success()
                && state.json::<Value>().await.unwrap_or(Value::Null)["state"] == "listed"
            {
                return Ok((200, v));
            }
        }
        Ok((s, v))
    })
    .await?;
    if s != 200 {
        bail!("approve answered {s}: {v}");
    }
    Ok(id)
}

fn with_provider(mut listing: Value, id: &str, name: &str) -> Value {
    listing["provider"]["id"] = id.into();
    listing["provider"]["name"] = name.into();
    listing
}

/// Starts, inside this process, the node whose config is `config` (a path from `layout.json`,
/// relative to the layout directory `out`): [`xchg_node::node::start_in_process`].
///
/// # Errors
/// If the config or key cannot be read, or the node cannot start.
pub async fn start_in_process(
    out: &Path,
    config: &Path,
    router: &std::sync::Arc<xchg_node::raft::router::Router>,
    gossip: &std::sync::Arc<xchg_node::gossip::memory::Network>,
    options: xchg_node::node::StartOptions,
    tweak: impl FnOnce(&mut xchg_federation_config::NodeConfig),
) -> anyhow::Result<xchg_node::node::NodeHandle> {
    Ok(xchg_node::node::start_in_process(out, config, router, gossip, options, tweak).await?)
}
