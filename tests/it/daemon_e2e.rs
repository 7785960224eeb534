//! End to end: the real daemon (`daemon::run_with`: AMQP client, engine thread, spool, sink)
//! against the fake Aliyun endpoint over TLS on loopback, each test on its own temp folders.
//! Uploads go in the way a camera's do (device payload -> Aliyun's forwarded body -> AMQP), and
//! the checks look at the files on disk, the fake's settlement records and the metrics.
//!
//! About v1: it has no sequence numbers. With several connections the engine may see a device's
//! messages in another order than they were published, so most tests give v1 chunks explicit item
//! times (which order them) and publish a v1 `END` only after the picture's data chunks were
//! accepted. The original-firmware tests (section 14) publish in camera order and cut the
//! connection at every position instead: the exact scan check and the redelivery grace must keep
//! every picture whole (docs/protocol.md section 2).

use crate::support::harness::*;
use receiver::message::{DeviceId, SkipReason};
use receiver::metrics::Kind;
use receiver::sink;
use receiver::wire::{self, Format};
use receiver_testkit::fake::{FakeMessage, FakeOutcome, RefuseAuth};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const PK: &str = "a1E2eProd01";

fn dev(name: &str) -> DeviceId {
    DeviceId::new(PK, name)
}

/// v2 pictures go first with the v1 data chunks, interleaved; v1 `END`s follow once those data
/// chunks are accepted. Returns every message id published.
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

// 1 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cameras_interleaved_over_three_connections() {
    let mut h = Harness::new(3).await;
    h.start();
    h.wait_links().await;
    let mut pictures = Vec::new();
    for i in 0..200u32 {
        let device = dev(&format!("cam-{i:03}"));
        let img = jpeg(48, 32, i, &format!("{i}"));
        pictures.push(if i % 2 == 0 {
            v2_picture(&device, &img, 10_000 + i, 300)
        } else {
            v1_picture(&device, &img, 600, 10_000 + i, T0 + i64::from(i) * 1000)
        });
    }
    let started = Instant::now();
    let ids = upload(&h, &pictures, &mut Rng(0x1234_5678)).await;
    h.wait_images(200).await;
    h.wait_drained().await;
    let secs = started.elapsed().as_secs_f64();

    assert_output(h.out(), &expected(&pictures));
    assert_no_quarantine(h.state());
    let m = h.metrics();
    assert_eq!(m.images_v1.load(Relaxed), 100);
    assert_eq!(m.images_v2.load(Relaxed), 100);
    assert_eq!(m.accepted.load(Relaxed), ids.len() as u64);
    assert_eq!(m.released.load(Relaxed), 0);
    assert_eq!(m.open_assemblies.load(Relaxed), 0);
    let c = h.fake.counters();
    assert_eq!(c.accepted, ids.len() as u64, "{c:?}");
    assert_eq!(c.delivered, ids.len() as u64, "{c:?}");
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    assert_accepted_once(&h.fake.outcomes(), &ids);
    for (i, conn) in h.shared.connections.iter().enumerate() {
        assert!(
            conn.deliveries.load(Relaxed) > 0,
            "connection {i} got nothing"
        );
    }
    h.stop().await;
    eprintln!("{} messages, 200 images in {secs:.2} s", ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_memory_limit_spills_to_disk_and_changes_nothing() {
    let mut h = Harness::new(2).await;
    // Far below what the 120 open pictures hold: nearly every byte goes through the spill files.
    h.config.assembly.memory_limit = 4096;
    h.start();
    h.wait_links().await;
    h.fake.set_reorder(true);
    h.fake.duplicate_next(7);
    let mut pictures = Vec::new();
    for i in 0..120u32 {
        let device = dev(&format!("spill-{i:03}"));
        let img = jpeg(64, 48, i, &format!("s{i}"));
        pictures.push(if i % 2 == 0 {
            v2_picture(&device, &img, 20_000 + i, 240)
        } else {
            v1_picture(&device, &img, 400, 20_000 + i, T0 + i64::from(i) * 1000)
        });
    }
    let ids = upload(&h, &pictures, &mut Rng(0x5EED_0001)).await;
    h.wait_images(120).await;
    h.wait_drained().await;
    assert_output(h.out(), &expected(&pictures));
    assert_no_quarantine(h.state());
    let m = h.metrics();
    let spilled = m.spilled_bytes.load(Relaxed);
    let total: usize = pictures.iter().map(|p| p.jpeg.len()).sum();
    assert!(
        spilled > (total / 2) as u64,
        "only {spilled} of {total} bytes went through the spill files"
    );
    assert_eq!(m.spill_errors.load(Relaxed), 0);
    assert_eq!(m.assembly_spilled_bytes.load(Relaxed), 0, "all read back");
    let spill = h.state().join("spill");
    assert!(spill.is_dir());
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files are unlinked"
    );
    let c = h.fake.counters();
    assert_eq!(c.accepted, ids.len() as u64 + 7, "{c:?}");
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    h.stop().await;
}

// 2 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_duplicates_and_reordering() {
    let mut h = Harness::new(2).await;
    h.start();
    h.wait_links().await;
    let mut pictures = Vec::new();
    for i in 0..16u32 {
        let device = dev(&format!("dup-{i:02}"));
        for p in 0..2 {
            let img = jpeg(40, 30, i * 2 + p, "dup");
            pictures.push(v2_picture(&device, &img, 77 + p, 150));
        }
    }
    let mut rng = Rng(0x00D0_B1E5);
    let mut items: Vec<(DeviceId, String)> =
        pictures.iter().flat_map(Picture::data_items).collect();
    // Resends with the same content and a new messageId (an MQTT QoS 1 resend).
    let resends = 15;
    for _ in 0..resends {
        let pick = items[rng.below(items.len())].clone();
        items.push(pick);
    }
    rng.shuffle(&mut items);
    h.fake.set_reorder(true);
    // The same messageId delivered twice (Aliyun's at-least-once).
    h.fake.duplicate_next(25);
    let ids = h.publish_all(&items);
    h.wait_images(pictures.len() as u64).await;
    h.wait_drained().await;

    assert_output(h.out(), &expected(&pictures));
    assert_no_quarantine(h.state());
    let c = h.fake.counters();
    assert_eq!(c.duplicates_injected, 25, "{c:?}");
    let m = h.metrics();
    assert_eq!(m.messages(Kind::Duplicate), 25, "same-messageId duplicates");
    assert_eq!(m.duplicate_chunks.load(Relaxed), resends, "content resends");
    assert_eq!(m.images_v2.load(Relaxed), pictures.len() as u64);
    assert_eq!(c.accepted, ids.len() as u64 + 25, "{c:?}");
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    let outcomes = h.fake.outcomes();
    assert_all_accepted(&outcomes, &ids);
    let twice = ids.iter().filter(|id| outcomes[*id].len() == 2).count();
    assert_eq!(twice, 25, "each duplicated message delivered exactly twice");
    assert!(ids.iter().all(|id| outcomes[id].len() <= 2));
    h.stop().await;
}

// 3 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_is_accepted_skipped_and_counted() {
    let mut h = Harness::new(1).await;
    h.start();
    let post = wire::forwarded_topic(PK, "cam-noise");
    let img_body = |pk: &str, dn: &str| {
        receiver::message::forward_property_post(
            pk,
            dn,
            wire::alink_payload(1, "V2;1;0;1;4;00000000;/9j/2Q==").as_bytes(),
            T0,
        )
        .unwrap()
    };
    let noise: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "other_topic",
            format!("/as/mqtt/status/{PK}/cam-noise"),
            br#"{"status":"online","productKey":"a1E2eProd01","deviceName":"cam-noise"}"#.to_vec(),
        ),
        (
            "other_topic",
            format!("/{PK}/cam-noise/thing/lifecycle"),
            br#"{"action":"create"}"#.to_vec(),
        ),
        (
            "other_topic",
            format!("/{PK}/cam-noise/thing/event/alarm/post"),
            img_body(PK, "cam-noise"),
        ),
        (
            // A device name cannot contain '/': never a property post of "cam-noise/x".
            "other_topic",
            format!("/{PK}/cam-noise/x/thing/event/property/post"),
            img_body(PK, "cam-noise/x"),
        ),
        (
            "no_img",
            post.clone(),
            br#"{"productKey":"a1E2eProd01","deviceName":"cam-noise","items":{"temp":{"value":21,"time":1}}}"#.to_vec(),
        ),
        (
            "img_check_failed",
            post.clone(),
            br#"{"productKey":"a1E2eProd01","deviceName":"cam-noise","items":{},"checkFailedData":{"img":{"value":"V2;1","code":6310}}}"#.to_vec(),
        ),
        ("not_json", post.clone(), b"this is not json".to_vec()),
        ("not_json", post.clone(), b"[1,2,3]".to_vec()),
        ("empty_body", post.clone(), Vec::new()),
        ("empty_body", post.clone(), b"  \n".to_vec()),
        (
            "img_not_text",
            post.clone(),
            br#"{"items":{"img":{"value":42,"time":1}}}"#.to_vec(),
        ),
        // The body names another device than the topic: trust neither.
        ("untrusted_device", post.clone(), img_body(PK, "cam-other")),
        ("untrusted_device", post.clone(), img_body("a1OtherPK00", "cam-noise")),
    ];
    let mut ids = Vec::new();
    for (i, (_, topic, body)) in noise.iter().enumerate() {
        let id = format!("noise-{i}");
        h.fake.publish(FakeMessage {
            topic: topic.clone(),
            message_id: id.clone(),
            generate_time: T0,
            body: body.clone(),
        });
        ids.push(id);
    }
    h.fake
        .wait_settled(ids.len() as u64, WAIT)
        .await
        .expect("noise settled");
    h.wait_drained().await;

    assert_accepted_once(&h.fake.outcomes(), &ids);
    let m = h.metrics();
    for reason in SkipReason::ALL {
        let want = noise
            .iter()
            .filter(|(r, _, _)| *r == reason.as_str())
            .count() as u64;
        assert_eq!(m.skipped_count(reason), want, "skipped {}", reason.as_str());
    }
    assert_eq!(m.messages(Kind::Skipped), noise.len() as u64);
    assert_eq!(m.images_written(), 0);
    assert_eq!(m.accepted.load(Relaxed), noise.len() as u64);
    assert!(walk(h.out()).is_empty(), "{:?}", walk(h.out()));
    assert_no_quarantine(h.state());
    let c = h.fake.counters();
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    h.stop().await;
}

// 4 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_device_names_stay_in_one_safe_folder() {
    let mut h = Harness::new(2).await;
    h.start();
    h.wait_links().await;
    let names = [
        "....",
        "..:.",
        "a:b@c",
        "-rf_",
        "@@@@",
        "..a.",
        ":::.",
        "................................",
        "A.B_",
        "a.b_",
    ];
    let mut pictures = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let device = dev(name);
        let img = jpeg(32, 24, i as u32, "evil");
        pictures.push(v2_picture(&device, &img, 5, 201));
        let img = jpeg(32, 24, 100 + i as u32, "evil");
        pictures.push(v1_picture(&device, &img, 300, 6, T0 + i as i64 * 1000));
    }
    upload(&h, &pictures, &mut Rng(0xE71)).await;
    h.wait_images(pictures.len() as u64).await;
    h.wait_drained().await;

    assert_output(h.out(), &expected(&pictures));
    assert_no_quarantine(h.state());
    let sink = h.sink();
    let pk_dir = h.out().join(sink::encode_component(PK));
    let folders: BTreeSet<String> = std::fs::read_dir(&pk_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let want: BTreeSet<String> = names.iter().map(|n| sink::encode_component(n)).collect();
    assert_eq!(folders, want, "one folder per device, nothing else");
    for name in names {
        let dir = sink.device_dir(&dev(name));
        assert_eq!(dir.parent(), Some(pk_dir.as_path()), "{name}");
        let comp = dir.file_name().unwrap().to_str().unwrap();
        assert!(
            !comp.starts_with('.') && !comp.contains(['/', ':', '@']),
            "{comp}"
        );
        assert_eq!(sink::decode_component(comp).as_deref(), Some(name));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "{name}");
    }
    // Nothing anywhere but the output folder, the state folder and the CA file.
    let root = h.root.path().to_path_buf();
    for file in walk(&root) {
        let rel = file.strip_prefix(&root).unwrap();
        let ok = rel.starts_with("out") || rel.starts_with("state") || rel == "fake-aliyun-ca.pem";
        assert!(ok, "file outside output/state: {}", file.display());
    }
    let top: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        top.is_subset(
            &["fake-aliyun-ca.pem", "out", "state"]
                .map(String::from)
                .into()
        ),
        "{top:?}"
    );
    h.stop().await;
}

// 5 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_vectors_reach_their_verdicts_through_the_daemon() {
    let mut h = Harness::new(1).await;
    h.config.assembly.timeout = Duration::from_secs(1);
    h.start();
    let tiny = golden_image("tiny.jpg");
    let cases = table("malformed.tsv");
    assert!(cases.len() >= 15, "{} cases", cases.len());
    let pk = receiver_testkit::golden::PRODUCT_KEY;
    let mut ids = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        // A fresh device per case; values in arrival order, item times increasing.
        let device = DeviceId::new(pk, &case[0]);
        for (i, value) in vector_lines(&case[2]).iter().enumerate() {
            let payload = timed_payload(i as u32, value, T0 + c as i64 * 100_000 + 100 * i as i64);
            ids.push(h.publish(&device, &payload));
        }
    }
    let complete = cases.iter().filter(|c| c[1] == "complete").count() as u64;
    h.wait_ids_accepted(&ids).await;
    h.wait_images(complete).await;
    // Expiry (1 s) settles the rest.
    h.wait_metrics("no open pictures", WAIT, |m| {
        m.open_assemblies.load(Relaxed) == 0
    })
    .await;
    h.wait_drained().await;

    let records = quarantine_records(h.state());
    let sink = h.sink();
    for case in &cases {
        let (name, expected) = (&case[0], &case[1]);
        let device = DeviceId::new(pk, name);
        let images: Vec<_> = walk(&sink.device_dir(&device));
        let reasons: Vec<&str> = records
            .iter()
            .filter(|r| r.dir == sink.quarantine_device_dir(&device))
            .map(|r| r.reason.as_str())
            .collect();
        if expected == "complete" {
            assert_eq!(images.len(), 1, "{name}: {images:?}");
            assert!(std::fs::read(&images[0]).unwrap() == tiny, "{name}: bytes");
            assert!(reasons.is_empty(), "{name}: {reasons:?}");
        } else {
            let want = expected.strip_prefix("quarantine:").unwrap();
            assert!(images.is_empty(), "{name}: wrote {images:?}");
            assert!(
                reasons.contains(&want),
                "{name}: want {want}, got {reasons:?}"
            );
            assert!(
                h.metrics().quarantined_count(want) >= 1,
                "{name}: metric for {want}"
            );
        }
    }
    assert_eq!(h.metrics().images_written(), complete);
    assert_accepted_once(&h.fake.outcomes(), &ids);
    h.stop().await;
}

// 6 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_vectors_shuffled_and_duplicated_through_the_daemon() {
    let mut h = Harness::new(2).await;
    h.start();
    h.wait_links().await;
    let vectors = table("index.tsv");
    assert_eq!(vectors.len(), receiver_testkit::golden::specs().len());
    let mut rng = Rng(0x0601_DE2E);
    let mut lists = Vec::new();
    let mut ends = Vec::new();
    let mut want = Vec::new();
    let mut v1_devices = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let (format, image, pk, dn, file) = (&v[0], &v[1], &v[2], &v[3], &v[6]);
        // Vectors reuse pids with other chunk sizes (tiny p7 c48 and c7200): on one device
        // that is a header_mismatch by design, so each vector gets its own device.
        let device = DeviceId::new(pk, &format!("{dn}-{i}"));
        let lines = vector_lines(file);
        let mut items: Vec<(DeviceId, String)> = if format == "v1" {
            // Long form with increasing device times; data shuffled, END after the data.
            let t0 = T0 + i as i64 * 1_000_000;
            let mut timed: Vec<_> = lines
                .iter()
                .enumerate()
                .map(|(k, l)| (device.clone(), with_time(l, t0 + 100 * k as i64)))
                .collect();
            ends.push(timed.pop().unwrap());
            v1_devices.push((device.clone(), t0));
            timed
        } else {
            lines.iter().map(|l| (device.clone(), l.clone())).collect()
        };
        for _ in 0..1 + items.len() / 3 {
            let pick = items[rng.below(items.len())].clone();
            items.push(pick);
        }
        rng.shuffle(&mut items);
        lists.push(items);
        want.push((device, golden_image(image)));
    }
    let data = interleave(lists, &mut rng);
    h.fake.set_reorder(true);
    h.fake.duplicate_next(10);
    let ids = h.publish_all(&data);
    h.wait_ids_accepted(&ids).await;
    let mut end_ids = h.publish_all(&ends);
    // A duplicated END (new messageId) after the picture is done.
    end_ids.extend(h.publish_all(&ends[..1]));
    h.wait_images(want.len() as u64).await;
    h.wait_drained().await;

    assert_output(h.out(), &want);
    assert_no_quarantine(h.state());
    // v1 files are named by the earliest item time: the order came from items.img.time.
    for (device, t0) in &v1_devices {
        let files = walk(&h.sink().device_dir(device));
        let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(name, format!("{}.jpg", sink::file_time(*t0)), "{device}");
    }
    let m = h.metrics();
    assert_eq!(
        m.messages(Kind::Duplicate),
        h.fake.counters().duplicates_injected
    );
    assert!(m.duplicate_chunks.load(Relaxed) > 0);
    let c = h.fake.counters();
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    h.stop().await;
}

// 7 -------------------------------------------------------------------------------------------

/// A v1 camera: per picture, its data chunks, then (once they are accepted) its `END`, then at
/// once the next picture's chunks (which may overtake that `END`).
async fn v1_camera(h: &Harness, pictures: &[Picture]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in pictures {
        let data = h.publish_all(&p.data_items());
        h.wait_ids_accepted(&data).await;
        ids.extend(data);
        ids.extend(h.publish_all(&[p.end_item().unwrap()]));
    }
    ids
}

/// A v2 camera: everything, in order, with a small pause between pictures.
async fn v2_camera(h: &Harness, pictures: &[Picture]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in pictures {
        ids.extend(h.publish_all(&p.data_items()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ids
}

fn mixed_cameras() -> (Vec<Picture>, Vec<Picture>, Vec<Picture>) {
    let (a, b, both) = (dev("cam-v1"), dev("cam-v2"), dev("cam-both"));
    let v1: Vec<_> = (0..4u32)
        .map(|p| {
            v1_picture(
                &a,
                &jpeg(64, 48, p, "v1"),
                800,
                p,
                T0 + i64::from(p) * 10_000,
            )
        })
        .collect();
    let v2: Vec<_> = (0..4u32)
        .map(|p| v2_picture(&b, &jpeg(64, 48, 10 + p, "v2"), 500 + p, 600))
        .collect();
    // One device speaking both formats at the same time.
    let mixed: Vec<_> = (0..4u32)
        .map(|p| {
            let img = jpeg(64, 48, 20 + p, "both");
            if p % 2 == 0 {
                v1_picture(&both, &img, 400, p, T0 + i64::from(p) * 10_000)
            } else {
                v2_picture(&both, &img, 900 + p, 450)
            }
        })
        .collect();
    (v1, v2, mixed)
}

async fn run_mixed_cameras(h: &Harness) -> Vec<Picture> {
    let (v1, v2, mixed) = mixed_cameras();
    let (mixed_v1, mixed_v2): (Vec<_>, Vec<_>) =
        mixed.iter().cloned().partition(|p| p.format == Format::V1);
    let (a, b, c, d) = tokio::join!(
        v1_camera(h, &v1),
        v2_camera(h, &v2),
        v1_camera(h, &mixed_v1),
        v2_camera(h, &mixed_v2)
    );
    let all: Vec<Picture> = v1.into_iter().chain(v2).chain(mixed).collect();
    h.wait_images(all.len() as u64).await;
    h.wait_drained().await;
    let ids: Vec<String> = [a, b, c, d].concat();
    assert_all_accepted(&h.fake.outcomes(), &ids);
    let c = h.fake.counters();
    assert_eq!(
        c.accepted,
        ids.len() as u64 + c.duplicates_injected,
        "{c:?}"
    );
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_cameras_of_one_product_at_the_same_time() {
    let mut h = Harness::new(2).await;
    h.start();
    h.wait_links().await;
    h.fake.set_reorder(true);
    let all = run_mixed_cameras(&h).await;
    assert_output(h.out(), &expected(&all));
    assert_no_quarantine(h.state());
    let m = h.metrics();
    assert_eq!(m.images_v1.load(Relaxed), 6);
    assert_eq!(m.images_v2.load(Relaxed), 6);
    h.stop().await;
}

// 12 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_mode_produces_the_same_images() {
    let mut h = Harness::new(2).await;
    h.config.spool.enabled = false;
    h.start();
    h.wait_links().await;
    h.fake.set_reorder(true);
    h.fake.duplicate_next(5);
    let all = run_mixed_cameras(&h).await;
    assert_output(h.out(), &expected(&all));
    assert_no_quarantine(h.state());
    assert!(
        !h.state().join("spool").exists(),
        "in-memory mode must not create a spool"
    );
    assert_eq!(h.metrics().spool_commits.load(Relaxed), 0);
    assert_eq!(h.fake.counters().duplicates_injected, 5);
    assert_eq!(h.metrics().messages(Kind::Duplicate), 5);
    h.stop().await;
}

// 8 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_image_loses_and_doubles_nothing() {
    let mut h = Harness::new(2).await;
    h.start();
    h.wait_links().await;
    let mut all = Vec::new();
    let mut ids = Vec::new();
    let mut v1_ids = Vec::new();
    let cuts = [1u64, 4, 13];
    for (round, n) in cuts.iter().enumerate() {
        let r = round as u32;
        // v2: five pictures of ~6 chunks each; the cut lands mid-picture.
        let v2: Vec<_> = (0..5u32)
            .map(|i| {
                let device = dev(&format!("cut-v2-{i}"));
                v2_picture(&device, &jpeg(48, 36, r * 10 + i, "cut"), 100 * r + i, 240)
            })
            .collect();
        h.fake.cut_after(*n);
        ids.extend(upload(&h, &v2, &mut Rng(u64::from(r) + 1)).await);
        all.extend(v2);
        h.wait_images(all.len() as u64).await;
        // v1: the cut loses data chunks in flight; they come back later, after newer chunks,
        // and land in their place by item time.
        let v1: Vec<_> = (0..4u32)
            .map(|i| {
                let device = dev(&format!("cut-v1-{i}"));
                let t0 = T0 + i64::from(r) * 100_000;
                v1_picture(&device, &jpeg(48, 36, 50 + r * 10 + i, "cut"), 200, r, t0)
            })
            .collect();
        h.fake.cut_after(*n);
        let sent = upload(&h, &v1, &mut Rng(u64::from(r) + 100)).await;
        v1_ids.extend(sent.iter().cloned());
        ids.extend(sent);
        all.extend(v1);
        h.wait_images(all.len() as u64).await;
    }
    h.wait_drained().await;

    assert_output(h.out(), &expected(&all));
    assert_no_quarantine(h.state());
    let c = h.fake.counters();
    assert_eq!(c.cuts, 2 * cuts.len() as u64, "{c:?}");
    assert_eq!(c.rejected, 0, "{c:?}");
    assert!(c.lost > 0, "no delivery was in flight at a cut: {c:?}");
    assert_accepted_once(&h.fake.outcomes(), &ids);
    assert_eq!(h.metrics().images_written(), all.len() as u64);
    // Some v1 chunks came back after a cut (behind newer chunks when the engine had not seen
    // them) and still landed in place.
    let o = h.fake.outcomes();
    let v1_redelivered = v1_ids.iter().filter(|id| o[*id].len() > 1).count();
    assert!(v1_redelivered > 0, "no v1 chunk was redelivered: {c:?}");
    // Redeliveries of chunks the engine had already taken are dropped by messageId.
    assert!(h.metrics().messages(Kind::Duplicate) > 0);
    let reconnects: u64 = h
        .shared
        .connections
        .iter()
        .map(|c| c.reconnects.load(Relaxed))
        .sum();
    assert!(reconnects >= 1, "no reconnect after {} cuts", c.cuts);
    h.stop().await;
}

// 9 -------------------------------------------------------------------------------------------

/// The client waits at least `AUTH_RETRY` (60 s, a constant) after a refused login, so the retry
/// itself is not awaited here: the refusal must be reported, the daemon must keep running and
/// stop cleanly, and a restart receives what was queued meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_login_is_reported_and_the_daemon_keeps_running() {
    let mut h = Harness::new(1).await;
    h.fake.refuse_auth(RefuseAuth::Next(1));
    h.start();
    h.wait_metrics("the refusal in the metrics", WAIT, |m| {
        m.auth_failures.load(Relaxed) == 1
    })
    .await;
    assert_eq!(h.shared.connections[0].auth_failures.load(Relaxed), 1);
    assert!(!h.shared.any_link_attached());
    let pic = v2_picture(&dev("cam-auth"), &jpeg(40, 30, 1, "auth"), 1, 300);
    let ids = h.publish_all(&pic.data_items());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.running(), "the daemon must survive a refused login");
    assert_eq!(h.fake.counters().delivered, 0);
    assert_eq!(h.fake.queued(), ids.len());
    let took = h.stop().await;
    assert!(
        took < Duration::from_secs(5),
        "stop took {took:?} while backing off"
    );
    assert_eq!(h.fake.counters().auth_failures, 1);
    // Credentials work again: a restart receives what waited in the queue.
    h.start();
    h.wait_images(1).await;
    h.wait_drained().await;
    assert_output(h.out(), &expected(&[pic]));
    assert_accepted_once(&h.fake.outcomes(), &ids);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_connection_does_not_stop_the_others() {
    let mut h = Harness::new(2).await;
    h.fake.refuse_auth(RefuseAuth::Next(1));
    h.start();
    h.wait_metrics("one refusal", WAIT, |m| m.auth_failures.load(Relaxed) == 1)
        .await;
    let pictures: Vec<_> = (0..6u32)
        .map(|i| v2_picture(&dev(&format!("cam-a{i}")), &jpeg(40, 30, i, "a"), i, 300))
        .collect();
    let ids = upload(&h, &pictures, &mut Rng(9)).await;
    h.wait_images(6).await;
    h.wait_drained().await;
    assert_output(h.out(), &expected(&pictures));
    assert_accepted_once(&h.fake.outcomes(), &ids);
    let states: Vec<_> = h
        .shared
        .connections
        .iter()
        .map(|c| {
            (
                c.auth_failures.load(Relaxed),
                c.link_attached.load(Relaxed),
                c.deliveries.load(Relaxed),
            )
        })
        .collect();
    assert!(states.contains(&(1, false, 0)), "{states:?}");
    assert!(
        states.iter().any(|s| s.0 == 0 && s.1 && s.2 > 0),
        "{states:?}"
    );
    assert_eq!(h.fake.counters().auth_failures, 1);
    let took = h.stop().await;
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
}

// 10 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_mid_upload_settles_everything_and_a_restart_finishes() {
    let mut h = Harness::new(2).await;
    // Open pictures' bytes go to the spill files (every other e2e test keeps them in memory):
    // a stop with spilled pictures, and a restart that rebuilds them from the spool.
    h.config.assembly.memory_limit = 2048;
    h.start();
    h.wait_links().await;
    let v2: Vec<_> = (0..24u32)
        .map(|i| {
            v2_picture(
                &dev(&format!("stop-v2-{i}")),
                &jpeg(64, 48, i, "stop"),
                i,
                240,
            )
        })
        .collect();
    let v1: Vec<_> = (0..6u32)
        .map(|i| {
            let img = jpeg(64, 48, 50 + i, "stop");
            v1_picture(
                &dev(&format!("stop-v1-{i}")),
                &img,
                400,
                i,
                T0 + i64::from(i) * 1000,
            )
        })
        .collect();
    // The first four v2 pictures go whole, the rest interleaved.
    let mut data: Vec<_> = v2[..4].iter().flat_map(Picture::data_items).collect();
    let early = data.len() as u64;
    data.extend(interleave(
        v2[4..].iter().chain(&v1).map(Picture::data_items).collect(),
        &mut Rng(0x5709),
    ));
    h.fake.set_delay(Duration::from_millis(3));
    let ids = h.publish_all(&data);
    let enough = early + (ids.len() as u64 - early) / 3;
    h.wait_metrics("some accepted", WAIT, |m| {
        m.accepted.load(Relaxed) >= enough
    })
    .await;
    let took = h.stop().await;
    assert!(
        h.metrics().spilled_bytes.load(Relaxed) > 0,
        "nothing was spilled before the stop"
    );
    let first_run_images = h.metrics().images_written();
    assert!(
        first_run_images >= 4,
        "{first_run_images} images before the stop"
    );
    assert!(
        h.state().join("spool").is_dir(),
        "durable mode keeps a spool"
    );
    // Every delivery the fake handed out got exactly one outcome, none lost.
    h.fake
        .wait_until("nothing in flight", WAIT, |_, _, f| f == 0)
        .await
        .expect("settlements recorded");
    let c = h.fake.counters();
    assert_eq!(c.lost, 0, "deliveries left unsettled at stop: {c:?}");
    assert_eq!(c.rejected, 0, "{c:?}");
    assert_eq!(c.accepted + c.released, c.delivered, "{c:?}");
    assert!(
        c.accepted < ids.len() as u64,
        "stopped too late to test anything: {c:?}"
    );
    // Some v1 data chunks were accepted before the stop: only the spool still has them.
    let outcomes = h.fake.outcomes();
    let v1_ids: Vec<&String> = ids
        .iter()
        .zip(&data)
        .filter(|(_, (d, _))| d.device_name.starts_with("stop-v1"))
        .map(|(id, _)| id)
        .collect();
    let v1_accepted = v1_ids
        .iter()
        .filter(|id| {
            outcomes
                .get(**id)
                .is_some_and(|o| o.contains(&FakeOutcome::Accepted))
        })
        .count();
    assert!(
        v1_accepted > 0 && v1_accepted < v1_ids.len(),
        "{v1_accepted} of {} v1 chunks accepted before the stop",
        v1_ids.len()
    );
    eprintln!("first run: {c:?}");
    let m = h.metrics();
    assert_eq!(m.accepted.load(Relaxed), c.accepted, "daemon vs fake");
    let conn_released: u64 = h
        .shared
        .connections
        .iter()
        .map(|c| c.released.load(Relaxed))
        .sum();
    assert_eq!(conn_released, c.released, "daemon vs fake");
    assert!(walk(h.out())
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "jpg")));

    // Restart on the same state folder: the spool resumes the open pictures.
    h.fake.set_delay(Duration::ZERO);
    h.start();
    h.wait_ids_accepted(&ids).await;
    let end_ids = h.publish_all(&v1.iter().filter_map(Picture::end_item).collect::<Vec<_>>());
    let total = (v2.len() + v1.len()) as u64;
    h.wait_images(total - first_run_images).await;
    h.wait_drained().await;
    let all: Vec<Picture> = v2.into_iter().chain(v1).collect();
    assert_output(h.out(), &expected(&all));
    assert_no_quarantine(h.state());
    assert_eq!(first_run_images + h.metrics().images_written(), total);
    assert_accepted_once(&h.fake.outcomes(), &[ids, end_ids].concat());
    h.stop().await;
    eprintln!("stopped in {took:?} after {first_run_images} images");
}

// 11 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_one_line_per_message_and_accepts_it() {
    let h = Harness::new(1).await;
    let device = dev("cam-tail");
    let v2 = wire::encode_payloads(Format::V2, &jpeg(32, 24, 1, "t"), 42, 600).unwrap();
    h.publish(&device, &v2[0]);
    h.publish(&device, &timed_payload(7, "FFD8FFD9", T0));
    h.publish(&device, &wire::alink_payload(8, "END"));
    h.fake.publish(FakeMessage {
        topic: format!("/as/mqtt/status/{PK}/cam-tail"),
        message_id: "status-1".into(),
        generate_time: T0,
        body: br#"{"status":"online"}"#.to_vec(),
    });
    let mut out: Vec<u8> = Vec::new();
    let args = receiver::tail::TailArgs {
        consumer_group: None,
        count: Some(4),
    };
    let token = tokio_util::sync::CancellationToken::new();
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        receiver::tail::run(h.config.clone(), args, &mut out, token),
    )
    .await
    .expect("tail finished in time")
    .expect("tail ok");
    assert_eq!(n, 4);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let want = [
        format!("kind=v2 chunk  pid=42 seq=0/{}", v2.len()),
        format!("kind=v1 chunk  bytes=4  time={T0}"),
        "kind=v1 END".to_string(),
        "kind=skip:other_topic".to_string(),
    ];
    for (line, w) in lines.iter().zip(&want) {
        assert!(line.contains(w.as_str()), "{line:?} lacks {w:?}");
        assert!(line.contains(&format!("{PK}/cam-tail")), "{line}");
    }
    h.fake
        .wait_until("tail's settlements", WAIT, |c, q, f| {
            c.accepted == 4 && q == 0 && f == 0
        })
        .await
        .expect("all accepted");
    let c = h.fake.counters();
    assert_eq!(
        (c.accepted, c.released, c.lost, c.rejected),
        (4, 0, 0, 0),
        "{c:?}"
    );
    // tail writes nothing.
    assert!(walk(h.out()).is_empty());
}

// 14 ------------------------------------------------------------------------------------------
// Original-firmware (v1, one Alink id for everything) cameras and cut connections: what was in
// flight on the cut connection comes back after newer messages, as Aliyun does. Every picture
// must come out byte-identical exactly once: nothing spliced, nothing lost, nothing quarantined.

/// One round: `cameras` original-firmware cameras, `per_camera` pictures each, their messages
/// interleaved at random (each camera's own order kept) and published at once; the connection is
/// cut after each of `cuts` further deliveries in turn. Returns the pictures and message ids.
async fn original_firmware_round(
    h: &Harness,
    round: u32,
    cameras: u32,
    per_camera: u32,
    cuts: &[u64],
) -> (Vec<Picture>, Vec<String>) {
    let mut rng = Rng(0x9E37_79B9 ^ u64::from(round));
    let mut pictures = Vec::new();
    let mut streams = Vec::new();
    for c in 0..cameras {
        let device = dev(&format!("orig-{c:02}"));
        let jpegs: Vec<Vec<u8>> = (0..per_camera)
            .map(|p| {
                let (w, hgt) = [(64, 48), (80, 60), (96, 72)][((round + c + p) % 3) as usize];
                jpeg(w, hgt, round * 1000 + c * 10 + p, "ORIG")
            })
            .collect();
        // Times rise across rounds: each round is the camera's next pictures.
        let t0 = T0 + i64::from(round) * 1_000_000;
        let (pics, stream) = original_firmware_camera(&device, &jpegs, t0);
        pictures.extend(pics);
        streams.push(stream);
    }
    let stream = interleave(streams, &mut rng);
    let cuts_before = h.fake.counters().cuts;
    let mut cuts = cuts.iter();
    if let Some(&k) = cuts.next() {
        h.fake.cut_after(k);
    }
    let ids = h.publish_all(&stream);
    for (i, &k) in cuts.enumerate() {
        let want = cuts_before + i as u64 + 1;
        let cut_or_done =
            || h.fake.counters().cuts >= want || (h.fake.queued() == 0 && h.fake.in_flight() == 0);
        h.wait_metrics("the previous cut", WAIT, |_| cut_or_done())
            .await;
        if h.fake.counters().cuts < want {
            break; // the stream ended before the previous cut position
        }
        h.wait_links().await;
        h.fake.cut_after(k);
    }
    (pictures, ids)
}

/// Runs `rounds` (each a list of cut positions) against one daemon and checks the outcome.
async fn original_firmware_cut_runs(
    connections: usize,
    credit: u32,
    cameras: u32,
    per_camera: u32,
    rounds: &[Vec<u64>],
) {
    original_firmware_cut_runs_in(None, connections, credit, cameras, per_camera, rounds).await
}

/// [`original_firmware_cut_runs`], in cluster mode on `redis` when given.
async fn original_firmware_cut_runs_in(
    redis: Option<&crate::support::redis_server::RedisServer>,
    connections: usize,
    credit: u32,
    cameras: u32,
    per_camera: u32,
    rounds: &[Vec<u64>],
) {
    let mut h = Harness::new(connections).await;
    h.config.cluster = redis.map(cluster_config);
    h.config.aliyun.credit = credit;
    // Many cuts in a row: no long backoff between reconnects.
    h.config.aliyun.reconnect_max = Duration::from_millis(100);
    h.start();
    h.wait_links().await;
    let (mut all, mut ids) = (Vec::new(), Vec::new());
    for (round, cuts) in rounds.iter().enumerate() {
        let (pictures, sent) =
            original_firmware_round(&h, round as u32, cameras, per_camera, cuts).await;
        all.extend(pictures);
        ids.extend(sent);
        h.wait_images(all.len() as u64).await;
        h.wait_drained().await;
        // A round whose cut fell after its last delivery leaves the cut armed: disarm it.
        h.fake.cut_after(u64::MAX);
    }
    // Held pictures are written by now, and nothing else may come.
    tokio::time::sleep(REDELIVERY_GRACE).await;
    assert_output(h.out(), &expected(&all));
    assert_no_quarantine(h.state());
    assert_accepted_once(&h.fake.outcomes(), &ids);
    assert_eq!(h.metrics().images_written(), all.len() as u64);
    let c = h.fake.counters();
    assert!(c.lost > 0, "no delivery was in flight at any cut: {c:?}");
    assert!(c.cuts >= rounds.len() as u64 / 2, "{c:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_original_firmware_cameras_survive_a_cut_at_every_position() {
    // ~6 messages a picture, 3 cameras interleaved: k = 1..=40 covers about two pictures of
    // every camera, so the cut falls at every position of a picture, END included.
    let rounds: Vec<Vec<u64>> = (1..=40).map(|k| vec![k]).collect();
    original_firmware_cut_runs(1, 16, 3, 3, &rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_original_firmware_cameras_over_two_connections_with_one_two_and_three_cuts() {
    let rounds: Vec<Vec<u64>> = vec![
        vec![3],
        vec![17],
        vec![41],
        vec![5, 9],
        vec![29, 2],
        vec![1, 1, 1],
        vec![11, 23, 7],
        vec![64],
    ];
    original_firmware_cut_runs(2, 5, 10, 2, &rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_firmware_cuts_with_a_large_credit() {
    // Many deliveries in flight at every cut: the engine has taken a varying share of them.
    let rounds: Vec<Vec<u64>> = (1..=24).step_by(2).map(|k| vec![k, k + 5]).collect();
    original_firmware_cut_runs(1, 200, 3, 3, &rounds).await;
}

// Cluster mode, one instance ------------------------------------------------------------------

/// `[cluster]` on a test `redis-server`.
fn cluster_config(
    redis: &crate::support::redis_server::RedisServer,
) -> receiver::config::ClusterConfig {
    receiver::config::ClusterConfig {
        redis_url: redis.url(),
        password: None,
        key_prefix: "e2e".into(),
        instance_id: "e2e-0".into(),
        lease: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        sentinels: Vec::new(),
        sentinel_master: None,
    }
}

/// The first end-to-end case again with one instance in cluster mode: the same files, the same
/// settlements, no spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cameras_in_cluster_mode_give_the_same_result() {
    let redis = crate::support::redis_server::RedisServer::start();
    let mut h = Harness::new(3).await;
    h.config.cluster = Some(cluster_config(&redis));
    h.start();
    h.wait_links().await;
    let mut pictures = Vec::new();
    for i in 0..200u32 {
        let device = dev(&format!("cam-{i:03}"));
        let img = jpeg(48, 32, i, &format!("{i}"));
        pictures.push(if i % 2 == 0 {
            v2_picture(&device, &img, 10_000 + i, 300)
        } else {
            v1_picture(&device, &img, 600, 10_000 + i, T0 + i64::from(i) * 1000)
        });
    }
    let ids = upload(&h, &pictures, &mut Rng(0x1234_5678)).await;
    h.wait_images(200).await;
    h.wait_drained().await;
    assert_output(h.out(), &expected(&pictures));
    assert_no_quarantine(h.state());
    assert!(
        !h.state().join("spool").exists(),
        "cluster mode has no spool"
    );
    let m = h.metrics();
    assert_eq!(m.images_v1.load(Relaxed), 100);
    assert_eq!(m.images_v2.load(Relaxed), 100);
    assert_eq!(m.accepted.load(Relaxed), ids.len() as u64);
    assert_eq!(m.released.load(Relaxed), 0);
    assert_eq!(m.cluster_chunks_stored.load(Relaxed), ids.len() as u64);
    assert_eq!(m.cluster_pictures_claimed.load(Relaxed), 200);
    assert_eq!(
        m.image_latency.count(),
        200,
        "last chunk to durable, per picture"
    );
    let c = h.fake.counters();
    assert_eq!(c.accepted, ids.len() as u64, "{c:?}");
    assert_eq!((c.released, c.rejected, c.lost), (0, 0, 0), "{c:?}");
    assert_accepted_once(&h.fake.outcomes(), &ids);
    h.stop().await;
}

/// v1 and v2 cameras of one product, reordered and duplicated, in cluster mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_cameras_reordered_and_duplicated_in_cluster_mode() {
    let redis = crate::support::redis_server::RedisServer::start();
    let mut h = Harness::new(2).await;
    h.config.cluster = Some(cluster_config(&redis));
    h.start();
    h.wait_links().await;
    h.fake.set_reorder(true);
    h.fake.duplicate_next(5);
    let all = run_mixed_cameras(&h).await;
    assert_output(h.out(), &expected(&all));
    assert_no_quarantine(h.state());
    let m = h.metrics();
    assert_eq!(m.images_v1.load(Relaxed), 6);
    assert_eq!(m.images_v2.load(Relaxed), 6);
    assert_eq!(h.fake.counters().duplicates_injected, 5);
    assert_eq!(m.messages(Kind::Duplicate), 5);
    h.stop().await;
}

/// The original firmware's v1 (no ids: only the exact check and the redelivery grace keep its
/// pictures whole) with connection cuts, in cluster mode: the same outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_firmware_cuts_in_cluster_mode() {
    let redis = crate::support::redis_server::RedisServer::start();
    let rounds: Vec<Vec<u64>> = vec![
        vec![3],
        vec![17],
        vec![41],
        vec![5, 9],
        vec![29, 2],
        vec![1, 1, 1],
        vec![11, 23, 7],
        vec![64],
    ];
    original_firmware_cut_runs_in(Some(&redis), 2, 5, 10, 2, &rounds).await;
}

/// Moving from single-instance mode to cluster mode mid-upload: stopped with pictures half in
/// its spool, the daemon starts again with `[cluster]`, moves the spool's chunks into Redis, and
/// every picture comes out whole and once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_cluster_mode_keeps_the_chunks_in_flight() {
    let redis = crate::support::redis_server::RedisServer::start();
    let mut h = Harness::new(1).await;
    h.start();
    h.wait_links().await;
    let mut pictures = Vec::new();
    for i in 0..10u32 {
        let device = dev(&format!("move-{i:02}"));
        let img = jpeg(64, 48, 500 + i, "MOVE");
        pictures.push(if i % 2 == 0 {
            v2_picture(&device, &img, 20_000 + i, 300)
        } else {
            v1_picture(&device, &img, 600, 20_000 + i, T0 + i64::from(i) * 1000)
        });
    }
    // The first half of every picture, accepted into the spool.
    let halves: Vec<(Vec<String>, Vec<String>)> = pictures
        .iter()
        .map(|p| {
            let all = p.all();
            let (a, b) = all.split_at(all.len() / 2);
            (a.to_vec(), b.to_vec())
        })
        .collect();
    let mut ids = Vec::new();
    for (p, (first, _)) in pictures.iter().zip(&halves) {
        for payload in first {
            ids.push(h.publish(&p.device, payload));
        }
    }
    h.wait_ids_accepted(&ids).await;
    h.stop().await;
    assert_eq!(h.metrics().images_written(), 0);
    h.config.cluster = Some(cluster_config(&redis));
    h.start();
    h.wait_links().await;
    for (p, (_, rest)) in pictures.iter().zip(&halves) {
        for payload in rest {
            ids.push(h.publish(&p.device, payload));
        }
    }
    h.wait_images(pictures.len() as u64).await;
    h.wait_drained().await;
    assert_output(h.out(), &expected(&pictures));
    assert_no_quarantine(h.state());
    assert!(!h.state().join("spool").exists(), "the spool is set aside");
    assert_accepted_once(&h.fake.outcomes(), &ids);
    h.stop().await;
}
