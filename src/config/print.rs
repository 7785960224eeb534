//! The redacted, TOML view of a [`Config`] that `receiver check-config` prints.

use super::{
    default_data_dir, defaults, AssemblyConfig, AuthMode, ByteSize, Config, HumanDuration, Secret,
    SignMethod, SpoolConfig,
};
use crate::ops::{HealthConfig, HookConfig, RetentionConfig};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

/// A duration as the config file writes it.
fn dur(d: Duration) -> String {
    HumanDuration::to_toml(d).to_string()
}

/// A size as the config file writes it.
fn size(n: u64) -> String {
    ByteSize(n).to_toml().to_string()
}

impl fmt::Display for Config {
    /// The effective configuration with defaults applied and secrets redacted, as TOML with
    /// comments (`# default`, where a secret came from).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(
            f: &mut fmt::Formatter<'_>,
            key: &str,
            value: String,
            is_default: bool,
        ) -> fmt::Result {
            if is_default {
                writeln!(f, "{key} = {value}  # default")
            } else {
                writeln!(f, "{key} = {value}")
            }
        }
        fn secret(f: &mut fmt::Formatter<'_>, key: &str, s: &Secret) -> fmt::Result {
            match s.source() {
                // `Secret` serializes as the redaction marker: the value is never at hand here.
                Some(src) => writeln!(f, "{key} = {}  # ({src})", q(&s.to_string())),
                None => writeln!(f, "{key} = {}", q(&s.to_string())),
            }
        }
        let a = &self.aliyun;
        writeln!(f, "[aliyun]")?;
        line(f, "host", q(&a.host), false)?;
        line(f, "port", a.port.to_string(), a.port == defaults::PORT)?;
        line(f, "access_key_id", q(&a.access_key_id), false)?;
        secret(f, "access_key_secret", &a.access_key_secret)?;
        line(f, "iot_instance_id", q(&a.iot_instance_id), false)?;
        line(f, "consumer_group_id", q(&a.consumer_group_id), false)?;
        line(
            f,
            "client_id",
            q(&a.client_id),
            a.client_id == defaults::CLIENT_ID,
        )?;
        if a.connections > 1 {
            writeln!(
                f,
                "# connection client ids: {} .. {}",
                a.client_id_for(0),
                a.client_id_for(a.connections - 1)
            )?;
        }
        line(
            f,
            "sign_method",
            q(a.sign_method.as_str()),
            a.sign_method == SignMethod::HmacSha1,
        )?;
        line(
            f,
            "auth_mode",
            q(a.auth_mode.as_str()),
            a.auth_mode == AuthMode::AkSign,
        )?;
        if let AuthMode::StsToken { security_token } = &a.auth_mode {
            secret(f, "security_token", security_token)?;
        }
        match &a.ca_file {
            Some(p) => line(f, "ca_file", qp(p), false)?,
            None => writeln!(f, "# ca_file not set: public root certificates only")?,
        }
        line(
            f,
            "connections",
            a.connections.to_string(),
            a.connections == defaults::CONNECTIONS,
        )?;
        line(
            f,
            "source_address",
            q(&a.source_address),
            a.source_address == defaults::SOURCE_ADDRESS,
        )?;
        line(
            f,
            "credit",
            a.credit.to_string(),
            a.credit == defaults::CREDIT,
        )?;
        line(
            f,
            "idle_timeout",
            dur(a.idle_timeout),
            a.idle_timeout == defaults::IDLE_TIMEOUT,
        )?;
        line(
            f,
            "setup_timeout",
            dur(a.setup_timeout),
            a.setup_timeout == defaults::SETUP_TIMEOUT,
        )?;
        line(
            f,
            "reconnect_max",
            dur(a.reconnect_max),
            a.reconnect_max == defaults::RECONNECT_MAX,
        )?;

        let data = default_data_dir();
        let is_default_dir = |p: &Path, sub: &str| data.as_ref().is_some_and(|d| d.join(sub) == p);
        writeln!(f, "\n[output]")?;
        match &self.output_s3 {
            None => {
                line(f, "backend", q("fs"), true)?;
                line(
                    f,
                    "dir",
                    qp(&self.output_dir),
                    is_default_dir(&self.output_dir, "images"),
                )?;
            }
            Some(o) => {
                line(f, "backend", q("s3"), false)?;
                line(f, "endpoint", q(&o.endpoint), false)?;
                line(f, "bucket", q(&o.bucket), false)?;
                line(f, "region", q(&o.region), o.region == defaults::S3_REGION)?;
                line(f, "prefix", q(&o.prefix), o.prefix.is_empty())?;
                writeln!(
                    f,
                    "# object keys: {}<productKey>/<deviceName>/<time>[-n].jpg",
                    if o.prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", o.prefix)
                    }
                )?;
                line(f, "access_key_id", q(&o.access_key_id), false)?;
                secret(f, "secret_access_key", &o.secret_access_key)?;
                line(
                    f,
                    "virtual_host_style",
                    o.virtual_host_style.to_string(),
                    !o.virtual_host_style,
                )?;
                line(
                    f,
                    "timeout",
                    dur(o.timeout),
                    o.timeout == defaults::S3_TIMEOUT,
                )?;
                line(
                    f,
                    "concurrency",
                    o.concurrency.to_string(),
                    o.concurrency == defaults::S3_CONCURRENCY,
                )?;
                match &o.storage_class {
                    Some(c) => line(f, "storage_class", q(c), false)?,
                    None => writeln!(f, "# storage_class not set: the bucket's default")?,
                }
                line(f, "create_only", o.create_only.to_string(), o.create_only)?;
                match &o.ca_file {
                    Some(p) => line(f, "ca_file", qp(p), false)?,
                    None => writeln!(f, "# ca_file not set: public root certificates only")?,
                }
            }
        }
        writeln!(f, "\n[state]")?;
        line(
            f,
            "dir",
            qp(&self.state_dir),
            is_default_dir(&self.state_dir, "state"),
        )?;

        let (s, d) = (&self.assembly, AssemblyConfig::default());
        writeln!(f, "\n[assembly]")?;
        line(
            f,
            "max_image_bytes",
            size(s.max_image_bytes as u64),
            s.max_image_bytes == d.max_image_bytes,
        )?;
        line(
            f,
            "max_open",
            s.max_open.to_string(),
            s.max_open == d.max_open,
        )?;
        line(f, "timeout", dur(s.timeout), s.timeout == d.timeout)?;
        line(
            f,
            "dedup_window",
            s.dedup_window.to_string(),
            s.dedup_window == d.dedup_window,
        )?;
        line(
            f,
            "decode_check",
            s.decode_check.to_string(),
            s.decode_check == d.decode_check,
        )?;
        line(
            f,
            "memory_limit",
            size(s.memory_limit),
            s.memory_limit == d.memory_limit,
        )?;
        line(
            f,
            "redelivery_grace",
            dur(s.redelivery_grace),
            s.redelivery_grace == d.redelivery_grace,
        )?;

        let (s, d) = (&self.spool, SpoolConfig::default());
        writeln!(f, "\n[spool]")?;
        line(f, "enabled", s.enabled.to_string(), s.enabled == d.enabled)?;
        line(
            f,
            "batch_max",
            s.batch_max.to_string(),
            s.batch_max == d.batch_max,
        )?;
        line(
            f,
            "batch_delay",
            dur(s.batch_delay),
            s.batch_delay == d.batch_delay,
        )?;
        line(
            f,
            "max_bytes",
            size(s.max_bytes),
            s.max_bytes == d.max_bytes,
        )?;
        line(
            f,
            "segment_bytes",
            size(s.segment_bytes),
            s.segment_bytes == d.segment_bytes.min(s.max_bytes),
        )?;

        writeln!(f, "\n[log]")?;
        match self.log.format {
            Some(fmt) => line(f, "format", q(fmt.as_str()), false)?,
            None => writeln!(
                f,
                "# format not set: text on a terminal, json otherwise (--log-format overrides)"
            )?,
        }
        match &self.log.level {
            Some(l) => line(f, "level", q(l), false)?,
            None => writeln!(
                f,
                "# level not set: RUST_LOG, else \"{}\"",
                crate::logging::DEFAULT_FILTER
            )?,
        }

        let ops = &self.ops;
        writeln!(f, "\n[metrics]")?;
        match ops.metrics.listen {
            Some(addr) => line(f, "listen", q(&addr.to_string()), false)?,
            None => writeln!(
                f,
                "# listen not set (default): no /healthz or /metrics listener"
            )?,
        }

        let (h, d) = (&ops.health, HealthConfig::default());
        writeln!(f, "\n[health]")?;
        line(
            f,
            "engine_stall",
            dur(h.engine_stall),
            h.engine_stall == d.engine_stall,
        )?;
        line(
            f,
            "link_grace",
            dur(h.link_grace),
            h.link_grace == d.link_grace,
        )?;
        match h.max_delivery_age {
            Some(age) => line(f, "max_delivery_age", dur(age), false)?,
            None => writeln!(
                f,
                "# max_delivery_age not set (default): /healthz does not check delivery age"
            )?,
        }

        let (r, d) = (&ops.retention, RetentionConfig::default());
        writeln!(f, "\n[retention]")?;
        if !r.limits.any() {
            writeln!(f, "# no limit set (default): images are kept forever")?;
        }
        match r.limits.max_age {
            Some(age) => line(f, "max_age", dur(age), false)?,
            None => writeln!(f, "# max_age not set")?,
        }
        match r.limits.max_total_bytes {
            Some(n) => line(f, "max_total_bytes", size(n), false)?,
            None => writeln!(f, "# max_total_bytes not set")?,
        }
        match r.limits.max_files_per_device {
            Some(n) => line(f, "max_files_per_device", n.to_string(), false)?,
            None => writeln!(f, "# max_files_per_device not set")?,
        }
        line(f, "interval", dur(r.interval), r.interval == d.interval)?;

        writeln!(f, "\n[hook]")?;
        match &ops.hook {
            None => writeln!(f, "# command not set (default): no hook")?,
            Some(h) => {
                let d = HookConfig::new(Vec::new());
                let argv: Vec<String> = h.command.iter().map(|a| q(a)).collect();
                line(f, "command", format!("[{}]", argv.join(", ")), false)?;
                line(f, "timeout", dur(h.timeout), h.timeout == d.timeout)?;
                line(
                    f,
                    "max_concurrent",
                    h.max_concurrent.to_string(),
                    h.max_concurrent == d.max_concurrent,
                )?;
                line(f, "queue", h.queue.to_string(), h.queue == d.queue)?;
                if h.env.is_empty() {
                    writeln!(
                        f,
                        "# env not set (default): PATH, HOME, locale, TZ and the RECEIVER_* \
                         image variables only"
                    )?;
                } else {
                    let env: Vec<String> = h.env.iter().map(|e| q(&e.as_config())).collect();
                    line(f, "env", format!("[{}]", env.join(", ")), false)?;
                }
            }
        }
        Ok(())
    }
}
