//! The container's ports as the scenario's placeholders: which port is `{port}`,
//! `{admin_port}` or `{app_port}`, and arguments and env values rewritten to them on loopback.

use lameduck_lint::{
    Container, DEFAULT_ADMIN_PORT, Node, Object, PortValue, ProbeHandler, Workload,
};

use super::{Mapped, Mapper, NoteKind, PortRef, Ports, ScenarioError, err, placeholder};

impl Mapper<'_, '_> {
    pub(super) fn ports(
        &mut self,
        objects: &[Object],
        w: &Workload<'_>,
        c: &Container<'_>,
    ) -> Result<Ports, ScenarioError> {
        let object = w.object;
        let mut mapped: Vec<Mapped> = Vec::new();
        let add = |mapped: &mut Vec<Mapped>, number: u16, to: Option<PortRef>| -> bool {
            if mapped.iter().any(|m| m.number == number) {
                return true;
            }
            let to = to.or_else(|| {
                [PortRef::Port, PortRef::Admin, PortRef::App]
                    .into_iter()
                    .find(|r| !mapped.iter().any(|m| m.to == *r))
            });
            match to {
                Some(to) if !mapped.iter().any(|m| m.to == to) => {
                    mapped.push(Mapped { number, to });
                    true
                }
                _ => false,
            }
        };
        // The serving port: what a selecting Service targets.
        let service_target = objects
            .iter()
            .filter(|o| o.kind == "Service" && lameduck_lint::service_selects(o, &w.labels))
            .flat_map(|o| {
                o.root
                    .path(&["spec", "ports"])
                    .map(Node::items)
                    .unwrap_or_default()
                    .iter()
            })
            .find_map(|p| c.target_port(p));
        let run = c.lameduck.as_ref();
        let serving = service_target
            .or_else(|| run.and_then(|r| r.proxies.first()).map(|p| p.listen))
            .or_else(|| c.ports.first().and_then(|p| u16::try_from(p.number).ok()))
            .or_else(|| {
                let probe = c.readiness?;
                let spec = lameduck_lint::probe_spec(probe).ok()?;
                match spec.handler {
                    ProbeHandler::Http { port, .. } | ProbeHandler::Tcp { port } => {
                        c.port_number(&port?)
                    }
                    _ => None,
                }
            })
            .ok_or_else(|| {
                err(
                    object,
                    c.node.pos.line,
                    format!(
                        "container {:?}: cannot tell which port it serves on (no Service targets \
                         it, no `ports`, no probe port)",
                        c.name
                    ),
                )
            })?;
        add(&mut mapped, serving, Some(PortRef::Port));
        let mut admin_given = false;
        if let Some(run) = run {
            admin_given = run.admin.is_some();
            let admin = match run.admin.as_deref() {
                None => u16::try_from(DEFAULT_ADMIN_PORT).ok(),
                Some("off") => None,
                Some(addr) => addr.rsplit(':').next().and_then(|p| p.parse().ok()),
            };
            if let Some(admin) = admin {
                add(&mut mapped, admin, Some(PortRef::Admin));
            }
            if let Some(p) = run.proxies.first() {
                add(&mut mapped, p.upstream, Some(PortRef::App));
            }
            for p in run.proxies.iter().skip(1) {
                for number in [p.listen, p.upstream] {
                    if !add(&mut mapped, number, None) {
                        self.note(
                            object,
                            run.pos.line,
                            NoteKind::Unsupported,
                            format!(
                                "--proxy {}: a replica has three ports ({{port}}, \
                                 {{admin_port}}, {{app_port}}); port {number} is left as written",
                                p.spec
                            ),
                        );
                    }
                }
            }
        }
        // Other ports the manifest names: declared ones, probes' and the preStop hook's.
        let mut others: Vec<(u16, usize)> = c
            .ports
            .iter()
            .filter_map(|p| Some((u16::try_from(p.number).ok()?, p.pos.line)))
            .collect();
        for probe in [c.readiness, c.liveness, c.startup].into_iter().flatten() {
            if let Ok(spec) = lameduck_lint::probe_spec(probe) {
                if let ProbeHandler::Http { port: Some(p), .. }
                | ProbeHandler::Tcp { port: Some(p) } = &spec.handler
                {
                    if let Some(n) = c.port_number(p) {
                        others.push((n, probe.key.pos.line));
                    }
                }
            }
        }
        if let Some((_, Some(p))) = c.pre_stop.as_ref().and_then(|p| p.http.as_ref()) {
            if let Some(n) = c.port_number(p) {
                others.push((n, c.pre_stop.as_ref().map_or(0, |p| p.pos.line)));
            }
        }
        for (number, line) in others {
            if !add(&mut mapped, number, None) {
                self.note(
                    object,
                    line,
                    NoteKind::Unsupported,
                    format!(
                        "port {number}: a replica has three ports ({{port}}, {{admin_port}}, \
                         {{app_port}}); it is left as written, so replicas share it"
                    ),
                );
            }
        }
        Ok(Ports {
            mapped,
            admin_given,
        })
    }

    pub(super) fn port_ref(
        &self,
        object: &Object,
        c: &Container<'_>,
        port: Option<&PortValue>,
        ports: &Ports,
        line: usize,
    ) -> Result<PortRef, ScenarioError> {
        let Some(port) = port else {
            return Err(err(object, line, "no `port`"));
        };
        let number = c.port_number(port).ok_or_else(|| {
            err(
                object,
                line,
                match port {
                    PortValue::Number(n) => format!("port {n} is not a port number"),
                    PortValue::Name(name) => {
                        format!("port {name:?} is not the name of a port of the container")
                    }
                },
            )
        })?;
        ports.of(number).ok_or_else(|| {
            err(
                object,
                line,
                format!("port {number} has no free placeholder (a replica has three ports)"),
            )
        })
    }
}

/// `lameduck run --proxy 8080=8081` listens on every interface; here it listens on loopback.
/// Rewrites bare-port sides of proxy specs (`[PROTOCOL:]PORT=PORT`, comma-separated) to
/// `127.0.0.1:PORT`; anything else is returned as it is.
pub(super) fn loopback_proxy(value: &str) -> String {
    let (flag, specs) = match value.split_once('=') {
        Some((flag, rest)) if flag == "--proxy" => (Some(flag), rest),
        _ => (None, value),
    };
    let is_port = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let rewritten: Vec<String> = specs
        .split(',')
        .map(|spec| {
            let Some((listen, upstream)) = spec.split_once('=') else {
                return spec.to_owned();
            };
            let (proto, port) = match listen.split_once(':') {
                Some((p, port)) if ["auto", "http", "tcp"].contains(&p) => (format!("{p}:"), port),
                _ => (String::new(), listen),
            };
            let listen = if is_port(port) {
                format!("{proto}127.0.0.1:{port}")
            } else {
                listen.to_owned()
            };
            let upstream = if is_port(upstream) {
                format!("127.0.0.1:{upstream}")
            } else {
                upstream.to_owned()
            };
            format!("{listen}={upstream}")
        })
        .collect();
    let joined = rewritten.join(",");
    match flag {
        Some(flag) => format!("{flag}={joined}"),
        None => joined,
    }
}

/// Replaces each mapped port number in `text` (a whole number, not part of a longer word or
/// version) by its placeholder; a wildcard or empty host before it becomes `127.0.0.1`.
pub(super) fn map_ports(text: &str, ports: &Ports) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let boundary = |b: Option<&u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'.'));
    // Bounded: every round consumes at least one byte.
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && boundary(i.checked_sub(1).and_then(|j| bytes.get(j))) {
            let end = bytes[i..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(bytes.len(), |n| i + n);
            let to = text[i..end]
                .parse::<u16>()
                .ok()
                .filter(|_| boundary(bytes.get(end)))
                .and_then(|n| ports.of(n));
            if let Some(to) = to {
                for wildcard in ["0.0.0.0:", "[::]:", ":::"] {
                    if out.ends_with(wildcard) {
                        out.truncate(out.len() - wildcard.len());
                        out.push_str("127.0.0.1:");
                        break;
                    }
                }
                // `:8080`, `--listen=:8080`: no host is every interface.
                if out == ":" || out.ends_with("=:") || out.ends_with(" :") {
                    out.truncate(out.len() - 1);
                    out.push_str("127.0.0.1:");
                }
                out.push_str(placeholder(to));
                i = end;
                continue;
            }
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}
