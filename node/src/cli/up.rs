//! `xchg up`: the whole federation of a layout on this machine, in this process — every node
//! with its real parts (Raft over mutual TLS, libp2p gossip on TCP, SQLite files) — until
//! SIGINT or SIGTERM.
//!
//! The layout is generated into the data directory on first run (exactly as `xchg config
//! generate` writes it) and reused afterwards, so a restart keeps every node's data.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xchg_federation_config::layout::{self, Layout, LayoutKind, LayoutOptions, LayoutZone};
use xchg_node::node::{self, GossipLink, NodeHandle, StartOptions, ZoneLink};
use xchg_protocol::Timestamp;

use super::client::Target;
use super::demo;
use super::run::shutdown_signal;
use reqwest::Method;
use tokio::sync::watch;

/// What `xchg up` was asked for.
pub struct UpOptions {
    /// The data directory.
    pub dir: PathBuf,
    /// Layout for a first run; on later runs it must match the one in `dir`, if given.
    pub layout: Option<LayoutKind>,
    /// Nodes per zone for a first run (default 3); on later runs it must match, if given.
    pub nodes_per_zone: Option<usize>,
    /// Seed the demo catalog (once per data directory).
    pub demo: bool,
    /// First port of a first run (default 7100); refused when reusing a directory.
    pub base_port: Option<u16>,
    /// Address every node listens on, for a first run (default 127.0.0.1); refused when reusing.
    pub host: Option<IpAddr>,
    /// Print the dashboard URL with its token (`#token=…`) instead of the bare URL.
    pub print_token: bool,
}

/// The file in the data directory holding the dashboard's token (the hub's regulator token),
/// mode 0600: printed on stdout only when asked, since terminals, logs and CI output are read
/// by others.
pub const DASHBOARD_TOKEN_FILE: &str = "dashboard.token";

/// Marker written once the demo catalog has been seeded into a data directory.
const DEMO_MARKER: &str = "demo-seeded";

fn kind_of(layout: &Layout) -> LayoutKind {
    let zones: usize = layout.exchanges.iter().map(|e| e.zones.len()).sum();
    match (layout.exchanges.len(), zones) {
        (1, 1) => LayoutKind::SingleZone,
        (2, 2) => LayoutKind::TwoExchanges,
        _ => LayoutKind::Xuchang,
    }
}

fn kind_name(kind: LayoutKind) -> &'static str {
    match kind {
        LayoutKind::SingleZone => "single-zone",
        LayoutKind::TwoExchanges => "two-exchanges",
        LayoutKind::Xuchang => "xuchang",
    }
}

/// Loads the layout in `dir`, or generates it there.
fn layout_in(opts: &UpOptions) -> anyhow::Result<Layout> {
    let path = opts.dir.join("layout.json");
    if path.exists() {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let layout: Layout = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a layout written by xchg", path.display()))?;
        let kind = kind_of(&layout);
        let per_zone = layout.exchanges[0].zones[0].nodes.len();
        if let Some(asked) = opts.layout
            && asked != kind
        {
            bail!(
                "{} holds a {} layout, not {}; pass another --dir, or remove it to start afresh",
                opts.dir.display(),
                kind_name(kind),
                kind_name(asked)
            );
        }
        if let Some(asked) = opts.nodes_per_zone
            && asked != per_zone
        {
            bail!(
                "{} has {per_zone} node(s) per zone, not {asked}; pass another --dir, or remove it",
                opts.dir.display()
            );
        }
        if opts.base_port.is_some() || opts.host.is_some() {
            bail!(
                "--base-port and --host apply to a first run only; {} keeps the addresses in its \
                 layout.json (pass another --dir to start a new federation)",
                opts.dir.display()
            );
        }
        println!(
            "reusing the {} layout in {}",
            kind_name(kind),
            opts.dir.display()
        );
        return Ok(layout);
    }
    if std::fs::read_dir(&opts.dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} exists but holds no layout.json (an interrupted first run, or another \
             directory): remove it, or pass another --dir",
            opts.dir.display()
        );
    }
    let kind = opts.layout.unwrap_or(LayoutKind::Xuchang);
    // Generated beside the directory and moved into place when complete, so an interrupted
    // first run leaves nothing half-written under the data directory's name.
    let partial = PathBuf::from(format!("{}.partial", opts.dir.display()));
    let _ = std::fs::remove_dir_all(&partial);
    let mut lo = LayoutOptions::new(partial.clone(), kind);
    lo.nodes_per_zone = opts
        .nodes_per_zone
        .unwrap_or(LayoutOptions::DEFAULT_NODES_PER_ZONE);
    lo.base_port = opts.base_port.unwrap_or(LayoutOptions::DEFAULT_BASE_PORT);
    lo.host = opts.host.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    print!(
        "first run: generating the {} layout ({} node(s) per zone) in {}: keys, delegations, tokens, configs … ",
        kind_name(kind),
        lo.nodes_per_zone,
        opts.dir.display()
    );
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let layout = layout::generate(&lo, Timestamp::now()).context("generating the layout")?;
    let _ = std::fs::remove_dir(&opts.dir);
    std::fs::rename(&partial, &opts.dir)
        .with_context(|| format!("moving {} to {}", partial.display(), opts.dir.display()))?;
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(layout)
}

/// Said when a node's address is taken.
const BIND_HINT: &str =
    "(is another xchg using it? a new --dir with another --base-port starts elsewhere)";

/// One running node and where it belongs.
struct Running {
    zone: String,
    handle: NodeHandle,
}

async fn start_node(dir: &Path, config: &Path) -> anyhow::Result<NodeHandle> {
    let path = dir.join(config);
    let loaded = xchg_federation_config::load(&path, Timestamp::now())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let config = loaded.config;
    let key = xchg_federation_config::read_key_file(&config.node.key_file)
        .with_context(|| format!("reading {}", config.node.key_file.display()))?;
    let api = tokio::net::TcpListener::bind(config.listen.api)
        .await
        .with_context(|| {
            format!(
                "{}: binding the API address {} {BIND_HINT}",
                config.node.name, config.listen.api
            )
        })?;
    let raft = tokio::net::TcpListener::bind(config.listen.raft)
        .await
        .with_context(|| {
            format!(
                "{}: binding the Raft address {} {BIND_HINT}",
                config.node.name, config.listen.raft
            )
        })?;
    let name = config.node.name.to_string();
    node::start(
        config,
        key,
        api,
        ZoneLink::Tls(raft),
        GossipLink::Libp2p { capture: None },
        StartOptions::default(),
    )
    .await
    .with_context(|| format!("starting {name}"))
}

/// Longest a clean stop of every node may take.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// Stops every node cleanly, within [`STOP_WITHIN`].
async fn stop_all(nodes: Vec<Running>) -> anyhow::Result<()> {
    let stops = nodes.into_iter().map(|r| r.handle.shutdown());
    tokio::time::timeout(STOP_WITHIN, futures::future::join_all(stops))
        .await
        .map(|_| ())
        .map_err(|_| anyhow::anyhow!("the nodes did not stop within {STOP_WITHIN:?}"))
}

/// Shows `done`/`total` on one updating line on a terminal; elsewhere (logs, pipes) only the
/// final count.
fn progress(label: &str, done: usize, total: usize) {
    if std::io::stdout().is_terminal() {
        print!("\r{label} {done}/{total}");
        let _ = std::io::stdout().flush();
        if done == total {
            println!();
        }
    } else if done == total {
        println!("{label} {done}/{total}");
    }
}

/// Waits until every zone has a leader.
async fn wait_for_leaders(nodes: &[Running], zones: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let led: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter(|r| r.handle.federation.is_leader())
            .map(|r| r.zone.as_str())
            .collect();
        progress("zones with an elected leader:", led.len(), zones);
        if led.len() == zones {
            return Ok(());
        }
        if Instant::now() > deadline {
            println!();
            bail!("not every zone elected a leader within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits and approves the demo catalog, each product in its zone (or its exchange's hub).
/// The demo products this layout gets, each with the zone it is submitted in.
fn demo_plan(layout: &Layout) -> Vec<(&'static demo::DemoListing, &LayoutZone)> {
    let zone_for = |l: &demo::DemoListing| -> Option<&LayoutZone> {
        let ex = layout
            .exchanges
            .iter()
            .find(|e| e.id.as_str() == l.exchange)?;
        let wanted = format!("{}/{}", l.exchange, l.zone);
        ex.zones
            .iter()
            .find(|z| z.id.as_str() == wanted)
            .or_else(|| ex.zones.first())
    };
    demo::CATALOG
        .iter()
        .filter_map(|l| zone_for(l).map(|z| (l, z)))
        .collect()
}

/// How many demo products were seeded into `marker`'s directory so far.
fn seeded_so_far(marker: &Path) -> usize {
    std::fs::read_to_string(marker)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Provider tokens of the demo parties, per zone: a provider token lists only for the party it
/// is bound to, and a zone's demo products come from several parties.
#[derive(Default)]
struct DemoProviders {
    /// `(zone id, party id)` → token.
    tokens: BTreeMap<(String, String), String>,
}

impl DemoProviders {
    /// The token that submits `listing` in `zone`: the zone's own provider token when the
    /// listing is its party's, otherwise one the zone's admin creates for the party (once per
    /// run).
    async fn token_for(
        &mut self,
        zone: &LayoutZone,
        api: &str,
        listing: &demo::DemoListing,
    ) -> anyhow::Result<String> {
        let party = listing.provider.0;
        if zone.provider_party.id.as_str() == party {
            return Ok(zone.tokens.provider.clone());
        }
        let key = (zone.id.to_string(), party.to_owned());
        if let Some(token) = self.tokens.get(&key) {
            return Ok(token.clone());
        }
        // A token is only for an admitted party.
        super::demo_parties::admit(zone, api, party, listing.provider.1).await?;
        let admin = Target {
            node: api.to_owned(),
            token: Some(zone.tokens.admin.clone()),
            json: false,
        };
        let body = serde_json::json!({
            "role": "provider",
            "party": party,
            "label": format!("xchg up --demo: {}", listing.provider.1),
        });
        let created = admin
            .call(Method::POST, "/v1/tokens", Some(body))
            .await
            .with_context(|| format!("creating a provider token for {party} in {}", zone.id))?;
        let token = created["token"]
            .as_str()
            .with_context(|| format!("no token in the answer: {created}"))?
            .to_owned();
        self.tokens.insert(key, token.clone());
        Ok(token)
    }
}

/// Submits and approves the demo products after the first `done`, recording progress in
/// `marker` after each, so an interrupted seeding resumes without duplicates.
async fn seed_demo(layout: &Layout, marker: &Path, done: usize) -> anyhow::Result<usize> {
    let todo = demo_plan(layout);
    let mut providers = DemoProviders::default();
    for (n, (listing, zone)) in todo.iter().enumerate().skip(done) {
        let api = &zone.nodes[n % zone.nodes.len()].api_url;
        let as_role = |token: &str| Target {
            node: api.clone(),
            token: Some(token.to_owned()),
            json: false,
        };
        let provider = providers.token_for(zone, api, listing).await?;
        let created = as_role(&provider)
            .call(Method::POST, "/v1/listings", Some(listing.body()))
            .await
            .with_context(|| format!("submitting {}", listing.title))?;
        let id = created["id"].as_str().unwrap_or_default();
        let review = serde_json::json!({
            "compliance_review": "合规审核通过 (demo)",
            "security_assessment": "安全评估通过 (demo)"
        });
        as_role(&zone.tokens.operator)
            .call(
                Method::POST,
                &format!("/v1/listings/{id}/approve"),
                Some(review),
            )
            .await
            .with_context(|| format!("approving {}", listing.title))?;
        std::fs::write(marker, format!("{}\n", n + 1))
            .with_context(|| format!("recording demo progress in {}", marker.display()))?;
        progress(
            "seeding demo listings (submitted and approved):",
            n + 1,
            todo.len(),
        );
    }
    Ok(todo.len())
}

/// Writes the dashboard's token to [`DASHBOARD_TOKEN_FILE`] in `dir` (mode 0600 from its
/// creation), unless it holds it already; returns the file.
fn write_dashboard_token(dir: &Path, token: &str) -> anyhow::Result<PathBuf> {
    let file = dir.join(DASHBOARD_TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) if text.trim() == token => return Ok(file),
        // A file from another layout (the directory was regenerated): replace it.
        Ok(_) => std::fs::remove_file(&file)
            .with_context(|| format!("replacing the stale {}", file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    xchg_federation_config::write_secret(&file, format!("{token}\n").as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

fn print_table(layout: &Layout, dir: &Path, print_token: bool) -> anyhow::Result<()> {
    println!();
    println!("{:<20} {:<26} nodes (HTTP API)", "zone", "name");
    for ex in &layout.exchanges {
        println!("{} {}", ex.id, ex.display_name);
        for z in &ex.zones {
            let apis: Vec<&str> = z.nodes.iter().map(|n| n.api_url.as_str()).collect();
            println!(
                "  {:<18} {:<24} {}",
                z.id.as_str(),
                z.display_name,
                apis.join("  ")
            );
        }
    }
    let hub = &layout.exchanges[0].zones[0];
    let token_file = write_dashboard_token(dir, &hub.tokens.regulator)?;
    println!();
    if print_token {
        println!(
            "dashboard (the hub, {}): {}/#token={}",
            hub.id, hub.nodes[0].api_url, hub.tokens.regulator
        );
    } else {
        println!("dashboard (the hub, {}): {}/", hub.id, hub.nodes[0].api_url);
        println!(
            "  its token (the hub's regulator token) is in {} (mode 0600): paste it into the \
             page, or run with --print-token for a URL that carries it",
            token_file.display()
        );
    }
    println!(
        "role tokens of every zone (secret): {}; CLI commands read one from XCHG_TOKEN or \
         --token-file",
        dir.join("layout.json").display()
    );
    println!("Ctrl-C stops every node cleanly; `xchg up` again resumes with the same data.");
    Ok(())
}

/// Runs `xchg up`.
pub async fn up(opts: UpOptions) -> anyhow::Result<ExitCode> {
    // The first SIGINT/SIGTERM stops everything cleanly, at any stage; a second one exits at
    // once.
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        shutdown_signal().await;
        eprintln!("second signal: exiting without waiting for the nodes");
        std::process::exit(130);
    });
    // It will hold every key, token and database of the federation: private from the start.
    xchg_federation_config::create_private_dir(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let layout = layout_in(&opts)?;
    let plan: Vec<(String, PathBuf)> = layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .flat_map(|z| {
            z.nodes
                .iter()
                .map(move |n| (z.id.to_string(), n.config.clone()))
        })
        .collect();
    let zones = layout.exchanges.iter().map(|e| e.zones.len()).sum();
    let mut nodes: Vec<Running> = Vec::with_capacity(plan.len());
    let interrupted = || anyhow::anyhow!("interrupted; every node started so far was stopped");
    for (i, (zone, config)) in plan.iter().enumerate() {
        if *stop.borrow() {
            println!();
            stop_all(nodes).await?;
            return Err(interrupted());
        }
        match start_node(&opts.dir, config).await {
            Ok(handle) => nodes.push(Running {
                zone: zone.clone(),
                handle,
            }),
            Err(e) => {
                println!();
                stop_all(nodes).await?;
                return Err(e);
            }
        }
        progress("starting nodes:", i + 1, plan.len());
    }
    let ready = tokio::select! {
        r = wait_for_leaders(&nodes, zones) => r,
        _ = stop.wait_for(|s| *s) => Err(interrupted()),
    };
    if let Err(e) = ready {
        stop_all(nodes).await?;
        return Err(e);
    }
    if opts.demo {
        let marker = opts.dir.join(DEMO_MARKER);
        let done = seeded_so_far(&marker);
        if done >= demo_plan(&layout).len() {
            println!("demo listings already seeded in {}", opts.dir.display());
        } else {
            let seeded = tokio::select! {
                r = seed_demo(&layout, &marker, done) => r,
                _ = stop.wait_for(|s| *s) => Err(interrupted()),
            };
            if let Err(e) = seeded {
                stop_all(nodes).await?;
                return Err(e);
            }
        }
    }
    if let Err(e) = print_table(&layout, &opts.dir, opts.print_token) {
        stop_all(nodes).await?;
        return Err(e);
    }
    let per_zone: BTreeMap<&str, usize> = nodes.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.zone.as_str()).or_default() += 1;
        m
    });
    println!(
        "xchg up: ready — {} node(s) in {} zone(s)",
        nodes.len(),
        per_zone.len()
    );
    let _ = stop.wait_for(|s| *s).await;
    println!("stopping {} node(s) …", nodes.len());
    let n = nodes.len();
    stop_all(nodes).await?;
    println!("stopped {n} node(s); data kept in {}", opts.dir.display());
    Ok(ExitCode::SUCCESS)
}
