//! Config loading through the public API: files, errors, the example, docs coverage.

use receiver::config::{
    known_keys, AuthMode, Config, ConfigError, SecretSource, ENV_ACCESS_KEY_SECRET, EXAMPLE_TOML,
};
use std::path::Path;

const SECRET: &str = "Sup3r-S3cret-Value-0042";

fn env_with_secret(name: &str) -> Option<String> {
    (name == ENV_ACCESS_KEY_SECRET).then(|| SECRET.to_owned())
}

#[test]
fn example_file_equals_the_embedded_default() {
    let on_disk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/receiver.example.toml"
    ))
    .unwrap();
    assert_eq!(on_disk, EXAMPLE_TOML);
}

#[test]
fn example_validates_with_a_secret_from_env() {
    let c = Config::from_toml(
        EXAMPLE_TOML,
        Path::new("receiver.example.toml"),
        &env_with_secret,
    )
    .unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), SECRET);
    assert_eq!(c.aliyun.auth_mode, AuthMode::AkSign);
    let shown = format!("{c}\n{c:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn example_validates_with_a_systemd_credential() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("access_key_secret"),
        format!("{SECRET}\n"),
    )
    .unwrap();
    let dir = creds.path().to_str().unwrap().to_owned();
    let env = move |name: &str| (name == "CREDENTIALS_DIRECTORY").then(|| dir.clone());
    let c = Config::from_toml(EXAMPLE_TOML, Path::new("r.toml"), &env).unwrap();
    assert_eq!(c.aliyun.access_key_secret.expose(), SECRET);
    assert!(matches!(
        c.aliyun.access_key_secret.source(),
        Some(SecretSource::File(f)) if f.ends_with("access_key_secret")
    ));
}

#[test]
fn example_without_any_secret_names_all_three_sources() {
    let e = Config::from_toml(EXAMPLE_TOML, Path::new("r.toml"), &|_| None).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, ConfigError::SecretSource { .. }), "{m}");
    for source in [
        "access_key_secret",
        "access_key_secret_file",
        ENV_ACCESS_KEY_SECRET,
        "systemd credential `access_key_secret`",
    ] {
        assert!(m.contains(source), "{m}");
    }
}

#[test]
fn every_key_is_in_the_example_and_the_docs() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    for (table, keys) in known_keys() {
        assert!(
            EXAMPLE_TOML.contains(&format!("[{table}]")),
            "[{table}] not in the example"
        );
        assert!(
            docs.contains(&format!("[{table}]")),
            "[{table}] not in the docs"
        );
        for key in keys {
            assert!(
                EXAMPLE_TOML.contains(key),
                "{table}.{key} not in the example"
            );
            assert!(
                docs.contains(&format!("`{key}`")),
                "{table}.{key} not in the docs"
            );
        }
    }
}

#[test]
fn load_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.path(), missing);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[aliyun]\nport = 5671\n[spool]\nbatch_max = \"lots\"\n",
    )
    .unwrap();
    let e = Config::load(&bad).unwrap_err();
    assert_eq!(e.path(), bad);
    assert_eq!(e.line(), Some(4));
    assert!(
        e.to_string().contains("[spool] batch_max: invalid type"),
        "{e}"
    );
}

#[test]
fn secret_file_source_is_remembered_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ak"), format!("{SECRET}\r\n")).unwrap();
    // Secret files must not be readable by others (issue 16).
    std::fs::set_permissions(
        dir.path().join("ak"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let text = EXAMPLE_TOML.replace(
        "#access_key_secret_file = \"/etc/receiver/secret\"",
        "access_key_secret_file = \"ak\"",
    );
    let cfg = dir.path().join("receiver.toml");
    let c = Config::from_toml(&text, &cfg, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.aliyun.access_key_secret.expose(), SECRET);
    let Some(SecretSource::File(f)) = c.aliyun.access_key_secret.source() else {
        panic!("{:?}", c.aliyun.access_key_secret.source());
    };
    assert!(f.ends_with("ak"));
    let shown = c.to_string();
    assert!(shown.contains("(from file "), "{shown}");
    assert!(!shown.contains(SECRET) && !format!("{c:?}").contains(SECRET));
}
