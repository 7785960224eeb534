//! The gallery: a read-only web view of the cameras' pictures, served by the daemon on
//! `[web] listen` (docs/operations.md, "The gallery").
//!
//! - [`WebConfig`]: `[web]` validated (parsing is in `crate::config`);
//! - [`index`]: the in-memory camera index, built from the output at start-up and kept current
//!   by the [`index::IndexedOutput`] the engine writes through;
//! - [`pages`]: the HTML (maud: compiled into the binary, every interpolation escaped);
//! - this module: the routes, authentication, thumbnails, the quarantine listing, the live
//!   updates (server-sent events) and the status samples.
//!
//! **Names in URLs.** A camera's product key and device name go into a URL path segment as
//! their safe-name mapping ([`crate::sink::encode_component`]) with `%` escaped again, so that no
//! name can become `.`/`..` or a `/` in the browser's eyes; the server undoes both and looks the
//! camera up in the index. Nothing from a URL is ever joined to a file path: pictures are read
//! by index entry through [`Output::read_picture`], quarantined files by the entry the scan of
//! the quarantine folder found.

pub mod index;
pub mod pages;

use crate::message::DeviceId;
use crate::metrics::Metrics;
use crate::output::Output;
use crate::sink::{decode_component, encode_component};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use index::Index;
use receiver_protocol::secret::{Secret, SecretSource};
use serde::Serialize;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

/// `[web]`: the gallery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// Address to listen on; `None` (the default) = no gallery. May equal `[metrics] listen`:
    /// then one listener serves both.
    pub listen: Option<SocketAddr>,
    /// The password of user `admin` (HTTP basic auth); `None` = no authentication (loopback only:
    /// validation refuses another address without one).
    pub password: Option<Secret>,
}

/// As the config file writes it: `listen`, and `password_file` naming where the password came
/// from (never the password).
impl Serialize for WebConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if let Some(listen) = self.listen {
            map.serialize_entry("listen", &listen.to_string())?;
        }
        if let Some(SecretSource::File(file)) = self.password.as_ref().and_then(Secret::source) {
            map.serialize_entry("password_file", &file.to_string_lossy())?;
        }
        map.end()
    }
}

/// The user name of the gallery's basic authentication.
pub const USER: &str = "admin";

/// The Content-Security-Policy of every response: our own scripts, styles and images only, no
/// inline script or style, no frames, no forms elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

/// Thumbnails made at once (each one decode + resize + encode, on the blocking pool).
const THUMB_WORKERS: usize = 2;
/// Thumbnail bounding box.
const THUMB_SIZE: (u32, u32) = (320, 240);
/// How often the status page's message rate is sampled, and how many samples it keeps.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAMPLES: usize = 120;

/// Why a gallery request failed (logged; the client gets a status without details).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The output could not be read.
    #[error("cannot read the picture: {0}")]
    Output(#[from] crate::sink::SinkError),
    /// The thumbnail cache could not be written.
    #[error("cannot cache a thumbnail at {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The picture does not decode as a JPEG.
    #[error("cannot make a thumbnail: {0}")]
    Image(#[from] image::ImageError),
    /// A blocking task failed.
    #[error("internal task failure: {0}")]
    Task(String),
}

/// One quarantined picture, as its sidecar describes it.
#[derive(Debug, Clone)]
pub struct QuarantineItem {
    /// Its camera.
    pub device: DeviceId,
    /// The data file's name (`<time>-<reason>[-n].bin`).
    pub file: String,
    /// The data file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
    /// Details (e.g. which chunks were missing).
    pub detail: String,
    /// When (the picture's time), ms.
    pub time_ms: i64,
    /// Its size.
    pub bytes: u64,
    /// `v1`/`v2`, when known.
    pub format: Option<String>,
    /// How many chunks were missing.
    pub missing_count: u64,
}

/// The gallery's shared state.
#[derive(Debug)]
pub struct Gallery {
    /// The camera index.
    pub index: Arc<Index>,
    output: Arc<dyn Output>,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    password: Option<Secret>,
    thumbs: Semaphore,
    quarantine: Mutex<(u64, i64, Arc<Vec<QuarantineItem>>)>,
    samples: Mutex<VecDeque<(i64, u64)>>,
    /// Cancelled at shutdown: ends the live-update streams, which would otherwise hold their
    /// connections (and the shutdown) open.
    closing: CancellationToken,
}

impl Gallery {
    /// The gallery over `output` (read through the same seam the engine writes through),
    /// `index` (fill it with [`Gallery::load_index`]), the local quarantine under `state_dir`.
    pub fn new(
        index: Arc<Index>,
        output: Arc<dyn Output>,
        state_dir: &Path,
        metrics: Arc<Metrics>,
        password: Option<Secret>,
    ) -> Arc<Gallery> {
        Arc::new(Gallery {
            index,
            output,
            state_dir: state_dir.to_owned(),
            metrics,
            password,
            thumbs: Semaphore::new(THUMB_WORKERS),
            quarantine: Mutex::new((u64::MAX, 0, Arc::new(Vec::new()))),
            samples: Mutex::new(VecDeque::new()),
            closing: CancellationToken::new(),
        })
    }

    /// Lists the output once into the index (blocking: call from a blocking thread).
    pub fn load_index(&self) -> Result<usize, WebError> {
        let pictures = self.output.list_pictures()?;
        let n = pictures.len();
        self.index.extend(pictures);
        Ok(n)
    }

    /// The routes of the gallery (authentication and security headers included).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(grid))
            .route("/camera/{pk}/{dn}", get(camera))
            .route("/picture/{pk}/{dn}/{name}", get(picture))
            .route("/thumb/{pk}/{dn}/{name}", get(thumb))
            .route("/quarantine", get(quarantine))
            .route("/quarantine/raw/{pk}/{dn}/{file}", get(quarantine_raw))
            .route(
                "/quarantine/preview/{pk}/{dn}/{file}",
                get(quarantine_preview),
            )
            .route("/status", get(status))
            .route("/events", get(events))
            .route("/assets/app.css", get(css))
            .route("/assets/app.js", get(js))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(self.clone(), auth))
            .with_state(self.clone())
    }

    /// The quarantined pictures, newest first: the quarantine folder is scanned again only when
    /// the quarantine counters moved (or a minute passed), not per request.
    pub fn quarantined(&self) -> Arc<Vec<QuarantineItem>> {
        let total = self.metrics.quarantined_total();
        let now = receiver_protocol::time::now_ms() as i64;
        if let Ok(q) = self.quarantine.lock() {
            if q.0 == total && now - q.1 < 60_000 {
                return q.2.clone();
            }
        }
        let items = Arc::new(scan_quarantine(&self.state_dir.join("quarantine")));
        if let Ok(mut q) = self.quarantine.lock() {
            *q = (total, now, items.clone());
        }
        items
    }

    /// Messages per second over the last minutes: (time ms, rate).
    pub fn rates(&self) -> Vec<(i64, f64)> {
        let Ok(s) = self.samples.lock() else {
            return Vec::new();
        };
        s.iter()
            .zip(s.iter().skip(1))
            .map(|(a, b)| {
                let dt = ((b.0 - a.0) as f64 / 1000.0).max(0.001);
                (b.0, b.1.saturating_sub(a.1) as f64 / dt)
            })
            .collect()
    }

    /// Samples the message counter every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn sample(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let now = receiver_protocol::time::now_ms() as i64;
                    if let Ok(mut s) = self.samples.lock() {
                        s.push_back((now, self.metrics.messages_total()));
                        while s.len() > SAMPLES {
                            s.pop_front();
                        }
                    }
                }
            }
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Starts the gallery on `listen`: binds (an error stops the start-up), fills the index from the
/// output in the background, samples the status counters, and serves until `shutdown`. With
/// `ops` (the `[metrics]` listener is the same address) `/healthz` and `/metrics` are served
/// here too, without the password. Returns the bound address and the tasks.
pub async fn start(
    listen: SocketAddr,
    gallery: Arc<Gallery>,
    ops: Option<crate::ops::HealthConfig>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Vec<tokio::task::JoinHandle<()>>), crate::ops::http::HttpError> {
    let listener = crate::ops::http::bind(listen).await?;
    let bound = listener.local_addr().unwrap_or(listen);
    let mut app = gallery.router();
    if let Some(health) = ops {
        app = crate::ops::http::ops_routes(gallery.metrics.clone(), health).merge(app);
    }
    let app = security_headers(app);
    let mut tasks = Vec::new();
    let g = gallery.clone();
    tasks.push(tokio::spawn(async move {
        let started = std::time::Instant::now();
        let g2 = g.clone();
        match tokio::task::spawn_blocking(move || g2.load_index()).await {
            Ok(Ok(n)) => tracing::info!(
                pictures = n,
                cameras = g.index.camera_count(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "gallery index built"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot list the output for the gallery"),
            Err(e) => tracing::warn!(error = %e, "gallery index task failed"),
        }
    }));
    tasks.push(tokio::spawn(gallery.clone().sample(shutdown.clone())));
    let closing = gallery.closing.clone();
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        stop.cancelled().await;
        closing.cancel();
    }));
    tasks.push(tokio::spawn(crate::ops::http::serve_router(
        listener,
        app,
        crate::ops::http::ServeOptions::gallery(gallery.metrics.clone()),
        shutdown,
    )));
    tracing::info!(addr = %bound, password = gallery.password.is_some(), "serving the gallery");
    Ok((bound, tasks))
}

/// Reads every sidecar `<quarantine>/<pk>/<dn>/*.json`, newest first.
fn scan_quarantine(base: &Path) -> Vec<QuarantineItem> {
    #[derive(serde::Deserialize)]
    struct Sidecar {
        reason: String,
        #[serde(default)]
        detail: String,
        #[serde(default)]
        format: Option<String>,
        #[serde(default)]
        missing_count: u64,
        #[serde(default)]
        bytes: u64,
        #[serde(default)]
        time_ms: i64,
    }
    let dirs = |p: &Path| -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for pk in dirs(base) {
        for dn in dirs(&pk.path()) {
            let (Some(pk_s), Some(dn_s)) = (
                pk.file_name().to_str().map(str::to_owned),
                dn.file_name().to_str().map(str::to_owned),
            ) else {
                continue;
            };
            let Some(device) = crate::sink::device_from_components(&pk_s, &dn_s) else {
                continue;
            };
            for f in dirs(&dn.path()) {
                let path = f.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let bin = path.with_extension("bin");
                let Some(file) = bin.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                    continue;
                };
                if file.starts_with('.') {
                    continue;
                }
                let Ok(text) = std::fs::read(&path) else {
                    continue;
                };
                let Ok(s) = serde_json::from_slice::<Sidecar>(&text) else {
                    continue;
                };
                out.push(QuarantineItem {
                    device: device.clone(),
                    file,
                    path: bin,
                    reason: s.reason,
                    detail: s.detail,
                    time_ms: s.time_ms,
                    bytes: s.bytes,
                    format: s.format,
                    missing_count: s.missing_count,
                });
            }
        }
    }
    out.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(a.file.cmp(&b.file)));
    out
}

/// A name as one URL path segment: its safe-name mapping with `%` escaped again.
pub fn url_segment(name: &str) -> String {
    encode_component(name).replace('%', "%25")
}

/// The name a decoded URL segment stands for (the inverse of [`url_segment`] after axum's
/// percent-decoding).
fn from_segment(s: &str) -> Option<String> {
    decode_component(s)
}

fn device_of(pk: &str, dn: &str) -> Option<DeviceId> {
    Some(DeviceId::new(&from_segment(pk)?, &from_segment(dn)?))
}

/// `/camera/<pk>/<dn>`.
pub fn camera_url(d: &DeviceId) -> String {
    format!(
        "/camera/{}/{}",
        url_segment(&d.product_key),
        url_segment(&d.device_name)
    )
}

/// `/picture/<pk>/<dn>/<name>` (`kind` = `picture` or `thumb`).
pub fn picture_url(kind: &str, d: &DeviceId, name: &str) -> String {
    format!(
        "/{kind}/{}/{}/{}",
        url_segment(&d.product_key),
        url_segment(&d.device_name),
        url_segment(name)
    )
}

/// Checks `Authorization: Basic` against `admin:<password>` in constant time.
fn authorized(headers: &HeaderMap, password: &Secret) -> bool {
    use base64::Engine as _;
    use subtle::ConstantTimeEq;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
    else {
        return false;
    };
    let expected = format!("{USER}:{}", password.expose());
    bool::from(given.as_slice().ct_eq(expected.as_bytes()))
}

async fn auth(
    State(g): State<Arc<Gallery>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match &g.password {
        Some(p) if !authorized(req.headers(), p) => (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"receiver gallery\", charset=\"UTF-8\"",
                ),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "authentication required\n",
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// The security headers of every gallery response.
pub fn security_headers(router: Router) -> Router {
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

async fn not_found() -> Response {
    crate::ops::http::text(StatusCode::NOT_FOUND, "not found")
}

fn html(markup: maud::Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

fn server_error(e: &WebError) -> Response {
    tracing::warn!(error = %e, "gallery request failed");
    crate::ops::http::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Query of `/`: a name filter and the page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct GridQuery {
    /// Shown are cameras whose product key or device name contains this (case ignored).
    #[serde(default)]
    pub q: String,
    /// 0-based page.
    #[serde(default)]
    pub page: usize,
}

async fn grid(State(g): State<Arc<Gallery>>, Query(q): Query<GridQuery>) -> Response {
    let now = receiver_protocol::time::now_ms() as i64;
    let quarantined = g.quarantined();
    html(pages::grid(&g.index, &quarantined, &q, now))
}

/// Query of `/camera/..`: which day (`YYYY-MM-DD`, UTC; default the latest).
#[derive(Debug, Default, serde::Deserialize)]
pub struct DayQuery {
    /// The day shown.
    #[serde(default)]
    pub day: Option<String>,
}

async fn camera(
    State(g): State<Arc<Gallery>>,
    UrlPath((pk, dn)): UrlPath<(String, String)>,
    Query(q): Query<DayQuery>,
) -> Response {
    let Some(cam) = device_of(&pk, &dn).and_then(|d| g.index.camera(&d)) else {
        return not_found().await;
    };
    html(pages::camera(&cam, q.day.as_deref()))
}

/// Looks a picture up in the index (so a name that is not there is a 404, whatever it is).
fn indexed(g: &Gallery, pk: &str, dn: &str, name: &str) -> Option<(DeviceId, String)> {
    let d = device_of(pk, dn)?;
    let name = from_segment(name)?;
    g.index.has(&d, &name).then_some((d, name))
}

#[derive(Debug, Default, serde::Deserialize)]
struct DownloadQuery {
    #[serde(default)]
    download: Option<String>,
}

async fn picture(
    State(g): State<Arc<Gallery>>,
    UrlPath((pk, dn, name)): UrlPath<(String, String, String)>,
    Query(q): Query<DownloadQuery>,
) -> Response {
    let Some((d, name)) = indexed(&g, &pk, &dn, &name) else {
        return not_found().await;
    };
    let output = g.output.clone();
    let read = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || output.read_picture(&d, &name)).await
    };
    match read {
        Ok(Ok(Some(bytes))) => {
            let mut r = jpeg(bytes, "private, max-age=31536000, immutable");
            if q.download.is_some() {
                // `name` is a picture name: ASCII letters, digits, '.' and '-' only.
                if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                    r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
                }
            }
            r
        }
        Ok(Ok(None)) => {
            forget(&g, &pk, &dn, &name);
            not_found().await
        }
        Ok(Err(e)) => server_error(&WebError::Output(e)),
        Err(e) => server_error(&WebError::Task(e.to_string())),
    }
}

/// A picture the index lists is gone from the output (retention, an operator): take it out of
/// the index and drop its cached thumbnail.
fn forget(g: &Gallery, pk: &str, dn: &str, name: &str) {
    if let Some(d) = device_of(pk, dn) {
        g.index.remove(&d, name);
        let _ = std::fs::remove_file(thumb_path(g, &d, name));
    }
}

/// `<state>/thumbs/<pk>/<dn>/<name>`.
fn thumb_path(g: &Gallery, d: &DeviceId, name: &str) -> PathBuf {
    g.state_dir
        .join("thumbs")
        .join(encode_component(&d.product_key))
        .join(encode_component(&d.device_name))
        .join(name)
}

fn jpeg(bytes: Vec<u8>, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response()
}

/// A JPEG thumbnail of `bytes`, within [`THUMB_SIZE`].
pub fn make_thumbnail(bytes: &[u8]) -> Result<Vec<u8>, WebError> {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)?;
    let small = img.thumbnail(THUMB_SIZE.0, THUMB_SIZE.1).to_rgb8();
    let mut out = Vec::with_capacity(16 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60).encode_image(&small)?;
    Ok(out)
}

/// The cached thumbnail of a picture, made (once) when missing: `<state>/thumbs/<pk>/<dn>/<name>`.
fn cached_thumbnail(g: &Gallery, d: &DeviceId, name: &str) -> Result<Option<Vec<u8>>, WebError> {
    let path = thumb_path(g, d, name);
    let Some(dir) = path.parent().map(Path::to_owned) else {
        return Ok(None);
    };
    if let Ok(b) = std::fs::read(&path) {
        return Ok(Some(b));
    }
    let Some(bytes) = g.output.read_picture(d, name)? else {
        return Ok(None);
    };
    let thumb = make_thumbnail(&bytes)?;
    let cache = |source| WebError::Cache {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(cache)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, &thumb).map_err(cache)?;
    std::fs::rename(&tmp, &path).map_err(cache)?;
    Ok(Some(thumb))
}

async fn thumb(
    State(g): State<Arc<Gallery>>,
    UrlPath((pk, dn, name)): UrlPath<(String, String, String)>,
) -> Response {
    let Some((d, name)) = indexed(&g, &pk, &dn, &name) else {
        return not_found().await;
    };
    // Bounded CPU: at most THUMB_WORKERS thumbnails are made at once.
    let Ok(_permit) = g.thumbs.acquire().await else {
        return not_found().await;
    };
    let g2 = g.clone();
    let gone = name.clone();
    match tokio::task::spawn_blocking(move || cached_thumbnail(&g2, &d, &name)).await {
        Ok(Ok(Some(b))) => jpeg(b, "private, max-age=31536000, immutable"),
        Ok(Ok(None)) => {
            forget(&g, &pk, &dn, &gone);
            not_found().await
        }
        Ok(Err(e)) => server_error(&e),
        Err(e) => server_error(&WebError::Task(e.to_string())),
    }
}

async fn quarantine(State(g): State<Arc<Gallery>>) -> Response {
    html(pages::quarantine(&g.quarantined()))
}

fn quarantined_item(g: &Gallery, pk: &str, dn: &str, file: &str) -> Option<QuarantineItem> {
    let d = device_of(pk, dn)?;
    let file = from_segment(file)?;
    g.quarantined()
        .iter()
        .find(|q| q.device == d && q.file == file)
        .cloned()
}

async fn quarantine_raw(
    State(g): State<Arc<Gallery>>,
    UrlPath((pk, dn, file)): UrlPath<(String, String, String)>,
) -> Response {
    let Some(item) = quarantined_item(&g, &pk, &dn, &file) else {
        return not_found().await;
    };
    match tokio::fs::read(&item.path).await {
        Ok(bytes) => {
            let mut r = (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                bytes,
            )
                .into_response();
            // The file name is the safe-name mapping: ASCII letters, digits, '_', '-', '%', '.'.
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", item.file))
            {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(_) => not_found().await,
    }
}

async fn quarantine_preview(
    State(g): State<Arc<Gallery>>,
    UrlPath((pk, dn, file)): UrlPath<(String, String, String)>,
) -> Response {
    let Some(item) = quarantined_item(&g, &pk, &dn, &file) else {
        return not_found().await;
    };
    let Ok(_permit) = g.thumbs.acquire().await else {
        return not_found().await;
    };
    let made = tokio::task::spawn_blocking(move || {
        std::fs::read(&item.path)
            .ok()
            .and_then(|b| make_thumbnail(&b).ok())
    })
    .await;
    match made {
        Ok(Some(b)) => jpeg(b, "no-store"),
        // The bytes do not decode: no preview.
        _ => not_found().await,
    }
}

async fn status(State(g): State<Arc<Gallery>>) -> Response {
    html(pages::status(
        g.metrics(),
        &g.rates(),
        g.index.camera_count(),
    ))
}

/// What a live page is told about a new picture (JSON: every name escaped by serde_json).
#[derive(Debug, Serialize)]
struct ArrivalJson<'a> {
    pk: &'a str,
    dn: &'a str,
    name: &'a str,
    time_ms: i64,
    iso: String,
    bytes: u64,
    format: Option<&'static str>,
    camera: String,
    picture: String,
    thumb: String,
}

async fn events(State(g): State<Arc<Gallery>>) -> Response {
    let rx = g.index.subscribe();
    let closing = g.closing.clone();
    let stream = futures_util::stream::unfold((rx, closing), |(mut rx, closing)| async move {
        loop {
            let next = tokio::select! {
                _ = closing.cancelled() => return None,
                next = rx.recv() => next,
            };
            match next {
                Ok(a) => {
                    let d = &a.device;
                    let json = ArrivalJson {
                        pk: &d.product_key,
                        dn: &d.device_name,
                        name: &a.picture.name,
                        time_ms: a.picture.time_ms,
                        iso: crate::sink::iso_time(a.picture.time_ms),
                        bytes: a.picture.bytes,
                        format: a.picture.format,
                        camera: camera_url(d),
                        picture: picture_url("picture", d, &a.picture.name),
                        thumb: picture_url("thumb", d, &a.picture.name),
                    };
                    let data = serde_json::to_string(&json).unwrap_or_default();
                    let ev = Event::default().event("picture").data(data);
                    return Some((Ok::<Event, std::convert::Infallible>(ev), (rx, closing)));
                }
                // Too slow a reader: it missed some; carry on with the next.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("app.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_segments_round_trip_hostile_names() {
        for name in [
            "cam-01",
            "<img src=x onerror=alert(1)>",
            "../..",
            "..",
            ".",
            "a/b",
            "q\"u'o`te",
            "\u{202E}evil",
            "",
            "%41",
        ] {
            let seg = url_segment(name);
            assert!(
                seg.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
                "{seg}"
            );
            assert_ne!(seg, "..");
            // What axum's Path extractor hands us: the segment percent-decoded once.
            let decoded = seg.replace("%25", "%");
            assert_eq!(from_segment(&decoded).as_deref(), Some(name), "{name:?}");
        }
    }

    #[test]
    fn basic_auth_is_checked() {
        use base64::Engine as _;
        let pw = Secret::new("pa:ss");
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &pw));
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", enc("admin:pa:ss"))).unwrap(),
        );
        assert!(authorized(&h, &pw));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", enc("admin:pa:sS"))).unwrap(),
        );
        assert!(!authorized(&h, &pw));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", enc("root:pa:ss"))).unwrap(),
        );
        assert!(!authorized(&h, &pw));
    }

    #[test]
    fn thumbnails_are_small_jpegs() {
        let frame = receiver_testkit_free_jpeg();
        let started = std::time::Instant::now();
        let t = make_thumbnail(&frame).unwrap();
        eprintln!(
            "thumbnail of an 800x600 frame ({} bytes): {} bytes in {:?}",
            frame.len(),
            t.len(),
            started.elapsed()
        );
        assert!(t.starts_with(&[0xFF, 0xD8]));
        assert!(t.len() < 15 * 1024, "{}", t.len());
        let img = image::load_from_memory(&t).unwrap();
        assert!(img.width() <= THUMB_SIZE.0 && img.height() <= THUMB_SIZE.1);
        // A real camera frame (the golden QVGA picture).
        let qvga = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/images/qvga.jpg"
        ))
        .unwrap();
        let started = std::time::Instant::now();
        let t = make_thumbnail(&qvga).unwrap();
        eprintln!(
            "thumbnail of qvga.jpg ({} bytes): {} bytes in {:?}",
            qvga.len(),
            t.len(),
            started.elapsed()
        );
        assert!(t.len() < 15 * 1024);
    }

    /// An 800x600 JPEG made here (the test kit is not a dependency of the library's tests).
    fn receiver_testkit_free_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(800, 600, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&img)
            .unwrap();
        out
    }
}
