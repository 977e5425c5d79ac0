//! TCP listeners on a worker: each client connection runs through the
//! chain's network filters and tcp_proxy, and a real upstream connection
//! carries what the simulated tcp_proxy lets through. After every step
//! the connection's record says which cluster tcp_proxy connected to (a
//! filter may pick it through `envoy.tcp_proxy.cluster`) and what each
//! side has received so far; serve connects to that cluster's endpoint
//! then, and sends the new bytes (and FINs) out on the sockets.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use harness::{ConnectionRecord, ConnectionSpec, EnvoyOutcome, Properties, StreamInput};

use super::{Event, Key, Worker};
use crate::commands::serve::http::Upstream;

/// What a socket's writer task does next.
enum Out {
    Data(Vec<u8>),
    /// Half-close (FIN).
    Fin,
}

/// One proxied connection: how much of each side's received bytes went
/// out already, and the writers of both sockets.
pub(super) struct Proxied {
    to_client: mpsc::UnboundedSender<Out>,
    /// Once tcp_proxy connected: the upstream socket's writer.
    to_upstream: Option<mpsc::UnboundedSender<Out>>,
    sent_up: usize,
    sent_down: usize,
    fin_up: bool,
    fin_down: bool,
}

impl Worker {
    /// A client connected to TCP listener `listener`.
    pub(super) fn take_connection(
        &mut self,
        listener: usize,
        stream: std::net::TcpStream,
        cluster: &str,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let spec = ConnectionSpec {
            source: address(stream.peer_addr()),
            destination: address(stream.local_addr()),
            cluster: cluster.to_string(),
            ..ConnectionSpec::default()
        };
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(s) => s,
            Err(e) => return log::warn!("worker {}: a connection failed: {e}", self.index),
        };
        let Some(served) = self.slot_mut(listener) else {
            return;
        };
        let opened = served.envoy.connect(Some(0), &spec, &Properties::new());
        let (key, outcome) = match opened {
            Ok(opened) => opened,
            Err(e) => return log::warn!("worker {}: {e}", self.index),
        };
        let key = (listener, key);
        self.show_step(listener, &outcome);
        let (client_read, client_write) = stream.into_split();
        let to_client = writer(client_write);
        tokio::spawn(read_side(client_read, key, true, events.clone()));
        let proxied = Proxied {
            to_client,
            to_upstream: None,
            sent_up: 0,
            sent_down: 0,
            fin_up: false,
            fin_down: false,
        };
        self.tcp.insert(key, proxied);
        self.carry(key, &outcome, events);
    }

    /// Bytes (or a FIN: `end`) from the client or the upstream; `None`:
    /// the upstream could not be reached or reset.
    pub(super) fn take_bytes(
        &mut self,
        key: Key,
        from_client: bool,
        bytes: Option<(Vec<u8>, bool)>,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        if !self.tcp.contains_key(&key) {
            return;
        }
        let input = match (bytes, from_client) {
            (Some((data, end_stream)), true) => StreamInput::Downstream { data, end_stream },
            (Some((data, end_stream)), false) => StreamInput::Upstream { data, end_stream },
            (None, true) => StreamInput::Reset,
            (None, false) => StreamInput::UpstreamReset,
        };
        let sent = match self.slot_mut(key.0) {
            Some(served) => served.envoy.send(key.1, input),
            None => return self.close(key),
        };
        match sent {
            Ok(outcome) => {
                self.show_step(key.0, &outcome);
                self.carry(key, &outcome, events);
            }
            // The connection closed meanwhile.
            Err(_) => self.close(key),
        }
    }

    /// Connects upstream once tcp_proxy did, and sends what each side
    /// received since the last step.
    fn carry(&mut self, key: Key, outcome: &EnvoyOutcome, events: &mpsc::UnboundedSender<Event>) {
        let Some(record) = outcome.outcome.connection.as_ref() else {
            return;
        };
        let Some(proxied) = self.tcp.get_mut(&key) else {
            return;
        };
        if proxied.to_upstream.is_none()
            && !record.upstream_failed
            && let Some(cluster) = &record.cluster
            && let Some((_, upstream)) = self.clusters.iter().find(|(n, _)| n == cluster)
        {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(connect_upstream(upstream.clone(), rx, key, events.clone()));
            proxied.to_upstream = Some(tx);
        }
        proxied.carry(record);
        if record.closed_by.is_some() {
            self.close(key);
        }
    }

    /// Connections that ended outside a step of their own (a filter
    /// closed one from a timer or a callout answer): their last bytes go
    /// out, then they close.
    pub(super) fn reap_connections(&mut self) {
        let keys: Vec<Key> = self.tcp.keys().copied().collect();
        for key in keys {
            let Some(Ok(Some(done))) = self.slot_mut(key.0).map(|s| s.envoy.poll(key.1)) else {
                continue;
            };
            if let (Some(proxied), Some(record)) =
                (self.tcp.get_mut(&key), done.outcome.connection.as_ref())
            {
                proxied.carry(record);
            }
            self.tcp.remove(&key);
        }
    }

    /// Envoy closed the connection (a filter, tcp_proxy, or both sides
    /// done): dropping the writers closes both sockets.
    fn close(&mut self, key: Key) {
        self.tcp.remove(&key);
        if let Some(served) = self.slot_mut(key.0) {
            let _ = served.envoy.poll(key.1);
        }
    }
}

impl Proxied {
    fn carry(&mut self, record: &ConnectionRecord) {
        if let Some(to_upstream) = &self.to_upstream {
            send_new(to_upstream, &record.upstream_received.0, &mut self.sent_up);
            if record.upstream_end && !self.fin_up {
                self.fin_up = true;
                let _ = to_upstream.send(Out::Fin);
            }
        }
        send_new(
            &self.to_client,
            &record.downstream_received.0,
            &mut self.sent_down,
        );
        if record.downstream_end && !self.fin_down {
            self.fin_down = true;
            let _ = self.to_client.send(Out::Fin);
        }
    }
}

/// Sends the part of `received` past `sent`.
fn send_new(to: &mpsc::UnboundedSender<Out>, received: &[u8], sent: &mut usize) {
    if let Some(new) = received.get(*sent..).filter(|n| !n.is_empty()) {
        let _ = to.send(Out::Data(new.to_vec()));
        *sent = received.len();
    }
}

fn address(addr: std::io::Result<std::net::SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

/// A task writing what it is sent to `half`; the socket closes when the
/// sender goes away.
fn writer(half: OwnedWriteHalf) -> mpsc::UnboundedSender<Out> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_side(half, rx));
    tx
}

async fn write_side(mut half: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        let done = match out {
            Out::Data(bytes) => half.write_all(&bytes).await,
            Out::Fin => half.shutdown().await,
        };
        if done.is_err() {
            break;
        }
    }
}

/// Reads one side until it closes: each read is an event, its FIN an
/// empty read with `end`, an error a reset.
async fn read_side(
    mut half: OwnedReadHalf,
    key: Key,
    from_client: bool,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let bytes = match half.read(&mut buffer).await {
            Ok(0) => Some((Vec::new(), true)),
            Ok(n) => Some((buffer[..n].to_vec(), false)),
            Err(_) => None,
        };
        let last = bytes.as_ref().is_none_or(|(_, end)| *end);
        if events
            .send(Event::Bytes {
                key,
                from_client,
                bytes,
            })
            .is_err()
            || last
        {
            return;
        }
    }
}

/// tcp_proxy's real upstream connection; bytes for it wait in `rx`
/// until it is up. A refused connection resets the upstream side.
async fn connect_upstream(
    upstream: Upstream,
    rx: mpsc::UnboundedReceiver<Out>,
    key: Key,
    events: mpsc::UnboundedSender<Event>,
) {
    let Ok(stream) = TcpStream::connect(upstream.authority()).await else {
        let _ = events.send(Event::Bytes {
            key,
            from_client: false,
            bytes: None,
        });
        return;
    };
    let (read, write) = stream.into_split();
    tokio::spawn(read_side(read, key, false, events));
    write_side(write, rx).await;
}
