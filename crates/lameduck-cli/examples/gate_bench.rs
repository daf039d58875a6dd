//! The gate's benchmark (run by `bench/gate.sh`): a real control plane holding PODS pods and
//! their EndpointSlices, `lameduck gate serve` watching it, its memory, and the allow path
//! (a pod not opted in) under wrk, beside nginx answering the same AdmissionReview with a
//! fixed response over TLS (the ceiling of wrk and TLS on this machine).
//!
//! Environment: LAMEDUCK_BIN (the lameduck binary to measure), PODS (10000), SECONDS (10),
//! CONNECTIONS (32), ROUNDS (2).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use lameduck_testkit::Child;
use lameduck_testkit::k8s::{Binaries, ControlPlane};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}: expected a number, got {v:?}")),
        Err(_) => default,
    }
}

fn pod(i: u64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("svc-{}", i / 100)}},
        "spec": {"containers": [{"name": "app", "image": "example/app:1", "ports": [{"containerPort": 8080}]}]},
    }))
    .unwrap()
}

fn address(i: u64) -> String {
    format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)
}

fn slice(s: u64, pods: u64) -> EndpointSlice {
    let endpoints: Vec<_> = (s * 100..((s + 1) * 100).min(pods))
        .map(|i| {
            json!({
                "addresses": [address(i)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "namespace": "bench", "name": format!("pod-{i}")},
                "nodeName": "node-0",
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{s}-abcde"), "labels": {
            "kubernetes.io/service-name": format!("svc-{s}"),
            "endpointslice.kubernetes.io/managed-by": "bench.lameduck.dev",
        }},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Load {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

fn millis(text: &str) -> f64 {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str, script: &Path, seconds: u64, connections: u64) -> Load {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(|l| l.trim().to_owned())
        .collect();
    Load {
        rate: find("Requests/sec:").parse().unwrap_or(0.0),
        p50_ms: millis(&find("50%")),
        p99_ms: millis(&find("99%")),
        errors: errors.join("; "),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let pods = env_or("PODS", 10_000);
    let seconds = env_or("SECONDS", 10);
    let connections = env_or("CONNECTIONS", 32);
    let rounds = env_or("ROUNDS", 2);
    let lameduck =
        std::env::var("LAMEDUCK_BIN").expect("LAMEDUCK_BIN: the lameduck binary to measure");

    let plane = ControlPlane::start(&Binaries::locate().unwrap())
        .await
        .unwrap();
    let client = plane.client();
    lameduck_testkit::k8s::create_namespace(&client, "bench", &[])
        .await
        .unwrap();
    let began = Instant::now();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    futures_util::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move { api.create(&PostParams::default(), &pod(i)).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    for s in 0..pods.div_ceil(100) {
        slices
            .create(&PostParams::default(), &slice(s, pods))
            .await
            .unwrap();
    }
    eprintln!(
        "created {pods} pods and {} EndpointSlices in {:.0} s",
        pods.div_ceil(100),
        began.elapsed().as_secs_f64()
    );

    let cert = plane
        .pki()
        .server_cert("gate", &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let mut gate = Child::spawn(
        &lameduck,
        &[
            "gate",
            "serve",
            "--listen=127.0.0.1:0",
            &format!("--tls-cert={}", cert.cert.display()),
            &format!("--tls-key={}", cert.key.display()),
            &format!("--kubeconfig={}", plane.kubeconfig().display()),
            "--log=warn",
        ],
        &[],
    )
    .unwrap();
    let gate_addr = gate.wait_for_addr("listening on ");
    // The watches listed everything before the listener opened; let the allocator settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_idle, _) = memory(gate.pid());

    // A DELETE of a pod that is not opted in: the allow path.
    let the_pod = serde_json::to_value(pod_api.get("pod-0").await.unwrap()).unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0b5e6f3c-6c1e-4d0a-9c7e-2f1d1f0e9a11",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "pod-0", "namespace": "bench", "operation": "DELETE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "oldObject": the_pod,
            "dryRun": false,
            "options": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    })
    .to_string();
    let dir = plane.dir();
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
            serde_json::to_string(&review).unwrap()
        ),
    )
    .unwrap();
    // The reference: nginx answering the gate's own answer, over TLS.
    let answer = {
        let output = Command::new("curl")
            .args([
                "-sk",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
            ])
            .arg(&review)
            .arg(format!("https://{gate_addr}/validate"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(
        answer.contains("\"allowed\":true"),
        "the gate did not allow: {answer}"
    );
    let nginx_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir.join("nginx/logs")).unwrap();
    assert!(
        !answer.contains('\''),
        "the answer has a single quote: {answer}"
    );
    std::fs::write(
        dir.join("nginx/nginx.conf"),
        format!(
            "worker_processes 1;\npid {d}/nginx/nginx.pid;\nerror_log {d}/nginx/logs/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{nginx_port} ssl; ssl_certificate {c}; ssl_certificate_key {k};\n\
             location / {{ default_type application/json; return 200 '{answer}'; }} }} }}\n",
            d = dir.display(),
            answer = answer.trim(),
            c = cert.cert.display(),
            k = cert.key.display(),
        ),
    )
    .unwrap();
    let nginx_bin = lameduck_testkit::installed("nginx").expect("nginx");
    let nginx = Child::spawn(
        &nginx_bin,
        &[
            "-p",
            &dir.join("nginx").display().to_string(),
            "-c",
            &dir.join("nginx/nginx.conf").display().to_string(),
            "-g",
            "daemon off;",
        ],
        &[],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let gate_url = format!("https://{gate_addr}/validate?timeout=10s");
    let nginx_url = format!("https://127.0.0.1:{nginx_port}/validate");
    let (mut gate_runs, mut nginx_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so a drift of the machine's load hits both.
        let order: [(&str, &String); 2] = if round % 2 == 0 {
            [("gate", &gate_url), ("nginx", &nginx_url)]
        } else {
            [("nginx", &nginx_url), ("gate", &gate_url)]
        };
        for (name, url) in order {
            let load = wrk(url, &script, seconds, connections);
            eprintln!(
                "round {round} {name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms {}",
                load.rate, load.p50_ms, load.p99_ms, load.errors
            );
            if name == "gate" {
                gate_runs.push(load)
            } else {
                nginx_runs.push(load)
            }
        }
    }
    for (name, runs) in [("gate", &gate_runs), ("nginx", &nginx_runs)] {
        assert!(
            runs.iter().all(|l| l.errors.is_empty() && l.rate > 0.0),
            "{name}: requests failed under load"
        );
    }
    let (rss_after, hwm) = memory(gate.pid());
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let row = |name: &str, runs: &[Load]| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            median(runs.iter().map(|l| l.rate).collect()),
            median(runs.iter().map(|l| l.p50_ms).collect()),
            median(runs.iter().map(|l| l.p99_ms).collect()),
            runs.iter()
                .map(|l| if l.errors.is_empty() {
                    "none".to_owned()
                } else {
                    l.errors.clone()
                })
                .collect::<Vec<_>>()
                .join(" / ")
        );
    };
    println!(
        "allow path (pod not opted in), {rounds} rounds of {seconds} s, {connections} connections, medians:\n"
    );
    println!("| server | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|");
    row("lameduck gate", &gate_runs);
    row("nginx, fixed answer (reference)", &nginx_runs);
    println!(
        "\ngate memory with {pods} pods and {} EndpointSlices in the API server: {rss_idle:.1} MiB RSS after the initial lists, {rss_after:.1} MiB after the load, peak {hwm:.1} MiB",
        pods.div_ceil(100)
    );
    println!("load average at the end: {}", load_average.trim());
    // SIGTERM lets nginx's master stop its worker (SIGKILL, as a drop sends, would orphan it).
    let mut nginx = nginx;
    nginx.signal(lameduck_testkit::Signal::SIGTERM);
    let _ = nginx.wait_exit(Duration::from_secs(5));
    drop(gate);
}
