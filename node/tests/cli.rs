//! The `xchg config` commands as an operator uses them: generate a layout, grow a zone of it,
//! validate it, and see every mistake of a broken config reported with its TOML path.
//!
//! (Being an integration test of `xchg-node`, this file also makes `cargo test --workspace`
//! build the `xchg` binary that the suites in `tests/` run.)

use std::path::Path;
use std::process::Command;

fn xchg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xchg"))
}

fn generate(out: &Path, layout: &str) -> std::process::Output {
    xchg()
        .args([
            "config",
            "generate",
            "--layout",
            layout,
            "--base-port",
            "27100",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("xchg runs")
}

#[test]
fn a_generated_xuchang_layout_validates_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo-layout");
    let generated = generate(&out, "xuchang");
    assert!(
        generated.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let configs: Vec<_> = std::fs::read_dir(out.join("nodes"))
        .expect("nodes dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        configs.len(),
        33,
        "10 Xuchang zones and Zhengzhou, 3 nodes each"
    );
    let check = xchg()
        .args(["config", "validate"])
        .args(&configs)
        .output()
        .expect("xchg runs");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "validate failed:\n{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(stdout.contains("33 config file(s) valid"), "{stdout}");
}

#[test]
fn generate_refuses_to_overwrite_an_existing_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("layout");
    assert!(generate(&out, "single-zone").status.success());
    let again = generate(&out, "single-zone");
    assert!(
        !again.status.success(),
        "a second generate into the same directory must fail"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn validate_reports_all_three_mistakes_of_a_config_with_their_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("layout");
    assert!(generate(&out, "single-zone").status.success());
    let good = out.join("nodes/xuchang-municipal-1.toml");
    let text = std::fs::read_to_string(&good).expect("config");
    let broken = text
        .replacen("ceiling = \"general\"", "ceiling = \"secret\"", 1)
        .replacen("name = \"municipal-2\"", "name = \"municipal-1\"", 1)
        .replacen("p2p = \"/ip4/", "p2p = \"/ipx/", 1);
    let bad = out.join("nodes/broken.toml");
    std::fs::write(&bad, broken).expect("write");
    let check = xchg()
        .args(["config", "validate"])
        .arg(&bad)
        .output()
        .expect("xchg runs");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        !check.status.success(),
        "an invalid config must fail validation"
    );
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 3, "exactly three errors expected:\n{stdout}");
    for path in ["export.ceiling", "zone.members[1].name", "listen.p2p"] {
        assert!(
            errors
                .iter()
                .any(|l| l.contains(&format!("error: {path}:"))),
            "no error at {path}:\n{stdout}"
        );
    }
}

#[test]
fn add_node_writes_a_valid_config_and_prints_how_to_start_and_admit_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("layout");
    assert!(generate(&out, "single-zone").status.success());
    let added = xchg()
        .args([
            "config",
            "add-node",
            "--zone",
            "xuchang/municipal",
            "--layout",
        ])
        .arg(&out)
        .output()
        .expect("xchg runs");
    let stdout = String::from_utf8_lossy(&added.stdout);
    assert!(
        added.status.success(),
        "add-node failed:\n{stdout}{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let config = out.join("nodes/xuchang-municipal-4.toml");
    assert!(
        stdout.contains(&format!("xchg run --config {} --join", config.display())),
        "{stdout}"
    );
    let curl = stdout
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("curl -X POST http://127.0.0.1:27100/v1/zone/members")
        })
        .unwrap_or_else(|| panic!("no curl line:\n{stdout}"));
    assert!(
        curl.contains("-H \"Authorization: Bearer $ADMIN\""),
        "{curl}"
    );
    assert!(
        !stdout.contains("xchg-admin-"),
        "the admin token is not printed, only where it is:\n{stdout}"
    );
    assert!(
        curl.contains(r#"-d '{"name":"municipal-4","raft_addr":"127.0.0.1:27110","api_url":"http://127.0.0.1:27109","public_key":""#),
        "{curl}"
    );
    let check = xchg()
        .args(["config", "validate"])
        .arg(&config)
        .output()
        .expect("xchg runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
