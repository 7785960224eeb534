//! The real binary (`CARGO_BIN_EXE_receiver`) as a child process on a config file in a temp
//! folder (written with `receiver_testkit::config::ConfigBuilder`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `receiver --config <config>`: the binary built for this test run.
pub fn receiver_command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_receiver"));
    cmd.arg("--config").arg(config);
    cmd
}

/// How long [`Daemon::wait_line`] waits.
pub const WAIT: Duration = Duration::from_secs(30);

/// The real binary, started on a config file, its stderr collected line by line; killed when
/// dropped.
pub struct Daemon {
    pub child: Child,
    /// Its stderr so far (the log, one line per entry).
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `receiver --config <config>` without `RUST_LOG`, `NOTIFY_SOCKET` or
    /// `RECEIVER_ACCESS_KEY_SECRET` from the test's environment.
    pub fn start(config: &Path) -> Daemon {
        let mut child = receiver_command(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RECEIVER_ACCESS_KEY_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, lines }
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which has not been reaped (we own the `Child`).
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for a log line after the first `from` lines that contains every one of `want`;
    /// returns its index. Panics with the log if the daemon exits or time runs out.
    pub fn wait_line(&mut self, from: usize, want: &[&str]) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(i) = lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| want.iter().all(|w| l.contains(w)))
                    .map(|(i, _)| i)
                {
                    return i;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "daemon exited ({status:?}) while waiting for {want:?}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {want:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many log lines so far.
    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
