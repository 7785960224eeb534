//! Classifies one AMQP delivery from the server-side subscription (pure: no I/O, no clock).
//!
//! Aliyun forwards everything the consumer group subscribes to: property posts, status changes,
//! events, lifecycle, OTA... Only thing-model property posts that carry `items.img` matter; every
//! other delivery is settled and skipped with a reason, so each delivery gets exactly one outcome.

use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// Where a camera is: `(productKey, deviceName)`, taken from the forwarded topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    /// Product key.
    pub product_key: Arc<str>,
    /// Device name (may be hostile as a path; see `sink::device_dir`).
    pub device_name: Arc<str>,
}

impl DeviceId {
    /// Builds a device id.
    pub fn new(product_key: &str, device_name: &str) -> Self {
        DeviceId {
            product_key: product_key.into(),
            device_name: device_name.into(),
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.product_key, self.device_name)
    }
}

/// The parts of an AMQP message the receiver reads. Built by the `amqp` module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDelivery {
    /// `topic` application property.
    pub topic: Option<String>,
    /// `messageId` application property (string or number, rendered as a string).
    pub message_id: Option<String>,
    /// `generateTime` application property, ms.
    pub generate_time: Option<i64>,
    /// The Data body (or a binary/string AmqpValue body).
    pub body: Vec<u8>,
}

/// A property post that carries an `img` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImgMessage {
    /// The camera.
    pub device: DeviceId,
    /// Aliyun's `messageId` (empty when absent: then no message-level deduplication).
    pub message_id: String,
    /// `items.img.value`.
    pub value: String,
    /// `items.img.time`: the device's time, or the platform's receive time, ms.
    pub item_time: Option<i64>,
    /// `gmtCreate`, ms.
    pub gmt_create: Option<i64>,
    /// `requestId`: the camera's Alink `id`.
    pub request_id: Option<String>,
}

/// Why a delivery is settled without being used. Stable snake_case names for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// No `topic` application property.
    NoTopic,
    /// A topic other than a thing-model property post (status, events, lifecycle, OTA, ...).
    OtherTopic,
    /// Empty body.
    EmptyBody,
    /// Body is not a JSON object.
    NotJson,
    /// A property post without `items.img` (other properties only).
    NoImg,
    /// `img` present only in `checkFailedData`: the platform rejected the value (too long?).
    ImgCheckFailed,
    /// `items.img.value` is not a string.
    ImgNotText,
    /// The body's productKey/deviceName disagree with the topic.
    Untrusted,
}

impl SkipReason {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoTopic => "no_topic",
            SkipReason::OtherTopic => "other_topic",
            SkipReason::EmptyBody => "empty_body",
            SkipReason::NotJson => "not_json",
            SkipReason::NoImg => "no_img",
            SkipReason::ImgCheckFailed => "img_check_failed",
            SkipReason::ImgNotText => "img_not_text",
            SkipReason::Untrusted => "untrusted_device",
        }
    }

    /// Every reason, for metrics.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::NoTopic,
        SkipReason::OtherTopic,
        SkipReason::EmptyBody,
        SkipReason::NotJson,
        SkipReason::NoImg,
        SkipReason::ImgCheckFailed,
        SkipReason::ImgNotText,
        SkipReason::Untrusted,
    ];
}

/// The verdict on one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// An image chunk to assemble.
    Img(ImgMessage),
    /// Settle and skip. `device` is set when the topic named one.
    Skip {
        /// Why.
        reason: SkipReason,
        /// The device named by the topic, if any.
        device: Option<DeviceId>,
        /// A short human detail (e.g. the JSON error), never containing the body.
        detail: String,
    },
}

/// Splits `/${productKey}/${deviceName}/thing/event/property/post`.
pub fn parse_property_topic(topic: &str) -> Option<DeviceId> {
    let rest = topic.strip_prefix('/')?;
    let rest = rest.strip_suffix("/thing/event/property/post")?;
    let (pk, dn) = rest.split_once('/')?;
    if pk.is_empty() || dn.is_empty() || dn.contains('/') {
        return None;
    }
    Some(DeviceId::new(pk, dn))
}

/// Best-effort device from any forwarded topic `/${pk}/${dn}/...` (for skip logs).
fn topic_device(topic: &str) -> Option<DeviceId> {
    let mut it = topic.strip_prefix('/')?.splitn(3, '/');
    let (pk, dn) = (it.next()?, it.next()?);
    it.next()?;
    (!pk.is_empty() && !dn.is_empty()).then(|| DeviceId::new(pk, dn))
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "productKey", borrow, default)]
    product_key: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "deviceName", borrow, default)]
    device_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "requestId", default)]
    request_id: Option<serde_json::Value>,
    #[serde(rename = "gmtCreate", default)]
    gmt_create: Option<serde_json::Value>,
    #[serde(default)]
    items: Option<Items>,
    #[serde(rename = "checkFailedData", default)]
    check_failed: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Items {
    img: Option<Item>,
}

#[derive(Deserialize)]
struct Item {
    value: serde_json::Value,
    #[serde(default)]
    time: Option<serde_json::Value>,
}

fn as_i64(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Classifies one delivery.
pub fn classify(raw: &RawDelivery) -> Classified {
    let skip = |reason, device, detail: &str| Classified::Skip {
        reason,
        device,
        detail: detail.to_string(),
    };
    let Some(topic) = raw.topic.as_deref() else {
        return skip(SkipReason::NoTopic, None, "no topic application property");
    };
    let Some(device) = parse_property_topic(topic) else {
        return skip(SkipReason::OtherTopic, topic_device(topic), topic);
    };
    if raw.body.iter().all(u8::is_ascii_whitespace) {
        return skip(SkipReason::EmptyBody, Some(device), "empty body");
    }
    let body: Body<'_> = match serde_json::from_slice(&raw.body) {
        Ok(b) => b,
        Err(e) => {
            let detail = format!("body is not a property-post JSON object: {e}");
            return skip(SkipReason::NotJson, Some(device), &detail);
        }
    };
    let disagree = |field: &Option<std::borrow::Cow<'_, str>>, want: &str| {
        field.as_deref().is_some_and(|got| got != want)
    };
    if disagree(&body.product_key, &device.product_key)
        || disagree(&body.device_name, &device.device_name)
    {
        let detail = format!(
            "body names {}/{} but the topic names {device}",
            body.product_key.as_deref().unwrap_or("?"),
            body.device_name.as_deref().unwrap_or("?")
        );
        return skip(SkipReason::Untrusted, Some(device), &detail);
    }
    let Some(img) = body.items.and_then(|i| i.img) else {
        if body.check_failed.is_some_and(|m| m.contains_key("img")) {
            return skip(
                SkipReason::ImgCheckFailed,
                Some(device),
                "img failed the thing-model check (is the text property long enough?)",
            );
        }
        return skip(SkipReason::NoImg, Some(device), "property post without img");
    };
    let serde_json::Value::String(value) = img.value else {
        return skip(
            SkipReason::ImgNotText,
            Some(device),
            "items.img.value is not a string",
        );
    };
    let request_id = body.request_id.and_then(|v| match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    Classified::Img(ImgMessage {
        device,
        message_id: raw.message_id.clone().unwrap_or_default(),
        value,
        item_time: img.time.as_ref().and_then(as_i64),
        gmt_create: body.gmt_create.as_ref().and_then(as_i64),
        request_id,
    })
}

/// Builds the body Aliyun forwards for a device's property post (used by the fake endpoint, the
/// simulator and tests). `alink` is the device's MQTT payload; `now_ms` stamps `gmtCreate` and, when
/// the device sent no `time`, `items.img.time`.
pub fn forward_property_post(
    product_key: &str,
    device_name: &str,
    alink: &[u8],
    now_ms: i64,
) -> Result<Vec<u8>, serde_json::Error> {
    use serde_json::{json, Map, Value};
    let post: Value = serde_json::from_slice(alink)?;
    let mut items = Map::new();
    if let Some(params) = post.get("params").and_then(Value::as_object) {
        for (k, v) in params {
            let item = match v {
                Value::Object(o) if o.contains_key("value") => json!({
                    "value": o["value"],
                    "time": o.get("time").cloned().unwrap_or(json!(now_ms)),
                }),
                other => json!({ "value": other, "time": now_ms }),
            };
            items.insert(k.clone(), item);
        }
    }
    let request_id = match post.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "null".to_string(),
    };
    let body = json!({
        "deviceType": "CustomCategory",
        "iotId": format!("{}{}", product_key, device_name).chars().take(26).collect::<String>(),
        "requestId": request_id,
        "checkFailedData": {},
        "productKey": product_key,
        "gmtCreate": now_ms,
        "deviceName": device_name,
        "items": items,
    });
    serde_json::to_vec(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(topic: &str, body: &str) -> RawDelivery {
        RawDelivery {
            topic: Some(topic.to_string()),
            message_id: Some("m1".into()),
            generate_time: Some(1),
            body: body.as_bytes().to_vec(),
        }
    }

    const T: &str = "/a1PK/cam-01/thing/event/property/post";

    fn reason(c: Classified) -> &'static str {
        match c {
            Classified::Skip { reason, .. } => reason.as_str(),
            Classified::Img(_) => "img",
        }
    }

    #[test]
    fn reads_a_forwarded_post() {
        let body = r#"{"deviceType":"CustomCategory","iotId":"x","requestId":"7001","checkFailedData":{},
            "productKey":"a1PK","gmtCreate":1700000000123,"deviceName":"cam-01",
            "items":{"img":{"value":"FFD8","time":1700000000100}}}"#;
        let Classified::Img(m) = classify(&raw(T, body)) else {
            panic!()
        };
        assert_eq!(m.device, DeviceId::new("a1PK", "cam-01"));
        assert_eq!(m.value, "FFD8");
        assert_eq!(m.item_time, Some(1_700_000_000_100));
        assert_eq!(m.gmt_create, Some(1_700_000_000_123));
        assert_eq!(m.request_id.as_deref(), Some("7001"));
        assert_eq!(m.message_id, "m1");
    }

    #[test]
    fn skips_everything_else() {
        let mut no_topic = raw(T, "{}");
        no_topic.topic = None;
        assert_eq!(reason(classify(&no_topic)), "no_topic");
        assert_eq!(
            reason(classify(&raw("/as/mqtt/status/a1PK/cam-01", "{}"))),
            "other_topic"
        );
        assert_eq!(
            reason(classify(&raw("/a1PK/cam-01/thing/lifecycle", "{}"))),
            "other_topic"
        );
        assert_eq!(reason(classify(&raw(T, ""))), "empty_body");
        assert_eq!(reason(classify(&raw(T, "not json"))), "not_json");
        assert_eq!(reason(classify(&raw(T, "[1,2]"))), "not_json");
        assert_eq!(
            reason(classify(&raw(T, r#"{"items":{"temp":{"value":1}}}"#))),
            "no_img"
        );
        assert_eq!(
            reason(classify(&raw(
                T,
                r#"{"items":{},"checkFailedData":{"img":{"value":"AB","code":6310}}}"#
            ))),
            "img_check_failed"
        );
        assert_eq!(
            reason(classify(&raw(T, r#"{"items":{"img":{"value":5}}}"#))),
            "img_not_text"
        );
        assert_eq!(
            reason(classify(&raw(
                T,
                r#"{"productKey":"a1PK","deviceName":"other","items":{"img":{"value":"FFD8"}}}"#
            ))),
            "untrusted_device"
        );
    }

    #[test]
    fn topic_parsing() {
        assert!(parse_property_topic("/a/b/thing/event/property/post").is_some());
        assert!(parse_property_topic("/a/b/c/thing/event/property/post").is_none());
        assert!(parse_property_topic("//b/thing/event/property/post").is_none());
        assert!(parse_property_topic("/a/b/thing/event/alarm/post").is_none());
    }

    #[test]
    fn forward_roundtrip() {
        let alink = crate::wire::alink_payload(7001, "V2;7;1;2;5;00000000;AAAA");
        let body = forward_property_post("a1PK", "cam-01", alink.as_bytes(), 42).unwrap();
        let Classified::Img(m) = classify(&raw(T, std::str::from_utf8(&body).unwrap())) else {
            panic!()
        };
        assert_eq!(m.value, "V2;7;1;2;5;00000000;AAAA");
        assert_eq!(m.item_time, Some(42));
        assert_eq!(m.request_id.as_deref(), Some("7001"));
    }
}
