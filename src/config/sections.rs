//! `[output]`, `[state]`, `[assembly]`, `[spool]`, `[log]`: each as written, and its validation.

use super::aliyun::SecretSpec;
use super::load::{Cx, Field};
use super::{
    default_data_dir, defaults, AssemblyConfig, ByteSize, ConfigError, HumanDuration, LogConfig,
    LogFormat, Secret, SpoolConfig, CREDENTIAL_OUTPUT_SECRET_ACCESS_KEY,
    ENV_OUTPUT_SECRET_ACCESS_KEY,
};
use crate::s3::S3Options;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The byte count of a size setting.
fn size(f: &Field<ByteSize>) -> Option<u64> {
    f.as_ref().map(|s| s.get_ref().bytes())
}

/// `[state]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDir {
    dir: Field<String>,
}

/// `[output] backend` as written (ASCII case ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(super) enum Backend {
    Fs,
    S3,
}

impl TryFrom<String> for Backend {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fs" => Ok(Backend::Fs),
            "s3" => Ok(Backend::S3),
            _ => Err(format!(
                "{s:?} is not an output backend; expected \"fs\" (a local folder) or \"s3\" \
                 (an S3-compatible object store)"
            )),
        }
    }
}

/// `[output]` as written: the folder (`dir`) or an S3-compatible bucket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOutput {
    backend: Field<Backend>,
    dir: Field<String>,
    endpoint: Field<String>,
    bucket: Field<String>,
    region: Field<String>,
    prefix: Field<String>,
    access_key_id: Field<String>,
    secret_access_key: Field<Secret>,
    secret_access_key_file: Field<String>,
    virtual_host_style: Field<bool>,
    timeout: Field<HumanDuration>,
    concurrency: Field<i64>,
    storage_class: Field<String>,
    create_only: Field<bool>,
    ca_file: Field<String>,
}

/// The keys that only `backend = "s3"` takes.
const S3_KEYS: &[&str] = &[
    "endpoint",
    "bucket",
    "region",
    "prefix",
    "access_key_id",
    "secret_access_key",
    "secret_access_key_file",
    "virtual_host_style",
    "timeout",
    "concurrency",
    "storage_class",
    "create_only",
    "ca_file",
];

impl RawOutput {
    /// Validates `[output]` and `[state] dir` together: the output folder and the state folder
    /// (neither inside the other), or the bucket and the state folder.
    pub(super) fn validate(
        self,
        state: RawDir,
        cx: &Cx,
    ) -> Result<(PathBuf, Option<S3Options>, PathBuf), ConfigError> {
        const T: &str = "output";
        let backend = self.backend.as_ref().map_or(Backend::Fs, |b| *b.get_ref());
        if backend == Backend::Fs {
            let r = &self;
            let set = |k: &str| -> Option<usize> {
                match k {
                    "endpoint" => cx.at(&r.endpoint),
                    "bucket" => cx.at(&r.bucket),
                    "region" => cx.at(&r.region),
                    "prefix" => cx.at(&r.prefix),
                    "access_key_id" => cx.at(&r.access_key_id),
                    "secret_access_key" => cx.at(&r.secret_access_key),
                    "secret_access_key_file" => cx.at(&r.secret_access_key_file),
                    "virtual_host_style" => cx.at(&r.virtual_host_style),
                    "timeout" => cx.at(&r.timeout),
                    "concurrency" => cx.at(&r.concurrency),
                    "storage_class" => cx.at(&r.storage_class),
                    "create_only" => cx.at(&r.create_only),
                    "ca_file" => cx.at(&r.ca_file),
                    _ => None,
                }
            };
            for k in S3_KEYS {
                if let Some(line) = set(k) {
                    return Err(cx.invalid(
                        T,
                        k,
                        Some(line),
                        "is an object-store setting but backend is \"fs\"; expected \
                         backend = \"s3\" to write to a bucket, or remove the key",
                    ));
                }
            }
            let (output_dir, state_dir) = validate_dirs(self.dir, state, cx)?;
            return Ok((output_dir, None, state_dir));
        }
        if self.dir.is_some() {
            return Err(cx.invalid(
                T,
                "dir",
                cx.at(&self.dir),
                "is the folder of backend \"fs\" but backend is \"s3\"; expected no `dir` \
                 (pictures go to the bucket; quarantine stays in [state] dir)",
            ));
        }
        let state_dir = pick_dir(cx, "state", &state.dir, "state")?;
        if let Err(e) = crate::paths::resolve_dir(&state_dir) {
            return Err(cx.invalid(
                "state",
                "dir",
                cx.at(&state.dir),
                format!(
                    "{}: {e}; expected a folder or a path where one can be created",
                    state_dir.display()
                ),
            ));
        }
        let s3 = self.validate_s3(cx)?;
        Ok((PathBuf::new(), Some(s3), state_dir))
    }

    fn validate_s3(self, cx: &Cx) -> Result<S3Options, ConfigError> {
        const T: &str = "output";
        let r = self;
        let need = |f: &Field<String>, key: &'static str, hint: &str| match f {
            None => Err(cx.missing(T, key, hint)),
            Some(v) if v.get_ref().trim().is_empty() => {
                Err(cx.invalid(T, key, cx.at(f), format!("is empty; expected {hint}")))
            }
            Some(v) => Ok(v.get_ref().trim().to_owned()),
        };
        let endpoint = need(
            &r.endpoint,
            "endpoint",
            "the S3 endpoint URL, e.g. \"https://oss-cn-shanghai.aliyuncs.com\" or \
             \"http://127.0.0.1:9000\"",
        )?;
        let line = cx.at(&r.endpoint);
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ', '@']) => {}
            _ => {
                return Err(cx.invalid(
                    T,
                    "endpoint",
                    line,
                    format!(
                        "{endpoint:?} is not an http(s) URL; expected e.g. \
                         \"https://oss-cn-shanghai.aliyuncs.com\" (no bucket, no credentials \
                         in it)"
                    ),
                ))
            }
        }
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let bucket = need(
            &r.bucket,
            "bucket",
            "the bucket name, e.g. \"camera-images\"",
        )?;
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid_bucket {
            return Err(cx.invalid(
                T,
                "bucket",
                cx.at(&r.bucket),
                format!(
                    "{bucket:?} is not a bucket name; expected 3-63 characters of a-z, 0-9, '-' \
                     and '.', starting and ending with a letter or digit"
                ),
            ));
        }
        let region = match &r.region {
            None => defaults::S3_REGION.to_owned(),
            Some(_) => need(&r.region, "region", "a region, e.g. \"cn-shanghai\"")?,
        };
        if region.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            return Err(cx.invalid(
                T,
                "region",
                cx.at(&r.region),
                format!("{region:?} is not a region name; expected e.g. \"cn-shanghai\""),
            ));
        }
        let prefix = match &r.prefix {
            None => String::new(),
            Some(p) => {
                let p = p.get_ref().trim_matches('/');
                let bad = p.split('/').any(|seg| {
                    seg.is_empty() || seg == "." || seg == ".." || seg.chars().any(char::is_control)
                });
                if !p.is_empty() && bad {
                    return Err(cx.invalid(
                        T,
                        "prefix",
                        cx.at(&r.prefix),
                        format!(
                            "{p:?} is not a key prefix; expected folder-like segments separated \
                             by '/', without empty, \".\" or \"..\" segments or control \
                             characters (e.g. \"images\")"
                        ),
                    ));
                }
                p.to_owned()
            }
        };
        let access_key_id = need(
            &r.access_key_id,
            "access_key_id",
            "the access key id of a key allowed to write to the bucket",
        )?;
        if access_key_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(cx.invalid(
                T,
                "access_key_id",
                cx.at(&r.access_key_id),
                "contains whitespace or a control character; expected the key id as issued",
            ));
        }
        let secret_access_key = cx
            .secret(
                &SecretSpec {
                    table: T,
                    what: "secret access key",
                    inline_key: "secret_access_key",
                    file_key: "secret_access_key_file",
                    file_key_dotted: "output.secret_access_key_file",
                    env_var: ENV_OUTPUT_SECRET_ACCESS_KEY,
                    credential: CREDENTIAL_OUTPUT_SECRET_ACCESS_KEY,
                },
                r.secret_access_key,
                r.secret_access_key_file,
                "backend = \"s3\" signs every request with it",
            )?
            .unwrap_or_default();
        let timeout = cx.duration(
            (T, "timeout"),
            &r.timeout,
            defaults::S3_TIMEOUT,
            (Duration::from_secs(1), Duration::from_secs(600)),
            " (the longest one request to the store may take)",
        )?;
        let concurrency = cx.int(
            (T, "concurrency"),
            &r.concurrency,
            defaults::S3_CONCURRENCY as i64,
            (1, 256),
            " (uploads at once)",
        )? as usize;
        let storage_class = match &r.storage_class {
            None => None,
            Some(_) => {
                let c = need(&r.storage_class, "storage_class", "e.g. \"STANDARD_IA\"")?;
                if !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(cx.invalid(
                        T,
                        "storage_class",
                        cx.at(&r.storage_class),
                        format!("{c:?} is not a storage class; expected e.g. \"STANDARD_IA\""),
                    ));
                }
                Some(c)
            }
        };
        let ca_file = match &r.ca_file {
            None => None,
            Some(f) => Some(cx.ca_file_for("output.ca_file", f.get_ref(), cx.at(&r.ca_file))?),
        };
        Ok(S3Options {
            endpoint,
            bucket,
            region,
            prefix,
            access_key_id,
            secret_access_key,
            virtual_host_style: r.virtual_host_style.is_some_and(|b| *b.get_ref()),
            timeout,
            concurrency,
            storage_class,
            create_only: r.create_only.as_ref().is_none_or(|b| *b.get_ref()),
            ca_file,
        })
    }
}

/// A `[output]`/`[state]` folder: as written (relative to the config file), or the default
/// under the platform data folder.
fn pick_dir(
    cx: &Cx,
    table: &'static str,
    v: &Field<String>,
    sub: &str,
) -> Result<PathBuf, ConfigError> {
    match v {
        Some(d) if d.get_ref().is_empty() => Err(cx.invalid(
            table,
            "dir",
            cx.at(v),
            "is empty; expected a folder path (or remove the key for the default)",
        )),
        Some(d) => Ok(cx.resolve(d.get_ref())),
        None => default_data_dir().map(|d| d.join(sub)).ok_or_else(|| {
            cx.missing(
                table,
                "dir",
                "no home folder to derive a default from; set a folder path",
            )
        }),
    }
}

/// Validates `[output] dir` and `[state] dir` together: each a folder, neither inside the other.
fn validate_dirs(
    output: Field<String>,
    state: RawDir,
    cx: &Cx,
) -> Result<(PathBuf, PathBuf), ConfigError> {
    RawDir { dir: output }.validate(state, cx)
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
