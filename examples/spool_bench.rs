//! Spool throughput: append + commit (one write + fdatasync per batch) of 800-hex-character
//! chunks in batches of 1, 16 and 256, against an in-memory baseline (cloning each chunk into a
//! `Vec`, which is what an in-memory ingest retains) on the same stream in the same run.
//!
//! ```text
//! cargo run --release --example spool_bench [-- DIR [SECONDS_PER_CASE]]
//! ```
//!
//! DIR defaults to a temporary directory under `$TMPDIR` (put it on the disk the daemon will use:
//! fdatasync cost is the whole story). Records are released 2 000 behind the head, as finished
//! pictures would be, so segments roll over and get deleted as in steady state.

use receiver::message::{DeviceId, ImgMessage};
use receiver::spool::{Record, Spool, SpoolOptions};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const STREAM: usize = 200_000;
const RELEASE_LAG: usize = 2_000;

fn stream() -> Vec<Record> {
    let devices: Vec<DeviceId> = (0..8)
        .map(|d| DeviceId::new("a1B2c3D4e5F", &format!("esp32cam-{d:02}")))
        .collect();
    (0..STREAM)
        .map(|n| Record::Img {
            received_ms: 1_700_000_000_000 + n as u64,
            msg: ImgMessage {
                device: devices[n % devices.len()].clone(),
                message_id: format!("{}", 1_800_000_000_000_000_000u64 + n as u64),
                value: format!("{n:0>800X}"),
                item_time: Some(1_700_000_000_000 + n as i64),
                gmt_create: Some(1_700_000_000_005 + n as i64),
                request_id: Some(format!("{}", n / 64)),
            },
        })
        .collect()
}

struct Outcome {
    records: usize,
    bytes: u64,
    elapsed: Duration,
    commits: usize,
    worst_commit: Duration,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

fn in_memory(recs: &[Record], budget: Duration) -> Outcome {
    let started = Instant::now();
    let mut held: Vec<Record> = Vec::with_capacity(recs.len());
    let mut bytes = 0u64;
    for r in recs {
        held.push(r.clone());
        if let Record::Img { msg, .. } = r {
            bytes += msg.value.len() as u64;
        }
        if held.len() % 1024 == 0 && started.elapsed() > budget {
            break;
        }
    }
    let out = Outcome {
        records: held.len(),
        bytes,
        elapsed: started.elapsed(),
        commits: 0,
        worst_commit: Duration::ZERO,
    };
    std::hint::black_box(held);
    out
}

/// Encoding alone: append batches of 256 and abort them (no I/O).
fn encode_only(
    dir: &std::path::Path,
    recs: &[Record],
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(dir);
    let (mut spool, _) = Spool::open(SpoolOptions::new(dir, 1 << 40))?;
    let started = Instant::now();
    let mut bytes = 0u64;
    for chunk in recs.chunks(256) {
        for r in chunk {
            spool.append(r)?;
        }
        bytes += spool.bytes();
        spool.abort();
    }
    Ok(Outcome {
        records: recs.len(),
        bytes,
        elapsed: started.elapsed(),
        commits: 0,
        worst_commit: Duration::ZERO,
    })
}

fn durable(
    dir: &std::path::Path,
    recs: &[Record],
    batch: usize,
    budget: Duration,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(dir);
    let (mut spool, _) = Spool::open(SpoolOptions {
        dir: dir.to_path_buf(),
        segment_bytes: SpoolOptions::DEFAULT_SEGMENT_BYTES,
        max_bytes: 1 << 40,
    })?;
    let mut inflight: VecDeque<u64> = VecDeque::new();
    let (mut records, mut bytes, mut commits) = (0usize, 0u64, 0usize);
    let mut worst_commit = Duration::ZERO;
    let started = Instant::now();
    for chunk in recs.chunks(batch) {
        for r in chunk {
            inflight.push_back(spool.append(r)?);
        }
        let stats = spool.commit()?;
        worst_commit = worst_commit.max(stats.elapsed);
        records += stats.records;
        bytes += stats.bytes;
        commits += 1;
        if inflight.len() > RELEASE_LAG {
            let n = inflight.len() - RELEASE_LAG;
            spool.release(inflight.drain(..n));
        }
        if started.elapsed() > budget {
            break;
        }
    }
    Ok(Outcome {
        records,
        bytes,
        elapsed: started.elapsed(),
        commits,
        worst_commit,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tmp;
    let base: PathBuf = match args.next() {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let secs: f64 = match args.next() {
        Some(s) => s.parse()?,
        None => 2.0,
    };
    let budget = Duration::from_secs_f64(secs);
    let recs = stream();
    println!(
        "spool_bench: {} chunks of {} hex chars, dir {}, up to {secs} s per case",
        recs.len(),
        800,
        base.display()
    );
    let mem = in_memory(&recs, budget);
    println!(
        "{:<22} {:>10.0} rec/s {:>8.1} MB/s (payload)",
        "in-memory (Vec push)",
        mem.rate(),
        mem.mb_s()
    );
    let enc = encode_only(&base.join("encode"), &recs)?;
    println!(
        "{:<22} {:>10.0} rec/s {:>8.1} MB/s (encoded, no I/O)",
        "append+abort only",
        enc.rate(),
        enc.mb_s()
    );
    for batch in [1usize, 16, 256] {
        let out = durable(&base.join(format!("b{batch}")), &recs, batch, budget)?;
        println!(
            "{:<22} {:>10.0} rec/s {:>8.1} MB/s (on disk)  {:>6} commits, {:>7.1} us/commit avg, worst {:>7.1} us;  in-memory/durable = {:.1}x",
            format!("durable, batch {batch}"),
            out.rate(),
            out.mb_s(),
            out.commits,
            out.elapsed.as_secs_f64() * 1e6 / out.commits.max(1) as f64,
            out.worst_commit.as_secs_f64() * 1e6,
            mem.rate() / out.rate(),
        );
    }
    Ok(())
}
