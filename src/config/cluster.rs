//! `[cluster]`: several instances sharing one consumer group through Redis/Valkey (cluster
//! mode, `crate::cluster`), as written and as validated.

use super::aliyun::SecretSpec;
use super::load::{Cx, Field};
use super::{
    ClusterConfig, ConfigError, HumanDuration, Secret, CREDENTIAL_REDIS_PASSWORD,
    ENV_REDIS_PASSWORD,
};
use serde::Deserialize;
use std::time::Duration;

/// `[cluster]` as written. Absent, or present with no key set: single-instance mode.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    redis_url: Field<String>,
    password: Field<Secret>,
    password_file: Field<String>,
    key_prefix: Field<String>,
    instance_id: Field<String>,
    lease: Field<HumanDuration>,
    timeout: Field<HumanDuration>,
    sentinels: Field<Vec<String>>,
    sentinel_master: Field<String>,
}

impl RawCluster {
    fn any_set(&self) -> Option<&'static str> {
        let keys = [
            ("redis_url", self.redis_url.is_some()),
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("key_prefix", self.key_prefix.is_some()),
            ("instance_id", self.instance_id.is_some()),
            ("lease", self.lease.is_some()),
            ("timeout", self.timeout.is_some()),
            ("sentinels", self.sentinels.is_some()),
            ("sentinel_master", self.sentinel_master.is_some()),
        ];
        keys.into_iter().find(|(_, set)| *set).map(|(k, _)| k)
    }

    /// Validates `[cluster]`: `None` when no key is set.
    pub(super) fn validate(self, cx: &Cx) -> Result<Option<ClusterConfig>, ConfigError> {
        const T: &str = "cluster";
        if self.any_set().is_none() {
            return Ok(None);
        }
        let Some(url) = &self.redis_url else {
            return Err(cx.missing(
                T,
                "redis_url",
                "the Redis (or Valkey) URL the instances share, e.g. \
                 \"redis://10.0.0.5:6379/0\" (rediss:// for TLS)",
            ));
        };
        let line = cx.at(&self.redis_url);
        let redis_url = url.get_ref().trim().to_owned();
        // Parsed the way the client will; the URL itself is never repeated (it may hold a
        // password).
        let shown = crate::cluster::redact_url(&redis_url);
        let scheme_ok = redis_url.starts_with("redis://") || redis_url.starts_with("rediss://");
        let parses = redis::IntoConnectionInfo::into_connection_info(redis_url.as_str()).is_ok();
        if !scheme_ok || !parses {
            return Err(cx.invalid(
                T,
                "redis_url",
                line,
                format!(
                    "{shown} is not a Redis URL; expected redis://host:port/db or \
                     rediss://host:port/db (user and password may be in it, or in \
                     password_file)"
                ),
            ));
        }
        let password = cx.secret(
            &SecretSpec {
                table: T,
                what: "Redis password",
                inline_key: "password",
                file_key: "password_file",
                file_key_dotted: "cluster.password_file",
                env_var: ENV_REDIS_PASSWORD,
                credential: CREDENTIAL_REDIS_PASSWORD,
            },
            self.password,
            self.password_file,
            "",
        )?;
        let key_prefix = match &self.key_prefix {
            None => super::defaults::CLUSTER_KEY_PREFIX.to_owned(),
            Some(p) => {
                let p = p.get_ref();
                let bad = p.is_empty()
                    || p.len() > 64
                    || p.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "{}".contains(c));
                if bad {
                    return Err(cx.invalid(
                        T,
                        "key_prefix",
                        cx.at(&self.key_prefix),
                        format!(
                            "{p:?} is not a key prefix; expected 1-64 characters without \
                             whitespace, control characters, '{{' or '}}' (e.g. \"receiver\")"
                        ),
                    ));
                }
                p.clone()
            }
        };
        let instance_id = match &self.instance_id {
            None => String::new(),
            Some(i) => {
                let i = i.get_ref();
                if i.len() > 64 || i.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(cx.invalid(
                        T,
                        "instance_id",
                        cx.at(&self.instance_id),
                        format!(
                            "{i:?} is not an instance id; expected at most 64 characters \
                             without whitespace or control characters, or \"\" for the host \
                             name and process id"
                        ),
                    ));
                }
                i.clone()
            }
        };
        let lease = cx.duration(
            (T, "lease"),
            &self.lease,
            super::defaults::CLUSTER_LEASE,
            (Duration::from_secs(1), Duration::from_secs(3600)),
            " (how long a claimed picture waits for its writer before another instance takes \
             it over)",
        )?;
        let timeout = cx.duration(
            (T, "timeout"),
            &self.timeout,
            super::defaults::CLUSTER_TIMEOUT,
            (Duration::from_millis(100), Duration::from_secs(60)),
            " (the longest one call to Redis may take)",
        )?;
        if timeout >= lease {
            return Err(cx.invalid(
                T,
                "timeout",
                cx.at(&self.timeout),
                "is not shorter than `lease`; expected a time-out well below the lease (a \
                 writer must finish its calls before its lease runs out)",
            ));
        }
        let sentinels = match &self.sentinels {
            None => Vec::new(),
            Some(list) => {
                let line = cx.at(&self.sentinels);
                let list = list.get_ref();
                if list.is_empty() {
                    return Err(cx.invalid(
                        T,
                        "sentinels",
                        line,
                        "is empty; expected the URLs of the Redis Sentinels, e.g. \
                         [\"redis://10.0.0.5:26379\", \"redis://10.0.0.6:26379\"], or no key",
                    ));
                }
                for u in list {
                    let ok = (u.starts_with("redis://") || u.starts_with("rediss://"))
                        && redis::IntoConnectionInfo::into_connection_info(u.as_str()).is_ok();
                    if !ok {
                        return Err(cx.invalid(
                            T,
                            "sentinels",
                            line,
                            format!(
                                "{} is not a Redis URL; expected e.g. \"redis://10.0.0.5:26379\"",
                                crate::cluster::redact_url(u)
                            ),
                        ));
                    }
                }
                list.clone()
            }
        };
        let sentinel_master = self
            .sentinel_master
            .as_ref()
            .map(|m| m.get_ref().trim().to_owned());
        match (&sentinel_master, sentinels.is_empty()) {
            (Some(m), false) if !m.is_empty() => {}
            (None, true) => {}
            (Some(_), true) => {
                return Err(cx.invalid(
                    T,
                    "sentinel_master",
                    cx.at(&self.sentinel_master),
                    "is set without `sentinels`; expected both (the master's name as the \
                     sentinels monitor it, and their URLs) or neither",
                ))
            }
            _ => {
                return Err(cx.invalid(
                    T,
                    "sentinel_master",
                    cx.at(&self.sentinel_master).or(cx.at(&self.sentinels)),
                    "is missing or empty while `sentinels` is set; expected the master's name as \
                     the sentinels monitor it, e.g. \"mymaster\"",
                ))
            }
        }
        Ok(Some(ClusterConfig {
            sentinels,
            sentinel_master,
            redis_url,
            password,
            key_prefix,
            instance_id,
            lease,
            timeout,
        }))
    }
}
