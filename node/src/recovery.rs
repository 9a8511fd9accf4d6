//! Offline recovery of admin access: an admin token added to a stopped node's data directory
//! (`xchg token create --data-dir DIR --role admin`), handed to the zone through Raft when the
//! node runs again.
//!
//! # Why through Raft
//!
//! Tokens are replicated state. A token row written straight into this node's `catalog.db`
//! would exist on this one replica: the other members would answer it with 401, a leader
//! checking a forwarded write would not know it, the next snapshot this node installs would
//! erase it, and the replicas' audit chains would differ. So the offline tool writes only a
//! request, `DIR/recovery/<hash>.json` (mode 0600: the token's hash, role, label and time,
//! never the token), and only while it holds the data directory's lock — a running node holds
//! it, so the tool refuses and says to stop the node first.
//!
//! When the node starts it proposes a `create_token` command for each request, as the zone
//! member it is (forwarded to the leader like the recognitions it proposes, under the actor
//! `node:<name>`), and deletes the request once the zone has applied it, or already had the
//! token (a request survives a crash before deletion, and the second proposal is refused as a
//! conflict). From then on the token works on every member, is part of every snapshot, and its
//! creation is in every replica's audit chain.
//!
//! It takes what every write takes, a majority of the zone up, and nothing more: any member
//! can be the one recovered, leader or not, and the others need not be stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use xchg_federation_config::Role;
use xchg_protocol::Timestamp;

use crate::catalog::{Actor, CatalogCommand, NODE_ACTOR_PREFIX, Refusal};
use crate::raft::client::Proposer;
use crate::store::files::{DataDirLock, LockError};

/// The folder of a data directory holding recovery requests.
pub const RECOVERY_DIR: &str = "recovery";

/// How long the node waits between attempts to hand a request over (no leader yet, a lost
/// answer).
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// A request to create a token, as written by the offline tool. Format version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Format version of this file: 1.
    pub version: u32,
    /// Hex SHA-256 of the token text.
    pub hash: String,
    /// The role the token grants.
    pub role: Role,
    /// A label for people.
    pub label: String,
    /// When the tool ran.
    pub created_at: Timestamp,
}

/// A token created offline: shown once, then only its hash is kept.
#[derive(Debug)]
pub struct OfflineToken {
    /// The bearer token.
    pub token: String,
    /// Its hex SHA-256.
    pub hash: String,
    /// The request written for the node to hand over.
    pub request_file: PathBuf,
}

/// Why a token could not be added offline.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The directory is not a node's data directory.
    #[error(
        "{} holds no node database ({}): give the data directory of a node that has run (its \
         config's node.data_dir)",
        .0.display(),
        crate::store::CATALOG_FILE
    )]
    NotADataDir(PathBuf),
    /// A running node holds the directory.
    #[error(
        "{0}. Stop that node first (SIGTERM or Ctrl-C): the token is written for the node to hand \
         to its zone when it starts again, and a running node would not see it"
    )]
    NodeRunning(LockError),
    /// Only admin tokens are created offline.
    #[error(
        "only an admin token can be created offline (to recover a zone that lost its admins); \
         create a {0} token with POST /v1/tokens as an admin"
    )]
    NotAdmin(Role),
    /// The label is empty or too long.
    #[error("--label must be 1 to 200 characters")]
    Label,
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Creates a token of `role` (admin only) for the stopped node whose data directory is `dir`:
/// writes the request the node hands to its zone when it starts, and returns the token.
///
/// # Errors
/// [`RecoveryError`]: not admin, a bad label, not a data directory, a running node, an IO error.
pub fn add_offline_token(
    dir: &Path,
    role: Role,
    label: &str,
    now: Timestamp,
) -> Result<OfflineToken, RecoveryError> {
    if role != Role::Admin {
        return Err(RecoveryError::NotAdmin(role));
    }
    if label.trim().is_empty() || label.chars().count() > 200 {
        return Err(RecoveryError::Label);
    }
    if !dir.join(crate::store::CATALOG_FILE).is_file() {
        return Err(RecoveryError::NotADataDir(dir.to_owned()));
    }
    let _held = DataDirLock::acquire(dir).map_err(|e| match e {
        LockError::Held { .. } => RecoveryError::NodeRunning(e),
        LockError::Io { path, source } => RecoveryError::Io { path, source },
    })?;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!(
        "xchg-{role}-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = crate::api::auth::hash_hex(&token);
    let request = Request {
        version: 1,
        hash: hash.clone(),
        role,
        label: label.to_owned(),
        created_at: now,
    };
    let folder = dir.join(RECOVERY_DIR);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoveryError::Io { path, source }
    };
    xchg_federation_config::create_private_dir(&folder).map_err(io(&folder))?;
    let request_file = folder.join(format!("{hash}.json"));
    let json = serde_json::to_vec_pretty(&request).map_err(|e| RecoveryError::Io {
        path: request_file.clone(),
        source: std::io::Error::other(e),
    })?;
    xchg_federation_config::write_secret(&request_file, &json).map_err(io(&request_file))?;
    Ok(OfflineToken {
        token,
        hash,
        request_file,
    })
}

/// The requests waiting in `dir`, oldest first, with their files. A file that is not a request
/// is logged and left alone.
fn pending(dir: &Path) -> Vec<(PathBuf, Request)> {
    let Ok(entries) = std::fs::read_dir(dir.join(RECOVERY_DIR)) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Request)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|path| {
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Request>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(r) if r.version == 1 => Some((path, r)),
                Ok(r) => {
                    tracing::error!(file = %path.display(), version = r.version,
                        "a token recovery request of an unknown format version; left alone");
                    None
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e,
                        "not a token recovery request; left alone");
                    None
                }
            }
        })
        .collect();
    found.sort_by_key(|(_, r)| r.created_at);
    found
}

/// Hands every request waiting in the data directory `dir` to the zone, as member `node`,
/// retrying until the zone has applied it or `stop` is set. Returns at once if there is none.
pub async fn hand_over(
    dir: PathBuf,
    node: String,
    proposer: Proposer,
    stop: watch::Receiver<bool>,
) {
    for (file, request) in pending(&dir) {
        tracing::info!(hash = %request.hash, role = %request.role,
            "handing a token created offline (xchg token create) to the zone");
        let cmd = CatalogCommand::CreateToken {
            token_hash: request.hash.clone(),
            role: request.role,
            party: None,
            label: request.label.clone(),
            at: request.created_at,
            actor: Actor {
                id: format!("{NODE_ACTOR_PREFIX}{node}"),
                role: Role::Admin,
            },
        };
        if !propose_until_decided(&proposer, cmd, &stop).await {
            return;
        }
        match std::fs::remove_file(&file) {
            Ok(()) => tracing::info!(hash = %request.hash,
                "the zone has the token created offline; it works on every member"),
            Err(e) => tracing::warn!(file = %file.display(), error = %e,
                "the zone has the token created offline, but its request file stays"),
        }
    }
}

/// Proposes `cmd` until the zone decides on it; `true` once applied (or the token existed
/// already), `false` when stopped or refused for good.
async fn propose_until_decided(
    proposer: &Proposer,
    cmd: CatalogCommand,
    stop: &watch::Receiver<bool>,
) -> bool {
    let mut waited = false;
    loop {
        if *stop.borrow() {
            return false;
        }
        match proposer.propose(cmd.clone()).await {
            Ok((Ok(_), _)) | Ok((Err(Refusal::Conflict(_)), _)) => return true,
            Ok((Err(refusal), _)) => {
                tracing::error!(%refusal, "the zone refused the token created offline");
                return false;
            }
            Err(e) => {
                if !waited {
                    tracing::info!(error = %e.message,
                        "waiting for the zone to accept writes to hand over the token created offline");
                    waited = true;
                }
            }
        }
        let mut stop = stop.clone();
        tokio::select! {
            () = tokio::time::sleep(RETRY_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::store::files::create_private_file(&dir.path().join(crate::store::CATALOG_FILE))
            .expect("db");
        dir
    }

    #[test]
    fn a_token_created_offline_leaves_a_private_request_holding_only_its_hash() {
        let dir = data_dir();
        let made =
            add_offline_token(dir.path(), Role::Admin, "recovery", Timestamp(5)).expect("created");
        assert!(made.token.starts_with("xchg-admin-"));
        let text = std::fs::read_to_string(&made.request_file).expect("request");
        assert!(
            !text.contains(&made.token),
            "the token itself is never stored"
        );
        let found = pending(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.hash, made.hash);
        assert_eq!(found[0].1.hash, crate::api::auth::hash_hex(&made.token));
        assert!(xchg_federation_config::loose_mode(&made.request_file).is_none());
    }

    #[test]
    fn a_token_is_not_created_offline_while_a_node_holds_the_directory() {
        let dir = data_dir();
        let _node = DataDirLock::acquire(dir.path()).expect("the node's lock");
        let err = add_offline_token(dir.path(), Role::Admin, "recovery", Timestamp(5))
            .expect_err("refused");
        assert!(matches!(err, RecoveryError::NodeRunning(_)), "{err}");
        assert!(err.to_string().contains("Stop that node first"), "{err}");
        assert!(pending(dir.path()).is_empty());
    }

    #[test]
    fn only_admin_tokens_are_created_offline_and_only_in_a_data_directory() {
        let dir = data_dir();
        assert!(matches!(
            add_offline_token(dir.path(), Role::Provider, "p", Timestamp(5)),
            Err(RecoveryError::NotAdmin(Role::Provider))
        ));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            add_offline_token(empty.path(), Role::Admin, "r", Timestamp(5)),
            Err(RecoveryError::NotADataDir(_))
        ));
    }
}
