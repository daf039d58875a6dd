//! The drain proxy of `lameduck run`.
//!
//! The Service targets the proxy; the proxy forwards to the app on loopback. Because every
//! request and connection passes through it, the lameduck shutdown core sees the traffic, so the
//! drain wait ends by evidence, and the proxy can do what a naive app cannot: answer keep-alive
//! clients with `Connection: close` / GOAWAY while draining and let in-flight requests finish
//! before the app is told to stop.
//!
//! The proxy is a stack of small parts:
//! - [`Forward`] (HTTP mode): a tower service over pooled upstream connections (HTTP/1.1
//!   keep-alive driven by the client connection's own task, h2c) that strips hop-by-hop headers
//!   and passes upgrades (WebSocket) through. Bodiless HTTP/1 requests, most of them, skip
//!   hyper's client: the proxy writes their head and parses the response itself. It is
//!   served by `lameduck::Lameduck::serve`, which supplies the phase behaviour (`Connection:
//!   close`, two-step GOAWAY, idle close, forced close) — the same code the library uses.
//! - [`serve_tcp`] (TCP mode): an accept loop that splices bytes, reports connections to the
//!   shutdown core and closes idle ones at Closing.
//! - [`detect`] (`auto` mode, the default): per connection, its first bytes (peeked, not read)
//!   choose the HTTP path or the TCP splice, so HTTP is drained without loss while TLS and
//!   other protocols on the same port still pass.
//! - [`ClientAddress`]: how the app learns the client's address (`X-Forwarded-For` in HTTP
//!   mode, a PROXY protocol header in TCP mode, or not at all).
//! - [`ProxyMetrics`]: the requests and connections the proxy failed itself, which the app
//!   cannot count, on `/metrics`.

mod client_address;
pub mod detect;
mod forward;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod metrics;
mod tcp;
mod tunnel;
mod upstream;

pub use client_address::ClientAddress;
pub use detect::{DEFAULT_DETECT_TIMEOUT, Detection, split};
pub use forward::{BodyError, Forward, ForwardBody};
pub use lameduck_settings::proxy_config::{ProxyConfig, UpstreamProtocol};
pub use lameduck_settings::proxy_spec::{Protocol, ProxySpec, SpecError};
pub use metrics::{DetectedCounters, Failure, ProxyMetrics};
pub use tcp::{TcpForward, serve_tcp};
