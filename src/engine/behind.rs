//! Write-behind for outputs whose writes wait on the network (the object store): the engine
//! hands each finished picture to a fixed pool of writer threads and goes on with the next
//! batch; results come back on a channel the engine's loop also waits on. The deliveries that
//! finished a picture stay unsettled until its write is confirmed (they are accepted then, or
//! released if it failed), so the guarantee is the synchronous path's: a picture's last chunk is
//! accepted only once the picture is durable.
//!
//! The pool only writes; every decision (settling, pending, pausing) stays on the engine's
//! thread.

use crate::assembler::Finished;
use crate::sink::{DynSink, SinkError, Written};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One write's outcome: its id, the result, and when it completed (µs since the epoch).
pub(super) type Completion = (u64, Result<Written, SinkError>, u64);

/// The writer threads and their two channels.
pub(super) struct Writers {
    jobs: Option<std_mpsc::Sender<(u64, Arc<Finished>)>>,
    done: mpsc::UnboundedReceiver<Completion>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Submitted and not yet received back.
    in_flight: usize,
    /// Most writes at once (the number of threads).
    limit: usize,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers")
            .field("in_flight", &self.in_flight)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Writers {
    /// Starts `n` (at least 1) writer threads over `sink`.
    pub(super) fn start(sink: &DynSink, n: usize) -> std::io::Result<Writers> {
        let n = n.max(1);
        let (jobs, rx) = std_mpsc::channel::<(u64, Arc<Finished>)>();
        let rx = Arc::new(Mutex::new(rx));
        let (tx, done) = mpsc::unbounded_channel();
        let mut threads = Vec::with_capacity(n);
        for _ in 0..n {
            let (rx, tx, sink) = (rx.clone(), tx.clone(), sink.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("engine-upload".into())
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((id, img)) = job else { return };
                        // A panic in a write must not lose the job: it comes back as an error
                        // (the picture is then pending and retried, like any failed write).
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            sink.write_image(&img)
                        }))
                        .unwrap_or_else(|_| {
                            Err(SinkError::Io {
                                op: "write",
                                path: std::path::PathBuf::from(format!("{}", img.device)),
                                source: std::io::Error::other("the writer thread panicked"),
                            })
                        });
                        // The engine takes the picture back once the result arrives.
                        drop(img);
                        if tx.send((id, result, crate::metrics::wall_us())).is_err() {
                            return;
                        }
                    })?,
            );
        }
        Ok(Writers {
            jobs: Some(jobs),
            done,
            threads,
            in_flight: 0,
            limit: n,
        })
    }

    /// Whether every thread is busy.
    pub(super) fn is_full(&self) -> bool {
        self.in_flight >= self.limit
    }

    /// Writes submitted and not yet received back.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands `img` to a writer. `false` if the pool is gone (the caller writes it itself).
    pub(super) fn submit(&mut self, id: u64, img: Arc<Finished>) -> bool {
        match &self.jobs {
            Some(j) if j.send((id, img)).is_ok() => {
                self.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    /// A result that is already there, if any.
    pub(super) fn try_recv(&mut self) -> Option<Completion> {
        let c = self.done.try_recv().ok()?;
        self.in_flight -= 1;
        Some(c)
    }

    /// Waits for the next result (blocking: the engine's thread is not in async code then).
    pub(super) fn recv_blocking(&mut self) -> Option<Completion> {
        if self.in_flight == 0 {
            return None;
        }
        let c = self.done.blocking_recv()?;
        self.in_flight -= 1;
        Some(c)
    }

    /// Waits for the next result in async code (the engine's loop, beside the deliveries).
    pub(super) async fn recv(&mut self) -> Option<Completion> {
        if self.in_flight == 0 {
            return std::future::pending().await;
        }
        let c = self.done.recv().await?;
        self.in_flight -= 1;
        Some(c)
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        // Closing the job channel ends the threads once their current write returns.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
