//! What the checks need to know about a workload: its pod template, containers, shutdown delay
//! (preStop and lameduck's own entrypoint) and rollout settings. Found by structure, so custom
//! resources embedding a pod template are covered too.

mod container;
mod lameduck_run;

use crate::source::Object;
use crate::yaml::{Entry, Node};
use container::container;
pub use container::{
    Container, DEFAULT_ADMIN_PORT, EnvVar, FieldError, LameduckRun, PortSpec, PortValue, PreStop,
    PreStopKind, ProbeHandler, ProbeSpec, ProxyPorts, Setting, probe_spec,
};

/// Annotation declaring how long the app drains after SIGTERM, in seconds.
pub const DRAIN_ANNOTATION: &str = "lameduck.dev/drain-seconds";

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE: f64 = 30.0;

/// How a workload runs its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A fixed or autoscaled number of replicas (Deployment, StatefulSet, ReplicaSet, Rollout,
    /// custom resources with `spec.replicas`).
    Replicated,
    /// One pod per node.
    DaemonSet,
    /// Run to completion (Job, CronJob).
    Batch,
    /// A bare Pod, or a custom resource without replicas.
    Single,
}

/// A workload: an object with a pod template.
#[derive(Debug)]
pub struct Workload<'a> {
    /// The object.
    pub object: &'a Object,
    /// How it runs pods.
    pub class: Class,
    /// The entry whose value is the pod spec (to point at it when a field is missing).
    pub pod_spec: &'a Entry,
    /// Labels of the pod template.
    pub labels: Vec<(&'a str, &'a str)>,
    /// Annotations of the pod template.
    pub template_annotations: Option<&'a Node>,
    /// The containers.
    pub containers: Vec<Container<'a>>,
}

/// Parses `5s`, `500ms`, `1m30s`, `1h`, or plain seconds (`2.5`) into seconds: lameduck's one
/// duration grammar (`lameduck_settings::parse_duration_value`), which `lameduck sleep` and `lameduck
/// run` read too.
pub fn parse_duration(text: &str) -> Option<f64> {
    lameduck_settings::parse_duration_value(text)
        .ok()
        .map(|duration| duration.as_secs_f64())
}

/// Formats seconds for messages: `5s`, `2.5s`.
pub fn secs(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}s", value.round() as i64)
    } else {
        format!("{:.1}s", value)
    }
}

/// Finds the pod template of `object`, if it has one.
pub fn workload(object: &Object) -> Option<Workload<'_>> {
    let root = &object.root;
    let (template_meta, pod_spec) = match object.kind.as_str() {
        "Pod" => (root.get("metadata"), root.entry("spec")?),
        "CronJob" => {
            let template = root.path(&["spec", "jobTemplate", "spec", "template"])?;
            (template.get("metadata"), template.entry("spec")?)
        }
        _ => {
            let template = root
                .path(&["spec", "template"])
                .filter(|t| has_containers(t))
                .or_else(|| find_template(root.get("spec")?, 5))?;
            (template.get("metadata"), template.entry("spec")?)
        }
    };
    if !has_containers_spec(&pod_spec.value) {
        return None;
    }
    let class = match object.kind.as_str() {
        "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController" | "Rollout" => {
            Class::Replicated
        }
        "DaemonSet" => Class::DaemonSet,
        "Job" | "CronJob" => Class::Batch,
        _ if root.path(&["spec", "replicas"]).is_some() => Class::Replicated,
        _ => Class::Single,
    };
    let labels = template_meta
        .and_then(|m| m.get("labels"))
        .map(|l| l.string_pairs().collect())
        .unwrap_or_default();
    let template_annotations = template_meta.and_then(|m| m.get("annotations"));
    let containers = pod_spec
        .value
        .get("containers")
        .map(|c| c.items())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.is_map())
        .map(container)
        .collect();
    Some(Workload {
        object,
        class,
        pod_spec,
        labels,
        template_annotations,
        containers,
    })
}

fn has_containers(template: &Node) -> bool {
    template.get("spec").is_some_and(has_containers_spec)
}

fn has_containers_spec(spec: &Node) -> bool {
    spec.get("containers")
        .is_some_and(|c| !c.items().is_empty())
}

/// Searches `node` for a mapping key `template` holding a pod template, `depth` levels deep.
fn find_template(node: &Node, depth: usize) -> Option<&Node> {
    if depth == 0 {
        return None;
    }
    for entry in node.entries() {
        if entry.key.as_str() == Some("template") && has_containers(&entry.value) {
            return Some(&entry.value);
        }
        if entry.value.is_map() {
            if let Some(found) = find_template(&entry.value, depth - 1) {
                return Some(found);
            }
        }
    }
    None
}

impl<'a> Workload<'a> {
    /// The containers that serve traffic: those declaring ports, or all when none does.
    pub fn serving_containers(&self) -> impl Iterator<Item = &Container<'a>> {
        let any_ports = self.containers.iter().any(|c| c.has_ports);
        self.containers
            .iter()
            .filter(move |c| c.has_ports || !any_ports)
    }

    /// Whether any container declares ports.
    pub fn exposes_ports(&self) -> bool {
        self.containers.iter().any(|c| c.has_ports)
    }

    /// `terminationGracePeriodSeconds`, its entry, and whether it is the default.
    pub fn grace(&self) -> (f64, Option<&'a Entry>) {
        let entry = self.pod_spec.value.entry("terminationGracePeriodSeconds");
        (
            entry
                .and_then(|e| e.value.as_f64())
                .unwrap_or(DEFAULT_GRACE),
            entry,
        )
    }

    /// The declared drain time (pod template annotation first, then the object's).
    pub fn declared_drain(&self) -> Option<f64> {
        self.template_annotations
            .and_then(|a| a.get(DRAIN_ANNOTATION))
            .or_else(|| self.object.annotation(DRAIN_ANNOTATION))
            .and_then(|n| n.as_str())
            .and_then(parse_duration)
    }

    /// `spec` of the object (the workload spec, not the pod spec).
    pub fn spec(&self) -> Option<&'a Entry> {
        self.object.root.entry("spec")
    }
}

/// Resolves an IntOrString (`3` or `"25%"`) against `total`, rounding percentages up or down.
pub fn int_or_percent(node: &Node, total: i64, round_up: bool) -> Option<i64> {
    if let Some(n) = node.as_i64() {
        return Some(n);
    }
    percent_of(node.as_str()?, total, round_up)
}

/// Resolves `"25%"` (or `"3"`) against `total`.
pub fn percent_of(text: &str, total: i64, round_up: bool) -> Option<i64> {
    let text = text.trim();
    let Some(pct) = text.strip_suffix('%') else {
        return text.parse().ok();
    };
    let pct: f64 = pct
        .trim()
        .parse()
        .ok()
        .filter(|p: &f64| p.is_finite() && *p >= 0.0)?;
    let exact = total as f64 * pct / 100.0;
    Some(if round_up {
        exact.ceil()
    } else {
        exact.floor()
    } as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(5.0));
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("1m30s"), Some(90.0));
        assert_eq!(parse_duration("12"), Some(12.0));
        assert_eq!(parse_duration("2.5"), Some(2.5));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration(""), None);
    }
}
