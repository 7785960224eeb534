//! The AMQP client's events. They count into one connection's
//! [`ConnState`], which the daemon sums into the metrics
//! (`receiver_reconnects_total`, `receiver_auth_failures_total`, `receiver_links_attached`).

use crate::amqp::client::ConnState;
use crate::amqp::Outcome;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The log target of these events (the client's module, where they were logged before).
const TARGET: &str = "receiver::amqp::client";

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A connection attempt starts (the first, or a reconnect). Counts `attempts` and, after the
/// first, `reconnects`; logs `connecting` (debug).
#[derive(Debug, Clone, Copy)]
pub struct ConnectAttempt {
    /// 1 for the first attempt of this connection.
    pub attempt: u64,
}

impl ConnectAttempt {
    /// Counts and logs the event.
    pub fn emit(self, state: &ConnState) {
        bump(&state.attempts, 1);
        if self.attempt > 1 {
            bump(&state.reconnects, 1);
        }
        tracing::debug!(target: TARGET, attempt = self.attempt, "connecting");
    }
}

/// The receiver link is attached: the connection is up. Sets `link_attached` and
/// `connected_since_ms`, counts `connects`; logs `receiver link attached` (info).
#[derive(Debug)]
pub struct LinkAttached<'a> {
    /// The AMQP client id of the connection.
    pub client_id: &'a str,
    /// The idle time-out advertised in the Open frame, ms.
    pub advertised_idle_ms: u64,
    /// The link credit.
    pub credit: u32,
    /// Now, ms since the epoch.
    pub now_ms: u64,
}

impl LinkAttached<'_> {
    /// Records and logs the event.
    pub fn emit(self, state: &ConnState) {
        state.link_attached.store(true, Ordering::Relaxed);
        state
            .connected_since_ms
            .store(self.now_ms, Ordering::Relaxed);
        bump(&state.connects, 1);
        tracing::info!(
            target: TARGET,
            client_id = %self.client_id,
            advertised_idle_ms = self.advertised_idle_ms,
            credit = self.credit,
            "receiver link attached"
        );
    }
}

/// A connection attempt ended (shutdown, failed setup, or a lost link). Clears `link_attached`
/// and `connected_since_ms`; a link that was up and is lost also sets `lost_at_ms` (release
/// ordering: the engine reads it before any delivery of the next attempt). No log line (see
/// [`ConnectionLost`], [`LoginRefused`]).
#[derive(Debug, Clone, Copy)]
pub struct LinkDetached {
    /// When an attached link was lost, ms since the epoch (`None`: it never attached, or this
    /// is a shutdown).
    pub lost_at_ms: Option<u64>,
}

impl LinkDetached {
    /// Records the event.
    pub fn emit(self, state: &ConnState) {
        state.link_attached.store(false, Ordering::Relaxed);
        state.connected_since_ms.store(0, Ordering::Relaxed);
        if let Some(at) = self.lost_at_ms {
            state.lost_at_ms.store(at, Ordering::Release);
        }
    }
}

/// The endpoint refused the sign-in. Counts `auth_failures`; the first of a series logs `login
/// refused; retrying slowly` (error), the next ones `login refused again` (debug).
pub struct LoginRefused<'a> {
    /// The attempt.
    pub attempt: u64,
    /// Wait before the next attempt.
    pub delay: Duration,
    /// The refusal.
    pub error: &'a dyn Display,
    /// First refusal since the link was last up.
    pub first: bool,
}

impl LoginRefused<'_> {
    /// Counts and logs the event.
    pub fn emit(self, state: &ConnState) {
        bump(&state.auth_failures, 1);
        let delay_ms = self.delay.as_millis() as u64;
        if self.first {
            tracing::error!(
                target: TARGET,
                attempt = self.attempt,
                delay_ms,
                error = %self.error,
                "login refused; retrying slowly"
            );
        } else {
            tracing::debug!(
                target: TARGET,
                attempt = self.attempt,
                delay_ms,
                "login refused again"
            );
        }
    }
}

/// A connection failed or was lost; the client reconnects after `delay`. Logs `connection
/// ended; reconnecting` (warn); the next attempt counts as a reconnect ([`ConnectAttempt`]).
pub struct ConnectionLost<'a> {
    /// The attempt that ended.
    pub attempt: u64,
    /// Wait before the next attempt.
    pub delay: Duration,
    /// How long the link was up (`None`: setup failed).
    pub up_for: Option<Duration>,
    /// Why.
    pub error: &'a dyn Display,
}

impl ConnectionLost<'_> {
    /// Logs the event.
    pub fn emit(self) {
        tracing::warn!(
            target: TARGET,
            attempt = self.attempt,
            delay_ms = self.delay.as_millis() as u64,
            up_ms = self.up_for.map(|d| d.as_millis() as u64),
            error = %self.error,
            "connection ended; reconnecting"
        );
    }
}

/// The connection closed cleanly at shutdown. Logs `connection closed` (info).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionClosed;

impl ConnectionClosed {
    /// Logs the event.
    pub fn emit(self) {
        tracing::info!(target: TARGET, "connection closed");
    }
}

/// A transfer arrived on the link. Counts `deliveries` and sets `last_delivery_ms`; no log line.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryReceived {
    /// Now, ms since the epoch.
    pub now_ms: u64,
}

impl DeliveryReceived {
    /// Records the event.
    pub fn emit(self, state: &ConnState) {
        bump(&state.deliveries, 1);
        state.last_delivery_ms.store(self.now_ms, Ordering::Relaxed);
    }
}

/// A message the client cannot hand to the engine (undecodable AMQP, or an unusable body); it
/// is rejected. Logs `undecodable message; rejecting` or `unusable message body; rejecting`
/// (warn); the rejection itself counts as [`Settled`].
pub enum MessageUnusable<'a> {
    /// The AMQP message did not decode.
    Undecodable(&'a dyn Display),
    /// The body is not something the engine reads.
    Body(&'static str),
}

impl MessageUnusable<'_> {
    /// Logs the event.
    pub fn emit(self) {
        match self {
            MessageUnusable::Undecodable(e) => {
                tracing::warn!(target: TARGET, error = %e, "undecodable message; rejecting")
            }
            MessageUnusable::Body(why) => {
                tracing::warn!(target: TARGET, reason = why, "unusable message body; rejecting")
            }
        }
    }
}

/// Deliveries settled on the link with one outcome. Counts `accepted`, `released` or `rejected`;
/// no log line.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// The outcome.
    pub outcome: Outcome,
    /// How many deliveries.
    pub count: usize,
}

impl Settled {
    /// Counts the event.
    pub fn emit(self, state: &ConnState) {
        let counter = match self.outcome {
            Outcome::Accept => &state.accepted,
            Outcome::Release => &state.released,
            Outcome::Reject => &state.rejected,
        };
        bump(counter, self.count as u64);
    }
}

/// A transfer that arrived while the link was closing; it is released at once. Counts
/// `deliveries` and `released`; no log line (see [`ReleasedOnShutdown`]).
#[derive(Debug, Clone, Copy)]
pub struct ArrivedDuringShutdown;

impl ArrivedDuringShutdown {
    /// Counts the event.
    pub fn emit(self, state: &ConnState) {
        bump(&state.deliveries, 1);
        bump(&state.released, 1);
    }
}

/// Deliveries released at shutdown: those that arrived while closing, or those the engine did not
/// settle in time. Logs `released deliveries that arrived during shutdown` or `releasing
/// unsettled deliveries on shutdown` (info); each release counts on its own.
#[derive(Debug, Clone, Copy)]
pub struct ReleasedOnShutdown {
    /// How many.
    pub count: u64,
    /// `true`: unsettled deliveries; `false`: arrivals during the drain.
    pub unsettled: bool,
}

impl ReleasedOnShutdown {
    /// Logs the event.
    pub fn emit(self) {
        if self.unsettled {
            tracing::info!(
                target: TARGET,
                count = self.count,
                "releasing unsettled deliveries on shutdown"
            );
        } else {
            tracing::info!(
                target: TARGET,
                count = self.count,
                "released deliveries that arrived during shutdown"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn attempts_count_reconnects_after_the_first() {
        let s = ConnState::default();
        let lines = capture::logs(|| {
            ConnectAttempt { attempt: 1 }.emit(&s);
            ConnectAttempt { attempt: 2 }.emit(&s);
        });
        assert_eq!(s.attempts.load(Relaxed), 2);
        assert_eq!(s.reconnects.load(Relaxed), 1);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["message"], "connecting");
        assert_eq!(lines[1]["attempt"], 2);
        assert_eq!(lines[1]["target"], "receiver::amqp::client");
    }

    #[test]
    fn attach_and_detach_set_the_link_state() {
        let s = ConnState::default();
        let line = capture::one(|| {
            LinkAttached {
                client_id: "c-0",
                advertised_idle_ms: 60_000,
                credit: 64,
                now_ms: 5,
            }
            .emit(&s)
        });
        assert!(s.link_attached.load(Relaxed));
        assert_eq!(s.connected_since_ms.load(Relaxed), 5);
        assert_eq!(s.connects.load(Relaxed), 1);
        assert_eq!(line["message"], "receiver link attached");
        assert_eq!(line["client_id"], "c-0");
        assert_eq!(line["credit"], 64);
        LinkDetached { lost_at_ms: None }.emit(&s);
        assert!(!s.link_attached.load(Relaxed));
        assert_eq!(s.lost_at_ms.load(Relaxed), 0);
        LinkDetached {
            lost_at_ms: Some(9),
        }
        .emit(&s);
        assert_eq!(s.lost_at_ms.load(Relaxed), 9);
        assert_eq!(s.connected_since_ms.load(Relaxed), 0);
    }

    #[test]
    fn refused_logins_count_and_log_once_loudly() {
        let s = ConnState::default();
        let lines = capture::logs(|| {
            for first in [true, false] {
                LoginRefused {
                    attempt: 1,
                    delay: Duration::from_secs(1),
                    error: &"refused",
                    first,
                }
                .emit(&s);
            }
        });
        assert_eq!(s.auth_failures.load(Relaxed), 2);
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["message"], "login refused; retrying slowly");
        assert_eq!(lines[0]["delay_ms"], 1000);
        assert_eq!(lines[1]["level"], "DEBUG");
        assert_eq!(lines[1]["message"], "login refused again");
    }

    #[test]
    fn deliveries_and_settlements_count() {
        let s = ConnState::default();
        DeliveryReceived { now_ms: 42 }.emit(&s);
        Settled {
            outcome: Outcome::Accept,
            count: 3,
        }
        .emit(&s);
        Settled {
            outcome: Outcome::Reject,
            count: 1,
        }
        .emit(&s);
        ArrivedDuringShutdown.emit(&s);
        assert_eq!(s.deliveries.load(Relaxed), 2);
        assert_eq!(s.last_delivery_ms.load(Relaxed), 42);
        assert_eq!(s.accepted.load(Relaxed), 3);
        assert_eq!(s.rejected.load(Relaxed), 1);
        assert_eq!(s.released.load(Relaxed), 1);
    }

    #[test]
    fn log_only_events_log() {
        let lines = capture::logs(|| {
            ConnectionLost {
                attempt: 3,
                delay: Duration::from_millis(250),
                up_for: None,
                error: &"link lost: gone",
            }
            .emit();
            ConnectionClosed.emit();
            MessageUnusable::Body("no body").emit();
            ReleasedOnShutdown {
                count: 2,
                unsettled: true,
            }
            .emit();
        });
        let msgs: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
        assert_eq!(
            msgs,
            [
                "connection ended; reconnecting",
                "connection closed",
                "unusable message body; rejecting",
                "releasing unsettled deliveries on shutdown"
            ]
        );
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["error"], "link lost: gone");
        assert!(lines[0].get("up_ms").is_none());
        assert_eq!(lines[2]["reason"], "no body");
    }
}
