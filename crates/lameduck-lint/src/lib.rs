//! `lameduck lint`: static checks of Kubernetes manifests for zero-downtime pitfalls.
//!
//! The crate is a pure function from objects to findings: [`load`] turns a source text (YAML
//! streams, JSON, `kind: List`) into [`Object`]s with line and column of every field, [`lint`]
//! runs every [`Check`] over all objects of a run (cross-object checks see every file), and
//! [`output`] renders findings as text, JSON or SARIF 2.1.0. No I/O happens here: the CLI reads
//! files and writes the output.
//!
//! The same reading serves `lameduck verify -f MANIFEST`: [`workload`] finds an object's pod
//! template and reads its containers ([`Container`]: probes, preStop, ports, env, a `lameduck
//! run` entrypoint), so a manifest means the same to both.

mod checks;
mod config;
mod context;
mod finding;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod output;
mod source;
mod workload;
mod yaml;

pub use checks::{CHECKS, Check, IGNORE_ANNOTATION, find as find_check};
pub use config::{Config, ConfigError};
pub use context::{selects, service_selects};
pub use finding::{Finding, ObjectRef, Severity, UnknownSeverity};
pub use source::{InputError, Loaded, Object, load, load_all};
// The pod-template reading `lameduck verify -f` shares, so lint and verify read a manifest alike.
pub use workload::{
    Class, Container, DEFAULT_ADMIN_PORT, DEFAULT_GRACE, DRAIN_ANNOTATION, EnvVar, FieldError,
    LameduckRun, PortSpec, PortValue, PreStop, PreStopKind, ProbeHandler, ProbeSpec, ProxyPorts,
    Setting, Workload, parse_duration, probe_spec, workload,
};
pub use yaml::{Node, Pos, SyntaxError, Text, Value};

/// Runs every enabled check over `objects` (all files of one run) and returns the findings,
/// sorted by file and position. Suppressed findings are included with their reason.
pub fn lint(objects: &[Object], config: &Config) -> Vec<Finding> {
    let ctx = context::Context::new(objects, config);
    checks::run_all(&ctx)
}

/// A container's `lameduck run` entrypoint as its manifest gives it: what `lameduck run
/// --check` can be asked about to confirm what lint says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInvocation {
    /// The workload's name.
    pub workload: String,
    /// The container's name.
    pub container: String,
    /// The arguments between `run` and `--`.
    pub flags: Vec<String>,
    /// The container's `LAMEDUCK_*` variables with literal values.
    pub env: Vec<(String, String)>,
}

/// Every container of `objects` whose entrypoint is `lameduck run`.
pub fn lameduck_runs(objects: &[Object]) -> Vec<RunInvocation> {
    let config = Config::default();
    let ctx = context::Context::new(objects, &config);
    ctx.workloads
        .iter()
        .flat_map(|workload| {
            workload.containers.iter().filter_map(|c| {
                let run = c.lameduck.as_ref()?;
                Some(RunInvocation {
                    workload: workload.object.name.clone(),
                    container: c.name.to_owned(),
                    flags: run.flags.clone(),
                    env: run.env.clone(),
                })
            })
        })
        .collect()
}
