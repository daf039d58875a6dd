//! The checks a scenario needs once flags were applied over its file.

use super::{Scenario, ScenarioError, parse_signal};

impl Scenario {
    /// Checks what a file cannot check alone (after flags were applied).
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: self.source.clone(),
            line: 0,
            message,
        };
        if self.command.is_empty() {
            return Err(invalid(
                "no command: give `-- CMD ...`, `command:` in the scenario file, or --demo".into(),
            ));
        }
        if !self.command.iter().any(|a| a.contains("{port}"))
            && !self.env.values().any(|v| v.contains("{port}"))
        {
            return Err(invalid(format!(
                "the command {:?} has no {{port}} placeholder: each replica must listen on its own port",
                self.command.join(" ")
            )));
        }
        if self.replicas == 0 {
            return Err(invalid("replicas must be at least 1".into()));
        }
        if self.max_surge.resolve(self.replicas, true) == 0
            && self.max_unavailable.resolve(self.replicas, false) == 0
        {
            return Err(invalid(
                "maxSurge and maxUnavailable cannot both be 0".into(),
            ));
        }
        self.propagation.validate().map_err(invalid)?;
        self.kubelet_delay.validate().map_err(invalid)?;
        parse_signal(&self.stop_signal).map_err(invalid)?;
        if !(0.0..=1.0).contains(&self.load.slow_share) {
            return Err(invalid(format!(
                "slow share is a probability (0 to 1), got {}",
                self.load.slow_share
            )));
        }
        if !(self.load.rate.is_finite() && self.load.rate > 0.0) {
            return Err(invalid("load rate must be above 0".into()));
        }
        if self.routers.is_empty() {
            return Err(invalid("no routers".into()));
        }
        Ok(())
    }
}
