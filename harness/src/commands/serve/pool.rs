//! A worker's keep-alive HTTP/1.1 connections to its upstreams and
//! clusters, as Envoy's per-worker connection pools keep them
//! (source/common/http/http1/conn_pool.cc: one pool per worker and
//! upstream host, an idle connection reused by the next request, a new one
//! opened when none is free).
//!
//! hyper_util's pooling client did the same work at several times the
//! cost per request (a SipHash of scheme and authority three times per
//! request, a checkout future, a waiter queue), so the pool is hyper's
//! bare connections: a free connection is one whose last response has
//! been read to its end ([`SendRequest::is_ready`]).

use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::carry::OutBody;
use super::http::Upstream;

/// Most connections kept per upstream; past it, a connection whose
/// response ends is closed instead of kept.
const MAX_KEPT_PER_UPSTREAM: usize = 1024;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (refused, unreachable).
    Connect,
    /// The connection broke before the response head came.
    Broken,
}

/// One worker's connections, by upstream `host:port`.
#[derive(Default)]
pub struct Pool {
    upstreams: Mutex<Vec<(String, Vec<SendRequest<OutBody>>)>>,
}

impl Pool {
    /// Sends `request` on a free kept connection to `to`, or on a new one.
    /// A kept connection the upstream closed before the request went out
    /// (a keep-alive race) is dropped and the request tries the next.
    pub async fn send(
        &self,
        to: &Upstream,
        request: hyper::Request<OutBody>,
    ) -> Result<hyper::Response<Incoming>, SendError> {
        let mut request = request;
        loop {
            let (mut sender, fresh) = match self.free_connection(to.authority()) {
                Some(kept) => (kept, false),
                None => (connect(to).await?, true),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.keep(to.authority(), sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(SendError::Broken),
                },
            }
        }
    }

    /// A kept connection to `authority` ready for a request; closed ones
    /// found on the way are dropped.
    fn free_connection(&self, authority: &str) -> Option<SendRequest<OutBody>> {
        let mut upstreams = self.upstreams.lock().ok()?;
        let (_, kept) = upstreams.iter_mut().find(|(a, _)| a == authority)?;
        kept.retain(|s| !s.is_closed());
        let free = kept.iter().position(SendRequest::is_ready)?;
        Some(kept.swap_remove(free))
    }

    /// Keeps `sender` for later requests (it is free again once its
    /// response has been read).
    fn keep(&self, authority: &str, sender: SendRequest<OutBody>) {
        let Ok(mut upstreams) = self.upstreams.lock() else {
            return;
        };
        match upstreams.iter_mut().find(|(a, _)| a == authority) {
            Some((_, kept)) if kept.len() < MAX_KEPT_PER_UPSTREAM => kept.push(sender),
            Some(_) => {}
            None => upstreams.push((authority.to_string(), vec![sender])),
        }
    }
}

/// A new connection to `to`, its connection task running on this worker.
async fn connect(to: &Upstream) -> Result<SendRequest<OutBody>, SendError> {
    let stream = tokio::net::TcpStream::connect(to.authority())
        .await
        .map_err(|_| SendError::Connect)?;
    // Envoy sets TCP_NODELAY on upstream connections too.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| SendError::Connect)?;
    tokio::spawn(async move {
        // Ends when the upstream or the pool closes it; either is normal.
        let _ = connection.await;
    });
    Ok(sender)
}
