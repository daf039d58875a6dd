//! `lameduck run`'s command line: one clap definition, used by the binary to start the app and
//! by `lameduck lint` to read a container's `lameduck run` arguments exactly as run would.
//!
//! The drain settings' flags are generated from [`SETTINGS`](crate::SETTINGS); their variables
//! are read by [`Settings::from_lookup`], the other flags' by clap (`env = ...`). Lint cannot let
//! clap read the *process* environment, so [`parse_with_env`] strips the variables and passes
//! the container's values as flags instead, as clap would have taken them.

use std::ffi::OsString;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
pub use tracing_core::LevelFilter;

use crate::app::{ForwardTo, Target};
use crate::proxy_config::{ClientAddress, DEFAULT_DETECT_TIMEOUT, ProxyConfig, UpstreamProtocol};
use crate::proxy_spec::{Protocol, ProxySpec};
use crate::{ConfigError, SETTINGS, SettingSpec, Settings, Signal, parse_duration_value};

const RUN_EXAMPLES: &str = "\
Examples:
  # Container entrypoint: drain on SIGTERM, then stop the app.
  lameduck run -- /app/server --port 8080

  # With the drain proxy: the Service targets :8080, the app listens on 127.0.0.1:8081.
  lameduck run --proxy 0.0.0.0:8080=127.0.0.1:8081 --grace 30 -- /app/server --port 8081

  # A TCP service (e.g. a database protocol) whose app reads the PROXY protocol for client IPs.
  lameduck run --proxy 5432=127.0.0.1:5433 --protocol tcp --client-address proxy-v2 -- /app/db

  # An app with an HTTP port and a gRPC port, each drained by a proxy of its own.
  lameduck run --proxy 8080=8081 --proxy 9090=9091 -- /app/server

  # Behind an AWS NLB with proxy protocol on: the app's X-Forwarded-For names the real client.
  lameduck run --proxy 8080=8081 --accept-proxy-protocol -- /app/server --port 8081
  # ... only on the port the NLB reaches; in-cluster clients use :8080 without a header.
  lameduck run --proxy 8080=8081 --proxy 8443=8081 --accept-proxy-protocol 8443 -- /app/server

  # Readiness of lameduck's /readyz also asks the app; nginx stops gracefully on SIGQUIT.
  lameduck run --ready-url http://127.0.0.1:8081/healthz --stop-signal SIGQUIT -- nginx -g 'daemon off;'

Every flag has an environment variable (LAMEDUCK_GRACE_SECONDS, LAMEDUCK_MIN_WAIT, ..., listed
with each flag); flags win. Durations take 5s, 500ms, 1m30s or plain seconds.

Exit status: the app's (128+N if signal N killed it); 127 command not found, 126 not
executable, 2 invalid flags or settings, 125 lameduck could not set up (e.g. a port in use).";

/// Flags of `lameduck run`.
#[derive(Debug, clap::Args)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Where /livez /readyz /startupz /metrics and POST /drain listen; `off` disables them
    /// [env: LAMEDUCK_ADMIN_ADDR] [default: 0.0.0.0:8686].
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Drain proxy: listen on LISTEN and forward to the app on UPSTREAM (IP:PORT, or a bare
    /// PORT meaning 0.0.0.0:PORT and 127.0.0.1:PORT). Repeat it (or separate values with
    /// commas) for an app with several ports; a leading `auto:`, `http:` or `tcp:` sets that
    /// proxy's protocol.
    #[arg(
        long,
        value_name = "[PROTOCOL:]LISTEN=UPSTREAM",
        env = "LAMEDUCK_PROXY",
        value_delimiter = ','
    )]
    pub proxy: Vec<ProxySpec>,
    /// What the proxies speak unless their --proxy says: auto (per connection: HTTP/1 and h2c
    /// are drained as HTTP, TLS and other protocols spliced), http (HTTP/1.1, h2c, WebSocket)
    /// or tcp (bytes) [default: auto].
    #[arg(
        long,
        value_name = "PROTOCOL",
        env = "LAMEDUCK_PROTOCOL",
        requires = "proxy"
    )]
    pub protocol: Option<Protocol>,
    /// Auto: how long a connection may send nothing before it is spliced as a server-first
    /// protocol (SMTP, MySQL), whose greeting waits that long [default: 250ms].
    #[arg(
        long,
        value_name = "DURATION",
        env = "LAMEDUCK_DETECT_TIMEOUT",
        requires = "proxy",
        value_parser = duration
    )]
    pub detect_timeout: Option<Duration>,
    /// What the HTTP proxy speaks to the app: same (as the client), http1 or h2c
    /// [default: same].
    #[arg(
        long,
        value_name = "PROTOCOL",
        env = "LAMEDUCK_UPSTREAM_PROTOCOL",
        requires = "proxy"
    )]
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// How the proxy tells the app the client's address: x-forwarded-for (HTTP), proxy-v1 or
    /// proxy-v2 (PROXY protocol header, TCP) or none [default: x-forwarded-for for http, none
    /// for tcp].
    #[arg(
        long,
        value_name = "HOW",
        env = "LAMEDUCK_CLIENT_ADDRESS",
        requires = "proxy"
    )]
    pub client_address: Option<ClientAddress>,
    /// Client connections start with a PROXY protocol header (v1 or v2) from a load balancer,
    /// such as an AWS NLB with proxy protocol on: the client it names is the one the app is
    /// told of; connections without a valid header are closed. Alone: on every proxy; with
    /// PORTS (e.g. 8443,9443): only on the proxies listening there, so that in-cluster
    /// clients, which send no header, can use another port.
    #[arg(
        long,
        value_name = "PORTS",
        env = "LAMEDUCK_ACCEPT_PROXY_PROTOCOL",
        requires = "proxy",
        num_args = 0..=1,
        default_missing_value = "all",
        value_parser = accept_proxy_protocol
    )]
    pub accept_proxy_protocol: Option<AcceptProxyProtocol>,
    /// Threads each proxy forwards on, each with its own event loop [default: one per CPU the
    /// process may use].
    #[arg(
        long,
        value_name = "N",
        env = "LAMEDUCK_PROXY_THREADS",
        requires = "proxy",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub proxy_threads: Option<u16>,
    /// The app's own readiness (http://HOST:PORT/PATH or tcp://HOST:PORT), checked by /readyz
    /// [default with --proxy: a TCP connect to the upstream].
    #[arg(long, value_name = "URL", env = "LAMEDUCK_READY_URL")]
    pub ready_url: Option<Target>,
    /// Signal sent to the app's process group when the drain wait is over.
    #[arg(long, value_name = "SIGNAL", env = "LAMEDUCK_STOP_SIGNAL", default_value = "SIGTERM", value_parser = crate::parse_signal)]
    pub stop_signal: Signal,
    /// Where other signals (SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, ...) are forwarded: the app's
    /// main process (child) or its whole process group (group).
    #[arg(
        long,
        value_name = "WHERE",
        env = "LAMEDUCK_FORWARD_TO",
        default_value = "child"
    )]
    pub forward_to: ForwardTo,
    /// The drain settings (`--grace`, `--min-wait`, ...), one flag per row of the settings
    /// table.
    #[command(flatten)]
    pub drain: DrainFlags,
    /// Log level: error, warn, info, debug, trace or off.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "LAMEDUCK_LOG",
        default_value = "info"
    )]
    pub log: LevelFilter,
    /// Log lines as text, or as one JSON object per line (for log pipelines).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "LAMEDUCK_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Validate the flags and settings, print the drain budget they lead to, and exit (0
    /// valid, 2 invalid) without starting anything: what `lameduck lint` checks of a
    /// container, asked of the real thing.
    #[arg(long)]
    pub check: bool,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Which proxies take a PROXY protocol header from a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptProxyProtocol {
    /// Every proxy (the flag alone, or `true`/`yes`/`on`/`all`).
    Everywhere,
    /// Only the proxies listening on these ports.
    Ports(Vec<u16>),
    /// None (`false`/`no`/`off`/`none`, for the environment variable).
    Nowhere,
}

fn accept_proxy_protocol(value: &str) -> Result<AcceptProxyProtocol, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "all" => Ok(AcceptProxyProtocol::Everywhere),
        "false" | "no" | "off" | "none" => Ok(AcceptProxyProtocol::Nowhere),
        ports => ports
            .split(',')
            .map(|port| port.trim().parse::<u16>().ok().filter(|&port| port > 0))
            .collect::<Option<Vec<u16>>>()
            .map(AcceptProxyProtocol::Ports)
            .ok_or_else(|| {
                format!("{value:?} is not a list of listen ports (e.g. 8443,9443), true or false")
            }),
    }
}

/// How log lines are written (to stderr, beside the app's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-29T13:31:39.068748Z  INFO started the app ... pid=1999`.
    Text,
    /// `{"timestamp":"...","level":"INFO","message":"started the app ...","pid":"1999"}`.
    Json,
}

/// The duration grammar of every flag, as a clap value parser.
pub fn duration(value: &str) -> Result<Duration, String> {
    parse_duration_value(value).map_err(|error| error.to_string())
}

/// The drain settings given as flags: one `--flag DURATION` per row of [`SETTINGS`], so a row
/// added to the table is a flag of `lameduck run` (and of its `--help`) without more code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainFlags {
    given: Vec<(&'static SettingSpec, Duration)>,
}

impl DrainFlags {
    /// The settings given as flags, in table order.
    pub fn given(&self) -> &[(&'static SettingSpec, Duration)] {
        &self.given
    }
}

impl FromArgMatches for DrainFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = SETTINGS
            .iter()
            .filter_map(|spec| Some((spec, *matches.get_one::<Duration>(spec.name)?)))
            .collect();
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for DrainFlags {
    fn augment_args(command: Command) -> Command {
        SETTINGS.iter().fold(command, |command, spec| {
            let mut doc = spec.doc.to_owned();
            if let Some(first) = doc.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            command.arg(
                Arg::new(spec.name)
                    .long(spec.flag.trim_start_matches('-'))
                    .value_name("DURATION")
                    .value_parser(duration)
                    .help(format!(
                        "{doc} [env: {}] [default: {}]",
                        spec.env,
                        spec.default_text()
                    )),
            )
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// Why `lameduck run` refuses its flags after parsing them (exit status 2).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// A drain setting or the budget they give.
    #[error(transparent)]
    Settings(#[from] ConfigError),
    /// `--proxy` and the flags that shape the proxies do not fit together.
    #[error("{0}")]
    Proxies(String),
}

impl RunArgs {
    /// The drain settings: defaults, then the `LAMEDUCK_*` variables `lookup` finds, then the
    /// flags (not validated yet: see [`RunArgs::settings`]).
    pub fn drain_settings(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::from_lookup(lookup)?;
        for (spec, value) in self.drain.given() {
            settings.put(spec.env, *value)?;
        }
        Ok(settings)
    }

    /// [`RunArgs::drain_settings`], validated as the drain will use them.
    pub fn settings(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<crate::Config, ConfigError> {
        self.drain_settings(lookup)?.validate()
    }

    /// One [`ProxyConfig`] per `--proxy`, the shared flags applied to each, or why they do not
    /// fit together.
    pub fn proxy_configs(&self) -> Result<Vec<ProxyConfig>, ArgsError> {
        let refuse = |why: String| Err(ArgsError::Proxies(why));
        let mut configs: Vec<ProxyConfig> = Vec::with_capacity(self.proxy.len());
        for &spec in &self.proxy {
            let protocol = spec.protocol.or(self.protocol).unwrap_or_default();
            let client_address = self
                .client_address
                .unwrap_or_else(|| ClientAddress::default_for(protocol));
            if let Some(conflict) = client_address.conflict(protocol) {
                return refuse(format!("--client-address: {conflict} (for --proxy {spec})"));
            }
            let overlaps = |other: &ProxyConfig| {
                let (a, b) = (other.spec.listen, spec.listen);
                // Port 0 asks the kernel for a free port: two such never collide.
                a.port() == b.port()
                    && a.port() != 0
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            };
            if let Some(other) = configs.iter().find(|other| overlaps(other)) {
                return refuse(format!(
                    "--proxy {} and --proxy {spec} listen on the same port",
                    other.spec
                ));
            }
            configs.push(ProxyConfig {
                spec,
                protocol,
                detect_timeout: self.detect_timeout.unwrap_or(DEFAULT_DETECT_TIMEOUT),
                upstream_protocol: self.upstream_protocol.unwrap_or_default(),
                client_address,
                accept_proxy_protocol: match &self.accept_proxy_protocol {
                    None | Some(AcceptProxyProtocol::Nowhere) => false,
                    Some(AcceptProxyProtocol::Everywhere) => true,
                    Some(AcceptProxyProtocol::Ports(ports)) => ports.contains(&spec.listen.port()),
                },
                threads: self.proxy_threads.map_or(0, usize::from),
            });
        }
        if let Some(AcceptProxyProtocol::Ports(ports)) = &self.accept_proxy_protocol {
            if let Some(port) = ports
                .iter()
                .find(|&&port| configs.iter().all(|c| c.spec.listen.port() != port))
            {
                return refuse(format!(
                    "--accept-proxy-protocol: no --proxy listens on port {port}"
                ));
            }
        }
        if self.upstream_protocol.is_some() && configs.iter().all(|c| c.protocol == Protocol::Tcp) {
            return refuse(
                "--upstream-protocol applies to --protocol http and auto only; a TCP proxy passes \
                 bytes as they are"
                    .to_owned(),
            );
        }
        if self.detect_timeout.is_some() && configs.iter().all(|c| c.protocol != Protocol::Auto) {
            return refuse("--detect-timeout applies to --protocol auto only".to_owned());
        }
        Ok(configs)
    }
}

/// Parses `lameduck run`'s arguments (those after `run`) as the binary does, with the variables
/// `env` finds in place of the process environment: a flag not on the command line takes its
/// variable's value, as clap's own `env` would give it. Errors are clap's, as run prints them.
pub fn parse_with_env(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<RunArgs, clap::Error> {
    let defined = RunArgs::augment_args(Command::new("lameduck run").no_binary_name(true));
    // (id, long flag, variable) of every flag clap would read from the environment.
    let variables: Vec<(String, String, String)> = defined
        .get_arguments()
        .filter_map(|arg| {
            let var = arg.get_env()?.to_str()?.to_owned();
            let id = arg.get_id().to_string();
            Some((id, arg.get_long()?.to_owned(), var))
        })
        .collect();
    let command = defined.mut_args(|arg| arg.env(None));
    let (flags, rest) = match args.iter().position(|arg| arg == "--") {
        Some(at) => args.split_at(at),
        None => (args, &[][..]),
    };
    // Which flags the command line gives, before any requirement is checked (a requirement may
    // be met by a variable).
    let given = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok();
    let mut from_env = Vec::new();
    for (id, long, var) in &variables {
        if given
            .as_ref()
            .is_some_and(|m| m.value_source(id) == Some(ValueSource::CommandLine))
        {
            continue;
        }
        let Some(value) = env(var) else { continue };
        from_env.push(format!("--{long}={value}"));
    }
    let all = flags
        .iter()
        .map(String::as_str)
        .chain(from_env.iter().map(String::as_str))
        .chain(rest.iter().map(String::as_str));
    RunArgs::from_arg_matches(&command.try_get_matches_from(all)?)
}

/// A clap error on one line, without its `error: ` prefix and the usage and help lines after
/// it: what lint quotes.
pub fn error_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let message = text.split("\n\n").next().unwrap_or_default();
    let words: Vec<&str> = message.split_whitespace().collect();
    let line = words.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<RunArgs, clap::Error> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        parse_with_env(&args, |var| env.get(var).cloned())
    }

    #[test]
    fn every_settings_row_is_a_flag_with_its_variable_and_default_in_the_help() {
        let command = RunArgs::augment_args(Command::new("run"));
        for spec in SETTINGS {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == spec.name)
                .unwrap();
            assert_eq!(arg.get_long(), Some(&spec.flag[2..]));
            let help = arg.get_help().unwrap().to_string();
            let tail = format!("[env: {}] [default: {}]", spec.env, spec.default_text());
            assert!(help.ends_with(&tail), "{help}");
        }
        let args = parse(&["--grace", "1m 30s", "--min-wait=2s"], &[]).unwrap();
        let given: Vec<(&str, Duration)> = args
            .drain
            .given()
            .iter()
            .map(|(spec, value)| (spec.name, *value))
            .collect();
        assert_eq!(
            given,
            [
                ("grace", Duration::from_secs(90)),
                ("min_wait", Duration::from_secs(2))
            ]
        );
    }

    #[test]
    fn flags_win_over_variables_and_variables_over_defaults() {
        let env = [
            ("LAMEDUCK_GRACE_SECONDS", "40"),
            ("LAMEDUCK_MIN_WAIT", "4s"),
            ("LAMEDUCK_PROTOCOL", "tcp"),
            ("LAMEDUCK_PROXY", "8080=8081"),
        ];
        let args = parse(&["--min-wait", "5s", "--proxy", "9090=9091"], &env).unwrap();
        let settings = args.settings(|var| {
            env.iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| (*value).to_owned())
        });
        let config = settings.unwrap();
        assert_eq!(config.settings().grace, Duration::from_secs(40));
        assert_eq!(config.settings().min_wait, Duration::from_secs(5));
        assert_eq!(args.proxy.len(), 1, "the flag replaces LAMEDUCK_PROXY");
        assert_eq!(args.proxy[0].listen.port(), 9090);
        assert_eq!(args.protocol, Some(Protocol::Tcp), "from LAMEDUCK_PROTOCOL");
    }

    #[test]
    fn refusals_are_clap_s_own_words() {
        let error = parse(&["--grace-period", "30"], &[]).unwrap_err();
        assert!(
            error_line(&error).contains("unexpected argument '--grace-period'"),
            "{}",
            error_line(&error)
        );
        let error = parse(&["--max-wait", "soon"], &[]).unwrap_err();
        assert!(error_line(&error).contains("is not a duration"), "{error}");
        let error = parse(&[], &[("LAMEDUCK_PROXY", "8080=8080")]).unwrap_err();
        assert!(error_line(&error).contains("forward to itself"), "{error}");
        let error = parse(&["--protocol", "tcp"], &[]).unwrap_err();
        assert!(error_line(&error).contains("--proxy"), "{error}");
    }

    #[test]
    fn proxies_that_cannot_work_together_are_refused() {
        let refused = |args: &[&str]| parse(args, &[]).unwrap().proxy_configs().unwrap_err();
        assert!(
            refused(&["--proxy", "8080=8081", "--proxy", "8080=9091"])
                .to_string()
                .contains("same port")
        );
        assert!(
            refused(&["--proxy", "tcp:8080=8081", "--client-address", "xff"])
                .to_string()
                .contains("x-forwarded-for needs")
        );
        assert!(
            refused(&["--proxy", "8080=8081", "--accept-proxy-protocol", "9443"])
                .to_string()
                .contains("no --proxy listens on port 9443")
        );
        let kernel_picks = parse(&["--proxy", "127.0.0.1:0=8081,127.0.0.1:0=8082"], &[]);
        assert_eq!(kernel_picks.unwrap().proxy_configs().unwrap().len(), 2);
        let configs = parse(&["--proxy", "8080=8081,tcp:5432=5433"], &[])
            .unwrap()
            .proxy_configs()
            .unwrap();
        assert_eq!(configs[0].protocol, Protocol::Auto);
        assert_eq!(configs[1].client_address, ClientAddress::None);
    }
}
