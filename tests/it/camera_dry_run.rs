//! `simulate --dry-run`: the printed payloads are the golden vectors, the secret never appears, and
//! bad arguments fail with an error naming the flag.

use std::path::{Path, PathBuf};

use clap::Parser;
use receiver_testkit::camera::{simulate, CameraError, SimulateArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn args(extra: &[&str]) -> SimulateArgs {
    let mut argv = vec![
        "simulate-camera",
        "--product-key",
        "a1GoldenPK0",
        "--device-name",
        "cam-golden-01",
    ];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap().args
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

async fn dry_run(
    extra: &[&str],
) -> Result<(String, receiver_testkit::camera::SimReport), CameraError> {
    let mut out = Vec::new();
    let report = simulate(args(extra), &mut out, CancellationToken::new()).await?;
    Ok((String::from_utf8(out).unwrap(), report))
}

fn payload_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.starts_with('#')).collect()
}

#[tokio::test]
async fn dry_run_of_tiny_pid7_chunk48_prints_the_golden_vector() {
    let tiny = vectors().join("images/tiny.jpg");
    let (out, report) = dry_run(&[
        "--dry-run",
        "--first-pid",
        "7",
        "--chunk",
        "48",
        tiny.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let golden = std::fs::read_to_string(vectors().join("v2/tiny-p7-c48.txt")).unwrap();
    assert_eq!(payload_lines(&out), golden.lines().collect::<Vec<_>>());
    assert_eq!(report.messages, 16);
    assert!(report.dry_run);
    assert!(out.contains(
        "# PUBLISH topic=/sys/a1GoldenPK0/cam-golden-01/thing/event/property/post qos=1"
    ));
}

#[tokio::test]
async fn dry_run_matches_every_golden_vector_of_the_index() {
    let index = std::fs::read_to_string(vectors().join("index.tsv")).unwrap();
    let mut n = 0;
    for line in index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let c: Vec<&str> = line.split('\t').collect();
        let image = vectors().join("images").join(c[1]);
        let (out, _) = dry_run(&[
            "--dry-run",
            "--format",
            c[0],
            "--first-pid",
            c[4],
            "--chunk",
            c[5],
            image.to_str().unwrap(),
        ])
        .await
        .unwrap();
        let golden = std::fs::read_to_string(vectors().join(c[6])).unwrap();
        assert_eq!(
            payload_lines(&out),
            golden.lines().collect::<Vec<_>>(),
            "{line}"
        );
        n += 1;
    }
    assert!(n >= 8);
}

#[tokio::test]
async fn a_folder_is_sent_in_name_order_with_consecutive_pids() {
    let (out, report) = dry_run(&[
        "--dry-run",
        "--first-pid",
        "41",
        vectors().join("images").to_str().unwrap(),
    ])
    .await
    .unwrap();
    let names: Vec<(&str, u32)> = report
        .pictures
        .iter()
        .map(|p| (p.name.as_str(), p.pid))
        .collect();
    assert_eq!(
        names,
        vec![("odd.jpg", 41), ("qvga.jpg", 42), ("tiny.jpg", 43)]
    );
    assert_eq!(payload_lines(&out).len() as u64, report.messages);
}

#[tokio::test]
async fn dry_run_never_prints_the_secret_and_shows_the_sign_in() {
    let secret = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq";
    let a = args(&[
        "--dry-run",
        "--device-secret",
        secret,
        "--client-id",
        "SN1928339",
        "--timestamp",
        "1539421321846",
        "--frames",
        "2",
    ]);
    assert!(!format!("{a:?}").contains(secret));
    let mut out = Vec::new();
    let report = simulate(a, &mut out, CancellationToken::new())
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains(secret));
    // The password of these parameters must not leak either.
    let password = receiver_testkit::camera::sign::sign_in(
        &receiver_testkit::camera::sign::DeviceIdentity {
            product_key: "a1GoldenPK0".into(),
            device_name: "cam-golden-01".into(),
            device_secret: receiver::config::Secret::new(secret),
        },
        "SN1928339",
        receiver_testkit::camera::sign::SecureMode::Tls,
        receiver::config::SignMethod::HmacSha256,
        1_539_421_321_846,
    )
    .password;
    assert!(!out.contains(password.expose()));
    assert!(out.contains("password=<redacted"), "{out}");
    assert!(out.contains(
        "# CONNECT mqtts://a1GoldenPK0.iot-as-mqtt.cn-shanghai.aliyuncs.com:8883 clientId=SN1928339|securemode=2,signmethod=hmacsha256,timestamp=1539421321846| username=cam-golden-01&a1GoldenPK0"
    ), "{out}");
    // Two generated sample frames, each a valid set of v2 chunks.
    assert_eq!(report.pictures.len(), 2);
    assert_eq!(report.pictures[0].name, "sample-0001.jpg");
}

#[tokio::test]
async fn plain_tcp_uses_securemode_3_and_port_1883() {
    let (out, _) = dry_run(&[
        "--dry-run",
        "--no-tls",
        "--host",
        "iot-06z00abc.mqtt.iothub.aliyuncs.com",
    ])
    .await
    .unwrap();
    assert!(out.contains("# CONNECT mqtt://iot-06z00abc.mqtt.iothub.aliyuncs.com:1883 clientId=a1GoldenPK0.cam-golden-01|securemode=3,"), "{out}");
}

async fn flag_error(extra: &[&str]) -> (&'static str, String) {
    match dry_run(extra).await {
        Err(CameraError::InvalidArg { flag, reason }) => (flag, reason),
        other => panic!("{extra:?}: expected an argument error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_arguments_name_their_flag() {
    let tiny = vectors().join("images/tiny.jpg");
    let tiny = tiny.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--dry-run", "--keepalive", "29"], "--keepalive"),
        (&["--dry-run", "--keepalive", "1201"], "--keepalive"),
        (&["--dry-run", "--chunk", "100", tiny], "--chunk"),
        (&["--dry-run", "--chunk", "0", tiny], "--chunk"),
        (&["--dry-run", "--chunk", "9000", tiny], "--chunk"),
        (
            &["--dry-run", "--format", "v1", "--chunk", "801", tiny],
            "--chunk",
        ),
        (&["--dry-run", "--window", "0"], "--window"),
        (&["--dry-run", "--window", "101"], "--window"),
        (&["--dry-run", "--rate", "11"], "--rate"),
        (&["--dry-run", "--rate", "0"], "--rate"),
        (&["--dry-run", "--qos", "0", "--rate", "31"], "--rate"),
        (&["--dry-run", "--client-id", "a|b"], "--client-id"),
        (&["--dry-run", "--frames", "0"], "--frames"),
        (
            &["--no-tls", "--ca-file", "x.pem", "--dry-run"],
            "--ca-file",
        ),
        (&[tiny], "--device-secret"),
    ];
    for (extra, flag) in cases {
        let (got, reason) = flag_error(extra).await;
        assert_eq!(got, *flag, "{extra:?}: {reason}");
    }
    // 737 B in 3-byte pieces is 246 chunks: allowed.
    assert!(dry_run(&["--dry-run", "--chunk", "3", tiny]).await.is_ok());
    let (_, reason) = flag_error(&["--dry-run", "--keepalive", "10"]).await;
    assert!(reason.contains("30..=1200"), "{reason}");
    let (_, reason) = flag_error(&["--dry-run", "--rate", "12"]).await;
    assert!(reason.contains("10 QoS 1"), "{reason}");
}

#[tokio::test]
async fn too_many_v2_chunks_is_caught_before_connecting() {
    let qvga = vectors().join("images/qvga.jpg");
    let (flag, reason) = flag_error(&["--dry-run", "--chunk", "3", qvga.to_str().unwrap()]).await;
    assert_eq!(flag, "--chunk");
    assert!(
        reason.contains("qvga.jpg") && reason.contains("raise --chunk"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_qos_flag_is_limited_to_0_and_1_by_clap() {
    let argv = [
        "x",
        "--product-key",
        "p",
        "--device-name",
        "d",
        "--qos",
        "2",
    ];
    assert!(Cli::try_parse_from(argv).is_err());
}

#[tokio::test]
async fn a_non_jpeg_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.jpg");
    std::fs::write(&f, b"not a jpeg").unwrap();
    match dry_run(&["--dry-run", f.to_str().unwrap()]).await {
        Err(CameraError::NotJpeg { path }) => assert_eq!(path, f),
        other => panic!("{other:?}"),
    }
}
