//! Everything a check can look at: the workloads, and which Services, PodDisruptionBudgets and
//! HorizontalPodAutoscalers of the same run refer to them.

use std::collections::HashMap;

use crate::config::Config;
use crate::source::Object;
use crate::workload::{self, Class, Workload};
use crate::yaml::{Entry, Node};

/// The objects of one run, indexed for cross-object checks.
pub struct Context<'a> {
    /// Every object.
    pub objects: &'a [Object],
    /// Objects with a pod template.
    pub workloads: Vec<Workload<'a>>,
    /// Services.
    pub services: Vec<&'a Object>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<&'a Object>,
    /// The configuration (margins, thresholds).
    pub config: &'a Config,
    services_of: Vec<Vec<usize>>,
    pdbs_of: Vec<Vec<usize>>,
    workloads_of_service: Vec<Vec<usize>>,
    workloads_of_pdb: Vec<Vec<usize>>,
    hpa_min: HashMap<(&'a str, &'a str, &'a str), (i64, &'a Object)>,
}

/// How many replicas a workload runs at least, and where that number comes from.
#[derive(Debug, Clone)]
pub struct Replicas<'a> {
    /// The count.
    pub count: i64,
    /// The entry that sets it (`spec.replicas` or the HPA's `minReplicas`), if any.
    pub entry: Option<&'a Entry>,
    /// A phrase for messages: `replicas: 1`, `default replicas 1`, `HPA web minReplicas 1`.
    pub source: String,
}

impl<'a> Context<'a> {
    /// Indexes `objects`.
    pub fn new(objects: &'a [Object], config: &'a Config) -> Self {
        let workloads: Vec<Workload<'a>> = objects.iter().filter_map(workload::workload).collect();
        let services: Vec<&Object> = objects.iter().filter(|o| o.kind == "Service").collect();
        let pdbs: Vec<&Object> = objects
            .iter()
            .filter(|o| o.kind == "PodDisruptionBudget")
            .collect();

        let mut by_label: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, w) in workloads.iter().enumerate() {
            by_namespace
                .entry(w.object.namespace.as_str())
                .or_default()
                .push(i);
            for &(k, v) in &w.labels {
                by_label
                    .entry((w.object.namespace.as_str(), k, v))
                    .or_default()
                    .push(i);
            }
        }
        let mut services_of = vec![Vec::new(); workloads.len()];
        let mut workloads_of_service = Vec::with_capacity(services.len());
        for (s, service) in services.iter().enumerate() {
            let selector: Vec<(&str, &str)> = service
                .root
                .path(&["spec", "selector"])
                .map(|n| n.string_pairs().collect())
                .unwrap_or_default();
            let mut selected = Vec::new();
            if let Some(&(k, v)) = selector.first() {
                for &w in by_label
                    .get(&(service.namespace.as_str(), k, v))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if service_selects(service, &workloads[w].labels) {
                        selected.push(w);
                        services_of[w].push(s);
                    }
                }
            }
            workloads_of_service.push(selected);
        }
        let mut pdbs_of = vec![Vec::new(); workloads.len()];
        let mut workloads_of_pdb = Vec::with_capacity(pdbs.len());
        for (p, pdb) in pdbs.iter().enumerate() {
            let selector = pdb.root.path(&["spec", "selector"]);
            let match_labels: Vec<(&str, &str)> = selector
                .and_then(|s| s.get("matchLabels"))
                .map(|n| n.string_pairs().collect())
                .unwrap_or_default();
            let candidates: &[usize] = match match_labels.first() {
                Some(&(k, v)) => by_label
                    .get(&(pdb.namespace.as_str(), k, v))
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                None if selector.is_some() => by_namespace
                    .get(pdb.namespace.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                None => &[],
            };
            let mut selected = Vec::new();
            for &w in candidates {
                if selector.is_some_and(|s| selects(s, &workloads[w].labels)) {
                    selected.push(w);
                    pdbs_of[w].push(p);
                }
            }
            workloads_of_pdb.push(selected);
        }
        let mut hpa_min = HashMap::new();
        for hpa in objects
            .iter()
            .filter(|o| o.kind == "HorizontalPodAutoscaler")
        {
            let target = |k: &str| {
                hpa.root
                    .path(&["spec", "scaleTargetRef", k])
                    .and_then(Node::as_str)
            };
            if let (Some(kind), Some(name)) = (target("kind"), target("name")) {
                let min = hpa
                    .root
                    .path(&["spec", "minReplicas"])
                    .and_then(Node::as_i64)
                    .unwrap_or(1);
                hpa_min.insert((hpa.namespace.as_str(), kind, name), (min, hpa));
            }
        }
        Self {
            objects,
            workloads,
            services,
            pdbs,
            config,
            services_of,
            pdbs_of,
            workloads_of_service,
            workloads_of_pdb,
            hpa_min,
        }
    }

    /// PodDisruptionBudgets selecting workload `w`.
    pub fn pdbs_of(&self, w: usize) -> impl Iterator<Item = &'a Object> + '_ {
        self.pdbs_of[w].iter().map(|&p| self.pdbs[p])
    }

    /// Workloads selected by service `s` (index into `services`).
    pub fn workloads_of_service(
        &self,
        s: usize,
    ) -> impl Iterator<Item = (usize, &Workload<'a>)> + '_ {
        self.workloads_of_service[s]
            .iter()
            .map(|&w| (w, &self.workloads[w]))
    }

    /// Services selecting workload `w`.
    pub fn services_of(&self, w: usize) -> impl Iterator<Item = &'a Object> + '_ {
        self.services_of[w].iter().map(|&s| self.services[s])
    }

    /// Workloads selected by PDB `p` (index into `pdbs`).
    pub fn workloads_of_pdb(&self, p: usize) -> impl Iterator<Item = (usize, &Workload<'a>)> + '_ {
        self.workloads_of_pdb[p]
            .iter()
            .map(|&w| (w, &self.workloads[w]))
    }

    /// Whether workload `w` serves traffic: a Service of the run selects it, or it is not a
    /// batch workload and declares container ports.
    pub fn is_served(&self, w: usize) -> bool {
        !self.services_of[w].is_empty()
            || (self.workloads[w].class != Class::Batch && self.workloads[w].exposes_ports())
    }

    /// The minimum number of replicas of a replicated workload (HPA `minReplicas` wins).
    pub fn replicas(&self, w: usize) -> Option<Replicas<'a>> {
        let workload = &self.workloads[w];
        if workload.class != Class::Replicated {
            return None;
        }
        let object = workload.object;
        if let Some(&(min, hpa)) = self.hpa_min.get(&(
            object.namespace.as_str(),
            object.kind.as_str(),
            object.name.as_str(),
        )) {
            return Some(Replicas {
                count: min,
                entry: hpa.root.get("spec").and_then(|s| s.entry("minReplicas")),
                source: format!("HorizontalPodAutoscaler {} minReplicas {min}", hpa.name),
            });
        }
        let entry = object.root.get("spec").and_then(|s| s.entry("replicas"));
        match entry.and_then(|e| e.value.as_i64()) {
            Some(count) => Some(Replicas {
                count,
                entry,
                source: format!("replicas: {count}"),
            }),
            None => Some(Replicas {
                count: 1,
                entry: None,
                source: "replicas unset (defaults to 1)".to_owned(),
            }),
        }
    }
}

/// Whether a Service's `spec.selector` (a plain map; none selects nothing here, as such a
/// Service's endpoints are managed by hand) selects `labels`.
pub fn service_selects(service: &Object, labels: &[(&str, &str)]) -> bool {
    let selector = service.root.path(&["spec", "selector"]);
    selector.is_some_and(|s| {
        s.string_pairs().next().is_some() && s.string_pairs().all(|pair| labels.contains(&pair))
    })
}

/// Whether a LabelSelector (`matchLabels` and `matchExpressions`) selects `labels`.
pub fn selects(selector: &Node, labels: &[(&str, &str)]) -> bool {
    let value_of = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let labels_ok = selector
        .get("matchLabels")
        .is_none_or(|m| m.string_pairs().all(|(k, v)| value_of(k) == Some(v)));
    let exprs_ok = selector.get("matchExpressions").is_none_or(|exprs| {
        exprs.items().iter().all(|e| {
            let key = e.get("key").and_then(Node::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .map(|v| v.items().iter().filter_map(Node::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Node::as_str).unwrap_or("") {
                "In" => value_of(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => value_of(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => value_of(key).is_some(),
                "DoesNotExist" => value_of(key).is_none(),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}
