//! What is wrong with a configuration: violations with their TOML path, and the crate's error.

use std::fmt;
use std::path::PathBuf;

/// How bad a violation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The node refuses to start with this configuration.
    Error,
    /// The node starts, but the operator should fix this.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, located by its TOML path.
///
/// Displays as `path: message`, e.g.
/// `zone.members[2].public_key: not 32 bytes of base64 (got 31)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// TOML path of the offending value, e.g. `zone.members[2].public_key`.
    pub path: String,
    /// What is wrong and what is expected instead.
    pub message: String,
    /// Whether the node can start anyway.
    pub severity: Severity,
}

impl Violation {
    /// An error at `path`.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            path: path.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// A warning at `path`.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            path: path.into(),
            message: message.into(),
            severity: Severity::Warning,
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but breaks at least one rule: every error, then every warning.
    #[error("{}", Lines(.0))]
    Invalid(Vec<Violation>),
}

impl ConfigError {
    /// The violations, if the file was read; errors first.
    pub fn violations(&self) -> &[Violation] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(v) => v,
        }
    }
}

/// One violation per line, each prefixed with its severity.
struct Lines<'a>(&'a [Violation]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {v}", v.severity)?;
        }
        Ok(())
    }
}

/// Collects violations while a configuration is checked.
#[derive(Debug, Default)]
pub(crate) struct Report(Vec<Violation>);

impl Report {
    /// Records an error.
    pub(crate) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation::error(path, message));
    }

    /// Records a warning.
    pub(crate) fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation::warning(path, message));
    }

    /// Records an error for a failed parse and passes the value on, if any.
    pub(crate) fn check<T, E: fmt::Display>(
        &mut self,
        path: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        result.map_err(|e| self.error(path, e.to_string())).ok()
    }

    /// How many errors (not warnings) were recorded so far: a mark for [`Report::clean_since`].
    pub(crate) fn errors(&self) -> usize {
        self.0.iter().filter(|v| v.is_error()).count()
    }

    /// Whether no error was recorded after `mark` was taken with [`Report::errors`].
    pub(crate) fn clean_since(&self, mark: usize) -> bool {
        self.errors() == mark
    }

    /// Every violation recorded, in order.
    pub(crate) fn into_violations(self) -> Vec<Violation> {
        self.0
    }

    /// `Ok(warnings)` if there is no error, else every violation, errors first.
    pub(crate) fn finish(self) -> Result<Vec<Violation>, ConfigError> {
        let (mut errors, warnings): (Vec<_>, Vec<_>) =
            self.0.into_iter().partition(Violation::is_error);
        if errors.is_empty() {
            Ok(warnings)
        } else {
            errors.extend(warnings);
            Err(ConfigError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_config_lists_errors_before_warnings_one_per_line() {
        let mut report = Report::default();
        report.warning(
            "zone.members",
            "4 members tolerate no more failed nodes than 3",
        );
        report.error(
            "version",
            "unsupported schema version 2; this node reads version 1",
        );
        let err = report.finish().expect_err("an error was recorded");
        assert_eq!(
            err.to_string(),
            "error: version: unsupported schema version 2; this node reads version 1\n\
             warning: zone.members: 4 members tolerate no more failed nodes than 3"
        );
    }

    #[test]
    fn warnings_alone_do_not_fail() {
        let mut report = Report::default();
        report.warning("api.tokens", "no admin token");
        assert_eq!(report.finish().expect("only a warning").len(), 1);
    }
}
