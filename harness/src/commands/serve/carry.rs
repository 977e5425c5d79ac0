//! Bodies between the sockets and a worker's chain, frame by frame, with
//! Envoy's watermark flow control: a worker reads a peer's body only while
//! what it holds for the other side (in the chain, and sent but not yet
//! taken by the other side's connection) is under the buffer limit, so a
//! slow upstream stops serve reading the client and a slow client stops
//! serve reading the upstream (Envoy's `per_connection_buffer_limit_bytes`
//! high watermark disables reading on the other connection,
//! source/common/http/conn_manager_impl.cc and router/upstream_request.cc).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{mpsc, watch};

use harness::{ByteString, Headers};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

type Frames = mpsc::UnboundedReceiver<Result<Frame<Bytes>, BodyError>>;

/// A body serve sends: whole (a short answer of its own, an http_call, a
/// response that ended in one step) or carried from a worker frame by frame.
pub enum OutBody {
    Whole(Option<Bytes>),
    Carried { frames: Frames, gauge: Arc<Gauge> },
}

impl OutBody {
    pub fn whole(bytes: impl Into<Bytes>) -> OutBody {
        let bytes = bytes.into();
        OutBody::Whole((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            OutBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Carried { frames, gauge } => {
                let polled = std::task::ready!(frames.poll_recv(cx));
                if let Some(Ok(frame)) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    gauge.taken(data.len() as u64);
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len()) as u64)
            }
            OutBody::Carried { .. } => SizeHint::default(),
        }
    }
}

/// The bytes sent on a carried body that its connection has not taken yet.
pub struct Gauge {
    bytes: AtomicU64,
    /// The worker stopped reading a peer because of these bytes: wake it
    /// when the connection takes some.
    waiting: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Gauge {
    fn taken(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        if self.waiting.swap(false, Ordering::AcqRel) {
            (self.wake)();
        }
    }
}

/// The worker's end of a carried body.
pub struct Outbound {
    frames: mpsc::UnboundedSender<Result<Frame<Bytes>, BodyError>>,
    gauge: Arc<Gauge>,
}

impl Outbound {
    /// A carried body and the worker's end of it; `wake` runs when the
    /// worker waits on it ([`Outbound::over`]) and its connection takes bytes.
    pub fn channel(wake: Box<dyn Fn() + Send + Sync>) -> (Outbound, OutBody) {
        let (frames, rx) = mpsc::unbounded_channel();
        let gauge = Arc::new(Gauge {
            bytes: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            wake,
        });
        let body = OutBody::Carried {
            frames: rx,
            gauge: Arc::clone(&gauge),
        };
        (Outbound { frames, gauge }, body)
    }

    pub fn data(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.gauge
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        let _ = self.frames.send(Ok(Frame::data(Bytes::from(bytes))));
    }

    pub fn trailers(&self, trailers: &Headers) {
        let _ = self.frames.send(Ok(Frame::trailers(header_map(trailers))));
    }

    /// The body breaks off (the stream was reset): the peer's connection
    /// is reset rather than seeing a complete message. Dropping an
    /// [`Outbound`] instead ends the body normally.
    pub fn abort(self, why: &str) {
        let _ = self.frames.send(Err(why.to_string().into()));
    }

    /// Whether `queued` (what the chain holds for this side) plus what
    /// waits on this body reach `limit`; if so, the worker is woken once
    /// the connection takes some.
    pub fn over(&self, queued: u64, limit: u64) -> bool {
        if queued.saturating_add(self.held()) < limit {
            return false;
        }
        self.gauge.waiting.store(true, Ordering::Release);
        // Taken meanwhile: the wake may have been missed, so look again.
        queued.saturating_add(self.held()) >= limit
    }

    fn held(&self) -> u64 {
        self.gauge.bytes.load(Ordering::Acquire)
    }
}

/// The harness's headers as hyper's (names or values hyper refuses are left out).
pub fn header_map(headers: &Headers) -> hyper::HeaderMap {
    let mut map = hyper::HeaderMap::new();
    for (name, value) in headers.iter() {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name),
            hyper::header::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// hyper's headers as the harness's.
pub fn headers_of(map: &hyper::HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in map {
        headers.push(name.as_str(), ByteString(value.as_bytes().to_vec()));
    }
    headers
}

/// A part of a body read from a peer.
pub enum BodyPart {
    /// Bytes; `end`: the body ends with them.
    Data {
        bytes: Vec<u8>,
        end: bool,
    },
    Trailers(Headers),
    /// The peer broke the body off.
    Failed,
}

/// Reads `body` frame by frame while `gate` is open, handing each part to
/// `deliver` (false: nobody wants more). Ends with the body, or when the
/// gate's worker end goes away.
pub async fn read_gated(
    mut body: Incoming,
    mut gate: watch::Receiver<bool>,
    deliver: impl Fn(BodyPart) -> bool,
) {
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let part = match body.frame().await {
            None => BodyPart::Data {
                bytes: Vec::new(),
                end: true,
            },
            Some(Err(_)) => BodyPart::Failed,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => BodyPart::Data {
                    bytes: data.to_vec(),
                    end: body.is_end_stream(),
                },
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => BodyPart::Trailers(headers_of(&trailers)),
                    Err(_) => continue,
                },
            },
        };
        let last = !matches!(part, BodyPart::Data { end: false, .. });
        if !deliver(part) || last {
            return;
        }
    }
}
