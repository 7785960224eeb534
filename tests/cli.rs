//! The built binary: exit codes, `check-config` output, `print-default-config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
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
