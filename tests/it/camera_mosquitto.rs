//! `simulate` against a real MQTT broker: Debian's mosquitto, started by each test on loopback with
//! a generated config and password file. The password file holds the Aliyun user name
//! `<dn>&<pk>` with the password the camera must compute, so a successful run proves the
//! credentials; mosquitto's log shows the client id; a subscriber checks every payload that arrives.
//!
//! mosquitto is a hard requirement (`apt-get install mosquitto`; `.ci/run` installs it): without it
//! these tests fail rather than skip.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use receiver::config::{Secret, SignMethod};
use receiver::wire::{self, Format};
use receiver_testkit::camera::sign::{self, DeviceIdentity, SecureMode};
use receiver_testkit::camera::{simulate, CameraError, SimReport, SimulateArgs};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PK: &str = "a1GoldenPK0";
const DN: &str = "cam-golden-01";
const SECRET: &str = "mosquittoTestSecret0123456789abc";
/// The official C SDK's fixed sign-in timestamp (2050-01-01), so the password is predictable.
const TS: u64 = 2_524_608_000_000;
const WATCHER: (&str, &str) = ("watcher", "watcher-password");

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn find(candidates: &[&str], what: &str) -> PathBuf {
    for c in candidates {
        let p = Path::new(c);
        if p.is_file() {
            return p.to_path_buf();
        }
    }
    panic!(
        "{what} not found (looked at {candidates:?}): install the broker with `apt-get install mosquitto` \
         (Debian/Ubuntu package; .ci/run installs it). These tests need a real MQTT broker."
    );
}

/// A mosquitto child process, killed (and reaped) on drop.
struct Broker {
    child: Child,
    mosquitto: PathBuf,
    conf: PathBuf,
    dir: tempfile::TempDir,
    /// Plain TCP listener (for the watcher, and the camera unless TLS is tested).
    port: u16,
    /// TLS listener, when asked for.
    tls_port: Option<u16>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn free_port() -> u16 {
    // mosquitto cannot listen on port 0: take a free port from the kernel and hand it over.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn write_tls_files(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "camera test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem()).unwrap();
}

/// Starts mosquitto on 127.0.0.1 with a password file holding `users`.
fn start_broker(users: &[(&str, &str)], tls: bool) -> Broker {
    let mosquitto = find(
        &[
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto",
            "/usr/local/sbin/mosquitto",
        ],
        "mosquitto",
    );
    let passwd = find(
        &[
            "/usr/bin/mosquitto_passwd",
            "/usr/local/bin/mosquitto_passwd",
        ],
        "mosquitto_passwd",
    );
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("passwd");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(&passwd);
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg(&pwfile)
            .arg(user)
            .arg(password)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "mosquitto_passwd failed for {user}");
    }
    let port = free_port();
    let log = dir.path().join("mosquitto.log");
    let mut conf = format!(
        "# generated by tests/it/camera_mosquitto.rs\n\
         # as root, mosquitto would drop to user `mosquitto`, which cannot read this temp dir\n\
         user root\n\
         persistence false\n\
         allow_anonymous false\n\
         password_file {}\n\
         log_dest file {}\n\
         log_type all\n\
         connection_messages true\n\
         listener {port} 127.0.0.1\n",
        pwfile.display(),
        log.display()
    );
    let mut tls_port = None;
    if tls {
        write_tls_files(dir.path());
        let p = free_port();
        conf.push_str(&format!(
            "listener {p} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
            dir.path().display()
        ));
        tls_port = Some(p);
    }
    let conf_path = dir.path().join("mosquitto.conf");
    std::fs::File::create(&conf_path)
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .unwrap();
    let mut broker = Broker {
        child: spawn(&mosquitto, &conf_path),
        mosquitto,
        conf: conf_path,
        dir,
        port,
        tls_port,
    };
    broker.wait_listening();
    broker
}

fn spawn(mosquitto: &Path, conf: &Path) -> Child {
    // No `-d`: it stays our child, killed by `Drop`.
    Command::new(mosquitto)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Broker {
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mosquitto exited ({status}):\n{}", self.log());
            }
            if ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes mosquitto (SIGSTOP): it neither reads nor acknowledges until killed.
    fn freeze(&self) {
        let st = Command::new("kill")
            .arg("-STOP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Kills mosquitto (every connection drops) and starts it again on the same ports.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.mosquitto, &self.conf);
        self.wait_listening();
    }
}

fn device() -> DeviceIdentity {
    DeviceIdentity {
        product_key: PK.into(),
        device_name: DN.into(),
        device_secret: Secret::new(SECRET),
    }
}

fn username() -> String {
    format!("{DN}&{PK}")
}

fn password(mode: SecureMode) -> String {
    sign::sign_in(
        &device(),
        &format!("{PK}.{DN}"),
        mode,
        SignMethod::HmacSha256,
        TS,
    )
    .password
    .expose()
    .to_string()
}

/// Subscribes to `/sys/#` as the watcher; returns a channel of (topic, payload).
async fn watch(
    port: u16,
) -> (
    mpsc::UnboundedReceiver<(String, String)>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = MqttOptions::new("test-watcher", "127.0.0.1", port);
    o.set_credentials(WATCHER.0, WATCHER.1)
        .set_max_packet_size(512 * 1024, 64 * 1024)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let _keep = client.clone();
        client.subscribe("/sys/#", QoS::AtLeastOnce).await.unwrap();
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let payload = String::from_utf8(p.payload.to_vec()).unwrap();
                    let _ = tx.send((p.topic.clone(), payload));
                }
                Ok(_) => {}
                Err(e) => panic!("watcher: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("watcher subscribed")
        .unwrap();
    (rx, task)
}

async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(String, String)>,
    n: usize,
) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => got.push(m),
            _ => break,
        }
    }
    got
}

fn args(host: &str, port: u16, extra: &[&str]) -> SimulateArgs {
    let port = port.to_string();
    let mut argv = vec![
        "simulate-camera",
        "--product-key",
        PK,
        "--device-name",
        DN,
        "--device-secret",
        SECRET,
        "--timestamp",
        "2524608000000",
        "--host",
        host,
        "--port",
        &port,
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap().args
}

async fn run(args: SimulateArgs) -> (Result<SimReport, CameraError>, String) {
    let mut out = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        simulate(args, &mut out, CancellationToken::new()),
    )
    .await
    .expect("simulate finished");
    (r, String::from_utf8(out).unwrap())
}

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/images")
}

/// What the encoder makes of `files` with consecutive pids from `first_pid`.
fn expected(files: &[&str], format: Format, first_pid: u32, chunk: usize) -> Vec<String> {
    files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            let jpeg = std::fs::read(images().join(f)).unwrap();
            wire::encode_payloads(format, &jpeg, first_pid + i as u32, chunk).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_arrive_at_mosquitto_with_aliyun_credentials_topic_and_payloads() {
    let broker = start_broker(&[(&username(), &password(SecureMode::Tcp)), WATCHER], false);
    let (mut rx, watcher) = watch(broker.port).await;
    let files = ["odd.jpg", "qvga.jpg", "tiny.jpg"];
    let (report, out) = run(args(
        "127.0.0.1",
        broker.port,
        &[
            "--no-tls",
            "--first-pid",
            "500",
            "--chunk",
            "1500",
            "--rate",
            "10",
            images().to_str().unwrap(),
        ],
    ))
    .await;
    let report = report.unwrap_or_else(|e| panic!("{e}\n{out}\n{}", broker.log()));
    let want = expected(&files, Format::V2, 500, 1500);
    let got = collect(&mut rx, want.len()).await;
    watcher.abort();
    let topic = wire::device_topic(PK, DN);
    assert!(got.iter().all(|(t, _)| *t == topic), "{got:?}");
    let payloads: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, want);

    assert_eq!(report.pictures.len(), 3);
    assert_eq!(report.messages as usize, want.len());
    assert_eq!((report.resends, report.connects), (0, 1));
    assert!(!report.interrupted);
    let pids: Vec<u32> = report.pictures.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![500, 501, 502]);
    assert!(
        out.contains("sent qvga.jpg pid=501: 6 messages, 8464 B JPEG"),
        "{out}"
    );
    assert!(out.contains("over 1 connection"), "{out}");

    // The client id and user name exactly as Aliyun expects them (securemode=3: plain TCP).
    let log = broker.log();
    let connected = format!(
        "as {PK}.{DN}|securemode=3,signmethod=hmacsha256,timestamp={TS}| (p2, c1, k120, u'{DN}&{PK}')"
    );
    assert!(log.contains(&connected), "{connected}\nnot in\n{log}");
    assert!(!log.contains(SECRET) && !out.contains(SECRET));
    assert!(!out.contains(&password(SecureMode::Tcp)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_device_secret_is_refused_without_retrying() {
    let broker = start_broker(&[(&username(), &password(SecureMode::Tcp)), WATCHER], false);
    let mut a = args("127.0.0.1", broker.port, &["--no-tls", "--first-pid", "1"]);
    a.device_secret = Some(Secret::new("not-the-secret"));
    let started = Instant::now();
    let (r, _out) = run(a).await;
    match r {
        Err(CameraError::Refused(reason)) => assert!(
            reason.contains("NotAuthorized") || reason.contains("BadUserNamePassword"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = broker.log();
    assert_eq!(
        log.matches("Sending CONNACK").count(),
        1,
        "one attempt only:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_signs_in_with_securemode_2() {
    let broker = start_broker(&[(&username(), &password(SecureMode::Tls)), WATCHER], true);
    let (mut rx, watcher) = watch(broker.port).await;
    let tls_port = broker.tls_port.unwrap();
    let ca = broker.ca_file();
    let a = args(
        "localhost",
        tls_port,
        &[
            "--tls",
            "--ca-file",
            ca.to_str().unwrap(),
            "--format",
            "v1",
            "--first-pid",
            "8",
            "--rate",
            "10",
            images().join("odd.jpg").to_str().unwrap(),
        ],
    );
    let (report, out) = run(a).await;
    report.unwrap_or_else(|e| panic!("{e}\n{out}\n{}", broker.log()));
    let want = expected(&["odd.jpg"], Format::V1, 8, 800);
    let got = collect(&mut rx, want.len()).await;
    watcher.abort();
    let payloads: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, want);
    let log = broker.log();
    assert!(
        log.contains(&format!(
            "|securemode=2,signmethod=hmacsha256,timestamp={TS}| (p2, c1, k120, u'{DN}&{PK}')"
        )),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sample_frames_at_rate_8_are_paced() {
    let broker = start_broker(&[(&username(), &password(SecureMode::Tcp)), WATCHER], false);
    let (mut rx, watcher) = watch(broker.port).await;
    let (report, out) = run(args(
        "127.0.0.1",
        broker.port,
        &[
            "--no-tls",
            "--frames",
            "10",
            "--rate",
            "8",
            "--first-pid",
            "9000",
        ],
    ))
    .await;
    let report = report.unwrap_or_else(|e| panic!("{e}\n{out}\n{}", broker.log()));
    let got = collect(&mut rx, report.messages as usize).await;
    watcher.abort();
    assert_eq!(got.len() as u64, report.messages);
    assert_eq!(report.pictures.len(), 10);
    // Publishes are at least 125 ms apart: n messages take at least (n - 1) / 8 s.
    let floor = Duration::from_millis(125 * (report.messages - 1));
    assert!(report.elapsed >= floor, "{:?} < {floor:?}", report.elapsed);
    assert!(
        report.elapsed < floor + Duration::from_secs(10),
        "{:?}",
        report.elapsed
    );
    eprintln!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stalls_and_restarts_mid_upload_gets_the_unacked_chunks_again() {
    let mut broker = start_broker(&[(&username(), &password(SecureMode::Tcp)), WATCHER], false);
    let a = args(
        "127.0.0.1",
        broker.port,
        &[
            "--no-tls",
            "--first-pid",
            "700",
            "--chunk",
            "300",
            "--rate",
            "10",
            images().to_str().unwrap(),
        ],
    );
    // `simulate` borrows its output, so it runs in this task, next to the restart.
    let restart = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Frozen long enough for the window (4 at 10/s) to fill with unacknowledged publishes.
        broker.freeze();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let broker = tokio::task::spawn_blocking(move || {
            broker.restart();
            broker
        })
        .await
        .unwrap();
        let (rx, watcher) = watch(broker.port).await;
        (broker, rx, watcher)
    };
    let ((report, out), (broker, mut rx, watcher)) = tokio::join!(run(a), restart);
    let report = report.unwrap_or_else(|e| panic!("{e}\n{out}\n{}", broker.log()));
    watcher.abort();
    let want = expected(&["odd.jpg", "qvga.jpg", "tiny.jpg"], Format::V2, 700, 300);
    assert_eq!(report.pictures.len(), 3, "{out}");
    assert_eq!(report.connects, 2, "{out}");
    assert_eq!(
        report.messages as usize,
        want.len() + report.resends as usize
    );
    assert!(report.resends >= 1, "{out}");
    assert!(out.contains("resent"), "{out}");
    // Whatever reached the restarted broker is one of the encoder's payloads (resends unchanged),
    // and the last picture, sent after the restart, arrived whole.
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        got.push(m.1);
    }
    assert!(got.iter().all(|p| want.contains(p)), "{got:?}");
    let tiny = expected(&["tiny.jpg"], Format::V2, 702, 300);
    assert!(tiny.iter().all(|p| got.contains(p)), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_mode_repeats_with_new_pids_until_shutdown() {
    let broker = start_broker(&[(&username(), &password(SecureMode::Tcp)), WATCHER], false);
    let a = args(
        "127.0.0.1",
        broker.port,
        &[
            "--no-tls",
            "--loop",
            "--first-pid",
            "4294967294",
            "--chunk",
            "300",
            "--rate",
            "10",
            images().join("tiny.jpg").to_str().unwrap(),
        ],
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let mut out = Vec::new();
    let (report, ()) = tokio::join!(simulate(a, &mut out, shutdown), async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
    });
    let out = String::from_utf8(out).unwrap();
    let report = report.unwrap_or_else(|e| panic!("{e}\n{out}\n{}", broker.log()));
    assert!(report.interrupted, "{out}");
    assert!(report.pictures.len() >= 3, "{out}");
    // The picture id wraps around u32 like the firmware's counter.
    let pids: Vec<u32> = report.pictures.iter().map(|p| p.pid).collect();
    assert_eq!(pids[..3], [4_294_967_294, 4_294_967_295, 0]);
    assert!(out.contains("interrupted with"), "{out}");
    assert!(
        broker.log().contains("disconnected.") || broker.log().contains("closed its connection")
    );
}
