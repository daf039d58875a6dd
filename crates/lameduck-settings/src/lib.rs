//! What a user configures for lameduck, parsed and checked, with no runtime and no I/O: the
//! drain settings (their one list, defaults, environment variables, validation, and the split of
//! the grace period they lead to), the duration and signal grammar, the drain proxies' settings,
//! and (feature `cli`) `lameduck run`'s command line.
//!
//! Every consumer reads settings through this crate: the library and `lameduck run` (through
//! `lameduck-core`), and `lameduck lint`, which must call a value invalid exactly when `lameduck
//! run` would refuse it. [`Settings::budget`] is the budget arithmetic as offsets from the
//! drain's start, which `lameduck-core`'s `BudgetPlan` turns into deadlines and
//! [`Settings::validate`] checks, so the two cannot disagree.
//!
//! Every setting has an environment variable, read in one place ([`Settings::from_lookup`]) so
//! tests and lint can feed it a map instead of the process environment.

use std::str::FromStr;
use std::time::Duration;

pub use nix::sys::signal::Signal;

pub mod app;
#[cfg(feature = "cli")]
pub mod cli;
pub mod proxy_config;
pub mod proxy_spec;

/// Time given to force-closed connections and tasks to notice before the process exits.
pub const FORCE_GRACE: Duration = Duration::from_millis(250);

/// A problem with a setting, naming the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value that is not a duration, or a negative one.
    #[error("{setting}: {error}")]
    Duration {
        /// The setting (environment variable or field name).
        setting: String,
        /// What is wrong with the value.
        error: DurationError,
    },
    /// A name that is no setting.
    #[error("{0} is not a drain setting")]
    Unknown(String),
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
         - force-close grace {force:?} leaves {left:?}, but min_wait {min_wait:?} + close timeout {close:?} need {needed:?}",
        force = FORCE_GRACE
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

/// A value that is not a duration: the one wording every flag, variable and file reports.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number of seconds nor a duration with units.
    #[error("{0:?} is not a duration (use e.g. 5s, 500ms, 1m30s or plain seconds)")]
    Unparsable(String),
    /// Below zero.
    #[error("{0:?} is negative; durations must be zero or more")]
    Negative(String),
}

/// Parses `5s`, `500ms`, `1m30s`, `1m 30s`, or a plain number of seconds (`2.5`): the duration
/// grammar of every lameduck setting, flag and scenario field.
pub fn parse_duration_value(value: &str) -> Result<Duration, DurationError> {
    let trimmed = value.trim();
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative(value.to_owned()));
    }
    let unparsable = || DurationError::Unparsable(value.to_owned());
    if let Ok(secs) = trimmed.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| unparsable());
    }
    humantime::parse_duration(trimmed).map_err(|_| unparsable())
}

/// Parses `SIGTERM`, `TERM`, `term` or `15`: the one signal grammar of `lameduck run
/// --stop-signal` and a verify scenario's `stop_signal`.
pub fn parse_signal(value: &str) -> Result<Signal, String> {
    let trimmed = value.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("{value:?} is not a signal number"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map_err(|_| format!("{value:?} is not a signal name (e.g. SIGTERM, SIGQUIT, SIGINT)"))
}

/// [`parse_duration_value`] for setting `setting`, which the error names.
pub fn parse_duration(setting: &str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration_value(value).map_err(|error| ConfigError::Duration {
        setting: setting.to_owned(),
        error,
    })
}

/// Every drain setting, once: for each, the longer doc of its field, then its name, environment
/// variable, `lameduck run` flag, default and one-line doc.
///
/// `drain_settings!(then)` calls the caller's macro `then!` with the rows, so the struct
/// [`Settings`], the table [`SETTINGS`] (which `lameduck run`'s flags, `/metrics`, lint and the
/// docs follow) and the library builder's setters are all generated from this one list.
#[macro_export]
macro_rules! drain_settings {
    ($then:ident) => {
        $then! {
            /// `terminationGracePeriodSeconds` of the pod (the Kubernetes default is 30 s).
            /// Kubernetes does not expose it to the pod, so it is configured.
            grace, "LAMEDUCK_GRACE_SECONDS", "--grace", ::std::time::Duration::from_secs(30),
                "the pod's `terminationGracePeriodSeconds`";
            /// Part of the grace period the preStop hook uses before the stop signal reaches
            /// us. Only applies when a signal starts the drain.
            prestop, "LAMEDUCK_PRESTOP_SECONDS", "--prestop", ::std::time::Duration::ZERO,
                "grace used by a preStop hook before SIGTERM (not with `lameduck wait`)";
            /// Kept free at the end of the grace period so we exit before SIGKILL.
            safety_margin, "LAMEDUCK_SAFETY_MARGIN", "--safety-margin",
                ::std::time::Duration::from_secs(2), "kept free before the kubelet's SIGKILL";
            /// Draining lasts at least this long.
            min_wait, "LAMEDUCK_MIN_WAIT", "--min-wait", ::std::time::Duration::from_secs(3),
                "shortest drain wait";
            /// Draining ends once no connection or request arrived for this long.
            quiet_window, "LAMEDUCK_QUIET_WINDOW", "--quiet-window",
                ::std::time::Duration::from_secs(1), "drain ends after this long without arrivals";
            /// Draining never lasts longer than this.
            max_wait, "LAMEDUCK_MAX_WAIT", "--max-wait", ::std::time::Duration::from_secs(20),
                "longest drain wait";
            /// Reserved for Closing: in-flight requests and tasks finish within it, then the
            /// app (under `lameduck run`) stops.
            close_timeout, "LAMEDUCK_CLOSE_TIMEOUT", "--close-timeout",
                ::std::time::Duration::from_secs(5), "in-flight work, then the app's own stop";
            /// At Closing, an idle connection is closed once it has been idle this long.
            idle_grace, "LAMEDUCK_IDLE_GRACE", "--idle-grace",
                ::std::time::Duration::from_millis(500),
                "at Closing, idle connections close after this";
            /// At Closing, a connection that never sent a byte is closed after this long.
            first_byte_grace, "LAMEDUCK_FIRST_BYTE_GRACE", "--first-byte-grace",
                ::std::time::Duration::from_secs(1),
                "at Closing, silent connections close after this";
        }
    };
}

/// One drain setting, as every consumer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The field of [`Settings`], and its `name` label on `/metrics`.
    pub name: &'static str,
    /// The environment variable (also the name errors use).
    pub env: &'static str,
    /// `lameduck run`'s flag.
    pub flag: &'static str,
    /// The default.
    pub default: Duration,
    /// One line on what it does.
    pub doc: &'static str,
}

impl SettingSpec {
    /// The default as the docs and `--help` write it (`30s`, `500ms`, `0s`).
    pub fn default_text(&self) -> String {
        humantime::format_duration(self.default).to_string()
    }
}

macro_rules! define_settings {
    ($($(#[doc = $long:literal])* $name:ident, $env:literal, $flag:literal, $default:expr, $doc:literal;)*) => {
        /// The drain settings as given, before validation.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Settings {
            $($(#[doc = $long])* pub $name: Duration,)*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// Every drain setting: the one table the library, `lameduck run`, `lameduck lint` and
        /// the docs' settings tables follow (tests hold the docs to it).
        pub const SETTINGS: &[SettingSpec] = &[
            $(SettingSpec { name: stringify!($name), env: $env, flag: $flag, default: $default, doc: $doc },)*
        ];

        impl Settings {
            fn slot(&mut self, var: &str) -> Option<&mut Duration> {
                match var {
                    $($env => Some(&mut self.$name),)*
                    _ => None,
                }
            }
        }
    };
}

drain_settings!(define_settings);

/// The setting a `lameduck run` flag sets, by its flag.
pub fn setting_of_flag(flag: &str) -> Option<&'static SettingSpec> {
    SETTINGS.iter().find(|spec| spec.flag == flag)
}

impl Settings {
    /// Defaults overridden by `LAMEDUCK_*` values from `lookup` (the environment, or a map in
    /// tests). Empty values are treated as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        for spec in SETTINGS {
            let Some(value) = lookup(spec.env).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            settings.set(spec.env, &value)?;
        }
        Ok(settings)
    }

    /// Sets one setting by its environment-variable name (also used for flags).
    pub fn set(&mut self, var: &str, value: &str) -> Result<(), ConfigError> {
        self.put(var, parse_duration(var, value)?)
    }

    /// Sets one setting, already parsed, by its environment-variable name.
    pub fn put(&mut self, var: &str, value: Duration) -> Result<(), ConfigError> {
        let slot = self
            .slot(var)
            .ok_or_else(|| ConfigError::Unknown(var.to_owned()))?;
        *slot = value;
        Ok(())
    }

    /// One setting by its environment-variable name.
    pub fn get(&self, var: &str) -> Option<Duration> {
        let mut copy = self.clone();
        copy.slot(var).map(|slot| *slot)
    }

    /// How the grace period splits for a drain that starts `spent` after the kubelet's
    /// countdown began (the preStop time for a drain started by the signal, zero for one started
    /// by `POST /drain` or in code). The one place this arithmetic is done.
    pub fn budget(&self, spent: Duration) -> DrainBudget {
        let exit_by = self
            .grace
            .saturating_sub(self.safety_margin)
            .saturating_sub(spent);
        let force_close_at = exit_by.saturating_sub(FORCE_GRACE);
        let drain_deadline = self
            .max_wait
            .min(force_close_at.saturating_sub(self.close_timeout));
        DrainBudget {
            drain_deadline,
            force_close_at,
            exit_by,
        }
    }

    /// Checks the settings fit together and into the grace period: the drain wait a signal
    /// would get ([`Settings::budget`] after the preStop time) must hold `min_wait`.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.min_wait > self.max_wait {
            return Err(ConfigError::MinAboveMax {
                min: self.min_wait,
                max: self.max_wait,
            });
        }
        let budget = self.budget(self.prestop);
        if budget.drain_deadline < self.min_wait {
            return Err(ConfigError::BudgetTooSmall {
                grace: self.grace,
                prestop: self.prestop,
                margin: self.safety_margin,
                left: budget.force_close_at,
                min_wait: self.min_wait,
                close: self.close_timeout,
                needed: self.min_wait + self.close_timeout,
            });
        }
        Ok(Config { settings: self })
    }
}

/// How long after Closing `lameduck run` waits for its proxies' tunnels to settle: idle
/// connections close `idle_grace` into Closing, and this much more lets their closes land.
pub const TUNNEL_SETTLE: Duration = Duration::from_millis(50);

/// When `lameduck run` sends its app the stop signal, as offsets from Closing: once nothing is in
/// flight, but not before the proxies' idle connections had their `idle_grace` (plus
/// [`TUNNEL_SETTLE`]) nor later than half the close timeout, so the app keeps the other half
/// to stop in before the forced close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppStop {
    /// What is left after this is an upgraded tunnel the app itself must close.
    pub settled: Duration,
    /// The stop signal goes out by then whatever is in flight.
    pub signal_by: Duration,
}

impl Settings {
    /// The app-stop rules of `lameduck run` for these settings.
    pub fn app_stop(&self) -> AppStop {
        AppStop {
            settled: self.idle_grace + TUNNEL_SETTLE,
            signal_by: self.close_timeout / 2,
        }
    }
}

/// The deadlines of a drain, as offsets from its start.
///
/// ```text
/// drain start ── drain wait (min..max, quiet) ── Closing ── force close ── exit by ── SIGKILL
///                       ≤ drain_deadline          ≤ force_close_at   FORCE_GRACE  safety margin
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainBudget {
    /// The drain wait ends by then whatever the traffic (at most `max_wait`).
    pub drain_deadline: Duration,
    /// What is still open is force-closed then.
    pub force_close_at: Duration,
    /// The process must have exited by then (the grace period's end less the safety margin).
    pub exit_by: Duration,
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
        assert!(matches!(
            err,
            ConfigError::Duration { ref setting, error: DurationError::Negative(_) }
                if setting == "LAMEDUCK_GRACE_SECONDS"
        ));
        let err = from(&[("LAMEDUCK_MAX_WAIT", "NaN")]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Duration {
                    error: DurationError::Unparsable(_),
                    ..
                }
            ),
            "{err}"
        );
        let err = from(&[("LAMEDUCK_MAX_WAIT", "1e300")]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Duration {
                    error: DurationError::Unparsable(_),
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("quit"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_signal("2"), Ok(Signal::SIGINT));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("99").is_err());
        assert_eq!(
            parse_duration_value("1m 30s"),
            Ok(Duration::from_secs(90)),
            "humantime's spaced form"
        );
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
        assert!(text.contains("leaves 5.75s"), "{text}");
        assert!(text.contains("need 8s"), "{text}");
        // preStop time counts against the grace period too.
        assert!(from(&[("LAMEDUCK_PRESTOP_SECONDS", "25")]).is_err());
        // The force-close grace too: 10 - 2 - 0.25 leaves 7.75 s for 3 s + 5 s.
        assert!(from(&[("LAMEDUCK_GRACE_SECONDS", "10")]).is_err());
        assert!(from(&[("LAMEDUCK_GRACE_SECONDS", "10.25")]).is_ok());
    }

    #[test]
    fn validation_accepts_exactly_what_leaves_the_budget_its_minimum_wait() {
        // Every grace from 0 to 40 s in quarter seconds, with and without preStop time.
        for quarter in 0..=160_u32 {
            for prestop in [0, 5] {
                let settings = Settings {
                    grace: Duration::from_millis(u64::from(quarter) * 250),
                    prestop: Duration::from_secs(prestop),
                    ..Settings::default()
                };
                let budget = settings.budget(settings.prestop);
                let holds_min_wait = budget.drain_deadline >= settings.min_wait;
                assert_eq!(
                    settings.clone().validate().is_ok(),
                    holds_min_wait,
                    "{settings:?}"
                );
            }
        }
    }

    #[test]
    fn a_drain_started_without_the_signal_has_the_whole_grace() {
        let settings = Settings {
            prestop: Duration::from_secs(10),
            ..Settings::default()
        };
        // 30 - 2 (margin) - 0.25 (force grace) - 5 (close) = 22.75 s, capped at max_wait 20 s.
        assert_eq!(
            settings.budget(Duration::ZERO).drain_deadline,
            Duration::from_secs(20)
        );
        // After the preStop's 10 s: 12.75 s.
        assert_eq!(
            settings.budget(settings.prestop).drain_deadline,
            Duration::from_millis(12_750)
        );
        assert_eq!(
            settings.budget(settings.prestop).exit_by,
            Duration::from_secs(18)
        );
    }

    #[test]
    fn the_table_names_every_setting_once_with_its_default() {
        for spec in SETTINGS {
            assert!(spec.flag.starts_with("--") && spec.env.starts_with("LAMEDUCK_"));
            assert_eq!(setting_of_flag(spec.flag), Some(spec));
            assert_eq!(Settings::default().get(spec.env), Some(spec.default));
            assert_eq!(
                parse_duration_value(&spec.default_text()),
                Ok(spec.default),
                "the default as the docs write it reads back"
            );
        }
        // Setting each to a distinct value moves a distinct field: no two rows share a slot.
        let mut settings = Settings::default();
        for (n, spec) in (1_u64..).zip(SETTINGS) {
            settings.set(spec.env, &format!("{}ms", 1000 + n)).unwrap();
        }
        for (n, spec) in (1_u64..).zip(SETTINGS) {
            assert_eq!(
                settings.get(spec.env),
                Some(Duration::from_millis(1000 + n))
            );
        }
    }

    #[test]
    fn empty_values_mean_default() {
        assert_eq!(from(&[("LAMEDUCK_MIN_WAIT", "")]), Ok(Config::default()));
    }
}
