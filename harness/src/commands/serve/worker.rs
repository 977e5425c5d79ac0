//! One worker thread: its own simulated Envoy (its own VMs, as each Envoy
//! worker has), driven on the real clock. The virtual clock is kept at the
//! real milliseconds since the worker started, so timers and callout
//! timeouts fire when they would in Envoy; requests the chain lets through
//! go to the real upstream, held http_calls to the real clusters, and the
//! answers come back into the chain as events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use harness::{
    DownstreamRequest, DownstreamResponse, Envoy, Exchange, FilterModule, HarnessConfig,
    HeldCallout, HttpCalloutAnswer, LogEntry, Outcome, SharedHost, StreamHandle, StreamInput,
    UpstreamResponse,
};

use super::http::{self, HttpClient, Upstream};

/// What the listener hands a worker.
pub enum Job {
    /// A client's whole request, and where its response goes.
    Request {
        request: DownstreamRequest,
        reply: oneshot::Sender<Reply>,
    },
}

/// The response the client receives (`None`: the stream ended without one).
pub type Reply = Option<DownstreamResponse>;

/// What a worker needs to start.
pub struct Setup {
    pub index: usize,
    pub module: FilterModule,
    pub config: HarnessConfig,
    pub shared: SharedHost,
    pub upstream: Upstream,
    pub clusters: Arc<Vec<(String, Upstream)>>,
}

/// An answer from the outside world.
enum Event {
    Upstream {
        key: StreamHandle,
        answer: UpstreamResponse,
    },
    Callout {
        callout: HeldCallout,
        answer: HttpCalloutAnswer,
    },
}

/// A request in flight, for its access-log line.
struct InFlight {
    reply: oneshot::Sender<Reply>,
    started: Instant,
    line: String,
    bytes_received: usize,
}

struct Worker {
    index: usize,
    envoy: Envoy,
    plugin: String,
    start: Instant,
    client: HttpClient,
    upstream: Upstream,
    clusters: Arc<Vec<(String, Upstream)>>,
    in_flight: HashMap<StreamHandle, InFlight>,
    /// Held callouts already sent out: (VM, token).
    asked: HashSet<(usize, u32)>,
}

/// The worker thread's body: starts its Envoy, reports start-up on
/// `ready`, then serves jobs until the listener goes away.
pub fn run(
    setup: Setup,
    jobs: mpsc::UnboundedReceiver<Job>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("worker {}: no runtime: {e}", setup.index)));
            return;
        }
    };
    runtime.block_on(async move {
        let plugin = setup.config.plugin.name.clone();
        let built = Envoy::builder()
            .plugin(setup.module, setup.config)
            .shared(setup.shared)
            .build();
        let envoy = match built {
            Ok(envoy) => envoy,
            Err(e) => {
                let _ = ready.send(Err(format!("the plugin did not start: {e}")));
                return;
            }
        };
        if setup.index == 0 {
            print_logs(0, &plugin, &envoy.startup().logs);
        }
        let _ = ready.send(Ok(()));
        let worker = Worker {
            index: setup.index,
            envoy,
            plugin,
            start: Instant::now(),
            client: http::client(),
            upstream: setup.upstream,
            clusters: setup.clusters,
            in_flight: HashMap::new(),
            asked: HashSet::new(),
        };
        worker.serve(jobs).await;
    });
}

impl Worker {
    async fn serve(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        loop {
            let wait = self.until_next_event();
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.take_job(job),
                    None => break,
                },
                Some(event) = events.recv() => self.take_event(event),
                () = tokio::time::sleep(wait) => {}
            }
            self.catch_up();
            self.pump(&events_tx);
        }
    }

    fn real_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long until the Envoy's next timer or callout timeout is due.
    fn until_next_event(&self) -> Duration {
        match self.envoy.next_event_at() {
            Some(at) => Duration::from_millis(at.saturating_sub(self.real_ms())),
            None => Duration::from_secs(3600),
        }
    }

    /// Moves the virtual clock to the real one: what fell due runs.
    fn catch_up(&mut self) {
        let lag = self.real_ms().saturating_sub(self.envoy.now_ms());
        if lag > 0 {
            match self.envoy.advance(lag) {
                Ok(outcome) => self.show(&outcome),
                Err(e) => log::warn!("worker {}: {e}", self.index),
            }
        }
    }

    fn show(&self, outcome: &Outcome) {
        print_logs(self.index, &self.plugin, &outcome.logs);
    }

    fn take_job(&mut self, job: Job) {
        self.catch_up();
        let Job::Request { request, reply } = job;
        let line = request_line(&request);
        let bytes_received = request.body.total_len();
        let exchange = Exchange {
            request,
            upstream: UpstreamResponse::default(),
            properties: Default::default(),
        };
        match self.envoy.open_stream(Some(0), &exchange, None, true) {
            Ok((key, outcome)) => {
                self.show(&outcome.outcome);
                let started = Instant::now();
                let entry = InFlight {
                    reply,
                    started,
                    line,
                    bytes_received,
                };
                self.in_flight.insert(key, entry);
            }
            Err(e) => {
                log::warn!("worker {}: {e}", self.index);
                let _ = reply.send(None);
            }
        }
    }

    fn take_event(&mut self, event: Event) {
        self.catch_up();
        match event {
            Event::Upstream { key, answer } => {
                let end_stream = true;
                // A stream that ended meanwhile (a local reply) drops it.
                if let Ok(outcome) = self
                    .envoy
                    .send(key, StreamInput::Respond { answer, end_stream })
                {
                    self.show(&outcome.outcome);
                }
            }
            Event::Callout { callout, answer } => {
                match self.envoy.answer_held(0, &callout, Some(&answer)) {
                    Ok((_, outcome)) => self.show(&outcome.outcome),
                    Err(e) => log::warn!("worker {}: {e}", self.index),
                }
            }
        }
    }

    /// Sends out what the chain produced (upstream requests, callouts)
    /// and answers the clients whose streams ended.
    fn pump(&mut self, events: &mpsc::UnboundedSender<Event>) {
        for (key, message) in self.envoy.take_upstream_requests(0) {
            let (client, to, events) = (self.client.clone(), self.upstream.clone(), events.clone());
            tokio::spawn(async move {
                let answer = http::forward(client, to, message).await;
                let _ = events.send(Event::Upstream { key, answer });
            });
        }
        let held = self.envoy.held_callouts(0);
        let waiting: HashSet<(usize, u32)> = held.iter().map(|c| (c.vm, c.record.token)).collect();
        self.asked.retain(|k| waiting.contains(k));
        for callout in held {
            if !self.asked.insert((callout.vm, callout.record.token)) {
                continue;
            }
            let Some((_, to)) = self
                .clusters
                .iter()
                .find(|(n, _)| *n == callout.record.cluster)
            else {
                continue;
            };
            let (client, to, events) = (self.client.clone(), to.clone(), events.clone());
            tokio::spawn(async move {
                let answer = http::callout(client, to, callout.record.clone()).await;
                let _ = events.send(Event::Callout { callout, answer });
            });
        }
        let keys: Vec<StreamHandle> = self.in_flight.keys().copied().collect();
        for key in keys {
            let Ok(Some(done)) = self.envoy.poll(key) else {
                continue;
            };
            if let Some(flight) = self.in_flight.remove(&key) {
                access_log(&flight, done.outcome.response.as_ref());
                let _ = flight.reply.send(done.outcome.response);
            }
        }
    }
}

/// `"GET /path HTTP/1.1"` as Envoy's access log writes it.
fn request_line(request: &DownstreamRequest) -> String {
    let protocol = match request.protocol {
        harness::HttpProtocol::Http2 => "HTTP/2",
        _ => "HTTP/1.1",
    };
    format!("\"{} {} {protocol}\"", request.method, request.path)
}

/// Envoy's default access-log line, the fields the harness knows.
fn access_log(flight: &InFlight, response: Option<&DownstreamResponse>) {
    let (status, sent) = response.map_or((0, 0), |r| (r.status, r.message.body.0.len()));
    let ms = flight.started.elapsed().as_millis();
    let time = utc_now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    println!(
        "[{time}] {} {status} - {} {sent} {ms}",
        flight.line, flight.bytes_received
    );
}

/// Filter log lines the way Envoy's wasm logger prints them.
fn print_logs(worker: usize, plugin: &str, logs: &[LogEntry]) {
    for entry in logs {
        let time = utc_now().format("%Y-%m-%d %H:%M:%S%.3f");
        eprintln!(
            "[{time}][{worker}][{}][wasm] wasm log {plugin}: {}",
            entry.level.name().to_ascii_lowercase(),
            harness::printable::escape_controls(&entry.message)
        );
    }
}

/// The wall clock (chrono is built without its clock feature here).
fn utc_now() -> chrono::DateTime<chrono::Utc> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
