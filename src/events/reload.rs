//! The configuration reload's events (SIGHUP). They have no counters: they only log.

use crate::reload::ReloadReport;
use std::fmt::Display;

/// The log target of these events (the reload module, where they were logged before).
const TARGET: &str = "receiver::reload";

/// `["log.level", "ops"]` as `[log] level, ops`.
fn keys(list: &[String]) -> String {
    list.iter()
        .map(|k| match k.split_once('.') {
            Some((t, k)) => format!("[{t}] {k}"),
            None => k.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new configuration was read and its reloadable settings applied. Logs each warning
/// (`configuration warning`, warn), then `configuration reloaded; nothing changed` or
/// `configuration reloaded; applied` (info) and `changed settings that need a restart; ...`
/// (warn).
#[derive(Debug)]
pub struct ReloadApplied<'a> {
    /// What changed.
    pub report: &'a ReloadReport,
    /// `--log-format` was given (it wins over `[log] format`).
    pub cli_format: bool,
}

impl ReloadApplied<'_> {
    /// Logs the event.
    pub fn emit(self) {
        let report = self.report;
        for w in &report.warnings {
            tracing::warn!(target: TARGET, warning = %w, "configuration warning");
        }
        if report.applied.is_empty() && report.needs_restart.is_empty() {
            tracing::info!(target: TARGET, "configuration reloaded; nothing changed");
            return;
        }
        if !report.applied.is_empty() {
            tracing::info!(
                target: TARGET,
                changed = keys(&report.applied).as_str(),
                "configuration reloaded; applied"
            );
            if self.cli_format && report.applied.iter().any(|k| k == "log.format") {
                tracing::info!(
                    target: TARGET,
                    "[log] format changed, but --log-format on the command line wins"
                );
            }
        }
        if !report.needs_restart.is_empty() {
            tracing::warn!(
                target: TARGET,
                needs_restart = keys(&report.needs_restart).as_str(),
                "changed settings that need a restart; they are left as they are (needs restart)"
            );
        }
    }
}

/// A new configuration was refused (unreadable or invalid); the running one stays. Logs
/// `configuration reload refused; ...` (error).
pub struct ReloadRefused<'a> {
    /// Why.
    pub error: &'a dyn Display,
}

impl ReloadRefused<'_> {
    /// Logs the event.
    pub fn emit(self) {
        tracing::error!(
            target: TARGET,
            error = %self.error,
            "configuration reload refused; the running configuration stays in force"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture;

    #[test]
    fn a_reload_logs_what_it_applied_and_what_needs_a_restart() {
        let report = ReloadReport {
            applied: vec!["log.format".into(), "ops".into()],
            needs_restart: vec!["aliyun.host".into()],
            warnings: vec![],
        };
        let lines = capture::logs(|| {
            ReloadApplied {
                report: &report,
                cli_format: true,
            }
            .emit()
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["message"], "configuration reloaded; applied");
        assert_eq!(lines[0]["changed"], "[log] format, ops");
        assert_eq!(lines[0]["target"], "receiver::reload");
        assert_eq!(lines[2]["level"], "WARN");
        assert_eq!(lines[2]["needs_restart"], "[aliyun] host");
        let empty = ReloadReport {
            applied: vec![],
            needs_restart: vec![],
            warnings: vec![],
        };
        let line = capture::one(|| {
            ReloadApplied {
                report: &empty,
                cli_format: false,
            }
            .emit()
        });
        assert_eq!(line["message"], "configuration reloaded; nothing changed");
        let line = capture::one(|| ReloadRefused { error: &"bad toml" }.emit());
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["error"], "bad toml");
    }
}
