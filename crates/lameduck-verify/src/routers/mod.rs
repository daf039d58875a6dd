//! Routers: the consumers of the endpoint list, each applying changes after its own delay.
//!
//! The embedded routers ([`l4`], [`l7`]) emulate kube-proxy and an ingress controller; the real
//! ones ([`haproxy`], [`nginx`]) drive an installed HAProxy or nginx the way their Kubernetes
//! controllers do. [`Propagator`] is the endpoints controller: it hands every add and remove to
//! every router after a delay drawn, per router and per change, from the propagation distribution.

pub(crate) mod haproxy;
pub(crate) mod l4;
pub(crate) mod l7;
pub(crate) mod nginx;
pub(crate) mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::Distribution as _;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::events::{EventKind, EventLog, PodId, RouterId};
use crate::scenario::{Distribution, RouterKind};

/// Response header in which routers name the pod that served (or failed) a request.
pub(crate) const POD_HEADER: &str = "x-lameduck-pod";
/// Response header set by the embedded L7 router on a response it produced itself.
pub(crate) const ERROR_HEADER: &str = "x-lameduck-router-error";
/// Response header set by the embedded L7 router when it retried the request once.
pub(crate) const RETRIED_HEADER: &str = "x-lameduck-retried";

/// A router could not be started or could not apply a change.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Socket error.
    #[error("router {what}: {source}")]
    Io {
        /// What it was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The router binary is not installed.
    #[error(
        "{binary} is not installed (needed for `{kind}` routers; on Debian: apt-get install {package})"
    )]
    Missing {
        /// The binary looked for.
        binary: &'static str,
        /// The router kind.
        kind: RouterKind,
        /// The Debian package.
        package: &'static str,
    },
    /// The router refused its configuration or a command.
    #[error("{kind} router: {message}")]
    Rejected {
        /// The router kind.
        kind: RouterKind,
        /// What it said.
        message: String,
    },
}

impl RouterError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// One endpoint: a pod and the address routers send to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub pod: PodId,
    pub addr: SocketAddr,
}

/// The endpoints an embedded router currently routes to, with a round-robin cursor.
#[derive(Debug, Default)]
pub(crate) struct Table {
    endpoints: RwLock<Arc<Vec<Endpoint>>>,
    cursor: AtomicUsize,
}

impl Table {
    pub fn add(&self, ep: Endpoint) {
        let mut g = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !g.iter().any(|e| e.pod == ep.pod) {
            let mut v = (**g).clone();
            v.push(ep);
            *g = Arc::new(v);
        }
    }

    pub fn remove(&self, pod: PodId) {
        let mut g = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let v: Vec<Endpoint> = g.iter().copied().filter(|e| e.pod != pod).collect();
        *g = Arc::new(v);
    }

    fn snapshot(&self) -> Arc<Vec<Endpoint>> {
        Arc::clone(
            &self
                .endpoints
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The next endpoint in round-robin order.
    pub fn pick(&self) -> Option<Endpoint> {
        let eps = self.snapshot();
        if eps.is_empty() {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        eps.get(i % eps.len()).copied()
    }

    /// The next endpoint other than `not` (for a retry).
    pub fn pick_other(&self, not: PodId) -> Option<Endpoint> {
        let eps = self.snapshot();
        let others: Vec<&Endpoint> = eps.iter().filter(|e| e.pod != not).collect();
        if others.is_empty() {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        others.get(i % others.len()).map(|e| **e)
    }
}

/// Maps replica ports to pods, so that a real router's upstream address names a pod.
#[derive(Debug, Default)]
pub(crate) struct PodDirectory {
    by_port: Mutex<HashMap<u16, PodId>>,
}

impl PodDirectory {
    pub fn insert(&self, port: u16, pod: PodId) {
        self.by_port
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port, pod);
    }

    /// Resolves a pod header value: `7`, `p7` (HAProxy server name) or `127.0.0.1:4711`
    /// (nginx `$upstream_addr`, possibly a list after retries: the last one counts).
    pub fn resolve(&self, value: &str) -> Option<PodId> {
        let last = value.rsplit(',').next()?.trim();
        if let Some((_, port)) = last.rsplit_once(':') {
            let port: u16 = port.trim().parse().ok()?;
            return self
                .by_port
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&port)
                .copied();
        }
        last.trim_start_matches('p').parse().ok()
    }
}

/// A router of any kind.
pub(crate) enum Router {
    L4(Arc<l4::L4Router>),
    L7(Arc<l7::L7Router>),
    Haproxy(haproxy::HaproxyRouter),
    Nginx(nginx::NginxRouter),
}

impl Router {
    /// Starts a router of `kind` on a free loopback port.
    pub async fn start(
        id: RouterId,
        kind: RouterKind,
        retry: bool,
        request_timeout: Duration,
        workdir: &std::path::Path,
    ) -> Result<Self, RouterError> {
        Ok(match kind {
            RouterKind::L4 => Self::L4(l4::L4Router::start(id).await?),
            RouterKind::L7 => Self::L7(l7::L7Router::start(id, retry).await?),
            RouterKind::Haproxy => Self::Haproxy(
                haproxy::HaproxyRouter::start(
                    id,
                    retry,
                    request_timeout,
                    workdir.join(format!("haproxy-{id}")),
                )
                .await?,
            ),
            RouterKind::Nginx => Self::Nginx(
                nginx::NginxRouter::start(
                    id,
                    retry,
                    request_timeout,
                    workdir.join(format!("nginx-{id}")),
                )
                .await?,
            ),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::L4(r) => r.addr(),
            Self::L7(r) => r.addr(),
            Self::Haproxy(r) => r.addr(),
            Self::Nginx(r) => r.addr(),
        }
    }

    /// The L4 router, whose connection table attributes connections to pods.
    pub fn as_l4(&self) -> Option<Arc<l4::L4Router>> {
        match self {
            Self::L4(r) => Some(Arc::clone(r)),
            _ => None,
        }
    }

    pub async fn add(&self, ep: Endpoint) -> Result<(), RouterError> {
        match self {
            Self::L4(r) => {
                r.table().add(ep);
                Ok(())
            }
            Self::L7(r) => {
                r.table().add(ep);
                Ok(())
            }
            Self::Haproxy(r) => r.add(ep).await,
            Self::Nginx(r) => r.add(ep).await,
        }
    }

    pub async fn remove(&self, pod: PodId) -> Result<(), RouterError> {
        match self {
            Self::L4(r) => {
                r.table().remove(pod);
                Ok(())
            }
            Self::L7(r) => {
                r.table().remove(pod);
                Ok(())
            }
            Self::Haproxy(r) => r.remove(pod).await,
            Self::Nginx(r) => r.remove(pod).await,
        }
    }

    /// Waits until the router answers `path` from a pod (a real router applies changes
    /// asynchronously: nginx reloads in the background), for at most 5 s.
    pub async fn await_routing(&self, path: &str) {
        if matches!(self, Self::L4(_) | Self::L7(_)) {
            return;
        }
        // Several in a row: nginx applies each add with a reload, and a worker of an older
        // generation may still answer the first ones.
        let mut ok = 0;
        for _ in 0..200 {
            if crate::rollout::http_get(self.addr().port(), path, Duration::from_millis(500))
                .await
                .is_ok()
            {
                ok += 1;
                if ok >= 20 {
                    return;
                }
            } else {
                ok = 0;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the router (real routers: their processes are ended by PID).
    pub async fn shutdown(&self) {
        match self {
            Self::L4(r) => r.shutdown(),
            Self::L7(r) => r.shutdown(),
            Self::Haproxy(r) => r.shutdown().await,
            Self::Nginx(r) => r.shutdown().await,
        }
    }
}

/// One router with its own propagation delays.
struct Consumer {
    id: RouterId,
    router: Arc<Router>,
    dist: Distribution,
    rng: Mutex<StdRng>,
    /// When this router last applied (or will apply) a change of each pod: changes of one pod
    /// are applied in order, as a watch stream delivers them.
    last: Mutex<HashMap<PodId, Instant>>,
}

/// The endpoints controller: publishes adds and removes to every router after its delay.
pub(crate) struct Propagator {
    consumers: Vec<Consumer>,
    log: EventLog,
    tracker: TaskTracker,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Propagator {
    pub fn new(routers: Vec<(Arc<Router>, Distribution)>, seed: u64, log: EventLog) -> Self {
        let consumers = routers
            .into_iter()
            .enumerate()
            .map(|(i, (router, dist))| Consumer {
                id: RouterId::try_from(i).unwrap_or(RouterId::MAX),
                router,
                dist,
                rng: Mutex::new(StdRng::seed_from_u64(
                    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(i as u64 + 1),
                )),
                last: Mutex::new(HashMap::new()),
            })
            .collect();
        Self {
            consumers,
            log,
            tracker: TaskTracker::new(),
            errors: Arc::default(),
        }
    }

    /// Applies `ep` to every router at once (the initial state before the load starts).
    pub async fn add_now(&self, ep: Endpoint) -> Result<(), RouterError> {
        for c in &self.consumers {
            c.router.add(ep).await?;
            self.log
                .push(Some(ep.pod), Some(c.id), EventKind::RouterAdded);
        }
        Ok(())
    }

    /// Publishes `ep` as ready; every router adds it after its delay.
    pub fn publish_add(&self, ep: Endpoint) {
        self.log
            .push(Some(ep.pod), None, EventKind::EndpointPublished);
        self.publish(ep.pod, Some(ep));
    }

    /// Publishes `pod` as not ready (t0 of a deletion); every router withdraws it after its delay.
    pub fn publish_remove(&self, pod: PodId) {
        self.publish(pod, None);
    }

    fn publish(&self, pod: PodId, add: Option<Endpoint>) {
        for c in &self.consumers {
            let delay = draw(
                &c.dist,
                &mut c.rng.lock().unwrap_or_else(PoisonError::into_inner),
            );
            let at = {
                let mut last = c.last.lock().unwrap_or_else(PoisonError::into_inner);
                let at = (Instant::now() + delay)
                    .max(last.get(&pod).copied().unwrap_or_else(Instant::now));
                last.insert(pod, at);
                at
            };
            let router = Arc::clone(&c.router);
            let log = self.log.clone();
            let errors = Arc::clone(&self.errors);
            let id = c.id;
            self.tracker.spawn(async move {
                tokio::time::sleep_until(at).await;
                let (res, kind) = match add {
                    Some(ep) => (router.add(ep).await, EventKind::RouterAdded),
                    None => (router.remove(pod).await, EventKind::RouterWithdrew),
                };
                match res {
                    Ok(()) => {
                        log.push(Some(pod), Some(id), kind);
                    }
                    Err(e) => errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(e.to_string()),
                }
            });
        }
    }

    /// Waits until every published change was applied by every router.
    pub async fn settle(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }

    /// Changes that a router failed to apply.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Draws one delay.
pub(crate) fn draw(dist: &Distribution, rng: &mut StdRng) -> Duration {
    let secs = match *dist {
        Distribution::Fixed(d) => d.secs(),
        Distribution::Uniform { min, max } => {
            if max.0 <= min.0 {
                min.secs()
            } else {
                rand_distr::Uniform::new_inclusive(min.secs(), max.secs())
                    .map_or(min.secs(), |u| u.sample(rng))
            }
        }
        Distribution::Lognormal { median, p99 } => {
            let mu = median.secs().ln();
            let sigma = (p99.secs() / median.secs()).ln() / 2.326_348;
            rand_distr::LogNormal::new(mu, sigma.max(0.0)).map_or(median.secs(), |d| d.sample(rng))
        }
    };
    Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
}

/// Finds an installed binary on `PATH` or in `/usr/sbin`.
pub(crate) fn find_binary(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free loopback port for a process to bind later (replicas, real routers).
///
/// Taken below the kernel's ephemeral range, so that the testbed's own outgoing connections
/// (thousands per run, each on an ephemeral port) cannot take it between this check and the
/// child's bind; the cursor starts at a place derived from the PID so that concurrent runs
/// rarely probe the same ports. Falls back to an ephemeral port when the range is exhausted.
pub(crate) fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 10_000;
    static CURSOR: AtomicU32 = AtomicU32::new(0);
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u32>().ok())
        })
        .unwrap_or(32_768)
        .clamp(LOW + 1_000, 65_535);
    let span = high - LOW;
    let start = (std::process::id().wrapping_mul(7_919)) % span;
    for _ in 0..span.min(2_000) {
        let n = CURSOR.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + n) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Ends a real router: SIGKILL to its process group (its workers), by its PID, and reaps it.
pub(crate) async fn stop_child(mut child: tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Dur;

    #[test]
    fn lognormal_draws_match_median_and_p99() {
        let dist = Distribution::Lognormal {
            median: Dur(Duration::from_secs(1)),
            p99: Dur(Duration::from_secs(5)),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| draw(&dist, &mut rng).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[10_000];
        let p99 = v[19_800];
        assert!((0.9..1.1).contains(&median), "{median}");
        assert!((4.0..6.2).contains(&p99), "{p99}");
    }

    #[test]
    fn table_round_robin_and_pick_other() {
        let t = Table::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        t.add(Endpoint { pod: 1, addr: a });
        t.add(Endpoint { pod: 2, addr: a });
        let picks: Vec<PodId> = (0..4).filter_map(|_| t.pick()).map(|e| e.pod).collect();
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 2);
        assert_eq!(t.pick_other(1).map(|e| e.pod), Some(2));
        t.remove(1);
        assert_eq!(t.pick().map(|e| e.pod), Some(2));
        assert_eq!(t.pick_other(2), None);
    }

    #[test]
    fn directory_resolves_header_forms() {
        let d = PodDirectory::default();
        d.insert(4711, 3);
        assert_eq!(d.resolve("3"), Some(3));
        assert_eq!(d.resolve("p3"), Some(3));
        assert_eq!(d.resolve("127.0.0.1:9, 127.0.0.1:4711"), Some(3));
        assert_eq!(d.resolve("127.0.0.1:9"), None);
    }
}
