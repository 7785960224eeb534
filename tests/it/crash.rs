//! Crash recovery for real: the daemon runs as a child process against the fake Aliyun endpoint
//! (in this process) and is SIGKILLed at many points of an interleaved multi-device upload —
//! between fsync and settle, between rename and settle, before a batch is settled, and at random
//! times — then restarted on the same state folder. Every image must come out exactly once and
//! byte-identical, with nothing quarantined and no temporary file left.

use crate::support::daemon::receiver_command;
use crate::support::poll;
use receiver::message::DeviceId;
use receiver::sink::encode_component;
use receiver::wire::{self, Format};
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const PK: &str = "a1CrashPK01";
/// The Alink id the original tutorial firmware sends with every message.
const ORIGINAL_FIRMWARE_ID: u32 = 1_189_401_707;

struct Picture {
    device: DeviceId,
    bytes: Vec<u8>,
}

/// Alink payload in the long form, so `items.img.time` is the camera's (strictly increasing per
/// device): v1 pictures are ordered by it.
fn alink_timed(id: u32, value: &str, time: i64) -> String {
    format!(
        "{{\"id\":\"{id}\",\"version\":\"1.0\",\"params\":{{\"img\":{{\"value\":\"{value}\",\"time\":{time}}}}},\"method\":\"thing.event.property.post\"}}"
    )
}

/// Publishes one round of uploads: `devices` cameras (v1 and v2 alternating), `pictures` each,
/// interleaved message by message across cameras.
fn publish_round(fake: &FakeAliyun, round: u32, devices: u32, pictures: u32) -> Vec<Picture> {
    let mut expected = Vec::new();
    let mut queues: Vec<(DeviceId, Vec<String>)> = Vec::new();
    let base_time = 1_800_000_000_000i64 + i64::from(round) * 10_000_000;
    for d in 0..devices {
        let device = DeviceId::new(PK, &format!("r{round}-cam-{d:02}"));
        let format = if d % 2 == 0 { Format::V2 } else { Format::V1 };
        let mut payloads = Vec::new();
        let mut t = base_time + i64::from(d) * 100_000;
        for p in 0..pictures {
            let jpeg =
                receiver_testkit::sample::scene_jpeg(96, 72, round * 100 + d * 10 + p, "CRASH", 70)
                    .expect("sample frame");
            let (values, chunk) = match format {
                Format::V2 => (wire::encode_v2(&jpeg, 1000 + p, 450).expect("v2"), 0),
                Format::V1 => (wire::encode_v1(&jpeg, 800).expect("v1"), 0),
            };
            let _ = chunk;
            // Half of the v1 cameras run the original tutorial firmware: one Alink id for every
            // message, so only the JPEG itself tells pictures apart.
            let original = format == Format::V1 && d % 4 == 1;
            for (seq, v) in values.iter().enumerate() {
                t += 7;
                let id = if original {
                    ORIGINAL_FIRMWARE_ID
                } else {
                    wire::alink_id(1000 + p, seq as u32)
                };
                payloads.push(alink_timed(id, v, t));
            }
            expected.push(Picture {
                device: device.clone(),
                bytes: jpeg,
            });
        }
        queues.push((device, payloads));
    }
    let longest = queues.iter().map(|(_, q)| q.len()).max().unwrap_or(0);
    for i in 0..longest {
        for (device, q) in &queues {
            if let Some(p) = q.get(i) {
                fake.publish_property_post(&device.product_key, &device.device_name, p.as_bytes())
                    .expect("publish");
            }
        }
    }
    expected
}

fn write_config(dir: &Path, fake: &FakeAliyun) -> PathBuf {
    let ca = fake.write_ca(dir).expect("ca file");
    ConfigBuilder::new()
        .aliyun_from_fake(fake, &ca)
        .aliyun("client_id", "crash-test")
        .aliyun("credit", 32)
        .aliyun("reconnect_max", "1s")
        .output_dir(dir.join("out"))
        .state_dir(dir.join("state"))
        .assembly("timeout", "10m")
        // The fake redelivers at once, not after Aliyun's 30 s ACK timeout.
        .assembly("redelivery_grace", "1s")
        .spool("batch_max", 8)
        .spool("batch_delay", "1ms")
        .log("format", "json")
        .write(dir.join("receiver.toml"))
        .expect("write config")
}

fn spawn(config: &Path, failpoint: Option<&str>, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = receiver_command(config);
    cmd.env("RUST_LOG", "receiver=info")
        .env_remove("RECEIVER_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(fp) = failpoint {
        cmd.env("RECEIVER_FAILPOINT", fp);
    }
    cmd.spawn().expect("spawn receiver")
}

/// Waits for the child to die at its failpoint; kills it once the fake has nothing left to
/// deliver (the failpoint was not reached) or after `limit`. True if it died by itself.
async fn wait_exit(child: &mut Child, fake: &FakeAliyun, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut idle_since = None;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        let idle = fake.queued() == 0 && fake.in_flight() == 0;
        let idle_long = match (idle, idle_since) {
            (true, None) => {
                idle_since = Some(Instant::now());
                false
            }
            (true, Some(t)) => t.elapsed() > Duration::from_millis(500),
            (false, _) => {
                idle_since = None;
                false
            }
        };
        if idle_long || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sigkill(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_nothing_and_writes_each_image_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Kept when the test fails (a panic skips the drop at the end), for its log and quarantine.
    let dir = std::mem::ManuallyDrop::new(dir);
    eprintln!("crash test dir: {}", dir.path().display());
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    let config = write_config(dir.path(), &fake);
    let log = dir.path().join("receiver.log");
    let mut expected = Vec::new();
    let mut kills = 0;
    let mut by_failpoint: HashMap<&str, u32> = HashMap::new();
    // Each step publishes a fresh interleaved round, so every failpoint has work to hit.
    let plan = [
        "after_commit:2",
        "after_write:1",
        "before_settle:3",
        "random:40",
        "after_write:2",
        "after_commit:4",
        "random:120",
        "before_settle:1",
        "after_commit:1",
        "after_write:3",
        "random:70",
        "before_settle:2",
        "after_commit:3",
        "random:20",
        "after_write:1",
        "random:250",
    ];
    for (round, step) in plan.iter().enumerate() {
        expected.extend(publish_round(&fake, round as u32, 6, 2));
        let (point, n) = step.split_once(':').expect("plan step");
        if point == "random" {
            let mut child = spawn(&config, None, &log);
            tokio::time::sleep(Duration::from_millis(n.parse().expect("ms"))).await;
            sigkill(&mut child);
            kills += 1;
            *by_failpoint.entry("random").or_default() += 1;
        } else {
            let mut child = spawn(&config, Some(step), &log);
            if wait_exit(&mut child, &fake, Duration::from_secs(20)).await {
                kills += 1;
                *by_failpoint.entry(point).or_default() += 1;
            }
        }
    }
    // A final clean run: everything must drain, then SIGTERM stops it with status 0.
    let starts = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("receiver starting")
            .count()
    };
    let before = starts(&log);
    let mut child = spawn(&config, None, &log);
    let drained = fake.wait_drained(Duration::from_secs(60)).await;
    // SIGTERM only once the daemon is up (its signal handler is installed before it starts).
    poll::until(Duration::from_secs(20), Duration::from_millis(20), || {
        starts(&log) != before
    })
    .await;
    // Pictures rebuilt from the spool wait out the redelivery grace before they are written.
    let out = dir.path().join("out");
    let all_by = Instant::now() + Duration::from_secs(20);
    while files_under(&out).len() < expected.len() && Instant::now() < all_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("wait");
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        drained.is_ok(),
        "queue not drained: {drained:?}\n--- log tail ---\n{}",
        tail(&logs)
    );
    assert!(status.success(), "clean stop expected, got {status}");
    assert!(
        kills >= 14,
        "only {kills} kill points were reached ({by_failpoint:?})"
    );
    for point in ["after_commit", "after_write", "before_settle", "random"] {
        assert!(
            by_failpoint.get(point).copied().unwrap_or(0) > 0,
            "kill point {point} never reached: {by_failpoint:?}"
        );
    }

    // Every image exactly once, byte-identical; nothing quarantined; no temp files.
    let mut found: HashMap<PathBuf, Vec<Vec<u8>>> = HashMap::new();
    for f in files_under(&out) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            !name.starts_with('.'),
            "temporary file left: {}",
            f.display()
        );
        found
            .entry(f.parent().expect("parent").to_path_buf())
            .or_default()
            .push(std::fs::read(&f).expect("read"));
    }
    let mut per_dir: HashMap<PathBuf, Vec<&Picture>> = HashMap::new();
    for p in &expected {
        let d = out
            .join(encode_component(&p.device.product_key))
            .join(encode_component(&p.device.device_name));
        per_dir.entry(d).or_default().push(p);
    }
    for (d, pics) in &per_dir {
        let files = found.get(d).cloned().unwrap_or_default();
        assert_eq!(
            files.len(),
            pics.len(),
            "{}: {} files for {} pictures",
            d.display(),
            files.len(),
            pics.len()
        );
        for p in pics {
            assert!(
                files.contains(&p.bytes),
                "{}: a picture is missing or differs",
                d.display()
            );
        }
    }
    let quarantine = files_under(&dir.path().join("state/quarantine"));
    assert!(
        quarantine.is_empty(),
        "nothing should be quarantined: {quarantine:?}"
    );
    let c = fake.counters();
    assert_eq!(c.rejected, 0);
    println!(
        "crash test: {kills} kill points ({by_failpoint:?}), {} images, {} messages accepted, {} redeliveries",
        expected.len(),
        c.accepted,
        c.redeliveries
    );
    drop(std::mem::ManuallyDrop::into_inner(dir));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
