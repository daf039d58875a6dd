//! The `lint:` section of `.lameduck.yaml`: disabled checks, severity overrides, thresholds.
//!
//! ```yaml
//! lint:
//!   failOn: warning            # info | warning | error
//!   disable: [pdb-missing]
//!   severity:
//!     single-replica: error    # info | warning | error | off
//!   graceMarginSeconds: 2      # kept free before SIGKILL in the grace arithmetic
//!   slowStartSeconds: 60       # liveness budget below which a startupProbe is expected
//! ```

use std::collections::HashMap;

use crate::checks;
use crate::finding::Severity;
use crate::yaml::{self, Node, Pos};

/// Configuration of a lint run. `Config::default()` is what runs without a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Per-check severity; `None` disables the check. Checks not listed keep their default.
    pub severity: HashMap<String, Option<Severity>>,
    /// Threshold for a failing exit code, if the file sets one.
    pub fail_on: Option<Severity>,
    /// Seconds kept free before SIGKILL in the grace arithmetic.
    pub grace_margin: f64,
    /// Liveness budget (initialDelay + period × failureThreshold) below which a container
    /// without a startupProbe is flagged.
    pub slow_start: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            severity: HashMap::new(),
            fail_on: None,
            grace_margin: 2.0,
            slow_start: 60.0,
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not valid YAML.
    #[error("line {}: invalid YAML: {message}", pos.line)]
    Syntax {
        /// Where.
        pos: Pos,
        /// The parser's message.
        message: String,
    },
    /// A key that means nothing here (likely a typo).
    #[error("line {}: unknown key {key:?} under lint (expected failOn, disable, severity, graceMarginSeconds, slowStartSeconds)", pos.line)]
    UnknownKey {
        /// Where.
        pos: Pos,
        /// The key.
        key: String,
    },
    /// A check ID that does not exist.
    #[error("line {}: unknown check {id:?} (see `lameduck lint --list`)", pos.line)]
    UnknownCheck {
        /// Where.
        pos: Pos,
        /// The ID.
        id: String,
    },
    /// A value of the wrong shape.
    #[error("line {}: {key}: {message}", pos.line)]
    InvalidValue {
        /// Where.
        pos: Pos,
        /// The key.
        key: String,
        /// What was expected.
        message: String,
    },
}

impl Config {
    /// Parses the text of a `.lameduck.yaml`. A file without a `lint:` section is the default.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let Some(doc) = yaml::parse_stream(text).into_iter().next() else {
            return Ok(config);
        };
        let root = doc.root.map_err(|e| ConfigError::Syntax {
            pos: e.pos,
            message: e.message,
        })?;
        let Some(lint) = root.get("lint") else {
            return Ok(config);
        };
        for entry in lint.entries() {
            let key = entry.key.as_str().unwrap_or("");
            let pos = entry.key.pos;
            let invalid = |message: &str| ConfigError::InvalidValue {
                pos,
                key: key.to_owned(),
                message: message.to_owned(),
            };
            match key {
                "failOn" => {
                    let s = entry.value.as_str().unwrap_or("");
                    config.fail_on = Some(
                        s.parse()
                            .map_err(|_| invalid("expected info, warning or error"))?,
                    );
                }
                "disable" => {
                    for item in entry.value.items() {
                        let id = known_check(item)?;
                        config.severity.insert(id, None);
                    }
                }
                "severity" => {
                    for e in entry.value.entries() {
                        let id = known_check(&e.key)?;
                        let level = e.value.as_str().unwrap_or("");
                        let severity = match level {
                            "off" | "disable" | "disabled" => None,
                            other => {
                                Some(other.parse().map_err(|_| ConfigError::InvalidValue {
                                    pos: e.value.pos,
                                    key: id.clone(),
                                    message: "expected info, warning, error or off".to_owned(),
                                })?)
                            }
                        };
                        config.severity.insert(id, severity);
                    }
                }
                "graceMarginSeconds" => {
                    config.grace_margin = non_negative(&entry.value)
                        .ok_or_else(|| invalid("expected a number of seconds"))?;
                }
                "slowStartSeconds" => {
                    config.slow_start = non_negative(&entry.value)
                        .ok_or_else(|| invalid("expected a number of seconds"))?;
                }
                other => {
                    return Err(ConfigError::UnknownKey {
                        pos,
                        key: other.to_owned(),
                    });
                }
            }
        }
        Ok(config)
    }

    /// The severity of check `id` after configuration (`None`: disabled).
    pub fn severity_of(&self, id: &str, default: Severity) -> Option<Severity> {
        self.severity.get(id).copied().unwrap_or(Some(default))
    }
}

fn known_check(node: &Node) -> Result<String, ConfigError> {
    let id = node.as_str().unwrap_or("");
    if checks::find(id).is_some() {
        Ok(id.to_owned())
    } else {
        Err(ConfigError::UnknownCheck {
            pos: node.pos,
            id: id.to_owned(),
        })
    }
}

fn non_negative(node: &Node) -> Option<f64> {
    node.as_f64().filter(|v| *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_setting() {
        let c = Config::parse(
            "verify: {}\nlint:\n  failOn: error\n  disable: [pdb-missing]\n  severity:\n    single-replica: error\n    recreate-strategy: off\n  graceMarginSeconds: 5\n",
        )
        .unwrap();
        assert_eq!(c.fail_on, Some(Severity::Error));
        assert_eq!(c.severity_of("pdb-missing", Severity::Warning), None);
        assert_eq!(
            c.severity_of("single-replica", Severity::Warning),
            Some(Severity::Error)
        );
        assert_eq!(c.severity_of("recreate-strategy", Severity::Warning), None);
        assert_eq!(
            c.severity_of("no-shutdown-delay", Severity::Error),
            Some(Severity::Error)
        );
        assert_eq!(c.grace_margin, 5.0);
    }

    #[test]
    fn typos_are_errors_with_lines() {
        let e = Config::parse("lint:\n  disable: [pdb-mising]\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnknownCheck { id, pos } if id == "pdb-mising" && pos.line == 2),
            "{e:?}"
        );
        let e = Config::parse("lint:\n  failon: error\n").unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { .. }));
        let e = Config::parse("lint:\n  severity: {single-replica: loud}\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected info, warning, error or off")
        );
        assert!(Config::parse("lint: [\n").is_err());
    }

    #[test]
    fn empty_file_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("# nothing\n").unwrap(), Config::default());
    }
}
