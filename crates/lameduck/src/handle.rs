//! [`Lameduck`]: the handle a service holds, and its [`Builder`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

use lameduck_core::{Config, Lifecycle, Settings, Shutdown, ShutdownReport, Trigger};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::serve::{ConnStats, HttpService, ResponseBody, Serve};
use crate::{Error, admin, signals, watchdog};

/// Where the admin endpoints listen unless `LAMEDUCK_ADMIN_ADDR` or the builder says otherwise.
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8686";

/// The lifecycle of one process: clone it into every server, task and handler that needs it.
///
/// It owns the shutdown driver, which starts on first use ([`Lameduck::serve`],
/// [`Lameduck::stopped`]) and moves the process from Draining to Stopped within the budget.
#[derive(Debug, Clone)]
pub struct Lameduck {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: Shutdown,
    stats: Arc<ConnStats>,
    admin_addr: Option<SocketAddr>,
    hard_exit: bool,
    driver: Once,
    report: watch::Sender<Option<ShutdownReport>>,
    readiness: Mutex<Option<ReadinessCheck>>,
    metrics: Mutex<Vec<MetricsHook>>,
}

/// An extra readiness condition (the wrapped app's own health endpoint, say).
pub(crate) type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Adds metrics of the process's own to the registry `/metrics` renders.
pub(crate) type MetricsHook = Arc<dyn Fn(&mut prometheus_client::registry::Registry) + Send + Sync>;

/// Configures a [`Lameduck`]. Settings start from the defaults (or the environment with
/// [`Builder::from_env`]); every setter overrides one.
#[derive(Debug, Clone)]
pub struct Builder {
    settings: Settings,
    admin_addr: Option<SocketAddr>,
    hard_exit: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lameduck")
            .field("phase", &self.shutdown.lifecycle().phase())
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            admin_addr: DEFAULT_ADMIN_ADDR.parse().ok(),
            hard_exit: true,
        }
    }
}

/// One setter per drain setting, generated from the settings table.
macro_rules! builder_setters {
    ($($(#[doc = $long:literal])* $name:ident, $env:literal, $flag:literal, $default:expr, $doc:literal;)*) => {$(
        $(#[doc = $long])*
        #[doc = concat!("\n\nThe environment variable `", $env, "` of [`Builder::from_env`].")]
        #[must_use]
        pub fn $name(mut self, value: Duration) -> Self {
            self.settings.$name = value;
            self
        }
    )*};
}

impl Builder {
    /// Defaults overridden by the `LAMEDUCK_*` environment variables.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Builder::from_env`], reading variables from `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let settings = Settings::from_lookup(&lookup)?;
        let mut builder = Self {
            settings,
            ..Self::default()
        };
        if let Some(value) = lookup("LAMEDUCK_ADMIN_ADDR").filter(|v| !v.trim().is_empty()) {
            builder.admin_addr = match value.trim() {
                "off" | "none" => None,
                addr => Some(addr.parse().map_err(|_| Error::AdminAddr {
                    value: value.clone(),
                })?),
            };
        }
        Ok(builder)
    }

    lameduck_core::drain_settings!(builder_setters);

    /// Every drain setting at once (e.g. read by `lameduck run` from its flags and environment).
    #[must_use]
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Where the admin endpoints listen; `None` disables them.
    #[must_use]
    pub fn admin_addr(mut self, addr: Option<SocketAddr>) -> Self {
        self.admin_addr = addr;
        self
    }

    /// Whether the process exits by itself at the budget's end if `main` has not returned by then
    /// (default true: a pod must never be SIGKILLed mid-write because of a stuck task).
    #[must_use]
    pub fn hard_exit(mut self, enabled: bool) -> Self {
        self.hard_exit = enabled;
        self
    }

    /// The drain settings as set so far (not yet validated).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where the admin endpoints will listen, if anywhere.
    pub fn admin(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Lameduck, Error> {
        let config = self.settings.validate()?;
        Ok(Lameduck::with_config(
            config,
            self.admin_addr,
            self.hard_exit,
        ))
    }
}

impl Lameduck {
    /// A builder starting from the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Configured from the `LAMEDUCK_*` environment variables.
    pub fn from_env() -> Result<Self, Error> {
        Builder::from_env()?.build()
    }

    fn with_config(config: Config, admin_addr: Option<SocketAddr>, hard_exit: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                shutdown: Shutdown::new(config),
                stats: Arc::default(),
                admin_addr,
                hard_exit,
                driver: Once::new(),
                report: watch::Sender::new(None),
                readiness: Mutex::new(None),
                metrics: Mutex::default(),
            }),
        }
    }

    /// The lifecycle (phase, transitions, watch channel).
    pub fn lifecycle(&self) -> &Lifecycle {
        self.inner.shutdown.lifecycle()
    }

    /// The shared shutdown core (connection tracker, activity, tokens).
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    pub(crate) fn stats(&self) -> &Arc<ConnStats> {
        &self.inner.stats
    }

    /// Adds a condition to `/readyz`: while Serving, it answers 200 only if `check` returns
    /// `Ok`; the error text goes in the 503 body. Checks should be quick (a local probe).
    pub fn set_readiness_check<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: ReadinessCheck = Arc::new(move || Box::pin(check()));
        *self
            .inner
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(check);
    }

    pub(crate) fn readiness_check(&self) -> Option<ReadinessCheck> {
        self.inner
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds metrics to `/metrics`: `register` is called on every scrape with the registry
    /// being rendered and should register clones of the process's metrics in it
    /// (prometheus-client metrics share their values between clones). Names are taken as
    /// given, without the `lameduck_` prefix of the built-in ones.
    pub fn register_metrics<F>(&self, register: F)
    where
        F: Fn(&mut prometheus_client::registry::Registry) + Send + Sync + 'static,
    {
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(register));
    }

    pub(crate) fn metrics_hooks(&self) -> Vec<MetricsHook> {
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn hard_exit_enabled(&self) -> bool {
        self.inner.hard_exit
    }

    /// Starting → Serving: readiness succeeds from now on. [`Lameduck::serve`] calls it when it
    /// starts accepting unless told otherwise.
    pub fn mark_ready(&self) {
        self.lifecycle().mark_ready();
    }

    /// Starts draining, as SIGTERM would. Returns false if it had already started.
    pub fn drain(&self) -> bool {
        self.start();
        self.lifecycle().drain(Trigger::Programmatic)
    }

    /// Fires when Closing starts: long-lived handlers (streams, WebSockets) should finish.
    pub fn closing_token(&self) -> CancellationToken {
        self.inner.shutdown.closing().clone()
    }

    /// Spawns long-running work that gets a token at Closing and is awaited within the budget;
    /// if it is still running at the forced close it is aborted and reported by `name`.
    pub fn spawn_task<F, Fut>(&self, name: impl Into<String>, task: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.start();
        self.inner.shutdown.tasks().spawn(name, task)
    }

    /// Like [`Lameduck::spawn_task`], for a task that lives as long as the process (a
    /// supervised child, a consumer loop): not busy work, so the gate does not wait for it.
    pub fn spawn_resident_task<F, Fut>(
        &self,
        name: impl Into<String>,
        task: F,
    ) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.start();
        self.inner.shutdown.tasks().spawn_resident(name, task)
    }

    /// Serves HTTP/1.1 and HTTP/2 (h2c) on `listener` (a [`TcpListener`], or any
    /// [`Listener`](crate::Listener)) until the shutdown finished.
    pub fn serve<S, B, L>(&self, listener: L, service: S) -> Serve<S, B, L>
    where
        S: HttpService<B>,
        B: ResponseBody,
        L: crate::Listener,
    {
        self.start();
        Serve::new(self.clone(), listener, service)
    }

    /// Binds the admin endpoints on the configured address and serves them in the background
    /// until the process exits. Returns the bound address, or `None` if disabled.
    pub async fn bind_admin(&self) -> Result<Option<SocketAddr>, Error> {
        let Some(addr) = self.inner.admin_addr else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::AdminBind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::AdminBind { addr, source })?;
        self.serve_admin(listener);
        Ok(Some(local))
    }

    /// Serves the admin endpoints on `listener` in the background until the process exits.
    pub fn serve_admin(&self, listener: TcpListener) -> JoinHandle<()> {
        self.start();
        tokio::spawn(admin::serve(self.clone(), listener))
    }

    /// Drains on SIGTERM and SIGINT; a second one stops the process at once.
    pub fn handle_signals(&self) -> Result<JoinHandle<()>, Error> {
        self.start();
        signals::spawn(self.clone())
    }

    /// Waits until the shutdown finished and returns what happened.
    pub async fn stopped(&self) -> ShutdownReport {
        self.start();
        let mut rx = self.inner.report.subscribe();
        loop {
            if let Some(report) = rx.borrow_and_update().clone() {
                return report;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self.inner`, so this is unreachable; wait for the phase.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Starts the shutdown driver (once). Needs a tokio runtime.
    fn start(&self) {
        self.inner.driver.call_once(|| {
            let this = self.clone();
            tokio::spawn(async move {
                if this.inner.hard_exit {
                    watchdog::arm_when_draining(this.shutdown().clone());
                }
                let report = this.inner.shutdown.run().await;
                this.inner.report.send_replace(Some(report));
            });
        });
    }
}
