//! The built binary: exit codes, `check-config` output, `print-default-config`.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "Sup3r-S3cret-Value-0042";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/receiver.example.toml");

/// The binary with a clean environment for the variables it reads.
fn receiver() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_receiver"));
    c.env_remove("RECEIVER_ACCESS_KEY_SECRET")
        .env_remove("RECEIVER_SECURITY_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// A valid config in a temp folder, with `extra` appended to `[aliyun]`.
fn config(dir: &Path, aliyun_extra: &str) -> PathBuf {
    let text = format!(
        r#"[aliyun]
host = "iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com"
access_key_id = "LTAI5tExample"
iot_instance_id = "iot-06z00xxxxxxx"
consumer_group_id = "DEFAULT_GROUP"
{aliyun_extra}

[output]
dir = "out"

[state]
dir = "state"
"#
    );
    let path = dir.join("receiver.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a file with permission bits `mode`.
fn secret_file(path: &Path, content: &[u8], mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the daemon (or any command) for at most `limit`: a start-up that should have been
/// refused but was not would otherwise try to reach Aliyun for ever. Returns the exit code
/// (-1: still running, killed) and stderr.
fn run_briefly(c: &mut Command, limit: Duration) -> (i32, String) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
}

#[test]
fn print_default_config_is_the_example_file() {
    let (code, out, _) = run(receiver().arg("print-default-config"));
    assert_eq!(code, 0);
    assert_eq!(out, std::fs::read_to_string(EXAMPLE).unwrap());
}

#[test]
fn check_config_on_the_example_succeeds_and_redacts() {
    let (code, out, err) = run(receiver()
        .args(["check-config", "--config", EXAMPLE])
        .env("RECEIVER_ACCESS_KEY_SECRET", SECRET));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
    assert!(out.contains("[aliyun]") && out.contains("[spool]"), "{out}");
    // The operations sections, all off or at their defaults in the example.
    for want in [
        "[metrics]\n# listen not set (default)",
        "engine_stall = \"1m\"  # default",
        "# no limit set (default): images are kept forever",
        "[hook]\n# command not set (default): no hook",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    assert!(
        out.contains("access_key_secret = \"<redacted>\"  # (from env RECEIVER_ACCESS_KEY_SECRET)"),
        "{out}"
    );
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
}

#[test]
fn check_config_names_a_secret_file_but_not_its_content() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(
        &dir.path().join("secret"),
        format!("{SECRET}\n").as_bytes(),
        0o600,
    );
    let path = config(dir.path(), "access_key_secret_file = \"secret\"");
    let (code, out, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(from file "), "{out}");
    assert!(out.contains("secret)"), "{out}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "{out}");
}

#[test]
fn check_config_on_the_example_reads_the_systemd_credential() {
    // What the shipped unit does: LoadCredential=access_key_secret:... and nothing else.
    let creds = tempfile::tempdir().unwrap();
    let file = creds.path().join("access_key_secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let (code, out, err) = run(receiver()
        .args(["check-config", "--config", EXAMPLE])
        .env("CREDENTIALS_DIRECTORY", creds.path()));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "access_key_secret = \"<redacted>\"  # (from file {})",
            file.display()
        )),
        "{out}"
    );
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
}

#[test]
fn two_secret_sources_is_a_config_error_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &format!("access_key_secret = \"{SECRET}\""));
    let (code, out, err) = run(receiver()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("RECEIVER_ACCESS_KEY_SECRET", "other"));
    assert_eq!(code, 2);
    assert!(err.contains("given 2 ways"), "{err}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "{err}");
}

#[test]
fn unknown_key_exits_2_with_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "access_key_secret = \"x\"\nhots = \"typo\"");
    let (code, _, err) = run(receiver().arg("check-config").arg("--config").arg(&path));
    assert_eq!(code, 2);
    assert!(
        err.contains("receiver.toml:7: unknown key `hots` in [aliyun] (expected one of host, port"),
        "{err}"
    );
}

#[test]
fn bad_config_exits_2_for_every_command_that_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "access_key_secret = \"x\"\nidle_timeout = \"5s\"",
    );
    for cmd in [&["check-config"][..], &[], &["run"]] {
        let (code, _, err) = run(receiver().args(cmd).arg("--config").arg(&path));
        assert_eq!(code, 2, "{cmd:?}: {err}");
        assert!(err.contains("[aliyun] idle_timeout"), "{err}");
    }
}

#[test]
fn unreadable_or_missing_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (code, _, err) = run(receiver().arg("--config").arg(&missing));
    assert_eq!(code, 2);
    assert!(err.contains("nope.toml: cannot read config file"), "{err}");
    // A folder is not a config file.
    let (code, _, _) = run(receiver()
        .arg("check-config")
        .arg("--config")
        .arg(dir.path()));
    assert_eq!(code, 2);
}

#[test]
fn missing_config_flag_and_bad_flags_exit_2() {
    let (code, _, err) = run(&mut receiver());
    assert_eq!(code, 2);
    assert!(err.contains("--config PATH is required"), "{err}");
    let (code, _, _) = run(receiver().args(["--log-format", "xml", "print-default-config"]));
    assert_eq!(code, 2);
    let (code, _, _) = run(receiver().arg("no-such-command"));
    assert_eq!(code, 2);
}

#[test]
fn help_and_version_exit_0() {
    let (code, out, _) = run(receiver().arg("--help"));
    assert_eq!(code, 0);
    assert!(
        out.contains("check-config") && out.contains("Exit codes"),
        "{out}"
    );
    let (code, out, _) = run(receiver().arg("--version"));
    assert_eq!(code, 0);
    assert!(out.starts_with("receiver "), "{out}");
}

// --- Issue 16: hardening from an outside probe --------------------------------------------------

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn world_readable_secret_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    secret_file(&file, format!("{SECRET}\n").as_bytes(), 0o644);
    let path = config(dir.path(), "access_key_secret_file = \"secret\"");
    let (code, out, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        format!("[aliyun] access_key_secret_file = {}", file.display()),
        "is readable by everyone (mode 0644)".to_owned(),
        format!("chmod 600 {}", file.display()),
    ] {
        assert!(err.contains(&want), "{want}: {err}");
    }
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    let (code, err) = run_briefly(receiver().arg("--config").arg(&path), LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("mode 0644") && !err.contains(SECRET), "{err}");
}

#[test]
fn group_readable_secret_and_inline_secret_in_a_readable_config_warn() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    secret_file(&file, format!("{SECRET}\n").as_bytes(), 0o640);
    let path = config(dir.path(), "access_key_secret_file = \"secret\"");
    let (code, out, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("receiver: warning: "), "{err}");
    assert!(
        err.contains("is readable by its group (mode 0640)"),
        "{err}"
    );
    assert!(
        out.contains("OK, with 1 warning(s)") && out.contains("# WARNING: "),
        "{out}"
    );

    // An inline secret in a config file everyone can read.
    let path = config(dir.path(), &format!("access_key_secret = \"{SECRET}\""));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("[aliyun] access_key_secret: the secret is inline and")
            && err.contains("is readable by everyone (mode 0644)"),
        "{err}"
    );
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn secret_files_are_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/zero used to be read without end.
    let path = config(dir.path(), "access_key_secret_file = \"/dev/zero\"");
    let (code, err) = run_briefly(receiver().arg("check-config").arg("-c").arg(&path), LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "access_key_secret_file = /dev/zero: is a character device, not a regular file"
        ),
        "{err}"
    );
    // A FIFO nobody writes to must not hang the start-up.
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let path = config(dir.path(), "access_key_secret_file = \"fifo\"");
    let (code, err) = run_briefly(receiver().arg("--config").arg(&path), LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a FIFO (named pipe), not a regular file"),
        "{err}"
    );
    // Longer than 4 KiB.
    secret_file(&dir.path().join("big"), &[b'a'; 5000], 0o600);
    let path = config(dir.path(), "access_key_secret_file = \"big\"");
    let (code, _, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("big: is larger than 4096 bytes"), "{err}");
}

#[test]
fn hook_program_is_checked_by_check_config_and_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let hook = |program: &str| {
        let path = config(dir.path(), "access_key_secret = \"x\"");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}\n[hook]\ncommand = [{program:?}, \"--x\"]\n"),
        )
        .unwrap();
        path
    };
    let path = hook("/nonexistent/forward-image");
    for cmd in [&["check-config"][..], &["run"]] {
        let (code, err) = run_briefly(receiver().args(cmd).arg("--config").arg(&path), LIMIT);
        assert_eq!(code, 2, "{cmd:?}: {err}");
        assert!(
            err.contains("[hook] command: /nonexistent/forward-image: No such file"),
            "{err}"
        );
    }
    let script = dir.path().join("hook.sh");
    secret_file(&script, b"#!/bin/sh\n", 0o644);
    let path = hook(script.to_str().unwrap());
    let (code, err) = run_briefly(receiver().arg("check-config").arg("-c").arg(&path), LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not executable by this user (mode 0644)"),
        "{err}"
    );
    let path = hook("no-such-program-0042");
    let (code, err) = run_briefly(receiver().arg("check-config").arg("-c").arg(&path), LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"no-such-program-0042\" is not found in PATH"),
        "{err}"
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = hook(script.to_str().unwrap());
    let (code, _, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 0, "{err}");
}

/// A config whose folders are `output` and `state` (relative to `dir`), inline secret.
fn config_dirs(dir: &Path, output: &str, state: &str, extra: &str) -> PathBuf {
    let path = config(dir, "access_key_secret = \"x\"");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("dir = \"out\"", &format!("dir = {output:?}"))
        .replace("dir = \"state\"", &format!("dir = {state:?}"));
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn state_folder_through_a_symlink_into_the_output_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("images"), dir.path().join("link")).unwrap();
    let path = config_dirs(dir.path(), "images", "link/state", "");
    for cmd in [&["check-config"][..], &["run"]] {
        let (code, err) = run_briefly(receiver().args(cmd).arg("--config").arg(&path), LIMIT);
        assert_eq!(code, 2, "{cmd:?}: {err}");
        assert!(
            err.contains("[state] dir:")
                && err.contains("one contains the other")
                && err.contains("after following symlinks"),
            "{err}"
        );
        assert!(
            !dir.path().join("images/state").exists(),
            "{cmd:?} left a stray folder in the output"
        );
    }
}

#[test]
fn output_folder_that_is_a_file_or_a_dangling_symlink_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("dangling")).unwrap();
    for (output, want) in [
        ("afile", "afile is a regular file, not a folder"),
        ("afile/images", "afile is a regular file, not a folder"),
        ("dangling", "dangling is a symlink to"),
    ] {
        let path = config_dirs(dir.path(), output, "state", "");
        for cmd in [&["check-config"][..], &["run"]] {
            let (code, err) = run_briefly(receiver().args(cmd).arg("--config").arg(&path), LIMIT);
            assert_eq!(code, 2, "{output} {cmd:?}: {err}");
            assert!(
                err.contains("[output] dir:") && err.contains(want),
                "{want}: {err}"
            );
        }
    }
}

#[test]
fn metrics_on_every_interface_warns() {
    let dir = tempfile::tempdir().unwrap();
    for (listen, warns) in [
        ("0.0.0.0:9898", true),
        ("[::]:9898", true),
        ("127.0.0.1:9898", false),
    ] {
        let path = config_dirs(
            dir.path(),
            "out",
            "state",
            &format!("[metrics]\nlisten = {listen:?}\n"),
        );
        let (code, out, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
        assert_eq!(code, 0, "{err}");
        let warned = err.contains("[metrics] listen:")
            && err.contains("listens on every network interface")
            && err.contains("no authentication");
        assert_eq!(warned, warns, "{listen}: {err}");
        assert_eq!(out.contains("# WARNING: "), warns, "{out}");
    }
}

#[test]
fn an_open_gallery_off_loopback_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(
        &dir.path().join("secret"),
        format!("{SECRET}\n").as_bytes(),
        0o600,
    );
    let path = config(dir.path(), "access_key_secret_file = \"secret\"");
    let base = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{base}\n[web]\nlisten = \"0.0.0.0:8080\"\n")).unwrap();
    let (code, _, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[web] listen"), "{err}");
    assert!(
        err.contains("not a loopback address and no password is set"),
        "{err}"
    );
    // With a password file it is fine, and the password is not printed.
    secret_file(
        &dir.path().join("web_password"),
        b"gallery-secret-77\n",
        0o600,
    );
    std::fs::write(
        &path,
        format!("{base}\n[web]\nlisten = \"0.0.0.0:8080\"\npassword_file = \"web_password\"\n"),
    )
    .unwrap();
    let (code, out, err) = run(receiver().arg("check-config").arg("-c").arg(&path));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password_file = "), "{out}");
    assert!(!out.contains("gallery-secret-77") && !err.contains("gallery-secret-77"));
}
