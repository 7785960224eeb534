//! The `img` property's wire formats (see `docs/protocol.md`): parsing for the receiver and the
//! camera-side encoder used by the simulator, the demo and the golden vectors.
//!
//! Pure: no I/O, no clock. v1 is bare hex then `END`; v2 is `V2;pid;seq;count;size;crc;base64`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Longest `img` value a thing-model text property may hold.
pub const MAX_VALUE_CHARS: usize = 10_240;
/// Most chunks a v2 picture may have (keeps the Alink id within 0..=4294967295).
pub const MAX_V2_CHUNKS: u32 = 1000;
/// Default v2 piece size in bytes (9 600 Base64 characters).
pub const DEFAULT_V2_PIECE: usize = 7_200;
/// Hex characters per message in the original firmware.
pub const V1_HEX_CHARS: usize = 800;
/// Header budget of the v2 encoders (this one and the firmware's `UC_V2_MAX_HEADER`): a safe
/// upper bound, not the exact figure. The grammar's longest header, `V2;` through the `;` before
/// the data, is 43 characters (42 for one that parses: `seq` < `count` <= 1000 has 3 digits).
pub const MAX_V2_HEADER: usize = 48;

/// What is wrong with one `img` value. Every variant maps to a quarantine reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A v1 value with a character outside `[0-9A-Fa-f]`.
    #[error("v1 chunk has a non-hex character at offset {offset}")]
    BadHex {
        /// Byte offset of the character.
        offset: usize,
    },
    /// A v1 value with an odd number of hex characters.
    #[error("v1 chunk has an odd number of hex characters ({len})")]
    OddHexLength {
        /// Number of hex characters.
        len: usize,
    },
    /// A framed value whose header does not follow the grammar.
    #[error("v2 header is malformed: {0}")]
    BadHeader(&'static str),
    /// The Base64 data of a v2 chunk does not decode.
    #[error("v2 chunk data is not valid Base64")]
    BadBase64,
    /// A framed value of a version this receiver does not know.
    #[error("framed chunk of unsupported version {0}")]
    UnsupportedVersion(String),
    /// An empty value.
    #[error("empty img value")]
    Empty,
}

impl WireError {
    /// The quarantine reason (snake_case, stable: used in sidecars, logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::BadHex { .. } => "bad_hex",
            WireError::OddHexLength { .. } => "odd_hex_length",
            WireError::BadHeader(_) => "bad_header",
            WireError::BadBase64 => "bad_base64",
            WireError::UnsupportedVersion(_) => "unsupported_version",
            WireError::Empty => "empty_value",
        }
    }
}

/// The header of a v2 chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct V2Header {
    /// Picture id, unique per device.
    pub pid: u32,
    /// 0-based chunk index.
    pub seq: u32,
    /// Number of chunks of the picture.
    pub count: u32,
    /// Byte length of the whole JPEG.
    pub size: u32,
    /// CRC-32 of the whole JPEG.
    pub crc: u32,
}

/// One parsed `img` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImgValue<'a> {
    /// A v1 hex data chunk (validated: even length, hex digits only).
    V1Hex(&'a str),
    /// The v1 end marker.
    V1End,
    /// A v2 chunk: header and the still-encoded Base64 data.
    V2 {
        /// The parsed header.
        header: V2Header,
        /// The Base64 data, not yet decoded.
        data: &'a str,
    },
}

/// Parses one `img` value, detecting the format by its first character.
///
/// A framed value is `V`, a version (one or more digits, no leading zero) and `;`; anything else
/// starting with `V` is [`WireError::BadHeader`], a well-formed version other than 2 is
/// [`WireError::UnsupportedVersion`]. For v2 only the header is checked: the data (everything
/// after the sixth `;`) is returned as is and checked by [`decode_base64`].
pub fn parse_value(value: &str) -> Result<ImgValue<'_>, WireError> {
    let bytes = value.as_bytes();
    match bytes.first() {
        None => Err(WireError::Empty),
        Some(b'V') => parse_framed(value),
        Some(_) if value == "END" => Ok(ImgValue::V1End),
        Some(_) => {
            // Branch-free check first (vectorises); the offset only when it fails.
            if !bytes.iter().fold(true, |ok, b| ok & b.is_ascii_hexdigit()) {
                let offset = bytes
                    .iter()
                    .position(|b| !b.is_ascii_hexdigit())
                    .unwrap_or(0);
                return Err(WireError::BadHex { offset });
            }
            if bytes.len() % 2 != 0 {
                return Err(WireError::OddHexLength { len: bytes.len() });
            }
            Ok(ImgValue::V1Hex(value))
        }
    }
}

fn parse_framed(value: &str) -> Result<ImgValue<'_>, WireError> {
    let rest = &value[1..];
    let (version, rest) = rest
        .split_once(';')
        .ok_or(WireError::BadHeader("no ';' after the version"))?;
    let canonical = !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && !(version.len() > 1 && version.starts_with('0'));
    if !canonical {
        return Err(WireError::BadHeader(
            "version is not a decimal without leading zeros",
        ));
    }
    if version != "2" {
        let shown: String = version.chars().take(12).collect();
        return Err(WireError::UnsupportedVersion(shown));
    }
    let mut fields = rest.splitn(6, ';');
    let mut next = |what: &'static str| fields.next().ok_or(WireError::BadHeader(what));
    let pid = decimal(next("missing pid")?, 10, "pid")?;
    let seq = decimal(next("missing seq")?, 4, "seq")?;
    let count = decimal(next("missing count")?, 4, "count")?;
    let size = decimal(next("missing size")?, 9, "size")?;
    let crc = next("missing crc")?;
    let data = next("missing data")?;
    let pid = u32::try_from(pid).map_err(|_| WireError::BadHeader("pid exceeds 4294967295"))?;
    let (seq, count, size) = (seq as u32, count as u32, size as u32);
    if count == 0 || count > MAX_V2_CHUNKS {
        return Err(WireError::BadHeader("count is not within 1..=1000"));
    }
    if seq >= count {
        return Err(WireError::BadHeader("seq is not below count"));
    }
    if size == 0 {
        return Err(WireError::BadHeader("size is zero"));
    }
    if crc.len() != 8
        || !crc
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return Err(WireError::BadHeader("crc is not 8 upper-case hex digits"));
    }
    let crc = u32::from_str_radix(crc, 16).map_err(|_| WireError::BadHeader("crc"))?;
    Ok(ImgValue::V2 {
        header: V2Header {
            pid,
            seq,
            count,
            size,
            crc,
        },
        data,
    })
}

fn decimal(field: &str, max_digits: usize, what: &'static str) -> Result<u64, WireError> {
    let ok = !field.is_empty()
        && field.len() <= max_digits
        && field.bytes().all(|b| b.is_ascii_digit())
        && !(field.len() > 1 && field.starts_with('0'));
    if !ok {
        return Err(WireError::BadHeader(match what {
            "pid" => "pid is not a canonical decimal",
            "seq" => "seq is not a canonical decimal",
            "count" => "count is not a canonical decimal",
            _ => "size is not a canonical decimal",
        }));
    }
    field
        .parse()
        .map_err(|_| WireError::BadHeader("number out of range"))
}

/// Decodes v1 hex (already validated by [`parse_value`]) and appends it to `out`.
pub fn decode_hex_into(hex: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let digits = hex.as_bytes();
    if digits.len() % 2 != 0 {
        return Err(WireError::BadHex { offset: 0 });
    }
    let start = out.len();
    out.resize(start + digits.len() / 2, 0);
    // Table lookup, no branch per digit: a bad digit maps to 0xFF and shows in `bad`.
    let mut bad = 0u8;
    for (o, pair) in out[start..].iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0F);
    }
    if bad & 0xF0 != 0 {
        out.truncate(start);
        return Err(WireError::BadHex { offset: 0 });
    }
    Ok(())
}

/// Value of each ASCII hex digit (either case); 0xFF for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes v2 Base64 data: padded, canonical RFC 4648 section 4, at least 4 characters (an empty
/// or 1-3 character data field is [`WireError::BadBase64`], like any other undecodable data).
pub fn decode_base64(data: &str) -> Result<Vec<u8>, WireError> {
    if data.len() < 4 {
        return Err(WireError::BadBase64);
    }
    B64.decode(data).map_err(|_| WireError::BadBase64)
}

/// CRC-32 (IEEE / zlib) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// True when `bytes` starts with the JPEG SOI marker and ends with the EOI marker.
pub fn has_jpeg_markers(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes[..2] == [0xFF, 0xD8] && bytes[bytes.len() - 2..] == [0xFF, 0xD9]
}

/// Checks that `bytes` is a structurally well-formed JPEG: SOI first, marker segments that add
/// up, entropy-coded data with only legal `FF xx` pairs, EOI exactly at the end (see
/// [`crate::jpeg`]). Cheap (one pass, no decode); it cannot notice a lost run of entropy-coded
/// bytes that leaves the syntax intact.
pub fn jpeg_structure_ok(bytes: &[u8]) -> Result<(), crate::jpeg::JpegError> {
    crate::jpeg::structure_ok(bytes)
}

/// The topic a camera publishes property posts to.
pub fn device_topic(product_key: &str, device_name: &str) -> String {
    format!("/sys/{product_key}/{device_name}/thing/event/property/post")
}

/// The topic Aliyun forwards a property post under.
pub fn forwarded_topic(product_key: &str, device_name: &str) -> String {
    format!("/{product_key}/{device_name}/thing/event/property/post")
}

/// The Alink `id` of v2 chunk `seq` of picture `pid` (also used for v1 with `seq mod 1000`).
pub fn alink_id(pid: u32, seq: u32) -> u32 {
    (pid % 4_294_967) * 1000 + (seq % 1000)
}

/// The exact MQTT payload a camera publishes for one `img` value.
pub fn alink_payload(id: u32, value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 96);
    s.push_str("{\"id\":\"");
    s.push_str(&id.to_string());
    s.push_str("\",\"version\":\"1.0\",\"params\":{\"img\":\"");
    s.push_str(value);
    s.push_str("\"},\"method\":\"thing.event.property.post\"}");
    s
}

/// Why an encoder refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Empty image.
    #[error("the image is empty")]
    EmptyImage,
    /// The piece size is zero, not a multiple of 3, or over [`MAX_V2_PIECE`].
    #[error("piece size {0} must be a positive multiple of 3 of at most {max} bytes", max = MAX_V2_PIECE)]
    BadPiece(usize),
    /// The v1 chunk size is zero or odd.
    #[error("v1 chunk size {0} must be a positive even number of hex characters")]
    BadHexChunk(usize),
    /// The picture needs more than 1000 chunks.
    #[error("the image needs {0} chunks; at most 1000 are allowed: raise the piece size")]
    TooManyChunks(usize),
    /// The picture is larger than the format can describe.
    #[error("the image is too large ({0} bytes)")]
    TooLarge(usize),
}

/// The largest v2 piece (bytes) whose value stays within 10 240 characters with the header budget
/// [`MAX_V2_HEADER`] (7 644; the exact longest header would allow 7 647).
pub const MAX_V2_PIECE: usize = (MAX_VALUE_CHARS - MAX_V2_HEADER) / 4 * 3;

/// Encodes a whole picture as v2 `img` values, in sending order.
pub fn encode_v2(jpeg: &[u8], pid: u32, piece: usize) -> Result<Vec<String>, EncodeError> {
    if jpeg.is_empty() {
        return Err(EncodeError::EmptyImage);
    }
    if piece == 0 || piece % 3 != 0 || piece > MAX_V2_PIECE {
        return Err(EncodeError::BadPiece(piece));
    }
    if jpeg.len() > 999_999_999 {
        return Err(EncodeError::TooLarge(jpeg.len()));
    }
    let count = jpeg.len().div_ceil(piece);
    if count > MAX_V2_CHUNKS as usize {
        return Err(EncodeError::TooManyChunks(count));
    }
    let crc = crc32(jpeg);
    let size = jpeg.len();
    Ok(jpeg
        .chunks(piece)
        .enumerate()
        .map(|(seq, bytes)| {
            let mut v = format!("V2;{pid};{seq};{count};{size};{crc:08X};");
            B64.encode_string(bytes, &mut v);
            v
        })
        .collect())
}

/// Encodes a whole picture as v1 `img` values (upper-case hex, then `END`), in sending order.
pub fn encode_v1(jpeg: &[u8], hex_chars: usize) -> Result<Vec<String>, EncodeError> {
    if jpeg.is_empty() {
        return Err(EncodeError::EmptyImage);
    }
    if hex_chars == 0 || hex_chars % 2 != 0 || hex_chars > MAX_VALUE_CHARS {
        return Err(EncodeError::BadHexChunk(hex_chars));
    }
    let mut out: Vec<String> = jpeg.chunks(hex_chars / 2).map(hex::encode_upper).collect();
    out.push("END".to_string());
    Ok(out)
}

/// The full MQTT payloads of a picture, as the firmware publishes them.
pub fn encode_payloads(
    format: Format,
    jpeg: &[u8],
    pid: u32,
    chunk: usize,
) -> Result<Vec<String>, EncodeError> {
    let values = match format {
        Format::V1 => encode_v1(jpeg, chunk)?,
        Format::V2 => encode_v2(jpeg, pid, chunk)?,
    };
    Ok(values
        .iter()
        .enumerate()
        .map(|(seq, v)| alink_payload(alink_id(pid, seq as u32), v))
        .collect())
}

/// A wire format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Bare hex then `END`.
    V1,
    /// Framed Base64 chunks.
    V2,
}

impl Format {
    /// `"v1"` or `"v2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::V1 => "v1",
            Format::V2 => "v2",
        }
    }

    /// The default chunk parameter: hex characters (v1) or piece bytes (v2).
    pub fn default_chunk(self) -> usize {
        match self {
            Format::V1 => V1_HEX_CHARS,
            Format::V2 => DEFAULT_V2_PIECE,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" | "1" => Ok(Format::V1),
            "v2" | "2" => Ok(Format::V2),
            _ => Err(format!("unknown wire format {s:?}: expected v1 or v2")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(n: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend((0..n.saturating_sub(4)).map(|i| (i * 7 % 251) as u8));
        v.extend([0xFF, 0xD9]);
        v
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn v2_roundtrip_and_header_bound() {
        let img = jpeg(20_000);
        for piece in [21, 300, 7_200, MAX_V2_PIECE] {
            let values = encode_v2(&img, u32::MAX, piece).unwrap();
            let mut out = Vec::new();
            for (i, v) in values.iter().enumerate() {
                assert!(
                    v.len() <= MAX_VALUE_CHARS,
                    "piece {piece}: {} chars",
                    v.len()
                );
                match parse_value(v).unwrap() {
                    ImgValue::V2 { header, data } => {
                        assert_eq!(header.seq as usize, i);
                        assert_eq!(header.count as usize, values.len());
                        assert_eq!(header.size as usize, img.len());
                        assert_eq!(header.pid, u32::MAX);
                        out.extend(decode_base64(data).unwrap());
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(out, img);
        }
    }

    #[test]
    fn hex_decoding_matches_the_hex_crate() {
        let mut all = Vec::new();
        for b in 0..=255u8 {
            all.push(b);
        }
        for text in [hex::encode(&all), hex::encode_upper(&all), String::new()] {
            let mut out = vec![9u8];
            decode_hex_into(&text, &mut out).unwrap();
            assert_eq!(out[1..], hex::decode(&text).unwrap()[..]);
        }
        for bad in ["0", "0G", "g0", "12 4", "1\u{e9}"] {
            let mut out = vec![1u8, 2];
            assert!(decode_hex_into(bad, &mut out).is_err(), "{bad}");
            assert_eq!(out, [1, 2]);
        }
    }

    #[test]
    fn v1_roundtrip() {
        let img = jpeg(1001);
        let values = encode_v1(&img, 800).unwrap();
        assert_eq!(values.last().unwrap(), "END");
        let mut out = Vec::new();
        for v in &values[..values.len() - 1] {
            match parse_value(v).unwrap() {
                ImgValue::V1Hex(h) => decode_hex_into(h, &mut out).unwrap(),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(out, img);
        assert_eq!(parse_value("END").unwrap(), ImgValue::V1End);
    }

    #[test]
    fn detection_and_errors() {
        assert_eq!(parse_value("ab01").unwrap(), ImgValue::V1Hex("ab01"));
        assert_eq!(parse_value("").unwrap_err().reason(), "empty_value");
        assert_eq!(parse_value("abc").unwrap_err().reason(), "odd_hex_length");
        assert_eq!(parse_value("ENDX").unwrap_err().reason(), "bad_hex");
        assert_eq!(parse_value("end").unwrap_err().reason(), "bad_hex");
        assert_eq!(
            parse_value("V3;whatever").unwrap_err().reason(),
            "unsupported_version"
        );
        let bad = [
            "V2;1;0;1;5;0000000A",
            "V2;01;0;1;5;0000000A;AAAA",
            "V2;1;1;1;5;0000000A;AAAA",
            "V2;1;0;0;5;0000000A;AAAA",
            "V2;1;0;1001;5;0000000A;AAAA",
            "V2;1;0;1;0;0000000A;AAAA",
            "V2;1;0;1;5;0000000a;AAAA",
            "V2;1;0;1;5;000000A;AAAA",
            "V2;4294967296;0;1;5;0000000A;AAAA",
            "V;1",
            "Vx;1",
        ];
        for b in bad {
            assert_eq!(parse_value(b).unwrap_err().reason(), "bad_header", "{b}");
        }
    }

    /// `V`, 1+ digits without a leading zero, `;` is a version (2 is ours, any other is
    /// `unsupported_version`); anything else starting with `V` is `bad_header`.
    #[test]
    fn version_edge_cases() {
        for (value, want) in [
            ("V", "bad_header"),
            ("V;", "bad_header"),
            ("V;AAAA", "bad_header"),
            ("V2", "bad_header"),
            ("V3", "bad_header"),
            ("V02;1;0;1;5;0000000A;AAAA", "bad_header"),
            ("V00;", "bad_header"),
            ("V2x;1;0;1;5;0000000A;AAAA", "bad_header"),
            ("V+2;1;0;1;5;0000000A;AAAA", "bad_header"),
            ("V 2;1;0;1;5;0000000A;AAAA", "bad_header"),
            ("V0;", "unsupported_version"),
            ("V3;", "unsupported_version"),
            ("V3;1;0;1;5;0000000A;AAAA", "unsupported_version"),
            ("V20;1;0;1;5;0000000A;AAAA", "unsupported_version"),
            ("V99999999999;", "unsupported_version"),
        ] {
            assert_eq!(parse_value(value).unwrap_err().reason(), want, "{value:?}");
        }
        assert_eq!(
            parse_value("V99999999999999999;x").unwrap_err(),
            WireError::UnsupportedVersion("999999999999".into()),
            "the version is quoted, cut to 12 characters"
        );
        assert!(matches!(
            parse_value("V2;1;0;1;5;0000000A;AAAA"),
            Ok(ImgValue::V2 { .. })
        ));
    }

    /// The data field is everything after the sixth `;`. The header parses whatever it holds;
    /// empty, 1-3 characters or otherwise undecodable data is `bad_base64` from the decoder.
    #[test]
    fn data_is_checked_by_the_decoder_not_the_header_parser() {
        for data in ["", "A", "AA", "AAA", "AAAAA", "AA=A", "!!!!", "AAA;"] {
            let value = format!("V2;1;0;1;5;0000000A;{data}");
            match parse_value(&value) {
                Ok(ImgValue::V2 { header, data: d }) => {
                    assert_eq!((header.pid, header.size, header.crc), (1, 5, 10));
                    assert_eq!(d, data);
                }
                other => panic!("{value:?}: {other:?}"),
            }
            assert_eq!(decode_base64(data), Err(WireError::BadBase64), "{data:?}");
        }
        assert_eq!(decode_base64("AA=="), Ok(vec![0]));
        assert_eq!(decode_base64("AAAA"), Ok(vec![0, 0, 0]));
        // Without the sixth `;` there is no data field: the header is incomplete.
        assert_eq!(
            parse_value("V2;1;0;1;5;0000000A").unwrap_err().reason(),
            "bad_header"
        );
    }

    /// The longest header the grammar allows is 43 characters; one that parses, 42; the encoders
    /// budget `MAX_V2_HEADER` (48) and the longest value they make fits 10 240 characters.
    #[test]
    fn header_lengths() {
        let grammar_max = "V2;4294967295;9999;1000;999999999;FFFFFFFF;";
        assert_eq!(grammar_max.len(), 43);
        assert_eq!(
            parse_value(&format!("{grammar_max}AAAA"))
                .unwrap_err()
                .reason(),
            "bad_header",
            "a 4-digit seq is never below count"
        );
        let valid_max = "V2;4294967295;999;1000;999999999;FFFFFFFF;";
        assert_eq!(valid_max.len(), 42);
        assert!(parse_value(&format!("{valid_max}AAAA")).is_ok());
        assert!(MAX_V2_HEADER >= grammar_max.len());
        assert_eq!(MAX_V2_PIECE, 7_644);
        assert_eq!(valid_max.len() + MAX_V2_PIECE / 3 * 4, 10_234);
        // The encoder's longest header for a real picture (1000 chunks of the largest piece).
        let img = jpeg(1000 * MAX_V2_PIECE);
        let values = encode_v2(&img, u32::MAX, MAX_V2_PIECE).unwrap();
        assert_eq!(values.len(), 1000);
        let last = &values[999];
        let header_len = last.rfind(';').unwrap() + 1;
        assert_eq!(
            &last[..header_len],
            format!("V2;4294967295;999;1000;7644000;{:08X};", crc32(&img))
        );
        assert!(header_len <= MAX_V2_HEADER);
        assert!(values.iter().all(|v| v.len() <= MAX_VALUE_CHARS));
        assert_eq!(
            encode_v2(&img, 1, MAX_V2_PIECE + 3)
                .unwrap_err()
                .to_string(),
            "piece size 7647 must be a positive multiple of 3 of at most 7644 bytes"
        );
    }

    #[test]
    fn encoder_limits() {
        assert_eq!(encode_v2(&[], 1, 3), Err(EncodeError::EmptyImage));
        assert_eq!(encode_v2(&[1], 1, 4), Err(EncodeError::BadPiece(4)));
        assert_eq!(
            encode_v2(&[0; 3001], 1, 3),
            Err(EncodeError::TooManyChunks(1001))
        );
        assert_eq!(encode_v1(&[1], 3), Err(EncodeError::BadHexChunk(3)));
    }

    #[test]
    fn alink_ids() {
        assert_eq!(alink_id(17, 2), 17_002);
        assert_eq!(alink_id(u32::MAX, 999), (u32::MAX % 4_294_967) * 1000 + 999);
        assert!(u64::from(alink_id(4_294_966, 999)) <= u64::from(u32::MAX));
        assert_eq!(
            alink_payload(5, "END"),
            r#"{"id":"5","version":"1.0","params":{"img":"END"},"method":"thing.event.property.post"}"#
        );
    }
}
