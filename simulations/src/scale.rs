//! `xchg-sim scale --exchanges 10,50,100`: the `scale` scenario at each size in turn, one
//! federation after the other, and what grows with the size: recognition latency and gossip
//! deliveries per listing, in `scale.json`, `scale.md` and two charts.

use std::path::Path;

use serde::Serialize;
use xchg_federation_config::layout::LayoutKind;

use crate::run::{Latency, run};
use crate::scenario::Options;
use crate::svg;

/// Parses `10,50,200`: sizes from 2 to 999 exchanges.
///
/// # Errors
/// A message naming the size that is wrong.
pub fn parse_sizes(text: &str) -> Result<Vec<u16>, String> {
    text.split(',')
        .map(|t| match t.trim().parse::<u16>() {
            Ok(n) if (2..=999).contains(&n) => Ok(n),
            _ => Err(format!("{t:?} is not a number of exchanges from 2 to 999")),
        })
        .collect()
}

/// One size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    /// Exchanges.
    pub exchanges: u16,
    /// Whether every invariant held.
    pub held: bool,
    /// Approval acknowledged at the origin to recognised elsewhere, ms.
    pub recognition_latency_ms: Option<Latency>,
    /// Gossip deliveries per listing approved.
    pub messages_per_listing: Option<f64>,
    /// Convergence after the chaos phase, ms.
    pub convergence_ms: Option<u64>,
    /// How long the run took, start to report, ms.
    pub wall_ms: u64,
    /// The command that repeats it.
    pub reproduce: String,
}

/// Runs `options` at every size of `sizes`, each writing under `out/<size>/`, then the
/// summary into `out`.
///
/// # Errors
/// If a run cannot start or a file cannot be written.
pub async fn scale(
    options: &Options,
    sizes: &[u16],
    out: &Path,
) -> anyhow::Result<Vec<ScalePoint>> {
    let mut points = Vec::new();
    for &exchanges in sizes {
        let o = Options {
            layout: LayoutKind::Mesh { exchanges },
            ..options.clone()
        };
        let started = std::time::Instant::now();
        let report = run(&o, &out.join(exchanges.to_string())).await?;
        let point = ScalePoint {
            exchanges,
            held: report.held(),
            recognition_latency_ms: report.figures.recognition_latency_ms.clone(),
            messages_per_listing: report.figures.messages_per_listing,
            convergence_ms: report.figures.convergence_ms,
            wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            reproduce: report.reproduce.clone(),
        };
        println!(
            "{exchanges} exchanges: {}, recognition p50 {} ms p99 {} ms, {:.1} messages per listing",
            if point.held {
                "every invariant held"
            } else {
                "an invariant FAILED"
            },
            point.recognition_latency_ms.as_ref().map_or(0, |l| l.p50),
            point.recognition_latency_ms.as_ref().map_or(0, |l| l.p99),
            point.messages_per_listing.unwrap_or(0.0)
        );
        points.push(point);
        write(&points, out)?;
    }
    Ok(points)
}

fn write(points: &[ScalePoint], out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("scale.json"), serde_json::to_vec_pretty(points)?)?;
    let mut md = String::from(
        "# xchg-sim scale\n\n| exchanges | invariants | recognition p50 ms | p99 ms | max ms | messages per listing | converged ms | run s |\n|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
        let l = p.recognition_latency_ms.as_ref();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} |\n",
            p.exchanges,
            if p.held { "held" } else { "**failed**" },
            l.map_or("-".to_owned(), |l| l.p50.to_string()),
            l.map_or("-".to_owned(), |l| l.p99.to_string()),
            l.map_or("-".to_owned(), |l| l.max.to_string()),
            p.messages_per_listing.unwrap_or(0.0),
            p.convergence_ms.map_or("-".to_owned(), |c| c.to_string()),
            p.wall_ms / 1000
        ));
    }
    md.push_str("\n![messages per listing](scale-messages.svg)\n\n![p99](scale-latency.svg)\n");
    std::fs::write(out.join("scale.md"), md)?;
    let messages: Vec<(String, f64)> = points
        .iter()
        .map(|p| {
            (
                p.exchanges.to_string(),
                p.messages_per_listing.unwrap_or(0.0),
            )
        })
        .collect();
    std::fs::write(
        out.join("scale-messages.svg"),
        svg::bars(
            "Gossip deliveries per listing as the federation grows",
            "exchanges",
            "deliveries per listing",
            &messages,
        ),
    )?;
    let p99: Vec<(String, f64)> = points
        .iter()
        .map(|p| {
            let v = p.recognition_latency_ms.as_ref().map_or(0, |l| l.p99);
            (p.exchanges.to_string(), v as f64)
        })
        .collect();
    std::fs::write(
        out.join("scale-latency.svg"),
        svg::bars(
            "Recognition latency p99 as the federation grows",
            "exchanges",
            "ms",
            &p99,
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_a_comma_separated_list_from_two_to_999() {
        assert_eq!(parse_sizes("10,50, 200"), Ok(vec![10, 50, 200]));
        assert!(parse_sizes("1").is_err());
        assert!(parse_sizes("1000").is_err());
        assert!(parse_sizes("10,,20").is_err());
    }
}
