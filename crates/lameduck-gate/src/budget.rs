//! PodDisruptionBudgets, read before the gate takes a pod out for an eviction.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::hold_record::HELD_LABEL;

/// What a pod's budgets say about taking it out for an eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Budget {
    /// Nothing stands in the way.
    Clear,
    /// This budget allows no disruption: the API server refuses the eviction itself.
    Refused(String),
    /// Another pod of this budget is out of traffic and not gone yet.
    Waiting {
        /// The budget.
        budget: String,
        /// The other pod.
        pod: String,
    },
}

/// Whether the pod's budgets let the gate take it out for an eviction.
///
/// A pod the gate takes out turns unready, which its budget counts as a disruption, but the
/// disruption controller notices only a moment later: so while another pod of the same budget
/// is out of traffic (held, or admitted and not gone yet), the gate waits for it to be gone
/// instead of trusting `disruptionsAllowed`. One pod per budget at a time.
pub async fn check(client: &kube::Client, pod: &Pod) -> Budget {
    let namespace = pod.namespace().unwrap_or_default();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    let Ok(budgets) = budgets.list(&ListParams::default()).await else {
        return Budget::Clear; // the API server's own check still runs
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let held = pods
        .list(&ListParams::default().labels(&format!("{HELD_LABEL}=true")))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    for budget in budgets.items {
        let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if !selects(selector, pod.labels()) {
            continue;
        }
        let allowed = budget
            .status
            .as_ref()
            .and_then(|s| s.disruptions_allowed)
            .unwrap_or(0);
        if allowed < 1 {
            return Budget::Refused(budget.name_any());
        }
        if let Some(other) = held
            .iter()
            .find(|other| other.uid() != pod.uid() && selects(selector, other.labels()))
        {
            return Budget::Waiting {
                budget: budget.name_any(),
                pod: other.name_any(),
            };
        }
    }
    Budget::Clear
}

/// Whether `selector` (matchLabels and matchExpressions) selects `labels`.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).expect("a selector")
    }

    #[test]
    fn match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "1".to_owned()),
        ]
        .into();
        assert!(selects(
            &selector(serde_json::json!({"matchLabels": {"app": "web"}})),
            &labels
        ));
        assert!(!selects(
            &selector(serde_json::json!({"matchLabels": {"app": "api"}})),
            &labels
        ));
        let expr = |op: &str, values: &[&str]| {
            selector(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}),
            )
        };
        assert!(selects(&expr("In", &["1", "2"]), &labels));
        assert!(!selects(&expr("NotIn", &["1"]), &labels));
        assert!(selects(&expr("Exists", &[]), &labels));
        assert!(!selects(&expr("DoesNotExist", &[]), &labels));
        assert!(
            !selects(&expr("Bogus", &[]), &labels),
            "an unknown operator selects nothing"
        );
        assert!(
            selects(&LabelSelector::default(), &labels),
            "an empty selector selects all"
        );
    }
}
