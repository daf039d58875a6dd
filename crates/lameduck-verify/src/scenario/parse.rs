//! YAML to [`Scenario`]: the defaults, overridden by the file's values, each checked at its line.

use std::path::Path;
use std::time::Duration;

use super::schema::{FileScenario, line_of};
use super::{PreStop, RouterKind, RouterSpec, Scenario, ScenarioError, parse_signal};

impl Scenario {
    /// Reads a scenario file; the result is not yet validated (flags may still override it).
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses scenario YAML; `path` is used in error messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let file: FileScenario = serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            let message = e.without_snippet().to_string();
            // The message may repeat the position; keep only its first line.
            let message = message
                .lines()
                .next()
                .unwrap_or("invalid scenario")
                .to_owned();
            ScenarioError::Syntax {
                path: path.to_owned(),
                line,
                message,
            }
        })?;
        let mut sc = Self {
            source: path.to_owned(),
            ..Self::default()
        };
        let invalid = |line: u64, message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        if let Some(c) = file.command {
            let line = line_of(&c);
            sc.command = c.value.into_vec();
            if sc.command.is_empty() {
                return Err(invalid(line, "`command` is empty".into()));
            }
        }
        if let Some(c) = file.new_command {
            sc.new_command = Some(c.value.into_vec());
        }
        sc.env = file.env;
        if let Some(r) = file.replicas {
            if r.value == 0 {
                return Err(invalid(line_of(&r), "`replicas` must be at least 1".into()));
            }
            sc.replicas = r.value;
        }
        if let Some(r) = file.rollouts {
            sc.rollouts = r.value;
        }
        if let Some(s) = file.seed {
            sc.seed = s;
        }
        let mut strategy_line = 0;
        if let Some(st) = file.strategy {
            if let Some(v) = st.max_surge {
                strategy_line = line_of(&v);
                sc.max_surge = v.value;
            }
            if let Some(v) = st.max_unavailable {
                strategy_line = strategy_line.max(line_of(&v));
                sc.max_unavailable = v.value;
            }
        }
        if let Some(v) = file.min_ready_seconds {
            sc.min_ready = v.value;
        }
        if let Some(p) = file.readiness_probe {
            if p.tcp == Some(true) {
                sc.readiness.path = None;
            } else if let Some(path) = p.path {
                sc.readiness.path = Some(path);
            }
            if let Some(v) = p.port {
                sc.readiness.port = v;
            }
            if let Some(v) = p.initial_delay_seconds {
                sc.readiness.initial_delay = v;
            }
            if let Some(v) = p.period_seconds {
                if v.value.0 < Duration::from_millis(10) {
                    return Err(invalid(
                        line_of(&v),
                        "`periodSeconds` must be at least 10ms".into(),
                    ));
                }
                sc.readiness.period = v.value;
            }
            if let Some(v) = p.timeout_seconds {
                if v.value.0.is_zero() {
                    return Err(invalid(
                        line_of(&v),
                        "`timeoutSeconds` must be above 0".into(),
                    ));
                }
                sc.readiness.timeout = v.value;
            }
            for (v, slot, name) in [
                (
                    p.success_threshold,
                    &mut sc.readiness.success_threshold,
                    "successThreshold",
                ),
                (
                    p.failure_threshold,
                    &mut sc.readiness.failure_threshold,
                    "failureThreshold",
                ),
            ] {
                if let Some(v) = v {
                    if v.value == 0 {
                        return Err(invalid(line_of(&v), format!("`{name}` must be at least 1")));
                    }
                    *slot = v.value;
                }
            }
        }
        if let Some(v) = file.startup_timeout {
            sc.startup_timeout = v.value;
        }
        if let Some(v) = file.termination_grace_period_seconds {
            sc.grace = v.value;
        }
        if let Some(v) = file.kubelet_delay {
            let line = line_of(&v);
            sc.kubelet_delay = v.value.get();
            sc.kubelet_delay.validate().map_err(|m| invalid(line, m))?;
        }
        if let Some(v) = file.pre_stop {
            let line = line_of(&v);
            let p = v.value;
            let n = usize::from(p.sleep.is_some())
                + usize::from(p.exec.is_some())
                + usize::from(p.http_get.is_some());
            if n != 1 {
                return Err(invalid(
                    line,
                    "`preStop` needs exactly one of sleep, exec, httpGet".into(),
                ));
            }
            sc.pre_stop = if let Some(d) = p.sleep {
                Some(PreStop::Sleep(d))
            } else if let Some(c) = p.exec {
                let c = c.into_vec();
                if c.is_empty() {
                    return Err(invalid(line, "`preStop.exec` is empty".into()));
                }
                Some(PreStop::Exec(c))
            } else {
                p.http_get.map(|h| PreStop::Http {
                    path: h.path,
                    port: h.port,
                })
            };
        }
        if let Some(v) = file.stop_signal {
            parse_signal(&v.value).map_err(|m| invalid(line_of(&v), m))?;
            sc.stop_signal = v.value;
        }
        if let Some(v) = file.propagation {
            let line = line_of(&v);
            sc.propagation = v.value.get();
            sc.propagation.validate().map_err(|m| invalid(line, m))?;
        }
        if let Some(rs) = file.routers {
            if rs.value.is_empty() {
                return Err(invalid(line_of(&rs), "`routers` is empty".into()));
            }
            sc.routers.clear();
            for r in rs.value {
                let line = line_of(&r);
                let r = r.value;
                let count = match r.count {
                    Some(c) if c.value == 0 || c.value > 64 => {
                        return Err(invalid(
                            line_of(&c),
                            "router `count` must be 1 to 64".into(),
                        ));
                    }
                    Some(c) => c.value,
                    None => 1,
                };
                if r.retry && r.kind == RouterKind::L4 {
                    return Err(invalid(
                        line,
                        "`retry` is for l7-style routers, not l4".into(),
                    ));
                }
                let propagation = match r.propagation {
                    Some(p) => {
                        let pl = line_of(&p);
                        let d = p.value.get();
                        d.validate().map_err(|m| invalid(pl, m))?;
                        Some(d)
                    }
                    None => None,
                };
                sc.routers.push(RouterSpec {
                    kind: r.kind,
                    count,
                    retry: r.retry,
                    propagation,
                });
            }
        }
        if let Some(l) = file.load {
            if let Some(c) = l.clients {
                sc.load.clients = c
                    .value
                    .parse()
                    .map_err(|e| invalid(line_of(&c), format!("`load.clients`: {e}")))?;
            }
            if let Some(r) = l.rate {
                if !(r.value.is_finite() && r.value > 0.0 && r.value <= 100_000.0) {
                    return Err(invalid(
                        line_of(&r),
                        "`load.rate` must be in (0, 100000] requests/s".into(),
                    ));
                }
                sc.load.rate = r.value;
            }
            if let Some(c) = l.connections {
                if c.value == 0 || c.value > 1024 {
                    return Err(invalid(
                        line_of(&c),
                        "`load.connections` must be 1 to 1024".into(),
                    ));
                }
                sc.load.connections = c.value;
            }
            if let Some(v) = l.protocol {
                sc.load.protocol = v;
            }
            if let Some(v) = l.path {
                sc.load.path = v;
            }
            if let Some(v) = l.timeout {
                sc.load.timeout = v;
            }
            if let Some(v) = l.warmup {
                sc.load.warmup = v;
            }
            if let Some(v) = l.cooldown {
                sc.load.cooldown = v;
            }
            if let Some(v) = l.duration {
                sc.load.duration = v;
            }
            if let Some(s) = l.slow {
                if !(0.0..=1.0).contains(&s.share.value) {
                    return Err(invalid(
                        line_of(&s.share),
                        format!(
                            "`load.slow.share` is a probability (0 to 1), got {}",
                            s.share.value
                        ),
                    ));
                }
                sc.load.slow_share = s.share.value;
                if let Some(p) = s.path {
                    sc.load.slow_path = p;
                }
            }
            if let Some(w) = l.websocket {
                sc.load.websockets = w.sessions;
                if let Some(p) = w.path {
                    sc.load.websocket_path = p;
                }
            }
            if let Some(w) = l.streaming {
                sc.load.streams = w.sessions;
                if let Some(p) = w.path {
                    sc.load.stream_path = p;
                }
            }
        }
        if let Some(v) = file.max_failures {
            sc.max_failures = v;
        }
        if sc.max_surge.resolve(sc.replicas, true) == 0
            && sc.max_unavailable.resolve(sc.replicas, false) == 0
        {
            return Err(invalid(
                strategy_line,
                "maxSurge and maxUnavailable cannot both be 0 (the rollout could never progress)"
                    .into(),
            ));
        }
        Ok(sc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Clients, Dur};

    fn parse(yaml: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_yaml(yaml, Path::new("s.yaml"))
    }

    #[test]
    fn full_file_parses() {
        let sc = parse(
            "command: [app, --listen, '127.0.0.1:{port}']\nreplicas: 4\nstrategy:\n  maxSurge: 25%\n  maxUnavailable: 0\n\
             preStop:\n  sleep: 5s\nrouters:\n  - kind: l4\n    count: 2\n  - kind: l7\n    retry: true\n\
             propagation:\n  lognormal: {median: 1s, p99: 5s}\nload:\n  rate: 300\n  slow:\n    share: 0.1\n",
        )
        .unwrap();
        assert_eq!(sc.replicas, 4);
        assert_eq!(sc.max_surge.resolve(4, true), 1);
        assert_eq!(
            sc.pre_stop,
            Some(PreStop::Sleep(Dur(Duration::from_secs(5))))
        );
        assert_eq!(sc.router_count(), 3);
        assert!(sc.routers[1].retry);
        assert!(sc.max_propagation() > Duration::from_secs(5));
        sc.validate().unwrap();
    }

    #[test]
    fn client_model_is_open_unless_the_file_says_closed() {
        assert_eq!(parse("replicas: 3\n").unwrap().load.clients, Clients::Open);
        let sc = parse("load:\n  rate: 500\n  clients: closed\n").unwrap();
        assert_eq!(sc.load.clients, Clients::Closed);
        assert_eq!(
            sc.load.clients_described(),
            "closed loop, 8 busy connections per router, at most 500 req/s"
        );
        let err = parse("load:\n  rate: 5\n  clients: busy\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.yaml:3: `load.clients`: unknown client model \"busy\" (open, closed)"
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let err = parse("replicas: 3\nload:\n  rate: 5\n  burst: 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("s.yaml:4:"), "{msg}");
        assert!(msg.contains("burst"), "{msg}");
    }

    #[test]
    fn impossible_values_name_line() {
        let err =
            parse("replicas: 3\nstrategy:\n  maxSurge: 0\n  maxUnavailable: 0\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:4: maxSurge"), "{err}");
        let err = parse("load:\n  slow:\n    share: 1.5\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:3:"), "{err}");
        let err = parse("propagation:\n  uniform: {min: 3s, max: 1s}\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:2:"), "{err}");
    }
}
