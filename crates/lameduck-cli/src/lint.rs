//! `lameduck lint`: reads files, directories and stdin, finds the configuration, runs the
//! lameduck-lint crate and maps the result to an output and an exit code.
//!
//! Exit codes: 0 no finding at or above `--fail-on`, 1 such findings, 2 usage or input error
//! (bad flags or config, unreadable file, a document that does not parse; the rest is still
//! linted and reported).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use lameduck_lint::output::{self, Report};
use lameduck_lint::{CHECKS, Config, InputError, Loaded, Severity};

use crate::exit::Failure;

/// Name of the configuration file, looked for from the working directory upward.
const CONFIG_FILE: &str = ".lameduck.yaml";
/// Directories deeper than this below a given path are not read (guards against loops).
const MAX_DIR_DEPTH: usize = 64;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:column: severity[check] ...`, one finding per line with its fix.
    Human,
    /// One JSON document with findings, input errors and a summary.
    Json,
    /// SARIF 2.1.0, e.g. for GitHub code scanning.
    Sarif,
}

/// Severity threshold for `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// Fail on any finding.
    Info,
    /// Fail on warnings and errors.
    Warning,
    /// Fail on errors only.
    Error,
}

/// When to colour human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Flags of `lameduck lint`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage or input error."
)]
pub struct Args {
    /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Lowest severity that makes the exit code 1 [default: failOn of the config, else warning].
    #[arg(long, value_enum)]
    pub fail_on: Option<Level>,
    /// Configuration file [default: .lameduck.yaml in the working directory or above].
    #[arg(long, value_name = "FILE", conflicts_with = "no_config")]
    pub config: Option<PathBuf>,
    /// Ignore any .lameduck.yaml.
    #[arg(long)]
    pub no_config: bool,
    /// Print every check (ID, severity, summary) and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the explanation and fix of one check and exit.
    #[arg(long, value_name = "CHECK")]
    pub explain: Option<String>,
    /// Colour human output.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: Color,
}

/// Runs `lameduck lint`.
pub fn main(args: Args) -> Result<ExitCode, Failure> {
    let config = load_config(&args)?;
    if args.list {
        print(&list(&config, args.format))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = &args.explain {
        let check = lameduck_lint::find_check(id).ok_or_else(|| {
            Failure::usage(anyhow!("unknown check {id:?} (see `lameduck lint --list`)"))
        })?;
        print(&format!(
            "{} ({})\n{}\n\nWhy: {}\n\nFix: {}\n",
            check.id, check.severity, check.summary, check.explanation, check.fix
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.paths.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no input: give files, directories, or - to read standard input (e.g. `helm template . | lameduck lint -`)"
        )));
    }
    let threshold = match args.fail_on {
        Some(Level::Info) => Severity::Info,
        Some(Level::Warning) => Severity::Warning,
        Some(Level::Error) => Severity::Error,
        None => config.fail_on.unwrap_or(Severity::Warning),
    };

    let (loaded, sources) = read_inputs(&args.paths);
    let findings = lameduck_lint::lint(&loaded.objects, &config);
    let report = Report {
        findings: &findings,
        errors: &loaded.errors,
        objects: loaded.objects.len(),
        files: sources,
    };
    let text = match args.format {
        Format::Human => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            output::human(&report, color)
        }
        Format::Json => output::json(&report),
        Format::Sarif => output::sarif(&report),
    };
    print(&text)?;
    if args.format != Format::Human {
        for e in &loaded.errors {
            eprintln!("lameduck: input error: {e}");
        }
    }
    Ok(if !loaded.errors.is_empty() {
        ExitCode::from(crate::exit::USAGE)
    } else if report.fails(threshold) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::with_code(
            crate::exit::USAGE,
            anyhow!(e).context("writing the output"),
        )),
        _ => Ok(()),
    }
}

fn load_config(args: &Args) -> Result<Config, Failure> {
    if args.no_config {
        return Ok(Config::default());
    }
    let path = match &args.config {
        Some(path) => path.clone(),
        None => match std::env::current_dir().ok().and_then(|dir| discover(&dir)) {
            Some(path) => path,
            None => return Ok(Config::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the configuration {}", path.display()))
        .map_err(Failure::usage)?;
    Config::parse(&text).map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))
}

/// `.lameduck.yaml` in `dir` or the nearest directory above it.
fn discover(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(CONFIG_FILE))
        .find(|p| p.is_file())
}

fn list(config: &Config, format: Format) -> String {
    if format == Format::Human {
        let width = CHECKS.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in CHECKS {
            let severity = config
                .severity_of(c.id, c.severity)
                .map_or("off", Severity::as_str);
            out.push_str(&format!("{:width$}  {:7}  {}\n", c.id, severity, c.summary));
        }
        return out;
    }
    let checks: Vec<_> = CHECKS
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "severity": config.severity_of(c.id, c.severity).map_or("off", Severity::as_str),
                "defaultSeverity": c.severity.as_str(),
                "summary": c.summary,
                "explanation": c.explanation,
                "fix": c.fix,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&checks).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads every input into objects; problems become input errors so the rest is still linted.
/// Returns the objects and errors and the number of sources read.
fn read_inputs(paths: &[PathBuf]) -> (Loaded, usize) {
    let mut loaded = Loaded::default();
    let mut sources = 0usize;
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            sources += 1;
            match std::io::stdin().lock().read_to_string(&mut text) {
                Ok(_) => loaded.extend(lameduck_lint::load("<stdin>", &text)),
                Err(e) => loaded.errors.push(InputError::file(
                    "<stdin>",
                    format!("cannot read standard input: {e}"),
                )),
            }
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, 0, &mut files, &mut loaded.errors),
            Ok(_) => files.push(path.clone()),
            Err(e) => loaded.errors.push(InputError::file(
                path.display().to_string(),
                format!("cannot read: {e}"),
            )),
        }
    }
    sources += files.len();
    let mut texts = Vec::with_capacity(files.len());
    for file in &files {
        let name = file.display().to_string();
        match std::fs::read(file).map(String::from_utf8) {
            Ok(Ok(text)) => texts.push((name, text)),
            Ok(Err(_)) => loaded.errors.push(InputError::file(name, "not UTF-8 text")),
            Err(e) => loaded
                .errors
                .push(InputError::file(name, format!("cannot read: {e}"))),
        }
    }
    let borrowed: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    loaded.extend(lameduck_lint::load_all(&borrowed));
    (loaded, sources)
}

/// Collects manifest files below `dir` in name order, skipping hidden entries and not
/// following symbolic links to directories.
fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>, errors: &mut Vec<InputError>) {
    if depth > MAX_DIR_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(InputError::file(
                dir.display().to_string(),
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, depth + 1, files, errors);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(path);
        }
    }
}
