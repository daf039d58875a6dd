//! The mapping of manifests onto a scenario, without running anything: exact scenarios, the
//! notes with their lines, and clear errors for bad input.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::ports::{loopback_proxy, map_ports};
use super::*;
use crate::scenario::{Clients, Distribution, RouterKind};

/// The lameduck binary the tests pretend to have.
const EXE: &str = "/opt/bin/lameduck";

fn runnable(program: &str) -> bool {
    ["/app", "/bin/sh", "sleep", "/usr/local/bin/lameduck"].contains(&program)
}

fn map_with(
    base: Scenario,
    files: &[(&str, &str)],
    command: &[&str],
) -> Result<(Scenario, Vec<Note>), ScenarioError> {
    let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    let sources: Vec<(&Path, &str)> = files.iter().map(|(p, t)| (Path::new(*p), *t)).collect();
    let mut sc = base;
    let notes = sc.apply_manifests(
        &sources,
        &Local {
            command: &command,
            lameduck: Path::new(EXE),
            runnable: &runnable,
        },
    )?;
    Ok((sc, notes))
}

fn map(yaml: &str, command: &[&str]) -> (Scenario, Vec<Note>) {
    map_with(Scenario::default(), &[("d.yaml", yaml)], command).unwrap()
}

fn map_err(yaml: &str, command: &[&str]) -> String {
    map_with(Scenario::default(), &[("d.yaml", yaml)], command)
        .unwrap_err()
        .to_string()
}

fn texts(notes: &[Note]) -> Vec<String> {
    notes.iter().map(ToString::to_string).collect()
}

/// A Deployment whose pod template is `container` (indented for `containers:`), with
/// `strategy` (indented for `spec:`).
fn deployment(replicas: &str, strategy: &str, container: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n{replicas}{strategy}  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
         spec:\n      containers:\n{container}"
    )
}

const APP: &str = "      - name: app\n        command: [/app]\n        args: [--listen, '0.0.0.0:8080']\n        \
                   ports: [{name: http, containerPort: 8080}]\n        readinessProbe: {httpGet: {path: /ready, port: http}}\n";

const FIXTURE: &str = include_str!("../../../tests/fixtures/naive-deployment.yaml");

/// The scenario of the CLI test `naive_app_loses_requests_in_l4_and_l7_mode`, as its helper
/// writes it, with a readiness period of 1 s (the shortest Kubernetes can express).
fn hand_written(exe: &str) -> String {
    format!(
        "command: ['{exe}', 'demo-app', '--listen', '127.0.0.1:{{port}}']\nreplicas: 3\nrollouts: 1\nseed: 1\n\
         strategy:\n  maxSurge: 1\n  maxUnavailable: 0\nreadinessProbe:\n  path: /healthz\n  periodSeconds: 1s\n\
         terminationGracePeriodSeconds: 30\nrouters:\n  - kind: l4\n  - kind: l7\npropagation:\n  \
         uniform: {{min: 0.5s, max: 3s}}\n"
    )
}

#[test]
fn the_fixture_deployment_maps_to_the_hand_written_scenario() {
    let expected = Scenario::from_yaml(&hand_written(EXE), Path::new("hand.yaml")).unwrap();
    // What is not in a Deployment (routers, propagation, seed) comes from a scenario file here,
    // and from flags in the CLI test.
    let base = Scenario::from_yaml(
        "seed: 1\nrouters:\n  - kind: l4\n  - kind: l7\npropagation:\n  uniform: {min: 0.5s, max: 3s}\n",
        Path::new("base.yaml"),
    )
    .unwrap();
    let (mut sc, notes) = map_with(base, &[("naive.yaml", FIXTURE)], &[EXE]).unwrap();
    assert_eq!(sc.source, Path::new("naive.yaml"));
    sc.source = expected.source.clone();
    assert_eq!(sc, expected);
    assert_eq!(
        texts(&notes),
        ["naive.yaml:35: not modelled: livenessProbe is not run: verify never restarts a pod"]
    );
    sc.validate().unwrap();
}

#[test]
fn the_container_command_runs_when_it_is_here_and_is_refused_with_its_line_when_not() {
    let (sc, _) = map(&deployment("  replicas: 2\n", "", APP), &[]);
    assert_eq!(sc.command, ["/app", "--listen", "127.0.0.1:{port}"]);
    let missing = APP.replace("[/app]", "[/srv/app]");
    assert_eq!(
        map_err(&deployment("  replicas: 2\n", "", &missing), &[]),
        "d.yaml:12: container \"app\" runs \"/srv/app\", which is not on this machine: give the \
         local command after `--`"
    );
    // No `command`: the image's entrypoint, which only a local command can stand for.
    let entrypoint = APP.replace("        command: [/app]\n", "");
    assert!(
        map_err(&deployment("", "", &entrypoint), &[]).contains("image's entrypoint"),
        "{}",
        map_err(&deployment("", "", &entrypoint), &[])
    );
    let (sc, notes) = map(&deployment("", "", &entrypoint), &["./target/app", "-v"]);
    assert_eq!(
        sc.command,
        ["./target/app", "-v", "--listen", "127.0.0.1:{port}"]
    );
    assert_eq!(sc.replicas, 1, "Kubernetes' default");
    assert!(
        texts(&notes)[0].starts_with("d.yaml:4: approximated: no `replicas`"),
        "{notes:?}"
    );
    // A local command with a placeholder is the whole command line.
    let (sc, notes) = map(&deployment("", "", APP), &["./app", "--port", "{port}"]);
    assert_eq!(sc.command, ["./app", "--port", "{port}"]);
    assert!(
        texts(&notes)
            .iter()
            .any(|n| n.contains("whole command line"))
    );
}

#[test]
fn percentages_round_as_kubernetes_rounds_them() {
    let strategy = |surge: &str, unavailable: &str| {
        format!(
            "  strategy:\n    rollingUpdate:\n      maxSurge: {surge}\n      maxUnavailable: {unavailable}\n"
        )
    };
    let (sc, _) = map(
        &deployment("  replicas: 10\n", &strategy("25%", "'25%'"), APP),
        &[],
    );
    assert_eq!(sc.max_surge, IntOrPercent::Percent(25));
    assert_eq!(sc.max_surge.resolve(10, true), 3, "surge rounds up");
    assert_eq!(
        sc.max_unavailable.resolve(10, false),
        2,
        "unavailable rounds down"
    );
    // Both resolve to 0: one pod may be unavailable, as Kubernetes' fenceposts say.
    let (sc, notes) = map(
        &deployment("  replicas: 3\n", &strategy("0", "25%"), APP),
        &[],
    );
    assert_eq!(sc.max_unavailable, IntOrPercent::Int(1));
    assert_eq!(
        texts(&notes),
        [
            "d.yaml:9: approximated: maxSurge 0 and maxUnavailable 25% both round to 0 pods of 3: \
          maxUnavailable 1, as Kubernetes does"
        ]
    );
    // Unset: 25% each.
    let (sc, _) = map(&deployment("  replicas: 4\n", "", APP), &[]);
    assert_eq!(
        (sc.max_surge, sc.max_unavailable),
        (IntOrPercent::Percent(25), IntOrPercent::Percent(25))
    );
    assert_eq!(
        map_err(
            &deployment("  replicas: 3\n", &strategy("0", "0"), APP),
            &[]
        ),
        "d.yaml:9: maxSurge and maxUnavailable cannot both be 0 (the API server refuses it)"
    );
    assert_eq!(
        map_err(
            &deployment("  replicas: 3\n", &strategy("'150%'", "0"), APP),
            &[]
        ),
        "d.yaml:8: percentage \"150%\" is above 100%"
    );
    assert_eq!(
        map_err(
            &deployment("  replicas: 3\n", &strategy("'two'", "0"), APP),
            &[]
        ),
        "d.yaml:8: expected a count or a percentage, got \"two\""
    );
}

#[test]
fn probes_keep_their_timing_and_port() {
    let tcp = APP.replace(
        "readinessProbe: {httpGet: {path: /ready, port: http}}",
        "readinessProbe: {tcpSocket: {port: http}, initialDelaySeconds: 2, periodSeconds: 3, \
         timeoutSeconds: 4, successThreshold: 2, failureThreshold: 5}",
    );
    let (sc, _) = map(&deployment("", "", &tcp), &[]);
    let secs = |s| Dur(Duration::from_secs(s));
    assert_eq!(
        sc.readiness,
        Probe {
            path: None,
            port: PortRef::Port,
            initial_delay: secs(2),
            period: secs(3),
            timeout: secs(4),
            success_threshold: 2,
            failure_threshold: 5,
        }
    );
    let (sc, _) = map(&deployment("", "", APP), &[]);
    assert_eq!(
        (sc.readiness.path.as_deref(), sc.readiness.period),
        (Some("/ready"), secs(10)),
        "the kubelet's default period"
    );
    let exec = APP.replace(
        "{httpGet: {path: /ready, port: http}}",
        "{exec: {command: [cat, /tmp/ready]}}",
    );
    let (sc, notes) = map(&deployment("", "", &exec), &[]);
    assert_eq!(
        (sc.readiness.path, sc.readiness.port),
        (None, PortRef::Port)
    );
    assert!(
        texts(&notes).contains(
            &"d.yaml:14: approximated: readinessProbe exec / grpc: run as a TCP check of {port} \
              with the same timing"
                .to_owned()
        ),
        "{notes:?}"
    );
    // An app with its own admin port: probed there, told it through its env.
    let admin = "      - name: app\n        command: [/app]\n        env:\n        - {name: PORT, value: '8080'}\n        \
                 - {name: LAMEDUCK_ADMIN_ADDR, value: '0.0.0.0:8686'}\n        - name: TOKEN\n          \
                 valueFrom: {secretKeyRef: {name: s, key: k}}\n        ports: [{containerPort: 8080}]\n        \
                 readinessProbe: {httpGet: {path: /readyz, port: 8686}}\n        startupProbe: {tcpSocket: {port: 8080}}\n";
    let (sc, notes) = map(&deployment("", "", admin), &[]);
    assert_eq!(sc.readiness.port, PortRef::Admin);
    assert_eq!(sc.env["PORT"], "{port}");
    assert_eq!(sc.env["LAMEDUCK_ADMIN_ADDR"], "127.0.0.1:{admin_port}");
    assert!(!sc.env.contains_key("TOKEN"));
    let notes = texts(&notes);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("d.yaml:15: not modelled: env TOKEN")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("d.yaml:19: not modelled: startupProbe")),
        "{notes:?}"
    );
    assert_eq!(
        map_err(
            &deployment("", "", &APP.replace("port: http}", "port: metrics}")),
            &[]
        ),
        "d.yaml:14: port \"metrics\" is not the name of a port of the container"
    );
    assert_eq!(
        map_err(
            &deployment(
                "",
                "",
                &APP.replace("port: http}}", "port: http}, periodSeconds: 0}")
            ),
            &[]
        ),
        "d.yaml:14: readinessProbe: `periodSeconds` must be a whole number of at least 1"
    );
}

#[test]
fn every_prestop_kind_maps() {
    let with = |hook: &str| {
        let container = format!("{APP}        lifecycle:\n          preStop: {hook}\n");
        map(&deployment("", "", &container), &[])
    };
    assert_eq!(
        with("{sleep: {seconds: 5}}").0.pre_stop,
        Some(PreStop::Sleep(Dur(Duration::from_secs(5))))
    );
    assert_eq!(
        with("{exec: {command: [/bin/sh, -c, 'sleep 5; curl localhost:8080/x']}}")
            .0
            .pre_stop,
        Some(PreStop::Exec(vec![
            "/bin/sh".into(),
            "-c".into(),
            "sleep 5; curl localhost:{port}/x".into()
        ]))
    );
    assert_eq!(
        with("{httpGet: {path: /prestop, port: http}}").0.pre_stop,
        Some(PreStop::Http {
            path: "/prestop".into(),
            port: PortRef::Port
        })
    );
    // `lameduck wait` / `sleep` run with the local binary.
    assert_eq!(
        with("{exec: {command: [lameduck, sleep, 3s]}}").0.pre_stop,
        Some(PreStop::Exec(vec![EXE.into(), "sleep".into(), "3s".into()]))
    );
    let (sc, notes) = with("{exec: {command: [/bin/drain-me]}}");
    assert_eq!(
        sc.pre_stop,
        Some(PreStop::Exec(vec!["/bin/drain-me".into()]))
    );
    assert!(
        texts(&notes)
            .iter()
            .any(|n| n.starts_with("d.yaml:16: not modelled: preStop runs \"/bin/drain-me\"")),
        "{notes:?}"
    );
    let container = format!("{APP}        lifecycle:\n          stopSignal: SIGINT\n");
    assert_eq!(
        map(&deployment("", "", &container), &[]).0.stop_signal,
        "SIGINT"
    );
}

#[test]
fn a_lameduck_run_container_runs_under_the_local_lameduck() {
    let container = "      - name: app\n        command: [/usr/local/bin/lameduck, run, --proxy, '8080=8081', --grace, '40', --]\n        \
                     args: [/app, --listen, '127.0.0.1:8081']\n        ports: [{containerPort: 8080}]\n        \
                     readinessProbe: {httpGet: {path: /readyz, port: 8686}, periodSeconds: 1}\n";
    let (sc, notes) = map(&deployment("  replicas: 2\n", "", container), &[]);
    assert_eq!(
        sc.command,
        [
            EXE,
            "run",
            "--proxy",
            "127.0.0.1:{port}=127.0.0.1:{app_port}",
            "--grace",
            "40",
            "--admin",
            "127.0.0.1:{admin_port}",
            "--",
            "/app",
            "--listen",
            "127.0.0.1:{app_port}"
        ]
    );
    assert_eq!(sc.readiness.port, PortRef::Admin);
    assert!(notes.is_empty(), "{notes:?}");
    // A local app replaces the app's program; its arguments stay.
    let (sc, _) = map(&deployment("  replicas: 2\n", "", container), &["./my-app"]);
    assert_eq!(
        sc.command[9..],
        ["./my-app", "--listen", "127.0.0.1:{app_port}"]
    );
    // An explicit admin address is rewritten, not doubled.
    let given = container.replace("--grace, '40'", "--admin, '0.0.0.0:9000'");
    let given = given.replace("port: 8686", "port: 9000");
    let (sc, _) = map(&deployment("", "", &given), &[]);
    assert_eq!(sc.command[4..6], ["--admin", "127.0.0.1:{admin_port}"]);
    assert_eq!(sc.command.iter().filter(|a| *a == "--admin").count(), 1);
}

#[test]
fn a_statefulset_rolls_one_at_a_time_without_surge() {
    let yaml = deployment("  replicas: 3\n  serviceName: web\n", "", APP)
        .replace("kind: Deployment", "kind: StatefulSet");
    let (sc, notes) = map(&yaml, &[]);
    assert_eq!(
        (sc.max_surge, sc.max_unavailable),
        (IntOrPercent::Int(0), IntOrPercent::Int(1))
    );
    assert!(
        texts(&notes)[0].contains("StatefulSet: pods are replaced"),
        "{notes:?}"
    );
    let yaml = yaml.replace(
        "  selector:",
        "  updateStrategy:\n    rollingUpdate: {maxUnavailable: 2, partition: 1}\n  selector:",
    );
    let (sc, notes) = map(&yaml, &[]);
    assert_eq!(sc.max_unavailable, IntOrPercent::Int(2));
    assert!(
        texts(&notes).iter().any(|n| n.contains("partition")),
        "{notes:?}"
    );
}

#[test]
fn an_argo_rollout_is_approximated_as_a_rolling_update_and_says_so() {
    let yaml = deployment(
        "  replicas: 4\n",
        "  strategy:\n    canary:\n      maxSurge: 2\n      steps:\n      - setWeight: 20\n      - pause: {}\n",
        APP,
    )
    .replace("apps/v1\nkind: Deployment", "argoproj.io/v1alpha1\nkind: Rollout");
    let (sc, notes) = map(&yaml, &[]);
    assert_eq!(
        (sc.max_surge, sc.max_unavailable),
        (IntOrPercent::Int(2), IntOrPercent::Percent(25))
    );
    assert_eq!(
        texts(&notes),
        [
            "d.yaml:9: approximated: Rollout canary steps (setWeight, pause, analysis) are run as \
          one rolling update with the canary's maxSurge and maxUnavailable"
        ]
    );
}

#[test]
fn services_pdbs_and_other_documents_beside_the_workload() {
    // Two ports: the Service's targetPort decides which one is {port}.
    let two = APP.replace(
        "ports: [{name: http, containerPort: 8080}]",
        "ports: [{name: metrics, containerPort: 9090}, {name: http, containerPort: 8080}]",
    );
    let stream = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\n",
        deployment("  replicas: 2\n", "", &two)
    );
    let service = "kind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n";
    let pdb = "kind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  maxUnavailable: 1\n  selector: {matchLabels: {app: web}}\n";
    let (sc, notes) = map_with(
        Scenario::default(),
        &[
            ("d.yaml", &stream),
            ("svc.yaml", service),
            ("pdb.yaml", pdb),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(sc.command, ["/app", "--listen", "127.0.0.1:{port}"]);
    assert_eq!(sc.readiness.port, PortRef::Port);
    let notes = texts(&notes);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("d.yaml:17: not modelled: ConfigMap/cfg")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("pdb.yaml:1: not modelled: PodDisruptionBudget/web")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("port 9090 appears in no argument")),
        "{notes:?}"
    );
    // The base scenario's routers and load are kept.
    let base = Scenario::from_yaml(
        "routers: [{kind: l4}]\nload: {clients: closed}\n",
        Path::new("b.yaml"),
    )
    .unwrap();
    let (sc, _) = map_with(base, &[("d.yaml", &stream)], &[]).unwrap();
    assert_eq!(sc.routers[0].kind, RouterKind::L4);
    assert_eq!(sc.load.clients, Clients::Closed);
    assert!(matches!(sc.propagation, Distribution::Uniform { .. }));
}

#[test]
fn bad_input_is_one_clear_error_naming_the_line() {
    let syntax = map_err("kind: Deployment\nspec: [1, 2\n", &[]);
    assert!(
        syntax.starts_with("d.yaml:")
            && syntax.contains("invalid YAML in the document starting at line 1"),
        "{syntax}"
    );
    assert_eq!(
        map_err(&deployment("  replicas: three\n", "", APP), &[]),
        "d.yaml:5: `replicas` must be a whole number from 1 to 1000 to roll"
    );
    let two = format!(
        "{}---\n{}",
        deployment("", "", APP),
        deployment("", "", APP)
    );
    assert!(
        map_err(&two, &[]).contains("more than one workload to roll"),
        "{}",
        map_err(&two, &[])
    );
    let daemon = deployment("", "", APP).replace("kind: Deployment", "kind: DaemonSet");
    assert_eq!(
        map_err(&daemon, &[]),
        "d.yaml:1: DaemonSet/web has no rolling update to verify (Deployment, StatefulSet or Argo Rollout)"
    );
    assert_eq!(
        map_err("kind: Service\nmetadata: {name: a}\n", &[]),
        "d.yaml: no Deployment, StatefulSet or Argo Rollout with a pod template in the manifests"
    );
    // Every prefix of the fixture: a result, never a panic (bounded: one parse per byte).
    for end in (0..FIXTURE.len()).filter(|i| FIXTURE.is_char_boundary(*i)) {
        let _ = map_with(Scenario::default(), &[("p.yaml", &FIXTURE[..end])], &[EXE]);
    }
}

#[test]
fn port_numbers_become_placeholders_on_loopback() {
    let ports = Ports {
        mapped: vec![
            Mapped {
                number: 8080,
                to: PortRef::Port,
            },
            Mapped {
                number: 8686,
                to: PortRef::Admin,
            },
        ],
        admin_given: false,
    };
    for (text, expected) in [
        ("0.0.0.0:8080", "127.0.0.1:{port}"),
        ("[::]:8686", "127.0.0.1:{admin_port}"),
        (":8080", "127.0.0.1:{port}"),
        ("--listen=:8080", "--listen=127.0.0.1:{port}"),
        ("8080", "{port}"),
        ("http://localhost:8080/x", "http://localhost:{port}/x"),
        ("18080 80801 v8080 1.8080", "18080 80801 v8080 1.8080"),
        ("caf\u{e9} 8080", "caf\u{e9} {port}"),
    ] {
        assert_eq!(map_ports(text, &ports), expected, "{text}");
    }
    assert_eq!(loopback_proxy("8080=8081"), "127.0.0.1:8080=127.0.0.1:8081");
    assert_eq!(
        loopback_proxy("--proxy=tcp:8080=8081,0.0.0.0:1=2"),
        "--proxy=tcp:127.0.0.1:8080=127.0.0.1:8081,0.0.0.0:1=127.0.0.1:2"
    );
    assert_eq!(loopback_proxy("--grace"), "--grace");
}
