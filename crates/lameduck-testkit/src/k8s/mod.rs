//! A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager,
//! built from Kubernetes' own Go modules (`testbed/k8s`, `scripts/k8s-build`), started on
//! loopback with a PKI of their own, and a [`FakeKubelet`] that plays the nodes.
//!
//! Like controller-runtime's envtest, but with the controllers that matter for pod termination
//! running: EndpointSlices, Deployments, ReplicaSets, PodDisruptionBudgets, garbage collection,
//! namespaces and service accounts. Never node lifecycle or pod GC: with no real kubelets they
//! would evict every pod.

mod binaries;
mod kubelet;
mod pki;
mod process;

pub use binaries::Binaries;
pub use kubelet::{FakeKubelet, KubeletOptions, PodNet, PodProcess, PodRuntime};
pub use pki::{CertFiles, Pki};

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use process::Daemon;

/// Why a control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binaries are missing and could not be built.
    #[error("Kubernetes control-plane binaries: {0}")]
    Binaries(String),
    /// A file could not be written or a program not started.
    #[error("{path}: {source}")]
    Io {
        /// The file or program.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A certificate could not be generated.
    #[error("test PKI: {0}")]
    Pki(String),
    /// A daemon exited during start.
    #[error("{what} exited ({status}); the end of its log:\n{log}")]
    Exited {
        /// Which daemon.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// A daemon did not become ready in time.
    #[error("{what} was not ready after {waited:?}; the end of its log:\n{log}")]
    NotReady {
        /// Which daemon.
        what: &'static str,
        /// How long the start waited.
        waited: Duration,
        /// The end of its log.
        log: String,
    },
    /// The kubeconfig could not be loaded into a client.
    #[error("client for the test API server: {0}")]
    Client(String),
    /// An API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// How long each daemon may take to become ready.
const ETCD_READY: Duration = Duration::from_secs(30);
const APISERVER_READY: Duration = Duration::from_secs(90);
const CONTROLLER_MANAGER_READY: Duration = Duration::from_secs(60);

/// How many times a start is tried when a port was taken meanwhile.
const START_ATTEMPTS: u32 = 3;

/// The controllers kube-controller-manager runs: those that work without kubelets.
pub const CONTROLLERS: &[&str] = &[
    "endpointslice-controller",
    "deployment-controller",
    "replicaset-controller",
    "disruption-controller",
    "garbage-collector-controller",
    "namespace-controller",
    // Creates each namespace's `default` ServiceAccount, which pod admission requires.
    "serviceaccount-controller",
];

/// The service network (ClusterIPs are allocated from it; nothing routes it).
pub const SERVICE_CIDR: &str = "10.0.0.0/24";

/// How long each part took to start.
#[derive(Debug, Clone, Copy)]
pub struct StartTimes {
    /// etcd answered `/health`.
    pub etcd: Duration,
    /// kube-apiserver answered `/readyz` (from its spawn).
    pub apiserver: Duration,
    /// kube-controller-manager created the `default` ServiceAccount (from its spawn).
    pub controller_manager: Duration,
    /// Everything, including the PKI.
    pub total: Duration,
}

/// A running control plane. Dropping it stops every daemon by PID (also during a panic, when
/// it first prints the end of each daemon's log) and removes its directory.
pub struct ControlPlane {
    client: kube::Client,
    url: String,
    kubeconfig: PathBuf,
    pki: Pki,
    start_times: StartTimes,
    // Dropped in this order: controllers before the API server, the API server before etcd.
    controller_manager: Daemon,
    apiserver: Daemon,
    etcd: Daemon,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts a control plane, or returns `None` after a `SKIPPED` notice when the binaries
    /// are missing and cannot be built (under `CI=true` that fails the test instead). Any other
    /// failure to start panics with the daemon's log.
    pub async fn start_or_skip() -> Option<Self> {
        let binaries = crate::needed_or_skip(
            Binaries::locate().map_err(|e| eprintln!("{e}")).ok(),
            "the Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)",
            "scripts/k8s-build builds it with Go",
        )?;
        match Self::start(&binaries).await {
            Ok(plane) => Some(plane),
            Err(e) => panic!("could not start the control plane: {e}"),
        }
    }

    /// Starts etcd, then kube-apiserver, then kube-controller-manager, each on free loopback
    /// ports, and waits until each is ready.
    ///
    /// A free port is found by binding port 0 and letting it go, so another process may take it
    /// before the daemon binds it: a daemon that exits with "address already in use" is started
    /// again, with the whole control plane, on new ports (at most [`START_ATTEMPTS`] times).
    pub async fn start(binaries: &Binaries) -> Result<Self, Error> {
        let mut attempt = 1;
        loop {
            match Self::start_once(binaries).await {
                Err(Error::Exited { log, .. })
                    if attempt < START_ATTEMPTS && log.contains("address already in use") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(binaries: &Binaries) -> Result<Self, Error> {
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("lameduck-k8s-")
            .tempdir()
            .map_err(|source| Error::io(Path::new("temporary directory"), source))?;
        let pki = Pki::generate(&dir.path().join("pki"))?;
        let [etcd_port, peer_port, api_port] = free_ports()?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Daemon::spawn(
            "etcd",
            &binaries.path("etcd"),
            &strings(&[
                "--name=lameduck-test",
                &format!("--data-dir={}", dir.path().join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=lameduck-test={peer_url}"),
                // A test's data need not survive a power cut; fsync would dominate start time.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
            dir.path(),
        )?;
        let etcd_addr: SocketAddr = ([127, 0, 0, 1], etcd_port).into();
        wait_ready(&mut etcd, "etcd", ETCD_READY, || async {
            crate::get_once(etcd_addr, "/health")
                .await
                .ok()
                .filter(|reply| reply.status.is_success())
        })
        .await?;
        let etcd_time = began.elapsed();

        let spawned = Instant::now();
        let url = format!("https://127.0.0.1:{api_port}");
        let mut apiserver = Daemon::spawn(
            "kube-apiserver",
            &binaries.path("kube-apiserver"),
            &strings(&[
                &format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--secure-port={api_port}"),
                &format!("--cert-dir={}", dir.path().join("apiserver").display()),
                &format!("--tls-cert-file={}", pki.apiserver.cert.display()),
                &format!("--tls-private-key-file={}", pki.apiserver.key.display()),
                &format!("--client-ca-file={}", pki.ca_cert.display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!(
                    "--service-account-key-file={}",
                    pki.service_account.cert.display()
                ),
                &format!(
                    "--service-account-signing-key-file={}",
                    pki.service_account.key.display()
                ),
                &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--authorization-mode=RBAC",
                // No `kubernetes` Service endpoints: they would name 127.0.0.1, which
                // EndpointSlices reject, and nothing in a test needs them.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
            ]),
            dir.path(),
        )?;
        let kubeconfig = write_kubeconfig(dir.path(), &url, &pki)?;
        let client = client_for(&kubeconfig).await?;
        wait_ready(&mut apiserver, "kube-apiserver", APISERVER_READY, || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
                client.request_text(request).await.ok()
            }
        })
        .await?;
        let apiserver_time = spawned.elapsed();

        let spawned = Instant::now();
        let mut controller_manager = Daemon::spawn(
            "kube-controller-manager",
            &binaries.path("kube-controller-manager"),
            &strings(&[
                &format!("--kubeconfig={}", kubeconfig.display()),
                &format!("--controllers={}", CONTROLLERS.join(",")),
                "--leader-elect=false",
                // No HTTPS endpoint of its own: nothing scrapes it, and a port less can clash.
                "--secure-port=0",
                "--use-service-account-credentials=false",
            ]),
            dir.path(),
        )?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        wait_ready(
            &mut controller_manager,
            "kube-controller-manager",
            CONTROLLER_MANAGER_READY,
            || {
                let accounts = accounts.clone();
                async move { accounts.get_opt("default").await.ok().flatten() }
            },
        )
        .await?;
        let start_times = StartTimes {
            etcd: etcd_time,
            apiserver: apiserver_time,
            controller_manager: spawned.elapsed(),
            total: began.elapsed(),
        };
        Ok(Self {
            client,
            url,
            kubeconfig,
            pki,
            start_times,
            controller_manager,
            apiserver,
            etcd,
            dir,
        })
    }

    /// A client with the admin certificate (group `system:masters`). It retries nothing, so
    /// a test sees every 429 (a refused eviction) and 503 itself.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig file for the admin (for `kubectl --kubeconfig` or a child process).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The control plane's PKI: its CA can sign a webhook's serving certificate.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// How long the start took, part by part.
    pub fn start_times(&self) -> StartTimes {
        self.start_times
    }

    /// A directory for a test's own files; removed with the control plane.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PIDs of etcd, kube-apiserver and kube-controller-manager.
    pub fn pids(&self) -> [u32; 3] {
        [
            self.etcd.pid(),
            self.apiserver.pid(),
            self.controller_manager.pid(),
        ]
    }

    /// The end of kube-apiserver's log (e.g. to show why it refused a webhook).
    pub fn apiserver_log_tail(&self) -> String {
        self.apiserver.log_tail()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for daemon in [&self.controller_manager, &self.apiserver, &self.etcd] {
                eprintln!(
                    "--- end of {} ---\n{}",
                    daemon.log_path().display(),
                    daemon.log_tail()
                );
            }
        }
    }
}

/// Creates namespace `name` with `labels` and waits (at most 60 s) for its `default`
/// ServiceAccount, which the serviceaccount controller creates and without which pods are
/// refused.
pub async fn create_namespace(
    client: &kube::Client,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<(), Error> {
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::all(client.clone())
        .create(&kube::api::PostParams::default(), &namespace)
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    crate::poll_until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { accounts.get_opt("default").await.ok().flatten() },
    )
    .await
    .map(|_| ())
    .ok_or_else(|| {
        Error::Client(format!(
            "namespace {name}: no default ServiceAccount after 60 s"
        ))
    })
}

/// The conditions of a Service's endpoints (from its EndpointSlices), by pod name:
/// `(ready, serving, terminating)`, each `false` when unset.
pub async fn endpoint_conditions(
    client: &kube::Client,
    namespace: &str,
    service: &str,
) -> Result<std::collections::BTreeMap<String, (bool, bool, bool)>, Error> {
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), namespace);
    let params =
        kube::api::ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut found = std::collections::BTreeMap::new();
    for slice in slices.list(&params).await? {
        for endpoint in slice.endpoints.into_iter().flatten() {
            let pod = endpoint.target_ref.and_then(|r| r.name).unwrap_or_default();
            let c = endpoint.conditions.unwrap_or_default();
            let flag = |b: Option<bool>| b.unwrap_or(false);
            found.insert(pod, (flag(c.ready), flag(c.serving), flag(c.terminating)));
        }
    }
    Ok(found)
}

/// Polls `ready` every 100 ms until it gives `Some`, failing early if the daemon exits.
async fn wait_ready<T, F, Fut>(
    daemon: &mut Daemon,
    what: &'static str,
    limit: Duration,
    mut ready: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let began = Instant::now();
    while began.elapsed() < limit {
        daemon.check_running()?;
        if let Some(value) = ready().await {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::NotReady {
        what,
        waited: limit,
        log: daemon.log_tail(),
    })
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&arg| arg.to_owned()).collect()
}

/// `N` distinct free ports on 127.0.0.1, all held until every one is chosen.
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::io(Path::new("127.0.0.1:0"), source))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|source| Error::io(Path::new("127.0.0.1:0"), source))?
            .port();
    }
    Ok(ports)
}

fn write_kubeconfig(dir: &Path, url: &str, pki: &Pki) -> Result<PathBuf, Error> {
    let path = dir.join("admin.kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: lameduck-test
  cluster:
    server: {url}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: lameduck-test
  context:
    cluster: lameduck-test
    user: admin
    namespace: default
current-context: lameduck-test
",
        ca = pki.ca_cert.display(),
        cert = pki.admin.cert.display(),
        key = pki.admin.key.display(),
    );
    std::fs::write(&path, text).map_err(|source| Error::io(&path, source))?;
    Ok(path)
}

async fn client_for(kubeconfig: &Path) -> Result<kube::Client, Error> {
    let config = Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Client(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Client(e.to_string()))?;
    // kube retries 429 and 503 by default; a test must see them (an eviction refused by a
    // budget or by the gate is a 429).
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
}
