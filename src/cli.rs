//! The command line: clap types, one function per command, and the exit-code policy.
//!
//! `receiver --config PATH` runs the daemon; subcommands do everything else. To add a command
//! (`demo`, `simulate-camera`, `tail`, `bench`, ...): add a [`Command`] variant holding its
//! clap `Args` struct, write one `fn`/`async fn` returning `anyhow::Result<()>`, and add the
//! match arm in [`main`]. Global flags (`--config`, `--log-format`) are in [`GlobalArgs`];
//! call [`init_logging`] if the command logs.
//!
//! This is the only library module that uses `anyhow`: errors from the library's typed enums
//! are collected here, printed once, and mapped to an exit code:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | clean stop (after SIGTERM/SIGINT), or the command succeeded |
//! | 1 | runtime failure (the daemon failed, logging could not start, output failed) |
//! | 2 | bad configuration or usage: unreadable or invalid config file, missing `--config`, bad flags |

use crate::config::{Config, ConfigError, LogFormat, EXAMPLE_TOML};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Exit status: clean stop or success.
pub const EXIT_OK: u8 = 0;
/// Exit status: runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad configuration or usage.
pub const EXIT_CONFIG: u8 = 2;

/// `receiver`: turns ESP32-CAM JPEG uploads, forwarded by Aliyun IoT's AMQP server-side
/// subscription, into image files.
#[derive(Debug, Parser)]
#[command(
    name = "receiver",
    version,
    about,
    after_help = "Without a command, runs the daemon: receiver --config /etc/receiver/receiver.toml\n\
                  Log verbosity: RUST_LOG (default \"receiver=info\").\n\
                  Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage."
)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do; `None` runs the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags accepted before or after any command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Config file (TOML); see `receiver print-default-config`.
    #[arg(short, long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Log format [default: `[log] format`, else text on a terminal and json otherwise].
    #[arg(long, value_enum, value_name = "FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
}

/// The commands. One variant (with its own `Args` struct when it has flags) per command.
// Parsed once per process: the size of the largest variant does not matter.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM or SIGINT (the default without a command).
    Run,
    /// Validate the config file and print the effective settings with secrets redacted.
    CheckConfig(CheckConfigArgs),
    /// Print a commented example config file.
    PrintDefaultConfig,
    #[cfg(feature = "tools")]
    /// Run the whole pipeline locally: fake Aliyun endpoint, simulated cameras, the real daemon.
    Demo(Box<crate::tools::demo::DemoArgs>),
    #[cfg(feature = "tools")]
    /// Publish JPEGs to a real Aliyun product over MQTT as a camera would (or print with --dry-run).
    SimulateCamera(Box<receiver_testkit::camera::SimulateArgs>),
    /// Print every message of the subscription, decoded, one line each (use another consumer group).
    Tail(crate::tail::TailArgs),
    #[cfg(feature = "tools")]
    /// Measure throughput, latency, memory and CPU against the fake endpoint, and the seed's
    /// Node.js receiver side by side (see BENCHMARKS.md). Build with --release.
    Bench(Box<crate::tools::bench::BenchArgs>),
    #[cfg(feature = "tools")]
    /// Bench helper (the baseline's "transport floor"): connect exactly like the daemon and
    /// accept every delivery unread, until SIGTERM/SIGINT.
    #[command(hide = true)]
    BenchFloor,
}

/// `check-config` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckConfigArgs {
    /// With `[output] backend = "s3"`: also write, read back and delete a small object in the
    /// bucket, and report exactly which step failed.
    #[arg(long)]
    pub probe_output: bool,
    /// With `[cluster]`: also connect to Redis and warn when its settings could lose an
    /// accepted chunk (appendonly off, appendfsync not always without a replica).
    #[arg(long)]
    pub probe_cluster: bool,
}

/// A usage problem found after parsing (exit code 2), e.g. a missing `--config`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Runs the parsed command line and returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let global = cli.global;
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&global).await,
        Command::CheckConfig(args) => check_config_with(&global, &args, &mut io::stdout().lock()),
        Command::PrintDefaultConfig => print_default_config(&mut io::stdout().lock()),
        #[cfg(feature = "tools")]
        Command::Demo(args) => demo(&global, *args).await,
        #[cfg(feature = "tools")]
        Command::SimulateCamera(args) => simulate_camera(&global, *args).await,
        Command::Tail(args) => tail(&global, args).await,
        #[cfg(feature = "tools")]
        Command::Bench(args) => bench(&global, *args).await,
        #[cfg(feature = "tools")]
        Command::BenchFloor => bench_floor(&global).await,
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let message = render(&e);
            if tracing::dispatcher::has_been_set() {
                tracing::error!(error = %message, "exiting");
            } else {
                eprintln!("receiver: error: {message}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for an error: [`EXIT_CONFIG`] if a [`ConfigError`] or [`UsageError`] is in
/// its chain, else [`EXIT_FAILURE`].
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_output = |c: &(dyn std::error::Error + 'static)| {
        matches!(
            c.downcast_ref::<crate::daemon::DaemonError>(),
            Some(crate::daemon::DaemonError::OutputRejected(_))
        )
    };
    if e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.is::<UsageError>()
            || c.is::<ProbeError>()
            || c.is::<ClusterProbeError>()
            || bad_output(c)
    }) {
        EXIT_CONFIG
    } else {
        EXIT_FAILURE
    }
}

/// `error: cause: cause`, skipping causes the message already spells out.
fn render(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Output closed early (`receiver print-default-config | head`): not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn config_path<'a>(global: &'a GlobalArgs, to: &str) -> Result<&'a Path, UsageError> {
    global.config.as_deref().ok_or_else(|| {
        UsageError(format!(
            "--config PATH is required to {to} (`receiver print-default-config` prints an \
             example)"
        ))
    })
}

/// Installs logging: `--log-format`, else the config's `[log] format`, else by terminal.
pub fn init_logging(global: &GlobalArgs, config: Option<&Config>) -> anyhow::Result<LogFormat> {
    let explicit = global
        .log_format
        .or_else(|| config.and_then(|c| c.log.format));
    Ok(crate::logging::init(explicit)?)
}

/// `receiver [run] --config PATH`: load the config, start logging, run the daemon until
/// SIGTERM/SIGINT.
pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    let path = config_path(global, "run the daemon")?;
    let loaded = Config::load_checked(path)?;
    let config = loaded.config;
    let log = crate::logging::init_reloadable(
        global.log_format.or(config.log.format),
        config.log.level.as_deref(),
    )?;
    for w in &loaded.warnings {
        tracing::warn!(warning = %w, "configuration warning");
    }
    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(16);
    spawn_signal_handler(shutdown.clone(), Some(control_tx))?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        output_dir = %config.output_dir.display(),
        state_dir = %config.state_dir.display(),
        "starting"
    );
    tracing::debug!(?config, "effective configuration");
    let control = crate::daemon::ControlChannel {
        rx: control_rx,
        config_path: path.to_owned(),
        log: Some(log),
        cli_format: global.log_format,
    };
    let shared = crate::daemon::Shared::new(config.aliyun.connections);
    crate::daemon::run_with_control(config, shutdown, shared, Some(control))
        .await
        .context("daemon failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the signal handlers, so that no signal a person or systemd may send kills the
/// process by its default action without a word:
///
/// | signal | with `control` (the daemon) | without (other commands) |
/// |---|---|---|
/// | SIGTERM, SIGINT, SIGQUIT | clean stop: cancels `token`; a second one exits at once (status 1) | same |
/// | SIGHUP | [`Control::Reload`](crate::reload::Control): reload the configuration | clean stop |
/// | SIGUSR1 | [`Control::Status`](crate::reload::Control): log a status line | logged, ignored |
/// | SIGUSR2 | logged, ignored | logged, ignored |
fn spawn_signal_handler(
    token: CancellationToken,
    control: Option<tokio::sync::mpsc::Sender<crate::reload::Control>>,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use crate::reload::Control;
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot install the {name} handler"))
        };
        let mut term = install(SignalKind::terminate(), "SIGTERM")?;
        let mut int = install(SignalKind::interrupt(), "SIGINT")?;
        let mut quit = install(SignalKind::quit(), "SIGQUIT")?;
        let mut hup = install(SignalKind::hangup(), "SIGHUP")?;
        let mut usr1 = install(SignalKind::user_defined1(), "SIGUSR1")?;
        let mut usr2 = install(SignalKind::user_defined2(), "SIGUSR2")?;
        tokio::spawn(async move {
            let mut stopping = false;
            loop {
                let (name, stop) = tokio::select! {
                    _ = term.recv() => ("SIGTERM", true),
                    _ = int.recv() => ("SIGINT", true),
                    _ = quit.recv() => ("SIGQUIT", true),
                    _ = hup.recv() => ("SIGHUP", control.is_none()),
                    _ = usr1.recv() => ("SIGUSR1", false),
                    _ = usr2.recv() => ("SIGUSR2", false),
                };
                if stop {
                    if stopping {
                        tracing::warn!(
                            signal = name,
                            "second signal: exiting without a clean stop"
                        );
                        std::process::exit(i32::from(EXIT_FAILURE));
                    }
                    stopping = true;
                    tracing::info!(
                        signal = name,
                        "shutting down; a second signal exits at once"
                    );
                    token.cancel();
                    continue;
                }
                let request = match (name, &control) {
                    ("SIGHUP", Some(tx)) => Some((tx, Control::Reload)),
                    ("SIGUSR1", Some(tx)) => Some((tx, Control::Status)),
                    _ => None,
                };
                match request {
                    Some((tx, request)) => {
                        if tx.try_send(request).is_err() {
                            tracing::warn!(
                                signal = name,
                                "signal not handled: the previous ones are still being handled"
                            );
                        }
                    }
                    None => tracing::info!(signal = name, "signal has no action here; ignored"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = control;
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!(signal = "ctrl-c", "shutting down");
                token.cancel();
            }
        });
    }
    Ok(())
}

#[cfg(feature = "tools")]
/// `receiver demo`: the whole pipeline on loopback; fails (status 1) unless every image comes out
/// byte-identical.
pub async fn demo(global: &GlobalArgs, args: crate::tools::demo::DemoArgs) -> anyhow::Result<()> {
    let explicit = global.log_format;
    crate::logging::init_with_default(explicit, "receiver=warn")?;
    let tty = std::io::IsTerminal::is_terminal(&io::stdout());
    let mut out = io::stdout();
    crate::tools::demo::run(args, &mut out, tty)
        .await
        .context("demo failed")?;
    Ok(())
}

#[cfg(feature = "tools")]
/// `receiver bench`: the benchmark (the receiver under test runs as a child process).
pub async fn bench(
    global: &GlobalArgs,
    args: crate::tools::bench::BenchArgs,
) -> anyhow::Result<()> {
    crate::logging::init_with_default(global.log_format, "receiver=warn")?;
    let mut out = io::stdout();
    crate::tools::bench::run(args, &mut out)
        .await
        .context("bench failed")?;
    Ok(())
}

#[cfg(feature = "tools")]
/// `receiver bench-floor --config PATH` (hidden): the daemon's AMQP connections with a consumer
/// that accepts every delivery unread; `receiver bench` measures its CPU per message.
pub async fn bench_floor(global: &GlobalArgs) -> anyhow::Result<()> {
    let path = config_path(global, "run the transport floor")?;
    let config = Config::load(path)?;
    init_logging(global, Some(&config))?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None)?;
    crate::tools::bench::floor::run(config, shutdown)
        .await
        .context("transport floor failed")?;
    Ok(())
}

#[cfg(feature = "tools")]
/// `receiver simulate-camera`: a camera without a board.
pub async fn simulate_camera(
    global: &GlobalArgs,
    args: receiver_testkit::camera::SimulateArgs,
) -> anyhow::Result<()> {
    init_logging(global, None)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None)?;
    let mut out = io::stdout();
    let report = receiver_testkit::camera::simulate(args, &mut out, shutdown)
        .await
        .context("simulate-camera failed")?;
    writeln!(out, "{}", report.summary())?;
    Ok(())
}

/// `receiver tail --config PATH`: print each message of the subscription, decoded.
pub async fn tail(global: &GlobalArgs, args: crate::tail::TailArgs) -> anyhow::Result<()> {
    let path = config_path(global, "tail the subscription")?;
    let config = Config::load(path)?;
    init_logging(global, Some(&config))?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None)?;
    let mut out = io::stdout();
    crate::tail::run(config, args, &mut out, shutdown)
        .await
        .context("tail failed")?;
    Ok(())
}

/// `receiver check-config --config PATH`: validate and print the effective settings.
pub fn check_config(global: &GlobalArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_config_with(global, &CheckConfigArgs::default(), out)
}

/// The output probe failed: the bucket cannot be used as configured (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("output probe failed: {0}")]
pub struct ProbeError(#[source] crate::sink::SinkError);

/// `receiver check-config [--probe-output] --config PATH`.
pub fn check_config_with(
    global: &GlobalArgs,
    args: &CheckConfigArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = config_path(global, "check a config")?;
    let loaded = Config::load_checked(path)?;
    let config = loaded.config;
    for w in &loaded.warnings {
        eprintln!("receiver: warning: {w}");
    }
    match loaded.warnings.len() {
        0 => writeln!(out, "# {}: OK", path.display())?,
        n => {
            writeln!(
                out,
                "# {}: OK, with {n} warning(s) (also on stderr):",
                path.display()
            )?;
            for w in &loaded.warnings {
                writeln!(out, "# WARNING: {w}")?;
            }
        }
    }
    writeln!(
        out,
        "# Effective settings: defaults applied (marked \"# default\"), secrets redacted.\n"
    )?;
    write!(out, "{config}")?;
    out.flush()?;
    if args.probe_output {
        probe_output(&config, out)?;
    }
    if args.probe_cluster {
        probe_cluster(&config, out)?;
    }
    Ok(())
}

/// The cluster probe could not reach or read the shared store (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("cluster probe failed: {0}")]
pub struct ClusterProbeError(#[source] crate::cluster::ClusterError);

/// `--probe-cluster`: connect to the shared store and report what could lose accepted chunks.
fn probe_cluster(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(cluster) = &config.cluster else {
        writeln!(
            out,
            "\n# --probe-cluster: no [cluster]; single-instance mode, nothing to probe"
        )?;
        return Ok(());
    };
    let probe = crate::cluster::ClusterStore::new(cluster.options())
        .and_then(|mut s| s.probe())
        .map_err(ClusterProbeError)?;
    writeln!(
        out,
        "\n# --probe-cluster: {} reachable (version {}, {} replica(s) connected)",
        crate::cluster::redact_url(&cluster.redis_url),
        probe.version,
        probe.replicas
    )?;
    for w in &probe.warnings {
        eprintln!("receiver: warning: [cluster] {w}");
        writeln!(out, "# WARNING: accepted chunks can be lost: {w}")?;
    }
    if probe.warnings.is_empty() {
        writeln!(
            out,
            "# --probe-cluster: OK: accepted chunks survive a Redis restart"
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `--probe-output`: write, read back and delete a small object (backend "s3").
fn probe_output(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(opts) = &config.output_s3 else {
        writeln!(
            out,
            "\n# --probe-output: backend is \"fs\"; nothing to probe (the folder is checked \
             at start-up)"
        )?;
        return Ok(());
    };
    // The output blocks on its own runtime: off this (async) thread.
    let opts2 = opts.clone();
    let report =
        std::thread::spawn(move || crate::s3::S3Output::new(opts2).and_then(|o| o.probe()))
            .join()
            .map_err(|_| anyhow::anyhow!("the output probe panicked"))?
            .map_err(ProbeError)?;
    writeln!(
        out,
        "\n# --probe-output: OK: wrote, read back and deleted s3://{}/{}",
        opts.bucket, report.key
    )?;
    out.flush()?;
    Ok(())
}

/// `receiver print-default-config`: the commented example, byte for byte.
pub fn print_default_config(out: &mut dyn Write) -> anyhow::Result<()> {
    out.write_all(EXAMPLE_TOML.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_global_flags_anywhere() {
        let c = Cli::try_parse_from(["receiver", "--config", "a.toml"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.global.config.as_deref(), Some(Path::new("a.toml")));
        let c = Cli::try_parse_from([
            "receiver",
            "check-config",
            "-c",
            "b.toml",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert!(matches!(c.command, Some(Command::CheckConfig(_))));
        assert_eq!(c.global.log_format, Some(LogFormat::Json));
        assert!(Cli::try_parse_from(["receiver", "--log-format", "xml"]).is_err());
    }

    #[test]
    #[cfg(feature = "tools")]
    fn bench_floor_is_a_hidden_command() {
        let c = Cli::try_parse_from(["receiver", "-c", "a.toml", "bench-floor"]).unwrap();
        assert!(matches!(c.command, Some(Command::BenchFloor)));
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("bench-floor"), "{help}");
    }

    #[test]
    fn exit_codes_follow_the_error_chain() {
        let usage = anyhow::Error::from(UsageError("x".into()));
        assert_eq!(exit_code(&usage), EXIT_CONFIG);
        let cfg = anyhow::Error::from(ConfigError::Read {
            path: "/nope".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        })
        .context("while starting");
        assert_eq!(exit_code(&cfg), EXIT_CONFIG);
        let other = anyhow::anyhow!("boom");
        assert_eq!(exit_code(&other), EXIT_FAILURE);
    }

    #[test]
    fn render_skips_repeated_causes() {
        let e = anyhow::Error::from(ConfigError::Read {
            path: "/nope".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
        let r = render(&e);
        assert_eq!(r.matches("not found").count(), 1, "{r}");
    }

    #[test]
    fn print_default_config_is_the_example() {
        let mut out = Vec::new();
        print_default_config(&mut out).unwrap();
        assert_eq!(out, EXAMPLE_TOML.as_bytes());
    }
}
