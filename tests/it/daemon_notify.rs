//! The real binary under a systemd-like supervisor: `NOTIFY_SOCKET` set, it sends READY=1 once
//! its receiver link is attached to the (fake) Aliyun endpoint, WATCHDOG=1 while healthy,
//! STOPPING=1 on SIGTERM, and exits 0. Also scrapes `/metrics` and `/healthz` of the running
//! daemon.

use crate::support::daemon::receiver_command;
use crate::support::http::{free_port, get_blocking};
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_stopping_and_metrics_from_the_real_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    let ca = fake.write_ca(dir.path()).expect("ca file");
    let port = free_port();
    let config_path = ConfigBuilder::new()
        .aliyun_from_fake(&fake, &ca)
        .output_dir(dir.path().join("out"))
        .state_dir(dir.path().join("state"))
        .set("metrics", "listen", format!("127.0.0.1:{port}"))
        .write(dir.path().join("receiver.toml"))
        .expect("config");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");

    let mut child = receiver_command(&config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut messages = Vec::new();
    let recv_until = |want: &str, limit: Duration, messages: &mut Vec<String>| {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = m.lines().any(|l| l == want);
                messages.push(m);
                if hit {
                    return true;
                }
            }
        }
        false
    };
    let ready = recv_until("READY=1", Duration::from_secs(20), &mut messages);
    assert!(ready, "no READY=1; got {messages:?}");
    assert!(fake.live_connections() >= 1, "READY before the link was up");
    let watchdog = recv_until("WATCHDOG=1", Duration::from_secs(5), &mut messages);
    assert!(watchdog, "no WATCHDOG=1; got {messages:?}");

    // A delivery shows up in the metrics; health is OK with the link attached.
    fake.publish_property_post("a1PK", "cam-01", br#"{"id":"1","params":{"temp":1}}"#)
        .expect("publish");
    fake.wait_accepted(1, Duration::from_secs(10))
        .await
        .expect("accepted");
    let metrics = get_blocking(port, "/metrics");
    assert!(
        metrics.contains("receiver_skipped_total{reason=\"no_img\"} 1"),
        "{metrics}"
    );
    let health = get_blocking(port, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let stopping = recv_until("STOPPING=1", Duration::from_secs(10), &mut messages);
    let status = child.wait().expect("wait");
    assert!(stopping, "no STOPPING=1; got {messages:?}");
    assert!(status.success(), "exit status {status}");
}
