//! Loading, validation and printing of `receiver.toml`.

use super::aliyun::RawAliyun;
use super::load::fields_of;
use super::sections::RawDir;
use super::*;
use std::collections::HashMap;

const MINIMAL: &str = r#"
[aliyun]
host = "iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com"
access_key_id = "LTAI5tExample"
access_key_secret = "inline-secret-value"
iot_instance_id = "iot-06z00xxxxxxx"
consumer_group_id = "DEFAULT_GROUP"

[output]
dir = "/srv/rx/images"

[state]
dir = "/srv/rx/state"
"#;

fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml(text, Path::new("/etc/receiver/receiver.toml"), &|k| {
        env.get(k).cloned()
    })
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_env(text, &[])
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_applies_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.aliyun.port, 5671);
    assert_eq!(c.aliyun.client_id, "receiver");
    assert_eq!(c.aliyun.sign_method, SignMethod::HmacSha1);
    assert_eq!(c.aliyun.auth_mode, AuthMode::AkSign);
    assert_eq!(c.aliyun.connections, 1);
    assert_eq!(c.aliyun.source_address, "default");
    assert_eq!(c.aliyun.credit, 256);
    assert_eq!(c.aliyun.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.aliyun.setup_timeout, Duration::from_secs(15));
    assert_eq!(c.aliyun.reconnect_max, Duration::from_secs(60));
    assert_eq!(c.aliyun.access_key_secret.expose(), "inline-secret-value");
    assert_eq!(
        c.aliyun.access_key_secret.source(),
        Some(&SecretSource::Inline)
    );
    assert_eq!(c.assembly, AssemblyConfig::default());
    assert_eq!(c.spool, SpoolConfig::default());
    assert_eq!(c.log.format, None);
    assert_eq!(c.output_dir, Path::new("/srv/rx/images"));
}

#[test]
fn fields_of_reads_serde_derive() {
    assert_eq!(fields_of::<RawDir>(), &["dir"]);
    assert!(fields_of::<RawAliyun>().contains(&"access_key_secret_file"));
}

#[test]
fn unknown_key_names_key_table_and_line() {
    let text = MINIMAL.replace("access_key_id =", "hots = \"x\"\naccess_key_id =");
    let e = parse(&text).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("/etc/receiver/receiver.toml:4: unknown key `hots` in [aliyun]"),
        "{msg}"
    );
    assert!(msg.contains("expected one of host, port,"), "{msg}");
    assert_eq!(e.line(), Some(4));
}

#[test]
fn unknown_key_in_dotted_and_inline_forms() {
    let m = err("x = 1\n");
    assert!(m.contains(":1: unknown key `x` in the top level"), "{m}");
    assert!(m.contains("[aliyun]"), "{m}");
    let m = err("\n\naliyun.hots = 1\n");
    assert!(m.contains(":3: unknown key `hots` in [aliyun]"), "{m}");
    let m = err("assembly = { max_opn = 3 }\n");
    assert!(m.contains(":1: unknown key `max_opn` in [assembly]"), "{m}");
    let m = err("[spool]\n\nenable = true\n");
    assert!(m.contains(":3: unknown key `enable` in [spool]"), "{m}");
}

#[test]
fn unknown_nested_tables_are_unknown_keys() {
    // Dotted keys and sub-tables inside a known table (no known key holds a table).
    let m = err(&format!(
        "{MINIMAL}\n[hook]\ncommand = [\"x\"]\nvars.FOO = \"1\"\n"
    ));
    assert!(m.contains(":17: unknown key `vars` in [hook]"), "{m}");
    let m = err(&MINIMAL.replace("[state]\n", "[state]\nsub.dir = \"x\"\n"));
    assert!(m.contains(":13: unknown key `sub` in [state]"), "{m}");
    let m = err(&format!("{MINIMAL}\n[retention.extra]\nx = 1\n"));
    assert!(m.contains(":15: unknown key `extra` in [retention]"), "{m}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = parse("[aliyun]\nhost = \n").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
}

#[test]
fn type_errors_name_the_key() {
    let m = err(&MINIMAL.replace("[output]", "[output]\n").replace(
        "consumer_group_id = \"DEFAULT_GROUP\"",
        "consumer_group_id = \"DEFAULT_GROUP\"\nport = \"abc\"",
    ));
    assert!(
        m.contains(":8: [aliyun] port: invalid type: string \"abc\", expected an integer"),
        "{m}"
    );
    let m = err("aliyun = 1\n");
    assert!(m.contains(":1: aliyun: invalid type"), "{m}");
}

#[test]
fn missing_required_keys() {
    for key in [
        "host",
        "access_key_id",
        "iot_instance_id",
        "consumer_group_id",
    ] {
        let text: String = MINIMAL
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .collect::<Vec<_>>()
            .join("\n");
        let m = err(&text);
        assert!(
            m.contains(&format!("missing required key `{key}` in [aliyun]")),
            "{m}"
        );
    }
}

#[test]
fn empty_instance_id_is_allowed() {
    let text = MINIMAL.replace("\"iot-06z00xxxxxxx\"\n", "\"\"\n");
    assert_eq!(parse(&text).unwrap().aliyun.iot_instance_id, "");
}

#[test]
fn durations() {
    let set = |k: &str, v: &str| MINIMAL.replace("[output]", &format!("{k} = {v}\n\n[output]"));
    let c = parse(&set("idle_timeout", "\"2m\"")).unwrap();
    assert_eq!(c.aliyun.idle_timeout, Duration::from_secs(120));
    let m = err(&set("idle_timeout", "60"));
    assert!(
        m.contains("[aliyun] idle_timeout: a bare number (60) has no unit"),
        "{m}"
    );
    let m = err(&set("idle_timeout", "\"60 parsecs\""));
    assert!(m.contains("[aliyun] idle_timeout: invalid duration"), "{m}");
    let m = err(&set("idle_timeout", "\"10s\""));
    assert!(
        m.contains("[aliyun] idle_timeout: \"10s\" is out of range"),
        "{m}"
    );
    assert!(m.contains("30-300 s"), "{m}");
    let m = err(&set("idle_timeout", "\"301s\""));
    assert!(m.contains("out of range"), "{m}");
    assert!(parse(&set("idle_timeout", "\"300s\"")).is_ok());
    assert!(parse(&set("idle_timeout", "\"30s\"")).is_ok());
}

#[test]
fn memory_limit_is_zero_or_at_least_a_mebibyte() {
    let set = |v: &str| format!("{MINIMAL}\n[assembly]\nmemory_limit = {v}\n");
    assert_eq!(parse(MINIMAL).unwrap().assembly.memory_limit, 8 << 20);
    assert_eq!(parse(&set("0")).unwrap().assembly.memory_limit, 0);
    assert_eq!(
        parse(&set("\"64 MiB\"")).unwrap().assembly.memory_limit,
        64 << 20
    );
    let m = err(&set("\"512 KiB\""));
    assert!(m.contains("[assembly] memory_limit"), "{m}");
    assert!(m.contains("0 (no limit)"), "{m}");
    let shown = parse(&set("\"64 MiB\"")).unwrap().to_string();
    assert!(shown.contains("memory_limit = \"64 MiB\""), "{shown}");
}

#[test]
fn sizes_accept_integers_and_units() {
    let set = |v: &str| format!("{MINIMAL}\n[assembly]\nmax_image_bytes = {v}\n");
    assert_eq!(
        parse(&set("1048576")).unwrap().assembly.max_image_bytes,
        1 << 20
    );
    assert_eq!(
        parse(&set("\"2 MiB\"")).unwrap().assembly.max_image_bytes,
        2 << 20
    );
    assert_eq!(
        parse(&set("\"500KB\"")).unwrap().assembly.max_image_bytes,
        500_000
    );
    let m = err(&set("\"2 MeB\""));
    assert!(
        m.contains("[assembly] max_image_bytes: invalid size"),
        "{m}"
    );
    let m = err(&set("-1"));
    assert!(m.contains("negative"), "{m}");
}

#[test]
fn ranges() {
    let set = |k: &str, v: &str| MINIMAL.replace("[output]", &format!("{k} = {v}\n\n[output]"));
    for (k, v, want) in [
        (
            "port",
            "0",
            "[aliyun] port: 0 is out of range; expected 1..=65535",
        ),
        ("connections", "0", "expected 1..=128"),
        ("connections", "129", "expected 1..=128"),
        ("credit", "0", "expected 1..=1000"),
        ("credit", "1001", "expected 1..=1000"),
        ("host", "\"\"", "[aliyun] host: is empty"),
        ("host", "\"amqps://x.example\"", "URL scheme"),
        ("host", "\"x.example:5671\"", "has a port"),
        ("sign_method", "\"sha1\"", "expected \"hmacsha1\""),
        (
            "auth_mode",
            "\"token\"",
            "expected \"aksign\" or \"ststoken\"",
        ),
        ("client_id", "\"a|b\"", "would break the AMQP user name"),
    ] {
        let text = set(k, v);
        // `host` is already set in MINIMAL: replace it instead of adding a duplicate.
        let text = if k == "host" {
            MINIMAL.replace(
                "host = \"iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com\"",
                &format!("host = {v}"),
            )
        } else {
            text
        };
        let m = err(&text);
        assert!(m.contains(want), "{k}={v}: {m}");
    }
    let c = parse(&set("sign_method", "\"HmacSHA256\"")).unwrap();
    assert_eq!(c.aliyun.sign_method, SignMethod::HmacSha256);
}

#[test]
fn client_id_length_counts_the_suffix() {
    let id = "c".repeat(64);
    let text = MINIMAL.replace("[output]", &format!("client_id = \"{id}\"\n[output]"));
    assert!(parse(&text).is_ok());
    let m = err(&MINIMAL.replace("[output]", &format!("client_id = \"{id}x\"\n[output]")));
    assert!(m.contains("is 65 characters; expected at most 64"), "{m}");
    let m = err(&MINIMAL.replace(
        "[output]",
        &format!("client_id = \"{id}\"\nconnections = 12\n[output]"),
    ));
    assert!(m.contains("appends \"-11\""), "{m}");
    assert!(m.contains("expected at most 61"), "{m}");
    let id61 = "c".repeat(61);
    let c = parse(&MINIMAL.replace(
        "[output]",
        &format!("client_id = \"{id61}\"\nconnections = 12\n[output]"),
    ))
    .unwrap();
    assert_eq!(c.aliyun.client_id_for(11).len(), 64);
    assert_eq!(c.aliyun.client_id_for(0), format!("{id61}-0"));
}

#[test]
fn secret_sources_exactly_one() {
    let no_inline = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
    let m = err(&no_inline);
    assert!(m.contains("access key secret: not given"), "{m}");
    assert!(
        m.contains("`access_key_secret`, `access_key_secret_file`"),
        "{m}"
    );
    assert!(m.contains(ENV_ACCESS_KEY_SECRET), "{m}");

    let c = parse_env(&no_inline, &[(ENV_ACCESS_KEY_SECRET, "from-env")]).unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), "from-env");
    assert_eq!(
        c.aliyun.access_key_secret.source(),
        Some(&SecretSource::Env(ENV_ACCESS_KEY_SECRET.into()))
    );
    // An empty variable counts as unset.
    assert!(parse_env(&no_inline, &[(ENV_ACCESS_KEY_SECRET, "")]).is_err());

    let e = parse_env(MINIMAL, &[(ENV_ACCESS_KEY_SECRET, "from-env")]).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("given 2 ways (`access_key_secret`, environment variable"),
        "{m}"
    );
    assert!(
        !m.contains("from-env") && !m.contains("inline-secret-value"),
        "{m}"
    );

    let both = MINIMAL.replace(
        "access_key_secret = \"inline-secret-value\"",
        "access_key_secret = \"x\"\naccess_key_secret_file = \"secret\"",
    );
    let m = err(&both);
    assert!(
        m.contains("(`access_key_secret`, `access_key_secret_file`)"),
        "{m}"
    );
}

#[test]
fn secret_file_is_read_relative_to_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let text = MINIMAL.replace(
        "access_key_secret = \"inline-secret-value\"",
        "access_key_secret_file = \"secret\"",
    );
    let c = Config::from_toml(&text, &dir.path().join("r.toml"), &|_| None).unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), "s3cr3t");
    assert_eq!(
        c.aliyun.access_key_secret.source(),
        Some(&SecretSource::File(absolute(&dir.path().join("secret"))))
    );
    let e = Config::from_toml(&text, &dir.path().join("sub/r.toml"), &|_| None).unwrap_err();
    assert!(matches!(e, ConfigError::File { .. }), "{e}");
    assert!(e.to_string().contains("access_key_secret_file"), "{e}");
}

/// A `$CREDENTIALS_DIRECTORY` holding `files`.
fn credentials(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

#[test]
fn systemd_credential_is_the_last_resort() {
    let no_inline = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
    let creds = credentials(&[("access_key_secret", "from-credential\n")]);
    let dir = creds.path().to_str().unwrap();
    let c = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), "from-credential");
    let file = absolute(&creds.path().join(CREDENTIAL_ACCESS_KEY_SECRET));
    assert_eq!(
        c.aliyun.access_key_secret.source(),
        Some(&SecretSource::File(file.clone()))
    );
    let shown = c.to_string();
    assert!(!shown.contains("from-credential"), "{shown}");
    assert!(
        shown.contains(&format!("# (from file {})", file.display())),
        "{shown}"
    );

    // Any configured source wins, without a "given 2 ways" error.
    let c = parse_env(MINIMAL, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), "inline-secret-value");
    let c = parse_env(
        &no_inline,
        &[
            (ENV_CREDENTIALS_DIRECTORY, dir),
            (ENV_ACCESS_KEY_SECRET, "from-env"),
        ],
    )
    .unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), "from-env");

    // An empty variable counts as unset.
    let m = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, "")])
        .unwrap_err()
        .to_string();
    assert!(m.contains("access key secret: not given"), "{m}");
}

#[test]
fn systemd_credential_problems_are_reported() {
    let no_inline = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
    // No such credential: the "not given" error says where it looked.
    let creds = credentials(&[("other", "x")]);
    let dir = creds.path().to_str().unwrap();
    let m = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)])
        .unwrap_err()
        .to_string();
    assert!(m.contains("access key secret: not given"), "{m}");
    assert!(m.contains("systemd credential `access_key_secret`"), "{m}");
    assert!(
        m.contains(&format!(
            "$CREDENTIALS_DIRECTORY ({dir}) has no `access_key_secret`"
        )),
        "{m}"
    );
    // Without the variable the hint still names the credential.
    let m = err(&no_inline);
    assert!(m.contains("(LoadCredential=)"), "{m}");
    assert!(!m.contains("has no"), "{m}");

    for (content, want) in [
        ("a\nb\n", "has more than one line"),
        ("\n", "is empty (from file "),
        ("a|b", "contains '|'"),
    ] {
        let creds = credentials(&[("access_key_secret", content)]);
        let dir = creds.path().to_str().unwrap();
        let e = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ConfigError::SecretSource { .. }), "{m}");
        assert!(m.contains(want), "{content:?}: {m}");
        assert!(!m.contains("a|b") && !m.contains("a\nb"), "{m}");
    }
    let creds = credentials(&[("access_key_secret", "a\nb\n")]);
    let dir = creds.path().to_str().unwrap();
    let m = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)])
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("[aliyun] access key secret: systemd credential `access_key_secret` ("),
        "{m}"
    );
    assert!(
        m.contains("from $CREDENTIALS_DIRECTORY): has more than one line"),
        "{m}"
    );
}

#[test]
fn systemd_credential_for_the_security_token() {
    let creds = credentials(&[("security_token", "CAIS-cred\n")]);
    let dir = creds.path().to_str().unwrap();
    let sts = MINIMAL.replace("[output]", "auth_mode = \"ststoken\"\n[output]");
    let c = parse_env(&sts, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
    let AuthMode::StsToken { security_token } = &c.aliyun.auth_mode else {
        panic!("{:?}", c.aliyun.auth_mode);
    };
    assert_eq!(security_token.expose(), "CAIS-cred");
    assert_eq!(
        security_token.source(),
        Some(&SecretSource::File(absolute(
            &creds.path().join(CREDENTIAL_SECURITY_TOKEN)
        )))
    );
    // The env variable still wins; with aksign the credential is not consulted.
    let c = parse_env(
        &sts,
        &[
            (ENV_CREDENTIALS_DIRECTORY, dir),
            (ENV_SECURITY_TOKEN, "env"),
        ],
    )
    .unwrap();
    assert!(matches!(&c.aliyun.auth_mode,
        AuthMode::StsToken { security_token } if security_token.expose() == "env"));
    let c = parse_env(MINIMAL, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
    assert_eq!(c.aliyun.auth_mode, AuthMode::AkSign);
}

#[test]
fn ststoken_needs_a_token_and_aksign_refuses_one() {
    let sts = MINIMAL.replace("[output]", "auth_mode = \"ststoken\"\n[output]");
    let m = err(&sts);
    assert!(m.contains("security token: not given"), "{m}");
    let c = parse_env(&sts, &[(ENV_SECURITY_TOKEN, "CAIS-token")]).unwrap();
    match &c.aliyun.auth_mode {
        AuthMode::StsToken { security_token } => {
            assert_eq!(security_token.expose(), "CAIS-token")
        }
        other => panic!("{other:?}"),
    }
    let text = format!("{c}");
    assert!(!text.contains("CAIS-token"), "{text}");
    assert!(!format!("{c:?}").contains("CAIS-token"));
    let m = err(&MINIMAL.replace("[output]", "security_token = \"t\"\n[output]"));
    assert!(
        m.contains("[aliyun] security_token: is set but auth_mode is \"aksign\""),
        "{m}"
    );
}

#[test]
fn dirs_must_be_disjoint() {
    let nested = MINIMAL.replace("/srv/rx/state", "/srv/rx/images/state");
    let m = err(&nested);
    assert!(m.contains("[state] dir:"), "{m}");
    assert!(m.contains("one contains the other"), "{m}");
    let same = MINIMAL.replace("/srv/rx/state", "/srv/rx/images/");
    assert!(err(&same).contains("the same folder"));
    let dotted = MINIMAL.replace("/srv/rx/state", "/srv/rx/images/x/..");
    assert!(parse(&dotted).is_err());
    // Siblings sharing a name prefix are fine.
    let sib = MINIMAL.replace("/srv/rx/state", "/srv/rx/images2");
    assert!(parse(&sib).is_ok());
}

#[test]
fn relative_dirs_resolve_against_the_config_folder() {
    let text = MINIMAL
        .replace("/srv/rx/images", "images")
        .replace("/srv/rx/state", "../state");
    let c = parse(&text).unwrap();
    assert_eq!(c.output_dir, Path::new("/etc/receiver/images"));
    assert_eq!(c.state_dir, Path::new("/etc/state"));
}

#[test]
fn default_dirs_come_from_the_data_dir() {
    let text: String = MINIMAL.split("[output]").next().unwrap().to_owned();
    if let Some(data) = default_data_dir() {
        let c = parse(&text).unwrap();
        assert_eq!(c.output_dir, data.join("images"));
        assert_eq!(c.state_dir, data.join("state"));
        assert!(c.to_string().contains("# default"));
    }
}

#[test]
fn ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(dir.path().join("ca.pem"), "not a pem\n").unwrap();
    let text = MINIMAL.replace("[output]", "ca_file = \"ca.pem\"\n[output]");
    let e = Config::from_toml(&text, &cfg, &|_| None).unwrap_err();
    assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ck.cert.pem()).unwrap();
    let c = Config::from_toml(&text, &cfg, &|_| None).unwrap();
    assert_eq!(c.aliyun.ca_file, Some(absolute(&dir.path().join("ca.pem"))));
}

#[test]
fn spool_must_hold_a_picture() {
    let text = format!("{MINIMAL}\n[spool]\nmax_bytes = \"4 MiB\"\n");
    assert!(err(&text).contains("[spool] max_bytes"));
    let text = format!("{MINIMAL}\n[spool]\nenabled = false\nmax_bytes = \"4 MiB\"\n");
    assert!(parse(&text).is_ok());
}

#[test]
fn spool_segment_bytes() {
    let spool = |body: &str| format!("{MINIMAL}\n[spool]\n{body}\n");
    assert_eq!(parse(MINIMAL).unwrap().spool.segment_bytes, 64 << 20);
    let c = parse(&spool("segment_bytes = \"8 MiB\"")).unwrap();
    assert_eq!(c.spool.segment_bytes, 8 << 20);
    assert!(c.to_string().contains("segment_bytes = \"8 MiB\"\n"));
    let c = parse(&spool("segment_bytes = 1048576")).unwrap();
    assert_eq!(c.spool.segment_bytes, 1 << 20);
    let c = parse(&spool("segment_bytes = \"1 GiB\"\nmax_bytes = \"2 GiB\"")).unwrap();
    assert_eq!(c.spool.segment_bytes, 1 << 30);
    let c = parse(&spool("segment_bytes = \"16 MiB\"\nmax_bytes = \"16 MiB\"")).unwrap();
    assert_eq!(c.spool.segment_bytes, 16 << 20);
    // Unset, it follows a smaller cap.
    let c = parse(&spool("max_bytes = \"16 MiB\"")).unwrap();
    assert_eq!(c.spool.segment_bytes, 16 << 20);
    assert!(c
        .to_string()
        .contains("segment_bytes = \"16 MiB\"  # default"));

    let m = err(&spool("segment_bytes = \"512 KiB\""));
    assert!(
        m.contains(":16: [spool] segment_bytes: 524288 is out of range; expected \"1 MiB\""),
        "{m}"
    );
    let m = err(&spool("segment_bytes = \"2 GiB\"\nmax_bytes = \"4 GiB\""));
    assert!(
        m.contains("[spool] segment_bytes: 2147483648 is out of range"),
        "{m}"
    );
    let m = err(&spool("max_bytes = \"16 MiB\"\nsegment_bytes = \"32 MiB\""));
    assert!(
        m.contains(":17: [spool] segment_bytes: 33554432 is more than max_bytes (16777216)"),
        "{m}"
    );
    let m = err(&spool("segment_bytes = \"lots\""));
    assert!(m.contains("[spool] segment_bytes: invalid size"), "{m}");
    // A disabled spool only needs a sane value.
    let off = "enabled = false\nmax_bytes = \"4 MiB\"\nsegment_bytes = \"64 MiB\"";
    assert!(parse(&spool(off)).is_ok());
}

#[test]
fn display_redacts_and_marks_defaults() {
    let c = parse(MINIMAL).unwrap();
    let shown = c.to_string();
    assert!(!shown.contains("inline-secret-value"), "{shown}");
    assert!(
        shown.contains("access_key_secret = \"<redacted>\"  # (inline in the config file)"),
        "{shown}"
    );
    assert!(shown.contains("port = 5671  # default"), "{shown}");
    assert!(
        shown.contains("max_image_bytes = \"4 MiB\"  # default"),
        "{shown}"
    );
    assert!(
        shown.contains("idle_timeout = \"1m\"  # default"),
        "{shown}"
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("inline-secret-value"), "{debug}");
    // The redacted view is itself TOML and reloads to the same settings.
    let again = parse(&shown.replace("\"<redacted>\"", "\"inline-secret-value\"")).unwrap();
    assert_eq!(again, c);
}

const OPS_FULL: &str = r#"
[metrics]
listen = "127.0.0.1:9898"

[health]
engine_stall = "2m"
link_grace = "5m"
max_delivery_age = "2h"

[retention]
max_age = "30d"
max_total_bytes = "50 GiB"
max_files_per_device = 10000
interval = "15m"

[hook]
command = ["/usr/local/bin/forward", "--bucket", "cams \"x\""]
timeout = "45s"
max_concurrent = 2
queue = 100
"#;

#[test]
fn ops_sections_are_off_by_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.ops, OpsConfig::default());
    assert!(c.ops.metrics.listen.is_none());
    assert!(!c.ops.retention.limits.any());
    assert!(c.ops.hook.is_none());
    // Empty sections are the same as absent ones.
    let c = parse(&format!(
        "{MINIMAL}\n[metrics]\n[health]\n[retention]\n[hook]\n"
    ))
    .unwrap();
    assert_eq!(c.ops, OpsConfig::default());
}

#[test]
fn ops_sections_parse() {
    let c = parse(&format!("{MINIMAL}{OPS_FULL}")).unwrap();
    let o = &c.ops;
    assert_eq!(o.metrics.listen, Some("127.0.0.1:9898".parse().unwrap()));
    assert_eq!(o.health.engine_stall, Duration::from_secs(120));
    assert_eq!(o.health.link_grace, Duration::from_secs(300));
    assert_eq!(o.health.max_delivery_age, Some(Duration::from_secs(7200)));
    let l = o.retention.limits;
    assert_eq!(l.max_age, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(l.max_total_bytes, Some(50 << 30));
    assert_eq!(l.max_files_per_device, Some(10_000));
    assert_eq!(o.retention.interval, Duration::from_secs(900));
    let h = o.hook.as_ref().unwrap();
    assert_eq!(
        h.command,
        ["/usr/local/bin/forward", "--bucket", "cams \"x\""]
    );
    assert_eq!(h.timeout, Duration::from_secs(45));
    assert_eq!((h.max_concurrent, h.queue), (2, 100));
}

#[test]
fn ops_unknown_keys_name_key_table_and_line() {
    let m = err(&format!("{MINIMAL}\n[retention]\nmax_agee = \"30d\"\n"));
    assert!(
        m.starts_with("/etc/receiver/receiver.toml:16: unknown key `max_agee` in [retention]"),
        "{m}"
    );
    assert!(
        m.contains("(expected one of max_age, max_total_bytes, max_files_per_device, interval)"),
        "{m}"
    );
    let m = err(&format!("{MINIMAL}\n[metrics]\nlisten_addr = \"x\"\n"));
    assert!(
        m.contains(":16: unknown key `listen_addr` in [metrics]"),
        "{m}"
    );
    let m = err(&format!("hook.cmd = [\"x\"]\n{MINIMAL}"));
    assert!(m.contains(":1: unknown key `cmd` in [hook]"), "{m}");
    let m = err(&format!("{MINIMAL}\n[health]\n\nlink_grase = \"1m\"\n"));
    assert!(
        m.contains(":17: unknown key `link_grase` in [health]"),
        "{m}"
    );
    // The top level lists the new tables too.
    let m = err("[hooks]\n");
    assert!(
        m.contains("[metrics], [health], [retention], [hook]"),
        "{m}"
    );
}

#[test]
fn ops_invalid_values_name_file_line_and_key() {
    let at = |table: &str, body: &str| format!("{MINIMAL}\n[{table}]\n{body}\n");
    for (table, body, want) in [
        (
            "metrics",
            "listen = \"localhost\"",
            ":16: [metrics] listen: \"localhost\" is not an ip:port address",
        ),
        (
            "health",
            "engine_stall = \"0s\"",
            ":16: [health] engine_stall: must be greater than zero",
        ),
        (
            "health",
            "link_grace = \"soon\"",
            ":16: [health] link_grace: invalid duration \"soon\"",
        ),
        (
            "retention",
            "max_age = \"forever\"",
            ":16: [retention] max_age: invalid duration \"forever\"",
        ),
        (
            "retention",
            "max_age = \"10s\"",
            ":16: [retention] max_age: must be at least 1 minute",
        ),
        (
            "retention",
            "interval = \"1m\"\nmax_total_bytes = \"50 GeB\"",
            ":17: [retention] max_total_bytes: invalid size \"50 GeB\": unknown size unit \"GeB\"",
        ),
        (
            "retention",
            "max_files_per_device = 0",
            ":16: [retention] max_files_per_device: must be at least 1",
        ),
        (
            "hook",
            "command = [\"\"]",
            ":16: [hook] command: the program name is empty",
        ),
        (
            "hook",
            "command = [\"x\"]\nqueue = 0",
            ":17: [hook] queue: must be at least 1",
        ),
        // A missing key points at the first setting that needs it.
        (
            "hook",
            "timeout = \"5s\"",
            ":16: [hook] command: is required when [hook] has settings",
        ),
        // Type errors, from deserialization.
        (
            "retention",
            "max_files_per_device = \"many\"",
            ":16: [retention] max_files_per_device: invalid type: string \"many\", expected a \
             positive integer",
        ),
        (
            "retention",
            "max_total_bytes = true",
            ":16: [retention] max_total_bytes: invalid size; expected an integer number of bytes",
        ),
        (
            "hook",
            "command = \"/bin/true\"",
            ":16: [hook] command: invalid type: string \"/bin/true\", expected a sequence",
        ),
    ] {
        let e = parse(&at(table, body)).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{m}");
        assert!(m.starts_with("/etc/receiver/receiver.toml:"), "{m}");
        assert!(m.contains(want), "{table} {body}: {m}");
    }
}

#[test]
fn display_shows_ops_settings_and_reloads() {
    let shown = parse(MINIMAL).unwrap().to_string();
    for want in [
        "[metrics]\n# listen not set (default)",
        "[health]\nengine_stall = \"1m\"  # default\nlink_grace = \"10m\"  # default\n",
        "# max_delivery_age not set (default)",
        "[retention]\n# no limit set (default): images are kept forever",
        "interval = \"10m\"  # default",
        "[hook]\n# command not set (default): no hook",
    ] {
        assert!(shown.contains(want), "{want}\n{shown}");
    }

    let c = parse(&format!("{MINIMAL}{OPS_FULL}")).unwrap();
    let shown = c.to_string();
    for want in [
        "listen = \"127.0.0.1:9898\"\n",
        "engine_stall = \"2m\"\n",
        "max_delivery_age = \"2h\"\n",
        "max_age = \"30days\"\n",
        "max_total_bytes = \"50 GiB\"\n",
        "max_files_per_device = 10000\n",
        "interval = \"15m\"\n",
        "command = [\"/usr/local/bin/forward\", \"--bucket\", 'cams \"x\"']\n",
        "timeout = \"45s\"\n",
        "max_concurrent = 2\n",
        "queue = 100\n",
    ] {
        assert!(shown.contains(want), "{want}\n{shown}");
    }
    let again = parse(&shown.replace("\"<redacted>\"", "\"inline-secret-value\"")).unwrap();
    assert_eq!(again, c);
}

#[test]
fn example_parses_and_validates() {
    let c = parse_env(EXAMPLE_TOML, &[(ENV_ACCESS_KEY_SECRET, "dummy")]).unwrap();
    assert_eq!(c.aliyun.port, defaults::PORT);
    assert_eq!(c.output_dir, Path::new("/var/lib/receiver/images"));
    assert_eq!(c.state_dir, Path::new("/var/lib/receiver/state"));
    assert_eq!(c.assembly, AssemblyConfig::default());
    assert_eq!(c.spool, SpoolConfig::default());
    assert_eq!(c.ops, OpsConfig::default());
}

#[test]
fn one_size_spelling_works_in_every_section() {
    let text = format!(
        "{MINIMAL}\n[assembly]\nmax_image_bytes = \"8mib\"\n\n[retention]\nmax_total_bytes = \"8mib\"\n\n[spool]\nsegment_bytes = \"8mib\"\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.assembly.max_image_bytes, 8 << 20);
    assert_eq!(c.ops.retention.limits.max_total_bytes, Some(8 << 20));
    assert_eq!(c.spool.segment_bytes, 8 << 20);
    // And one duration type: a bare number is refused the same way everywhere.
    let m = err(&format!("{MINIMAL}\n[health]\nlink_grace = 60\n"));
    assert!(
        m.contains(":16: [health] link_grace: a bare number (60) has no unit"),
        "{m}"
    );
}

/// Every setting away from its default, secrets from a file and the environment: for the
/// printing tests. `{dir}` is a folder holding `ca.pem` and `secret` (mode 600).
const RICH: &str = r#"
[aliyun]
host = "iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com"
port = 5672
access_key_id = "LTAI5tExample"
access_key_secret_file = "{dir}/secret"
iot_instance_id = ""
consumer_group_id = "DEFAULT_GROUP"
client_id = "rx-01"
sign_method = "HmacSHA256"
auth_mode = "StsToken"
ca_file = "{dir}/ca.pem"
connections = 3
source_address = "x"
credit = 100
idle_timeout = "90s"
setup_timeout = "15s"
reconnect_max = "30m 5s"

[output]
backend = "fs"  # default
dir = "images"

[state]
dir = "{dir}/state"

[assembly]
max_image_bytes = 5000
max_open = 10
timeout = "1m"
dedup_window = 7
decode_check = true
memory_limit = 0
redelivery_grace = "30s"

[spool]
enabled = false
batch_delay = "0s"
max_bytes = "4 MiB"

[log]
format = "JSON"
level = "receiver=debug"

[metrics]
listen = "[::1]:9898"

[health]
max_delivery_age = "1d"

[retention]
max_total_bytes = 123456789

[hook]
command = ["/bin/x", "it's"]
timeout = "30s"
env = ["FOO", "BAR=baz qux", "Q=a'b\"c"]
"#;

/// A folder with the files [`RICH`] names, and [`RICH`] pointing at it.
fn rich() -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ck.cert.pem()).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "file-secret-value\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = RICH.replace("{dir}", dir.path().to_str().unwrap());
    (dir, text)
}

#[test]
fn display_is_the_documented_view() {
    let (dir, text) = rich();
    let c = parse_env(&text, &[(ENV_SECURITY_TOKEN, "env-token-value")]).unwrap();
    let want = r#"[aliyun]
host = "iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com"
port = 5672
access_key_id = "LTAI5tExample"
access_key_secret = "<redacted>"  # (from file {dir}/secret)
iot_instance_id = ""
consumer_group_id = "DEFAULT_GROUP"
client_id = "rx-01"
# connection client ids: rx-01-0 .. rx-01-2
sign_method = "hmacsha256"
auth_mode = "ststoken"
security_token = "<redacted>"  # (from env RECEIVER_SECURITY_TOKEN)
ca_file = "{dir}/ca.pem"
connections = 3
source_address = "x"
credit = 100
idle_timeout = "1m 30s"
setup_timeout = "15s"  # default
reconnect_max = "30m 5s"

[output]
backend = "fs"  # default
dir = "/etc/receiver/images"

[state]
dir = "{dir}/state"

[assembly]
max_image_bytes = 5000
max_open = 10
timeout = "1m"
dedup_window = 7
decode_check = true
memory_limit = 0
redelivery_grace = "30s"

[spool]
enabled = false
batch_max = 256  # default
batch_delay = "0s"
max_bytes = "4 MiB"
segment_bytes = "4 MiB"  # default

[log]
format = "json"
level = "receiver=debug"

[metrics]
listen = "[::1]:9898"

[health]
engine_stall = "1m"  # default
link_grace = "10m"  # default
max_delivery_age = "1day"

[retention]
# max_age not set
max_total_bytes = 123456789
# max_files_per_device not set
interval = "10m"  # default

[hook]
command = ["/bin/x", "it's"]
timeout = "30s"  # default
max_concurrent = 4  # default
queue = 256  # default
env = ["FOO", "BAR=baz qux", """Q=a'b"c"""]

[web]
# listen not set (default): no gallery

[cluster]
# redis_url not set (default): single-instance mode, chunks in flight in the local spool
"#
    .replace("{dir}", dir.path().to_str().unwrap());
    assert_eq!(c.to_string(), want);
}

/// `shown` with each redacted secret replaced by its value, written inline.
fn unredact(shown: &str, c: &Config) -> String {
    let mut secrets = vec![("access_key_secret", &c.aliyun.access_key_secret)];
    if let AuthMode::StsToken { security_token } = &c.aliyun.auth_mode {
        secrets.push(("security_token", security_token));
    }
    let mut text = shown.to_owned();
    for (key, secret) in secrets {
        let redacted = format!("{key} = \"{}\"", Secret::REDACTED);
        assert_eq!(text.matches(&redacted).count(), 1, "{key}\n{shown}");
        text = text.replace(&redacted, &format!("{key} = {:?}", secret.expose()));
    }
    text
}

#[test]
fn printed_config_is_toml_and_loads_as_the_same_config() {
    let (_dir, rich) = rich();
    let no_dirs: String = MINIMAL.split("[output]").next().unwrap().to_owned();
    let env = [
        (ENV_SECURITY_TOKEN, "env-token-value"),
        (ENV_ACCESS_KEY_SECRET, "dummy"),
    ];
    for (name, text, env) in [
        ("minimal", MINIMAL.to_owned(), &env[..0]),
        ("ops", format!("{MINIMAL}{OPS_FULL}"), &env[..0]),
        ("rich", rich, &env[..1]),
        ("example", EXAMPLE_TOML.to_owned(), &env[1..]),
        ("default dirs", no_dirs, &env[..0]),
    ] {
        if name == "default dirs" && default_data_dir().is_none() {
            continue;
        }
        let c = parse_env(&text, env).unwrap();
        let shown = c.to_string();
        // Valid TOML whose tables and keys are exactly the serialized config's (the printer
        // drops nothing and adds only comments), all of them keys a config file may hold.
        let doc: toml::Table = toml::from_str(&shown).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut serialized = toml::Table::try_from(&c).unwrap();
        let known = known_keys();
        for (section, _) in &known {
            // The printer shows every section, even one with nothing set (no hook).
            serialized
                .entry(*section)
                .or_insert_with(|| toml::Table::new().into());
        }
        assert_eq!(doc, serialized, "{name}");
        for (section, keys) in &doc {
            let (_, allowed) = known.iter().find(|(s, _)| s == section).unwrap();
            for key in keys.as_table().unwrap().keys() {
                assert!(allowed.contains(&key.as_str()), "{name}: [{section}] {key}");
            }
        }
        // Loaded back (secrets inline, nothing from the environment): the same config.
        let again = parse(&unredact(&shown, &c)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again, c, "{name}");
        // And printed again, the same view but for where the secrets came from.
        let strip = |s: &str| {
            s.lines()
                .map(|l| l.split("  # (").next().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&again.to_string()), strip(&shown), "{name}");
    }
}

#[test]
fn printed_config_never_holds_a_secret() {
    let no_secret = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
    let sts = |s: &str| s.replace("[output]", "auth_mode = \"ststoken\"\n[output]");
    let (dir, _) = rich();
    let file = dir.path().join("secret");
    let creds = credentials(&[
        (CREDENTIAL_ACCESS_KEY_SECRET, "credential-secret-value\n"),
        (CREDENTIAL_SECURITY_TOKEN, "credential-token-value\n"),
    ]);
    let creds_dir = creds.path().to_str().unwrap();
    type Env<'a> = Vec<(&'a str, &'a str)>;
    // Config text, its environment, the secret values it holds.
    let cases: Vec<(String, Env, &[&str])> = vec![
        (MINIMAL.into(), vec![], &["inline-secret-value"]),
        (
            no_secret.clone(),
            vec![(ENV_ACCESS_KEY_SECRET, "env-secret-value")],
            &["env-secret-value"],
        ),
        (
            no_secret.replace(
                "[output]",
                &format!(
                    "access_key_secret_file = {:?}\n[output]",
                    file.to_str().unwrap()
                ),
            ),
            vec![],
            &["file-secret-value"],
        ),
        (
            sts(&no_secret),
            vec![(ENV_CREDENTIALS_DIRECTORY, creds_dir)],
            &["credential-secret-value", "credential-token-value"],
        ),
        (
            sts(MINIMAL).replace(
                "[output]",
                "security_token = \"inline-token-value\"\n[output]",
            ),
            vec![],
            &["inline-secret-value", "inline-token-value"],
        ),
        (
            sts(MINIMAL),
            vec![(ENV_SECURITY_TOKEN, "env-token-value")],
            &["inline-secret-value", "env-token-value"],
        ),
        (
            sts(MINIMAL).replace(
                "[output]",
                &format!(
                    "security_token_file = {:?}\n[output]",
                    file.to_str().unwrap()
                ),
            ),
            vec![],
            &["inline-secret-value", "file-secret-value"],
        ),
    ];
    for (text, env, secrets) in cases {
        let c = parse_env(&text, &env).unwrap();
        let shown = c.to_string();
        let serialized = toml::to_string(&c).unwrap();
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret}\n{shown}");
            assert!(!serialized.contains(secret), "{secret}\n{serialized}");
        }
        let redacted = format!("\"{}\"  # (", Secret::REDACTED);
        assert_eq!(shown.matches(&redacted).count(), secrets.len(), "{shown}");
    }
}

/// `[output]` for the object store, after `[aliyun]` of MINIMAL.
fn with_output(output: &str) -> String {
    let head = MINIMAL.split("[output]").next().unwrap_or_default();
    format!("{head}[output]\n{output}\n\n[state]\ndir = \"/srv/rx/state\"\n")
}

const S3_OUTPUT: &str = r#"backend = "s3"
endpoint = "http://127.0.0.1:8333"
bucket = "camera-images"
access_key_id = "AKID"
secret_access_key = "inline-s3-secret""#;

#[test]
fn s3_output_parses_with_defaults_and_prints_redacted() {
    let c = parse(&with_output(S3_OUTPUT)).unwrap();
    let o = c.output_s3.as_ref().expect("s3 options");
    assert_eq!(o.bucket, "camera-images");
    assert_eq!(o.region, defaults::S3_REGION);
    assert_eq!(o.prefix, "");
    assert!(o.create_only && !o.virtual_host_style);
    let shown = c.to_string();
    assert!(shown.contains("backend = \"s3\"\n"), "{shown}");
    assert!(
        shown.contains("region = \"us-east-1\"  # default"),
        "{shown}"
    );
    assert!(
        shown.contains("secret_access_key = \"<redacted>\"  # (inline in the config file)"),
        "{shown}"
    );
    assert!(
        shown.contains("# object keys: <productKey>/<deviceName>/<time>[-n].jpg"),
        "{shown}"
    );
    assert!(!shown.contains("inline-s3-secret"), "{shown}");
    assert!(!shown.contains("\ndir = \"\""), "{shown}");
}

#[test]
fn s3_keys_with_the_folder_backend_are_refused() {
    let m = err(&with_output(
        "dir = \"/srv/rx/images\"\nbucket = \"camera-images\"",
    ));
    assert!(
        m.contains("bucket") && m.contains("backend is \"fs\""),
        "{m}"
    );
}

#[test]
fn a_folder_with_the_s3_backend_is_refused() {
    let m = err(&with_output(&format!(
        "{S3_OUTPUT}\ndir = \"/srv/rx/images\""
    )));
    assert!(m.contains("dir") && m.contains("backend is \"s3\""), "{m}");
}

#[test]
fn retention_with_the_s3_backend_points_at_lifecycle_rules() {
    let text = format!(
        "{}\n[retention]\nmax_age = \"30d\"\n",
        with_output(S3_OUTPUT)
    );
    let m = err(&text);
    assert!(
        m.contains("[retention]") && m.contains("lifecycle rule"),
        "{m}"
    );
}

#[test]
fn bad_s3_values_name_the_key() {
    for (key, bad, what) in [
        ("endpoint", "\"ftp://x\"", "endpoint"),
        ("bucket", "\"Bad_Bucket\"", "bucket"),
        ("prefix", "\"a/../b\"", "prefix"),
        ("backend", "\"gcs\"", "backend"),
    ] {
        // The key's good line commented out, the bad value first in the table.
        let text = with_output(&S3_OUTPUT.replace(&format!("{key} = "), &format!("# {key} = ")));
        let m = err(&text.replace("[output]\n", &format!("[output]\n{key} = {bad}\n")));
        assert!(m.contains(what), "{key}: {m}");
    }
}

#[test]
fn the_s3_secret_is_required() {
    let text = with_output(&S3_OUTPUT.replace("secret_access_key = \"inline-s3-secret\"", ""));
    let m = parse_env(&text, &[]).unwrap_err().to_string();
    assert!(m.contains("secret_access_key"), "{m}");
}

#[test]
fn web_is_off_by_default_and_loopback_needs_no_password() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.web, crate::web::WebConfig::default());
    let c = parse(&format!("{MINIMAL}[web]\nlisten = \"127.0.0.1:8080\"\n")).unwrap();
    assert_eq!(c.web.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert!(c.web.password.is_none());
    let shown = c.to_string();
    assert!(shown.contains("listen = \"127.0.0.1:8080\""), "{shown}");
    assert!(
        shown.contains("# password_file not set: no password"),
        "{shown}"
    );
}

#[test]
fn web_elsewhere_than_loopback_needs_a_password() {
    let e = err(&format!("{MINIMAL}[web]\nlisten = \"0.0.0.0:8080\"\n"));
    assert!(e.contains("[web] listen"), "{e}");
    assert!(
        e.contains("not a loopback address and no password is set"),
        "{e}"
    );
    assert!(e.contains("password_file"), "{e}");
    let e = err(&format!("{MINIMAL}[web]\nlisten = \"localhost:8080\"\n"));
    assert!(e.contains("not an ip:port address"), "{e}");
    let e = err(&format!(
        "{MINIMAL}[web]\nlisten = \"127.0.0.1:80\"\nport = 1\n"
    ));
    assert!(e.contains("port"), "{e}");
}

#[test]
fn web_password_from_file_or_credential_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web_password");
    std::fs::write(&file, "gallery-pass-123\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "{MINIMAL}[web]\nlisten = \"0.0.0.0:8080\"\npassword_file = {:?}\n",
        file.to_str().unwrap()
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.web.password.as_ref().unwrap().expose(),
        "gallery-pass-123"
    );
    let shown = c.to_string();
    assert!(!shown.contains("gallery-pass-123"), "{shown}");
    assert!(shown.contains(&format!("password_file = {:?}", file.to_str().unwrap())));
    assert!(!format!("{c:?}").contains("gallery-pass-123"));
    // Readable by everyone: refused.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let e = err(&text);
    assert!(
        e.contains("readable by everyone") && !e.contains("gallery-pass"),
        "{e}"
    );

    let creds = credentials(&[(crate::config::CREDENTIAL_WEB_PASSWORD, "cred-pass\n")]);
    let c = parse_env(
        &format!("{MINIMAL}[web]\nlisten = \"10.0.0.1:8080\"\n"),
        &[(ENV_CREDENTIALS_DIRECTORY, creds.path().to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(c.web.password.unwrap().expose(), "cred-pass");
}

#[test]
fn cluster_is_off_unless_a_key_is_set_and_then_needs_a_url() {
    assert_eq!(parse(MINIMAL).unwrap().cluster, None);
    assert_eq!(
        parse(&format!("{MINIMAL}\n[cluster]\n")).unwrap().cluster,
        None
    );
    let e = err(&format!("{MINIMAL}\n[cluster]\nkey_prefix = \"x\"\n"));
    assert!(
        e.contains("missing required key `redis_url` in [cluster]"),
        "{e}"
    );
    let c = parse(&format!(
        "{MINIMAL}\n[cluster]\nredis_url = \"redis://10.0.0.5:6379/0\"\n"
    ))
    .unwrap()
    .cluster
    .unwrap();
    assert_eq!(c.key_prefix, "receiver");
    assert_eq!(c.instance_id, "");
    assert!(c.instance().ends_with(&format!("-{}", std::process::id())));
    assert_eq!(c.lease, Duration::from_secs(30));
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.password, None);
}

#[test]
fn cluster_urls_and_passwords_never_print() {
    let text = format!(
        "{MINIMAL}\n[cluster]\nredis_url = \"rediss://fleet:pw-in-url@db.example:6380/2\"\n\
         instance_id = \"rx-a\"\n"
    );
    let c = parse_env(&text, &[(ENV_REDIS_PASSWORD, "pw-from-env")]).unwrap();
    let k = c.cluster.as_ref().unwrap();
    assert_eq!(k.password.as_ref().unwrap().expose(), "pw-from-env");
    let shown = c.to_string();
    assert!(!shown.contains("pw-"), "{shown}");
    assert!(
        shown.contains("redis_url = \"rediss://fleet:<redacted>@db.example:6380/2\""),
        "{shown}"
    );
    assert!(
        shown.contains("password = \"<redacted>\"  # (from env RECEIVER_REDIS_PASSWORD)"),
        "{shown}"
    );
    assert!(!format!("{c:?}").contains("pw-from-env"));
    // A bad URL is reported without repeating its password.
    let e = err(&format!(
        "{MINIMAL}\n[cluster]\nredis_url = \"http://u:hunter2@db:1/0\"\n"
    ));
    assert!(
        e.contains("[cluster] redis_url") && !e.contains("hunter2"),
        "{e}"
    );
    // The systemd credential, and exactly one source.
    let creds = credentials(&[("redis_password", "pw-cred\n")]);
    let plain = format!("{MINIMAL}\n[cluster]\nredis_url = \"redis://db:6379/0\"\n");
    let c = parse_env(
        &plain,
        &[(ENV_CREDENTIALS_DIRECTORY, creds.path().to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(c.cluster.unwrap().password.unwrap().expose(), "pw-cred");
    let two = format!("{plain}password = \"a\"\n");
    let e = parse_env(&two, &[(ENV_REDIS_PASSWORD, "b")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("given 2 ways") && !e.contains("\"a\""), "{e}");
}

#[test]
fn cluster_values_are_checked() {
    let base = format!("{MINIMAL}\n[cluster]\nredis_url = \"redis://db:6379/0\"\n");
    for (extra, want) in [
        ("key_prefix = \"a{b}\"\n", "[cluster] key_prefix"),
        ("key_prefix = \"\"\n", "[cluster] key_prefix"),
        ("instance_id = \"a b\"\n", "[cluster] instance_id"),
        ("lease = \"10s\"\ntimeout = \"10s\"\n", "[cluster] timeout"),
        ("lease = \"0s\"\n", "[cluster] lease"),
        ("leas = \"1s\"\n", "unknown key `leas`"),
        ("sentinel_master = \"m\"\n", "[cluster] sentinel_master"),
        (
            "sentinels = [\"redis://s:26379\"]\n",
            "[cluster] sentinel_master",
        ),
        (
            "sentinels = []\nsentinel_master = \"m\"\n",
            "[cluster] sentinels",
        ),
        (
            "sentinels = [\"http://u:pw@s:1\"]\nsentinel_master = \"m\"\n",
            "[cluster] sentinels",
        ),
    ] {
        let e = err(&format!("{base}{extra}"));
        assert!(e.contains(want), "{extra}: {e}");
    }
}

#[test]
fn cluster_sentinels_parse_and_print_redacted() {
    let text = format!(
        "{MINIMAL}\n[cluster]\nredis_url = \"redis://:pw1@ignored:6379/3\"\n\
         sentinels = [\"redis://:pw2@10.0.0.5:26379\", \"redis://10.0.0.6:26379\"]\n\
         sentinel_master = \"mymaster\"\n"
    );
    let c = parse(&text).unwrap();
    let k = c.cluster.as_ref().unwrap();
    assert_eq!(k.sentinels.len(), 2);
    let o = k.options();
    assert_eq!(o.sentinel.as_ref().unwrap().1, "mymaster");
    let shown = c.to_string();
    assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
    assert!(shown.contains("sentinel_master = \"mymaster\""), "{shown}");
}
