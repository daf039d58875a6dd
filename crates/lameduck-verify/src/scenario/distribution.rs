//! Delay distributions (propagation, kubelet notice): checks, bounds and the flag syntax.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Dur, parse_duration};

/// The distribution of a delay (router propagation, kubelet notice).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Distribution {
    /// Always the same delay.
    Fixed(Dur),
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lower bound.
        min: Dur,
        /// Upper bound.
        max: Dur,
    },
    /// Log-normal with the given median and 99th percentile.
    Lognormal {
        /// Median delay.
        median: Dur,
        /// 99th percentile (must be ≥ median).
        p99: Dur,
    },
}

impl Distribution {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::Fixed(_) => Ok(()),
            Self::Uniform { min, max } if min > max => Err(format!(
                "uniform propagation needs min ≤ max, got min {min} > max {max}"
            )),
            Self::Lognormal { median, p99 } if p99 < median || median.0.is_zero() => Err(format!(
                "lognormal needs 0 < median ≤ p99, got median {median}, p99 {p99}"
            )),
            _ => Ok(()),
        }
    }

    /// A bound that covers almost every draw (the max, or the p99.9 of a log-normal), used to
    /// size cool-down waits.
    #[must_use]
    pub fn upper(&self) -> Duration {
        match *self {
            Self::Fixed(d) => d.0,
            Self::Uniform { max, .. } => max.0,
            Self::Lognormal { median, p99 } => {
                let sigma = (p99.secs() / median.secs()).ln() / 2.326_348;
                Duration::from_secs_f64((median.secs() * (3.090_232 * sigma).exp()).min(3600.0))
            }
        }
    }

    /// Parses the flag syntax: `fixed:1s`, `uniform:0.5s..3s`, `lognormal:1s,5s` (median, p99).
    pub fn parse_flag(text: &str) -> Result<Self, String> {
        let (kind, rest) = text.split_once(':').unwrap_or(("fixed", text));
        let d = match kind.trim() {
            "fixed" => Self::Fixed(Dur(parse_duration(rest)?)),
            "uniform" => {
                let (a, b) = rest
                    .split_once("..")
                    .ok_or_else(|| format!("uniform needs MIN..MAX, got {rest:?}"))?;
                Self::Uniform {
                    min: Dur(parse_duration(a)?),
                    max: Dur(parse_duration(b)?),
                }
            }
            "lognormal" => {
                let (a, b) = rest
                    .split_once(',')
                    .ok_or_else(|| format!("lognormal needs MEDIAN,P99, got {rest:?}"))?;
                Self::Lognormal {
                    median: Dur(parse_duration(a)?),
                    p99: Dur(parse_duration(b)?),
                }
            }
            other => {
                return Err(format!(
                    "unknown distribution {other:?} (fixed, uniform, lognormal)"
                ));
            }
        };
        d.validate()?;
        Ok(d)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(d) => write!(f, "fixed {d}"),
            Self::Uniform { min, max } => write!(f, "uniform {min}–{max}"),
            Self::Lognormal { median, p99 } => write!(f, "lognormal median {median} p99 {p99}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_distributions() {
        assert_eq!(
            Distribution::parse_flag("uniform:0.5s..3s").unwrap(),
            Distribution::Uniform {
                min: Dur(Duration::from_millis(500)),
                max: Dur(Duration::from_secs(3))
            }
        );
        assert!(Distribution::parse_flag("lognormal:2s,1s").is_err());
        assert_eq!(
            Distribution::parse_flag("2s").unwrap(),
            Distribution::Fixed(Dur(Duration::from_secs(2)))
        );
    }
}
