//! Logging: a `tracing-subscriber` set up once by the binary.
//!
//! - Format: [`LogFormat::Text`] (human, ANSI colours on a terminal) or [`LogFormat::Json`] (one
//!   object per line, event fields flattened to the top level beside `timestamp`, `level`,
//!   `target` and the current span). Chosen by `--log-format`, else `[log] format`, else text
//!   when stderr is a terminal and JSON otherwise ([`resolve_format`]).
//! - Verbosity: `[log] level` (daemon only), else `RUST_LOG` (an [`EnvFilter`] directive such as
//!   `receiver=debug,fe2o3_amqp=info`), default [`DEFAULT_FILTER`]. An invalid `RUST_LOG` is reported and the default used, so a
//!   typo cannot stop the daemon.
//! - Logs go to stderr; stdout is kept for command output (`check-config`, ...).
//! - The daemon's subscriber ([`init_reloadable`]) can change filter and format at run time
//!   through a [`LogHandle`] (SIGHUP reload).

use crate::config::LogFormat;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset: this crate at `info`, dependencies silent.
pub const DEFAULT_FILTER: &str = "receiver=info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// The format to use: the explicit choice, else text on a terminal and JSON otherwise.
pub fn resolve_format(explicit: Option<LogFormat>, stderr_is_terminal: bool) -> LogFormat {
    explicit.unwrap_or(if stderr_is_terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    })
}

/// Parses `RUST_LOG`-style directives (`[log] level`).
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(directives.trim())
        .map_err(|e| e.to_string())
}

/// The filter from `rust_log` (the `RUST_LOG` value), or [`DEFAULT_FILTER`]. The second value
/// is the parse error when `rust_log` was given but invalid.
pub fn filter(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    filter_or(rust_log, DEFAULT_FILTER)
}

/// [`filter`] with another default (the demo is quieter than the daemon).
pub fn filter_or(rust_log: Option<&str>, default_filter: &str) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(default_filter);
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default(), None),
        Some(directives) => match EnvFilter::builder().parse(directives) {
            Ok(f) => (f, None),
            Err(e) => (default(), Some(e.to_string())),
        },
    }
}

/// A subscriber writing `format` to `writer` through `filter` (the building block of [`init`],
/// public so tests can capture output).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the global subscriber: `explicit` format or the terminal-based default, filter from
/// `RUST_LOG`, output to stderr. Returns the format in use.
pub fn init(explicit: Option<LogFormat>) -> Result<LogFormat, LoggingError> {
    init_with_default(explicit, DEFAULT_FILTER)
}

/// [`init`] with another default filter for when `RUST_LOG` is unset.
pub fn init_with_default(
    explicit: Option<LogFormat>,
    default_filter: &str,
) -> Result<LogFormat, LoggingError> {
    let terminal = std::io::stderr().is_terminal();
    let format = resolve_format(explicit, terminal);
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, bad) = filter_or(rust_log.as_deref(), default_filter);
    let sub = subscriber(format, filter, std::io::stderr, terminal);
    // `try_init` also bridges `log` records from dependencies into tracing.
    sub.try_init()?;
    if let Some(error) = bad {
        tracing::warn!(
            rust_log = rust_log.as_deref().unwrap_or_default(),
            error,
            default = default_filter,
            "invalid RUST_LOG; using the default filter"
        );
    }
    Ok(format)
}

type Base = tracing_subscriber::Registry;
type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Base>, Base>;
type FmtLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Handle to the daemon's logging, to change verbosity and format at run time (SIGHUP).
#[derive(Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Base>,
    fmt: reload::Handle<FmtLayer, Filtered>,
    terminal: bool,
    state: Arc<Mutex<LogState>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LogState {
    format: LogFormat,
    filter: String,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle")
            .field("state", &self.state.lock().ok())
            .finish_non_exhaustive()
    }
}

/// Why the log settings could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LogReloadError {
    /// The filter does not parse.
    #[error("invalid log filter {directives:?}: {message}")]
    Filter {
        /// What was given.
        directives: String,
        /// The parser's message.
        message: String,
    },
    /// The subscriber is gone.
    #[error("cannot change the log settings: {0}")]
    Reload(#[from] reload::Error),
}

fn fmt_layer(format: LogFormat, ansi: bool) -> FmtLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => Box::new(layer.with_ansi(ansi)),
        LogFormat::Json => Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false),
        ),
    }
}

/// The filter directives in force for `level` (`[log] level`, wins), else `rust_log`, else
/// [`DEFAULT_FILTER`]; with the parse error of an invalid `RUST_LOG`.
pub fn effective_filter(level: Option<&str>, rust_log: Option<&str>) -> (String, Option<String>) {
    if let Some(l) = level {
        return (l.trim().to_owned(), None);
    }
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (DEFAULT_FILTER.to_owned(), None),
        Some(d) => match parse_filter(d) {
            Ok(_) => (d.to_owned(), None),
            Err(e) => (DEFAULT_FILTER.to_owned(), Some(e)),
        },
    }
}

/// Installs the daemon's global subscriber, changeable later through the returned handle:
/// format `explicit` (else by terminal), filter `level` (`[log] level`), else `RUST_LOG`, else
/// [`DEFAULT_FILTER`]; output to stderr.
pub fn init_reloadable(
    explicit: Option<LogFormat>,
    level: Option<&str>,
) -> Result<LogHandle, LoggingError> {
    let terminal = std::io::stderr().is_terminal();
    let format = resolve_format(explicit, terminal);
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directives, bad) = effective_filter(level, rust_log.as_deref());
    let filter = parse_filter(&directives).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (filter_layer, filter_handle) = reload::Layer::new(filter);
    let (fmt, fmt_handle) = reload::Layer::new(fmt_layer(format, terminal));
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init()?;
    if let Some(error) = bad {
        tracing::warn!(
            rust_log = rust_log.as_deref().unwrap_or_default(),
            error,
            default = DEFAULT_FILTER,
            "invalid RUST_LOG; using the default filter"
        );
    }
    if level.is_some() && rust_log.as_deref().is_some_and(|r| !r.trim().is_empty()) {
        tracing::info!(
            level = directives.as_str(),
            "[log] level is set; RUST_LOG is ignored"
        );
    }
    Ok(LogHandle {
        filter: filter_handle,
        fmt: fmt_handle,
        terminal,
        state: Arc::new(Mutex::new(LogState {
            format,
            filter: directives,
        })),
    })
}

impl LogHandle {
    /// The format in use.
    pub fn format(&self) -> Option<LogFormat> {
        self.state.lock().ok().map(|s| s.format)
    }

    /// The filter directives in use.
    pub fn filter(&self) -> Option<String> {
        self.state.lock().ok().map(|s| s.filter.clone())
    }

    /// Switches to `directives`. Returns whether anything changed.
    pub fn set_filter(&self, directives: &str) -> Result<bool, LogReloadError> {
        if self.filter().as_deref() == Some(directives) {
            return Ok(false);
        }
        let f = parse_filter(directives).map_err(|message| LogReloadError::Filter {
            directives: directives.to_owned(),
            message,
        })?;
        self.filter.reload(f)?;
        if let Ok(mut s) = self.state.lock() {
            s.filter = directives.to_owned();
        }
        Ok(true)
    }

    /// Switches to `format` (`None`: by terminal). Returns whether anything changed.
    pub fn set_format(&self, format: Option<LogFormat>) -> Result<bool, LogReloadError> {
        let format = resolve_format(format, self.terminal);
        if self.format() == Some(format) {
            return Ok(false);
        }
        self.fmt.reload(fmt_layer(format, self.terminal))?;
        if let Ok(mut s) = self.state.lock() {
            s.format = format;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture::Buf;

    fn capture(format: LogFormat, rust_log: Option<&str>, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let (filter, _) = filter(rust_log);
        let sub = subscriber(format, filter, buf.clone(), false);
        tracing::subscriber::with_default(sub, f);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_one_flat_object_per_line() {
        let out = capture(LogFormat::Json, None, || {
            let span = tracing::info_span!("device", pk = "a1", dn = "cam-01");
            let _g = span.enter();
            tracing::info!(bytes = 1234u64, path = "/x/y.jpg", "image written");
            tracing::warn!(reason = "expired", "quarantined");
        });
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["message"], "image written");
        assert_eq!(v["bytes"], 1234);
        assert_eq!(v["path"], "/x/y.jpg");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["span"]["dn"], "cam-01");
        assert!(v.get("fields").is_none(), "{v}");
    }

    #[test]
    fn default_filter_is_crate_scoped_info() {
        // Unit tests run in the `receiver` crate, so their target is `receiver::logging::...`.
        let out = capture(LogFormat::Text, None, || {
            tracing::debug!("hidden");
            tracing::info!("shown");
            tracing::info!(target: "fe2o3_amqp", "dependency");
        });
        assert!(out.contains("shown") && !out.contains("hidden"), "{out}");
        assert!(!out.contains("dependency"), "{out}");
        let out = capture(LogFormat::Text, Some("receiver=debug"), || {
            tracing::debug!("now shown");
        });
        assert!(out.contains("now shown"), "{out}");
    }

    #[test]
    fn bad_rust_log_falls_back() {
        let (_, bad) = filter(Some("receiver=loud"));
        assert!(bad.is_some());
        let (_, bad) = filter(Some(""));
        assert!(bad.is_none());
    }

    #[test]
    fn format_resolution() {
        assert_eq!(resolve_format(None, true), LogFormat::Text);
        assert_eq!(resolve_format(None, false), LogFormat::Json);
        assert_eq!(
            resolve_format(Some(LogFormat::Text), false),
            LogFormat::Text
        );
        assert_eq!(resolve_format(Some(LogFormat::Json), true), LogFormat::Json);
    }
}
