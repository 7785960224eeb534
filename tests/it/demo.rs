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

/// `receiver demo --web`: after the demo the receiver keeps its gallery open, prints the URL,
/// serves the demo's cameras there, and stops cleanly on Ctrl-C (SIGINT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_web_keeps_the_gallery_open() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .args([
            "demo",
            "--cameras",
            "2",
            "--pictures",
            "2",
            "--web",
            "--timeout",
            "60",
            "--out",
        ])
        .arg(dir.path().join("demo-images"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run receiver demo --web");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(90))
            .expect("the gallery's URL is printed");
        if let Some(rest) = line.strip_prefix("gallery: http://") {
            break rest.split('/').next().unwrap().to_owned();
        }
        assert!(!line.contains("failed"), "{line}");
    };
    let addr: std::net::SocketAddr = url.parse().unwrap();
    let (status, _, page) = crate::web::get_text(addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("cam-00") && page.contains("cam-01"), "{page}");
    // SAFETY: kill(2) on our own child, not reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
