//! The checked-in golden vectors are exactly what the Rust encoder produces from the images.

use std::path::Path;

#[test]
fn vector_files_match_the_encoder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let images = root.join("images");
    let files =
        receiver_testkit::golden::render(&|name| std::fs::read(images.join(name)).ok()).unwrap();
    assert!(files.len() > 10);
    for (rel, body) in files {
        let on_disk = std::fs::read_to_string(root.join(&rel)).unwrap_or_else(|e| {
            panic!("tests/vectors/{rel}: {e} (run `cargo run --example gen_vectors`)")
        });
        assert!(on_disk == body, "tests/vectors/{rel} differs from the encoder's output: run `cargo run --example gen_vectors` and review the diff");
    }
}

#[test]
fn vectors_decode_back_to_their_images() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let index = std::fs::read_to_string(root.join("index.tsv")).unwrap();
    let mut n = 0;
    for line in index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let image = std::fs::read(root.join("images").join(cols[1])).unwrap();
        let payloads = std::fs::read_to_string(root.join(cols[6])).unwrap();
        let mut out = Vec::new();
        for p in payloads.lines() {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            let value = v["params"]["img"].as_str().unwrap();
            match receiver::wire::parse_value(value).unwrap() {
                receiver::wire::ImgValue::V1Hex(h) => {
                    receiver::wire::decode_hex_into(h, &mut out).unwrap()
                }
                receiver::wire::ImgValue::V1End => {}
                receiver::wire::ImgValue::V2 { data, .. } => {
                    out.extend(receiver::wire::decode_base64(data).unwrap())
                }
            }
        }
        assert_eq!(out, image, "{line}");
        n += 1;
    }
    assert_eq!(n, receiver_testkit::golden::specs().len());
}
