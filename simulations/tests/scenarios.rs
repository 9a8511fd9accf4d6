//! A short run of every scenario (issue #15): a small layout for a few seconds of chaos, every
//! invariant holding, the report written, and the same seed giving the same schedule digest.

use std::time::Duration;

use xchg_federation_config::layout::LayoutKind;
use xchg_simulations::run::run;
use xchg_simulations::scenario::{Options, Scenario, Schedule};

fn options(scenario: Scenario, seed: u64) -> Options {
    let layout = scenario.default_layout();
    Options {
        scenario,
        seed,
        duration: Duration::from_secs(8),
        heal_deadline: Duration::from_secs(90),
        layout,
        // The city layout and the mesh with one node per zone keep the run small.
        nodes_per_zone: if matches!(layout, LayoutKind::Xuchang | LayoutKind::Mesh { .. }) {
            1
        } else {
            3
        },
        rate: 20,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_briefly_with_every_invariant_holding() -> anyhow::Result<()> {
    let out = tempfile::tempdir()?;
    // One after another: a federation each, on a 2-core machine.
    for scenario in Scenario::ALL {
        let o = options(scenario, 11);
        let dir = out.path().join(scenario.as_str());
        let report = run(&o, &dir).await?;
        let failed: Vec<_> = report.invariants.iter().filter(|c| !c.held).collect();
        assert!(
            failed.is_empty(),
            "{}: {failed:?}\nreproduce: {}",
            scenario.as_str(),
            report.reproduce
        );
        assert_eq!(report.invariants.len(), 8);
        assert_eq!(report.schedule_digest, Schedule::generate(&o).digest());
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
        assert_eq!(written["seed"], 11);
        assert_eq!(written["schedule_digest"], report.schedule_digest.as_str());
        for file in ["report.md", "commit-latency.svg", "propagation.svg"] {
            assert!(dir.join(file).exists(), "{file} written");
        }
    }
    Ok(())
}
