//! The whole daemon on a full disk: the state folder (spool) and the output folder live on a small
//! tmpfs that is nearly full. The daemon must not accept what it could not persist (it releases
//! it: Aliyun keeps it), must withhold credit while the disk is full, and must resume by itself
//! once space returns, with every image written exactly once and byte-identical.
//!
//! Needs root (mount). Without it the test prints SKIP; `tests/it/spool_disk_full.rs` and the
//! engine's unit tests cover the same paths with injected faults.

use crate::support::poll;
use receiver::config::Config;
use receiver::daemon::{self, Shared};
use receiver::message::DeviceId;
use receiver::sink::Sink;
use receiver::tools::FakeClientConfig as _;
use receiver::wire;
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn fill(path: &Path, keep_free: u64) {
    // Write 64 KiB blocks until ENOSPC, then give back `keep_free` bytes.
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    f.set_len(len.saturating_sub(keep_free))
        .expect("shrink filler");
    f.sync_all().expect("sync filler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_pauses_releases_and_resumes_without_loss() {
    let Some(fs) = Tmpfs::mount("4m") else {
        eprintln!("SKIP full_disk_pauses_releases_and_resumes_without_loss: cannot mount tmpfs (not root?)");
        return;
    };
    let root = fs.0.path();
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    let toml = ConfigBuilder::new()
        .aliyun_placeholder()
        .output_dir(root.join("out"))
        .state_dir(root.join("state"))
        .spool("max_bytes", 67_108_864)
        .spool("segment_bytes", 1_048_576)
        .build();
    let mut config = Config::from_toml(&toml, Path::new("t.toml"), &|_| None).expect("config");
    config.aliyun = fake
        .client_config(tmp.path(), "disk-full")
        .expect("client config");
    let shared = Shared::new(1);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(config, shutdown.clone(), shared.clone()));
    // Let the daemon create its folders and first spool segment, then fill the disk.
    poll::until(Duration::from_secs(20), Duration::from_millis(20), || {
        shared.any_link_attached()
    })
    .await;
    let filler = root.join("filler");
    fill(&filler, 32 << 10);

    // ~600 KB of pictures on 4 cameras: far more than the 32 KiB left.
    let mut expected = Vec::new();
    for c in 0..4u32 {
        let device = DeviceId::new("a1FullPK", &format!("cam-{c}"));
        for p in 0..3u32 {
            let jpeg = receiver_testkit::sample::scene_jpeg(320, 240, c * 10 + p, "FULL", 95)
                .expect("jpeg");
            for payload in
                wire::encode_payloads(wire::Format::V2, &jpeg, 100 + p, 3000).expect("enc")
            {
                fake.publish_property_post(
                    &device.product_key,
                    &device.device_name,
                    payload.as_bytes(),
                )
                .expect("publish");
            }
            expected.push((device.clone(), jpeg));
        }
    }
    // The disk fills: intake pauses, and what could not be persisted is released.
    let m = shared.metrics.clone();
    poll::until(Duration::from_secs(30), Duration::from_millis(20), || {
        m.paused.load(Relaxed) && m.released.load(Relaxed) > 0
    })
    .await;
    assert!(
        m.io_errors.load(Relaxed) > 0,
        "no write failed: was the disk not full?"
    );
    assert!(m.paused.load(Relaxed), "intake did not pause");
    let released = fake.counters().released;
    assert!(released > 0, "nothing was released to Aliyun");
    // While paused nothing is accepted that is not durable: the accepted count stays put.
    let accepted_while_full = fake.counters().accepted;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = fake.counters();
    assert!(
        c.accepted <= accepted_while_full + 64,
        "accepting while the disk is full: {} -> {}",
        accepted_while_full,
        c.accepted
    );

    // Space returns: it resumes by itself and everything arrives.
    std::fs::remove_file(&filler).expect("remove filler");
    fake.wait_drained(Duration::from_secs(90))
        .await
        .expect("drained after space returned");
    poll::until(Duration::from_secs(20), Duration::from_millis(20), || {
        m.images_written() as usize >= expected.len()
    })
    .await;
    assert!(!m.paused.load(Relaxed), "still paused after space returned");
    shutdown.cancel();
    daemon.await.expect("join").expect("daemon");

    let sink = Sink::new(root.join("out"), root.join("state")).expect("sink");
    for (device, jpeg) in &expected {
        let files: Vec<Vec<u8>> = std::fs::read_dir(sink.device_dir(device))
            .expect("device folder")
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect();
        assert_eq!(files.len(), 3, "{device}: one file per picture");
        assert!(
            files.contains(jpeg),
            "{device}: picture missing or different"
        );
    }
    assert_eq!(fake.counters().rejected, 0);
    println!(
        "disk full: {} deliveries released while full, {} write errors, all {} images written once",
        released,
        m.io_errors.load(Relaxed),
        expected.len()
    );
}
