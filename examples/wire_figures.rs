//! Prints the wire-format figures in README ("Wire formats compared"): messages per image, MQTT
//! payload bytes per image byte, and the upload time Aliyun's per-device limits imply, for v1 and
//! v2 at their default chunk sizes. Image sizes are typical OV2640 JPEGs (quality 10-12).
//!
//! `cargo run --example wire_figures`

use receiver_protocol::wire::{encode_payloads, Format};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("| frame | JPEG bytes | format | messages | payload bytes / image byte | at QoS1 10 msg/s | at QoS0 30 msg/s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, size) in [
        ("QVGA 320x240", 10_000usize),
        ("VGA 640x480", 30_000),
        ("SVGA 800x600", 45_000),
    ] {
        // Content does not change the sizes; a JPEG-like byte pattern keeps the encoder honest.
        let mut jpeg: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
        jpeg[..2].copy_from_slice(&[0xFF, 0xD8]);
        jpeg[size - 2..].copy_from_slice(&[0xFF, 0xD9]);
        for format in [Format::V1, Format::V2] {
            let payloads = encode_payloads(format, &jpeg, 123_456, format.default_chunk())?;
            let bytes: usize = payloads.iter().map(String::len).sum();
            let n = payloads.len();
            println!(
                "| {name} | {size} | {} ({} {}) | {n} | {:.2} | {:.1} s | {:.1} s |",
                format.as_str(),
                format.default_chunk(),
                if format == Format::V1 {
                    "hex chars"
                } else {
                    "bytes/chunk"
                },
                bytes as f64 / size as f64,
                n as f64 / 10.0,
                n as f64 / 30.0,
            );
        }
    }
    Ok(())
}
