//! Signals to the real binary (issue 16): SIGHUP reloads what can be reloaded and reports the
//! rest as "needs restart", a bad file is refused and the running configuration kept; SIGUSR1
//! logs a status line, SIGUSR2 is logged and ignored, SIGQUIT stops cleanly like SIGTERM. Before,
//! SIGHUP killed the daemon by its default action (no log line).

use crate::support::daemon::{Daemon, WAIT};
use receiver_testkit::config::ConfigBuilder;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

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
