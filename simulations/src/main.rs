//! `xchg-sim`: runs one scenario of a whole federation in this process under faults drawn from
//! one seed, checks the invariants, writes the report, and exits non-zero if one failed;
//! `xchg-sim sweep` runs one scenario over a range of seeds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use xchg_federation_config::layout::LayoutKind;
use xchg_simulations::run::{default_out, run};
use xchg_simulations::scale::{parse_sizes, scale};
use xchg_simulations::scenario::{Options, Scenario};
use xchg_simulations::sweep::{failure_table, parse_seeds, sweep};

/// Runs a whole xchg federation in one process under seeded faults and checks its invariants.
#[derive(Debug, Parser)]
#[command(name = "xchg-sim", version)]
struct Args {
    /// The scenario: xuchang, partition-heal, leader-churn, lagging-follower or scale; or
    /// `sweep`, to run the scenario named by --scenario over the seeds of --seeds.
    scenario: String,
    /// With `sweep`: the seeds, like `1..200` (both ends included).
    #[arg(long)]
    seeds: Option<String>,
    /// With `sweep`: the scenario to run.
    #[arg(long = "scenario")]
    swept: Option<String>,
    /// With `scale`: how many single-zone exchanges, or several sizes run one after the other
    /// (`10,50,200`).
    #[arg(long, default_value = "50")]
    exchanges: String,
    /// The seed every random choice derives from (default: drawn, and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the chaos phase, like `30s` or `2m`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long the federation may take to converge once the faults end.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    heal_deadline: Duration,
    /// The layout (default: the scenario's): xuchang, single-zone, two-exchanges or mesh-N.
    #[arg(long)]
    layout: Option<String>,
    /// Nodes per zone (default 3; 1 for scale).
    #[arg(long)]
    nodes_per_zone: Option<usize>,
    /// Client operations per second over the whole federation.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Where to write the report (default `sim-out/SCENARIO-SEED/`, or for a sweep
    /// `sim-out/sweep-SCENARIO-A-B/`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The nodes' logs, when asked for (`RUST_LOG=xchg_node=info`): every node of the
    // federation logs into this process's standard error.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let sweeping = args.scenario == "sweep";
    let seeds = match (sweeping, &args.seeds, &args.swept) {
        (true, Some(seeds), Some(_)) => match parse_seeds(seeds) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("--seeds: {e}");
                return ExitCode::from(2);
            }
        },
        (true, _, _) => {
            eprintln!("sweep needs --seeds A..B and --scenario NAME");
            return ExitCode::from(2);
        }
        (false, None, None) => None,
        (false, _, _) => {
            eprintln!(
                "--seeds and --scenario go with sweep: xchg-sim sweep --seeds A..B --scenario NAME"
            );
            return ExitCode::from(2);
        }
    };
    let name = if sweeping {
        args.swept.clone().unwrap_or_default()
    } else {
        args.scenario.clone()
    };
    let Some(scenario) = Scenario::parse(&name) else {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.as_str()).collect();
        eprintln!("unknown scenario {:?}; one of: {}", name, names.join(", "));
        return ExitCode::from(2);
    };
    let layout = match args.layout.as_deref() {
        None => scenario.default_layout(),
        Some(name) => match name.parse::<LayoutKind>() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    let sizes = match parse_sizes(&args.exchanges) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("--exchanges: {e}");
            return ExitCode::from(2);
        }
    };
    let nodes_per_zone = args.nodes_per_zone.unwrap_or(match scenario {
        Scenario::Scale => 1,
        _ => 3,
    });
    if !(1..=9).contains(&nodes_per_zone) {
        eprintln!("--nodes-per-zone must be 1 to 9");
        return ExitCode::from(2);
    }
    let options = Options {
        scenario,
        seed: args.seed.unwrap_or_else(rand::random),
        duration: args.duration,
        heal_deadline: args.heal_deadline,
        layout,
        nodes_per_zone,
        rate: args.rate.max(1),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(seeds) = seeds {
        let out = args.out.unwrap_or_else(|| {
            PathBuf::from("sim-out").join(format!(
                "sweep-{}-{}-{}",
                scenario.as_str(),
                seeds.start(),
                seeds.end()
            ))
        });
        return match runtime.block_on(sweep(&options, seeds, &out)) {
            Ok(s) => {
                let failed = s.failed().count();
                println!(
                    "{} runs of {}, {failed} with an invariant failing; {}",
                    s.runs.len(),
                    s.scenario,
                    out.join("sweep.md").display()
                );
                if failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    print!("{}", failure_table(&s));
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("xchg-sim: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if scenario == Scenario::Scale && args.layout.is_none() {
        let out = args
            .out
            .unwrap_or_else(|| PathBuf::from("sim-out").join(format!("scale-{}", options.seed)));
        return match runtime.block_on(scale(&options, &sizes, &out)) {
            Ok(points) => {
                println!("{}", out.join("scale.md").display());
                if points.iter().all(|p| p.held) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("xchg-sim: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let out = args.out.unwrap_or_else(|| default_out(&options));
    match runtime.block_on(run(&options, &out)) {
        Ok(report) => {
            for c in &report.invariants {
                println!(
                    "{:<26} {}  {}",
                    c.name,
                    if c.held { "held  " } else { "FAILED" },
                    c.detail
                );
            }
            println!("report: {}", out.join("report.md").display());
            if report.held() {
                ExitCode::SUCCESS
            } else {
                println!("reproduce: {}", report.reproduce);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xchg-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
