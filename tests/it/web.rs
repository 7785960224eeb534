//! The gallery over plain HTTP, against the real daemon (`daemon::run_with`) fed by the fake
//! Aliyun endpoint: pages, escaping of hostile names, traversal attempts, 404s, HEAD, the
//! password, thumbnails, the live updates and the quarantine page. The browser tests are in
//! `web_browser`.

use crate::support::harness::*;
use base64::Engine as _;
use receiver::message::DeviceId;
use receiver::web::{camera_url, picture_url, url_segment};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PK: &str = "a1GalleryPK";

/// The hostile names the gallery must show as text (issue 15). `../..` itself cannot arrive:
/// a `/` in a device name breaks the message topic, which the engine skips; `..` can.
pub const HOSTILE: &[&str] = &[
    "<img src=x onerror=alert(1)>",
    "..",
    "q\"u'o`te&amp;",
    "\u{202E}gpj.exe",
];

/// One HTTP/1.1 request with `Connection: close`: (status, head, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((user, pass)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, buf[end + 4..].to_vec())
}

pub async fn get_text(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let (s, h, b) = request(addr, "GET", path, None).await;
    (s, h, String::from_utf8_lossy(&b).into_owned())
}

/// A harness with the gallery on 127.0.0.1:0 (and `password`), started, links attached.
pub async fn gallery(password: Option<&str>) -> (Harness, SocketAddr) {
    let mut h = Harness::new(1).await;
    h.config.web.listen = Some("127.0.0.1:0".parse().unwrap());
    h.config.web.password = password.map(receiver::config::Secret::new);
    h.start();
    h.wait_links().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Some(a) = h.shared.web_addr.get() {
            break *a;
        }
        assert!(Instant::now() < deadline, "gallery never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (h, addr)
}

/// Uploads one v2 picture for each of `names` (product key [`PK`]) and waits until written.
pub async fn upload(h: &Harness, names: &[&str], seed: u32) -> Vec<(DeviceId, Vec<u8>)> {
    let before = h.metrics().images_written();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let d = DeviceId::new(PK, name);
        let img = jpeg(320, 240, seed + i as u32, &format!("{seed}-{i}"));
        let p = v2_picture(&d, &img, seed + i as u32, 600);
        h.publish_all(&p.data_items());
        out.push((d, img));
    }
    h.wait_images(before + names.len() as u64).await;
    out
}

/// The names of `d`'s pictures in the output folder, oldest first.
pub fn picture_names(h: &Harness, d: &DeviceId) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(h.sink().device_dir(d))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jpg") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// A v2 picture whose CRC is wrong: it goes to quarantine (`crc_mismatch`).
pub fn bad_picture(h: &Harness, name: &str, seed: u32) {
    let d = DeviceId::new(PK, name);
    let img = jpeg(64, 48, seed, "bad");
    let p = v2_picture(&d, &img, seed, 600);
    for payload in &p.data {
        let mut v: serde_json::Value = serde_json::from_str(payload).unwrap();
        let img = v["params"]["img"].as_str().unwrap().to_owned();
        let mut f: Vec<String> = img.split(';').map(str::to_owned).collect();
        // The CRC, 8 hex digits: flip its last bit.
        let crc = u32::from_str_radix(&f[5], 16).unwrap() ^ 1;
        f[5] = format!("{crc:08X}");
        v["params"]["img"] = serde_json::Value::String(f.join(";"));
        h.publish(&d, &v.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_hostile_names_and_serve_pictures() {
    let (h, addr) = gallery(None).await;
    let mut names = vec!["cam-01"];
    names.extend_from_slice(HOSTILE);
    let pics = upload(&h, &names, 100).await;

    let (status, head, page) = get_text(addr, "/").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: text/html"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("X-Content-Type-Options: nosniff"), "{head}");
    assert!(
        !page.contains("<img src=x"),
        "raw hostile markup in\n{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    assert!(page.contains("q&quot;u'o`te&amp;amp;"), "{page}");
    assert!(
        page.contains("\u{202E}gpj.exe"),
        "RTL name shown (isolated by CSS)"
    );
    assert!(!page.contains("<script>"), "no inline script");
    for (d, img) in &pics {
        let camera = camera_url(d);
        assert!(page.contains(&camera), "{camera} not linked");
        let (status, _, cam_page) = get_text(addr, &camera).await;
        assert_eq!(status, 200, "{camera}");
        assert!(!cam_page.contains("<img src=x"));
        let name = picture_names(&h, d).pop().expect("a picture");
        let (status, head, body) =
            request(addr, "GET", &picture_url("picture", d, &name), None).await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("Content-Type: image/jpeg"), "{head}");
        assert_eq!(&body, img, "the picture's bytes");
        let (status, head, thumb) =
            request(addr, "GET", &picture_url("thumb", d, &name), None).await;
        assert_eq!(status, 200, "{head}");
        assert!(
            thumb.starts_with(&[0xFF, 0xD8]) && thumb.len() < 15 * 1024,
            "{}",
            thumb.len()
        );
        // Cached under the state folder, made once.
        let cached = h
            .state()
            .join("thumbs")
            .join(receiver::sink::encode_component(PK))
            .join(receiver::sink::encode_component(&d.device_name))
            .join(&name);
        assert_eq!(std::fs::read(&cached).unwrap(), thumb);
        let (status, head, _) = request(
            addr,
            "GET",
            &format!("{}?download=1", picture_url("picture", d, &name)),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            head.contains(&format!(
                "Content-Disposition: attachment; filename=\"{name}\""
            )),
            "{head}"
        );
    }
    // Filter by name.
    let (_, _, filtered) = get_text(addr, "/?q=CAM-0").await;
    assert!(
        filtered.contains("cam-01") && !filtered.contains("gpj.exe"),
        "{filtered}"
    );
    let (status, _, s) = get_text(addr, "/status").await;
    assert_eq!(status, 200);
    assert!(s.contains("<svg") && s.contains("Pictures written"), "{s}");
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_404_head_and_methods() {
    let (h, addr) = gallery(None).await;
    let pics = upload(&h, &["cam-01", ".."], 200).await;
    let d = &pics[0].0;
    let name = picture_names(&h, d).pop().unwrap();
    for path in [
        "/nope",
        "/camera/a1GalleryPK/cam-02",
        "/camera/a1GalleryPK",
        "/camera/..%2F..%2F/x",
        "/camera/%2E%2E/%2E%2E",
        "/camera/a1GalleryPK/..",
        "/picture/a1GalleryPK/cam-01/..%2F..%2F..%2Fetc%2Fpasswd",
        "/picture/a1GalleryPK/cam-01/%2E%2E%252F%2E%2E%252Fspool",
        "/picture/a1GalleryPK/%252E%252E/20231114T221320.000Z.jpg",
        "/thumb/..%252F..%252F/x/y.jpg",
        "/picture/a1GalleryPK/cam-01/20000101T000000.000Z.jpg",
        "/assets/../Cargo.toml",
        "/assets/",
        "/assets",
        "/thumbs/",
        "/quarantine/raw/a/b/..%2F..%2Fspool",
        "/quarantine/preview/%2E%2E/%2E%2E/x",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let (status, head, body) = get_text(addr, path).await;
        assert_eq!(status, 404, "{path}: {head}\n{body}");
        assert!(!body.contains("root:"), "{path}");
    }
    // The real picture is there (so the 404s above are not for lack of one).
    let url = picture_url("picture", d, &name);
    assert_eq!(request(addr, "GET", &url, None).await.0, 200);
    // ".." is a camera like any other, reached through its encoded segment.
    let hostile = DeviceId::new(PK, "..");
    assert_eq!(url_segment(".."), "%252E%252E");
    let (status, _, page) = get_text(addr, &camera_url(&hostile)).await;
    assert_eq!(status, 200);
    assert!(page.contains("<span class=\"dn\">..</span>"), "{page}");

    // HEAD: headers, no body.
    for path in ["/", "/status", url.as_str(), "/assets/app.css"] {
        let (status, head, body) = request(addr, "HEAD", path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.is_empty(), "{path}");
        assert!(
            head.contains("Content-Length: ") && !head.contains("Content-Length: 0"),
            "{path}: {head}"
        );
    }
    // Read-only.
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let (status, head, _) = request(addr, method, "/", None).await;
        assert_eq!(status, 405, "{method}");
        assert!(head.contains("Allow: GET, HEAD"), "{head}");
    }
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guards_every_page_but_not_health() {
    let mut h = Harness::new(1).await;
    // One listener for the gallery and /healthz + /metrics.
    let port = crate::support::http::free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    h.config.web.listen = Some(listen);
    h.config.ops.metrics.listen = Some(listen);
    h.config.web.password = Some(receiver::config::Secret::new("s3cret-gallery"));
    h.start();
    h.wait_links().await;
    let pics = upload(&h, &["cam-01"], 300).await;
    let d = &pics[0].0;
    let name = picture_names(&h, d).pop().unwrap();
    let pages = [
        "/".to_owned(),
        "/status".into(),
        "/quarantine".into(),
        "/events".into(),
        "/assets/app.js".into(),
        "/nope".into(),
        camera_url(d),
        picture_url("picture", d, &name),
        picture_url("thumb", d, &name),
    ];
    for p in &pages {
        let (status, head, _) = request(listen, "GET", p, None).await;
        assert_eq!(status, 401, "{p}");
        assert!(
            head.contains("Www-Authenticate: Basic realm=")
                || head.contains("WWW-Authenticate: Basic realm="),
            "{head}"
        );
        assert_eq!(
            request(listen, "GET", p, Some(("admin", "wrong"))).await.0,
            401,
            "{p}"
        );
        assert_eq!(
            request(listen, "GET", p, Some(("root", "s3cret-gallery")))
                .await
                .0,
            401,
            "{p}"
        );
    }
    for p in &pages[..3] {
        assert_eq!(
            request(listen, "GET", p, Some(("admin", "s3cret-gallery")))
                .await
                .0,
            200,
            "{p}"
        );
    }
    // Prometheus and probes need no password.
    let (status, _, body) = get_text(listen, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("receiver_images_written_total"), "{body}");
    let (status, _, body) = get_text(listen, "/healthz").await;
    assert!(status == 200 || status == 503, "{status}");
    assert!(body.contains("\"status\""), "{body}");
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_and_quarantine() {
    let (h, addr) = gallery(None).await;
    upload(&h, &["cam-01"], 400).await;
    // Listen to the live updates, then upload.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let hostile = HOSTILE[0];
    upload(&h, &[hostile], 410).await;
    let mut seen = Vec::new();
    let text = loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an event in time")
            .unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains("event: picture") && text.contains("onerror") {
            break text;
        }
    };
    let elapsed = started.elapsed();
    eprintln!("live update {elapsed:?} after the upload started");
    assert!(text.contains("Content-Type: text/event-stream"), "{text}");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["dn"], hostile);
    assert_eq!(v["pk"], PK);
    assert_eq!(v["format"], "v2");
    assert!(v["thumb"].as_str().unwrap().starts_with("/thumb/"));

    bad_picture(&h, "bad-cam", 420);
    h.wait_metrics("a quarantined picture", WAIT, |m| {
        m.quarantined_count("crc_mismatch") >= 1
    })
    .await;
    let (status, _, page) = get_text(addr, "/quarantine").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("bad-cam") && page.contains("crc_mismatch"),
        "{page}"
    );
    let raw = page
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|s| s.starts_with("/quarantine/raw/"))
        .expect("raw link")
        .to_owned();
    let (status, head, bytes) = request(addr, "GET", &raw, None).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Disposition: attachment"), "{head}");
    assert!(!bytes.is_empty());
    // The bytes still decode: a preview.
    let preview = raw.replace("/quarantine/raw/", "/quarantine/preview/");
    let (status, _, p) = request(addr, "GET", &preview, None).await;
    assert_eq!(status, 200);
    assert!(p.starts_with(&[0xFF, 0xD8]));
    assert!(h.metrics().images_written() >= 2);
    assert_eq!(h.metrics().io_errors.load(Relaxed), 0);
    // An open live-update stream does not hold the shutdown up: it ends, and the daemon stops.
    let mut h = h;
    let took = h.stop().await;
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?} with a stream open"
    );
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the event stream was not closed");
}

/// A picture removed behind the gallery's back (retention, an operator) is a 404, leaves the
/// index and takes its cached thumbnail with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_picture_leaves_the_index_and_its_thumbnail() {
    let (h, addr) = gallery(None).await;
    upload(&h, &["cam-01"], 700).await;
    upload(&h, &["cam-01"], 710).await;
    let d = DeviceId::new(PK, "cam-01");
    let names = picture_names(&h, &d);
    assert_eq!(names.len(), 2);
    let thumb = picture_url("thumb", &d, &names[0]);
    assert_eq!(request(addr, "GET", &thumb, None).await.0, 200);
    let cached = h
        .state()
        .join("thumbs")
        .join(PK)
        .join("cam-01")
        .join(&names[0]);
    assert!(cached.exists());
    std::fs::remove_file(h.sink().device_dir(&d).join(&names[0])).unwrap();
    // The cached thumbnail is still served until the picture itself is asked for.
    assert_eq!(
        request(addr, "GET", &picture_url("picture", &d, &names[0]), None)
            .await
            .0,
        404
    );
    assert!(!cached.exists(), "thumbnail removed with its picture");
    assert_eq!(request(addr, "GET", &thumb, None).await.0, 404);
    let (_, _, page) = get_text(addr, &camera_url(&d)).await;
    assert!(
        !page.contains(&names[0]) && page.contains(&names[1]),
        "{page}"
    );
    drop(h);
}
