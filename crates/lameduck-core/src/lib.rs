//! The lifecycle, drain policy and shutdown budget of lameduck, without I/O.
//!
//! This crate is the one core shared by the `lameduck` library, `lameduck run`, the drain proxy
//! and `lameduck verify`. It knows nothing of sockets, signals or processes: the library and the
//! wrapper feed it events ([`Lifecycle::drain`], [`Activity::record_arrival`]) and it decides when
//! each phase ends. Time comes from `tokio::time`, so tests run with paused time.
//!
//! ```text
//! Starting → Serving → Draining → Closing → Stopped
//! ```

mod activity;
mod budget;
mod drain;
mod lifecycle;
mod shutdown;
mod tasks;

pub use activity::{Activity, InFlightGuard};
pub use budget::BudgetPlan;
pub use drain::{DrainEnd, DrainEndReason, wait_for_quiet};
pub use lameduck_settings::{
    AppStop, Config, ConfigError, DrainBudget, DurationError, FORCE_GRACE, SETTINGS, SettingSpec,
    Settings, TUNNEL_SETTLE, drain_settings, parse_duration, parse_duration_value, parse_signal,
    setting_of_flag,
};
pub use lifecycle::{Lifecycle, Phase, Snapshot, Trigger};
pub use shutdown::{Shutdown, ShutdownReport};
pub use tasks::TrackedTasks;
