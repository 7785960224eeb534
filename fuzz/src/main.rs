//! `receiver-fuzz TARGET`: one AFL++ persistent-mode harness per parser of untrusted bytes.
//!
//! | target | bytes from | entry point |
//! |---|---|---|
//! | `message` | the network: an AMQP delivery's body | `message::classify` (then `wire::parse_value` on an `img` value, as the engine does) |
//! | `wire` | the network: an `img` value | `wire::parse_value`, `wire::decode_base64`, `wire::decode_hex_into` |
//! | `jpeg` | the network: an assembled v1 picture | `jpeg::structure_ok`, and `jpeg::Walker` fed in two pieces, which must agree; `jpeg::entropy_check`, which must not pass what they reject |
//! | `spool` | disk: a spool segment file | `spool::decode_segment_bytes` (what recovery runs on each segment) |
//! | `config` | disk: `receiver.toml` | `config::Config::from_toml` |
//!
//! `receiver-fuzz seeds DIR` writes a seed corpus per target under `DIR/<target>/`, built from the
//! golden vectors in `tests/vectors/` (see `scripts/fuzz.sh`).
//!
//! A new parser gets a function below, an arm in `target()`, its seeds in `seeds()`, and its
//! name in `TARGETS` of `scripts/fuzz.sh`.

use receiver::message::{self, Classified, RawDelivery};
use receiver::{config, jpeg, spool, wire};
use std::path::{Path, PathBuf};

const TOPIC: &str = "/a1pk/cam-01/thing/event/property/post";

fn fuzz_message(data: &[u8]) {
    let raw = RawDelivery {
        topic: Some(TOPIC.to_owned()),
        message_id: Some("m".to_owned()),
        generate_time: Some(0),
        body: data.to_vec(),
    };
    if let Classified::Img(msg) = message::classify(&raw) {
        let _ = wire::parse_value(&msg.value);
    }
    // The topic parser too, on the first line.
    if let Some(line) = data.split(|b| *b == b'\n').next() {
        if let Ok(topic) = std::str::from_utf8(line) {
            let _ = message::parse_property_topic(topic);
        }
    }
}

fn fuzz_wire(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = wire::parse_value(text);
    let _ = wire::decode_base64(text);
    let mut out = Vec::new();
    let _ = wire::decode_hex_into(text, &mut out);
}

fn fuzz_jpeg(data: &[u8]) {
    let whole = jpeg::structure_ok(data);
    // The streaming walker, fed in two pieces, must reach the same verdict.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut walker = jpeg::Walker::new();
    let fed = walker
        .feed(&data[..split])
        .and_then(|()| walker.feed(&data[split..]))
        .and_then(|()| walker.finish());
    assert_eq!(
        whole.is_ok(),
        fed.is_ok(),
        "structure_ok and the walker disagree: {whole:?} vs {fed:?}"
    );
    // The exact check of the scan: whatever it passes as exact is also well-formed.
    if let Ok(jpeg::EntropyVerdict::Exact { .. }) = jpeg::entropy_check(data) {
        assert!(
            whole.is_ok(),
            "entropy_check passed what structure_ok rejects: {whole:?}"
        );
    }
}

fn fuzz_spool(data: &[u8]) {
    let _ = spool::decode_segment_bytes(data);
}

fn fuzz_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A path whose folder does not exist: relative file names in the input resolve to nothing.
    let path = Path::new("/nonexistent-receiver-fuzz/receiver.toml");
    let _ = config::Config::from_toml(text, path, &|_| None);
}

fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "message" => fuzz_message,
        "wire" => fuzz_wire,
        "jpeg" => fuzz_jpeg,
        "spool" => fuzz_spool,
        "config" => fuzz_config,
        _ => return None,
    })
}

/// Every line of every `.txt` file under `dir` (device payloads, one per line).
fn vector_lines(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn write(dir: &Path, target: &str, n: usize, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(format!("seed-{n:04}")), bytes)
}

/// Writes the seed corpora under `out/<target>/` from the golden vectors in `vectors`.
fn seeds(vectors: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // Device payloads: v1, v2, malformed. A few per file is enough; AFL trims and mutates.
    let mut payloads = Vec::new();
    for sub in ["v1", "v2", "malformed"] {
        let lines = vector_lines(&vectors.join(sub));
        payloads.extend(lines.into_iter().step_by(7).take(40));
    }
    let mut imgs = Vec::new();
    for (n, p) in payloads.iter().enumerate() {
        let Ok(body) = message::forward_property_post("a1pk", "cam-01", p.as_bytes(), 1) else {
            continue;
        };
        write(out, "message", n, &body)?;
        let raw = RawDelivery {
            topic: Some(TOPIC.to_owned()),
            message_id: Some(format!("m{n}")),
            generate_time: Some(0),
            body,
        };
        if let Classified::Img(msg) = message::classify(&raw) {
            // Values are long; AFL prefers small seeds.
            let short: String = msg.value.chars().take(400).collect();
            write(out, "wire", n, short.as_bytes())?;
            imgs.push(msg);
        }
    }
    for (n, name) in ["tiny.jpg", "odd.jpg"].iter().enumerate() {
        let jpeg = std::fs::read(vectors.join("images").join(name))?;
        write(out, "jpeg", n, &jpeg)?;
    }
    // A real spool segment holding chunks, a seen record and a finished picture.
    let tmp = tempfile::tempdir()?;
    let opts = spool::SpoolOptions {
        dir: tmp.path().join("spool"),
        segment_bytes: 1 << 20,
        max_bytes: 1 << 30,
    };
    let (mut sp, _) = spool::Spool::open(opts)?;
    for msg in imgs.iter().take(6) {
        sp.append(&spool::Record::Img {
            received_ms: 1,
            msg: msg.clone(),
        })?;
    }
    sp.append(&spool::Record::Seen {
        received_ms: 2,
        message_id: "m-seen".into(),
    })?;
    sp.append(&spool::Record::Done {
        device: message::DeviceId::new("a1pk", "cam-01"),
        pid: 7,
        size: 737,
        crc: 0x1470_A7ED,
        at_ms: 3,
    })?;
    sp.commit()?;
    drop(sp);
    let mut n = 0;
    for e in std::fs::read_dir(tmp.path().join("spool"))? {
        let p = e?.path();
        let bytes = std::fs::read(&p)?;
        if bytes.len() > 64 {
            write(out, "spool", n, &bytes)?;
            n += 1;
        }
    }
    write(out, "config", 0, config::EXAMPLE_TOML.as_bytes())?;
    write(
        out,
        "config",
        1,
        b"[aliyun]\nhost = \"h\"\naccess_key_id = \"k\"\naccess_key_secret = \"s\"\n\
          iot_instance_id = \"\"\nconsumer_group_id = \"g\"\n[output]\ndir = \"o\"\n[state]\n\
          dir = \"s\"\n[spool]\nmax_bytes = \"1 GiB\"\n[retention]\nmax_age = \"30d\"\n\
          [hook]\ncommand = [\"/bin/true\"]\nenv = [\"A\", \"B=c\"]\n",
    )?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seeds") => {
            let (Some(vectors), Some(out)) = (args.get(2), args.get(3)) else {
                eprintln!("usage: receiver-fuzz seeds VECTORS_DIR OUT_DIR");
                std::process::exit(2);
            };
            if let Err(e) = seeds(Path::new(vectors), Path::new(out)) {
                eprintln!("receiver-fuzz: cannot write seeds: {e}");
                std::process::exit(1);
            }
        }
        Some(name) => match target(name) {
            Some(f) => afl::fuzz!(|data: &[u8]| f(data)),
            None => {
                eprintln!("receiver-fuzz: unknown target {name:?}");
                std::process::exit(2);
            }
        },
        None => {
            eprintln!("usage: receiver-fuzz message|wire|jpeg|spool|config | seeds VECTORS OUT");
            std::process::exit(2);
        }
    }
}
