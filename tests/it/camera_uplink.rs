//! The camera's upload state machine (`camera::uplink::Uplink`) with synthetic time: window,
//! pacing, resend with identical payloads, ack timeout, reconnect backoff and the connect limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use receiver_testkit::camera::uplink::{Action, Picture, Qos, Uplink, UplinkConfig};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn picture(pid: u32, chunks: usize) -> Picture {
    Picture {
        name: format!("pic{pid}.jpg"),
        pid,
        jpeg_bytes: 100 * chunks,
        payloads: (0..chunks)
            .map(|s| Arc::from(format!("payload {pid}/{s}")))
            .collect(),
    }
}

/// Drains `poll(now)`.
fn actions(u: &mut Uplink, now: Instant) -> Vec<Action> {
    std::iter::from_fn(|| u.poll(now)).collect()
}

fn publishes(acts: &[Action]) -> Vec<(u32, u32, bool)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Publish(p) => Some((p.pid, p.seq, p.resend)),
            _ => None,
        })
        .collect()
}

/// A tiny broker: writes are reported immediately with packet ids 1, 2, ...; acks are explicit.
struct Sim {
    u: Uplink,
    t0: Instant,
    now: Instant,
    pkid: u16,
    /// (pkid, payload) written and not yet acked, oldest first.
    unacked: Vec<(u16, Arc<str>)>,
    /// Every publish handed over: (time since t0, payload).
    log: Vec<(Duration, Arc<str>)>,
    done: Vec<receiver_testkit::camera::uplink::PictureReport>,
    connects: usize,
    resets: usize,
}

impl Sim {
    fn new(cfg: UplinkConfig) -> Self {
        let t0 = Instant::now();
        Sim {
            u: Uplink::new(cfg, t0),
            t0,
            now: t0,
            pkid: 0,
            unacked: Vec::new(),
            log: Vec::new(),
            done: Vec::new(),
            connects: 0,
            resets: 0,
        }
    }

    /// Runs the uplink's actions at the current time; connections succeed immediately.
    fn step(&mut self) {
        loop {
            let acts = actions(&mut self.u, self.now);
            if acts.is_empty() {
                return;
            }
            for a in acts {
                match a {
                    Action::Connect => {
                        self.connects += 1;
                        self.u.on_connected(self.now);
                    }
                    Action::Publish(p) => {
                        self.pkid = self.pkid % 100 + 1;
                        self.log.push((self.now - self.t0, p.payload.clone()));
                        self.unacked.push((self.pkid, p.payload));
                        self.u.on_written(self.pkid, self.now);
                    }
                    Action::Reset => {
                        self.resets += 1;
                        self.unacked.clear();
                        self.u.on_disconnected(self.now);
                    }
                    Action::PictureDone(r) => self.done.push(r),
                }
            }
        }
    }

    fn at(&mut self, since_t0: Duration) {
        self.now = self.t0 + since_t0;
        self.step();
    }

    fn ack_oldest(&mut self) {
        if !self.unacked.is_empty() {
            let (pkid, _) = self.unacked.remove(0);
            self.u.on_acked(pkid, self.now);
        }
        self.step();
    }

    /// Advances to the uplink's next wake-up, acking everything first when `ack_all`.
    fn run_to_end(&mut self, ack_all: bool, limit: Duration) {
        while !self.u.is_done() {
            if ack_all {
                while !self.unacked.is_empty() {
                    self.ack_oldest();
                }
            }
            match self.u.next_wake(self.now) {
                Some(w) if w - self.t0 <= limit => {
                    self.now = self.now.max(w);
                    self.step();
                }
                _ => break,
            }
        }
    }
}

#[test]
fn publishes_are_paced_at_the_rate_and_pictures_complete_on_the_last_ack() {
    let mut sim = Sim::new(UplinkConfig::default()); // rate 8, window 4
    sim.u.push_picture(picture(7, 10));
    sim.u.finish_input();
    sim.step();
    assert_eq!(sim.connects, 1);
    sim.run_to_end(true, Duration::from_secs(10));
    assert!(sim.u.is_done());
    let times: Vec<Duration> = sim.log.iter().map(|(t, _)| *t).collect();
    let expected: Vec<Duration> = (0..10).map(|i| ms(125 * i)).collect();
    assert_eq!(times, expected);
    assert_eq!(sim.done.len(), 1);
    assert_eq!(sim.done[0].chunks, 10);
    assert_eq!(sim.done[0].pid, 7);
    assert_eq!(sim.done[0].elapsed, ms(9 * 125));
}

#[test]
fn never_more_than_rate_plus_one_publishes_in_any_second() {
    let cfg = UplinkConfig {
        rate: 9.5,
        window: 50,
        ..UplinkConfig::default()
    };
    let mut sim = Sim::new(cfg);
    for pid in 0..5 {
        sim.u.push_picture(picture(pid, 20));
    }
    sim.u.finish_input();
    sim.step();
    sim.run_to_end(true, Duration::from_secs(60));
    assert_eq!(sim.log.len(), 100);
    for (i, (t, _)) in sim.log.iter().enumerate() {
        let in_window = sim.log[i..]
            .iter()
            .take_while(|(u, _)| *u < *t + Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 10,
            "{in_window} publishes in the second after {t:?}"
        );
    }
}

#[test]
fn the_window_bounds_unacknowledged_publishes() {
    let mut sim = Sim::new(UplinkConfig::default());
    sim.u.push_picture(picture(1, 10));
    sim.u.finish_input();
    sim.step();
    // No acks: 4 publishes (one per 125 ms), then nothing however long we wait (below the ack
    // timeout).
    for i in 1..=20 {
        sim.at(ms(125 * i));
    }
    assert_eq!(sim.log.len(), 4);
    assert_eq!(
        sim.u.next_wake(sim.now),
        Some(sim.t0 + Duration::from_secs(30))
    );
    // One ack frees one slot: exactly one more publish.
    sim.ack_oldest();
    assert_eq!(sim.log.len(), 5);
    sim.at(ms(2600));
    assert_eq!(sim.log.len(), 5);
}

#[test]
fn out_of_order_acks_are_matched_by_packet_id() {
    let mut sim = Sim::new(UplinkConfig::default());
    sim.u.push_picture(picture(1, 2));
    sim.u.push_picture(picture(2, 2));
    sim.u.finish_input();
    sim.step();
    sim.at(ms(125));
    sim.at(ms(250));
    sim.at(ms(375));
    assert_eq!(sim.unacked.len(), 4);
    // Ack picture 2's chunks first (pkids 3, 4), then picture 1's (1, 2).
    for pkid in [4, 3, 2, 1] {
        sim.u.on_acked(pkid, sim.now);
    }
    sim.u.on_acked(77, sim.now); // stray: ignored
    sim.step();
    let names: Vec<u32> = sim.done.iter().map(|r| r.pid).collect();
    assert_eq!(names, vec![2, 1]);
    assert!(sim.u.is_done());
    assert_eq!(sim.u.stats().stray_acks, 1);
}

#[test]
fn a_disconnect_resends_unacked_payloads_unchanged_after_backoff() {
    let mut sim = Sim::new(UplinkConfig::default());
    sim.u.push_picture(picture(3, 6));
    sim.u.finish_input();
    sim.step();
    for i in 1..4 {
        sim.at(ms(125 * i));
    }
    // Published seq 0..=3; ack 0 and 1, then the connection drops.
    sim.ack_oldest();
    sim.ack_oldest();
    let lost: Vec<Arc<str>> = sim.unacked.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(lost.len(), 2);
    sim.unacked.clear();
    sim.u.on_disconnected(sim.now);
    assert!(!sim.u.is_connected());
    // Backoff: the first retry comes 0.5..=1 s later (1 s with equal jitter), not before.
    let retry = sim.u.next_wake(sim.now).unwrap() - sim.now;
    assert!(retry >= ms(500) && retry <= ms(1000), "{retry:?}");
    sim.at(sim.now - sim.t0 + retry - ms(1));
    assert_eq!(sim.connects, 1);
    sim.run_to_end(true, Duration::from_secs(10));
    assert_eq!(sim.connects, 2);
    assert!(sim.u.is_done());
    // The two lost payloads went out again, byte-identical, before any new chunk.
    let after: Vec<Arc<str>> = sim.log[4..].iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(after[..2], lost[..]);
    assert_eq!(after.len(), 4);
    assert_eq!(sim.done.len(), 1);
    assert_eq!(sim.done[0].resends, 2);
    assert_eq!(sim.u.stats().resends, 2);
    assert_eq!(sim.u.stats().published, 8);
}

#[test]
fn the_resend_flag_marks_repeated_publishes() {
    let mut u = Uplink::new(UplinkConfig::default(), Instant::now());
    let t = Instant::now();
    u.push_picture(picture(9, 1));
    u.finish_input();
    assert_eq!(actions(&mut u, t), vec![Action::Connect]);
    u.on_connected(t);
    let first = actions(&mut u, t);
    assert_eq!(publishes(&first), vec![(9, 0, false)]);
    u.on_written(5, t);
    u.on_disconnected(t);
    let t2 = u.next_wake(t).unwrap();
    assert_eq!(actions(&mut u, t2), vec![Action::Connect]);
    u.on_connected(t2);
    let again = actions(&mut u, t2);
    assert_eq!(publishes(&again), vec![(9, 0, true)]);
    match (&first[0], &again[0]) {
        (Action::Publish(a), Action::Publish(b)) => assert_eq!(a.payload, b.payload),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unacknowledged_publish_resets_the_connection_after_the_ack_timeout() {
    let mut sim = Sim::new(UplinkConfig::default());
    sim.u.push_picture(picture(1, 1));
    sim.u.finish_input();
    sim.step();
    assert_eq!(sim.log.len(), 1);
    sim.at(Duration::from_secs(29));
    assert_eq!(sim.resets, 0);
    sim.at(Duration::from_secs(30));
    assert_eq!(sim.resets, 1);
    sim.run_to_end(true, Duration::from_secs(60));
    assert!(sim.u.is_done());
    assert_eq!(sim.log.len(), 2);
    assert_eq!(sim.log[0].1, sim.log[1].1);
}

#[test]
fn a_packet_id_collision_resets_the_connection() {
    let t = Instant::now();
    let mut u = Uplink::new(UplinkConfig::default(), t);
    u.push_picture(picture(1, 1));
    u.finish_input();
    actions(&mut u, t);
    u.on_connected(t);
    actions(&mut u, t);
    u.on_pkid_collision(1, t);
    assert_eq!(actions(&mut u, t), vec![Action::Reset]);
    assert_eq!(u.stats().resets, 1);
}

#[test]
fn at_most_five_connection_attempts_in_any_minute_with_growing_backoff() {
    let cfg = UplinkConfig {
        backoff_min: ms(100),
        ..UplinkConfig::default()
    };
    let t0 = Instant::now();
    let mut u = Uplink::new(cfg, t0);
    u.push_picture(picture(1, 1));
    let mut now = t0;
    let mut attempts = Vec::new();
    while now - t0 < Duration::from_secs(180) {
        for a in actions(&mut u, now) {
            assert_eq!(a, Action::Connect);
            attempts.push(now - t0);
            u.on_disconnected(now); // every attempt fails at once
        }
        now = u.next_wake(now).unwrap().max(now + ms(1));
    }
    for (i, t) in attempts.iter().enumerate() {
        let within = attempts[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(60))
            .count();
        assert!(
            within <= 5,
            "{within} attempts in the minute after {t:?}: {attempts:?}"
        );
    }
    // Backoff grows: the gaps of the first attempts double (with jitter in [base/2, base]).
    assert!(attempts[1] - attempts[0] <= ms(100));
    assert!(attempts[2] - attempts[1] >= ms(100) && attempts[2] - attempts[1] <= ms(200));
    assert!(attempts[3] - attempts[2] >= ms(200) && attempts[3] - attempts[2] <= ms(400));
    // In three minutes that is at most 15 attempts (5 per 60 s window).
    assert!(attempts.len() <= 15, "{}", attempts.len());
    assert!(attempts.len() >= 11, "{}", attempts.len());
}

#[test]
fn a_healthy_connection_resets_the_backoff() {
    let cfg = UplinkConfig {
        backoff_min: Duration::from_secs(1),
        ..UplinkConfig::default()
    };
    let t0 = Instant::now();
    let mut u = Uplink::new(cfg, t0);
    u.push_picture(picture(1, 1));
    let mut now = t0;
    // Three quick failures: the backoff grows to 2..4 s.
    for _ in 0..3 {
        now = u.next_wake(now).unwrap().max(now);
        assert_eq!(actions(&mut u, now), vec![Action::Connect]);
        u.on_disconnected(now);
    }
    assert!(u.next_wake(now).unwrap() - now >= Duration::from_secs(2));
    now = u.next_wake(now).unwrap();
    assert_eq!(actions(&mut u, now), vec![Action::Connect]);
    u.on_connected(now);
    actions(&mut u, now);
    // Up for a minute (the publish is acked), then a drop: back to the first delay.
    u.on_written(1, now);
    u.on_acked(1, now + ms(10));
    let done = actions(&mut u, now + ms(10));
    assert!(matches!(done[..], [Action::PictureDone(_)]), "{done:?}");
    now += Duration::from_secs(60);
    u.on_disconnected(now);
    assert!(u.next_wake(now).unwrap() - now <= Duration::from_secs(1));
}

#[test]
fn the_interval_spaces_picture_starts() {
    let cfg = UplinkConfig {
        interval: Duration::from_secs(5),
        ..UplinkConfig::default()
    };
    let mut sim = Sim::new(cfg);
    for pid in 0..3 {
        sim.u.push_picture(picture(pid, 2));
    }
    sim.u.finish_input();
    sim.step();
    sim.run_to_end(true, Duration::from_secs(60));
    let starts: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(_, p)| p.ends_with("/0"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(starts, vec![ms(0), ms(5000), ms(10000)]);
}

#[test]
fn qos0_counts_a_publish_done_when_written() {
    let cfg = UplinkConfig {
        qos: Qos::AtMostOnce,
        rate: 20.0,
        ..UplinkConfig::default()
    };
    let t0 = Instant::now();
    let mut u = Uplink::new(cfg, t0);
    u.push_picture(picture(1, 3));
    u.finish_input();
    let mut now = t0;
    let mut done = Vec::new();
    while !u.is_done() {
        for a in actions(&mut u, now) {
            match a {
                Action::Connect => u.on_connected(now),
                Action::Publish(_) => u.on_written(0, now),
                Action::PictureDone(r) => done.push(r),
                Action::Reset => panic!("no resets with QoS 0"),
            }
        }
        if let Some(w) = u.next_wake(now) {
            now = w.max(now);
        }
        assert!(now - t0 < Duration::from_secs(5));
    }
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].elapsed, ms(100));
}

#[test]
fn pictures_are_requested_just_in_time() {
    let t = Instant::now();
    let mut u = Uplink::new(UplinkConfig::default(), t);
    assert!(u.wants_picture());
    u.push_picture(picture(1, 2));
    assert!(!u.wants_picture());
    actions(&mut u, t);
    u.on_connected(t);
    actions(&mut u, t); // seq 0
    assert!(!u.wants_picture());
    actions(&mut u, t + ms(125)); // seq 1: every message sent once
    assert!(u.wants_picture());
    u.finish_input();
    assert!(!u.wants_picture());
    assert!(!u.is_done());
}
