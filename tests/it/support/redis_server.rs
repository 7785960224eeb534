//! A real `redis-server` (Debian's package; `scripts/test.sh` installs it) for the cluster-mode
//! tests: on loopback, on a free port, its data in a temp folder, `appendonly yes` with
//! `appendfsync always`; killed when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own.
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port (probed; tried again if it was taken meanwhile).
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if let Some(child) = spawn(dir.path(), port) {
                return RedisServer { child, port, dir };
            }
        }
        panic!("redis-server did not start");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and data folder (it loads its AOF).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = spawn(self.dir.path(), self.port) {
                self.child = child;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&self, stop: bool) {
        let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// A connection for checks.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped server dies of SIGKILL too; one already reaped is not signalled again (its
        // pid may belong to another process by now).
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn spawn(dir: &Path, port: u16) -> Option<Child> {
    receiver_testkit::redis::spawn_redis(&receiver_testkit::redis::redis_server_binary(), dir, port)
        .expect("redis-server (apt-get install redis-server; scripts/test.sh does)")
}
