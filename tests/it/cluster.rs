//! Cluster mode for real: three daemons (the binary, as child processes) share one consumer
//! group of the fake Aliyun endpoint and one `redis-server`, and write to one output folder.
//! The fake keeps one queue for every link of every instance (with reordering on, any link may
//! get any message next) and duplicates messages; cameras are interleaved, v1 and v2. Every
//! picture must come out exactly once and byte-identical. With the `failpoints` feature, one
//! instance is SIGKILLed at the kill points of the shared-store path while the other two go on.

use crate::support::daemon::receiver_command;
use crate::support::poll;
use crate::support::redis_server::RedisServer;
use receiver::message::DeviceId;
use receiver::sink::encode_component;
use receiver::wire::{self, Format};
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const PK: &str = "a1ClusterPK";

struct Picture {
    device: DeviceId,
    bytes: Vec<u8>,
}

/// Alink payload in the long form, so `items.img.time` is the camera's.
fn alink_timed(id: u32, value: &str, time: i64) -> String {
    format!(
        "{{\"id\":\"{id}\",\"version\":\"1.0\",\"params\":{{\"img\":{{\"value\":\"{value}\",\"time\":{time}}}}},\"method\":\"thing.event.property.post\"}}"
    )
}

/// Publishes `devices` cameras (v2 and v1 alternating) with `pictures` each, interleaved
/// message by message.
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
            let jpeg = receiver_testkit::sample::scene_jpeg(
                96,
                72,
                round * 100 + d * 10 + p,
                "CLUSTER",
                70,
            )
            .expect("sample frame");
            let values = match format {
                Format::V2 => wire::encode_v2(&jpeg, 1000 + p, 450).expect("v2"),
                Format::V1 => wire::encode_v1(&jpeg, 800).expect("v1"),
            };
            for (seq, v) in values.iter().enumerate() {
                t += 7;
                payloads.push(alink_timed(wire::alink_id(1000 + p, seq as u32), v, t));
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

/// Instance `i`'s config: its own state folder and client id, the shared output and Redis;
/// `instance_id = "rx-<i>"` when `named`, else the default (host name and process id: a new
/// one each start).
fn instance_config(
    dir: &Path,
    fake: &FakeAliyun,
    redis_url: &str,
    i: usize,
    named: bool,
) -> PathBuf {
    // Written once: rewriting it while another instance starts would race with its read.
    let ca = dir.join("fake-aliyun-ca.pem");
    if !ca.exists() {
        fake.write_ca(dir).expect("ca file");
    }
    ConfigBuilder::new()
        .aliyun_from_fake(fake, &ca)
        .aliyun("client_id", format!("rx-{i}"))
        .aliyun("connections", 3)
        .aliyun("credit", 8)
        .aliyun("reconnect_max", "1s")
        .output_dir(dir.join("out"))
        .state_dir(dir.join(format!("state-{i}")))
        .assembly("timeout", "10m")
        // The fake redelivers at once, not after Aliyun's 30 s ACK timeout.
        .assembly("redelivery_grace", "1s")
        .spool("batch_max", 8)
        .spool("batch_delay", "1ms")
        .log("format", "json")
        .set("cluster", "redis_url", redis_url)
        .set(
            "cluster",
            "instance_id",
            if named {
                format!("rx-{i}")
            } else {
                String::new()
            },
        )
        .set("cluster", "lease", "2s")
        .set("cluster", "timeout", "1s")
        .write(dir.join(format!("receiver-{i}.toml")))
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
        .env_remove("RECEIVER_REDIS_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(fp) = failpoint {
        cmd.env("RECEIVER_FAILPOINT", fp);
    }
    cmd.spawn().expect("spawn receiver")
}

fn stop(child: &mut Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
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

/// Waits until the output holds `n` files (or `limit` passes).
async fn wait_files(out: &Path, n: usize, limit: Duration) {
    poll::until(limit, Duration::from_millis(50), || {
        files_under(out).len() >= n
    })
    .await;
}

/// Every picture exactly once and byte-identical; no temporary file; nothing quarantined.
fn verify(dir: &Path, expected: &[Picture], instances: usize) {
    let out = dir.join("out");
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
    for p in expected {
        let d = out
            .join(encode_component(&p.device.product_key))
            .join(encode_component(&p.device.device_name));
        per_dir.entry(d).or_default().push(p);
    }
    assert_eq!(found.len(), per_dir.len(), "camera folders");
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
    for i in 0..instances {
        let q = files_under(&dir.join(format!("state-{i}/quarantine")));
        assert!(q.is_empty(), "instance {i} quarantined {q:?}");
    }
}

/// What the shared store still holds (for a failure's message).
fn store_dump(redis: &RedisServer) -> String {
    let mut c = redis.connection();
    let mut out = String::new();
    for (what, cmd) in [
        (
            "open",
            redis::cmd("ZRANGE")
                .arg("{receiver}:open")
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
        ),
        (
            "ready",
            redis::cmd("ZRANGE")
                .arg("{receiver}:ready")
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
        ),
        (
            "claimed",
            redis::cmd("HGETALL").arg("{receiver}:claimed").clone(),
        ),
        (
            "touch",
            redis::cmd("HGETALL").arg("{receiver}:touch").clone(),
        ),
        ("keys", redis::cmd("KEYS").arg("{receiver}:[cpv]*").clone()),
    ] {
        let v: Vec<String> = cmd.query(&mut c).unwrap_or_default();
        out.push_str(&format!("{what}: {v:?}\n"));
    }
    out
}

/// Images each instance's log says it wrote (the engine's lines carry its `instance_id`).
fn written_by(dir: &Path, instances: usize) -> Vec<usize> {
    (0..instances)
        .map(|i| {
            std::fs::read_to_string(dir.join(format!("rx-{i}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    l.contains("\"image written\"")
                        && l.contains(&format!("\"instance_id\":\"rx-{i}\""))
                        && l.contains("\"already_present\":false")
                })
                .count()
        })
        .collect()
}

fn log_tail(dir: &Path, instances: usize) -> String {
    (0..instances)
        .map(|i| {
            let s = std::fs::read_to_string(dir.join(format!("rx-{i}.log"))).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            format!(
                "--- rx-{i} ---\n{}",
                lines[lines.len().saturating_sub(15)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_write_every_picture_exactly_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    fake.set_reorder(true);
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| instance_config(dir.path(), &fake, &redis.url(), i, true))
        .collect();
    let mut children: Vec<Child> = (0..3)
        .map(|i| spawn(&configs[i], None, &dir.path().join(format!("rx-{i}.log"))))
        .collect();
    // Once all three are connected, the deliveries spread over their nine links.
    let up = poll::until(Duration::from_secs(20), Duration::from_millis(20), || {
        (0..3).all(|i| {
            std::fs::read_to_string(dir.path().join(format!("rx-{i}.log")))
                .unwrap_or_default()
                .contains("first receiver link attached")
        })
    })
    .await;
    assert!(up, "{}", log_tail(dir.path(), 3));
    let mut expected = publish_round(&fake, 0, 8, 3);
    // Copies with the same messageId, which another instance may get.
    fake.duplicate_next(60);
    expected.extend(publish_round(&fake, 1, 8, 2));
    let drained = fake.wait_drained(Duration::from_secs(90)).await;
    wait_files(
        &dir.path().join("out"),
        expected.len(),
        Duration::from_secs(30),
    )
    .await;
    let dump = store_dump(&redis);
    let by = written_by(dir.path(), 3);
    for c in &mut children {
        stop(c, libc::SIGTERM);
    }
    assert!(drained.is_ok(), "{drained:?}\n{}", log_tail(dir.path(), 3));
    if files_under(&dir.path().join("out")).len() != expected.len() {
        let keep = dir.keep();
        panic!("pictures missing; dir {}\n{dump}", keep.display());
    }
    verify(dir.path(), &expected, 3);
    assert_eq!(by.iter().sum::<usize>(), expected.len(), "{by:?}");
    assert!(
        by.iter().filter(|n| **n > 0).count() >= 2,
        "the pictures should be spread over the instances: {by:?}"
    );
    let c = fake.counters();
    assert_eq!(c.rejected, 0);
    assert_eq!(c.duplicates_injected, 60, "{c:?}");
    // Nothing is left in Redis but dedup and done markers (with TTLs) and bookkeeping.
    let mut conn = redis.connection();
    let open: Vec<String> = redis::cmd("ZRANGE")
        .arg("{receiver}:open")
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("zrange");
    assert!(open.is_empty(), "still open: {open:?}");
    println!(
        "cluster: {} pictures, written per instance {by:?}, {} accepted ({} duplicates injected)",
        expected.len(),
        c.accepted,
        c.duplicates_injected
    );
}

/// One instance is SIGKILLed at each kill point of the shared-store path, and at random times,
/// while the other two go on; then Redis itself is SIGKILLed and restarted from its AOF, and
/// SIGSTOPped past the client time-out.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_instance_or_of_redis_loses_nothing_and_writes_each_picture_once() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = std::mem::ManuallyDrop::new(dir);
    eprintln!("cluster crash test dir: {}", dir.path().display());
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    fake.set_reorder(true);
    // The victim (0) gets a new instance id each start, so that what it claimed before a kill
    // is taken over, not renewed by its next start.
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| instance_config(dir.path(), &fake, &redis.url(), i, i > 0))
        .collect();
    let log = |i: usize| dir.path().join(format!("rx-{i}.log"));
    let mut steady: Vec<Child> = (1..3).map(|i| spawn(&configs[i], None, &log(i))).collect();
    let mut expected = Vec::new();
    let mut kills: HashMap<&str, u32> = HashMap::new();
    let plan = [
        "cluster_after_store:2",
        "cluster_after_claim:1",
        "cluster_after_write:1",
        "before_settle:2",
        "random:150",
        "cluster_after_claim:2",
        "cluster_after_write:2",
        "cluster_after_store:1",
        "random:400",
    ];
    let ready = |i: usize| {
        std::fs::read_to_string(log(i))
            .unwrap_or_default()
            .matches("first receiver link attached")
            .count()
    };
    for (round, step) in plan.iter().enumerate() {
        let (point, n) = step.split_once(':').expect("plan step");
        let fp = (point != "random").then_some(*step);
        // The victim connects first, so that it gets its share of the round.
        let before = ready(0);
        let mut child = spawn(&configs[0], fp, &log(0));
        poll::until(Duration::from_secs(15), Duration::from_millis(10), || {
            ready(0) > before || matches!(child.try_wait(), Ok(Some(_)))
        })
        .await;
        expected.extend(publish_round(&fake, round as u32, 4, 2));
        if point == "random" {
            tokio::time::sleep(Duration::from_millis(n.parse().expect("ms"))).await;
            stop(&mut child, libc::SIGKILL);
            *kills.entry("random").or_default() += 1;
        } else {
            let died = poll::until(Duration::from_secs(15), Duration::from_millis(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            })
            .await;
            if died {
                *kills.entry(point).or_default() += 1;
            } else {
                stop(&mut child, libc::SIGKILL);
            }
        }
    }
    // Redis SIGKILLed mid-run and restarted from its AOF: nothing accepted is lost.
    expected.extend(publish_round(&fake, 20, 4, 2));
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    // Redis paused past the client time-out (1 s): intake pauses, then resumes by itself.
    expected.extend(publish_round(&fake, 21, 4, 2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.pause(true);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    redis.pause(false);
    let drained = fake.wait_drained(Duration::from_secs(120)).await;
    // Claims of the killed instance are taken over once their 2 s lease runs out.
    wait_files(
        &dir.path().join("out"),
        expected.len(),
        Duration::from_secs(30),
    )
    .await;
    for c in &mut steady {
        stop(c, libc::SIGTERM);
    }
    assert!(drained.is_ok(), "{drained:?}\n{}", log_tail(dir.path(), 3));
    for point in [
        "cluster_after_store",
        "cluster_after_claim",
        "cluster_after_write",
        "before_settle",
    ] {
        assert!(
            kills.get(point).copied().unwrap_or(0) > 0,
            "kill point {point} never reached: {kills:?}"
        );
    }
    verify(dir.path(), &expected, 3);
    let mut conn = redis.connection();
    let open: Vec<String> = redis::cmd("ZRANGE")
        .arg("{receiver}:open")
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("zrange");
    assert!(open.is_empty(), "pictures stuck open: {open:?}");
    let logs: String = (0..3)
        .map(|i| std::fs::read_to_string(log(i)).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("took over a picture"),
        "no claim was taken over"
    );
    assert!(
        logs.contains("shared store failed") && logs.contains("shared store answers again"),
        "the Redis outage should pause and resume intake"
    );
    println!(
        "cluster crash test: kills {kills:?}, {} pictures, {} accepted, {} redeliveries",
        expected.len(),
        fake.counters().accepted,
        fake.counters().redeliveries
    );
    drop(std::mem::ManuallyDrop::into_inner(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_pauses_intake_healthz_says_why_and_it_resumes_by_itself() {
    use crate::support::http::{free_port, get_blocking};
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    let port = free_port();
    let config = instance_config(dir.path(), &fake, &redis.url(), 0, true);
    // The same config plus the listener.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("{text}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("config");
    let log = dir.path().join("rx-0.log");
    let mut child = spawn(&config, None, &log);
    let healthz = || get_blocking(port, "/healthz");
    let up = poll::until(Duration::from_secs(20), Duration::from_millis(50), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && healthz().contains(" 200 ")
    })
    .await;
    assert!(up, "{}", log_tail(dir.path(), 1));
    let mut expected = publish_round(&fake, 0, 2, 1);
    fake.wait_drained(Duration::from_secs(30))
        .await
        .expect("drained");
    // Redis gone: the next sweep (within a second) notices; /healthz says why.
    redis.kill();
    let down = poll::until(Duration::from_secs(15), Duration::from_millis(100), || {
        let h = healthz();
        h.contains(" 503 ") && h.contains("cluster_store_down")
    })
    .await;
    assert!(down, "{}\n{}", healthz(), log_tail(dir.path(), 1));
    let accepted_before = fake.counters().accepted;
    expected.extend(publish_round(&fake, 1, 2, 1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted_while_down = fake.counters().accepted;
    assert_eq!(
        accepted_while_down, accepted_before,
        "nothing accepted while down"
    );
    // Back from its AOF: intake resumes by itself and the held-back round is written.
    redis.restart();
    let drained = fake.wait_drained(Duration::from_secs(30)).await;
    wait_files(
        &dir.path().join("out"),
        expected.len(),
        Duration::from_secs(20),
    )
    .await;
    let h = healthz();
    let metrics = get_blocking(port, "/metrics");
    stop(&mut child, libc::SIGTERM);
    assert!(drained.is_ok(), "{drained:?}\n{}", log_tail(dir.path(), 1));
    assert!(fake.counters().accepted > accepted_while_down);
    assert!(h.contains(" 200 "), "{h}");
    verify(dir.path(), &expected, 1);
    for want in [
        "receiver_cluster_info{instance_id=\"rx-0\"} 1",
        "receiver_cluster_store_down 0",
    ] {
        assert!(metrics.contains(want), "{want}\n{metrics}");
    }
    assert!(
        !metrics.contains("receiver_cluster_store_errors_total 0"),
        "{metrics}"
    );
}

#[test]
fn check_config_probe_cluster_warns_when_accepted_chunks_can_be_lost() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .aliyun_placeholder()
        .output_dir(dir.path().join("out"))
        .state_dir(dir.path().join("state"))
        .set("cluster", "redis_url", redis.url())
        .write(dir.path().join("receiver.toml"))
        .expect("config");
    let probe = || {
        let out = receiver_command(&config)
            .args(["check-config", "--probe-cluster"])
            .env_remove("RECEIVER_REDIS_PASSWORD")
            .output()
            .expect("run check-config");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let ok = probe();
    assert!(
        ok.contains("--probe-cluster: OK: accepted chunks survive a Redis restart"),
        "{ok}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query(&mut redis.connection())
        .expect("config set");
    let warned = probe();
    assert!(
        warned.contains("WARNING: accepted chunks can be lost: appendfsync is \"everysec\""),
        "{warned}"
    );
}
