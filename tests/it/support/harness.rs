//! Shared harness for the daemon end-to-end tests: the fake Aliyun endpoint, the real daemon
//! (`daemon::run_with`) on its own temp folders, upload generators and on-disk checks.
#![allow(dead_code)]

use receiver::config::Config;
use receiver::daemon::{self, DaemonError, Shared};
use receiver::message::DeviceId;
use receiver::metrics::Metrics;
use receiver::sink::{self, Sink};
use receiver::tools::FakeClientConfig as _;
use receiver::wire::{self, Format};
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig, FakeOutcome};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Deadline for anything a test waits for (generous: the machine is shared).
pub const WAIT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take.
/// `[assembly] redelivery_grace` of the test daemons.
pub const REDELIVERY_GRACE: Duration = Duration::from_millis(700);
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// A fixed device clock for v1 pictures: 2023-11-14T22:13:20.000Z.
pub const T0: i64 = 1_700_000_000_000;

/// Logs go to the test's captured output; `RUST_LOG=receiver=debug` shows more.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// The fake endpoint, a configuration pointing at it and (when started) the daemon.
pub struct Harness {
    /// Holds `out/`, `state/` and the fake's CA file; nothing else may appear in it.
    pub root: tempfile::TempDir,
    pub fake: Arc<FakeAliyun>,
    pub config: Config,
    /// The running daemon's shared state (fresh on every [`Harness::start`]).
    pub shared: Shared,
    shutdown: CancellationToken,
    daemon: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// A fake endpoint and a durable-mode configuration with `connections` connections.
    pub async fn new(connections: usize) -> Harness {
        init_logging();
        let root = tempfile::tempdir().expect("temp dir");
        let fake = FakeAliyun::start(FakeConfig::default())
            .await
            .expect("fake endpoint");
        let toml = ConfigBuilder::new()
            .aliyun_placeholder()
            .output_dir(root.path().join("out"))
            .state_dir(root.path().join("state"))
            .build();
        let mut config = Config::from_toml(&toml, &root.path().join("receiver.toml"), &|_| None)
            .expect("test configuration");
        config.aliyun = fake
            .client_config(root.path(), "e2e")
            .expect("client config");
        config.aliyun.connections = connections;
        // The fake redelivers what a cut connection had in flight within milliseconds, not after
        // Aliyun's 30 s ACK timeout: a short grace keeps the tests quick.
        config.assembly.redelivery_grace = REDELIVERY_GRACE;
        assert!(config.spool.enabled, "durable mode is the default");
        Harness {
            root,
            fake: Arc::new(fake),
            config,
            shared: Shared::new(connections),
            shutdown: CancellationToken::new(),
            daemon: None,
        }
    }

    /// Starts the daemon (again) with the current configuration and fresh shared state.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        self.shared = Shared::new(self.config.aliyun.connections);
        self.shutdown = CancellationToken::new();
        self.daemon = Some(tokio::spawn(daemon::run_with(
            self.config.clone(),
            self.shutdown.clone(),
            self.shared.clone(),
        )));
    }

    /// Cancels the shutdown token and checks `run_with` returns `Ok` within [`STOP_DEADLINE`].
    /// Returns how long it took.
    pub async fn stop(&mut self) -> Duration {
        let handle = self.daemon.take().expect("daemon not running");
        let started = Instant::now();
        self.shutdown.cancel();
        match tokio::time::timeout(STOP_DEADLINE, handle).await {
            Ok(Ok(Ok(()))) => started.elapsed(),
            Ok(Ok(Err(e))) => panic!("daemon failed: {e}"),
            Ok(Err(e)) => panic!("daemon task failed: {e}"),
            Err(_) => panic!("daemon did not stop within {STOP_DEADLINE:?}"),
        }
    }

    /// True while the daemon task runs.
    pub fn running(&self) -> bool {
        self.daemon.as_ref().is_some_and(|d| !d.is_finished())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn out(&self) -> &Path {
        &self.config.output_dir
    }

    pub fn state(&self) -> &Path {
        &self.config.state_dir
    }

    pub fn sink(&self) -> Sink {
        Sink::new(self.out(), self.state()).expect("sink")
    }

    /// Polls the metrics until `pred` holds; panics (with a metrics summary) after `timeout`
    /// or if the daemon stops.
    pub async fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Metrics) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self.metrics()) {
                return;
            }
            if self.daemon.is_some() && !self.running() {
                panic!("daemon stopped while waiting for {what}");
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {}; fake {:?}",
                    summary(self.metrics()),
                    self.fake.counters()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` images were written by this run of the daemon.
    pub async fn wait_images(&self, n: u64) {
        self.wait_metrics(&format!("{n} images"), WAIT, |m| m.images_written() >= n)
            .await;
    }

    /// Waits until every connection's link is attached.
    pub async fn wait_links(&self) {
        let n = self.config.aliyun.connections;
        let conns = self.shared.connections.clone();
        self.wait_metrics(&format!("{n} links"), WAIT, move |_| {
            conns
                .iter()
                .filter(|c| c.link_attached.load(std::sync::atomic::Ordering::Relaxed))
                .count()
                >= n
        })
        .await;
    }

    /// Waits until the fake's queue is empty and nothing is in flight.
    pub async fn wait_drained(&self) {
        self.fake.wait_drained(WAIT).await.expect("fake drained");
    }

    /// Publishes one device payload; returns its `messageId`.
    pub fn publish(&self, device: &DeviceId, payload: &str) -> String {
        self.fake
            .publish_property_post(&device.product_key, &device.device_name, payload.as_bytes())
            .expect("publish")
    }

    /// Publishes many payloads in order; returns their `messageId`s.
    pub fn publish_all(&self, items: &[(DeviceId, String)]) -> Vec<String> {
        items.iter().map(|(d, p)| self.publish(d, p)).collect()
    }

    /// Polls the fake until every id in `ids` has been accepted at least once.
    pub async fn wait_ids_accepted(&self, ids: &[String]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let outcomes = self.fake.outcomes();
            let missing = ids
                .iter()
                .filter(|id| {
                    !outcomes
                        .get(*id)
                        .is_some_and(|o| o.contains(&FakeOutcome::Accepted))
                })
                .count();
            if missing == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{missing} of {} messages not accepted after {WAIT:?}; {}; fake {:?}",
                    ids.len(),
                    summary(self.metrics()),
                    self.fake.counters()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The counters that matter when a wait fails.
pub fn summary(m: &Metrics) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    format!(
        "images v1={} v2={}, accepted={} released={} rejected={}, open={}, duplicates={}+{}, io_errors={}",
        m.images_v1.load(Relaxed),
        m.images_v2.load(Relaxed),
        m.accepted.load(Relaxed),
        m.released.load(Relaxed),
        m.rejected.load(Relaxed),
        m.open_assemblies.load(Relaxed),
        m.messages(receiver::metrics::Kind::Duplicate),
        m.duplicate_chunks.load(Relaxed),
        m.io_errors.load(Relaxed),
    )
}

// ---------------------------------------------------------------------------------------------
// Uploads.
// ---------------------------------------------------------------------------------------------

/// One picture a camera uploads: its data payloads and (v1) the `END` payload.
#[derive(Debug, Clone)]
pub struct Picture {
    pub device: DeviceId,
    pub format: Format,
    pub jpeg: Vec<u8>,
    /// Payloads before `END` (v2: all of them).
    pub data: Vec<String>,
    /// v1: the `END` payload.
    pub end: Option<String>,
}

impl Picture {
    /// Every payload, `END` last.
    pub fn all(&self) -> Vec<String> {
        self.data.iter().chain(&self.end).cloned().collect()
    }

    pub fn data_items(&self) -> Vec<(DeviceId, String)> {
        self.data
            .iter()
            .map(|p| (self.device.clone(), p.clone()))
            .collect()
    }

    pub fn end_item(&self) -> Option<(DeviceId, String)> {
        self.end.as_ref().map(|p| (self.device.clone(), p.clone()))
    }
}

/// A small, distinct, real JPEG.
pub fn jpeg(width: u32, height: u32, frame: u32, label: &str) -> Vec<u8> {
    receiver_testkit::sample::scene_jpeg(width, height, frame, label, 70).expect("sample jpeg")
}

/// A golden image from `tests/vectors/images`.
pub fn golden_image(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join("images").join(name)).expect("golden image")
}

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Non-comment lines of a vectors table, split on tabs.
pub fn table(rel: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(vectors_dir().join(rel))
        .expect("vectors table")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The lines of a vectors file.
pub fn vector_lines(rel: &str) -> Vec<String> {
    std::fs::read_to_string(vectors_dir().join(rel))
        .expect("vectors file")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The long-form payload `"img":{"value":..,"time":..}` (a camera with a synchronised clock).
pub fn timed_payload(id: u32, value: &str, time: i64) -> String {
    format!(
        "{{\"id\":\"{id}\",\"version\":\"1.0\",\"params\":{{\"img\":{{\"value\":\"{value}\",\"time\":{time}}}}},\"method\":\"thing.event.property.post\"}}"
    )
}

/// Rewrites a short-form payload into the long form with `time`.
pub fn with_time(payload: &str, time: i64) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).expect("payload JSON");
    let id: u32 = v["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let value = v["params"]["img"].as_str().expect("short-form img");
    timed_payload(id, value, time)
}

/// A v2 picture in the short form (the platform stamps the time).
pub fn v2_picture(device: &DeviceId, jpeg: &[u8], pid: u32, piece: usize) -> Picture {
    Picture {
        device: device.clone(),
        format: Format::V2,
        jpeg: jpeg.to_vec(),
        data: wire::encode_payloads(Format::V2, jpeg, pid, piece).expect("encode v2"),
        end: None,
    }
}

/// A v1 picture in the long form: chunk `i` (and then `END`) timed `t0 + i` ms.
pub fn v1_picture(device: &DeviceId, jpeg: &[u8], hex_chars: usize, pid: u32, t0: i64) -> Picture {
    let values = wire::encode_v1(jpeg, hex_chars).expect("encode v1");
    let mut payloads: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| timed_payload(wire::alink_id(pid, i as u32), v, t0 + i as i64))
        .collect();
    let end = payloads.pop();
    Picture {
        device: device.clone(),
        format: Format::V1,
        jpeg: jpeg.to_vec(),
        data: payloads,
        end,
    }
}

/// The Alink id the original tutorial firmware sends with every message.
pub const ORIGINAL_FIRMWARE_ID: u32 = 1_189_401_707;

/// A camera running the original tutorial firmware: its pictures one after the other, each as
/// 400-byte hex chunks then `END`, every message with the same Alink id; message `i` of the camera
/// timed `t0 + 10 i` (as Aliyun stamps them). Returns the pictures and the camera's payloads in
/// the order it sends them.
pub fn original_firmware_camera(
    device: &DeviceId,
    jpegs: &[Vec<u8>],
    t0: i64,
) -> (Vec<Picture>, Vec<(DeviceId, String)>) {
    let mut pictures = Vec::new();
    let mut stream = Vec::new();
    let mut t = t0;
    for jpeg in jpegs {
        let values = wire::encode_v1(jpeg, 800).expect("encode v1");
        let mut payloads: Vec<String> = values
            .iter()
            .map(|v| {
                t += 10;
                timed_payload(ORIGINAL_FIRMWARE_ID, v, t)
            })
            .collect();
        stream.extend(payloads.iter().map(|p| (device.clone(), p.clone())));
        let end = payloads.pop();
        pictures.push(Picture {
            device: device.clone(),
            format: Format::V1,
            jpeg: jpeg.clone(),
            data: payloads,
            end,
        });
    }
    (pictures, stream)
}

/// Deterministic xorshift64*, enough for shuffles.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Merges the lists at random, keeping each list's own order.
pub fn interleave<T>(lists: Vec<Vec<T>>, rng: &mut Rng) -> Vec<T> {
    let mut iters: Vec<_> = lists
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.into_iter().peekable())
        .collect();
    let mut out = Vec::new();
    while !iters.is_empty() {
        let i = rng.below(iters.len());
        out.extend(iters[i].next());
        if iters[i].peek().is_none() {
            drop(iters.swap_remove(i));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Checks.
// ---------------------------------------------------------------------------------------------

/// Every file (not folder) under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Checks the output folder holds exactly `expected` (device, JPEG) pairs: each image exactly
/// once, byte-identical, in its device's folder, and nothing else at all.
pub fn assert_output(out: &Path, expected: &[(DeviceId, Vec<u8>)]) {
    let mut want: BTreeMap<PathBuf, Vec<&[u8]>> = BTreeMap::new();
    for (device, bytes) in expected {
        want.entry(device_dir(out, device))
            .or_default()
            .push(bytes.as_slice());
    }
    let mut got: BTreeMap<PathBuf, Vec<Vec<u8>>> = BTreeMap::new();
    for file in walk(out) {
        let dir = file.parent().expect("parent").to_path_buf();
        assert!(
            want.contains_key(&dir),
            "unexpected file {} (not in an expected device folder)",
            file.display()
        );
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".jpg") && !name.starts_with('.'),
            "unexpected file {}",
            file.display()
        );
        got.entry(dir)
            .or_default()
            .push(std::fs::read(&file).expect("read image"));
    }
    for (dir, mut images) in want {
        let mut found = got.remove(&dir).unwrap_or_default();
        images.sort();
        found.sort();
        let found_refs: Vec<&[u8]> = found.iter().map(Vec::as_slice).collect();
        if images != found_refs {
            let missing = images.iter().filter(|i| !found_refs.contains(i)).count();
            panic!(
                "{}: expected {} image(s), found {} file(s); {missing} expected image(s) missing or different",
                dir.display(),
                images.len(),
                found.len()
            );
        }
    }
}

/// `<base>/<pk>/<dn>` with the sink's encoding.
pub fn device_dir(base: &Path, device: &DeviceId) -> PathBuf {
    base.join(sink::encode_component(&device.product_key))
        .join(sink::encode_component(&device.device_name))
}

/// One quarantine record: its sidecar and data file.
#[derive(Debug, Clone)]
pub struct QRecord {
    pub dir: PathBuf,
    pub reason: String,
    pub sidecar: serde_json::Value,
    pub data: Vec<u8>,
}

/// Every quarantine record under `<state>/quarantine`; checks each `.json` has its `.bin` and
/// each `.bin` its `.json`.
pub fn quarantine_records(state: &Path) -> Vec<QRecord> {
    let files = walk(&state.join(sink::QUARANTINE_DIR));
    let set: BTreeSet<&PathBuf> = files.iter().collect();
    let mut out = Vec::new();
    for f in &files {
        match f.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                let bin = f.with_extension("bin");
                assert!(set.contains(&bin), "{} has no .bin", f.display());
                let sidecar: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(f).unwrap()).expect("sidecar JSON");
                assert_eq!(
                    sidecar["data_file"].as_str(),
                    bin.file_name().and_then(|n| n.to_str()),
                    "{}",
                    f.display()
                );
                out.push(QRecord {
                    dir: f.parent().unwrap().to_path_buf(),
                    reason: sidecar["reason"].as_str().unwrap_or("").to_string(),
                    sidecar,
                    data: std::fs::read(&bin).unwrap(),
                });
            }
            Some("bin") => assert!(
                set.contains(&f.with_extension("json")),
                "{} has no sidecar",
                f.display()
            ),
            _ => panic!("unexpected file in quarantine: {}", f.display()),
        }
    }
    out
}

pub fn assert_no_quarantine(state: &Path) {
    let q = quarantine_records(state);
    assert!(
        q.is_empty(),
        "unexpected quarantine: {:?}",
        q.iter()
            .map(|r| (r.dir.display().to_string(), r.reason.clone()))
            .collect::<Vec<_>>()
    );
}

/// Checks every message in `ids` ended accepted exactly once (a message the fake duplicated on
/// purpose may be accepted `1 + dup` times), never rejected, never left in any other state last.
pub fn assert_accepted_once(outcomes: &HashMap<String, Vec<FakeOutcome>>, ids: &[String]) {
    for id in ids {
        let o = outcomes
            .get(id)
            .unwrap_or_else(|| panic!("message {id} never settled"));
        let accepted = o.iter().filter(|x| **x == FakeOutcome::Accepted).count();
        assert_eq!(accepted, 1, "message {id}: outcomes {o:?}");
        assert_eq!(
            o.last(),
            Some(&FakeOutcome::Accepted),
            "message {id}: {o:?}"
        );
    }
}

/// Like [`assert_accepted_once`] for runs with duplicates injected by the fake (same
/// `messageId` delivered twice): every delivery of each message was accepted.
pub fn assert_all_accepted(outcomes: &HashMap<String, Vec<FakeOutcome>>, ids: &[String]) {
    for id in ids {
        let o = outcomes
            .get(id)
            .unwrap_or_else(|| panic!("message {id} never settled"));
        assert!(
            !o.is_empty() && o.iter().all(|x| *x == FakeOutcome::Accepted),
            "message {id}: outcomes {o:?}"
        );
    }
}

/// Expected (device, image) pairs of a set of pictures.
pub fn expected(pictures: &[Picture]) -> Vec<(DeviceId, Vec<u8>)> {
    pictures
        .iter()
        .map(|p| (p.device.clone(), p.jpeg.clone()))
        .collect()
}
