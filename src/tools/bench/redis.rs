//! The shared store of `receiver bench --instances`: one `redis-server` on loopback for the whole
//! bench (started by the test kit's [`receiver_testkit::redis`], as the cluster tests' is), configured as cluster mode wants it in production (`appendonly yes`,
//! `appendfsync always`), its data in the work folder; each run uses its own key prefix.
//!
//! Round trips are read from the server's own counters (`INFO stats`): `total_reads_processed`
//! counts the read events of client connections, one per request or pipelined batch that
//! arrives at once, which is the client's round trip; `total_commands_processed` counts the
//! commands in them.

use super::{io_err, BenchError};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// A `redis-server` of the bench's own; killed when dropped.
pub struct BenchRedis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The server's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisCounters {
    /// `total_reads_processed`: read events of client connections (round trips).
    pub reads: u64,
    /// `total_commands_processed`.
    pub commands: u64,
}

impl BenchRedis {
    /// Starts one on a free port with its data in `dir` (`redis` names the binary; default
    /// `/usr/bin/redis-server` when it exists, else `redis-server` from the `PATH`).
    pub fn start(redis: Option<PathBuf>, dir: &Path) -> Result<BenchRedis, BenchError> {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let bin = redis.unwrap_or_else(receiver_testkit::redis::redis_server_binary);
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(io_err("bind", Path::new("127.0.0.1:0")))?
                .port();
            let spawned = receiver_testkit::redis::spawn_redis(&bin, dir, port)
                .map_err(io_err("start", &bin))?;
            if let Some(child) = spawned {
                return Ok(BenchRedis { child, port });
            }
        }
        Err(BenchError::Run(format!(
            "{} did not start (apt-get install redis-server)",
            bin.display()
        )))
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the counters (one round trip of its own, which the caller subtracts).
    pub fn counters(&self) -> Result<RedisCounters, BenchError> {
        let text: String = redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .and_then(|mut c| redis::cmd("INFO").arg("stats").query(&mut c))
            .map_err(|e| BenchError::Run(format!("redis INFO stats: {e}")))?;
        Ok(parse_stats(&text))
    }
}

/// `total_reads_processed` and `total_commands_processed` of an `INFO stats` answer.
pub fn parse_stats(text: &str) -> RedisCounters {
    let mut c = RedisCounters::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let v = v.trim().parse().unwrap_or(0);
        match k {
            "total_reads_processed" => c.reads = v,
            "total_commands_processed" => c.commands = v,
            _ => {}
        }
    }
    c
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_parsed() {
        let c = parse_stats(
            "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:42\r\ntotal_reads_processed:17\r\n",
        );
        assert_eq!(
            c,
            RedisCounters {
                reads: 17,
                commands: 42
            }
        );
    }
}
