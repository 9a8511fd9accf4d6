//! `load`: the config file from disk plus the node's key file; and the secret-file helpers.

mod common;

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use xchg_federation_config::{
    ConfigError, KeyFileError, Severity, load, read_key_file, write_key_file, write_secret,
};

/// A directory holding the minimal fixture as `node.toml`; its key file is not written yet.
fn minimal_in_tempdir() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/minimal.toml");
    let config = dir.path().join("node.toml");
    std::fs::copy(fixture, &config).expect("copy fixture");
    std::fs::create_dir(dir.path().join("keys")).expect("keys dir");
    (dir, config)
}

fn key_file(dir: &TempDir) -> PathBuf {
    dir.path().join("keys/xuchang-yuzhou-1.key")
}

fn messages(err: &ConfigError, severity: Severity) -> Vec<String> {
    err.violations()
        .iter()
        .filter(|v| v.severity == severity)
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn a_config_whose_key_file_matches_its_member_key_loads() {
    let (dir, config) = minimal_in_tempdir();
    write_key_file(&key_file(&dir), &common::key(11)).expect("write key");
    let loaded = load(&config, common::NOW).expect("loads");
    assert_eq!(
        loaded.config.node.key_file,
        dir.path().join("keys/xuchang-yuzhou-1.key")
    );
    assert_eq!(
        loaded.config.node.data_dir,
        dir.path().join("data/xuchang-yuzhou-1")
    );
    // The minimal fixture's own two warnings, nothing about the key file.
    assert!(
        loaded.warnings.iter().all(|w| w.path != "node.key_file"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn a_key_file_holding_another_key_is_an_error_naming_both_keys() {
    let (dir, config) = minimal_in_tempdir();
    write_key_file(&key_file(&dir), &common::key(12)).expect("write key");
    let err = load(&config, common::NOW).expect_err("wrong key");
    assert_eq!(
        messages(&err, Severity::Error),
        [format!(
            "node.key_file: key file holds public key {}, but zone.members[0].public_key is {}",
            common::key(12).public().to_base64(),
            common::key(11).public().to_base64()
        )]
    );
}

#[test]
fn a_missing_key_file_is_an_error() {
    let (dir, config) = minimal_in_tempdir();
    let err = load(&config, common::NOW).expect_err("no key file");
    assert_eq!(
        messages(&err, Severity::Error),
        [format!(
            "node.key_file: {} does not exist",
            key_file(&dir).display()
        )]
    );
}

#[test]
fn a_key_file_that_is_not_hex_is_an_error() {
    let (dir, config) = minimal_in_tempdir();
    write_secret(&key_file(&dir), b"-----BEGIN PRIVATE KEY-----\n").expect("write");
    let err = load(&config, common::NOW).expect_err("not a seed");
    let errors = messages(&err, Severity::Error);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("expected 64 lowercase hex digits"),
        "{errors:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_draws_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, config) = minimal_in_tempdir();
    let path = key_file(&dir);
    write_key_file(&path, &common::key(11)).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let loaded = load(&config, common::NOW).expect("a warning only");
    let warning = loaded
        .warnings
        .iter()
        .find(|w| w.path == "node.key_file")
        .expect("key file warning");
    assert!(
        warning
            .message
            .contains("readable by group or others (mode 644)"),
        "{warning}"
    );
}

#[test]
fn a_missing_config_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load(&dir.path().join("absent.toml"), common::NOW).expect_err("no file");
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
}

#[test]
fn secrets_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    write_secret(&path, b"one").expect("first write");
    let again = write_secret(&path, b"two").expect_err("second write");
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).expect("read"), b"one");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_key_file_round_trips_with_a_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.key");
    write_key_file(&path, &common::key(11)).expect("write key");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text, format!("{}\n", "0b".repeat(32)));
    let key = read_key_file(&path).expect("read key");
    assert_eq!(key.public(), common::key(11).public());
    let missing = read_key_file(&dir.path().join("absent.key")).expect_err("absent");
    assert!(matches!(missing, KeyFileError::Io { .. }));
}
