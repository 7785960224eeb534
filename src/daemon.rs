//! Wires the daemon together: N AMQP connections → one engine thread → files.
//!
//! Start-up: prepare the folders, open (and replay) the spool, start the engine thread, then the
//! connections. Shutdown (SIGTERM/SIGINT → `shutdown` cancelled): the connections stop taking
//! deliveries and wait briefly for the settlements of what they hold, the engine drains the
//! channel (commit + settle), then links, sessions and connections close.

use crate::amqp::client::{self, ConnState, ConnectLimiter};
use crate::amqp::Inbound;
use crate::assembler::Limits;
use crate::config::{Config, LogFormat};
use crate::engine::{self, Engine, EngineOptions, RecoveryReport};
use crate::logging::LogHandle;
use crate::metrics::Metrics;
use crate::ops::notify::Notifier;
use crate::ops::Ops;
use crate::reload::{Control, Reloader};
use crate::sink::Sink;
use crate::spool::SpoolOptions;
use crate::web::index::IndexedOutput;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Why the daemon stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The engine could not start (folders, spool).
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The object store refused the start-up check (wrong credentials, a missing bucket, a bad
    /// endpoint): a configuration problem (exit status 2).
    #[error("the output bucket cannot be used: {0}")]
    OutputRejected(#[source] crate::sink::SinkError),
    /// A connection failed in a way retrying cannot fix.
    #[error("connection failed: {0}")]
    Connection(#[from] client::ClientError),
    /// A task or thread could not be started or joined.
    #[error("internal task failure: {0}")]
    Task(String),
}

/// Handles the daemon shares with operators' tooling (health, metrics, demo progress).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
    /// Per-connection state.
    pub connections: Arc<Vec<Arc<ConnState>>>,
    /// Where the gallery listens, once it does (`[web] listen`, port 0 resolved).
    pub web_addr: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
}

impl Shared {
    /// Shared state for `connections` connections.
    pub fn new(connections: usize) -> Self {
        Shared {
            metrics: Arc::new(Metrics::default()),
            connections: Arc::new((0..connections).map(|_| ConnState::new()).collect()),
            web_addr: Arc::default(),
        }
    }

    /// True while at least one receiver link is attached.
    pub fn any_link_attached(&self) -> bool {
        self.connections
            .iter()
            .any(|c| c.link_attached.load(Relaxed))
    }
}

/// The engine settings a configuration implies.
pub fn engine_options(config: &Config) -> EngineOptions {
    let a = &config.assembly;
    EngineOptions {
        limits: Limits {
            max_image_bytes: a.max_image_bytes,
            max_open: a.max_open,
            timeout_ms: a.timeout.as_millis() as u64,
            decode_check: a.decode_check,
            memory_budget: usize::try_from(a.memory_limit).unwrap_or(usize::MAX),
            redelivery_grace_ms: a.redelivery_grace.as_millis() as u64,
        },
        spill_dir: Some(config.state_dir.join("spill")),
        dedup_window: a.dedup_window,
        batch_max: config.spool.batch_max,
        batch_delay: config.spool.batch_delay,
        max_in_flight: config.aliyun.connections.max(1) * config.aliyun.credit.max(1) as usize,
        parallel_writes: config
            .output_s3
            .as_ref()
            .map_or(engine::PARALLEL_WRITES, |s| s.concurrency),
        // An object store's writes wait on the network: not in the batch loop.
        write_behind: config.output_s3.is_some(),
        ..EngineOptions::default()
    }
}

/// Clears what a crash left half-written, then opens (and replays) the engine over `sink`.
fn open_engine<O: crate::output::Output + 'static>(
    config: &Config,
    sink: Sink<O>,
    metrics: Arc<Metrics>,
) -> Result<(Engine, RecoveryReport), DaemonError> {
    let cleaned = match &config.cluster {
        // The output is shared: another instance may be writing; a write never takes a lease.
        Some(c) => sink.remove_stale_temp_files_shared(c.lease * 2),
        None => sink.remove_stale_temp_files(),
    };
    match cleaned {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed temporary files left by a crash"),
        Err(e) => tracing::warn!(error = %e, "cannot clean temporary files"),
    }
    if let Some(cluster) = &config.cluster {
        let store = crate::cluster::ClusterStore::new(cluster.options())
            .map_err(|e| DaemonError::Task(format!("[cluster]: {e}")))?;
        tracing::info!(
            instance_id = store.instance_id(),
            store = store.describe(),
            "cluster mode: chunks in flight live in the shared store"
        );
        let mut engine = Engine::open_cluster(engine_options(config), store, sink, metrics);
        // Moving from single-instance mode: what the spool still holds goes to the shared
        // store first (docs/operations.md, "Several instances").
        let spool_dir = config.state_dir.join("spool");
        if spool_dir.is_dir() {
            let opts = SpoolOptions {
                dir: spool_dir,
                segment_bytes: config.spool.segment_bytes,
                max_bytes: config.spool.max_bytes,
            };
            let n = engine
                .import_spool(opts, receiver_protocol::time::now_ms())
                .map_err(|e| {
                    DaemonError::Task(format!(
                        "cannot move the spool into the shared store (start again once Redis \
                         answers): {e}"
                    ))
                })?;
            tracing::info!(
                chunks = n,
                "moved the chunks the spool held into the shared store; the spool folder is set aside"
            );
        }
        return Ok((engine, RecoveryReport::default()));
    }
    Ok(Engine::open(
        engine_options(config),
        spool_options(config),
        sink,
        metrics,
        receiver_protocol::time::now_ms(),
    )?)
}

/// The object-store output, checked: wrong credentials, a missing bucket or a bad endpoint stop
/// the start-up ([`DaemonError::OutputRejected`]); a store that is down or slow does not (the
/// engine pauses intake and retries until it answers).
fn open_bucket(
    opts: &crate::s3::S3Options,
    metrics: &Arc<Metrics>,
) -> Result<crate::s3::S3Output, DaemonError> {
    let output = crate::s3::S3Output::new(opts.clone())
        .map_err(DaemonError::OutputRejected)?
        .with_metrics(metrics.clone());
    match output.check() {
        Ok(()) => {
            tracing::info!(output = %crate::output::Output::describe(&output), "object store reachable");
            Ok(output)
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(error = %e, "object store not reachable yet; starting anyway: pictures stay in the spool and intake pauses until it answers");
            Ok(output)
        }
        Err(e) => Err(DaemonError::OutputRejected(e)),
    }
}

/// The spool settings a configuration implies (`None` in in-memory mode).
pub fn spool_options(config: &Config) -> Option<SpoolOptions> {
    config.spool.enabled.then(|| SpoolOptions {
        dir: config.state_dir.join("spool"),
        segment_bytes: config.spool.segment_bytes,
        max_bytes: config.spool.max_bytes,
    })
}

/// What the daemon needs to serve SIGHUP (reload) and SIGUSR1 (status); see [`crate::reload`].
#[derive(Debug)]
pub struct ControlChannel {
    /// Requests from the signal handler.
    pub rx: mpsc::Receiver<Control>,
    /// The config file to reload.
    pub config_path: PathBuf,
    /// The logging to adjust (`None`: log settings are not reloaded).
    pub log: Option<LogHandle>,
    /// `--log-format`, which wins over `[log] format`.
    pub cli_format: Option<LogFormat>,
}

/// Runs the daemon until `shutdown` is cancelled (SIGTERM/SIGINT) or a fatal error.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let shared = Shared::new(config.aliyun.connections);
    run_with(config, shutdown, shared).await
}

/// [`run`] with caller-provided shared state (the demo and tests watch it).
pub async fn run_with(
    config: Config,
    shutdown: CancellationToken,
    shared: Shared,
) -> Result<(), DaemonError> {
    run_with_control(config, shutdown, shared, None).await
}

/// [`run_with`], also serving reload and status requests from `control` (the `receiver run`
/// command passes the signal handler's).
pub async fn run_with_control(
    config: Config,
    shutdown: CancellationToken,
    shared: Shared,
    control: Option<ControlChannel>,
) -> Result<(), DaemonError> {
    let metrics = shared.metrics.clone();
    // With the gallery on, the engine writes through an output that keeps its index current.
    let index = config.web.listen.map(|_| crate::web::index::Index::new());
    let (engine, report, reader) = {
        let config = config.clone();
        let metrics = metrics.clone();
        let index = index.clone();
        type Opened = (
            Engine,
            RecoveryReport,
            Option<Arc<dyn crate::output::Output>>,
        );
        tokio::task::spawn_blocking(move || -> Result<Opened, DaemonError> {
            match &config.output_s3 {
                None => {
                    let sink = Sink::new(&config.output_dir, &config.state_dir)
                        .map_err(engine::EngineError::from)?;
                    let reader: Arc<dyn crate::output::Output> = Arc::new(sink.output().clone());
                    let (engine, report) = match index {
                        Some(index) => open_engine(
                            &config,
                            sink.map_output(|o| IndexedOutput::new(o, index)),
                            metrics,
                        )?,
                        None => open_engine(&config, sink, metrics)?,
                    };
                    Ok((engine, report, Some(reader)))
                }
                Some(opts) => {
                    let output = open_bucket(opts, &metrics)?;
                    let sink = Sink::with_output(output, &config.state_dir)
                        .map_err(engine::EngineError::from)?;
                    let (engine, report) = match index {
                        Some(index) => open_engine(
                            &config,
                            sink.map_output(|o| IndexedOutput::new(o, index)),
                            metrics,
                        )?,
                        None => open_engine(&config, sink, metrics)?,
                    };
                    // The gallery reads with its own client (its own small runtime).
                    let reader = match config.web.listen {
                        Some(_) => Some(Arc::new(
                            crate::s3::S3Output::new(opts.clone())
                                .map_err(DaemonError::OutputRejected)?,
                        )
                            as Arc<dyn crate::output::Output>),
                        None => None,
                    };
                    Ok((engine, report, reader))
                }
            }
        })
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))??
    };
    let output = match &config.output_s3 {
        Some(s3) => format!("s3://{}/{} at {}", s3.bucket, s3.prefix, s3.endpoint),
        None => config.output_dir.display().to_string(),
    };
    tracing::info!(
        output = %output,
        state = %config.state_dir.display(),
        spool = config.spool.enabled && config.cluster.is_none(),
        recovered_records = report.records,
        corrupt_records = report.corrupt,
        open_pictures = report.open,
        images_recovered = report.written,
        connections = config.aliyun.connections,
        "receiver starting"
    );
    // `[web] listen` equal to `[metrics] listen`: one listener, the gallery's.
    let shared_listener =
        config.web.listen.is_some() && config.web.listen == config.ops.metrics.listen;
    let mut ops_config = config.ops.clone();
    if shared_listener {
        ops_config.metrics.listen = None;
    }
    let ops = Ops::start(
        &ops_config,
        &config.output_dir,
        metrics.clone(),
        Notifier::from_env(),
        shutdown.clone(),
    )
    .await
    .map_err(|e| DaemonError::Task(format!("cannot start the operations endpoints: {e}")))?;
    let mut web_tasks = Vec::new();
    if let (Some(listen), Some(index), Some(reader)) = (config.web.listen, index, reader) {
        let gallery = crate::web::Gallery::new(
            index,
            reader,
            &config.state_dir,
            metrics.clone(),
            config.web.password.clone(),
        );
        let health = shared_listener.then_some(config.ops.health);
        let (addr, tasks) = crate::web::start(listen, gallery, health, shutdown.clone())
            .await
            .map_err(|e| DaemonError::Task(format!("cannot start the gallery: {e}")))?;
        let _ = shared.web_addr.set(addr);
        web_tasks = tasks;
    }
    let mut engine = engine;
    engine.set_hook(ops.hook());
    engine.watch_connections(shared.connections.clone());
    let control_task = control.map(|c| {
        let reloader = Reloader::new(
            c.config_path,
            config.clone(),
            c.log,
            c.cli_format,
            ops.hook(),
            ops.retention_settings(),
        );
        tokio::spawn(crate::reload::serve(
            reloader,
            c.rx,
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    let connections = config.aliyun.connections.max(1);
    let credit = config.aliyun.credit.max(1) as usize;
    let (tx, rx) = mpsc::channel::<Inbound>(connections * credit * 2);
    let (paused_tx, paused_rx) = watch::channel(engine.is_paused());
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || engine::run(engine, rx, paused_tx))
        .map_err(|e| DaemonError::Task(format!("cannot start the engine thread: {e}")))?;

    let aliyun = Arc::new(config.aliyun.clone());
    let limiter = ConnectLimiter::aliyun();
    let conn_shutdown = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, state) in shared.connections.iter().enumerate().take(connections) {
        tasks.spawn(client::run_connection(
            index,
            aliyun.clone(),
            tx.clone(),
            paused_rx.clone(),
            state.clone(),
            limiter.clone(),
            conn_shutdown.clone(),
        ));
    }
    drop(tx);
    let sync = tokio::spawn(sync_connection_metrics(shared.clone(), shutdown.clone()));

    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "connection stopped for good");
                failure.get_or_insert(DaemonError::Connection(e));
                conn_shutdown.cancel();
            }
            Err(e) => {
                failure.get_or_insert(DaemonError::Task(e.to_string()));
                conn_shutdown.cancel();
            }
        }
    }
    // Every sender is gone: the engine drains what is left, settles it and returns. It gets
    // SHUTDOWN_DEADLINE (a stuck disk can hold an fsync for long); after that the process exits
    // anyway: what it had not settled is redelivered, and the spool makes that harmless.
    let join = tokio::task::spawn_blocking(move || engine_thread.join());
    match tokio::time::timeout(SHUTDOWN_DEADLINE, join).await {
        Ok(Ok(Ok(()))) => {}
        Ok(_) => {
            failure.get_or_insert(DaemonError::Task("the engine thread panicked".into()));
        }
        Err(_) => {
            tracing::error!(
                deadline_s = SHUTDOWN_DEADLINE.as_secs(),
                "the engine did not finish draining in time; exiting (unsettled deliveries are redelivered)"
            );
            failure.get_or_insert(DaemonError::Task(format!(
                "the engine did not stop within {} s",
                SHUTDOWN_DEADLINE.as_secs()
            )));
        }
    }
    sync.abort();
    if let Some(t) = control_task {
        t.abort();
    }
    ops.stop(Duration::from_secs(10)).await;
    for t in web_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    tracing::info!(
        images = metrics.images_written(),
        accepted = metrics.accepted.load(Relaxed),
        released = metrics.released.load(Relaxed),
        "receiver stopped"
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Mirrors the connections' state into the metrics (links attached, reconnects, refused
/// sign-ins) so `/metrics`, `/healthz` and READY=1 see it.
async fn sync_connection_metrics(shared: Shared, shutdown: CancellationToken) {
    let m = &shared.metrics;
    loop {
        let sum = |f: fn(&ConnState) -> u64| shared.connections.iter().map(|c| f(c)).sum::<u64>();
        m.links_attached
            .store(sum(|c| u64::from(c.link_attached.load(Relaxed))), Relaxed);
        m.reconnects
            .store(sum(|c| c.reconnects.load(Relaxed)), Relaxed);
        m.auth_failures
            .store(sum(|c| c.auth_failures.load(Relaxed)), Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        }
        m.links_attached.store(0, Relaxed);
        return;
    }
}

/// How long the engine may take to drain at shutdown before the process gives up waiting
/// (below the unit's `TimeoutStopSec=30s`).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
