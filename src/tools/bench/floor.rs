//! The baseline's "transport floor": `receiver --config <toml> bench-floor` (a hidden command).
//!
//! It connects exactly as the daemon does, through the daemon's own [`run_connection`]: the same
//! TLS configuration, aksign SASL PLAIN, Open, session, one receiver link with manual credit,
//! the same credit refills and the same write coalescing ([`crate::amqp::coalesce`]); every
//! delivery is still decoded by fe2o3 and turned into an [`Inbound`] by the link task. The
//! consumer at the other end of the channel then accepts everything at once, in batches the way
//! the engine takes them (whatever is queued), and drops the message unread: no JSON, no hex, no
//! assembly, no spool, no files.
//!
//! Its CPU per message, measured from `/proc` like the other consumers of the baseline, is what
//! any receiver built on this transport (fe2o3 + rustls + our link task) spends before doing
//! anything with a message, i.e. a floor under the receiver's figure.

use crate::amqp::client::{run_connection, ClientError, ConnState, ConnectLimiter};
use crate::amqp::{Inbound, Outcome};
use crate::config::Config;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Runs the connections of `config` until `shutdown`, accepting every delivery unread. Returns
/// how many deliveries were accepted.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<u64, ClientError> {
    let aliyun = Arc::new(config.aliyun);
    let connections = aliyun.connections.max(1);
    let credit = aliyun.credit.max(1) as usize;
    // The same channel as the daemon's (daemon.rs): room for every connection's credit, twice.
    let (tx, mut rx) = mpsc::channel::<Inbound>(connections * credit * 2);
    // Never paused; kept alive so the links see an open watch, as in the daemon.
    let (_pause, paused) = watch::channel(false);
    let limiter = ConnectLimiter::aliyun();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        tasks.spawn(run_connection(
            index,
            aliyun.clone(),
            tx.clone(),
            paused.clone(),
            ConnState::new(),
            limiter.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    let mut accepted = 0u64;
    let mut batch = Vec::with_capacity(connections * credit);
    // Ends when every connection task has returned (they hold the senders).
    while rx.recv_many(&mut batch, connections * credit).await > 0 {
        accepted += batch.len() as u64;
        for inbound in batch.drain(..) {
            inbound.settler.settle(Outcome::Accept);
        }
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    tracing::info!(accepted, "transport floor stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(accepted),
    }
}
