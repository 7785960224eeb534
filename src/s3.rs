//! The object-store output (`[output] backend = "s3"`): finished pictures become objects in an
//! S3-compatible bucket (Aliyun OSS, MinIO, Ceph, SeaweedFS, AWS) with the folder output's
//! guarantees. Built on Apache OpenDAL's S3 service (request signing, error mapping); this
//! module adds the naming, the create-only protocol and the error classes the engine needs.
//!
//! # Object keys
//!
//! `<prefix>/<pk>/<dn>/<time>[-n].jpg`, exactly the folder output's relative path under the
//! configured prefix: `<pk>` and `<dn>` are [`encode_component`] of the product key and device
//! name (bytes outside `[A-Za-z0-9_-]` become `%XX`, so a key never holds `..`, `/` inside a
//! component, a leading `/` or a control character, and [`crate::sink::decode_component`]
//! inverts it), `<time>` is [`file_time`] of the picture's name time and `-n` the collision
//! suffix. A picture therefore gets the same key every time it is written: after a crash, a
//! redelivery or a restart.
//!
//! # Writing: complete or absent, exactly once
//!
//! An object is written by one `PutObject` of the whole picture (never multipart), so it is
//! complete or absent. For each candidate key, in order `-0`, `-1`, ...:
//!
//! 1. `PUT` with `If-None-Match: *` (`create_only`, the default): created → done, in one
//!    request.
//! 2. `412` (the key is taken) → `HEAD`: the same size and the same `crc32` user metadata → this
//!    picture was written before (a replay): [`Written::already_present`]; other content → the
//!    next suffix.
//!
//! With `create_only = false` (a store that refuses the header) the `HEAD` comes first and the
//! `PUT` only for an absent key.
//!
//! Within the process two pictures of the same device and millisecond never race for a key:
//! writes of the same name stem are serialized. `write` returns only after the store answered
//! the `PUT` with success, i.e. the object is durable by the store's own definition.
//!
//! # Errors
//!
//! Each failure is a [`SinkError::Store`] with a [`StoreErrorKind`]: time-outs, refused or
//! reset connections, `5xx` and throttling are retryable; wrong credentials, a missing bucket
//! and other `4xx` are not (at start-up they stop the daemon with exit status 2; at run time the
//! engine pauses and retries all the same, since an operator may fix a policy without a
//! restart). Secrets never appear in errors.

use crate::assembler::{Finished, Retraction};
use crate::events::output::{ObjectUploaded, StoreRequestFailed};
use crate::message::DeviceId;
use crate::metrics::Metrics;
use crate::output::{Found, Output};
use crate::sink::{encode_component, file_time, SinkError, StoreErrorKind, Written, MAX_SUFFIX};
use crate::wire;
use opendal::{ErrorKind, Operator};
use std::collections::HashSet;
use std::fmt;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// User-metadata keys written on every object (S3 sends them as `x-amz-meta-<key>`).
pub mod meta {
    /// The product key, verbatim.
    pub const PRODUCT_KEY: &str = "product-key";
    /// The device name, verbatim.
    pub const DEVICE_NAME: &str = "device-name";
    /// The v2 picture id (absent for v1).
    pub const PICTURE_ID: &str = "picture-id";
    /// CRC-32 (IEEE) of the bytes, 8 lower-case hex digits.
    pub const CRC32: &str = "crc32";
    /// `v1` or `v2`.
    pub const FORMAT: &str = "format";
}

/// How to reach the bucket: `[output]` with `backend = "s3"`, validated. `Serialize` writes the
/// config file's keys (the secret as the redaction marker).
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct S3Options {
    /// `http://` or `https://` endpoint.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Signing region.
    pub region: String,
    /// Key prefix without leading or trailing `/` ("" for none).
    pub prefix: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: crate::config::Secret,
    /// `https://<bucket>.<host>/` instead of `https://<host>/<bucket>/` (Aliyun OSS needs it).
    pub virtual_host_style: bool,
    /// Longest time one request (HEAD, PUT, GET, DELETE) may take.
    #[serde(serialize_with = "crate::config::as_toml::duration")]
    pub timeout: Duration,
    /// Most uploads at once.
    pub concurrency: usize,
    /// Storage class for new objects (`None`: the bucket's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Send `If-None-Match: *` with each PUT (turn off only for stores that reject it).
    pub create_only: bool,
    /// Extra trusted CA (PEM) for an `https://` endpoint.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::config::as_toml::opt_path"
    )]
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("virtual_host_style", &self.virtual_host_style)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("storage_class", &self.storage_class)
            .field("create_only", &self.create_only)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl S3Options {
    /// `<prefix>/<pk>/<dn>/` (or `<pk>/<dn>/` without a prefix).
    pub fn device_prefix(&self, device: &DeviceId) -> String {
        let mut key = String::new();
        if !self.prefix.is_empty() {
            key.push_str(&self.prefix);
            key.push('/');
        }
        key.push_str(&encode_component(&device.product_key));
        key.push('/');
        key.push_str(&encode_component(&device.device_name));
        key.push('/');
        key
    }

    /// The key of `device`'s picture named for `name_time_ms`, with collision suffix `n`.
    pub fn object_key(&self, device: &DeviceId, name_time_ms: i64, n: u32) -> String {
        let stem = file_time(name_time_ms);
        let mut key = self.device_prefix(device);
        if n == 0 {
            key.push_str(&format!("{stem}.jpg"));
        } else {
            key.push_str(&format!("{stem}-{n}.jpg"));
        }
        key
    }
}

/// What a probe ([`S3Output::probe`]) did, step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The object written, read back and deleted.
    pub key: String,
}

/// The object-store output. See the module docs.
pub struct S3Output {
    opts: S3Options,
    op: Operator,
    /// Runs OpenDAL's futures: the [`Output`] trait is blocking (the engine's threads call it).
    rt: Option<tokio::runtime::Runtime>,
    /// Name stems (`<device prefix><time>`) being written now.
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
    /// Where upload events are counted (none: a probe, a test).
    metrics: Option<Arc<Metrics>>,
}

impl fmt::Debug for S3Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Output")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Output {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks; never block a caller that may be async.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Marks a name stem busy for as long as it lives.
struct StemGuard<'a> {
    out: &'a S3Output,
    stem: String,
}

impl Drop for StemGuard<'_> {
    fn drop(&mut self) {
        let mut busy = match self.out.busy.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        busy.remove(&self.stem);
        self.out.freed.notify_all();
    }
}

fn store_err(
    op: &'static str,
    location: String,
    kind: StoreErrorKind,
    message: String,
) -> SinkError {
    SinkError::Store {
        op,
        location: PathBuf::from(location),
        kind,
        message,
    }
}

/// The class of an OpenDAL error.
fn classify(e: &opendal::Error) -> StoreErrorKind {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    // The HTTP client's own verdict, when the request never got an answer.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return StoreErrorKind::Timeout;
            }
            if r.is_connect() {
                return StoreErrorKind::Unavailable;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return StoreErrorKind::Timeout;
            }
        }
        source = s.source();
    }
    match e.kind() {
        ErrorKind::NotFound => StoreErrorKind::NotFound,
        ErrorKind::PermissionDenied => StoreErrorKind::Denied,
        ErrorKind::ConfigInvalid if text.contains("NoSuchBucket") => StoreErrorKind::NoSuchBucket,
        ErrorKind::ConfigInvalid => StoreErrorKind::Rejected,
        ErrorKind::RateLimited => StoreErrorKind::Unavailable,
        ErrorKind::ConditionNotMatch => StoreErrorKind::Exists,
        _ if lower.contains("timed out") || lower.contains("timeout") => StoreErrorKind::Timeout,
        _ if text.contains("InvalidAccessKeyId") || text.contains("SignatureDoesNotMatch") => {
            StoreErrorKind::Denied
        }
        _ if e.is_temporary() => StoreErrorKind::Unavailable,
        _ if lower.contains("connect") || lower.contains("error sending request") => {
            StoreErrorKind::Unavailable
        }
        _ => StoreErrorKind::Rejected,
    }
}

/// OpenDAL's message, one line (it can span several with the response's details).
fn message(e: &opendal::Error) -> String {
    let mut s = e.to_string().replace('\n', " ");
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// An object's state as far as the create-only protocol cares.
enum Present {
    Absent,
    Same,
    Other,
}

impl S3Output {
    /// An output into `opts.bucket`. Builds the client only; [`S3Output::check`] talks to the
    /// store.
    pub fn new(opts: S3Options) -> Result<S3Output, SinkError> {
        let location = format!("s3://{}", opts.bucket);
        let err = |kind, m: String| store_err("configure", location.clone(), kind, m);
        // OpenDAL also builds a default reqwest client (unused: ours replaces it), which needs a
        // process-wide crypto provider; ring, as everywhere else. An already installed one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = crate::tls::client_config(opts.ca_file.as_deref())
            .map_err(|e| err(StoreErrorKind::Rejected, e.to_string()))?;
        // reqwest without a built-in crypto provider: our rustls config (ring, webpki roots plus
        // the optional CA), the same as the AMQP side.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .timeout(opts.timeout)
            .pool_max_idle_per_host(opts.concurrency.max(1))
            .build()
            .map_err(|e| err(StoreErrorKind::Rejected, e.to_string()))?;
        let mut builder = opendal::services::S3::default()
            .endpoint(&opts.endpoint)
            .bucket(&opts.bucket)
            .region(&opts.region)
            .access_key_id(&opts.access_key_id)
            .secret_access_key(opts.secret_access_key.expose())
            .disable_config_load()
            .disable_ec2_metadata();
        if opts.virtual_host_style {
            builder = builder.enable_virtual_host_style();
        }
        if let Some(class) = &opts.storage_class {
            builder = builder.default_storage_class(class);
        }
        let op = Operator::new(builder)
            .map_err(|e| err(StoreErrorKind::Rejected, message(&e)))?
            .finish();
        opendal::raw::Access::info(op.inner().as_ref())
            .update_http_client(|_| opendal::raw::HttpClient::with(http));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-output")
            .enable_all()
            .build()
            .map_err(|e| {
                err(
                    StoreErrorKind::Rejected,
                    format!("cannot start a runtime: {e}"),
                )
            })?;
        Ok(S3Output {
            opts,
            op,
            rt: Some(rt),
            busy: Mutex::new(HashSet::new()),
            freed: Condvar::new(),
            metrics: None,
        })
    }

    /// The same output, counting its uploads and failed requests in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> S3Output {
        self.metrics = Some(metrics);
        self
    }

    /// The settings.
    pub fn options(&self) -> &S3Options {
        &self.opts
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.opts.bucket)
    }

    /// Runs `fut` to completion within the request time-out (a backstop to the client's own).
    fn block<T>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<T, (StoreErrorKind, SinkError)> {
        let fut = fut.into_future();
        let Some(rt) = self.rt.as_ref() else {
            let e = store_err(
                op,
                self.location(key),
                StoreErrorKind::Unavailable,
                "the output is shut down".into(),
            );
            return Err((StoreErrorKind::Unavailable, e));
        };
        let limit = self.opts.timeout + Duration::from_secs(1);
        let (kind, e) = match rt.block_on(async { tokio::time::timeout(limit, fut).await }) {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let kind = classify(&e);
                (kind, store_err(op, self.location(key), kind, message(&e)))
            }
            Err(_) => {
                let kind = StoreErrorKind::Timeout;
                let m = format!("no answer within {} ms", limit.as_millis());
                (kind, store_err(op, self.location(key), kind, m))
            }
        };
        // 404 to a HEAD and 412 to a create-only PUT are answers the protocol expects.
        if !matches!(kind, StoreErrorKind::NotFound | StoreErrorKind::Exists) {
            if let Some(m) = &self.metrics {
                StoreRequestFailed { kind, error: &e }.emit(m);
            }
        }
        Err((kind, e))
    }

    /// Checks that the bucket can be reached with these credentials (a `HEAD` of a key that
    /// does not exist: `404` is the good answer, `403` means wrong credentials or policy,
    /// `NoSuchBucket` a missing bucket). The daemon calls it at start-up.
    pub fn check(&self) -> Result<(), SinkError> {
        let key = self.probe_key("check");
        match self.block("check bucket", &key, self.op.stat(&key)) {
            Ok(_) => return Ok(()),
            Err((StoreErrorKind::NotFound, _)) => {}
            Err((_, e)) => return Err(e),
        }
        // 404 is the good answer for an absent key, but a missing bucket answers a HEAD with 404
        // too (a HEAD has no body to tell them apart); a listing's error body does.
        let root = self.list_root();
        match self.block("list bucket", &root, self.op.list_with(&root).limit(1)) {
            Ok(_) => Ok(()),
            Err((StoreErrorKind::NotFound | StoreErrorKind::NoSuchBucket, _)) => Err(store_err(
                "check bucket",
                format!("s3://{}", self.opts.bucket),
                StoreErrorKind::NoSuchBucket,
                format!("bucket {:?} does not exist", self.opts.bucket),
            )),
            Err((_, e)) => Err(e),
        }
    }

    fn list_root(&self) -> String {
        if self.opts.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.opts.prefix)
        }
    }

    fn probe_key(&self, what: &str) -> String {
        let name = format!(
            ".receiver-{what}-{}-{}",
            std::process::id(),
            receiver_protocol::time::now_ms()
        );
        if self.opts.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.opts.prefix)
        }
    }

    /// `check-config --probe-output`: writes a small object, reads it back, compares, deletes
    /// it. The error says which step failed.
    pub fn probe(&self) -> Result<ProbeReport, SinkError> {
        // A HEAD first: its answer tells credentials and bucket problems apart (some stores
        // answer a refused PUT before reading its body and close the connection).
        self.check()?;
        let key = self.probe_key("probe");
        let body = format!("receiver probe {key}\n").into_bytes();
        let put = self
            .op
            .write_with(&key, body.clone())
            .content_type("text/plain");
        self.block("write probe object", &key, put)
            .map_err(|(_, e)| e)?;
        let read = self
            .block("read probe object", &key, self.op.read(&key))
            .map_err(|(_, e)| e)?;
        if read.to_vec() != body {
            return Err(store_err(
                "read probe object",
                self.location(&key),
                StoreErrorKind::Rejected,
                "the bytes read back differ from those written".into(),
            ));
        }
        self.block("delete probe object", &key, self.op.delete(&key))
            .map_err(|(_, e)| e)?;
        Ok(ProbeReport { key })
    }

    /// Whether `key` holds this picture (size and CRC-32 metadata).
    fn present(&self, key: &str, size: u64, crc: u32) -> Result<Present, SinkError> {
        match self.block("inspect", key, self.op.stat(key)) {
            Ok(m) => Ok(if same(&m, size, crc) {
                Present::Same
            } else {
                Present::Other
            }),
            Err((StoreErrorKind::NotFound, _)) => Ok(Present::Absent),
            Err((_, e)) => Err(e),
        }
    }

    fn lock_stem(&self, stem: String) -> StemGuard<'_> {
        let mut busy = match self.busy.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        while busy.contains(&stem) {
            busy = match self.freed.wait(busy) {
                Ok(b) => b,
                Err(p) => p.into_inner(),
            };
        }
        busy.insert(stem.clone());
        StemGuard { out: self, stem }
    }

    fn put(&self, key: &str, img: &Finished, crc: u32) -> Result<(), (StoreErrorKind, SinkError)> {
        let mut metadata = vec![
            (
                meta::PRODUCT_KEY.to_owned(),
                header_safe(&img.device.product_key),
            ),
            (
                meta::DEVICE_NAME.to_owned(),
                header_safe(&img.device.device_name),
            ),
            (meta::CRC32.to_owned(), format!("{crc:08x}")),
            (meta::FORMAT.to_owned(), img.format.as_str().to_owned()),
        ];
        if let Some(pid) = img.pid {
            metadata.push((meta::PICTURE_ID.to_owned(), pid.to_string()));
        }
        let fut = self
            .op
            .write_with(key, img.bytes.clone())
            .content_type("image/jpeg")
            .if_not_exists(self.opts.create_only)
            .user_metadata(metadata);
        crate::engine::failpoint("before_upload");
        #[cfg(feature = "failpoints")]
        let fut = mid_upload(fut.into_future());
        let started = std::time::Instant::now();
        self.block("upload", key, fut)?;
        if let Some(m) = &self.metrics {
            ObjectUploaded {
                bucket: &self.opts.bucket,
                key,
                bytes: img.bytes.len() as u64,
                latency_us: started.elapsed().as_micros() as u64,
            }
            .emit(m);
        }
        Ok(())
    }
}

/// The `mid_upload` kill point (tests only): reached once the PUT has started and is waiting
/// (its first poll pending: connecting, sending, or sent and not answered); the store may then
/// finish the write or not.
#[cfg(feature = "failpoints")]
async fn mid_upload<T>(fut: impl std::future::Future<Output = T>) -> T {
    use std::task::Poll;
    let mut fut = std::pin::pin!(fut);
    match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(r) => r,
        Poll::Pending => {
            crate::engine::failpoint("mid_upload");
            fut.await
        }
    }
}

/// Metadata values travel as HTTP headers: device-controlled names are kept verbatim when they
/// are printable ASCII, else percent-encoded ([`encode_component`], reversible).
fn header_safe(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.trim() == s && !s.is_empty() {
        s.to_owned()
    } else {
        encode_component(s)
    }
}

/// The stored object is this picture: the same size and CRC-32 metadata.
fn same(m: &opendal::Metadata, size: u64, crc: u32) -> bool {
    m.content_length() == size
        && m.user_metadata()
            .and_then(|u| u.get(meta::CRC32))
            .is_some_and(|v| v.eq_ignore_ascii_case(&format!("{crc:08x}")))
}

impl Output for S3Output {
    fn describe(&self) -> String {
        let prefix = if self.opts.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", self.opts.prefix)
        };
        format!(
            "bucket s3://{}{prefix} at {}",
            self.opts.bucket, self.opts.endpoint
        )
    }

    fn prepare(&self, _device: &DeviceId) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&self, img: &Finished) -> Result<Written, SinkError> {
        let size = img.bytes.len() as u64;
        let crc = wire::crc32(&img.bytes);
        let stem = format!(
            "{}{}",
            self.opts.device_prefix(&img.device),
            file_time(img.name_time_ms)
        );
        let _guard = self.lock_stem(stem);
        let written = |key: String, already_present| Written {
            path: PathBuf::from(self.location(&key)),
            bytes: size,
            already_present,
            object: Some(crate::sink::ObjectLocation {
                bucket: self.opts.bucket.clone(),
                key,
            }),
        };
        for n in 0..=MAX_SUFFIX {
            let key = self.opts.object_key(&img.device, img.name_time_ms, n);
            // Create-only: the PUT itself says whether the key is taken (412), so a new picture
            // costs one request; the HEAD is only for a taken key (a replay, or another picture
            // with the same name time). Without it, look before writing.
            if !self.opts.create_only {
                match self.present(&key, size, crc)? {
                    Present::Same => return Ok(written(key, true)),
                    Present::Other => continue,
                    Present::Absent => {}
                }
            }
            match self.put(&key, img, crc) {
                Ok(()) => return Ok(written(key, false)),
                // Taken (by a replay of this picture, another picture, or another writer since
                // the HEAD): whose is it?
                Err((StoreErrorKind::Exists, _)) => match self.present(&key, size, crc)? {
                    Present::Same => return Ok(written(key, true)),
                    Present::Other | Present::Absent => continue,
                },
                Err((_, e)) => return Err(e),
            }
        }
        Err(SinkError::NoFreeName {
            path: PathBuf::from(self.location(&self.opts.object_key(
                &img.device,
                img.name_time_ms,
                0,
            ))),
            tried: MAX_SUFFIX,
        })
    }

    fn find(&self, r: &Retraction) -> Result<Option<Found>, SinkError> {
        for n in 0..=MAX_SUFFIX {
            let key = self.opts.object_key(&r.device, r.name_time_ms, n);
            let m = match self.block("inspect", &key, self.op.stat(&key)) {
                Ok(m) => m,
                Err((StoreErrorKind::NotFound, _)) => return Ok(None),
                Err((_, e)) => return Err(e),
            };
            if !same(&m, r.size, r.crc) {
                continue;
            }
            let bytes = self
                .block("read", &key, self.op.read(&key))
                .map_err(|(_, e)| e)?
                .to_vec();
            if bytes.len() as u64 != r.size || wire::crc32(&bytes) != r.crc {
                continue;
            }
            return Ok(Some(Found {
                path: PathBuf::from(self.location(&key)),
                bytes,
            }));
        }
        Ok(None)
    }

    fn remove(&self, found: &Found) -> Result<(), SinkError> {
        let location = found.path.to_string_lossy();
        let base = format!("s3://{}/", self.opts.bucket);
        let Some(key) = location.strip_prefix(&base) else {
            return Err(SinkError::OutsideBase {
                path: found.path.clone(),
                base: PathBuf::from(base),
            });
        };
        self.block("delete", key, self.op.delete(key))
            .map_err(|(_, e)| e)
    }

    /// A `PutObject` is atomic: nothing half-written can be left.
    fn remove_stale_temp_files(&self) -> Result<usize, SinkError> {
        Ok(0)
    }

    /// Lists `<prefix>/` recursively; keys that are not `<pk>/<dn>/<picture name>` in the
    /// [`encode_component`] mapping are skipped.
    fn list_pictures(&self) -> Result<Vec<crate::output::StoredPicture>, SinkError> {
        let base = if self.opts.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.opts.prefix)
        };
        let list_at = if base.is_empty() { "/" } else { base.as_str() };
        let entries = self
            .block("list", list_at, self.op.list_with(list_at).recursive(true))
            .map_err(|(_, e)| e)?;
        let mut out = Vec::new();
        for entry in entries {
            let Some(rest) = entry.path().strip_prefix(base.as_str()) else {
                continue;
            };
            let mut parts = rest.split('/');
            let (Some(pk), Some(dn), Some(name), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !crate::output::is_picture_name(name) {
                continue;
            }
            let Some(device) = crate::sink::device_from_components(pk, dn) else {
                continue;
            };
            // A listing carries no user metadata on most stores (ListObjectsV2 has none): the
            // format is then unknown until the picture is written again.
            let format = entry
                .metadata()
                .user_metadata()
                .and_then(|m| m.get(meta::FORMAT))
                .and_then(|f| match f.as_str() {
                    "v1" => Some("v1"),
                    "v2" => Some("v2"),
                    _ => None,
                });
            out.push(crate::output::StoredPicture {
                device,
                name: name.to_owned(),
                bytes: entry.metadata().content_length(),
                format,
            });
        }
        Ok(out)
    }

    fn read_picture(&self, device: &DeviceId, name: &str) -> Result<Option<Vec<u8>>, SinkError> {
        if !crate::output::is_picture_name(name) {
            return Ok(None);
        }
        let key = format!("{}{name}", self.opts.device_prefix(device));
        match self.block("read", &key, self.op.read(&key)) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err((StoreErrorKind::NotFound, _)) => Ok(None),
            Err((_, e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(prefix: &str) -> S3Options {
        S3Options {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: prefix.into(),
            access_key_id: "id".into(),
            secret_access_key: crate::config::Secret::new("very-secret"),
            virtual_host_style: false,
            timeout: Duration::from_secs(1),
            concurrency: 4,
            storage_class: None,
            create_only: true,
            ca_file: None,
        }
    }

    #[test]
    fn keys_follow_the_folder_layout() {
        let d = DeviceId::new("a1PK", "cam-01");
        let o = opts("images");
        assert_eq!(
            o.object_key(&d, 1_795_696_030_123, 0),
            "images/a1PK/cam-01/20261126T122710.123Z.jpg"
        );
        assert_eq!(
            o.object_key(&d, 1_795_696_030_123, 2),
            "images/a1PK/cam-01/20261126T122710.123Z-2.jpg"
        );
        assert_eq!(
            opts("").object_key(&d, 0, 0),
            "a1PK/cam-01/19700101T000000.000Z.jpg"
        );
        let hostile = DeviceId::new("..", "/etc/passwd\n\u{0}");
        let k = o.object_key(&hostile, 0, 0);
        assert_eq!(
            k,
            "images/%2E%2E/%2Fetc%2Fpasswd%0A%00/19700101T000000.000Z.jpg"
        );
        assert!(!k.contains("..") && !k.starts_with('/'));
        assert!(!k.chars().any(char::is_control));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let s = format!("{:?}", opts(""));
        assert!(!s.contains("very-secret"), "{s}");
    }

    #[test]
    fn header_values_stay_printable() {
        assert_eq!(header_safe("cam-01"), "cam-01");
        assert_eq!(header_safe("a b"), "a b");
        assert_eq!(header_safe("a\nb"), "a%0Ab");
        assert_eq!(header_safe(" x"), "%20x");
        assert_eq!(header_safe("é"), "%C3%A9");
    }
}
