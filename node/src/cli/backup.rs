//! `xchg backup` (online through a node's API, or offline from a stopped node's data directory)
//! and `xchg restore`.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xchg_node::store::backup;

use super::args::{BackupArgs, RestoreArgs};

/// How often a progress line is rewritten on a terminal.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Megabytes, for people.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A progress line on standard error, rewritten in place at most every [`PROGRESS_EVERY`] and
/// once more at the end with the final figures; nothing when standard error is not a terminal
/// (a log or a pipe gets the summary lines only).
struct ProgressLine {
    terminal: bool,
    started: Instant,
    shown: Option<Instant>,
    /// The latest figures, shown or not: what, done, total.
    latest: Option<(&'static str, u64, Option<u64>)>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        ProgressLine {
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            shown: None,
            latest: None,
        }
    }

    /// `what`, `done` bytes of `total` (unknown when `None` or 0), and the rate so far.
    fn show(&mut self, what: &'static str, done: u64, total: Option<u64>) {
        self.latest = Some((what, done, total));
        if self.terminal && self.shown.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            self.shown = Some(Instant::now());
            self.print();
        }
    }

    fn print(&self) {
        let Some((what, done, total)) = self.latest else {
            return;
        };
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001) / 1e6;
        match total {
            Some(t) if t > 0 => eprint!(
                "\r{what} {} of {} ({:.0} %, {rate:.1} MB/s)   ",
                mb(done),
                mb(t),
                done as f64 * 100.0 / t as f64
            ),
            _ => eprint!("\r{what} {} ({rate:.1} MB/s)   ", mb(done)),
        }
    }

    /// Ends the line with the final figures, if one was shown.
    fn finish(&mut self) {
        if self.shown.take().is_some() {
            self.print();
            eprintln!();
        }
        self.latest = None;
    }
}

/// Takes a backup and writes it to `--out`.
///
/// # Errors
/// The node or data directory cannot be backed up, or the file cannot be written.
pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let out = args.out.clone();
    if out.exists() {
        bail!("{} exists already; choose another name", out.display());
    }
    let (position, rows, bytes) = match &args.data_dir {
        // A token (from the environment, most likely) is of no use offline: ignored.
        Some(dir) => offline(dir, &out).await?,
        None => online(args).await?,
    };
    let (term, index) = position.unwrap_or((0, 0));
    outln!(
        "backed up {rows} rows at log index {index} (term {term}), {}, to {}",
        mb(bytes),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

type Summary = (Option<(u64, u64)>, u64, u64);

fn position(at: Option<xchg_node::store::raft_types::LogId>) -> Option<(u64, u64)> {
    at.map(|id| (id.leader_id.term, id.index))
}

/// A stopped node's data directory.
async fn offline(dir: &Path, out: &Path) -> anyhow::Result<Summary> {
    eprintln!("reading the catalog of {}", dir.display());
    let started = Instant::now();
    let (dir, out_path) = (dir.to_owned(), out.to_owned());
    tokio::task::spawn_blocking(move || {
        // Spooled beside the backup file: the catalog's copy is never in memory, and the
        // spool is on the disk the operator chose for the backup.
        let parent = out_path.parent().filter(|p| !p.as_os_str().is_empty());
        let mut b = backup::offline(&dir, parent.unwrap_or(Path::new(".")))?;
        let bytes = b.head.len() as u64 + b.data_len;
        eprintln!(
            "read {} rows in {:.1} s; writing {}",
            b.rows,
            started.elapsed().as_secs_f64(),
            mb(bytes)
        );
        let mut line = ProgressLine::new();
        backup::write_spooled(&out_path, &mut b, &mut |done, total| {
            line.show("written", done, Some(total));
        })?;
        line.finish();
        Ok::<_, anyhow::Error>((position(b.meta.last_log_id), b.rows, bytes))
    })
    .await
    .context("the backup task failed")?
}

/// A running node, through `GET /v1/zone/backup`: streamed into `<out>.partial` with progress on
/// a terminal, checked whole, then renamed to `out`.
async fn online(args: BackupArgs) -> anyhow::Result<Summary> {
    let out = args.out;
    let local = args.local;
    let target = args.target.into_target()?;
    let Some(token) = target.token.clone() else {
        bail!("an online backup needs the zone's admin token: XCHG_TOKEN, --token-file or --token");
    };
    let http = xchg_node::api::tls::client_builder(target.ca.as_deref())?
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build()?;
    let consistency = if local { "local" } else { "linearizable" };
    let url = format!(
        "{}/v1/zone/backup?consistency={consistency}",
        target.node.trim_end_matches('/')
    );
    super::client::warn_plain_http(&url);
    let mut resp = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let value: serde_json::Value = resp.json().await.unwrap_or_default();
        let e = &value["error"];
        bail!(
            "{} {}: {}",
            status.as_u16(),
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("no message")
        );
    }
    let total = resp.content_length();
    let partial = backup::partial_path(&out);
    let mut file = backup::create_partial(&partial)?;
    let mut line = ProgressLine::new();
    let mut received = 0u64;
    let downloaded: anyhow::Result<()> = async {
        while let Some(chunk) = resp.chunk().await.context("receiving the backup")? {
            file.write_all(&chunk)
                .with_context(|| format!("writing {}", partial.display()))?;
            received += chunk.len() as u64;
            line.show("received", received, total);
        }
        line.finish();
        if let Some(t) = total
            && t != received
        {
            bail!("the node sent {received} of {t} bytes: the backup is incomplete");
        }
        file.sync_all()
            .with_context(|| format!("syncing {}", partial.display()))?;
        Ok(())
    }
    .await;
    drop(file);
    let checked = async {
        downloaded?;
        let (partial, out) = (partial.clone(), out.clone());
        tokio::task::spawn_blocking(move || {
            let mut line = ProgressLine::new();
            let b = backup::check(&partial, &mut |done, total| {
                line.show("checked", done, Some(total));
            });
            line.finish();
            let b = b?;
            backup::publish(&partial, &out)?;
            Ok((position(b.position()), b.rows, received))
        })
        .await
        .context("the check of the backup failed")?
    }
    .await;
    if checked.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    checked
}

/// Restores `--from` into `--data-dir`.
///
/// # Errors
/// The backup is unusable or the directory is not an empty, unlocked one.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(&args.from)
        .with_context(|| format!("reading {}", args.from.display()))?
        .len();
    eprintln!("checking {} ({})", args.from.display(), mb(size));
    let zone = match &args.config {
        Some(config) => {
            let loaded = xchg_federation_config::load(config, xchg_protocol::Timestamp::now())
                .with_context(|| format!("loading {}", config.display()))?;
            Some(xchg_node::node::config_members(&loaded.config))
        }
        None => None,
    };
    let mut line = ProgressLine::new();
    let mut step = backup::RestoreStep::Checking;
    let restored = backup::restore(
        &args.from,
        &args.data_dir,
        zone.as_ref(),
        &mut |now, done, total| {
            if now != step {
                line.finish();
                line = ProgressLine::new();
                step = now;
            }
            let what = match now {
                backup::RestoreStep::Checking => "checked",
                backup::RestoreStep::Loading => "loaded into a scratch catalog",
                backup::RestoreStep::Writing => "written",
            };
            line.show(what, done, Some(total));
        },
    );
    line.finish();
    let restored = restored?;
    let (term, index) = restored
        .position
        .map_or((0, 0), |id| (id.leader_id.term, id.index));
    outln!(
        "restored {} rows at log index {index} (term {term}) into {}; the zone's voters in the \
         backup: {}",
        restored.rows,
        args.data_dir.display(),
        restored.voters.len()
    );
    if restored.voters.is_empty() {
        // Restored only because no zone was given to check it against (`--config`).
        outln!(
            "the backup holds no zone membership: it is of no zone, and a node of a zone \
             refuses to start on it; restore a backup of that node's zone instead"
        );
    } else {
        outln!(
            "start the node on it (xchg run --config …): it loads the catalog, rejoins its zone \
             and catches up with what came after"
        );
    }
    Ok(ExitCode::SUCCESS)
}
