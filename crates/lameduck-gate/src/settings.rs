//! What the gate waits for, and for how long. Per-pod annotations can tighten or loosen the
//! hold; everything else is a flag of `lameduck gate serve`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

/// The label (on a pod or its namespace) that opts pods in: `lameduck.dev/gate: enabled`.
pub const OPT_IN_LABEL: &str = "lameduck.dev/gate";
/// The value of [`OPT_IN_LABEL`] that opts in.
pub const OPT_IN_VALUE: &str = "enabled";
/// A pod running lameduck (library or `lameduck run`) names its admin port here; the gate then
/// drives its drain through `/drain`.
pub const ADMIN_PORT_ANNOTATION: &str = "lameduck.dev/admin-port";
/// The readiness gate condition the gate sets to False for pods without lameduck.
pub const SERVING_CONDITION: &str = "lameduck.dev/serving";
/// A URL the gate POSTs to until it answers 200 (e.g. a leader transfer); `$(POD_IP)` in it is
/// replaced by the pod's IP.
pub const PREPARE_URL_ANNOTATION: &str = "lameduck.dev/prepare-url";
/// The longest the gate holds this pod's deletion (a duration, e.g. `10m`).
pub const MAX_HOLD_ANNOTATION: &str = "lameduck.dev/max-hold";
/// `best-effort` (let the pod go at the max hold) or `strict` (keep refusing).
pub const HOLD_POLICY_ANNOTATION: &str = "lameduck.dev/hold-policy";

/// What happens when a pod is still not safe at its max hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldPolicy {
    /// Let the deletion through (with an Event): availability of the rollout wins.
    BestEffort,
    /// Keep refusing: "graceful or not at all" (an Event and a metric say so).
    Strict,
}

impl HoldPolicy {
    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldPolicy::BestEffort => "best-effort",
            HoldPolicy::Strict => "strict",
        }
    }
}

/// The gate's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// After every EndpointSlice shows the pod not ready, how long the slowest consumer may
    /// take to apply it. kube-proxy applies an EndpointSlice change within its
    /// `--iptables-min-sync-period` / `--nftables-min-sync-period` (1 s by default); 2 s leaves
    /// it a second of slack. Raise it for ingress controllers or meshes that sync slower.
    pub sync_margin: Duration,
    /// The longest a DELETE is held inside one webhook call (also capped at the call's own
    /// timeout less a second). After it the DELETE is denied with what is pending, and the
    /// caller's retry comes back.
    pub hold_limit: Duration,
    /// If no deletion or eviction of a pod taken out of traffic follows for this long (a
    /// budget refused the eviction, the caller gave up), the pod is put back in service.
    pub cancel_after: Duration,
    /// The default per-pod max hold ([`MAX_HOLD_ANNOTATION`]).
    pub max_hold: Duration,
    /// The default per-pod policy at the max hold ([`HOLD_POLICY_ANNOTATION`]).
    pub hold_policy: HoldPolicy,
    /// A call to a pod's admin endpoint or prepare hook that takes longer fails.
    pub pod_call_timeout: Duration,
    /// The gate's own namespace and the label value (`app.kubernetes.io/name`) of its own
    /// pods, which it never holds.
    pub own_namespace: Option<String>,
    /// See [`Settings::own_namespace`].
    pub own_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sync_margin: Duration::from_secs(2),
            hold_limit: Duration::from_secs(25),
            cancel_after: Duration::from_secs(30),
            max_hold: Duration::from_secs(300),
            hold_policy: HoldPolicy::BestEffort,
            pod_call_timeout: Duration::from_secs(2),
            own_namespace: None,
            own_name: "lameduck-gate".to_owned(),
        }
    }
}

impl Settings {
    /// Refuses settings that contradict each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.cancel_after <= self.hold_limit {
            return Err(format!(
                "cancel-after ({}) must be longer than hold-limit ({}): a DELETE held inside one call \
                 is a request still coming, and must not be put back meanwhile",
                humantime::format_duration(self.cancel_after),
                humantime::format_duration(self.hold_limit)
            ));
        }
        if self.sync_margin.is_zero() {
            return Err("sync-margin must be more than 0: consumers apply an EndpointSlice change after a delay".into());
        }
        Ok(())
    }
}

/// A pod's own hold settings, from its annotations, falling back to the gate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodHold {
    /// The longest the pod is held.
    pub max_hold: Duration,
    /// What happens then.
    pub policy: HoldPolicy,
}

impl PodHold {
    /// Reads the annotations; a value that does not parse is reported, and the default used.
    pub fn of(pod: &Pod, settings: &Settings) -> (Self, Vec<String>) {
        let annotations = pod.metadata.annotations.as_ref();
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        let mut warnings = Vec::new();
        let max_hold = match get(MAX_HOLD_ANNOTATION).map(humantime::parse_duration) {
            None => settings.max_hold,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                warnings.push(format!(
                    "{MAX_HOLD_ANNOTATION}: not a duration ({e}); using {}",
                    humantime::format_duration(settings.max_hold)
                ));
                settings.max_hold
            }
        };
        let policy = match get(HOLD_POLICY_ANNOTATION) {
            None => settings.hold_policy,
            Some("strict") => HoldPolicy::Strict,
            Some("best-effort") => HoldPolicy::BestEffort,
            Some(other) => {
                warnings.push(format!(
                    "{HOLD_POLICY_ANNOTATION}: {other:?} is neither best-effort nor strict; using {}",
                    settings.hold_policy.as_str()
                ));
                settings.hold_policy
            }
        };
        (Self { max_hold, policy }, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(annotations: &[(&str, &str)]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        pod
    }

    #[test]
    fn annotations_override_the_defaults_and_bad_values_fall_back_with_a_warning() {
        let settings = Settings::default();
        let (hold, warnings) = PodHold::of(
            &pod_with(&[
                (MAX_HOLD_ANNOTATION, "10m"),
                (HOLD_POLICY_ANNOTATION, "strict"),
            ]),
            &settings,
        );
        assert_eq!(hold.max_hold, Duration::from_secs(600));
        assert_eq!(hold.policy, HoldPolicy::Strict);
        assert!(warnings.is_empty());

        let (hold, warnings) = PodHold::of(
            &pod_with(&[
                (MAX_HOLD_ANNOTATION, "a while"),
                (HOLD_POLICY_ANNOTATION, "gentle"),
            ]),
            &settings,
        );
        assert_eq!(hold.max_hold, settings.max_hold);
        assert_eq!(hold.policy, settings.hold_policy);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("not a duration"), "{warnings:?}");
        assert!(warnings[1].contains("\"gentle\""), "{warnings:?}");
    }

    #[test]
    fn cancel_after_must_outlast_a_held_delete() {
        assert!(Settings::default().validate().is_ok());
        let short = Settings {
            cancel_after: Duration::from_secs(10),
            ..Settings::default()
        };
        let error = short
            .validate()
            .expect_err("10 s cancel-after with a 25 s hold limit");
        assert!(error.contains("hold-limit"), "{error}");
        let no_margin = Settings {
            sync_margin: Duration::ZERO,
            ..Settings::default()
        };
        assert!(no_margin.validate().is_err());
    }
}
