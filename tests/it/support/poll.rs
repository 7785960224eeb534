//! Polling until a condition holds or a deadline passes.

use std::time::{Duration, Instant};

/// Checks `cond` every `every` until it holds (true) or `timeout` has passed (false), by the
/// wall clock (`std::time::Instant`: with tokio's clock paused it still waits real time; use
/// [`eventually`] there). The caller asserts, with its own message, on what it needs.
pub async fn until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `f` until it is true (paused-time friendly: sleeps advance the clock).
pub async fn eventually(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
