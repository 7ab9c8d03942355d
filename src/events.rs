//! The one ordered queue of task events to containerd.
//!
//! containerd's clients depend on order (create before start, an exec's exit before the init's,
//! exit before delete), so events leave one at a time from a single task, each retried until it
//! is delivered or given up on, never overtaken by a later one.

use std::time::{Duration, Instant};

use containerd_shim::protos::{
    protobuf::MessageField,
    shim::{event::Envelope, events::ForwardRequest},
    shim_async::EventsClient,
    ttrpc::context,
};
use log::{debug, error, warn};
use sluice_shim_proto::{events::TaskEvent, time::timestamp};
use tokio::sync::mpsc;

pub use containerd_shim::protos::shim_async::Client;

/// How long an event is retried before it is given up: long enough to ride out a containerd
/// restart, short enough that a containerd gone for good does not grow the queue for ever.
const EVENT_TTL: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<(TaskEvent, Instant)>,
}

impl Publisher {
    /// Publishes to containerd's ttrpc address for `namespace`, over `client` while it lasts
    /// (the connection the shim made at start-up, as the Go shim's publisher keeps its own),
    /// then over new connections.
    pub fn start(address: String, namespace: String, client: Option<Client>) -> Publisher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_all(
            address,
            namespace,
            client.map(EventsClient::new),
            rx,
        ));
        Publisher { tx }
    }

    /// A publisher whose events land in the returned receiver.
    #[cfg(test)]
    pub fn channel() -> (Publisher, mpsc::UnboundedReceiver<(TaskEvent, Instant)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Publisher { tx }, rx)
    }

    pub fn publish(&self, ev: TaskEvent) {
        debug!("event {} for {}", ev.topic(), ev.container_id());
        if self.tx.send((ev, Instant::now())).is_err() {
            warn!("event queue is closed; event dropped");
        }
    }
}

async fn forward_all(
    address: String,
    namespace: String,
    mut client: Option<EventsClient>,
    mut rx: mpsc::UnboundedReceiver<(TaskEvent, Instant)>,
) {
    while let Some((ev, queued)) = rx.recv().await {
        // An event is queued by the request that causes it, just before that request's reply;
        // on the shim's one thread, let the reply leave first (containerd waits for it; the
        // event keeps its place in the queue either way).
        tokio::task::yield_now().await;
        let any = match ev.to_any() {
            Ok(a) => a,
            Err(e) => {
                error!("cannot encode {} event: {e}", ev.topic());
                continue;
            }
        };
        let req = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: MessageField::some(timestamp(std::time::SystemTime::now())),
                namespace: namespace.clone(),
                topic: ev.topic().to_string(),
                event: MessageField::some(any),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if client.is_none() {
                client = match connect(&address) {
                    Ok(c) => Some(EventsClient::new(c)),
                    Err(e) => {
                        warn!("cannot connect to containerd at {address}: {e}");
                        None
                    }
                };
            }
            if let Some(c) = client.as_ref() {
                let ctx = context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64);
                match c.forward(ctx, &req).await {
                    Ok(_) => break,
                    Err(e) => {
                        warn!("publishing {} (attempt {attempt}): {e}", ev.topic());
                        client = None;
                    }
                }
            }
            if queued.elapsed() > EVENT_TTL {
                error!(
                    "gave up publishing {} for {} after {attempt} attempts in {:?}",
                    ev.topic(),
                    ev.container_id(),
                    queued.elapsed()
                );
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A ttrpc client on containerd's ttrpc address (`unix://` optional).
pub fn connect(address: &str) -> Result<Client, String> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let fd = containerd_shim::util::connect(path).map_err(|e| e.to_string())?;
    // SAFETY: `connect` returns a connected unix socket that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let socket = crate::frames::socket_from_fd(fd).map_err(|e| e.to_string())?;
    Ok(Client::new(socket))
}
