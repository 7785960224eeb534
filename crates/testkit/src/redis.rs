//! A real `redis-server` (Debian's package) on loopback for cluster mode: the integration
//! tests' and the bench's. Configured as production wants it (`appendonly yes`,
//! `appendfsync always`, no RDB snapshots), its data in a folder of the caller's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `redis-server` binary: `/usr/bin/redis-server` or `/usr/sbin/redis-server` when one
/// exists, else `redis-server` from the `PATH`.
pub fn redis_server_binary() -> PathBuf {
    ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// Starts `bin` on 127.0.0.1:`port` with its data in `dir` and waits (up to 10 s) until it
/// answers `PING`. `Ok(None)`: it exited or never answered (e.g. the port was taken meanwhile;
/// the caller tries another). `Err`: the binary could not be started at all.
pub fn spawn_redis(bin: &Path, dir: &Path, port: u16) -> std::io::Result<Option<Child>> {
    spawn_redis_with(bin, dir, port, &[])
}

/// [`spawn_redis`] with more arguments first (e.g. `--replicaof`).
pub fn spawn_redis_with(
    bin: &Path,
    dir: &Path,
    port: u16,
    extra: &[&str],
) -> std::io::Result<Option<Child>> {
    let mut child = Command::new(bin)
        .args(extra)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(None);
        }
        if ping(port) {
            return Ok(Some(child));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
