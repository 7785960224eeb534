//! The gallery in a real browser: Debian's `chromium`, driven through `chromedriver`
//! (WebDriver) with fantoccini, against the real daemon fed by the fake endpoint. Each test
//! starts chromedriver on a free loopback port with a temporary profile and stops it at the end;
//! screenshots of every page go to `target/gallery-screenshots/`.
//!
//! Without chromium and chromedriver the tests say so loudly and pass without running
//! (`scripts/test.sh` installs both when it runs as root, as in CI).

use crate::support::harness::*;
use crate::web::{bad_picture, gallery, picture_names, upload, HOSTILE, PK};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use receiver::message::DeviceId;
use receiver::web::camera_url;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver and a browser session; chromedriver is killed on drop.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// `None` (after a loud message) when chromium or chromedriver is missing.
    async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!(
                "\n\n*** SKIPPED: the gallery's browser tests need Debian's chromium and \
                 chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); `scripts/test.sh` installs them \
                 when run as root, or: apt-get install chromium chromium-driver ***\n"
            );
            return None;
        }
        let port = crate::support::http::free_port();
        let profile = tempfile::tempdir().unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.as_object().unwrap().clone());
        let client = builder
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        Some(Browser {
            client: Some(client),
            driver,
            _profile: profile,
        })
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn goto(&self, addr: SocketAddr, path: &str) {
        self.c()
            .goto(&format!("http://{addr}{path}"))
            .await
            .unwrap();
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.c().execute(script, vec![]).await.unwrap()
    }

    /// No alert/confirm/prompt dialog is open.
    async fn assert_no_dialog(&self, at: &str) {
        if let Ok(text) = self.c().get_alert_text().await {
            panic!("a dialog opened on {at}: {text:?}");
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn wait_js(&self, what: &str, limit: Duration, script: &str) -> Duration {
        let started = Instant::now();
        loop {
            if self.js(script).await == serde_json::Value::Bool(true) {
                return started.elapsed();
            }
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("gallery-screenshots")
}

/// Every thumbnail on the page has loaded (naturalWidth > 0), and there are `n` cards.
const ALL_THUMBS_LOADED: &str = "const imgs = Array.from(document.querySelectorAll('#grid img'));
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (h, addr) = gallery(None).await;
    let mut names = vec!["cam-01", "cam-02"];
    names.extend_from_slice(HOSTILE);
    upload(&h, &names, 500).await;
    // Two more for cam-01, so its page has three in time order.
    upload(&h, &["cam-01"], 510).await;
    upload(&h, &["cam-01"], 520).await;
    bad_picture(&h, "bad-cam", 530);
    h.wait_metrics("quarantined", WAIT, |m| {
        m.quarantined_count("crc_mismatch") >= 1
    })
    .await;

    // The grid: every camera, every thumbnail loaded, hostile names as text, no dialog.
    b.goto(addr, "/").await;
    b.wait_js(
        "thumbnails loaded",
        Duration::from_secs(10),
        ALL_THUMBS_LOADED,
    )
    .await;
    let shown = b
        .js("return Array.from(document.querySelectorAll('#grid article.card')).map(c => c.querySelector('.dn').textContent);")
        .await;
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut got = shown.clone();
    got.sort();
    assert_eq!(got, want, "cameras on the grid");
    let injected = b
        .js("return document.querySelectorAll('#grid img:not(.thumb)').length;")
        .await;
    assert_eq!(injected, serde_json::json!(0), "an <img> came from a name");
    b.assert_no_dialog("/").await;
    b.screenshot("grid").await;

    // A picture that arrives while the page is open replaces the thumbnail, without a reload.
    b.js("window.__marker = 1; return true;").await;
    let before = b
        .js("for (const c of document.querySelectorAll('#grid article.card')) { if (c.dataset.dn === 'cam-02') return c.querySelector('img').getAttribute('src'); } return null;")
        .await;
    upload(&h, &["cam-02"], 540).await;
    let written = Instant::now();
    let script = format!(
        "for (const c of document.querySelectorAll('#grid article.card')) {{
            if (c.dataset.dn === 'cam-02') {{ const i = c.querySelector('img');
              return i.getAttribute('src') !== {before} && i.complete && i.naturalWidth > 0 && window.__marker === 1; }} }}
         return false;"
    );
    b.wait_js("live thumbnail", Duration::from_secs(2), &script)
        .await;
    let live = written.elapsed();
    eprintln!("new picture on the open grid {live:?} after it was written");
    assert!(live < Duration::from_secs(2));
    // A camera never seen before appears too.
    upload(&h, &["cam-new"], 550).await;
    b.wait_js(
        "new camera card",
        Duration::from_secs(2),
        "return Array.from(document.querySelectorAll('#grid article.card')).some(c => c.dataset.dn === 'cam-new' && c.querySelector('img').naturalWidth > 0);",
    )
    .await;
    b.screenshot("grid-live").await;

    // The camera page: previous/next and the arrow keys walk the pictures in time order.
    let cam = DeviceId::new(PK, "cam-01");
    let files = picture_names(&h, &cam);
    assert_eq!(files.len(), 3, "{files:?}");
    b.goto(addr, &camera_url(&cam)).await;
    b.wait_js(
        "camera thumbnails",
        Duration::from_secs(10),
        "const i = Array.from(document.querySelectorAll('#pictures img')); return i.length === 3 && i.every(x => x.naturalWidth > 0);",
    )
    .await;
    b.screenshot("camera").await;
    let shown_name = || async {
        let v = b
            .js("const v = document.getElementById('viewer'); if (v.hidden) return null; return document.querySelectorAll('#pictures a.pic')[Number(v.dataset.index)].dataset.name;")
            .await;
        v.as_str().map(str::to_owned)
    };
    b.c()
        .find(Locator::Css("#pictures a.pic"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(shown_name().await.as_deref(), Some(files[0].as_str()));
    let body = b.c().find(Locator::Css("body")).await.unwrap();
    body.send_keys(&Key::Right.to_string()).await.unwrap();
    assert_eq!(shown_name().await.as_deref(), Some(files[1].as_str()));
    b.c()
        .find(Locator::Id("next"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(shown_name().await.as_deref(), Some(files[2].as_str()));
    body.send_keys(&Key::Right.to_string()).await.unwrap();
    assert_eq!(
        shown_name().await.as_deref(),
        Some(files[2].as_str()),
        "stays at the last"
    );
    body.send_keys(&Key::Left.to_string()).await.unwrap();
    assert_eq!(shown_name().await.as_deref(), Some(files[1].as_str()));
    b.c()
        .find(Locator::Id("prev"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(shown_name().await.as_deref(), Some(files[0].as_str()));
    b.wait_js(
        "full picture shown",
        Duration::from_secs(5),
        "const i = document.getElementById('vimg'); return i.complete && i.naturalWidth === 320;",
    )
    .await;
    // The time-lapse plays the day's pictures from the first to the last (Escape closes the
    // viewer first: it covers the play button).
    body.send_keys(&Key::Escape.to_string()).await.unwrap();
    assert_eq!(shown_name().await, None, "Escape closes the viewer");
    b.c()
        .find(Locator::Id("play"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(shown_name().await.as_deref(), Some(files[0].as_str()));
    let started = Instant::now();
    while shown_name().await.as_deref() != Some(files[2].as_str()) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "time-lapse did not reach the end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let format = b
        .js("return document.getElementById('vformat').textContent;")
        .await;
    assert_eq!(
        format,
        serde_json::json!("v2"),
        "format shown in the viewer"
    );
    b.screenshot("viewer").await;

    // The hostile camera's own page: text, no dialog.
    let hostile = DeviceId::new(PK, HOSTILE[0]);
    b.goto(addr, &camera_url(&hostile)).await;
    let title = b
        .js("return document.querySelector('h1 .dn').textContent;")
        .await;
    assert_eq!(title, serde_json::json!(HOSTILE[0]));
    b.assert_no_dialog("the hostile camera's page").await;
    b.screenshot("camera-hostile").await;

    // Quarantine: the bad picture's reason.
    b.goto(addr, "/quarantine").await;
    let reasons = b
        .js("return Array.from(document.querySelectorAll('td.reason')).map(t => t.textContent);")
        .await;
    assert!(
        reasons
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "crc_mismatch"),
        "{reasons}"
    );
    b.screenshot("quarantine").await;
    b.goto(addr, "/status").await;
    b.screenshot("status").await;
    b.assert_no_dialog("/status").await;
    b.close().await;
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_password_every_page_is_401_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    // Not loopback, so a password is required.
    let mut h = Harness::new(1).await;
    h.config.web.listen = Some("0.0.0.0:0".parse().unwrap());
    h.config.web.password = Some(receiver::config::Secret::new("browser-pass"));
    h.start();
    h.wait_links().await;
    upload(&h, &["cam-01"], 600).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some(a) = h.shared.web_addr.get() {
            break a.port();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cam = DeviceId::new(PK, "cam-01");
    let name = picture_names(&h, &cam).pop().unwrap();
    b.goto(addr, "/").await;
    b.screenshot("unauthorized").await;
    // Chromium answers a 401 with an authentication prompt that headless mode cancels: the
    // page is then its error page, and the navigation's status is the server's answer.
    let pages = [
        "/".to_owned(),
        "/status".into(),
        "/quarantine".into(),
        "/events".into(),
        "/assets/app.css".into(),
        "/assets/app.js".into(),
        "/nope".into(),
        camera_url(&cam),
        receiver::web::picture_url("picture", &cam, &name),
        receiver::web::picture_url("thumb", &cam, &name),
    ];
    for p in &pages {
        b.goto(addr, p).await;
        let status = b
            .js("return performance.getEntriesByType('navigation').map(e => e.responseStatus);")
            .await;
        assert_eq!(status, serde_json::json!([401]), "{p}");
        let text = b
            .js("return document.body ? document.body.innerText : '';")
            .await;
        let text = text.as_str().unwrap_or("");
        assert!(
            !text.contains("cam-01") && !text.contains("receiver_"),
            "{p}: {text}"
        );
    }
    b.close().await;
    drop(h);
}
