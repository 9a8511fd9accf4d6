//! The data directory of [`super::start`]: the layout it holds, checked against what was asked
//! for, or a layout generated into it on a first run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use xchg_federation_config::layout::{self, Layout, LayoutKind, LayoutOptions};
use xchg_protocol::Timestamp;

use super::{UpError, UpEvent, UpOptions, zone_count};

/// The layout in `options.dir`, or one generated there; the directory is created private.
///
/// # Errors
/// See [`UpError`]: the directory holds something else, another layout than asked for, or
/// addresses were asked for on a directory that fixed them; or generating failed.
pub(super) fn load_or_generate(
    options: &UpOptions,
    events: &mut impl FnMut(UpEvent),
) -> Result<Layout, UpError> {
    let dir = &options.dir;
    // It will hold every key, token and database of the federation: private from the start.
    xchg_federation_config::create_private_dir(dir).map_err(|source| UpError::CreateDir {
        dir: dir.clone(),
        source,
    })?;
    let path = dir.join("layout.json");
    if path.exists() {
        let layout = read(&path)?;
        check_reuse(options, &layout)?;
        events(UpEvent::Reusing {
            kind: kind_of(&layout),
        });
        return Ok(layout);
    }
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(UpError::NoLayout { dir: dir.clone() });
    }
    generate(options, events)
}

/// Reads `layout.json`, refusing one without the exchange, zone and nodes a federation needs.
fn read(path: &Path) -> Result<Layout, UpError> {
    let text = std::fs::read(path).map_err(|source| UpError::ReadLayout {
        path: path.to_owned(),
        source,
    })?;
    let layout: Layout = serde_json::from_slice(&text).map_err(|source| UpError::NotALayout {
        path: path.to_owned(),
        source,
    })?;
    let incomplete = |what: String| UpError::IncompleteLayout {
        path: path.to_owned(),
        what,
    };
    if layout.exchanges.first().is_none_or(|e| e.zones.is_empty()) {
        return Err(incomplete("no exchange with a zone".to_owned()));
    }
    let zones = layout.exchanges.iter().flat_map(|e| &e.zones);
    if let Some(empty) = zones.clone().find(|z| z.nodes.is_empty()) {
        return Err(incomplete(format!("zone {} has no nodes", empty.id)));
    }
    Ok(layout)
}

/// Refuses a reuse that asks for another layout than the directory holds.
fn check_reuse(options: &UpOptions, layout: &Layout) -> Result<(), UpError> {
    let dir = &options.dir;
    let held = kind_of(layout);
    if let Some(asked) = options.layout
        && asked != held
    {
        return Err(UpError::OtherLayout {
            dir: dir.clone(),
            held,
            asked,
        });
    }
    let per_zone = nodes_per_zone(layout);
    if let Some(asked) = options.nodes_per_zone
        && asked != per_zone
    {
        return Err(UpError::OtherNodesPerZone {
            dir: dir.clone(),
            held: per_zone,
            asked,
        });
    }
    if options.base_port.is_some() || options.host.is_some() {
        return Err(UpError::AddressesFixed { dir: dir.clone() });
    }
    Ok(())
}

/// Generates the layout beside the directory and moves it into place when complete, so an
/// interrupted first run leaves nothing half-written under the data directory's name.
fn generate(options: &UpOptions, events: &mut impl FnMut(UpEvent)) -> Result<Layout, UpError> {
    let dir = &options.dir;
    let kind = options.layout.unwrap_or(LayoutKind::Xuchang);
    let partial = PathBuf::from(format!("{}.partial", dir.display()));
    let _ = std::fs::remove_dir_all(&partial);
    let mut lo = LayoutOptions::new(partial.clone(), kind);
    if let Some(n) = options.nodes_per_zone {
        lo.nodes_per_zone = n;
    }
    if let Some(port) = options.base_port {
        lo.base_port = port;
    }
    if let Some(host) = options.host {
        lo.host = host.into();
    }
    events(UpEvent::Generating {
        kind,
        nodes_per_zone: lo.nodes_per_zone,
    });
    let started = Instant::now();
    let layout = layout::generate(&lo, Timestamp::now()).map_err(UpError::Generate)?;
    // The directory was created empty above (a non-empty one without a layout is refused).
    let _ = std::fs::remove_dir(dir);
    std::fs::rename(&partial, dir).map_err(|source| UpError::MoveIntoPlace {
        from: partial.clone(),
        to: dir.clone(),
        source,
    })?;
    events(UpEvent::Generated {
        took: started.elapsed(),
    });
    Ok(layout)
}

/// Which built-in layout `layout` is, by its shape (`layout.json` does not name it).
pub(super) fn kind_of(layout: &Layout) -> LayoutKind {
    match (layout.exchanges.len(), zone_count(layout)) {
        (1, 1) => LayoutKind::SingleZone,
        (2, 2) => LayoutKind::TwoExchanges,
        _ => LayoutKind::Xuchang,
    }
}

/// Nodes per zone, as the first zone has them (a generated layout gives every zone as many).
fn nodes_per_zone(layout: &Layout) -> usize {
    layout
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .next()
        .map_or(0, |z| z.nodes.len())
}
