//! The operator's niceties of issue #18: shell completions and manual pages generated from the
//! command line's definitions, and logs as one JSON object a line for log shippers.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use xchg_tests::{Zone, xchg_binary};

fn xchg(args: &[&str]) -> anyhow::Result<(String, String)> {
    let out = Command::new(xchg_binary())
        .args(args)
        .env_remove("XCHG_LOG_FORMAT")
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success(), "xchg {args:?} failed: {stderr}");
    Ok((stdout, stderr))
}

#[test]
fn every_shell_gets_a_completion_script_and_bash_accepts_its_own() -> anyhow::Result<()> {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (script, _) = xchg(&["completions", shell])?;
        // Subcommands two levels down are completed too.
        ensure!(
            script.contains("rebuild") && script.contains("data-dir"),
            "{shell}'s script does not complete `xchg index rebuild --data-dir`"
        );
    }
    let (bash, _) = xchg(&["completions", "bash"])?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("xchg.bash");
    std::fs::write(&file, bash)?;
    let checked = Command::new("bash").arg("-n").arg(&file).output()?;
    ensure!(
        checked.status.success(),
        "bash -n refuses the script: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let refused = Command::new(xchg_binary())
        .args(["completions", "tcsh"])
        .output()?;
    ensure!(
        refused.status.code() == Some(2)
            && String::from_utf8_lossy(&refused.stderr).contains("possible values"),
        "an unknown shell is refused with the shells there are"
    );
    Ok(())
}

#[test]
fn the_log_format_flag_overrides_the_variable_and_a_bad_variable_is_named() -> anyhow::Result<()> {
    let run = |env: &str, args: &[&str]| -> anyhow::Result<std::process::Output> {
        Ok(Command::new(xchg_binary())
            .env("XCHG_LOG_FORMAT", env)
            // The failure line is written past any filter.
            .env("RUST_LOG", "off")
            .args(args)
            .output()?)
    };
    let out = run("bogus", &["completions", "bash"])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2) && said.contains("XCHG_LOG_FORMAT") && said.contains("json"),
        "a bad XCHG_LOG_FORMAT is refused naming the variable: {said}"
    );
    for (env, args) in [
        (
            "bogus",
            &["--log-format", "text", "completions", "bash"][..],
        ),
        ("", &["completions", "bash"][..]),
        ("JSON", &["completions", "bash"][..]),
    ] {
        let out = run(env, args)?;
        ensure!(
            out.status.success(),
            "XCHG_LOG_FORMAT={env:?} xchg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A command that fails says why as a log line in JSON, once.
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.toml");
    let out = run(
        "json",
        &["run", "--config", missing.to_str().context("path")?],
    )?;
    let said = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(said.trim())
        .with_context(|| format!("the failure is not one JSON line: {said}"))?;
    let error = line["fields"]["error"].as_str().unwrap_or_default();
    ensure!(
        line["level"] == "ERROR"
            && error.contains("missing.toml")
            && error.matches("os error 2").count() == 1,
        "the failure names the file and its reason once: {said}"
    );
    // A config that breaks rules: each rule a line at its severity, then the failure.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bogus = 1\n")?;
    let out = run("json", &["run", "--config", bad.to_str().context("path")?])?;
    let said = String::from_utf8_lossy(&out.stderr);
    let lines = said
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("not JSON lines: {said}"))?;
    ensure!(
        lines.len() == 2
            && lines[0]["level"] == "ERROR"
            && lines[0]["fields"]["violation"]
                .as_str()
                .is_some_and(|v| v.contains("unknown field `bogus`"))
            && lines[1]["fields"]["message"] == "failed",
        "the rule, then the failure: {said}"
    );
    Ok(())
}

#[test]
fn the_manual_has_a_page_for_the_binary_and_one_for_every_command() -> anyhow::Result<()> {
    let (page, _) = xchg(&["man"])?;
    ensure!(page.contains(".TH xchg 1"), "not a roff page: {page:.200}");
    ensure!(page.contains("listing") && page.contains("completions"));
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("man1");
    let (said, _) = xchg(&["man", "--out", out.to_str().context("path")?])?;
    for name in [
        "xchg.1",
        "xchg-run.1",
        "xchg-listing-submit.1",
        "xchg-index-rebuild.1",
        "xchg-config-generate.1",
    ] {
        let text = std::fs::read_to_string(out.join(name))
            .with_context(|| format!("{name} was not written"))?;
        ensure!(text.contains(".TH"), "{name} is not a roff page");
    }
    let written = std::fs::read_dir(&out)?.count();
    ensure!(
        said.contains(&format!("wrote {written} manual page(s)")),
        "the command says how many pages it wrote ({written}): {said}"
    );
    // Into a directory holding other pages, it counts its own.
    std::fs::write(out.join("xchg-old-command.1"), ".TH old 1\n")?;
    let (again, _) = xchg(&["man", "--out", out.to_str().context("path")?])?;
    ensure!(again == said, "{again} after {said}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_logs_one_json_object_a_line_when_asked() -> anyhow::Result<()> {
    let mut zone = Zone::generate("single-zone", 3)?;
    for i in 0..3 {
        zone.start_with(i, &["--log-format", "json"])?;
    }
    zone.wait_for_leader(0, Duration::from_secs(30)).await?;
    let log = zone.log_of(0);
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("a log line is not JSON: {line}"))?;
        ensure!(
            value["timestamp"].is_string()
                && value["level"].is_string()
                && value["target"].is_string(),
            "a log line lacks timestamp, level or target: {line}"
        );
        lines += 1;
    }
    ensure!(lines > 0, "the node logged nothing");
    // The event's fields are keys of an object of their own (a field named like one of the
    // line's keys, `target` say, would otherwise repeat it); where the API is served, which
    // text prints on stdout, is a field of a log line.
    let started = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "node started")
        .with_context(|| format!("no line says the node started: {log}"))?;
    ensure!(
        started["fields"]["api_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.")),
        "the address is not a field of its own: {started}"
    );
    Ok(())
}

/// The systemd unit shipped in `deploy/` runs a command this binary accepts: its `ExecStart`,
/// with the binary replaced by the one under test and the instance named, fails only for the
/// missing bundle it names (exit 1, the config's path in the error), not for its arguments (a
/// usage error exits 2). And the unit asks for what a node needs: a clean stop on SIGTERM with
/// time for it, a restart on failure, and its bundle as the only place it may write.
#[test]
fn the_systemd_unit_runs_a_command_the_binary_accepts() -> anyhow::Result<()> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/xchg@.service"
    ))?;
    let setting = |key: &str| -> anyhow::Result<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .with_context(|| format!("no {key}= in the unit"))
    };
    let exec = setting("ExecStart")?.replace("%i", "no-such-node");
    let mut words = exec.split_whitespace();
    ensure!(
        words.next() == Some("/usr/local/bin/xchg"),
        "ExecStart runs xchg: {exec}"
    );
    let args: Vec<&str> = words.collect();
    ensure!(
        args.first() == Some(&"run"),
        "ExecStart runs `xchg run`: {exec}"
    );
    let out = Command::new(xchg_binary())
        .args(&args)
        .env_remove("XCHG_LOG_FORMAT")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("/var/lib/xchg/no-such-node/node.toml"),
        "exit {:?}: {stderr}",
        out.status.code()
    );
    ensure!(setting("KillSignal")? == "SIGTERM", "a clean stop");
    ensure!(setting("Restart")? == "on-failure", "restarted on failure");
    ensure!(
        setting("ReadWritePaths")? == "/var/lib/xchg/%i" && setting("ProtectSystem")? == "strict",
        "writes only to its bundle"
    );
    Ok(())
}
