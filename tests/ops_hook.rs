//! The on-image hook with real commands: argv and environment arrive verbatim (no shell, so
//! hostile device names execute nothing), time-outs kill the whole process group, the queue
//! drops instead of blocking, failures are counted.
//!
//! Scripts are run as `/bin/sh <script>` so the test never execs a file it has just written
//! (which can fail with ETXTBSY while another test thread forks).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use receiver::message::DeviceId;
use receiver::metrics::Metrics;
use receiver::ops::hook::{run, Hook, HookConfig, HookJob, HookOutcome};
use receiver::wire::Format;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> Vec<String> {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    vec!["/bin/sh".into(), path.to_string_lossy().into_owned()]
}

fn job(path: &str, pk: &str, dn: &str) -> HookJob {
    HookJob {
        path: PathBuf::from(path),
        device: DeviceId::new(pk, dn),
        bytes: 4242,
        format: Format::V2,
        object: None,
    }
}

fn nul_split(bytes: Vec<u8>) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn argv_and_env_arrive_verbatim_and_nothing_is_executed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mut command = script(
        dir.path(),
        "hook.sh",
        &format!(
            "printf '%s\\0' \"$@\" > '{d}/argv'\n\
             printf '%s\\0' \"$RECEIVER_IMAGE_PATH\" \"$RECEIVER_PRODUCT_KEY\" \"$RECEIVER_DEVICE_NAME\" \
             \"$RECEIVER_IMAGE_BYTES\" \"$RECEIVER_FORMAT\" > '{d}/env'"
        ),
    );
    command.push("--flag".into());
    command.push("with space".into());
    let cfg = HookConfig::new(command);
    let pk = format!("a;b; touch {d}/pwned1");
    let dn = format!("$(touch {d}/pwned2)`touch {d}/pwned3`|x&&y>z \"'\n-rf");
    let path = format!("{d}/out/{}.jpg", "20261126T122710.123Z");
    let outcome = run(&cfg, &job(&path, &pk, &dn)).await;
    assert_eq!(outcome, HookOutcome::Ok);

    let argv = nul_split(fs::read(dir.path().join("argv")).unwrap());
    assert_eq!(argv, vec!["--flag", "with space", &path, &pk, &dn]);
    let env = nul_split(fs::read(dir.path().join("env")).unwrap());
    assert_eq!(env, vec![&path, &pk, &dn, "4242", "v2"]);
    for f in ["pwned1", "pwned2", "pwned3", "z"] {
        assert!(!dir.path().join(f).exists(), "{f} was created: injection");
    }
}

#[tokio::test]
async fn exit_codes_and_spawn_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HookConfig::new(script(dir.path(), "fail.sh", "exit 3"));
    assert_eq!(
        run(&cfg, &job("/x.jpg", "p", "d")).await,
        HookOutcome::Exit(3)
    );

    let cfg = HookConfig::new(script(dir.path(), "sig.sh", "kill -TERM $$"));
    assert_eq!(
        run(&cfg, &job("/x.jpg", "p", "d")).await,
        HookOutcome::Signal(15)
    );

    let cfg = HookConfig::new(vec![dir.path().join("missing").display().to_string()]);
    assert!(matches!(
        run(&cfg, &job("/x.jpg", "p", "d")).await,
        HookOutcome::Spawn(_)
    ));
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    let mut cfg = HookConfig::new(script(
        dir.path(),
        "slow.sh",
        &format!("sleep 10 &\necho $! > '{}'\nwait", pidfile.display()),
    ));
    cfg.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = run(&cfg, &job("/x.jpg", "p", "d")).await;
    assert_eq!(outcome, HookOutcome::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The grandchild `sleep 10` died with the script.
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_string();
    wait_for(
        || {
            fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z'))
            })
        },
        "the grandchild to die",
    )
    .await;
}

#[tokio::test]
async fn runs_through_the_queue_with_a_concurrency_cap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    fs::create_dir(dir.path().join("running")).unwrap();
    let mut cfg = HookConfig::new(script(
        dir.path(),
        "count.sh",
        &format!(
            "touch '{d}/running/'\"$RECEIVER_IMAGE_PATH\"\n\
             ls '{d}/running' | wc -l >> '{d}/concurrency'\n\
             sleep 0.2\n\
             rm '{d}/running/'\"$RECEIVER_IMAGE_PATH\"\n\
             echo done >> '{d}/done'"
        ),
    ));
    cfg.max_concurrent = 2;
    cfg.queue = 16;
    let metrics = Arc::new(Metrics::default());
    let hook = Hook::new(cfg, metrics.clone(), &tokio::runtime::Handle::current());
    for i in 0..6 {
        assert!(hook.submit(job(&format!("img{i}"), "p", "d")));
    }
    wait_for(|| metrics.hook_ok.load(Relaxed) == 6, "6 hook runs").await;
    let max = fs::read_to_string(dir.path().join("concurrency"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert!(max <= 2, "ran {max} at once");
    hook.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn full_queue_drops_without_blocking_and_shutdown_drains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mut cfg = HookConfig::new(script(
        dir.path(),
        "slow.sh",
        &format!("sleep 0.3\necho \"$RECEIVER_IMAGE_PATH\" >> '{d}/done'"),
    ));
    cfg.max_concurrent = 1;
    cfg.queue = 2;
    let metrics = Arc::new(Metrics::default());
    let hook = Hook::new(cfg, metrics.clone(), &tokio::runtime::Handle::current());

    // Submitted from a plain thread, as the engine does.
    let h = hook.clone();
    let (accepted, elapsed) = std::thread::spawn(move || {
        let started = Instant::now();
        let accepted = (0..20)
            .filter(|i| h.submit(job(&format!("img{i}"), "p", "d")))
            .count();
        (accepted as u64, started.elapsed())
    })
    .join()
    .unwrap();
    assert!(
        elapsed < Duration::from_millis(200),
        "submit blocked for {elapsed:?}"
    );
    // Queue of 2, plus at most one held by the dispatcher while it waits for a slot, plus one
    // running.
    assert!((2..=4).contains(&accepted), "accepted {accepted}");
    assert_eq!(metrics.hook_dropped.load(Relaxed), 20 - accepted);

    // Shutdown stops intake but runs what was queued.
    hook.shutdown(Duration::from_secs(10)).await;
    assert!(!hook.submit(job("late", "p", "d")));
    assert_eq!(metrics.hook_ok.load(Relaxed), accepted);
    let done = fs::read_to_string(dir.path().join("done")).unwrap();
    assert_eq!(done.lines().count() as u64, accepted);
}

#[tokio::test]
async fn shutdown_grace_kills_running_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    let mut cfg = HookConfig::new(script(
        dir.path(),
        "slow.sh",
        &format!("sleep 30 &\necho $! > '{}'\nwait", pidfile.display()),
    ));
    cfg.timeout = Duration::from_secs(60);
    let metrics = Arc::new(Metrics::default());
    let hook = Hook::new(cfg, metrics.clone(), &tokio::runtime::Handle::current());
    assert!(hook.submit(job("img", "p", "d")));
    wait_for(
        || fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')),
        "hook start",
    )
    .await;
    let started = Instant::now();
    hook.shutdown(Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_string();
    wait_for(
        || {
            fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z'))
            })
        },
        "the hook's child to die",
    )
    .await;
}

#[tokio::test]
async fn failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let rt = tokio::runtime::Handle::current();
    let fail = Hook::new(
        HookConfig::new(script(dir.path(), "fail.sh", "exit 1")),
        metrics.clone(),
        &rt,
    );
    let missing = Hook::new(
        HookConfig::new(vec!["/nonexistent/receiver-hook".into()]),
        metrics.clone(),
        &rt,
    );
    let mut slow_cfg = HookConfig::new(script(dir.path(), "slow.sh", "sleep 10"));
    slow_cfg.timeout = Duration::from_millis(100);
    let slow = Hook::new(slow_cfg, metrics.clone(), &rt);
    assert!(fail.submit(job("a", "p", "d")));
    assert!(missing.submit(job("b", "p", "d")));
    assert!(slow.submit(job("c", "p", "d")));
    for h in [&fail, &missing, &slow] {
        h.shutdown(Duration::from_secs(10)).await;
    }
    assert_eq!(metrics.hook_failed.load(Relaxed), 1);
    assert_eq!(metrics.hook_spawn_errors.load(Relaxed), 1);
    assert_eq!(metrics.hook_timeouts.load(Relaxed), 1);
    let text = metrics.render_prometheus();
    assert!(text.contains("receiver_hook_jobs_total{result=\"timeout\"} 1"));
}

/// True while `pid` is a live process (a zombie, dead but not yet reaped by its new parent,
/// counts as gone).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
    }
}

#[tokio::test]
async fn nothing_a_hook_started_outlives_it() {
    // Issue 16: a hook that starts children in the background and exits used to leave them
    // running. The whole process group is killed once the hook exits.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cfg = HookConfig::new(script(
        dir.path(),
        "spawner.sh",
        &format!(
            "i=0\nwhile [ $i -lt 20 ]; do sleep 300 & echo $! >> '{d}/pids'; i=$((i+1)); done\nexit 0"
        ),
    ));
    let outcome = run(&cfg, &job("/x.jpg", "pk", "dn")).await;
    assert_eq!(outcome, HookOutcome::Ok);
    let pids: Vec<u32> = fs::read_to_string(dir.path().join("pids"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 20);
    // SIGKILL is delivered at once; reaping by the new parent may take a moment.
    wait_for(
        || pids.iter().all(|p| !alive(*p)),
        "the hook's children to die",
    )
    .await;
}

#[tokio::test]
async fn hook_environment_is_an_allow_list() {
    // Issue 16: the hook inherited the daemon's environment, secret included. Only PATH, HOME,
    // locale, TZ (and the like), the picture variables and `[hook] env` reach it.
    // SAFETY (edition 2021: safe): std serialises set_var against Command's environment capture.
    std::env::set_var("RECEIVER_ACCESS_KEY_SECRET", "leaked-secret-0042");
    std::env::set_var("HOOK_TEST_PASSED", "passed-value");
    std::env::set_var("HOOK_TEST_NOT_LISTED", "not-listed");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let mut cfg = HookConfig::new(script(dir.path(), "env.sh", &format!("env > '{d}/env'")));
    let raw: receiver::ops::hook::RawHookConfig = toml::from_str(
        "command = [\"x\"]\nenv = [\"HOOK_TEST_PASSED\", \"BUCKET=cams=1\", \"HOOK_TEST_UNSET\"]",
    )
    .unwrap();
    cfg.env = raw.validate().unwrap().unwrap().env;
    assert_eq!(run(&cfg, &job("/x.jpg", "pk", "dn")).await, HookOutcome::Ok);
    let env = fs::read_to_string(dir.path().join("env")).unwrap();
    assert!(!env.contains("leaked-secret-0042"), "{env}");
    assert!(!env.contains("HOOK_TEST_NOT_LISTED"), "{env}");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for want in [
        "PATH",
        "RECEIVER_IMAGE_PATH",
        "RECEIVER_DEVICE_NAME",
        "RECEIVER_FORMAT",
    ] {
        assert!(names.contains(&want), "{want} missing: {env}");
    }
    assert!(env.contains("HOOK_TEST_PASSED=passed-value\n"), "{env}");
    assert!(env.contains("BUCKET=cams=1\n"), "{env}");
    assert!(!names.contains(&"HOOK_TEST_UNSET"), "{env}");
    for name in &names {
        let allowed = receiver::ops::hook::PASSED_ENV.contains(name)
            || name.starts_with("LC_")
            || name.starts_with("RECEIVER_")
            || ["HOOK_TEST_PASSED", "BUCKET", "PWD", "SHLVL", "_"].contains(name);
        assert!(allowed, "{name} should not reach the hook: {env}");
    }
    // The secrets cannot be passed even on purpose.
    for bad in [
        "RECEIVER_ACCESS_KEY_SECRET",
        "RECEIVER_SECURITY_TOKEN=x",
        "NOTIFY_SOCKET",
    ] {
        let raw: receiver::ops::hook::RawHookConfig =
            toml::from_str(&format!("command = [\"x\"]\nenv = [{bad:?}]")).unwrap();
        let e = raw.validate().unwrap_err().to_string();
        assert!(e.starts_with("hook.env: "), "{e}");
    }
}

#[test]
fn missing_or_non_executable_programs_are_named() {
    use receiver::ops::hook::check_program;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let e = check_program("/nonexistent/hook", None).unwrap_err();
    assert!(
        e.contains("/nonexistent/hook") && e.contains("No such file"),
        "{e}"
    );
    let plain = dir.path().join("plain.sh");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let e = check_program(plain.to_str().unwrap(), None).unwrap_err();
    assert!(
        e.contains("not executable") && e.contains("chmod +x"),
        "{e}"
    );
    let e = check_program(dir.path().to_str().unwrap(), None).unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
    let e = check_program("no-such-program-xyz", Some("/usr/bin:/bin".as_ref())).unwrap_err();
    assert!(e.contains("not found in PATH (/usr/bin:/bin)"), "{e}");
    assert_eq!(
        check_program("sh", Some("/nonexistent:/bin".as_ref())).unwrap(),
        Path::new("/bin/sh")
    );
}
