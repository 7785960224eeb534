//! `receiver tail`: prints every message of the subscription, decoded, one line per message.
//!
//! It signs in with the same configuration as the daemon (use a **separate consumer group**: a
//! second client in the daemon's group steals messages from it) and accepts everything it
//! receives, so it is a debugging tool, not a second consumer of the images.

use crate::amqp::client::{self, ConnState, ConnectLimiter};
use crate::amqp::{Inbound, Outcome};
use crate::config::Config;
use crate::message::{classify, Classified};
use crate::wire::{self, ImgValue};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// `receiver tail` options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TailArgs {
    /// Consumer group to use instead of the configuration's (recommended: a group of its own).
    #[arg(long)]
    pub consumer_group: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
}

/// One line describing a delivery: topic, device, kind, chunk details, message id.
pub fn describe(delivery: &crate::message::RawDelivery) -> String {
    let topic = delivery.topic.as_deref().unwrap_or("-");
    let id = delivery.message_id.as_deref().unwrap_or("-");
    match classify(delivery) {
        Classified::Skip {
            reason,
            device,
            detail,
        } => format!(
            "{topic}  device={}  kind=skip:{}  bytes={}  message_id={id}  {detail}",
            device.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            reason.as_str(),
            delivery.body.len()
        ),
        Classified::Img(msg) => {
            let kind = match wire::parse_value(&msg.value) {
                Ok(ImgValue::V1Hex(h)) => format!("v1 chunk  bytes={}", h.len() / 2),
                Ok(ImgValue::V1End) => "v1 END".to_string(),
                Ok(ImgValue::V2 { header, data }) => format!(
                    "v2 chunk  pid={} seq={}/{} size={} crc={:08X} data_chars={}",
                    header.pid,
                    header.seq,
                    header.count,
                    header.size,
                    header.crc,
                    data.len()
                ),
                Err(e) => format!("bad chunk ({})  chars={}", e.reason(), msg.value.len()),
            };
            format!(
                "{topic}  device={}  kind={kind}  time={}  request_id={}  message_id={id}",
                msg.device,
                msg.item_time
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
                msg.request_id.as_deref().unwrap_or("-"),
            )
        }
    }
}

/// Why `tail` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The connection failed for good.
    #[error("connection failed: {0}")]
    Connection(#[from] client::ClientError),
    /// Printing failed (e.g. closed pipe).
    #[error("cannot print: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `tail` until `shutdown` or `--count` messages.
pub async fn run(
    config: Config,
    args: TailArgs,
    out: &mut (dyn Write + Send),
    shutdown: CancellationToken,
) -> Result<u64, TailError> {
    let mut aliyun = config.aliyun.clone();
    if let Some(group) = args.consumer_group {
        aliyun.consumer_group_id = group;
    }
    aliyun.connections = 1;
    let (tx, mut rx) = mpsc::channel::<Inbound>(aliyun.credit.max(1) as usize);
    let (_paused_tx, paused_rx) = watch::channel(false);
    let stop = shutdown.child_token();
    let conn = tokio::spawn(client::run_connection(
        0,
        Arc::new(aliyun),
        tx,
        paused_rx,
        ConnState::new(),
        ConnectLimiter::aliyun(),
        stop.clone(),
    ));
    let mut n = 0u64;
    let result = loop {
        let inbound = tokio::select! {
            _ = stop.cancelled() => break Ok(n),
            i = rx.recv() => i,
        };
        let Some(inbound) = inbound else { break Ok(n) };
        let line = describe(&inbound.delivery);
        inbound.settler.settle(Outcome::Accept);
        n += 1;
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            break Err(TailError::Output(e));
        }
        if args.count.is_some_and(|c| n >= c) {
            break Ok(n);
        }
    };
    stop.cancel();
    match conn.await {
        Ok(Err(e)) if result.is_ok() => return Err(TailError::Connection(e)),
        _ => {}
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RawDelivery;

    #[test]
    fn describes_each_kind() {
        let topic = "/a1PK/cam-01/thing/event/property/post";
        let body = |v: &str| {
            crate::message::forward_property_post(
                "a1PK",
                "cam-01",
                wire::alink_payload(7001, v).as_bytes(),
                5,
            )
            .unwrap()
        };
        let d = |topic: &str, body: Vec<u8>| RawDelivery {
            topic: Some(topic.into()),
            message_id: Some("m1".into()),
            generate_time: None,
            body,
        };
        let v2 = describe(&d(topic, body("V2;7;1;2;5;0000000A;AAAA")));
        assert!(
            v2.contains("kind=v2 chunk  pid=7 seq=1/2 size=5 crc=0000000A"),
            "{v2}"
        );
        assert!(v2.contains("device=a1PK/cam-01") && v2.contains("message_id=m1"));
        assert!(describe(&d(topic, body("FFD8"))).contains("kind=v1 chunk  bytes=2"));
        assert!(describe(&d(topic, body("END"))).contains("kind=v1 END"));
        assert!(describe(&d(topic, body("XYZ"))).contains("bad chunk (bad_hex)"));
        let status = describe(&d("/as/mqtt/status/a1PK/cam-01", b"{}".to_vec()));
        assert!(status.contains("kind=skip:other_topic"), "{status}");
    }
}
