//! The lameduck rollout testbed.
//!
//! Runs an app's real binary as replicas on loopback, puts routers in front that apply endpoint
//! changes after their own propagation delays, drives load through them (open-loop arrivals or
//! busy closed-loop clients), performs Kubernetes-faithful rolling updates and counts every
//! request that failed, with the reason, the moment, the router and the pod.
//!
//! ```no_run
//! # async fn example() -> Result<(), lameduck_verify::VerifyError> {
//! let scenario = lameduck_verify::Scenario::from_file("rollout.yaml".as_ref())?;
//! let report = lameduck_verify::run(scenario, lameduck_verify::RunOptions::default()).await?;
//! println!("{}", lameduck_verify::render_terminal(&[report]));
//! # Ok(()) }
//! ```

mod accounting;
#[doc(hidden)]
pub mod bench;
mod demo;
mod events;
mod load;
mod report;
mod rollout;
mod routers;
mod run;
mod scenario;

pub use accounting::{LoadReport, PodReport, Report, RouterInfo, TestbedCost};
pub use demo::{demo_scenarios, naive_app, wrapped_command};
pub use events::{Event, EventKind, PodId, RouterId};
pub use load::{Outcome, Record, RequestKind};
pub use report::{render_html, render_json, render_terminal};
pub use rollout::PodError;
pub use routers::RouterError;
pub use run::{RunOptions, VerifyError, run};
pub use scenario::{
    Clients, Distribution, Dur, IntOrPercent, Load, Local, Note, NoteKind, PortRef, PreStop, Probe,
    Protocol, RouterKind, RouterSpec, Scenario, ScenarioError, parse_duration, parse_signal,
    runnable_here,
};
