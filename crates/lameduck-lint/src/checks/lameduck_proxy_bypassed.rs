//! `lameduck-proxy-bypassed`: a Service sends traffic to the app's own port behind
//! `lameduck run --proxy`, past the drain proxy.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;
use crate::yaml::Node;

pub(crate) static CHECK: Check = Check {
    id: "lameduck-proxy-bypassed",
    severity: Severity::Error,
    summary: "a Service targets the app's port behind `lameduck run --proxy` instead of the proxy's",
    explanation: "With `lameduck run --proxy LISTEN=UPSTREAM` the app listens on UPSTREAM and the \
        drain proxy on LISTEN. The proxy is what sees the traffic: its drain wait lasts until \
        the routers stop sending, it tells keep-alive clients to reconnect, and it lets \
        in-flight requests finish before the app is signalled. A Service whose targetPort is \
        UPSTREAM sends its traffic past all of that: the proxy sees none, so its drain wait ends \
        after min-wait while routers may still send, and the app is stopped under its \
        keep-alive clients.",
    fix: "Point the Service's targetPort at the proxy's LISTEN port (or name the container port \
        that is LISTEN), and leave UPSTREAM to the proxy alone.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (s, service) in ctx.services.iter().enumerate() {
        let ports = service
            .root
            .path(&["spec", "ports"])
            .map(Node::items)
            .unwrap_or_default();
        for port in ports {
            for (_, workload) in ctx.workloads_of_service(s) {
                for c in &workload.containers {
                    let Some(run) = &c.lameduck else { continue };
                    let Some(target) = c.target_port(port) else {
                        continue;
                    };
                    if run.proxies.iter().any(|p| p.listen == target) {
                        continue;
                    }
                    let Some(bypassed) = run.proxies.iter().find(|p| p.upstream == target) else {
                        continue;
                    };
                    let at = port
                        .entry("targetPort")
                        .map_or(port.pos, |entry| entry.key.pos);
                    let message = format!(
                        "Service port targets {target} on {} of {}: the app's own port behind `lameduck run --proxy {}`, so its traffic bypasses the drain proxy",
                        container_label(c.name),
                        workload.object.display_name(),
                        bypassed.spec,
                    );
                    out.emit(service, at, message);
                }
            }
        }
    }
}
