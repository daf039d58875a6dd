//! A scenario as JSON in the scenario file's own shape (Kubernetes' keys: `strategy.maxSurge`,
//! `minReadySeconds`, `readinessProbe`, `terminationGracePeriodSeconds`), so the `scenario` of a
//! JSON report reads like the manifest it came from and can be given back to `verify -f` as it
//! is (JSON is YAML). Durations are seconds, as the `*Seconds` fields of Kubernetes are.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::{
    Clients, Distribution, Dur, IntOrPercent, Load, PortRef, PreStop, Probe, Protocol, RouterSpec,
    Scenario,
};

impl Serialize for IntOrPercent {
    /// `1` or `"25%"`, as Kubernetes writes an `IntOrString`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(n) => s.serialize_u32(*n),
            Self::Percent(_) => s.collect_str(self),
        }
    }
}

impl Serialize for Scenario {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FileShape::from(self).serialize(s)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileShape<'a> {
    command: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    new_command: Option<&'a [String]>,
    env: &'a BTreeMap<String, String>,
    replicas: u32,
    rollouts: u32,
    seed: u64,
    strategy: Strategy,
    min_ready_seconds: Dur,
    readiness_probe: ProbeShape<'a>,
    startup_timeout: Dur,
    termination_grace_period_seconds: Dur,
    kubelet_delay: Distribution,
    #[serde(skip_serializing_if = "Option::is_none")]
    pre_stop: Option<&'a PreStop>,
    stop_signal: &'a str,
    routers: &'a [RouterSpec],
    propagation: Distribution,
    load: LoadShape<'a>,
    max_failures: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Strategy {
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProbeShape<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tcp: bool,
    port: PortRef,
    initial_delay_seconds: Dur,
    period_seconds: Dur,
    timeout_seconds: Dur,
    success_threshold: u32,
    failure_threshold: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadShape<'a> {
    clients: Clients,
    rate: f64,
    connections: u32,
    protocol: Protocol,
    path: &'a str,
    timeout: Dur,
    warmup: Dur,
    cooldown: Dur,
    duration: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    slow: Option<Slow<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    websocket: Option<Sessions<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming: Option<Sessions<'a>>,
}

#[derive(Serialize)]
struct Slow<'a> {
    share: f64,
    path: &'a str,
}

#[derive(Serialize)]
struct Sessions<'a> {
    sessions: u32,
    path: &'a str,
}

impl<'a> From<&'a Scenario> for FileShape<'a> {
    fn from(sc: &'a Scenario) -> Self {
        Self {
            command: &sc.command,
            new_command: sc.new_command.as_deref(),
            env: &sc.env,
            replicas: sc.replicas,
            rollouts: sc.rollouts,
            seed: sc.seed,
            strategy: Strategy {
                max_surge: sc.max_surge,
                max_unavailable: sc.max_unavailable,
            },
            min_ready_seconds: sc.min_ready,
            readiness_probe: ProbeShape::from(&sc.readiness),
            startup_timeout: sc.startup_timeout,
            termination_grace_period_seconds: sc.grace,
            kubelet_delay: sc.kubelet_delay,
            pre_stop: sc.pre_stop.as_ref(),
            stop_signal: &sc.stop_signal,
            routers: &sc.routers,
            propagation: sc.propagation,
            load: LoadShape::from(&sc.load),
            max_failures: sc.max_failures,
        }
    }
}

impl<'a> From<&'a Probe> for ProbeShape<'a> {
    fn from(p: &'a Probe) -> Self {
        Self {
            path: p.path.as_deref(),
            tcp: p.path.is_none(),
            port: p.port,
            initial_delay_seconds: p.initial_delay,
            period_seconds: p.period,
            timeout_seconds: p.timeout,
            success_threshold: p.success_threshold,
            failure_threshold: p.failure_threshold,
        }
    }
}

impl<'a> From<&'a Load> for LoadShape<'a> {
    fn from(l: &'a Load) -> Self {
        let sessions = |count: u32, path: &'a str| {
            (count > 0).then_some(Sessions {
                sessions: count,
                path,
            })
        };
        Self {
            clients: l.clients,
            rate: l.rate,
            connections: l.connections,
            protocol: l.protocol,
            path: &l.path,
            timeout: l.timeout,
            warmup: l.warmup,
            cooldown: l.cooldown,
            duration: l.duration,
            slow: (l.slow_share > 0.0).then_some(Slow {
                share: l.slow_share,
                path: &l.slow_path,
            }),
            websocket: sessions(l.websockets, &l.websocket_path),
            streaming: sessions(l.streams, &l.stream_path),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The scenario of a JSON report, fed back as a scenario file, is the same scenario.
    #[test]
    fn the_json_of_a_scenario_reads_back_as_the_same_scenario() {
        let file = "command: [./app, --port, '{port}']\nnewCommand: ./app --v2 --port {port}\n\
            env: {MODE: test}\nreplicas: 4\nrollouts: 2\nseed: 7\n\
            strategy: {maxSurge: 25%, maxUnavailable: 0}\nminReadySeconds: 2\n\
            readinessProbe: {path: /ready, port: admin, periodSeconds: 0.5, failureThreshold: 2}\n\
            terminationGracePeriodSeconds: 45\nkubeletDelay: {uniform: {min: 0.1, max: 0.3}}\n\
            preStop: {httpGet: {path: /prestop, port: app}}\nstopSignal: SIGQUIT\n\
            routers: [{kind: l4, count: 2}, {kind: l7, retry: true, propagation: 1s}]\n\
            propagation: {lognormal: {median: 1s, p99: 5s}}\n\
            load: {clients: closed, rate: 150, connections: 4, protocol: h2c, slow: {share: 0.1}, \
            websocket: {sessions: 2}, streaming: {sessions: 1, path: /feed}}\nmaxFailures: 3\n";
        let path = Path::new("s.yaml");
        let scenario = Scenario::from_yaml(file, path).unwrap();
        let json = serde_json::to_string_pretty(&scenario).unwrap();
        assert!(json.contains("\"maxSurge\": \"25%\""), "{json}");
        assert!(json.contains("\"maxUnavailable\": 0"), "{json}");
        assert!(
            json.contains("\"terminationGracePeriodSeconds\": 45.0"),
            "{json}"
        );
        assert!(json.contains("\"httpGet\""), "{json}");
        let again = Scenario::from_yaml(&json, path).unwrap();
        assert_eq!(again, scenario, "{json}");
        // And the defaults (a TCP probe, no preStop, no extra load).
        let plain = Scenario::from_yaml("command: ./app --port {port}\n", path).unwrap();
        let json = serde_json::to_string(&plain).unwrap();
        assert_eq!(Scenario::from_yaml(&json, path).unwrap(), plain, "{json}");
    }
}
