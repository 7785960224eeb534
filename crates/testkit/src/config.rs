//! [`ConfigBuilder`]: a daemon configuration file for tests, as TOML text, so that tests that
//! start a daemon still go through the real parser but no longer hand-write (and re-escape) the
//! file. It knows sections and keys only as strings: it does not depend on the daemon crate, and
//! a misspelt key is reported by the daemon's parser like any other.
//!
//! ```
//! use receiver_testkit::config::ConfigBuilder;
//! let toml = ConfigBuilder::new()
//!     .output_dir("/tmp/out")
//!     .state_dir("/tmp/state")
//!     .spool("batch_max", 8)
//!     .set("hook", "command", ["/bin/true"])
//!     .build();
//! assert_eq!(
//!     toml,
//!     "[output]\ndir = \"/tmp/out\"\n\n[state]\ndir = \"/tmp/state\"\n\n\
//!      [spool]\nbatch_max = 8\n\n[hook]\ncommand = [\"/bin/true\"]\n"
//! );
//! ```

use crate::fake::{self, FakeAliyun};
use std::path::{Path, PathBuf};

/// A TOML value of a configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A basic string (durations such as `"1s"` are strings too).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<Value>),
}

impl Value {
    fn render(&self, out: &mut String) {
        match self {
            Value::Str(s) => quote(s, out),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.render(out);
                }
                out.push(']');
            }
        }
    }
}

/// A TOML basic string: `"` and `\` escaped, control characters as `\uXXXX`.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Str(s.clone())
    }
}
/// A path, as its display form (test paths are UTF-8).
impl From<&Path> for Value {
    fn from(p: &Path) -> Value {
        Value::Str(p.display().to_string())
    }
}
impl From<PathBuf> for Value {
    fn from(p: PathBuf) -> Value {
        Value::from(p.as_path())
    }
}
impl From<&PathBuf> for Value {
    fn from(p: &PathBuf) -> Value {
        Value::from(p.as_path())
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Int(i64::from(n))
            }
        }
    )*};
}
int_value!(i32, i64, u16, u32);
/// Sizes and counts; saturates at `i64::MAX` (TOML integers are 64-bit signed).
impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>, const N: usize> From<[T; N]> for Value {
    fn from(v: [T; N]) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

/// Builds a configuration file section by section. Sections come out in the order they were
/// first touched, keys in the order they were first set; setting a key again replaces its value
/// in place.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    sections: Vec<(String, Vec<(String, Value)>)>,
}

impl ConfigBuilder {
    /// An empty file.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Sets `[section] key = value`.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        let value = value.into();
        let keys = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => &mut self.sections[i].1,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                let last = self.sections.len() - 1;
                &mut self.sections[last].1
            }
        };
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => keys.push((key.to_string(), value)),
        }
        self
    }

    /// Removes `[section] key` if it is set (the section stays, possibly empty).
    pub fn unset(mut self, section: &str, key: &str) -> ConfigBuilder {
        if let Some((_, keys)) = self.sections.iter_mut().find(|(s, _)| s == section) {
            keys.retain(|(k, _)| k != key);
        }
        self
    }

    /// `[aliyun] key = value`.
    pub fn aliyun(self, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        self.set("aliyun", key, value)
    }

    /// An `[aliyun]` section that signs in to `fake`: its address, credentials, instance and
    /// consumer group, and `ca_file` (the fake's CA, e.g. from [`FakeAliyun::write_ca`]).
    pub fn aliyun_from_fake(self, fake: &FakeAliyun, ca_file: &Path) -> ConfigBuilder {
        let cfg = fake.config();
        let (access_key_id, access_key_secret) = fake::credentials(cfg);
        let addr = fake.addr();
        self.aliyun("host", addr.ip().to_string())
            .aliyun("port", addr.port())
            .aliyun("access_key_id", access_key_id)
            .aliyun("access_key_secret", access_key_secret)
            .aliyun("iot_instance_id", &cfg.iot_instance_id)
            .aliyun("consumer_group_id", &cfg.consumer_group_id)
            .aliyun("ca_file", ca_file)
    }

    /// A syntactically complete `[aliyun]` section with dummy values, for tests that parse the
    /// file in process and then point `config.aliyun` at a fake themselves.
    pub fn aliyun_placeholder(self) -> ConfigBuilder {
        self.aliyun("host", "127.0.0.1")
            .aliyun("access_key_id", "x")
            .aliyun("access_key_secret", "x")
            .aliyun("iot_instance_id", "")
            .aliyun("consumer_group_id", "x")
    }

    /// `[output] dir`.
    pub fn output_dir(self, dir: impl AsRef<Path>) -> ConfigBuilder {
        self.set("output", "dir", dir.as_ref())
    }

    /// `[state] dir`.
    pub fn state_dir(self, dir: impl AsRef<Path>) -> ConfigBuilder {
        self.set("state", "dir", dir.as_ref())
    }

    /// `[spool] key = value`.
    pub fn spool(self, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        self.set("spool", key, value)
    }

    /// `[assembly] key = value`.
    pub fn assembly(self, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        self.set("assembly", key, value)
    }

    /// `[log] key = value`.
    pub fn log(self, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        self.set("log", key, value)
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut out = String::new();
        for (i, (section, keys)) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('[');
            out.push_str(section);
            out.push_str("]\n");
            for (key, value) in keys {
                out.push_str(key);
                out.push_str(" = ");
                value.render(&mut out);
                out.push('\n');
            }
        }
        out
    }

    /// Writes [`build`](ConfigBuilder::build)'s text to `path`; returns `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<PathBuf> {
        std::fs::write(path.as_ref(), self.build())?;
        Ok(path.as_ref().to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_and_escapes() {
        let text = ConfigBuilder::new()
            .aliyun("host", "127.0.0.1")
            .aliyun("port", 5671)
            .spool("enabled", false)
            .aliyun("client_id", "a\"b\\c\n")
            .aliyun("port", 5672u16)
            .set("hook", "env", vec!["A", "B=1"])
            .unset("spool", "enabled")
            .build();
        assert_eq!(
            text,
            "[aliyun]\nhost = \"127.0.0.1\"\nport = 5672\nclient_id = \"a\\\"b\\\\c\\n\"\n\n\
             [spool]\n\n[hook]\nenv = [\"A\", \"B=1\"]\n"
        );
    }
}
