//! The value syntaxes shared by files and flags: durations, counts or percentages, signals.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// A duration written as `500ms`, `3s`, `1m 30s` or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Seconds as a float.
    #[must_use]
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{}ms", ms)
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

/// Parses a duration with lameduck's one grammar (`500ms`, `3s`, `1m30s`, `2` for seconds),
/// up to a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = lameduck_settings::parse_duration_value(text).map_err(|e| e.to_string())?;
    secs_to_duration(duration.as_secs_f64())
}

fn secs_to_duration(secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && (0.0..=86_400.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("duration {secs} s is out of range (0 to 1 day)"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => secs_to_duration(n).map(Dur).map_err(de::Error::custom),
            Raw::Text(t) => parse_duration(&t).map(Dur).map_err(de::Error::custom),
        }
    }
}

/// A count or a percentage of replicas (`1`, `"25%"`), as Kubernetes' `IntOrString`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    /// An absolute count.
    Int(u32),
    /// A percentage of `replicas`.
    Percent(u32),
}

impl IntOrPercent {
    /// Resolves against `replicas`, rounding up (maxSurge) or down (maxUnavailable).
    #[must_use]
    pub fn resolve(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Self::Int(n) => n,
            Self::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let v = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(v).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for IntOrPercent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {s:?}"))?;
            if p > 100 {
                return Err(format!("percentage {s:?} is above 100%"));
            }
            Ok(Self::Percent(p))
        } else {
            s.parse()
                .map(Self::Int)
                .map_err(|_| format!("expected a count or a percentage, got {s:?}"))
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self::Int(n)),
            Raw::Text(t) => t.parse().map_err(de::Error::custom),
        }
    }
}

/// A scenario's `stop_signal`, read as `lameduck run --stop-signal` reads it.
pub fn parse_signal(name: &str) -> Result<nix::sys::signal::Signal, String> {
    lameduck_settings::parse_signal(name).map_err(|error| format!("stop_signal: {error}"))
}
