//! SIGHUP: reload what can change without a restart; SIGUSR1: a status line.
//!
//! On [`Control::Reload`] the config file is loaded again with every check start-up makes
//! ([`Config::load_checked`]). A file that does not load is refused with the reason and the
//! running configuration stays in force. Otherwise every setting is compared with the running
//! one ([`diff`]): the settings in [`RELOADABLE`] are applied at once, the others are logged as
//! "needs restart" and left as they are (the running value stays; they are reported again on the
//! next reload until the daemon restarts).
//!
//! To make another setting reloadable: add its `table.key` to [`RELOADABLE`], copy it into the
//! running configuration in [`merge`], and apply it in [`Reloader::apply`] (a `watch` channel or
//! a handle to the part of the daemon that uses it). Secrets read from files (the web password
//! to come) fit the same way; their values are compared, never shown.

use crate::config::{AuthMode, Config, ConfigError, ConfigWarning, LogFormat};
use crate::events::reload::{ReloadApplied, ReloadRefused};
use crate::logging::LogHandle;
use crate::metrics::Metrics;
use crate::ops::{Hook, RetentionConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// A request from the signal handler to the running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: log a status line.
    Status,
}

/// The settings applied without a restart, as `table.key` (`table.*`: every key of the table).
/// `[hook]` keys reload only while a hook runs both before and after; turning the hook on or
/// off, `max_concurrent` and `queue` need a restart.
pub const RELOADABLE: &[&str] = &[
    "log.level",
    "log.format",
    "retention.*",
    "hook.command",
    "hook.timeout",
    "hook.env",
];

/// One setting that differs between the running and the new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `table.key`.
    pub key: String,
    /// Applied now (else it needs a restart).
    pub reloadable: bool,
}

/// The settings of `c` as `table.key` → the value `check-config` prints (secrets redacted,
/// `<unset>` for a key shown as not set). Read from `Display`, so a new key is covered as soon as
/// `check-config` shows it.
fn settings(c: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut table = String::new();
    for line in c.to_string().lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = t.to_owned();
        } else if let Some(comment) = line.strip_prefix("# ") {
            if let Some((key, _)) = comment.split_once(" not set") {
                if !key.contains(' ') {
                    out.insert(format!("{table}.{key}"), "<unset>".to_owned());
                }
            }
        } else if let Some((key, value)) = line.split_once(" = ") {
            let value = value.strip_suffix("  # default").unwrap_or(value);
            out.insert(format!("{table}.{}", key.trim()), value.to_owned());
        }
    }
    out
}

fn reloadable(key: &str, old: &Config, new: &Config) -> bool {
    let (table, _) = key.split_once('.').unwrap_or((key, ""));
    if table == "hook" && (old.ops.hook.is_none() || new.ops.hook.is_none()) {
        return false;
    }
    RELOADABLE
        .iter()
        .any(|r| *r == key || r.strip_suffix(".*") == Some(table))
}

/// What differs between the running configuration `old` and `new`, in file order of tables.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let (a, b) = (settings(old), settings(new));
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .collect();
    // Same source, new value: the secret's content changed.
    if old.aliyun.access_key_secret != new.aliyun.access_key_secret {
        keys.push("aliyun.access_key_secret".into());
    }
    if let (AuthMode::StsToken { security_token: x }, AuthMode::StsToken { security_token: y }) =
        (&old.aliyun.auth_mode, &new.aliyun.auth_mode)
    {
        if x != y {
            keys.push("aliyun.security_token".into());
        }
    }
    // The Redis password is printed redacted: compare the values.
    let password = |c: &Config| c.cluster.as_ref().and_then(|k| k.password.clone());
    if password(old) != password(new) {
        keys.push("cluster.password".into());
    }
    // Turning the hook on or off is one change, not one per key of `[hook]`.
    if old.ops.hook.is_some() != new.ops.hook.is_some() {
        keys.retain(|k| !k.starts_with("hook."));
        keys.push("hook.command".into());
    }
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| Change {
            reloadable: reloadable(&key, old, new),
            key,
        })
        .collect()
}

/// The running configuration after a reload: `new`'s reloadable settings, `old`'s others.
pub fn merge(old: &Config, new: &Config) -> Config {
    let mut running = old.clone();
    running.log = new.log.clone();
    running.ops.retention = new.ops.retention;
    if let (Some(run), Some(n)) = (running.ops.hook.as_mut(), new.ops.hook.as_ref()) {
        run.command = n.command.clone();
        run.timeout = n.timeout;
        run.env = n.env.clone();
    }
    running
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// `table.key` applied now.
    pub applied: Vec<String>,
    /// `table.key` changed in the file but kept at the running value until a restart.
    pub needs_restart: Vec<String>,
    /// The new file's warnings.
    pub warnings: Vec<ConfigWarning>,
}

/// Holds the running configuration and the handles that apply reloadable settings.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    running: Config,
    log: Option<LogHandle>,
    /// `--log-format`, which wins over `[log] format`.
    cli_format: Option<LogFormat>,
    hook: Option<Hook>,
    retention: tokio::sync::watch::Sender<RetentionConfig>,
}

impl Reloader {
    /// A reloader for the daemon started with `running`, loaded from `path`.
    pub fn new(
        path: PathBuf,
        running: Config,
        log: Option<LogHandle>,
        cli_format: Option<LogFormat>,
        hook: Option<Hook>,
        retention: tokio::sync::watch::Sender<RetentionConfig>,
    ) -> Reloader {
        Reloader {
            path,
            running,
            log,
            cli_format,
            hook,
            retention,
        }
    }

    /// The configuration in force.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Loads the file again and applies what can be; a file that does not load changes nothing.
    pub async fn reload(&mut self) -> Result<ReloadReport, ConfigError> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load_checked(&path))
            .await
            .map_err(|e| ConfigError::Read {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        Ok(self.apply(loaded.config, loaded.warnings))
    }

    /// Applies the reloadable settings of `new` (already validated).
    pub fn apply(&mut self, new: Config, warnings: Vec<ConfigWarning>) -> ReloadReport {
        let changes = diff(&self.running, &new);
        let merged = merge(&self.running, &new);
        if let Some(log) = &self.log {
            let rust_log = std::env::var("RUST_LOG").ok();
            let (filter, _) =
                crate::logging::effective_filter(merged.log.level.as_deref(), rust_log.as_deref());
            if let Err(e) = log.set_filter(&filter) {
                tracing::warn!(error = %e, "cannot change the log filter");
            }
            if let Err(e) = log.set_format(self.cli_format.or(merged.log.format)) {
                tracing::warn!(error = %e, "cannot change the log format");
            }
        }
        if let (Some(hook), Some(cfg)) = (&self.hook, &merged.ops.hook) {
            if hook.config().as_ref() != cfg {
                hook.reconfigure(cfg.clone());
            }
        }
        if *self.retention.borrow() != merged.ops.retention {
            self.retention.send_replace(merged.ops.retention);
        }
        self.running = merged;
        let (applied, restart): (Vec<Change>, Vec<Change>) =
            changes.into_iter().partition(|c| c.reloadable);
        ReloadReport {
            applied: applied.into_iter().map(|c| c.key).collect(),
            needs_restart: restart.into_iter().map(|c| c.key).collect(),
            warnings,
        }
    }

    /// Handles one request: reload (and log the outcome) or log the status.
    pub async fn handle(&mut self, control: Control, metrics: &Metrics) {
        match control {
            Control::Status => log_status(metrics),
            Control::Reload => {
                tracing::info!(config = %self.path.display(), "SIGHUP: reloading the configuration");
                match self.reload().await {
                    Err(e) => ReloadRefused { error: &e }.emit(),
                    Ok(report) => ReloadApplied {
                        report: &report,
                        cli_format: self.cli_format.is_some(),
                    }
                    .emit(),
                }
            }
        }
    }
}

/// SIGUSR1: one line with what the daemon is doing.
pub fn log_status(m: &Metrics) {
    tracing::info!(
        links_attached = m.links_attached.load(Relaxed),
        images_written = m.images_written(),
        open_assemblies = m.open_assemblies.load(Relaxed),
        spool_bytes = m.spool_bytes.load(Relaxed),
        paused = m.paused.load(Relaxed),
        live = m.live.load(Relaxed),
        accepted = m.accepted.load(Relaxed),
        released = m.released.load(Relaxed),
        reconnects = m.reconnects.load(Relaxed),
        hook_ok = m.hook_ok.load(Relaxed),
        hook_failed = m.hook_failed.load(Relaxed) + m.hook_timeouts.load(Relaxed),
        "status (SIGUSR1)"
    );
}

/// Runs `reloader` on the requests from `rx` until the channel closes or `shutdown`.
pub async fn serve(
    mut reloader: Reloader,
    mut rx: tokio::sync::mpsc::Receiver<Control>,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let control = tokio::select! {
            c = rx.recv() => c,
            _ = shutdown.cancelled() => None,
        };
        let Some(control) = control else { break };
        reloader.handle(control, &metrics).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[aliyun]
host = "iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com"
access_key_id = "LTAI5tExample"
access_key_secret = "one"
iot_instance_id = "iot-06z00xxxxxxx"
consumer_group_id = "DEFAULT_GROUP"
[output]
dir = "/srv/rx/images"
[state]
dir = "/srv/rx/state"
"#;

    fn parse(text: &str) -> Config {
        Config::from_toml(text, std::path::Path::new("/etc/r.toml"), &|_| None).unwrap()
    }

    fn keys_of(changes: &[Change], reloadable: bool) -> Vec<&str> {
        changes
            .iter()
            .filter(|c| c.reloadable == reloadable)
            .map(|c| c.key.as_str())
            .collect()
    }

    #[test]
    fn nothing_changed_is_an_empty_diff() {
        let a = parse(BASE);
        assert!(diff(&a, &a.clone()).is_empty());
        // Writing a default explicitly is not a change.
        let b = parse(&format!("{BASE}[spool]\nbatch_max = 256\n"));
        assert!(diff(&a, &b).is_empty(), "{:?}", diff(&a, &b));
    }

    #[test]
    fn reloadable_and_restart_keys_are_told_apart() {
        let hook = "[hook]\ncommand = [\"/bin/true\"]\n";
        let a = parse(&format!("{BASE}{hook}"));
        let b = parse(&format!(
            "{}[log]\nlevel = \"receiver=debug\"\nformat = \"json\"\n[retention]\nmax_age = \"2d\"\n\
             [hook]\ncommand = [\"/bin/echo\"]\ntimeout = \"5s\"\nqueue = 9\n",
            BASE.replace("\"one\"", "\"two\"")
                .replace("DEFAULT_GROUP", "OTHER")
        ));
        let d = diff(&a, &b);
        assert_eq!(
            keys_of(&d, true),
            [
                "hook.command",
                "hook.timeout",
                "log.format",
                "log.level",
                "retention.max_age"
            ]
        );
        assert_eq!(
            keys_of(&d, false),
            [
                "aliyun.access_key_secret",
                "aliyun.consumer_group_id",
                "hook.queue"
            ]
        );
        let m = merge(&a, &b);
        assert_eq!(m.log, b.log);
        assert_eq!(m.ops.retention, b.ops.retention);
        let h = m.ops.hook.as_ref().unwrap();
        assert_eq!(h.command, ["/bin/echo"]);
        assert_eq!(h.queue, 256, "queue needs a restart");
        assert_eq!(m.aliyun, a.aliyun, "[aliyun] needs a restart");
        // Turning the hook on needs a restart.
        let d = diff(&parse(BASE), &a);
        assert_eq!(keys_of(&d, false), ["hook.command"]);
        assert!(merge(&parse(BASE), &a).ops.hook.is_none());
    }

    #[test]
    fn output_changes_need_a_restart_and_keep_the_running_output() {
        let s3 = |bucket: &str| {
            BASE.replace(
                "[output]\ndir = \"/srv/rx/images\"\n",
                &format!(
                    "[output]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\n\
                     bucket = \"{bucket}\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n"
                ),
            )
        };
        let fs = parse(BASE);
        let a = parse(&s3("one"));
        let b = parse(&s3("two"));
        // Folder to bucket, and one bucket to another: reported, not applied.
        for (from, to) in [(&fs, &a), (&a, &b)] {
            let d = diff(from, to);
            assert!(keys_of(&d, true).is_empty(), "{d:?}");
            assert!(
                keys_of(&d, false).iter().all(|k| k.starts_with("output.")),
                "{d:?}"
            );
            assert!(!keys_of(&d, false).is_empty());
            let m = merge(from, to);
            assert_eq!(m.output_dir, from.output_dir);
            assert_eq!(m.output_s3, from.output_s3);
        }
    }
}
