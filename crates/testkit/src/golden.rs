//! The golden test vectors in `tests/vectors/`: what the Rust encoder derives from the checked-in
//! images. `cargo run --example gen_vectors` writes them; a test checks the files still match, and
//! the firmware's C host tests compare their own encoder's output with the same files.

use receiver_protocol::wire::{self, Format};

/// Product key used by every vector.
pub const PRODUCT_KEY: &str = "a1GoldenPK0";
/// Device name used by every vector.
pub const DEVICE_NAME: &str = "cam-golden-01";

/// One encoded picture: which image, how, and where its payloads live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSpec {
    /// `v1` or `v2`.
    pub format: Format,
    /// Image file name under `images/`.
    pub image: &'static str,
    /// Picture id.
    pub pid: u32,
    /// Hex characters per message (v1) or piece bytes (v2).
    pub chunk: usize,
}

impl VectorSpec {
    /// Path of the payload file, relative to `tests/vectors/`.
    pub fn file(&self) -> String {
        let stem = self.image.trim_end_matches(".jpg");
        format!(
            "{}/{stem}-p{}-c{}.txt",
            self.format.as_str(),
            self.pid,
            self.chunk
        )
    }
}

/// The images the vectors are made from: name, width, height, frame, quality.
pub const IMAGES: &[(&str, u32, u32, u32, u8)] = &[
    ("tiny.jpg", 16, 16, 1, 50),
    ("odd.jpg", 40, 30, 7, 75),
    ("qvga.jpg", 320, 240, 42, 80),
];

/// Every encoded vector.
pub fn specs() -> Vec<VectorSpec> {
    use Format::*;
    let v = |format, image, pid, chunk| VectorSpec {
        format,
        image,
        pid,
        chunk,
    };
    vec![
        v(V2, "tiny.jpg", 7, 48),
        v(V2, "tiny.jpg", 7, 7200),
        v(V2, "odd.jpg", 4_294_967_295, 60),
        v(V2, "qvga.jpg", 123_456, 7200),
        v(V2, "qvga.jpg", 123_456, 3000),
        v(V1, "tiny.jpg", 7, 800),
        v(V1, "odd.jpg", 8, 64),
        v(V1, "qvga.jpg", 9, 800),
    ]
}

/// A malformed or tricky arrival sequence and what the receiver must conclude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedCase {
    /// Case name (file stem).
    pub name: &'static str,
    /// `complete` or `quarantine:<reason>`.
    pub expected: &'static str,
    /// How many quarantine records the case gives once everything has settled (v2: one per
    /// picture; v1: the picture and the discarded rest of a bad one); `None` where not pinned.
    pub records: Option<usize>,
    /// `img` values in arrival order, all from [`DEVICE_NAME`].
    pub values: Vec<String>,
}

/// Builds the malformed cases from the tiny image (`images` maps name to bytes).
pub fn malformed(tiny: &[u8]) -> Result<Vec<MalformedCase>, wire::EncodeError> {
    let v2 = wire::encode_v2(tiny, 9, 48)?;
    let n = v2.len();
    let hex = wire::encode_v1(tiny, 64)?;
    let reheader = |v: &str, f: &dyn Fn(&mut Vec<String>)| {
        let mut parts: Vec<String> = v.splitn(7, ';').map(str::to_string).collect();
        f(&mut parts);
        parts.join(";")
    };
    let mut cases = Vec::new();
    // All chunks, reversed, with duplicates: must complete.
    let mut shuffled: Vec<String> = v2.iter().rev().cloned().collect();
    shuffled.insert(1, v2[0].clone());
    shuffled.push(v2[n - 1].clone());
    cases.push(MalformedCase {
        name: "v2-reversed-duplicated",
        expected: "complete",
        records: Some(0),
        values: shuffled,
    });
    // Second chunk claims another size.
    let mut mismatch = v2.clone();
    mismatch[1] = reheader(&v2[1], &|p| p[4] = (tiny.len() + 3).to_string());
    cases.push(MalformedCase {
        name: "v2-header-mismatch",
        expected: "quarantine:header_mismatch",
        records: Some(1),
        values: mismatch,
    });
    // Every chunk carries the same wrong CRC.
    let wrong_crc: Vec<String> = v2
        .iter()
        .map(|v| reheader(v, &|p| p[5] = "DEADBEEF".to_string()))
        .collect();
    cases.push(MalformedCase {
        name: "v2-crc-mismatch",
        expected: "quarantine:crc_mismatch",
        records: Some(1),
        values: wrong_crc,
    });
    // Every chunk claims one byte more than there is.
    let wrong_len: Vec<String> = v2
        .iter()
        .map(|v| reheader(v, &|p| p[4] = (tiny.len() + 1).to_string()))
        .collect();
    cases.push(MalformedCase {
        name: "v2-length-mismatch",
        expected: "quarantine:length_mismatch",
        records: Some(1),
        values: wrong_len,
    });
    // One chunk's Base64 is damaged.
    let mut bad64 = v2.clone();
    bad64[0] = reheader(&v2[0], &|p| p[6].replace_range(0..4, "!!!!"));
    cases.push(MalformedCase {
        name: "v2-bad-base64",
        expected: "quarantine:bad_base64",
        records: Some(1),
        values: bad64,
    });
    // seq >= count. A header that does not parse is never attributed to a picture: it is one
    // record, and the rest of the picture, which lacks seq 0, expires as another.
    let mut bad_seq = v2.clone();
    bad_seq[0] = reheader(&v2[0], &|p| p[2] = n.to_string());
    cases.push(MalformedCase {
        name: "v2-seq-out-of-range",
        expected: "quarantine:bad_header",
        records: Some(2),
        values: bad_seq,
    });
    // The same seq twice with different data.
    let mut conflict = v2.clone();
    conflict.insert(
        1,
        reheader(&v2[0], &|p| p[6] = "AAAA".repeat(p[6].len() / 4)),
    );
    cases.push(MalformedCase {
        name: "v2-chunk-conflict",
        expected: "quarantine:chunk_conflict",
        records: Some(1),
        values: conflict,
    });
    // A non-last piece that is not a multiple of 3 bytes.
    let mut boundary = v2.clone();
    boundary[0] = reheader(&v2[0], &|p| p[6] = "AAAAAA==".to_string());
    cases.push(MalformedCase {
        name: "v2-bad-boundary",
        expected: "quarantine:bad_boundary",
        records: Some(1),
        values: boundary,
    });
    // One chunk never arrives.
    let mut missing = v2.clone();
    missing.remove(n / 2);
    cases.push(MalformedCase {
        name: "v2-missing-chunk",
        expected: "quarantine:expired",
        records: Some(1),
        values: missing,
    });
    // Size and CRC right, but no JPEG markers (the first byte is not FF).
    let mut unmarked = tiny.to_vec();
    if let Some(b) = unmarked.first_mut() {
        *b = 0;
    }
    cases.push(MalformedCase {
        name: "v2-not-jpeg-markers",
        expected: "quarantine:invalid_jpeg",
        records: Some(1),
        values: wire::encode_v2(&unmarked, 9, 48)?,
    });
    // Size, CRC and markers right, but the first segment's length is off by one.
    let mut misframed = tiny.to_vec();
    if let Some(b) = misframed.get_mut(5) {
        *b ^= 1;
    }
    cases.push(MalformedCase {
        name: "v2-not-jpeg-structure",
        expected: "quarantine:invalid_jpeg",
        records: Some(1),
        values: wire::encode_v2(&misframed, 9, 48)?,
    });
    // The first chunk's data is empty: bad_base64 (the header parsed), and the rest of the
    // picture comes after that record.
    let mut empty = v2.clone();
    empty[0] = reheader(&v2[0], &|p| p[6].clear());
    cases.push(MalformedCase {
        name: "v2-empty-data",
        expected: "quarantine:bad_base64",
        records: Some(1),
        values: empty,
    });
    // The second chunk's data is 3 characters: bad_base64, with the open picture.
    let mut short = v2.clone();
    short[1] = reheader(&v2[1], &|p| p[6] = "AAA".to_string());
    cases.push(MalformedCase {
        name: "v2-short-data",
        expected: "quarantine:bad_base64",
        records: Some(1),
        values: short,
    });
    // Every chunk claims 96 bytes: the third 48-byte piece overflows, chunks still missing.
    let overflow: Vec<String> = v2
        .iter()
        .map(|v| reheader(v, &|p| p[4] = "96".to_string()))
        .collect();
    cases.push(MalformedCase {
        name: "v2-length-overflow",
        expected: "quarantine:length_mismatch",
        records: Some(1),
        values: overflow,
    });
    // Every chunk claims the largest size the grammar allows: one too_large record.
    let huge: Vec<String> = v2
        .iter()
        .map(|v| reheader(v, &|p| p[4] = "999999999".to_string()))
        .collect();
    cases.push(MalformedCase {
        name: "v2-too-large",
        expected: "quarantine:too_large",
        records: Some(1),
        values: huge,
    });
    // Version edge cases: a leading zero or no digits is a broken header, not a version.
    cases.push(MalformedCase {
        name: "v02-leading-zero-version",
        expected: "quarantine:bad_header",
        records: Some(1),
        values: vec![format!("V02;{}", &v2[0][3..])],
    });
    cases.push(MalformedCase {
        name: "v-no-version",
        expected: "quarantine:bad_header",
        records: Some(1),
        values: vec![format!("V;{}", &v2[0][3..])],
    });
    cases.push(MalformedCase {
        name: "v99999999999-unknown-version",
        expected: "quarantine:unsupported_version",
        records: Some(1),
        values: vec![format!("V99999999999;{}", &v2[0][3..])],
    });
    cases.push(MalformedCase {
        name: "v3-unknown-version",
        expected: "quarantine:unsupported_version",
        records: Some(1),
        values: vec![format!("V3;{}", &v2[0][3..])],
    });
    // v1 cases.
    cases.push(MalformedCase {
        name: "v1-ok",
        expected: "complete",
        records: Some(0),
        values: hex.clone(),
    });
    let mut v1_bad = hex.clone();
    v1_bad[0].replace_range(4..6, "ZZ");
    cases.push(MalformedCase {
        name: "v1-bad-hex",
        expected: "quarantine:bad_hex",
        records: Some(2),
        values: v1_bad,
    });
    let mut v1_odd = hex.clone();
    v1_odd[0].pop();
    cases.push(MalformedCase {
        name: "v1-odd-length",
        expected: "quarantine:odd_hex_length",
        records: Some(2),
        values: v1_odd,
    });
    cases.push(MalformedCase {
        name: "v1-empty-end",
        expected: "quarantine:empty_end",
        records: Some(1),
        values: vec!["END".to_string()],
    });
    let mut v1_cut = hex.clone();
    v1_cut.remove(0);
    cases.push(MalformedCase {
        name: "v1-not-jpeg",
        expected: "quarantine:invalid_jpeg",
        records: Some(1),
        values: v1_cut,
    });
    Ok(cases)
}

/// Renders every vector file: `(path relative to tests/vectors, contents)`. `image` returns the
/// bytes of an image by name.
pub fn render(image: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    let mut index = String::from(
        "# Golden vectors: see docs/protocol.md section 4. Generated by `cargo run --example gen_vectors`.\n\
         # format\timage\tproduct_key\tdevice_name\tpid\tchunk\tfile\n",
    );
    for spec in specs() {
        let bytes = image(spec.image).ok_or_else(|| format!("missing image {}", spec.image))?;
        let payloads = wire::encode_payloads(spec.format, &bytes, spec.pid, spec.chunk)
            .map_err(|e| format!("{}: {e}", spec.file()))?;
        let mut body = payloads.join("\n");
        body.push('\n');
        index.push_str(&format!(
            "{}\t{}\t{PRODUCT_KEY}\t{DEVICE_NAME}\t{}\t{}\t{}\n",
            spec.format.as_str(),
            spec.image,
            spec.pid,
            spec.chunk,
            spec.file()
        ));
        files.push((spec.file(), body));
    }
    files.push(("index.tsv".to_string(), index));
    let tiny = image("tiny.jpg").ok_or("missing image tiny.jpg")?;
    let mut mal = String::from(
        "# Receiver cases: see docs/protocol.md section 4.\n# name\texpected\tfile\trecords\n",
    );
    for case in malformed(&tiny).map_err(|e| e.to_string())? {
        let file = format!("malformed/{}.txt", case.name);
        let records = case.records.map_or("-".to_string(), |n| n.to_string());
        mal.push_str(&format!(
            "{}\t{}\t{file}\t{records}\n",
            case.name, case.expected
        ));
        let mut body = case.values.join("\n");
        body.push('\n');
        files.push((file, body));
    }
    files.push(("malformed.tsv".to_string(), mal));
    Ok(files)
}
