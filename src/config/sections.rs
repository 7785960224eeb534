//! `[output]`, `[state]`, `[assembly]`, `[spool]`, `[log]`: each as written, and its validation.

use super::load::{Cx, Field};
use super::{
    default_data_dir, defaults, AssemblyConfig, ByteSize, ConfigError, HumanDuration, LogConfig,
    LogFormat, SpoolConfig,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The byte count of a size setting.
fn size(f: &Field<ByteSize>) -> Option<u64> {
    f.as_ref().map(|s| s.get_ref().bytes())
}

/// `[output]` or `[state]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDir {
    dir: Field<String>,
}

impl RawDir {
    /// Validates `[output] dir` (`self`) and `[state] dir` together: each a folder, neither
    /// inside the other.
    pub(super) fn validate(
        self,
        state: RawDir,
        cx: &Cx,
    ) -> Result<(PathBuf, PathBuf), ConfigError> {
        let data = default_data_dir();
        let pick = |table: &'static str, v: &Field<String>, sub: &str| match v {
            Some(d) if d.get_ref().is_empty() => Err(cx.invalid(
                table,
                "dir",
                cx.at(v),
                "is empty; expected a folder path (or remove the key for the default)",
            )),
            Some(d) => Ok(cx.resolve(d.get_ref())),
            None => data.as_ref().map(|d| d.join(sub)).ok_or_else(|| {
                cx.missing(
                    table,
                    "dir",
                    "no home folder to derive a default from; set a folder path",
                )
            }),
        };
        let output_dir = pick("output", &self.dir, "images")?;
        let state_dir = pick("state", &state.dir, "state")?;
        // Where each folder really is (symlinks followed as creating it would), before anything
        // is created: a folder that is a file or a dangling symlink is named here, not met as
        // "File exists" at run time.
        let real = |table: &str, line: Option<usize>, dir: &Path| {
            crate::paths::resolve_dir(dir).map_err(|e| {
                cx.invalid(
                    table,
                    "dir",
                    line,
                    format!(
                        "{}: {e}; expected a folder or a path where one can be created",
                        dir.display()
                    ),
                )
            })
        };
        let real_output = real("output", cx.at(&self.dir), &output_dir)?;
        let real_state = real("state", cx.at(&state.dir), &state_dir)?;
        let clash = crate::paths::nested(&output_dir, &state_dir)
            || crate::paths::nested(&real_output, &real_state);
        if clash {
            let via = if real_state != state_dir || real_output != output_dir {
                format!(
                    " (after following symlinks: {} and {})",
                    real_state.display(),
                    real_output.display()
                )
            } else {
                String::new()
            };
            return Err(cx.invalid(
                "state",
                "dir",
                cx.at(&state.dir),
                format!(
                    "{} and [output] dir {} are the same folder or one contains the other{via}; \
                     expected two separate folders (the output folder holds only finished images)",
                    state_dir.display(),
                    output_dir.display()
                ),
            ));
        }
        Ok((output_dir, state_dir))
    }
}

/// `[assembly]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAssembly {
    max_image_bytes: Field<ByteSize>,
    max_open: Field<i64>,
    timeout: Field<HumanDuration>,
    dedup_window: Field<i64>,
    decode_check: Field<bool>,
    memory_limit: Field<ByteSize>,
    redelivery_grace: Field<HumanDuration>,
}

impl RawAssembly {
    /// Validates `[assembly]`.
    pub(super) fn validate(self, cx: &Cx) -> Result<AssemblyConfig, ConfigError> {
        const T: &str = "assembly";
        let r = self;
        let max_image_bytes = size(&r.max_image_bytes).unwrap_or(defaults::MAX_IMAGE_BYTES as u64);
        if !(1024..=1 << 30).contains(&max_image_bytes) {
            return Err(cx.invalid(
                T,
                "max_image_bytes",
                cx.at(&r.max_image_bytes),
                format!("{max_image_bytes} is out of range; expected \"1 KiB\" to \"1 GiB\""),
            ));
        }
        let max_open = cx.int(
            (T, "max_open"),
            &r.max_open,
            defaults::MAX_OPEN as i64,
            (1, 10_000_000),
            "",
        )? as usize;
        let timeout = cx.duration(
            (T, "timeout"),
            &r.timeout,
            defaults::ASSEMBLY_TIMEOUT,
            (Duration::from_secs(1), Duration::from_secs(86_400)),
            "",
        )?;
        let dedup_window = cx.int(
            (T, "dedup_window"),
            &r.dedup_window,
            defaults::DEDUP_WINDOW as i64,
            (1, 100_000_000),
            "",
        )? as usize;
        let memory_limit = size(&r.memory_limit).unwrap_or(defaults::ASSEMBLY_MEMORY_LIMIT);
        if memory_limit != 0 && !(1 << 20..=1 << 40).contains(&memory_limit) {
            return Err(cx.invalid(
                T,
                "memory_limit",
                cx.at(&r.memory_limit),
                format!("{memory_limit} is out of range; expected 0 (no limit) or \"1 MiB\" to \"1 TiB\""),
            ));
        }
        let redelivery_grace = cx.duration(
            (T, "redelivery_grace"),
            &r.redelivery_grace,
            defaults::REDELIVERY_GRACE.min(timeout),
            (Duration::ZERO, timeout),
            " (at most [assembly] timeout)",
        )?;
        Ok(AssemblyConfig {
            max_image_bytes: max_image_bytes as usize,
            max_open,
            timeout,
            dedup_window,
            decode_check: r.decode_check.is_some_and(|b| *b.get_ref()),
            memory_limit,
            redelivery_grace,
        })
    }
}

/// `[spool]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpool {
    enabled: Field<bool>,
    batch_max: Field<i64>,
    batch_delay: Field<HumanDuration>,
    max_bytes: Field<ByteSize>,
    segment_bytes: Field<ByteSize>,
}

impl RawSpool {
    /// Validates `[spool]`, which must hold a picture of `assembly`'s largest.
    pub(super) fn validate(
        self,
        assembly: &AssemblyConfig,
        cx: &Cx,
    ) -> Result<SpoolConfig, ConfigError> {
        const T: &str = "spool";
        let r = self;
        let enabled = r
            .enabled
            .as_ref()
            .map_or(defaults::SPOOL_ENABLED, |b| *b.get_ref());
        let batch_max = cx.int(
            (T, "batch_max"),
            &r.batch_max,
            defaults::BATCH_MAX as i64,
            (1, 65_536),
            "",
        )? as usize;
        let batch_delay = cx.duration(
            (T, "batch_delay"),
            &r.batch_delay,
            defaults::BATCH_DELAY,
            (Duration::ZERO, Duration::from_secs(1)),
            " (messages wait this long before they are acknowledged)",
        )?;
        let max_bytes = size(&r.max_bytes).unwrap_or(defaults::SPOOL_MAX_BYTES);
        let min = 2 * assembly.max_image_bytes as u64;
        if enabled && max_bytes < min {
            return Err(cx.invalid(
                T,
                "max_bytes",
                cx.at(&r.max_bytes),
                format!(
                    "{max_bytes} is less than twice [assembly] max_image_bytes ({min}); expected \
                     room for at least one picture sent as hex"
                ),
            ));
        }
        let line = cx.at(&r.segment_bytes);
        let segment_bytes = match size(&r.segment_bytes) {
            // The default never exceeds the cap: lowering max_bytes alone is enough.
            None => defaults::SPOOL_SEGMENT_BYTES.min(max_bytes),
            Some(n)
                if !(defaults::SPOOL_MIN_SEGMENT_BYTES..=defaults::SPOOL_MAX_SEGMENT_BYTES)
                    .contains(&n) =>
            {
                return Err(cx.invalid(
                    T,
                    "segment_bytes",
                    line,
                    format!(
                        "{n} is out of range; expected \"1 MiB\" to \"1 GiB\", and at most \
                         max_bytes"
                    ),
                ))
            }
            Some(n) if enabled && n > max_bytes => {
                return Err(cx.invalid(
                    T,
                    "segment_bytes",
                    line,
                    format!(
                        "{n} is more than max_bytes ({max_bytes}); expected a segment that fits \
                         in the spool, \"1 MiB\" to max_bytes"
                    ),
                ))
            }
            Some(n) => n,
        };
        Ok(SpoolConfig {
            enabled,
            batch_max,
            batch_delay,
            max_bytes,
            segment_bytes,
        })
    }
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    format: Field<LogFormat>,
    level: Field<String>,
}

impl RawLog {
    /// Validates `[log]`: the level must be a filter the logger accepts.
    pub(super) fn validate(self, cx: &Cx) -> Result<LogConfig, ConfigError> {
        let level = match &self.level {
            None => None,
            Some(l) => {
                let l = l.get_ref();
                match crate::logging::parse_filter(l) {
                    Ok(_) => Some(l.trim().to_owned()),
                    Err(e) => {
                        return Err(cx.invalid(
                            "log",
                            "level",
                            cx.at(&self.level),
                            format!(
                                "{l:?} is not a log filter ({e}); expected RUST_LOG directives \
                                 such as \"receiver=info\" or \"receiver=debug,fe2o3_amqp=info\""
                            ),
                        ))
                    }
                }
            }
        };
        Ok(LogConfig {
            format: self.format.map(|f| f.into_inner()),
            level,
        })
    }
}
