//! End-to-end proof without hardware: what the firmware's portable C core emits (built on the
//! host as `fw_emit`) goes through the fake Aliyun endpoint into the real daemon and comes out as
//! the identical JPEG, for v2 and v1, interleaved on two cameras of one product.

use crate::support::poll;
use receiver::config::Config;
use receiver::daemon::{self, Shared};
use receiver::message::DeviceId;
use receiver::sink::Sink;
use receiver::tools::FakeClientConfig as _;
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const PK: &str = "a1FirmwarePK";

fn fw_emit() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("make")
        .args(["-s", "-C"])
        .arg(root.join("firmware-esp32/host_test"))
        .arg("emit")
        .status()
        .expect("run make (apt-get install make gcc)");
    assert!(status.success(), "building fw_emit failed");
    root.join("firmware-esp32/host_test/build/fw_emit")
}

fn emit(tool: &Path, format: &str, pid: u32, chunk: usize, dn: &str, image: &Path) -> Vec<String> {
    let out = Command::new(tool)
        .args(["--format", format, "--pid", &pid.to_string()])
        .args(["--chunk", &chunk.to_string(), "--pk", PK, "--dn", dn])
        .arg(image)
        .output()
        .expect("run fw_emit");
    assert!(
        out.status.success(),
        "fw_emit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_core_output_becomes_identical_jpegs() {
    let tool = fw_emit();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/images");
    let dir = tempfile::tempdir().expect("tempdir");
    let qvga = root.join("qvga.jpg");
    let odd = root.join("odd.jpg");
    let v2 = emit(&tool, "v2", 4242, 3000, "cam-v2", &qvga);
    let v1 = emit(&tool, "v1", 17, 800, "cam-v1", &odd);
    assert!(v2.len() >= 3 && v1.len() >= 3);

    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    let toml = ConfigBuilder::new()
        .aliyun_placeholder()
        .output_dir(dir.path().join("out"))
        .state_dir(dir.path().join("state"))
        .build();
    let mut config = Config::from_toml(&toml, Path::new("test.toml"), &|_| None).expect("config");
    config.aliyun = fake
        .client_config(dir.path(), "fw-replay")
        .expect("client config");
    let shared = Shared::new(1);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(config, shutdown.clone(), shared.clone()));

    // Interleave the two cameras message by message, v1 with 2 ms between its chunks so the
    // platform times (which order v1) are distinct.
    for i in 0..v2.len().max(v1.len()) {
        if let Some(p) = v2.get(i) {
            fake.publish_property_post(PK, "cam-v2", p.as_bytes())
                .expect("publish");
        }
        if let Some(p) = v1.get(i) {
            fake.publish_property_post(PK, "cam-v1", p.as_bytes())
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    fake.wait_drained(Duration::from_secs(30))
        .await
        .expect("drained");
    poll::until(Duration::from_secs(10), Duration::from_millis(20), || {
        shared.metrics.images_written() >= 2
    })
    .await;
    shutdown.cancel();
    daemon.await.expect("join").expect("daemon");

    let sink = Sink::new(dir.path().join("out"), dir.path().join("state")).expect("sink");
    for (dn, image) in [("cam-v2", &qvga), ("cam-v1", &odd)] {
        let folder = sink.device_dir(&DeviceId::new(PK, dn));
        let files: Vec<Vec<u8>> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
            .collect();
        assert_eq!(
            files,
            vec![std::fs::read(image).expect("image")],
            "{dn}: exactly one file, identical to {}",
            image.display()
        );
    }
}
