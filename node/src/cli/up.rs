//! `xchg up`: the whole federation of a layout on this machine, in this process, until
//! SIGINT or SIGTERM. The library starts and stops it ([`xchg_node::up`]); this command prints
//! the progress, the table of zones and the dashboard's URL, seeds the demo catalog when asked
//! and turns the first signal into a clean stop.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use reqwest::Method;
use tokio::sync::watch;
use xchg_federation_config::layout::{Layout, LayoutZone};
use xchg_node::up::{self, Running, UpEvent, UpOptions};

use super::args::{UpArgs, parse_layout};
use super::client::Target;
use super::demo;
use super::run::shutdown_signal;

/// The file in the data directory holding the dashboard's token (the hub's regulator token),
/// mode 0600: printed on stdout only when asked, since terminals, logs and CI output are read
/// by others.
pub const DASHBOARD_TOKEN_FILE: &str = "dashboard.token";

/// Marker written once the demo catalog has been seeded into a data directory.
const DEMO_MARKER: &str = "demo-seeded";

impl UpArgs {
    /// What the library is asked to start.
    ///
    /// # Errors
    /// If `--layout` names no layout.
    fn options(&self) -> anyhow::Result<UpOptions> {
        Ok(UpOptions {
            dir: self.dir.clone(),
            layout: self.layout.as_deref().map(parse_layout).transpose()?,
            nodes_per_zone: self.nodes_per_zone,
            base_port: self.base_port,
            host: self.host,
        })
    }
}

/// Whether stdout has a line in progress (an updating count, or "generating … " awaiting its
/// "done"), to be ended before anything else is said.
static LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// Ends a line in progress, if any.
fn end_line() {
    if LINE_OPEN.swap(false, Ordering::Relaxed) {
        outln!();
    }
}

/// Shows `done`/`total` on one updating line on a terminal; elsewhere (logs, pipes) only the
/// final count.
fn progress(label: &str, done: usize, total: usize) {
    if std::io::stdout().is_terminal() {
        out!("\r{label} {done}/{total}");
        let _ = std::io::stdout().flush();
        LINE_OPEN.store(done != total, Ordering::Relaxed);
        if done == total {
            outln!();
        }
    } else if done == total {
        outln!("{label} {done}/{total}");
    }
}

/// Prints the library's progress as `xchg up` has always shown it.
fn show(event: UpEvent, dir: &Path) {
    match event {
        UpEvent::Reusing { kind } => outln!("reusing the {kind} layout in {}", dir.display()),
        UpEvent::Generating {
            kind,
            nodes_per_zone,
        } => {
            out!(
                "first run: generating the {kind} layout ({nodes_per_zone} node(s) per zone) in \
                 {}: keys, delegations, tokens, configs … ",
                dir.display()
            );
            let _ = std::io::stdout().flush();
            LINE_OPEN.store(true, Ordering::Relaxed);
        }
        UpEvent::Generated { took } => {
            LINE_OPEN.store(false, Ordering::Relaxed);
            outln!("done in {:.1} s", took.as_secs_f64());
        }
        UpEvent::NodeStarted { started, total } => progress("starting nodes:", started, total),
        UpEvent::Leaders { led, zones } => {
            progress("zones with an elected leader:", led, zones);
        }
    }
}

/// The demo products this layout gets, each with the zone it is submitted in (its own, or its
/// exchange's hub when the layout lacks it).
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
    /// run). Every node of the zone takes the new token at once: one that has not applied it
    /// yet catches up before answering (see [`xchg_node::api::auth`]).
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
            ca: None,
        };
        let body = serde_json::json!({
            "role": "provider",
            "party": party,
            "label": format!("xchg up --demo: {}", listing.provider.1),
        });
        let created = again(|| {
            let (admin, body) = (admin.clone(), body.clone());
            async move { admin.call(Method::POST, "/v1/tokens", Some(body)).await }
        })
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
/// Runs `step` until it succeeds, or fails with an error that is not a moment's unavailability
/// (a 503, a 504, no connection), for at most [`SEEDING_PATIENCE`], waiting 1, 2, 4, 8 and then
/// 10 s between tries (a loaded machine's zones can take that long to settle).
pub(super) async fn again<F, Fut>(step: F) -> anyhow::Result<serde_json::Value>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    let deadline = std::time::Instant::now() + SEEDING_PATIENCE;
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match step().await {
            Err(e) if transient(&e) && std::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %e, "demo seeding: trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// How long one seeding step is tried again while its zone is unavailable.
const SEEDING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

/// Whether `e` (from [`Target::call`], perhaps with context added) says the zone was
/// unavailable for a moment.
pub(super) fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let text = cause.to_string();
        text.starts_with("503 ") || text.starts_with("504 ") || text.starts_with("cannot reach")
    })
}

/// Whether `e` says the zone refused the step as already done (`409`): an earlier try was
/// applied though its answer was lost.
pub(super) fn already_done(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.to_string().starts_with("409 "))
}

async fn seed_demo(layout: &Layout, marker: &Path, done: usize) -> anyhow::Result<()> {
    let todo = demo_plan(layout);
    let mut providers = DemoProviders::default();
    for (n, (listing, zone)) in todo.iter().enumerate().skip(done) {
        let api = &zone.nodes[n % zone.nodes.len()].api_url;
        let as_role = |token: &str| Target {
            node: api.clone(),
            token: Some(token.to_owned()),
            json: false,
            ca: None,
        };
        let provider = providers.token_for(zone, api, listing).await?;
        // A busy machine may time a write out (504) or find no leader for a moment (503):
        // each step is sent again, the submission under one Idempotency-Key (created once
        // however often it is sent), the approval accepting 'already approved'.
        let key = format!("xchg-up-demo-{n}");
        let created = again(|| {
            let (target, body, key) = (as_role(&provider), listing.body(), key.clone());
            async move {
                target
                    .call_keyed(Method::POST, "/v1/listings", Some(body), Some(&key))
                    .await
            }
        })
        .await
        .with_context(|| format!("submitting {}", listing.title))?;
        let id = created["id"].as_str().unwrap_or_default();
        let review = serde_json::json!({
            "compliance_review": "合规审核通过 (demo)",
            "security_assessment": "安全评估通过 (demo)"
        });
        let approve = format!("/v1/listings/{id}/approve");
        let approved = again(|| {
            let (target, path, body) = (
                as_role(&zone.tokens.operator),
                approve.clone(),
                review.clone(),
            );
            async move { target.call(Method::POST, &path, Some(body)).await }
        })
        .await;
        match approved {
            Ok(_) => {}
            // An earlier try of this approval was applied though its answer was lost.
            Err(e) if already_done(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("approving {}", listing.title)),
        }
        std::fs::write(marker, format!("{}\n", n + 1))
            .with_context(|| format!("recording demo progress in {}", marker.display()))?;
        progress(
            "seeding demo listings (submitted and approved):",
            n + 1,
            todo.len(),
        );
    }
    Ok(())
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

fn print_table(running: &Running, print_token: bool) -> anyhow::Result<()> {
    let layout = running.layout();
    outln!();
    outln!("{:<20} {:<26} nodes (HTTP API)", "zone", "name");
    for ex in &layout.exchanges {
        outln!("{} {}", ex.id, ex.display_name);
        for z in &ex.zones {
            let apis: Vec<&str> = z.nodes.iter().map(|n| n.api_url.as_str()).collect();
            outln!(
                "  {:<18} {:<24} {}",
                z.id.as_str(),
                z.display_name,
                apis.join("  ")
            );
        }
    }
    let hub = running.hub();
    let token_file = write_dashboard_token(running.dir(), running.dashboard_token())?;
    outln!();
    if print_token {
        outln!(
            "dashboard (the hub, {}): {}#token={}",
            hub.id,
            running.dashboard_url(),
            running.dashboard_token()
        );
    } else {
        outln!(
            "dashboard (the hub, {}): {}",
            hub.id,
            running.dashboard_url()
        );
        outln!(
            "  its token (the hub's regulator token) is in {} (mode 0600): paste it into the \
             page, or run with --print-token for a URL that carries it",
            token_file.display()
        );
    }
    outln!(
        "role tokens of every zone (secret): {}; CLI commands read one from XCHG_TOKEN or \
         --token-file",
        running.dir().join("layout.json").display()
    );
    outln!("Ctrl-C stops every node cleanly; `xchg up` again resumes with the same data.");
    Ok(())
}

/// Seeds the demo catalog into `running` unless done before (resuming an interrupted seeding).
async fn demo(running: &Running) -> anyhow::Result<()> {
    let marker = running.dir().join(DEMO_MARKER);
    let done = seeded_so_far(&marker);
    if done >= demo_plan(running.layout()).len() {
        outln!(
            "demo listings already seeded in {}",
            running.dir().display()
        );
        return Ok(());
    }
    seed_demo(running.layout(), &marker, done).await.context(
        "seeding the demo catalog stopped; `xchg up --demo` again resumes it where it stopped",
    )
}

/// Runs `xchg up`.
pub async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    // The first SIGINT/SIGTERM stops everything cleanly, at any stage; a second one exits at
    // once.
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        shutdown_signal().await;
        eprintln!("second signal: exiting without waiting for the nodes");
        std::process::exit(130);
    });
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        // Also resolves if the signal task is gone, which only happens as the process ends.
        let _ = stop.wait_for(|s| *s).await;
    };
    let dir = options.dir.clone();
    let started = up::start(options, |e| show(e, &dir), stopped(stop.clone())).await;
    end_line();
    let running = started?;
    let ready = async {
        if args.demo {
            tokio::select! {
                r = demo(&running) => r?,
                () = stopped(stop.clone()) => return Err(up::UpError::Interrupted.into()),
            }
        }
        print_table(&running, args.print_token)
    }
    .await;
    end_line();
    if let Err(e) = ready {
        running.stop().await?;
        return Err(e);
    }
    outln!(
        "xchg up: ready — {} node(s) in {} zone(s)",
        running.nodes().len(),
        running.zones()
    );
    let failed = tokio::select! {
        () = stopped(stop) => None,
        failed = first_failure(&running) => Some(failed),
    };
    let n = running.nodes().len();
    if let Some((node, why)) = &failed {
        tracing::error!(%node, error = %why, "a node cannot go on; stopping every node");
        outln!("{node} cannot go on: {why}");
    }
    outln!("stopping {n} node(s) …");
    running.stop().await?;
    outln!("stopped {n} node(s); data kept in {}", dir.display());
    match failed {
        None => Ok(ExitCode::SUCCESS),
        Some((node, why)) => anyhow::bail!("{node} cannot go on: {why}"),
    }
}

/// The first node of `running` that cannot go on, and why
/// ([`xchg_node::node::NodeHandle::failed`]): the city then stops whole, as `xchg run` stops
/// a node, rather than run on with a member that answers every write `503`.
async fn first_failure(running: &up::Running) -> (String, String) {
    let watches = running.nodes().iter().map(|n| {
        Box::pin(async move {
            let why = n.handle.failed().await;
            (format!("{} ({})", n.name, n.zone), why)
        })
    });
    if running.nodes().is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(watches).await.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moments_unavailability_is_seen_under_the_context_a_step_adds() {
        // A 504 under "admitting … in …" was taken for a lasting failure, and `up --demo`
        // stopped every node on a loaded machine (found by a user trying the README).
        let e = anyhow::anyhow!("504 outcome_unknown: the zone did not commit the write within 5s")
            .context("admitting xuchang-transit in xuchang/municipal");
        assert!(transient(&e));
        assert!(!already_done(&e));
        let e = anyhow::anyhow!("409 illegal_transition: already admitted").context("admitting");
        assert!(already_done(&e) && !transient(&e));
        assert!(!transient(&anyhow::anyhow!("400 invalid_field: title")));
    }
}
