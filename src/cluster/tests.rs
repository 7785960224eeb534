//! The shared store against a real `redis-server` (Debian's package; `scripts/test.sh` installs
//! it): started on loopback on a free port, its data in a temp folder, `appendonly yes`.

use super::*;
use crate::wire::{encode_v1, encode_v2, parse_value, ImgValue};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// A `redis-server` of the test's own.
pub(crate) struct RedisServer {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// With more arguments (e.g. `--replicaof`).
    pub(crate) fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(child) = spawn_with(dir.path(), port, extra) {
                return RedisServer { child, port, dir };
            }
        }
        panic!("redis-server did not start");
    }

    /// SIGKILLs the server and starts it again on the same port from its AOF.
    pub(crate) fn kill_and_restart(&mut self) {
        self.kill();
        self.child = spawn(self.dir.path(), self.port).expect("redis-server restarts");
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP (`true`) or SIGCONT.
    pub(crate) fn pause(&self, stop: bool) {
        let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// Starts `redis-server` on `port` with its data in `dir`; `None` when it does not come up
/// (the port was taken meanwhile).
fn spawn(dir: &std::path::Path, port: u16) -> Option<Child> {
    spawn_with(dir, port, &[])
}

fn spawn_with(dir: &std::path::Path, port: u16, extra: &[&str]) -> Option<Child> {
    let bin = receiver_testkit::redis::redis_server_binary();
    receiver_testkit::redis::spawn_redis_with(&bin, dir, port, extra)
        .expect("redis-server (apt-get install redis-server; scripts/test.sh does)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped server dies of SIGKILL too; one already reaped is not signalled again (its
        // pid may belong to another process by now).
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn store(server: &RedisServer, instance: &str) -> ClusterStore {
    let mut o = ClusterOptions::new(&server.url(), "t", instance);
    o.lease = Duration::from_millis(300);
    ClusterStore::new(o).unwrap()
}

fn dev(n: &str) -> DeviceId {
    DeviceId::new("a1pk", n)
}

fn jpeg(seed: u32) -> Vec<u8> {
    receiver_testkit::sample::scene_jpeg(48, 32, seed, "T", 70).unwrap()
}

fn v2_chunks(device: &DeviceId, pid: u32, img: &[u8], piece: usize) -> Vec<Chunk> {
    encode_v2(img, pid, piece)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ImgValue::V2 { header, data } = parse_value(v).unwrap() else {
                panic!()
            };
            Chunk::V2 {
                message_id: format!("m-{}-{pid}-{i}", device.device_name),
                device: device.clone(),
                header,
                time_ms: 1_700_000_000_000 + i as i64,
                bytes: crate::wire::decode_base64(data).unwrap(),
            }
        })
        .collect()
}

/// A v1 picture's messages: data chunks then `END`, timed from `t0` one ms apart.
fn v1_chunks(device: &DeviceId, img: &[u8], t0: i64, tag: &str) -> Vec<Chunk> {
    encode_v1(img, 200)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let message_id = format!("m-{tag}-{i}");
            let time_ms = t0 + i as i64;
            match parse_value(v).unwrap() {
                ImgValue::V1End => Chunk::V1End {
                    message_id,
                    device: device.clone(),
                    time_ms,
                },
                ImgValue::V1Hex(h) => {
                    let mut bytes = Vec::new();
                    crate::wire::decode_hex_into(h, &mut bytes).unwrap();
                    Chunk::V1Data {
                        message_id,
                        device: device.clone(),
                        time_ms,
                        bytes,
                    }
                }
                _ => panic!(),
            }
        })
        .collect()
}

/// What a completing instance does: claim, fetch, check, "write", finish. Returns the bytes
/// written, if it wrote.
fn complete(s: &mut ClusterStore, key: &PictureKey, now: u64) -> Option<Vec<u8>> {
    let (claim, version) = s.claim(key, now).unwrap();
    if !claim.won() {
        return None;
    }
    let f = s.fetch(key).unwrap()?;
    let bytes = match key {
        PictureKey::V2 { .. } => {
            let b = f.v2_bytes()?;
            let Fetched::V2 { size, crc, .. } = &f else {
                panic!()
            };
            v2_verdict(&b, *size, *crc).unwrap();
            b
        }
        _ => {
            let b = f.concat();
            if v1_verdict(&b).is_err() {
                s.unclaim(key, version).unwrap();
                return None;
            }
            b
        }
    };
    s.finish(key, Some(&f)).unwrap().then_some(bytes)
}

fn shuffle<T>(v: &mut [T], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

#[test]
fn keys_and_urls_round_trip_without_secrets() {
    let d = device_key(&DeviceId::new("p|k", "a%b|c"));
    assert_eq!(device_of(&d), Some(DeviceId::new("p|k", "a%b|c")));
    for k in [
        PictureKey::V2 {
            device: d.clone(),
            pid: 7,
        },
        PictureKey::V1 {
            device: d.clone(),
            end: "0001700000000123:000000000000002a".into(),
        },
        PictureKey::V1Device { device: d.clone() },
    ] {
        assert_eq!(PictureKey::decode(&k.encode()), Some(k));
    }
    assert_eq!(
        redact_url("rediss://user:s3cret@db.example:6380/2"),
        "rediss://db.example:6380/2"
    );
    let o = ClusterOptions::new("redis://:pw@h/0", "p", "i");
    assert!(!format!("{o:?}").contains("pw"));
}

#[test]
fn v2_across_instances_dedups_and_completes_exactly_once() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let mut b = store(&server, "b");
    let img = jpeg(1);
    let mut chunks = v2_chunks(&dev("cam"), 9, &img, 150);
    assert!(chunks.len() > 4);
    // Every chunk twice: once as a redelivery (same messageId), once as a resend (new id).
    let mut all: Vec<Chunk> = chunks.clone();
    all.extend(chunks.iter().cloned());
    for c in &mut chunks {
        if let Chunk::V2 { message_id, .. } = c {
            message_id.push_str("-resend");
        }
    }
    all.extend(chunks);
    let mut seed = 42;
    shuffle(&mut all, &mut seed);
    let mut ready = Vec::new();
    let mut new = 0;
    for (i, c) in all.iter().enumerate() {
        let s = if i % 2 == 0 { &mut a } else { &mut b };
        let out = s.store(std::slice::from_ref(c), 1000).unwrap();
        new += out.statuses.iter().filter(|s| **s == Stored::New).count();
        ready.extend(out.ready);
    }
    assert_eq!(new, all.len() / 3, "each chunk stored once");
    assert_eq!(ready.len(), 1, "completed once: {ready:?}");
    let key = &ready[0];
    // Both race to write it: exactly one wins.
    assert_eq!(b.claim(key, 1000).unwrap().0, Claim::Won);
    assert_eq!(a.claim(key, 1000).unwrap().0, Claim::Held);
    assert_eq!(complete(&mut b, key, 1000), Some(img.clone()));
    assert_eq!(a.claim(key, 1000).unwrap().0, Claim::Done);
    // A late redelivery of a finished picture's chunk is recognised.
    let late = v2_chunks(&dev("cam"), 9, &img, 150);
    let mut late0 = late[0].clone();
    if let Chunk::V2 { message_id, .. } = &mut late0 {
        *message_id = "brand-new".into();
    }
    let out = a.store(&[late0], 2000).unwrap();
    assert_eq!(out.statuses, vec![Stored::Finished]);
    assert!(out.ready.is_empty());
}

#[test]
fn v2_header_conflicts_are_reported() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let chunks = v2_chunks(&dev("cam"), 3, &jpeg(2), 300);
    let mut other = chunks[1].clone();
    if let Chunk::V2 {
        header, message_id, ..
    } = &mut other
    {
        header.crc ^= 1;
        *message_id = "x".into();
    }
    let out = a.store(&[chunks[0].clone(), other], 1).unwrap();
    assert_eq!(out.statuses, vec![Stored::New, Stored::Conflict]);
}

#[test]
fn v1_is_cut_at_ends_by_time_whatever_the_order_and_instance() {
    let server = RedisServer::start();
    let mut stores = [
        store(&server, "a"),
        store(&server, "b"),
        store(&server, "c"),
    ];
    let d = dev("v1cam");
    let imgs: Vec<Vec<u8>> = (0..4).map(|i| jpeg(10 + i)).collect();
    let mut all = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        all.extend(v1_chunks(
            &d,
            img,
            1_700_000_000_000 + 10_000 * i as i64,
            &i.to_string(),
        ));
    }
    // Duplicates: some redelivered (same id), some resent (same content and time, new id).
    let dups: Vec<Chunk> = all.iter().step_by(3).cloned().collect();
    let mut resent: Vec<Chunk> = all.iter().skip(1).step_by(4).cloned().collect();
    for c in &mut resent {
        match c {
            Chunk::V1Data { message_id, .. } | Chunk::V1End { message_id, .. } => {
                message_id.push_str("-qos1")
            }
            Chunk::V2 { .. } => {}
        }
    }
    all.extend(dups);
    all.extend(resent);
    let mut seed = 7;
    shuffle(&mut all, &mut seed);
    let mut written = Vec::new();
    for (i, batch) in all.chunks(3).enumerate() {
        let s = &mut stores[i % 3];
        let out = s.store(batch, 5000).unwrap();
        assert!(!out.statuses.contains(&Stored::Late), "{:?}", out.statuses);
        for key in out.ready {
            if let Some(b) = complete(s, &key, 5000) {
                written.push(b);
            }
        }
    }
    written.sort();
    let mut want = imgs.clone();
    want.sort();
    assert_eq!(written, want, "every picture exactly once, byte-identical");
    // Nothing left behind but the ENDs' bookkeeping; nothing open.
    assert!(stores[0]
        .expired(u64::MAX / 2, Duration::ZERO, 100)
        .unwrap()
        .is_empty());
}

#[test]
fn a_dead_claimant_is_taken_over_after_its_lease() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let mut b = store(&server, "b");
    let img = jpeg(3);
    let out = a
        .store(&v2_chunks(&dev("cam"), 1, &img, 510), 1000)
        .unwrap();
    let key = out.ready[0].clone();
    // `a` claims and "dies" before writing.
    assert_eq!(a.claim(&key, 1000).unwrap().0, Claim::Won);
    assert!(b.stale_ready(1100, 10).unwrap().is_empty(), "not stale yet");
    assert_eq!(b.claim(&key, 1100).unwrap().0, Claim::Held);
    std::thread::sleep(Duration::from_millis(400)); // the 300 ms lease runs out
    let stale = b.stale_ready(1000 + 400, 10).unwrap();
    assert_eq!(stale, vec![key.clone()]);
    assert_eq!(b.claim(&key, 1400).unwrap().0, Claim::TakeOver);
    assert_eq!(complete(&mut b, &key, 1400), Some(img));
    // `a` wakes up: its write would be a create-only duplicate; finishing again reports it.
    assert_eq!(a.claim(&key, 1500).unwrap().0, Claim::Done);
    let f = Fetched::V2 {
        count: 0,
        size: 0,
        crc: 0,
        time_ms: 0,
        pieces: BTreeMap::new(),
    };
    assert!(!a.finish(&key, Some(&f)).unwrap());
}

#[test]
fn abandoned_pictures_expire_exactly_once() {
    let server = RedisServer::start();
    let mut stores = [
        store(&server, "a"),
        store(&server, "b"),
        store(&server, "c"),
    ];
    let d = dev("cam");
    let v2 = v2_chunks(&d, 5, &jpeg(4), 300);
    let v1 = v1_chunks(&dev("old"), &jpeg(5), 1_700_000_000_000, "o");
    // Half of each: never complete.
    let mut half: Vec<Chunk> = v2.iter().step_by(2).cloned().collect();
    half.extend(v1.iter().take(v1.len() / 2).cloned());
    stores[0].store(&half, 1000).unwrap();
    let timeout = Duration::from_secs(60);
    assert!(stores[1].expired(30_000, timeout, 10).unwrap().is_empty());
    // Every instance sweeps at once; each picture is quarantined by exactly one.
    let mut quarantined = Vec::new();
    for s in &mut stores {
        for key in s.expired(100_000, timeout, 10).unwrap() {
            if s.claim_expired(&key, 100_000, timeout).unwrap().0.won() {
                let f = s.fetch(&key).unwrap().unwrap();
                assert!(s.finish(&key, Some(&f)).unwrap());
                quarantined.push((key, f.chunks()));
            }
        }
    }
    quarantined.sort();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    assert!(quarantined.iter().all(|(_, n)| *n > 0));
    for s in &mut stores {
        assert!(s.expired(200_000, timeout, 10).unwrap().is_empty());
    }
    // Memory is bounded: only the dedup/done markers (with TTLs) and bookkeeping remain.
    let mut c = Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("{t}:*").query(&mut c).unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with("{t}:mid:")
            || k.starts_with("{t}:done:")
            || k.starts_with("{t}:v1f:")
            || k == "{t}:ctr"),
        "{keys:?}"
    );
}

#[test]
fn accepted_chunks_survive_a_redis_restart_from_its_aof_and_the_client_reconnects() {
    let mut server = RedisServer::start();
    let mut a = store(&server, "a");
    let img = jpeg(6);
    let chunks = v2_chunks(&dev("cam"), 1, &img, 150);
    let (first, rest) = chunks.split_at(chunks.len() / 2);
    assert!(a.store(first, 1).unwrap().ready.is_empty());
    server.kill();
    let e = a.store(rest, 2).unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    assert!(a.ping().is_err(), "down");
    server.kill_and_restart();
    // Reconnects by itself; what was accepted before the kill is there (appendfsync always).
    let out = a.store(rest, 3).unwrap();
    assert!(out.statuses.iter().all(|s| *s == Stored::New));
    assert_eq!(out.ready.len(), 1);
    assert_eq!(complete(&mut a, &out.ready[0], 3), Some(img));
}

#[test]
fn a_paused_redis_times_out_the_batch_and_intake_resumes_after() {
    let server = RedisServer::start();
    let mut o = ClusterOptions::new(&server.url(), "t", "a");
    o.timeout = Duration::from_millis(300);
    let mut a = ClusterStore::new(o).unwrap();
    a.ping().unwrap();
    let img = jpeg(7);
    let chunks = v2_chunks(&dev("cam"), 2, &img, 150);
    server.pause(true);
    let started = Instant::now();
    let e = a.store(&chunks, 1).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the time-out"
    );
    assert!(e.is_retryable(), "{e}");
    server.pause(false);
    // The stopped server may still run the batch it had read: a retry of the same chunks is
    // then a duplicate, never a second copy, and the picture completes exactly once.
    std::thread::sleep(Duration::from_millis(100));
    let out = a.store(&chunks, 2).unwrap();
    let first = out.ready.len();
    let mut c = Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let ready: Vec<String> = redis::cmd("ZRANGE")
        .arg("{t}:ready")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(ready.len(), 1, "{ready:?} (this call saw {first})");
    let key = PictureKey::decode(&ready[0]).unwrap();
    assert_eq!(complete(&mut a, &key, 2), Some(img));
}

#[test]
fn passwords_are_used_and_never_printed() {
    let server = RedisServer::start();
    let mut c = Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("hunter2")
        .query(&mut c)
        .unwrap();
    let mut o = ClusterOptions::new(&server.url(), "t", "a");
    let mut bad = ClusterStore::new(o.clone()).unwrap();
    let e = bad.ping().unwrap_err();
    assert!(!e.to_string().contains("hunter2"));
    o.password = Some(crate::config::Secret::new("hunter2".to_owned()));
    let mut good = ClusterStore::new(o.clone()).unwrap();
    good.ping().unwrap();
    assert!(!format!("{good:?} {o:?}").contains("hunter2"));
    let p = good.probe().unwrap();
    assert!(p.warnings.is_empty(), "{p:?}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query(
            &mut Client::open(format!("redis://:hunter2@127.0.0.1:{}/", server.port))
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    let p = good.probe().unwrap();
    assert_eq!(p.warnings.len(), 1, "{p:?}");
    assert!(p.warnings[0].contains("appendfsync"));
}

#[test]
fn a_chunk_stored_while_a_segment_is_checked_keeps_it_ready() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let mut b = store(&server, "b");
    let chunks = v1_chunks(&dev("v1"), &jpeg(8), 1_700_000_000_000, "x");
    let (last, rest) = chunks.split_last().unwrap();
    let (missing, rest) = rest.split_first().unwrap();
    // The END and all but the first chunk: a candidate that fails its check.
    let mut batch = rest.to_vec();
    batch.push(last.clone());
    let out = a.store(&batch, 1).unwrap();
    let key = out.ready[0].clone();
    let (claim, version) = a.claim(&key, 1).unwrap();
    assert!(claim.won());
    let f = a.fetch(&key).unwrap().unwrap();
    assert!(v1_verdict(&f.concat()).is_err());
    // Meanwhile `b` stores the missing chunk: its claim attempt finds `a`'s lease.
    let out = b.store(std::slice::from_ref(missing), 2).unwrap();
    assert_eq!(out.ready, vec![key.clone()]);
    assert_eq!(b.claim(&key, 2).unwrap().0, Claim::Held);
    // `a` gives its claim back and learns that it must look again; the picture stays ready.
    assert!(a.unclaim(&key, version).unwrap());
    assert_eq!(b.stale_ready(u64::MAX / 2, 10).unwrap(), vec![key.clone()]);
    assert_eq!(complete(&mut a, &key, 3), Some(jpeg(8)));
}

#[test]
fn a_v1_picture_whose_successor_was_written_first_is_not_late() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let d = dev("v1");
    let (p1, p2) = (jpeg(20), jpeg(21));
    let first = v1_chunks(&d, &p1, 1_700_000_000_000, "p1");
    let second = v1_chunks(&d, &p2, 1_700_000_010_000, "p2");
    let mut written = Vec::new();
    // The second picture, whole, before anything of the first: written under its END.
    for c in second.iter().chain(&first) {
        let out = a.store(std::slice::from_ref(c), 1).unwrap();
        assert_eq!(out.statuses, vec![Stored::New], "{c:?}");
        for key in out.ready {
            written.extend(complete(&mut a, &key, 1));
        }
    }
    assert_eq!(written, vec![p2.clone(), p1.clone()]);
    // A chunk timed inside a written picture is late; one before it (with its END) is not.
    let inside = Chunk::V1Data {
        message_id: "new".into(),
        device: d.clone(),
        time_ms: 1_700_000_010_001,
        bytes: vec![1, 2, 3],
    };
    let end_inside = Chunk::V1End {
        message_id: "new-end".into(),
        device: d.clone(),
        time_ms: 1_700_000_010_002,
    };
    let out = a.store(&[inside, end_inside], 2).unwrap();
    assert_eq!(out.statuses, vec![Stored::Late, Stored::Late]);
}

#[test]
fn a_v1_camera_still_sending_keeps_its_new_chunks_when_old_ones_expire() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let d = dev("v1");
    let old = v1_chunks(&d, &jpeg(30), 1_700_000_000_000, "old");
    let new = v1_chunks(&d, &jpeg(31), 1_700_000_100_000, "new");
    // Half a picture long ago (no END), then most of a new one now.
    a.store(&old[..3], 1_000).unwrap();
    a.store(&new[..new.len() - 1], 500_000).unwrap();
    let timeout = Duration::from_secs(60);
    let key = PictureKey::V1Device {
        device: device_key(&d),
    };
    assert_eq!(a.expired(500_000, timeout, 10).unwrap(), vec![key.clone()]);
    assert!(a.claim_expired(&key, 500_000, timeout).unwrap().0.won());
    let f = a.fetch_arrived_by(&key, 500_000 - 60_000).unwrap().unwrap();
    assert_eq!(f.chunks(), 3, "only the old chunks");
    assert!(a.finish(&key, Some(&f)).unwrap());
    // The new picture is still open (not expired yet), and completes.
    assert!(a.expired(500_000, timeout, 10).unwrap().is_empty());
    let out = a.store(&new[new.len() - 1..], 500_001).unwrap();
    let mut written = Vec::new();
    for k in out.ready {
        written.extend(complete(&mut a, &k, 500_001));
    }
    assert_eq!(written, vec![jpeg(31)]);
}

#[test]
fn a_v1_segment_tells_when_it_began_and_the_latest_loss_any_instance_reported() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let mut b = store(&server, "b");
    let chunks = v1_chunks(&dev("v1"), &jpeg(40), 1_700_000_000_000, "g");
    let (first, rest) = chunks.split_at(2);
    a.store(first, 1_000).unwrap();
    b.report_loss(1_500).unwrap();
    a.report_loss(1_200).unwrap(); // older: the latest stays
    let out = a.store(rest, 2_000).unwrap();
    let f = a.fetch(&out.ready[0]).unwrap().unwrap();
    let Fetched::V1 {
        first_arrival_ms,
        loss_ms,
        ..
    } = f
    else {
        panic!("{f:?}")
    };
    assert_eq!((first_arrival_ms, loss_ms), (1_000, 1_500));
    // Held: the claim goes, the picture stays ready for a later sweep.
    assert!(a.claim(&out.ready[0], 2_000).unwrap().0.won());
    a.release_claim(&out.ready[0]).unwrap();
    assert_eq!(b.stale_ready(u64::MAX / 2, 10).unwrap(), out.ready);
    assert_eq!(b.claim(&out.ready[0], 2_001).unwrap().0, Claim::Won);
}

/// The benchmark target "at most one Redis round trip per delivery on average": batches of 64
/// chunks (one store call each) and three calls per completed picture (claim, fetch, finish).
/// Prints the figures (`--nocapture`); BENCHMARKS.md quotes a run.
#[test]
fn a_delivery_costs_less_than_one_round_trip_on_average() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let img = jpeg(1);
    let mut all = Vec::new();
    for pid in 0..400u32 {
        let mut c = v2_chunks(&dev(&format!("c{}", pid % 50)), pid, &img, 150);
        for (i, ch) in c.iter_mut().enumerate() {
            if let Chunk::V2 { message_id, .. } = ch {
                *message_id = format!("m{pid}-{i}");
            }
        }
        all.extend(c);
    }
    let n = all.len();
    let started = Instant::now();
    let rt0 = a.round_trips;
    let mut latencies = Vec::new();
    let mut pictures = 0;
    for batch in all.chunks(64) {
        let out = a.store(batch, 1).unwrap();
        latencies.push(out.latency.as_micros());
        for k in out.ready {
            pictures += usize::from(complete(&mut a, &k, 1).is_some());
        }
    }
    let elapsed = started.elapsed();
    let per_msg = (a.round_trips - rt0) as f64 / n as f64;
    latencies.sort_unstable();
    println!(
        "{n} chunks, {pictures} pictures in {elapsed:?} ({:.0} chunks/s): {per_msg:.3} round \
         trips per chunk; store call of 64 chunks p50 {} us, p99 {} us",
        n as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    assert_eq!(pictures, 400);
    assert!(per_msg < 1.0, "{per_msg}");
}

#[test]
fn an_instance_whose_heartbeat_runs_out_is_a_loss_once() {
    let server = RedisServer::start();
    let mut a = store(&server, "a");
    let mut b = store(&server, "b");
    assert_eq!(a.heartbeat(1_000, Duration::from_millis(200)).unwrap(), 0);
    assert_eq!(b.heartbeat(1_000, Duration::from_secs(10)).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(300)); // `a` dies
    assert_eq!(b.heartbeat(5_000, Duration::from_secs(10)).unwrap(), 1);
    assert_eq!(
        b.heartbeat(6_000, Duration::from_secs(10)).unwrap(),
        0,
        "once"
    );
    let mut c = Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let loss: String = redis::cmd("GET").arg("{t}:loss").query(&mut c).unwrap();
    assert_eq!(loss, "5000");
}

/// A Redis Sentinel (`redis-server --sentinel`) watching `master` as "m", quorum 1, quick to
/// fail over.
fn sentinel(master_port: u16) -> (Child, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor m 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds m 500\nsentinel failover-timeout m 3000\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new(receiver_testkit::redis::redis_server_binary())
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sentinel did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port, dir)
}

#[test]
fn through_sentinel_a_failover_loses_no_acknowledged_chunk() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    // The replica has synced before the test goes on.
    let mut r = Client::open(replica.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO").arg("replication").query(&mut r).unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{info}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut sentinel_child, sentinel_port, _sdir) = sentinel(master.port);
    let mut o = ClusterOptions::new(&master.url(), "t", "a");
    o.sentinel = Some((
        vec![format!("redis://127.0.0.1:{sentinel_port}/")],
        "m".into(),
    ));
    o.timeout = Duration::from_millis(500);
    let mut a = ClusterStore::new(o).unwrap();
    assert!(
        a.describe().starts_with("master m of sentinels"),
        "{}",
        a.describe()
    );
    let img = jpeg(50);
    let chunks = v2_chunks(&dev("cam"), 1, &img, 150);
    let (first, rest) = chunks.split_at(chunks.len() / 2);
    // Acknowledged by the replica too (WAIT): it survives the master's death.
    assert!(a.store(first, 1).unwrap().ready.is_empty());
    master.kill();
    let started = Instant::now();
    let out = loop {
        match a.store(rest, 2) {
            Ok(out) => break out,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no failover: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(out.ready.len(), 1);
    assert_eq!(complete(&mut a, &out.ready[0], 3), Some(img));
    let _ = sentinel_child.kill();
    let _ = sentinel_child.wait();
}
