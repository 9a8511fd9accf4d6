//! The fixture files: every `tests/valid/*.toml` parses with exactly the warnings it announces,
//! every `tests/invalid/*.toml` fails with exactly the errors it announces.
//!
//! A fixture announces what it expects in comment lines at its top:
//! `# expect: <path>: <message fragment>` for an error, `# warn: <path>: <message fragment>` for
//! a warning. A violation matches when its path is equal and its message contains the fragment.

mod common;

use std::path::{Path, PathBuf};

use xchg_federation_config::{ConfigError, Severity, Violation, parse};

/// The `.toml` files of a fixture directory, sorted.
fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// The `(path, fragment)` pairs announced with `# <tag>: ` lines.
fn announced(text: &str, tag: &str) -> Vec<(String, String)> {
    let prefix = format!("# {tag}: ");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (path, fragment) = rest
                .split_once(": ")
                .expect("`path: fragment` after the tag");
            (path.to_owned(), fragment.to_owned())
        })
        .collect()
}

/// Describes how violations and announcements fail to match one to one, if they do not.
fn mismatch(file: &Path, found: &[&Violation], expected: &[(String, String)]) -> Option<String> {
    let shown: Vec<String> = found.iter().map(|v| v.to_string()).collect();
    let each_matched_once = expected.iter().all(|(path, fragment)| {
        found
            .iter()
            .filter(|v| v.path == *path && v.message.contains(fragment))
            .count()
            == 1
    });
    (found.len() != expected.len() || !each_matched_once).then(|| {
        format!(
            "{}: expected {expected:?}, found {shown:#?}",
            file.display()
        )
    })
}

fn of(violations: &[Violation], severity: Severity) -> Vec<&Violation> {
    violations
        .iter()
        .filter(|v| v.severity == severity)
        .collect()
}

#[test]
fn every_valid_fixture_parses_with_exactly_its_announced_warnings() {
    let files = fixtures("valid");
    assert!(files.len() >= 2, "valid fixtures missing");
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let dir = file.parent().expect("fixture has a directory");
        match parse(&text, dir, common::NOW) {
            Ok(loaded) => {
                let warnings: Vec<&Violation> = loaded.warnings.iter().collect();
                failures.extend(mismatch(&file, &warnings, &announced(&text, "warn")));
            }
            Err(e) => failures.push(format!("{} does not parse:\n{e}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_invalid_fixture_fails_with_exactly_its_announced_errors() {
    let files = fixtures("invalid");
    assert!(files.len() >= 12, "invalid fixtures missing");
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let expected = announced(&text, "expect");
        assert!(
            !expected.is_empty(),
            "{} announces no error",
            file.display()
        );
        let dir = file.parent().expect("fixture has a directory");
        match parse(&text, dir, common::NOW) {
            Ok(_) => failures.push(format!("{} parsed, expected {expected:?}", file.display())),
            Err(ConfigError::Invalid(violations)) => {
                failures.extend(mismatch(
                    &file,
                    &of(&violations, Severity::Error),
                    &expected,
                ));
            }
            Err(other) => failures.push(format!("{}: unexpected {other}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_three_mistakes_fixture_reports_all_three_at_once() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid/three_mistakes.toml");
    let text = std::fs::read_to_string(&file).expect("read fixture");
    let err = parse(&text, Path::new("."), common::NOW).expect_err("three mistakes");
    assert_eq!(of(err.violations(), Severity::Error).len(), 3, "{err}");
    assert_eq!(
        err.to_string()
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        3,
        "{err}"
    );
}

/// Prints the keys and delegations the fixtures were written with.
#[test]
#[ignore = "prints material for writing fixtures; run with --ignored --nocapture"]
fn print_fixture_material() {
    use common::{EXPIRED, NOT_AFTER, delegation_hex, key};
    for n in [1, 2, 3, 11, 12, 13, 21] {
        let public = key(n).public();
        println!(
            "key {n}: {} peer id {}",
            public.to_base64(),
            public.peer_id()
        );
    }
    println!("key 11 seed: {}", hex::encode(key(11).seed()));
    let delegations = [
        ("yuzhou-1", 1, "xuchang", "xuchang/yuzhou", 11, NOT_AFTER),
        (
            "yuzhou-1 expired",
            1,
            "xuchang",
            "xuchang/yuzhou",
            11,
            EXPIRED,
        ),
        (
            "yuzhou-1 by rogue root",
            3,
            "xuchang",
            "xuchang/yuzhou",
            11,
            NOT_AFTER,
        ),
        (
            "yuzhou-1 for zhengzhou/yuzhou",
            1,
            "xuchang",
            "zhengzhou/yuzhou",
            11,
            NOT_AFTER,
        ),
        ("yuzhou-2", 1, "xuchang", "xuchang/yuzhou", 12, NOT_AFTER),
    ];
    for (what, root, exchange, zone, node, not_after) in delegations {
        println!(
            "delegation {what}: {}",
            delegation_hex(root, exchange, zone, node, not_after)
        );
    }
    for role in xchg_federation_config::Role::ALL {
        let token = format!("xchg-{role}-fixture");
        println!(
            "sha256 of {token}: {}",
            hex::encode(xchg_federation_config::token_hash(&token))
        );
    }
}
