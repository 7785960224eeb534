//! The sink: atomic, confined, idempotent writes of images and quarantine records.

use proptest::prelude::*;
use receiver::assembler::{Finished, Quarantined};
use receiver::message::DeviceId;
use receiver::sink::{
    decode_component, device_from_components, encode_component, Sink, SinkError, Written,
};
use receiver::wire::Format;
use std::path::{Component, Path};

const T: i64 = 1_795_696_030_123; // 2026-11-26T12:27:10.123Z

fn jpeg(fill: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    v.extend(std::iter::repeat_n(fill, len));
    v.extend([0xFF, 0xD9]);
    v
}

fn finished(dn: &str, bytes: Vec<u8>) -> Finished {
    Finished {
        device: DeviceId::new("a1B2c3D4e5F", dn),
        format: Format::V2,
        pid: Some(7),
        bytes,
        name_time_ms: T,
        chunks: 3,
        tags: vec![1, 2, 3, 4],
        opened_ms: 0,
        structure_only: None,
    }
}

fn quarantined(dn: &str, bytes: Vec<u8>) -> Quarantined {
    Quarantined {
        device: DeviceId::new("a1B2c3D4e5F", dn),
        format: Some(Format::V2),
        pid: Some(9),
        reason: "missing_chunk",
        detail: "expired with 2 of 5 chunks".into(),
        bytes,
        name_time_ms: T,
        missing: vec![2, 4, 5],
        tags: vec![10, 11],
    }
}

fn sink() -> (tempfile::TempDir, Sink) {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::new(tmp.path().join("out"), tmp.path().join("state")).unwrap();
    (tmp, sink)
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn new_creates_both_folders_and_refuses_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Sink::new(tmp.path().join("a/out"), tmp.path().join("b/state")).unwrap();
    assert!(s.output_dir().is_dir() && s.state_dir().is_dir());
    let e = Sink::new(tmp.path().join("x"), tmp.path().join("x/state")).unwrap_err();
    assert!(matches!(e, SinkError::Overlap { .. }), "{e}");
}

#[test]
fn writes_image_atomically_under_device_folder() {
    let (_tmp, sink) = sink();
    let img = finished("cam-01", jpeg(1, 100));
    let w = sink.write_image(&img).unwrap();
    let want = sink
        .output_dir()
        .join("a1B2c3D4e5F/cam-01/20261126T122710.123Z.jpg");
    assert_eq!(
        w,
        Written {
            path: want.clone(),
            bytes: 104,
            already_present: false,
            object: None,
        }
    );
    assert_eq!(std::fs::read(&want).unwrap(), img.bytes);
    // No temporary file is left behind, and nothing else was written.
    assert_eq!(
        files(sink.output_dir()),
        ["a1B2c3D4e5F/cam-01/20261126T122710.123Z.jpg"]
    );
    assert!(files(sink.state_dir()).is_empty());
}

#[test]
fn replay_is_idempotent() {
    let (_tmp, sink) = sink();
    let img = finished("cam-01", jpeg(1, 100));
    let first = sink.write_image(&img).unwrap();
    let again = sink.write_image(&img).unwrap();
    assert_eq!(again.path, first.path);
    assert!(again.already_present);
    assert_eq!(files(sink.output_dir()).len(), 1);
}

#[test]
fn collision_gets_a_suffix_and_never_overwrites() {
    let (_tmp, sink) = sink();
    let a = finished("cam-01", jpeg(1, 100));
    let b = finished("cam-01", jpeg(2, 100)); // same ms, same size, other bytes
    let c = finished("cam-01", jpeg(3, 7));
    let wa = sink.write_image(&a).unwrap();
    let wb = sink.write_image(&b).unwrap();
    let wc = sink.write_image(&c).unwrap();
    assert!(wb.path.ends_with("20261126T122710.123Z-1.jpg"), "{wb:?}");
    assert!(wc.path.ends_with("20261126T122710.123Z-2.jpg"), "{wc:?}");
    assert_eq!(std::fs::read(&wa.path).unwrap(), a.bytes);
    assert_eq!(std::fs::read(&wb.path).unwrap(), b.bytes);
    // Replaying b finds its suffixed copy instead of making a third.
    let again = sink.write_image(&b).unwrap();
    assert_eq!(again.path, wb.path);
    assert!(again.already_present);
    assert_eq!(files(sink.output_dir()).len(), 3);
}

#[test]
fn concurrent_writers_never_clobber() {
    let (_tmp, sink) = sink();
    let same = finished("cam-01", jpeg(9, 5000));
    let results: Vec<Written> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u8)
            .map(|i| {
                let (sink, same) = (&sink, &same);
                s.spawn(move || {
                    let own = sink
                        .write_image(&finished("cam-01", jpeg(i, 5000)))
                        .unwrap();
                    let shared = sink.write_image(same).unwrap();
                    (own, shared)
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| {
                let (a, b) = h.join().unwrap();
                [a, b]
            })
            .collect()
    });
    // 8 distinct images + the shared one written exactly once (the fill 9 differs from 0..8).
    assert_eq!(files(sink.output_dir()).len(), 9);
    let shared: Vec<_> = results
        .iter()
        .filter(|w| std::fs::read(&w.path).unwrap() == same.bytes)
        .collect();
    assert_eq!(shared.iter().filter(|w| !w.already_present).count(), 1);
    assert!(shared.iter().all(|w| w.path == shared[0].path));
}

#[test]
fn hostile_device_names_stay_inside_the_output_folder() {
    let (_tmp, sink) = sink();
    for dn in ["....", "..", ".", "a:b", "x@y.z", "%2E%2E", "-rf"] {
        let w = sink.write_image(&finished(dn, jpeg(1, 10))).unwrap();
        let rel = w.path.strip_prefix(sink.output_dir()).unwrap();
        let parts: Vec<_> = rel.components().collect();
        assert_eq!(parts.len(), 3, "{dn}: {rel:?}");
        assert!(parts.iter().all(|c| matches!(c, Component::Normal(_))));
        let dn_dir = parts[1].as_os_str().to_str().unwrap();
        assert!(!dn_dir.starts_with('.'), "{dn_dir}");
        assert_eq!(
            device_from_components("a1B2c3D4e5F", dn_dir),
            Some(DeviceId::new("a1B2c3D4e5F", dn))
        );
    }
    assert!(sink.output_dir().join("a1B2c3D4e5F/%2E%2E%2E%2E").is_dir());
    // "%2E%2E" the name and ".." the name get different folders.
    assert!(sink.output_dir().join("a1B2c3D4e5F/%252E%252E").is_dir());
    assert!(sink.output_dir().join("a1B2c3D4e5F/%2E%2E").is_dir());
}

#[test]
fn quarantine_writes_bin_and_sidecar_in_state_only() {
    let (_tmp, sink) = sink();
    let q = quarantined("cam-01", vec![1, 2, 3]);
    let w = sink.quarantine(&q).unwrap();
    let dir = sink.state_dir().join("quarantine/a1B2c3D4e5F/cam-01");
    assert_eq!(w.path, dir.join("20261126T122710.123Z-missing_chunk.bin"));
    assert!(!w.already_present);
    assert_eq!(std::fs::read(&w.path).unwrap(), [1, 2, 3]);
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(side["reason"], "missing_chunk");
    assert_eq!(side["detail"], "expired with 2 of 5 chunks");
    assert_eq!(side["product_key"], "a1B2c3D4e5F");
    assert_eq!(side["device_name"], "cam-01");
    assert_eq!(side["format"], "v2");
    assert_eq!(side["pid"], 9);
    assert_eq!(side["missing"], serde_json::json!([2, 4, 5]));
    assert_eq!(side["missing_count"], 3);
    assert_eq!(side["bytes"], 3);
    assert_eq!(side["time"], "2026-11-26T12:27:10.123Z");
    assert_eq!(side["time_ms"], T);
    assert_eq!(side["messages"], 2);
    assert_eq!(side["data_file"], "20261126T122710.123Z-missing_chunk.bin");
    // Never a .jpg, never under the output folder.
    assert!(files(sink.output_dir()).is_empty());
    assert!(files(sink.state_dir()).iter().all(|f| !f.ends_with(".jpg")));
}

#[test]
fn quarantine_is_idempotent_and_suffixes_other_content() {
    let (_tmp, sink) = sink();
    let q = quarantined("cam-01", vec![1, 2, 3]);
    let first = sink.quarantine(&q).unwrap();
    let again = sink.quarantine(&q).unwrap();
    assert!(again.already_present);
    assert_eq!(again.path, first.path);
    // Same bytes, different reason detail: a different record.
    let mut other = q.clone();
    other.detail = "something else".into();
    let w = sink.quarantine(&other).unwrap();
    assert!(
        w.path.ends_with("20261126T122710.123Z-missing_chunk-1.bin"),
        "{w:?}"
    );
    assert_eq!(files(&sink.quarantine_dir()).len(), 4);
}

#[test]
fn quarantine_restores_a_sidecar_lost_in_a_crash() {
    let (_tmp, sink) = sink();
    let q = quarantined("cam-01", vec![5; 10]);
    let w = sink.quarantine(&q).unwrap();
    let json = w.path.with_extension("json");
    let want = std::fs::read(&json).unwrap();
    std::fs::remove_file(&json).unwrap();
    let again = sink.quarantine(&q).unwrap();
    assert!(again.already_present);
    assert_eq!(std::fs::read(&json).unwrap(), want);
}

#[test]
fn quarantine_caps_the_missing_list() {
    let (_tmp, sink) = sink();
    let mut q = quarantined("cam-01", vec![]);
    q.missing = (0..5000).collect();
    let w = sink.quarantine(&q).unwrap();
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(side["missing_count"], 5000);
    assert_eq!(side["missing_truncated"], true);
    assert_eq!(side["missing"].as_array().unwrap().len(), 1000);
}

#[test]
fn stale_temp_files_are_removed() {
    let (_tmp, sink) = sink();
    let w = sink.write_image(&finished("cam-01", jpeg(1, 10))).unwrap();
    let dir = w.path.parent().unwrap();
    std::fs::write(dir.join(".20261126T122710.123Z.jpg.1-0.tmp"), b"junk").unwrap();
    let q = sink.quarantine(&quarantined("cam-01", vec![1])).unwrap();
    std::fs::write(q.path.parent().unwrap().join(".x.bin.1-1.tmp"), b"junk").unwrap();
    assert_eq!(sink.remove_stale_temp_files().unwrap(), 2);
    assert_eq!(files(sink.output_dir()).len(), 1);
    assert_eq!(files(&sink.quarantine_dir()).len(), 2);
}

#[test]
fn errors_carry_the_path() {
    let (_tmp, sink) = sink();
    // A file where the product folder should be.
    std::fs::write(sink.output_dir().join("a1B2c3D4e5F"), b"").unwrap();
    let e = sink
        .write_image(&finished("cam-01", jpeg(1, 10)))
        .unwrap_err();
    assert!(
        e.path().starts_with(sink.output_dir().join("a1B2c3D4e5F")),
        "{e}"
    );
    assert!(e.io_kind().is_some());
    assert!(!e.is_disk_full());
}

proptest! {
    #[test]
    fn component_is_one_normal_component_and_reversible(s in any::<String>()) {
        let c = encode_component(&s);
        let parts: Vec<_> = Path::new(&c).components().collect();
        prop_assert_eq!(parts.len(), 1);
        prop_assert!(matches!(parts[0], Component::Normal(_)));
        prop_assert!(!c.starts_with('.'));
        prop_assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)));
        prop_assert_eq!(decode_component(&c), Some(s));
    }

    #[test]
    fn component_handles_hostile_text(
        s in prop_oneof![
            "[./\\\\\0:%@]{0,12}",
            "\\PC{0,40}",
            ".{200,400}",
            "[A-Za-z0-9_@.:-]{4,32}",
        ]
    ) {
        let c = encode_component(&s);
        let parts: Vec<_> = Path::new(&c).components().collect();
        prop_assert_eq!(parts.len(), 1);
        prop_assert!(matches!(parts[0], Component::Normal(_)));
        prop_assert_eq!(decode_component(&c), Some(s));
    }

    #[test]
    fn component_is_injective(a in "[./a%:A2E-]{0,8}", b in "[./a%:A2E-]{0,8}") {
        prop_assume!(a != b);
        prop_assert_ne!(encode_component(&a), encode_component(&b));
    }

    #[test]
    fn decode_accepts_only_canonical(c in "[A-Za-z0-9_%.-]{0,12}") {
        if let Some(s) = decode_component(&c) {
            prop_assert_eq!(encode_component(&s), c);
        }
    }

    #[test]
    fn device_dir_is_two_levels_below_output(pk in any::<String>(), dn in any::<String>()) {
        let (_tmp, s) = sink();
        let d = s.device_dir(&DeviceId::new(&pk, &dn));
        let rel = d.strip_prefix(s.output_dir()).unwrap();
        let parts: Vec<_> = rel.components().collect();
        prop_assert_eq!(parts.len(), 2);
        prop_assert!(parts.iter().all(|c| matches!(c, Component::Normal(_))));
    }
}

#[test]
fn retract_moves_the_matching_written_image_to_quarantine() {
    let root = tempfile::tempdir().unwrap();
    let sink = Sink::new(root.path().join("out"), root.path().join("state")).unwrap();
    let (a, b) = (jpeg(1, 300), jpeg(2, 300));
    let wa = sink.write_image(&finished("cam", a.clone())).unwrap();
    // Same name time, other content: `-1`; only the matching one is taken back.
    let wb = sink.write_image(&finished("cam", b.clone())).unwrap();
    assert_ne!(wa.path, wb.path);
    let r = receiver::assembler::Retraction {
        device: DeviceId::new("a1B2c3D4e5F", "cam"),
        name_time_ms: T,
        size: b.len() as u64,
        crc: receiver::wire::crc32(&b),
        detail: "test".into(),
    };
    let (from, to) = sink.retract(&r).unwrap().expect("found");
    assert_eq!(from, wb.path);
    assert!(!wb.path.exists() && wa.path.exists());
    assert_eq!(std::fs::read(&to).unwrap(), b);
    let sidecar = std::fs::read_to_string(to.with_extension("json")).unwrap();
    assert!(sidecar.contains("retracted"), "{sidecar}");
    // Gone already: nothing to do, no error.
    assert_eq!(sink.retract(&r).unwrap(), None);
}

/// The folder keeps each picture's wire format with its file (an extended attribute), so the
/// gallery's index rebuilt at start-up knows v1 from v2; a picture without it lists as unknown.
#[test]
fn listed_pictures_keep_their_wire_format() {
    use receiver::output::Output as _;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::new(dir.path().join("out"), dir.path().join("state")).unwrap();
    let mut v1 = finished("cam-v1", jpeg(1, 40));
    v1.format = Format::V1;
    v1.pid = None;
    let v2 = finished("cam-v2", jpeg(2, 40));
    sink.write_image(&v1).unwrap();
    sink.write_image(&v2).unwrap();
    // A file put there by hand has no attribute.
    let other = dir
        .path()
        .join("out/a1B2c3D4e5F/cam-v2/20261126T122711.000Z.jpg");
    std::fs::write(&other, jpeg(3, 40)).unwrap();
    let mut listed: Vec<(String, String, Option<&str>)> = sink
        .output()
        .list_pictures()
        .unwrap()
        .into_iter()
        .map(|p| (p.device.device_name.to_string(), p.name, p.format))
        .collect();
    listed.sort();
    // Whether this file system keeps user attributes (ext4, xfs, btrfs and tmpfs do).
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"x").unwrap();
    let c = std::ffi::CString::new(probe.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated names, a 1-byte value.
    let supported = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"user.probe".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    } == 0;
    let (f1, f2) = if supported {
        (Some("v1"), Some("v2"))
    } else {
        eprintln!("this file system has no user extended attributes: formats are unknown");
        (None, None)
    };
    assert_eq!(
        listed,
        vec![
            ("cam-v1".into(), "20261126T122710.123Z.jpg".into(), f1),
            ("cam-v2".into(), "20261126T122710.123Z.jpg".into(), f2),
            ("cam-v2".into(), "20261126T122711.000Z.jpg".into(), None),
        ]
    );
}
