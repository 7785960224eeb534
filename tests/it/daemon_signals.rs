//! Signals to the real binary (issue 16): SIGHUP reloads what can be reloaded and reports the
//! rest as "needs restart", a bad file is refused and the running configuration kept; SIGUSR1
//! logs a status line, SIGUSR2 is logged and ignored, SIGQUIT stops cleanly like SIGTERM. Before,
//! SIGHUP killed the daemon by its default action (no log line).

use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_receiver"))
            .arg("--config")
            .arg(config)
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

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which has not been reaped (we own the `Child`).
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for a log line after the first `from` lines that contains every one of `want`;
    /// returns its index. Panics with the log if the daemon exits or time runs out.
    fn wait_line(&mut self, from: usize, want: &[&str]) -> usize {
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

    fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_sigusr1_reports_sigquit_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeAliyun::start(FakeConfig::default())
        .await
        .expect("fake");
    let ca = fake.write_ca(dir.path()).expect("ca file");
    let base = ConfigBuilder::new()
        .aliyun_from_fake(&fake, &ca)
        .output_dir(dir.path().join("out"))
        .state_dir(dir.path().join("state"));
    let config_path = dir.path().join("receiver.toml");
    let write = |config: ConfigBuilder| {
        config.write(&config_path).expect("config");
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    };
    write(
        base.clone()
            .log("format", "json")
            .set("hook", "command", ["/bin/true"]),
    );

    let mut d = Daemon::start(&config_path);
    d.wait_line(0, &["first receiver link attached; ready"]);

    // 1. A reload that changes reloadable and restart-only settings.
    write(
        base.clone()
            .aliyun("credit", 10)
            .log("format", "json")
            .log("level", "receiver=debug")
            .set("retention", "max_age", "30d")
            .set("hook", "command", ["/bin/true"])
            .set("hook", "timeout", "5s"),
    );
    let n = d.len();
    d.signal(libc::SIGHUP);
    d.wait_line(n, &["SIGHUP: reloading the configuration"]);
    d.wait_line(
        n,
        &[
            "configuration reloaded; applied",
            "[hook] timeout",
            "[log] level",
            "[retention] max_age",
        ],
    );
    d.wait_line(n, &["needs restart", "[aliyun] credit"]);
    // Retention was off; the new limit is in force: a sweep runs at once.
    d.wait_line(n, &["retention sweep"]);

    // 2. A bad file is refused; the daemon keeps running with what it has.
    write(base.clone().spool("batch_max", "lots"));
    let n = d.len();
    d.signal(libc::SIGHUP);
    d.wait_line(
        n,
        &[
            "configuration reload refused; the running configuration stays in force",
            "[spool] batch_max",
        ],
    );

    // 3. SIGUSR1: a status line; SIGUSR2: logged, ignored.
    let n = d.len();
    d.signal(libc::SIGUSR1);
    let i = d.wait_line(n, &["status (SIGUSR1)", "links_attached"]);
    assert!(d.lines.lock().unwrap()[i].starts_with('{'), "JSON so far");
    let n = d.len();
    d.signal(libc::SIGUSR2);
    d.wait_line(n, &["SIGUSR2", "ignored"]);

    // 4. The format reloads too: text from now on.
    write(
        base.clone()
            .log("format", "text")
            .set("hook", "command", ["/bin/true"]),
    );
    let n = d.len();
    d.signal(libc::SIGHUP);
    d.wait_line(n, &["configuration reloaded; applied", "[log] format"]);
    let n = d.len();
    d.signal(libc::SIGUSR1);
    let i = d.wait_line(n, &["status (SIGUSR1)"]);
    assert!(
        !d.lines.lock().unwrap()[i].starts_with('{'),
        "text after the reload: {}",
        d.log()
    );
    assert!(d.child.try_wait().unwrap().is_none(), "still running");

    // 5. SIGQUIT: the same clean stop as SIGTERM.
    let n = d.len();
    d.signal(libc::SIGQUIT);
    d.wait_line(n, &["shutting down", "SIGQUIT"]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGQUIT:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", d.log());
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log().contains("receiver stopped"), "{}", d.log());
}
