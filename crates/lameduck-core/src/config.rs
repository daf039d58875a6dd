//! Drain settings: defaults, environment variables, validation.
//!
//! Every setting has an environment variable, read in one place ([`Settings::from_lookup`]) so
//! tests can feed it a map instead of the process environment.

use std::time::Duration;

/// A problem with a setting, naming the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value that is not a duration.
    #[error("{setting}: {value:?} is not a duration (use e.g. 5s, 500ms, 1m or plain seconds)")]
    Unparsable {
        /// The setting (environment variable or field name).
        setting: String,
        /// The value as given.
        value: String,
    },
    /// A negative duration.
    #[error("{setting}: {value:?} is negative; durations must be zero or more")]
    Negative {
        /// The setting.
        setting: String,
        /// The value as given.
        value: String,
    },
    /// `min_wait` longer than `max_wait`.
    #[error(
        "min_wait ({min:?}) is longer than max_wait ({max:?}); LAMEDUCK_MIN_WAIT must be <= LAMEDUCK_MAX_WAIT"
    )]
    MinAboveMax {
        /// The minimum wait.
        min: Duration,
        /// The maximum wait.
        max: Duration,
    },
    /// The grace period cannot hold the phases.
    #[error(
        "grace period too small (LAMEDUCK_GRACE_SECONDS): {grace:?} - preStop {prestop:?} - safety margin {margin:?} \
         leaves {left:?}, but min_wait {min_wait:?} + close timeout {close:?} need {needed:?}"
    )]
    BudgetTooSmall {
        /// The grace period.
        grace: Duration,
        /// Time the preStop hook uses before the signal.
        prestop: Duration,
        /// The safety margin.
        margin: Duration,
        /// What is left for lameduck.
        left: Duration,
        /// The minimum drain wait.
        min_wait: Duration,
        /// The time reserved for closing.
        close: Duration,
        /// What the phases need.
        needed: Duration,
    },
}

/// Parses `5s`, `500ms`, `1m30s`, or a plain number of seconds (`2.5`).
///
/// `setting` names the setting in the error.
pub fn parse_duration(setting: &str, value: &str) -> Result<Duration, ConfigError> {
    let trimmed = value.trim();
    let err = || ConfigError::Unparsable {
        setting: setting.to_owned(),
        value: value.to_owned(),
    };
    if trimmed.starts_with('-') {
        return Err(ConfigError::Negative {
            setting: setting.to_owned(),
            value: value.to_owned(),
        });
    }
    if let Ok(secs) = trimmed.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| err());
    }
    humantime::parse_duration(trimmed).map_err(|_| err())
}

/// The drain settings as given, before validation. Defaults are documented in `docs/defaults.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `terminationGracePeriodSeconds` of the pod (`LAMEDUCK_GRACE_SECONDS`, default 30 s, the
    /// Kubernetes default). Kubernetes does not expose it to the pod, so it is configured.
    pub grace: Duration,
    /// Part of the grace period the preStop hook uses before the stop signal reaches us
    /// (`LAMEDUCK_PRESTOP_SECONDS`, default 0). Only applies when a signal starts the drain.
    pub prestop: Duration,
    /// Kept free at the end of the grace period so we exit before SIGKILL
    /// (`LAMEDUCK_SAFETY_MARGIN`, default 2 s).
    pub safety_margin: Duration,
    /// Draining lasts at least this long (`LAMEDUCK_MIN_WAIT`, default 3 s).
    pub min_wait: Duration,
    /// Draining ends once no connection or request arrived for this long
    /// (`LAMEDUCK_QUIET_WINDOW`, default 1 s).
    pub quiet_window: Duration,
    /// Draining never lasts longer than this (`LAMEDUCK_MAX_WAIT`, default 20 s).
    pub max_wait: Duration,
    /// Reserved for Closing: in-flight requests and tasks finish within it
    /// (`LAMEDUCK_CLOSE_TIMEOUT`, default 5 s).
    pub close_timeout: Duration,
    /// At Closing, an idle connection is closed once it has been idle this long
    /// (`LAMEDUCK_IDLE_GRACE`, default 500 ms).
    pub idle_grace: Duration,
    /// At Closing, a connection that never sent a byte is closed after this long
    /// (`LAMEDUCK_FIRST_BYTE_GRACE`, default 1 s).
    pub first_byte_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            prestop: Duration::ZERO,
            safety_margin: Duration::from_secs(2),
            min_wait: Duration::from_secs(3),
            quiet_window: Duration::from_secs(1),
            max_wait: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            idle_grace: Duration::from_millis(500),
            first_byte_grace: Duration::from_secs(1),
        }
    }
}

/// Environment variables and the setting each one sets.
pub const ENV_VARS: [&str; 9] = [
    "LAMEDUCK_GRACE_SECONDS",
    "LAMEDUCK_PRESTOP_SECONDS",
    "LAMEDUCK_SAFETY_MARGIN",
    "LAMEDUCK_MIN_WAIT",
    "LAMEDUCK_QUIET_WINDOW",
    "LAMEDUCK_MAX_WAIT",
    "LAMEDUCK_CLOSE_TIMEOUT",
    "LAMEDUCK_IDLE_GRACE",
    "LAMEDUCK_FIRST_BYTE_GRACE",
];

impl Settings {
    /// Defaults overridden by `LAMEDUCK_*` values from `lookup` (the environment, or a map in
    /// tests). Empty values are treated as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        for var in ENV_VARS {
            let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            settings.set(var, &value)?;
        }
        Ok(settings)
    }

    /// Sets one setting by its environment-variable name (also used for flags).
    pub fn set(&mut self, var: &str, value: &str) -> Result<(), ConfigError> {
        let parsed = parse_duration(var, value)?;
        let slot = match var {
            "LAMEDUCK_GRACE_SECONDS" => &mut self.grace,
            "LAMEDUCK_PRESTOP_SECONDS" => &mut self.prestop,
            "LAMEDUCK_SAFETY_MARGIN" => &mut self.safety_margin,
            "LAMEDUCK_MIN_WAIT" => &mut self.min_wait,
            "LAMEDUCK_QUIET_WINDOW" => &mut self.quiet_window,
            "LAMEDUCK_MAX_WAIT" => &mut self.max_wait,
            "LAMEDUCK_CLOSE_TIMEOUT" => &mut self.close_timeout,
            "LAMEDUCK_IDLE_GRACE" => &mut self.idle_grace,
            "LAMEDUCK_FIRST_BYTE_GRACE" => &mut self.first_byte_grace,
            other => {
                return Err(ConfigError::Unparsable {
                    setting: other.to_owned(),
                    value: "unknown setting".to_owned(),
                });
            }
        };
        *slot = parsed;
        Ok(())
    }

    /// Checks the settings fit together and into the grace period.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.min_wait > self.max_wait {
            return Err(ConfigError::MinAboveMax {
                min: self.min_wait,
                max: self.max_wait,
            });
        }
        let left = self
            .grace
            .saturating_sub(self.prestop)
            .saturating_sub(self.safety_margin);
        let needed = self.min_wait + self.close_timeout;
        if left < needed {
            return Err(ConfigError::BudgetTooSmall {
                grace: self.grace,
                prestop: self.prestop,
                margin: self.safety_margin,
                left,
                min_wait: self.min_wait,
                close: self.close_timeout,
                needed,
            });
        }
        Ok(Config { settings: self })
    }
}

/// Validated settings: `min_wait <= max_wait` and the phases fit in the grace period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    settings: Settings,
}

impl Config {
    /// Reads and validates the `LAMEDUCK_*` environment variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Settings::from_lookup(|k| std::env::var(k).ok())?.validate()
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())?.validate()
    }

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        assert_eq!(parse_duration("x", "5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("x", "250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("x", "1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("x", "2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("x", " 30 "), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn bad_durations_name_the_setting() {
        let err = from(&[("LAMEDUCK_MIN_WAIT", "soon")]).unwrap_err();
        assert!(
            err.to_string().starts_with("LAMEDUCK_MIN_WAIT: \"soon\""),
            "{err}"
        );
        let err = from(&[("LAMEDUCK_GRACE_SECONDS", "-5")]).unwrap_err();
        assert!(
            matches!(err, ConfigError::Negative { ref setting, .. } if setting == "LAMEDUCK_GRACE_SECONDS")
        );
        let err = from(&[("LAMEDUCK_MAX_WAIT", "NaN")]).unwrap_err();
        assert!(matches!(err, ConfigError::Unparsable { .. }), "{err}");
        let err = from(&[("LAMEDUCK_MAX_WAIT", "1e300")]).unwrap_err();
        assert!(matches!(err, ConfigError::Unparsable { .. }), "{err}");
    }

    #[test]
    fn min_above_max_is_rejected() {
        let err = from(&[("LAMEDUCK_MIN_WAIT", "10s"), ("LAMEDUCK_MAX_WAIT", "5s")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("LAMEDUCK_MIN_WAIT must be <= LAMEDUCK_MAX_WAIT"),
            "{err}"
        );
    }

    #[test]
    fn budget_too_small_explains_the_numbers() {
        let err = from(&[("LAMEDUCK_GRACE_SECONDS", "8")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("LAMEDUCK_GRACE_SECONDS"), "{text}");
        assert!(text.contains("leaves 6s"), "{text}");
        assert!(text.contains("need 8s"), "{text}");
        // preStop time counts against the grace period too.
        assert!(from(&[("LAMEDUCK_PRESTOP_SECONDS", "25")]).is_err());
        assert!(from(&[("LAMEDUCK_GRACE_SECONDS", "10")]).is_ok());
    }

    #[test]
    fn empty_values_mean_default() {
        assert_eq!(from(&[("LAMEDUCK_MIN_WAIT", "")]), Ok(Config::default()));
    }
}
