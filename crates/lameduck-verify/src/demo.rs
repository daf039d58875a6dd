//! The built-in demo: the same naive app, bare and under `lameduck run`.

use std::path::Path;
use std::time::Duration;

use crate::scenario::{
    Clients, Distribution, Dur, IntOrPercent, PortRef, RouterKind, RouterSpec, Scenario,
};

/// The demo's two scenarios for the `lameduck` binary at `exe`: the built-in naive app (it dies
/// at once on SIGTERM) bare, and the same app wrapped by `lameduck run` with its drain proxy.
///
/// Both: 3 replicas, one rolling update with maxSurge 1 / maxUnavailable 0, one L4 and one L7
/// router with propagation uniform 0.5–3 s, open-loop clients at 200 requests/s, seed 1. The
/// open loop is the demo's model because it shows what the routers' delays cost; busy
/// closed-loop clients (`--clients closed`) add the races of closes with requests in flight.
#[must_use]
pub fn demo_scenarios(exe: &Path) -> (Scenario, Scenario) {
    let exe = exe.display().to_string();
    let mut base = Scenario {
        source: "<demo>".into(),
        replicas: 3,
        rollouts: 1,
        seed: 1,
        max_surge: IntOrPercent::Int(1),
        max_unavailable: IntOrPercent::Int(0),
        routers: vec![
            RouterSpec {
                kind: RouterKind::L4,
                count: 1,
                retry: false,
                propagation: None,
            },
            RouterSpec {
                kind: RouterKind::L7,
                count: 1,
                retry: false,
                propagation: None,
            },
        ],
        propagation: Distribution::Uniform {
            min: Dur(Duration::from_millis(500)),
            max: Dur(Duration::from_secs(3)),
        },
        ..Scenario::default()
    };
    base.readiness.path = Some("/healthz".into());
    base.load.clients = Clients::Open;
    base.load.rate = 200.0;
    let mut bare = base.clone();
    bare.command = naive_app(&exe, "{port}");
    let mut wrapped = base;
    wrapped.command = wrapped_command(&exe, &naive_app(&exe, "{app_port}"), 30);
    wrapped.readiness.path = Some("/readyz".into());
    wrapped.readiness.port = PortRef::Admin;
    (bare, wrapped)
}

/// `lameduck demo-app --listen 127.0.0.1:{PORT}` (dies at once on SIGTERM).
#[must_use]
pub fn naive_app(exe: &str, port_placeholder: &str) -> Vec<String> {
    vec![
        exe.into(),
        "demo-app".into(),
        "--listen".into(),
        format!("127.0.0.1:{port_placeholder}"),
    ]
}

/// `lameduck run` around `app` (which must listen on `{app_port}`): admin on `{admin_port}`,
/// drain proxy from `{port}` to `{app_port}`.
#[must_use]
pub fn wrapped_command(exe: &str, app: &[String], grace_seconds: u32) -> Vec<String> {
    let mut v: Vec<String> = [
        exe,
        "run",
        "--admin",
        "127.0.0.1:{admin_port}",
        "--proxy",
        "127.0.0.1:{port}=127.0.0.1:{app_port}",
        "--protocol",
        "http",
        "--grace",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(grace_seconds.to_string());
    v.push("--".into());
    v.extend(app.iter().cloned());
    v
}
