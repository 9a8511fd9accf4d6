//! `xchg-sim sweep`: one scenario over a range of seeds, one run after the other in this
//! process, with a line per run as it ends and, at the end, the table of failures with the
//! command that reproduces each, `sweep.json`, `sweep.md` and a chart of the convergence time
//! of every seed.

use std::ops::RangeInclusive;
use std::path::Path;

use serde::Serialize;

use crate::run::{reproduce, run};
use crate::scenario::Options;
use crate::svg;

/// Parses `A..B` (both included) or a single seed `A`.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_seeds(text: &str) -> Result<RangeInclusive<u64>, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("{t:?} is not a seed (a whole number)"))
    };
    let (a, b) = match text.split_once("..") {
        Some((a, b)) => (number(a)?, number(b.trim_start_matches('='))?),
        None => {
            let a = number(text)?;
            (a, a)
        }
    };
    if a > b {
        return Err(format!("the range {text:?} is empty: {a} is above {b}"));
    }
    if b - a >= 1_000_000 {
        return Err(format!(
            "the range {text:?} holds more than a million seeds"
        ));
    }
    Ok(a..=b)
}

/// One run of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRun {
    /// Its seed.
    pub seed: u64,
    /// Whether every invariant held (false too when the run could not be made).
    pub held: bool,
    /// The invariants that failed, with their detail, or the error that stopped the run.
    pub failures: Vec<String>,
    /// Convergence time after the faults ended, ms.
    pub convergence_ms: Option<u64>,
    /// The command that repeats it.
    pub reproduce: String,
}

/// What `sweep.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// The scenario.
    pub scenario: String,
    /// First and last seed.
    pub seeds: (u64, u64),
    /// Every run, in seed order.
    pub runs: Vec<SweepRun>,
}

impl Sweep {
    /// The runs in which an invariant failed.
    pub fn failed(&self) -> impl Iterator<Item = &SweepRun> {
        self.runs.iter().filter(|r| !r.held)
    }
}

/// Runs `options` for every seed of `seeds`, each writing its report under `out/<seed>/`, and
/// writes the sweep's own files into `out`.
///
/// # Errors
/// Only if the sweep's files cannot be written; a run that fails or cannot start is a failure
/// in the sweep.
pub async fn sweep(
    options: &Options,
    seeds: RangeInclusive<u64>,
    out: &Path,
) -> anyhow::Result<Sweep> {
    let total = seeds.end() - seeds.start() + 1;
    let mut sweep = Sweep {
        scenario: options.scenario.as_str().to_owned(),
        seeds: (*seeds.start(), *seeds.end()),
        runs: Vec::new(),
    };
    for (k, seed) in seeds.enumerate() {
        let o = Options {
            seed,
            ..options.clone()
        };
        let result = run(&o, &out.join(seed.to_string())).await;
        let entry = match result {
            Ok(report) => SweepRun {
                seed,
                held: report.held(),
                failures: report
                    .invariants
                    .iter()
                    .filter(|c| !c.held)
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect(),
                convergence_ms: report.figures.convergence_ms,
                reproduce: report.reproduce,
            },
            Err(e) => SweepRun {
                seed,
                held: false,
                failures: vec![format!("the run stopped: {e:#}")],
                convergence_ms: None,
                reproduce: reproduce(&o),
            },
        };
        println!(
            "[{}/{total}] seed {seed}: {}{}",
            k + 1,
            if entry.held { "held" } else { "FAILED" },
            entry
                .convergence_ms
                .map_or(String::new(), |ms| format!(", converged in {ms} ms"))
        );
        sweep.runs.push(entry);
        // Written after every run, so a sweep stopped overnight keeps what it found.
        write(&sweep, out)?;
    }
    Ok(sweep)
}

/// The failures as a table, with the command that reproduces each.
pub fn failure_table(sweep: &Sweep) -> String {
    let mut md = String::from("| seed | failed | reproduce |\n|---:|---|---|\n");
    for r in sweep.failed() {
        md.push_str(&format!(
            "| {} | {} | `{}` |\n",
            r.seed,
            r.failures.join("; ").replace('|', "/"),
            r.reproduce
        ));
    }
    md
}

fn write(sweep: &Sweep, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("sweep.json"), serde_json::to_vec_pretty(sweep)?)?;
    let failed = sweep.failed().count();
    let mut md = format!(
        "# xchg-sim sweep {} seeds {}..{}\n\n{} runs, {} with an invariant failing.\n\n",
        sweep.scenario,
        sweep.seeds.0,
        sweep.seeds.1,
        sweep.runs.len(),
        failed
    );
    if failed > 0 {
        md.push_str(&failure_table(sweep));
    }
    md.push_str("\n![convergence](convergence.svg)\n");
    std::fs::write(out.join("sweep.md"), md)?;
    let bars: Vec<(String, f64)> = sweep
        .runs
        .iter()
        .map(|r| (r.seed.to_string(), r.convergence_ms.unwrap_or(0) as f64))
        .collect();
    std::fs::write(
        out.join("convergence.svg"),
        svg::bars(
            &format!(
                "Convergence after the faults end, {} (0: not converged)",
                sweep.scenario
            ),
            "seed",
            "ms",
            &bars,
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_are_parsed_with_both_ends_included() {
        assert_eq!(parse_seeds("1..200"), Ok(1..=200));
        assert_eq!(parse_seeds("7"), Ok(7..=7));
        assert_eq!(parse_seeds("3..=4"), Ok(3..=4));
        assert!(parse_seeds("5..2").expect_err("refused").contains("empty"));
        assert!(
            parse_seeds("a..b")
                .expect_err("refused")
                .contains("not a seed")
        );
        assert!(
            parse_seeds("0..2000000")
                .expect_err("refused")
                .contains("million")
        );
    }
}
