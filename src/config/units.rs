//! The two value types every section shares: [`ByteSize`] and [`HumanDuration`].
//!
//! One spelling works everywhere: `max_image_bytes = "8mib"` in `[assembly]` and
//! `max_total_bytes = "8mib"` in `[retention]` mean the same.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// What a size may look like, for messages.
const SIZE_EXPECTED: &str = "an integer number of bytes or a string like \"4 MiB\", \"512 KiB\", \
                             \"1 GiB\" (KB/MB/GB are powers of 1000)";

/// A byte count: an integer, or a string with a unit (`"4 MiB"`, `"512KiB"`, `"1.5 GB"`,
/// `"8mib"`). Units ignore case: B, K/KB, M/MB, G/GB, T/TB are powers of 1000; KiB, MiB, GiB,
/// TiB powers of 1024.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses a size string; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ if !num.is_empty() => {
                return Err(format!(
                    "invalid size {s:?}: unknown size unit {:?}; expected {SIZE_EXPECTED}",
                    unit.trim()
                ))
            }
            _ => return Err(format!("invalid size {s:?}; expected {SIZE_EXPECTED}")),
        };
        let bytes = if num.contains('.') {
            num.parse::<f64>()
                .ok()
                .map(|n| n * mult as f64)
                .filter(|v| v.is_finite() && *v <= u64::MAX as f64)
                .map(|v| v as u64)
        } else {
            num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
        };
        bytes
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}; expected {SIZE_EXPECTED}"))
    }

    /// The size as a TOML value: `"4 MiB"` when it is a whole number of KiB, MiB or GiB, else
    /// the integer.
    pub fn to_toml(self) -> toml::Value {
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= m && self.0 % m == 0 {
                return toml::Value::String(format!("{} {unit}", self.0 / m));
            }
        }
        // A size past i64::MAX cannot be a TOML integer; it stays exact as a string.
        i64::try_from(self.0).map_or_else(
            |_| toml::Value::String(self.0.to_string()),
            toml::Value::Integer,
        )
    }
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> u64 {
        b.0
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| {
                    E::custom(format!(
                        "{n} is negative; expected a byte count like \"4 MiB\""
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ByteSize, E> {
                Err(E::custom(format!("invalid size; expected {SIZE_EXPECTED}")))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!("invalid size; expected {SIZE_EXPECTED}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written the humantime way: `"60s"`, `"10m"`, `"1h 30m"`, `"5ms"`, `"30d"`.
/// A bare number is refused: it has no unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration as a TOML string (`"1m"`, `"30days"`).
    pub fn to_toml(d: Duration) -> toml::Value {
        toml::Value::String(humantime::format_duration(d).to_string())
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"60s\", \"10m\" or \"5ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(s.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration {s:?} ({e}); expected a duration like \"60s\", \
                             \"10m\" or \"5ms\""
                        ))
                    })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; expected a duration string like \"{n}s\" \
                     or \"{n}ms\""
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; expected a duration string like \"60s\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `#[serde(serialize_with = ...)]` helpers: how the validated config's plain values serialize,
/// so `check-config` prints them as the config file writes them (`"1m"`, `"4 MiB"`).
pub mod as_toml {
    use super::{ByteSize, HumanDuration};
    use serde::{Serialize, Serializer};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// A duration as [`HumanDuration::to_toml`] writes it.
    pub fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        HumanDuration::to_toml(*d).serialize(s)
    }

    /// [`duration`], for an optional setting (pair with `skip_serializing_if`).
    pub fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration(d, s),
            None => s.serialize_none(),
        }
    }

    /// A byte count as [`ByteSize::to_toml`] writes it.
    pub fn size<T: Copy, S: Serializer>(n: &T, s: S) -> Result<S::Ok, S::Error>
    where
        u64: TryFrom<T>,
    {
        let n = u64::try_from(*n).map_err(|_| serde::ser::Error::custom("size too large"))?;
        ByteSize(n).to_toml().serialize(s)
    }

    /// [`size`], for an optional setting (pair with `skip_serializing_if`).
    pub fn opt_size<T: Copy, S: Serializer>(n: &Option<T>, s: S) -> Result<S::Ok, S::Error>
    where
        u64: TryFrom<T>,
    {
        match n {
            Some(n) => size(n, s),
            None => s.serialize_none(),
        }
    }

    /// A path as a string; a part that is not UTF-8 shows as U+FFFD rather than failing.
    pub fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    /// [`path`], for an optional setting (pair with `skip_serializing_if`).
    pub fn opt_path<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => path(p, s),
            None => s.serialize_none(),
        }
    }

    /// A folder setting that is a table of its own: `[output] dir = "..."`.
    pub fn dir_table<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("dir", &p.to_string_lossy())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_same_spellings_everywhere() {
        for (s, want) in [
            ("8mib", 8 << 20),
            ("8 MiB", 8 << 20),
            ("500KB", 500_000),
            ("500kb", 500_000),
            ("1.5 GiB", 3 << 29),
            ("2T", 2_000_000_000_000),
            ("42", 42),
            ("42 b", 42),
        ] {
            assert_eq!(ByteSize::parse(s), Ok(ByteSize(want)), "{s}");
        }
        assert!(ByteSize::parse("2 MeB")
            .unwrap_err()
            .starts_with("invalid size \"2 MeB\": unknown size unit \"MeB\""));
        assert!(ByteSize::parse("lots")
            .unwrap_err()
            .starts_with("invalid size \"lots\";"));
        assert!(ByteSize::parse("99999999999 TiB").is_err());
    }

    #[test]
    fn sizes_print_back_as_they_parse() {
        for n in [0, 1, 1000, 1 << 10, 5 << 20, 50 << 30, (1 << 30) + 1] {
            let v = ByteSize(n).to_toml();
            let back: ByteSize = v.clone().try_into().unwrap();
            assert_eq!(back, ByteSize(n), "{v}");
        }
    }
}
