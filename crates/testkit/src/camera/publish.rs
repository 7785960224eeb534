//! The I/O side of the simulator: the MQTT link (rumqttc) and the loop that drives an
//! [`Uplink`](super::uplink::Uplink) with it.
//!
//! rumqttc's `EventLoop` runs in its own task and only ever connects when the driver hands it a
//! permit with freshly signed credentials, so the uplink's backoff and connect limit are the only
//! reconnect policy (rumqttc alone would reconnect in a tight loop). Sessions are clean: after a
//! reconnect rumqttc forgets what was in flight and the uplink resends it itself, with the same
//! payload.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions,
    Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sign::MqttCredentials;
use super::uplink::{Action, Picture, PictureReport, Qos, Uplink};
use super::CameraError;

/// What the link reports to the driver, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// CONNACK accepted.
    Up,
    /// The oldest publish handed over was written with this packet id (0 for QoS 0).
    Written(u16),
    /// The oldest publish handed over waits because this packet id is still unacknowledged.
    Collision(u16),
    /// PUBACK.
    Acked(u16),
    /// The attempt failed or the connection dropped. `fatal` when retrying cannot help (the
    /// broker refused the credentials).
    Down { reason: String, fatal: bool },
}

/// A connection the driver can steer. Implemented by [`MqttLink`] and by a fake in tests.
pub(crate) trait Link {
    /// Opens a connection with these credentials (only after a `Down`, or at the start).
    fn connect(&mut self, creds: MqttCredentials) -> Result<(), CameraError>;
    /// Hands a publish to the client.
    fn publish(&mut self, payload: &str) -> Result<(), CameraError>;
    /// Drops the connection; a `Down` follows.
    fn reset(&mut self);
    /// The next report; `None` when the link is gone.
    async fn next_event(&mut self) -> Option<LinkEvent>;
    /// Disconnects politely (bounded in time) and stops.
    async fn close(&mut self);
}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct LinkSettings {
    pub host: String,
    pub port: u16,
    /// `Some` for TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub keepalive: Duration,
    pub topic: String,
    pub qos: Qos,
    pub window: usize,
    pub max_publish_bytes: usize,
}

enum Permit {
    Connect(MqttCredentials),
    Stop,
}

/// The rumqttc-backed link.
pub(crate) struct MqttLink {
    client: AsyncClient,
    topic: String,
    qos: QoS,
    permits: mpsc::UnboundedSender<Permit>,
    resets: mpsc::UnboundedSender<()>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    task: Option<JoinHandle<()>>,
}

impl MqttLink {
    /// Spawns the event loop task; it waits for the first [`Link::connect`].
    pub(crate) fn start(settings: LinkSettings) -> Self {
        let mut options = MqttOptions::new("unsigned", settings.host.clone(), settings.port);
        options
            .set_keep_alive(settings.keepalive)
            .set_clean_session(true)
            .set_max_packet_size(64 * 1024, settings.max_publish_bytes)
            .set_inflight(100);
        if let Some(cfg) = settings.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(cfg)));
        }
        let (client, mut eventloop) = AsyncClient::new(options, settings.window + 8);
        let mut net = NetworkOptions::new();
        net.set_connection_timeout(10);
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let (permits, permits_rx) = mpsc::unbounded_channel();
        let (resets, resets_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive_eventloop(eventloop, permits_rx, resets_rx, events_tx));
        MqttLink {
            client,
            topic: settings.topic,
            qos: match settings.qos {
                Qos::AtMostOnce => QoS::AtMostOnce,
                Qos::AtLeastOnce => QoS::AtLeastOnce,
            },
            permits,
            resets,
            events,
            task: Some(task),
        }
    }
}

impl Link for MqttLink {
    fn connect(&mut self, creds: MqttCredentials) -> Result<(), CameraError> {
        self.permits
            .send(Permit::Connect(creds))
            .map_err(|_| CameraError::Link("the MQTT event loop stopped".into()))
    }

    fn publish(&mut self, payload: &str) -> Result<(), CameraError> {
        self.client
            .try_publish(self.topic.as_str(), self.qos, false, payload.as_bytes())
            .map_err(|e| CameraError::Link(format!("cannot hand a publish to rumqttc: {e}")))
    }

    fn reset(&mut self) {
        let _ = self.resets.send(());
    }

    async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    async fn close(&mut self) {
        // Connected: DISCONNECT goes out after what is queued, then the task ends. Waiting for a
        // permit: the task ends on `Stop`.
        let _ = self.client.try_disconnect();
        let _ = self.permits.send(Permit::Stop);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn fatal_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::BadClientId
                | ConnectReturnCode::RefusedProtocolVersion
        )
    )
}

/// Owns rumqttc's event loop: connects only on a permit, reports events in order, drops the
/// connection on a reset.
async fn drive_eventloop(
    mut eventloop: EventLoop,
    mut permits: mpsc::UnboundedReceiver<Permit>,
    mut resets: mpsc::UnboundedReceiver<()>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    loop {
        let creds = match permits.recv().await {
            Some(Permit::Connect(c)) => c,
            Some(Permit::Stop) | None => return,
        };
        while resets.try_recv().is_ok() {}
        // Whatever was queued for the previous connection is resent by the uplink: drop it here
        // so it is not sent twice.
        eventloop.clean();
        eventloop.pending.clear();
        eventloop
            .mqtt_options
            .set_client_id(creds.client_id)
            .set_credentials(creds.username, creds.password.expose());
        loop {
            tokio::select! {
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = events.send(LinkEvent::Up);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let _ = events.send(LinkEvent::Acked(ack.pkid));
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let _ = events.send(LinkEvent::Written(pkid));
                    }
                    Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                        let _ = events.send(LinkEvent::Collision(pkid));
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        let fatal = fatal_refusal(&e);
                        let _ = events.send(LinkEvent::Down { reason: e.to_string(), fatal });
                        break;
                    }
                },
                Some(()) = resets.recv() => {
                    eventloop.clean();
                    eventloop.pending.clear();
                    let _ = events.send(LinkEvent::Down {
                        reason: "reset: a publish was not acknowledged in time".into(),
                        fatal: false,
                    });
                    break;
                }
            }
        }
    }
}

/// How a drive ended.
pub(crate) struct DriveOutcome {
    pub pictures: Vec<PictureReport>,
    pub interrupted: bool,
}

/// The monotonic clock the uplink sees (tokio's, so paused-time tests are exact).
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Runs `uplink` over `link` until every picture `next_picture` yields is acknowledged, the
/// broker refuses the credentials, or `shutdown` fires.
pub(crate) async fn drive<L: Link>(
    link: &mut L,
    uplink: &mut Uplink,
    next_picture: &mut dyn FnMut() -> Result<Option<Picture>, CameraError>,
    sign: &dyn Fn() -> Result<MqttCredentials, CameraError>,
    on_picture: &mut dyn FnMut(&PictureReport) -> Result<(), CameraError>,
    shutdown: &CancellationToken,
) -> Result<DriveOutcome, CameraError> {
    let mut pictures = Vec::new();
    let mut interrupted = false;
    let result = loop {
        while uplink.wants_picture() {
            match next_picture() {
                Ok(Some(p)) => uplink.push_picture(p),
                Ok(None) => uplink.finish_input(),
                Err(e) => {
                    link.close().await;
                    return Err(e);
                }
            }
        }
        let t = now();
        let mut step: Result<(), CameraError> = Ok(());
        while let Some(action) = uplink.poll(t) {
            step = match action {
                Action::Connect => {
                    tracing::info!(attempt = uplink.stats().connects, "connecting");
                    sign().and_then(|c| link.connect(c))
                }
                Action::Publish(p) => {
                    tracing::debug!(pid = p.pid, seq = p.seq, resend = p.resend, "publish");
                    link.publish(&p.payload)
                }
                Action::Reset => {
                    tracing::warn!("no PUBACK in time: resetting the connection");
                    link.reset();
                    Ok(())
                }
                Action::PictureDone(r) => {
                    let shown = on_picture(&r);
                    pictures.push(r);
                    shown
                }
            };
            if step.is_err() {
                break;
            }
        }
        if let Err(e) = step {
            break Err(e);
        }
        if uplink.is_done() {
            break Ok(());
        }
        let wake = uplink
            .next_wake(t)
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                interrupted = true;
                break Ok(());
            }
            event = link.next_event() => {
                let t = now();
                match event {
                    None => break Err(CameraError::Link("the MQTT event loop stopped".into())),
                    Some(LinkEvent::Up) => {
                        tracing::info!("connected");
                        uplink.on_connected(t);
                    }
                    Some(LinkEvent::Written(pkid)) => uplink.on_written(pkid, t),
                    Some(LinkEvent::Collision(pkid)) => uplink.on_pkid_collision(pkid, t),
                    Some(LinkEvent::Acked(pkid)) => uplink.on_acked(pkid, t),
                    Some(LinkEvent::Down { reason, fatal: true }) => {
                        break Err(CameraError::Refused(reason));
                    }
                    Some(LinkEvent::Down { reason, fatal: false }) => {
                        uplink.on_disconnected(t);
                        let retry_in = uplink
                            .next_wake(t)
                            .map(|w| w.saturating_duration_since(t))
                            .unwrap_or_default();
                        tracing::warn!(%reason, retry_in_ms = retry_in.as_millis() as u64, "MQTT connection lost");
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    };
    link.close().await;
    result.map(|()| DriveOutcome {
        pictures,
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    //! The driver against a scripted fake link, in paused tokio time: exact timings.
    use super::*;
    use crate::camera::uplink::UplinkConfig;
    use std::collections::VecDeque;

    /// Acks every publish `latency` after it is handed over; can drop the connection once after
    /// `drop_after` publishes (losing the acks in flight).
    struct FakeLink {
        due: VecDeque<(Instant, LinkEvent)>,
        next_pkid: u16,
        latency: Duration,
        drop_after: Option<usize>,
        published: Vec<String>,
        connects: usize,
        up: bool,
    }

    impl FakeLink {
        fn new(latency: Duration, drop_after: Option<usize>) -> Self {
            FakeLink {
                due: VecDeque::new(),
                next_pkid: 0,
                latency,
                drop_after,
                published: Vec::new(),
                connects: 0,
                up: false,
            }
        }
        fn push(&mut self, at: Instant, e: LinkEvent) {
            let i = self
                .due
                .iter()
                .position(|(t, _)| *t > at)
                .unwrap_or(self.due.len());
            self.due.insert(i, (at, e));
        }
    }

    impl Link for FakeLink {
        fn connect(&mut self, _creds: MqttCredentials) -> Result<(), CameraError> {
            self.connects += 1;
            self.push(Instant::now(), LinkEvent::Up);
            self.up = true;
            Ok(())
        }
        fn publish(&mut self, payload: &str) -> Result<(), CameraError> {
            assert!(self.up, "publish while down");
            self.published.push(payload.to_string());
            self.next_pkid = self.next_pkid % 100 + 1;
            let now = Instant::now();
            self.push(now, LinkEvent::Written(self.next_pkid));
            if self.drop_after == Some(self.published.len()) {
                self.drop_after = None;
                self.due.clear();
                self.up = false;
                self.push(
                    now,
                    LinkEvent::Down {
                        reason: "scripted drop".into(),
                        fatal: false,
                    },
                );
            } else {
                self.push(now + self.latency, LinkEvent::Acked(self.next_pkid));
            }
            Ok(())
        }
        fn reset(&mut self) {
            self.due.clear();
            self.up = false;
            self.push(
                Instant::now(),
                LinkEvent::Down {
                    reason: "reset".into(),
                    fatal: false,
                },
            );
        }
        async fn next_event(&mut self) -> Option<LinkEvent> {
            match self.due.front() {
                Some((at, _)) => tokio::time::sleep_until(*at).await,
                None => std::future::pending::<()>().await,
            }
            self.due.pop_front().map(|(_, e)| e)
        }
        async fn close(&mut self) {}
    }

    fn pictures(n: u32, chunks: usize) -> VecDeque<Picture> {
        (0..n)
            .map(|i| Picture {
                name: format!("p{i}"),
                pid: 100 + i,
                jpeg_bytes: 10,
                payloads: (0..chunks).map(|s| Arc::from(format!("{i}:{s}"))).collect(),
            })
            .collect()
    }

    fn creds() -> Result<MqttCredentials, CameraError> {
        Ok(MqttCredentials {
            client_id: "c".into(),
            username: "u".into(),
            password: receiver_protocol::Secret::new("p"),
        })
    }

    async fn run(link: &mut FakeLink, n: u32, chunks: usize) -> (DriveOutcome, Duration) {
        let start = Instant::now();
        let mut uplink = Uplink::new(UplinkConfig::default(), now());
        let mut source = pictures(n, chunks);
        let mut next = || Ok(source.pop_front());
        let outcome = drive(
            link,
            &mut uplink,
            &mut next,
            &creds,
            &mut |_| Ok(()),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        (outcome, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn ten_pictures_of_five_chunks_at_rate_8() {
        let mut link = FakeLink::new(Duration::from_millis(40), None);
        let (outcome, took) = run(&mut link, 10, 5).await;
        assert_eq!(outcome.pictures.len(), 10);
        assert_eq!(link.published.len(), 50);
        // 50 publishes 125 ms apart, plus the last ack's latency.
        assert_eq!(took, Duration::from_millis(49 * 125 + 40));
        assert!(outcome.pictures.iter().all(|p| p.resends == 0));
        assert_eq!(
            outcome.pictures[0].elapsed,
            Duration::from_millis(4 * 125 + 40)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_acks_are_limited_by_the_window() {
        // 1 s ack latency, window 4: 4 publishes per second, not 8.
        let mut link = FakeLink::new(Duration::from_secs(1), None);
        let (outcome, took) = run(&mut link, 2, 8).await;
        assert_eq!(outcome.pictures.len(), 2);
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!(took < Duration::from_millis(4500), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_connection_resends_unacked_payloads_after_backoff() {
        let mut link = FakeLink::new(Duration::from_millis(300), Some(6));
        let (outcome, _took) = run(&mut link, 2, 5).await;
        assert_eq!(link.connects, 2);
        assert_eq!(outcome.pictures.len(), 2);
        // Every payload went out at least once; the resent ones are byte-identical copies.
        let mut distinct = link.published.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 10);
        assert!(link.published.len() > 10);
        let resends: usize = outcome.pictures.iter().map(|p| p.resends).sum();
        assert_eq!(resends, link.published.len() - 10);
    }
}
