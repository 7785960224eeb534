//! `receiver bench` at a tiny scale: it runs every part (both storage modes, a paced latency run,
//! the seed baseline and its transport floor when `npm ci --prefix bench/seed` was run) and
//! reports figures. Only the presence of figures is checked, never their values: timings belong
//! in BENCHMARKS.md, not in assertions.

use std::process::Command;

#[test]
fn bench_quick_produces_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--quick", "--runs", "1", "--connections", "1,2"])
        .args(["--devices", "1,3", "--messages", "150"])
        .args(["--latency-rate", "200", "--latency-seconds", "1"])
        .args(["--latency-devices", "3", "--baseline-messages", "120"])
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run receiver bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("== Summary"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    // 2 device counts x 2 modes x 2 connection counts, then 2 latency runs.
    assert_eq!(scenarios.len(), 10, "{report:#}");
    for s in scenarios {
        let runs = s["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{s:#}");
        let r = &runs[0];
        let n = |k: &str| r[k].as_f64().unwrap_or(-1.0);
        assert!(n("messages") > 0.0, "{s:#}");
        assert!(n("seconds") > 0.0, "{s:#}");
        assert!(n("cpu_seconds") >= 0.0, "{s:#}");
        assert!(n("peak_rss") > 0.0, "{s:#}");
        assert!(n("images_written") > 0.0, "{s:#}");
        assert!(n("latency_count") > 0.0, "{s:#}");
        assert!(r["latency_p99_ms"].as_f64().is_some(), "{s:#}");
    }
    // The JPEG checks' CPU per picture: QVGA and VGA, three figures each.
    let jpeg = report["jpeg_check"].as_array().expect("jpeg_check");
    assert_eq!(jpeg.len(), 2, "{report:#}");
    for row in jpeg {
        for k in ["exact_us", "structure_us", "decode_us"] {
            assert!(row[k].as_f64().unwrap_or(0.0) > 0.0, "{row:#}");
        }
    }
    assert!(stdout.contains("jpeg check  QVGA"), "{stdout}");
    let baseline = &report["baseline"];
    if baseline["skipped"].is_null() {
        assert!(!baseline["seed"].as_array().expect("seed").is_empty());
        assert!(!baseline["receiver"]
            .as_array()
            .expect("receiver")
            .is_empty());
        assert!(stdout.contains("ratio receiver/seed"), "{stdout}");
        // The transport floor: this binary's `bench-floor`, a run line and a summary row.
        let floor = baseline["floor"].as_array().expect("floor");
        assert!(!floor.is_empty(), "{baseline:#}");
        assert!(floor[0][0].as_f64().unwrap_or(0.0) > 0.0, "{baseline:#}");
        assert!(stdout.contains("transport floor      run 1:"), "{stdout}");
        assert!(stdout.contains("seed/floor"), "{stdout}");
    } else {
        assert!(stdout.contains("baseline SKIPPED"), "{stdout}");
    }
}

/// `--outputs fs,s3`: the bench starts its own SeaweedFS on loopback and measures both outputs
/// on the same stream, with the store's CPU and the s3/fs comparison.
#[test]
fn bench_s3_mode_produces_figures_beside_the_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench",
            "--quick",
            "--runs",
            "1",
            "--parts",
            "throughput,latency",
        ])
        .args([
            "--modes",
            "durable",
            "--outputs",
            "fs,s3",
            "--connections",
            "1",
        ])
        .args(["--devices", "3", "--messages", "150"])
        .args(["--latency-rate", "200", "--latency-seconds", "1"])
        .args(["--latency-devices", "3"])
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run receiver bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    // fs and s3, throughput then latency.
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "durable/1c/3d",
            "durable/1c/3d/s3",
            "durable/1c/3d@200/s",
            "durable/1c/3d@200/s/s3"
        ],
        "{report:#}"
    );
    for s in scenarios {
        let r = &s["runs"][0];
        let n = |k: &str| r[k].as_f64().unwrap_or(-1.0);
        assert_eq!(n("images_written"), n("images"), "{s:#}");
        assert_eq!(n("quarantined"), 0.0, "{s:#}");
        assert!(n("latency_count") > 0.0, "{s:#}");
        let s3 = s["output"] == "s3";
        assert_eq!(r["store_cpu_seconds"].as_f64().is_some(), s3, "{s:#}");
    }
    assert!(stdout.contains("== Object store"), "{stdout}");
    assert!(stdout.contains("s3/fs msg/s"), "{stdout}");
}

/// `--instances 1,2`: the bench starts one `redis-server` on loopback and runs that many
/// receivers with `[cluster]` on one consumer group, beside the single-instance durable run;
/// every picture is written exactly once across the instances, and the Redis figures come out.
#[test]
fn bench_cluster_mode_produces_figures_and_writes_each_picture_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--quick", "--runs", "1"])
        .args(["--parts", "throughput,latency", "--modes", "durable"])
        .args(["--connections", "1", "--instances", "1,2"])
        .args(["--devices", "3", "--messages", "150"])
        .args(["--latency-rate", "200", "--latency-seconds", "1"])
        .args(["--latency-devices", "3"])
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run receiver bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "durable/1c/3d",
            "cluster1i/1c/3d",
            "cluster2i/1c/3d",
            "durable/1c/3d@200/s",
            "cluster1i/1c/3d@200/s",
            "cluster2i/1c/3d@200/s"
        ],
        "{report:#}"
    );
    for s in scenarios {
        let r = &s["runs"][0];
        let n = |k: &str| r[k].as_f64().unwrap_or(-1.0);
        assert_eq!(n("images_written"), n("images"), "{s:#}");
        assert_eq!(n("quarantined"), 0.0, "{s:#}");
        assert!(n("latency_count") > 0.0, "{s:#}");
        let Some(instances) = s["instances"].as_u64() else {
            assert!(r["redis_round_trips"].is_null(), "{s:#}");
            continue;
        };
        let per = |k: &str| -> Vec<f64> {
            r[k].as_array()
                .expect(k)
                .iter()
                .map(|v| v.as_f64().unwrap_or(-1.0))
                .collect()
        };
        // Every instance measured; together they wrote each picture once and accepted every
        // delivery the fake saw accepted.
        assert_eq!(per("instance_cpu_seconds").len() as u64, instances, "{s:#}");
        let written = per("instance_images_written");
        assert_eq!(written.len() as u64, instances, "{s:#}");
        assert_eq!(written.iter().sum::<f64>(), n("images"), "{s:#}");
        assert!(
            per("instance_messages").iter().sum::<f64>() >= n("messages"),
            "{s:#}"
        );
        assert!(n("redis_round_trips") > 0.0, "{s:#}");
        assert!(n("redis_commands") >= n("redis_round_trips"), "{s:#}");
        assert!(n("redis_cpu_seconds") >= 0.0, "{s:#}");
    }
    assert!(stdout.contains("== Cluster mode"), "{stdout}");
    assert!(stdout.contains("round trips/msg"), "{stdout}");
    assert!(stdout.contains("vs durable"), "{stdout}");
}
