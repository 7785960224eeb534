//! `receiver demo` (the README's "run the main job" command) from the real binary: it must exit 0
//! after verifying every image, and the images must be real JPEGs in the output folder.

use std::process::Command;

#[test]
fn demo_command_produces_verified_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo-images");
    let run = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .args([
            "demo",
            "--cameras",
            "3",
            "--pictures",
            "2",
            "--cut-after",
            "15",
        ])
        .args(["--duplicates", "4", "--timeout", "60", "--out"])
        .arg(&out)
        .output()
        .expect("run receiver demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("verified 6/6 images byte for byte"),
        "{stdout}"
    );
    let mut jpegs = 0;
    for pk in std::fs::read_dir(&out).expect("out") {
        for dn in std::fs::read_dir(pk.expect("pk").path()).expect("pk dir") {
            for f in std::fs::read_dir(dn.expect("dn").path()).expect("dn dir") {
                let bytes = std::fs::read(f.expect("file").path()).expect("read");
                assert!(
                    image::load_from_memory(&bytes).is_ok(),
                    "not a decodable JPEG"
                );
                jpegs += 1;
            }
        }
    }
    assert_eq!(jpegs, 6);
}
