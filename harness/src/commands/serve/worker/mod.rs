//! One worker thread: its own simulated Envoy (its own VMs, as each Envoy
//! worker has), driven on the real clock. The virtual clock is kept at the
//! real milliseconds since the worker started, so timers and callout
//! timeouts fire when they would in Envoy; requests the chain lets through
//! go to the real upstream, held http_calls to the real clusters, and the
//! answers come back into the chain as events. Each listener has its own
//! Envoy (its own filter chain and VMs) on every worker; shared data,
//! queues and metrics are shared by all of them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use hyper::body::Incoming;

use harness::{
    DownstreamRequest, Envoy, EnvoyOutcome, HeldCallout, HttpCalloutAnswer, Outcome, SharedHost,
    StreamHandle,
};

use super::access_log;
use super::carry::BodyPart;
use super::http::{self, HttpClient, Upstream};
use super::logs::{print_logs, utc_now};
use super::plan::{ListenerKind, ListenerPlan};

mod carried;
mod router;
mod tcp;

pub use carried::ClientReply;

/// What the listener hands a worker.
pub enum Job {
    /// A client's request head, its body to read (`None`: it has none),
    /// and where the response goes.
    Request {
        /// Which listener took it (its index in the plan).
        listener: usize,
        request: Box<DownstreamRequest>,
        body: Option<Incoming>,
        reply: oneshot::Sender<ClientReply>,
    },
    /// A client's connection to an HTTP listener: the worker serves it
    /// on its own runtime (`watcher`: the drain waits for it).
    HttpConnection {
        listener: usize,
        stream: std::net::TcpStream,
        watcher: hyper_util::server::graceful::Watcher,
    },
    /// A client's TCP connection to a tcp_proxy listener.
    Connection {
        listener: usize,
        stream: std::net::TcpStream,
    },
    /// `--watch` saw a change: new streams go to fresh VMs of these
    /// listeners (the same listeners, in the same order) while streams in
    /// flight finish on the old ones.
    Reload {
        listeners: Arc<Vec<ListenerPlan>>,
        clusters: Arc<Vec<(String, Upstream)>>,
    },
}

/// What a worker needs to start.
pub struct Setup {
    pub index: usize,
    pub listeners: Arc<Vec<ListenerPlan>>,
    pub shared: SharedHost,
    pub clusters: Arc<Vec<(String, Upstream)>>,
    /// What `/config_dump` shows; worker 0 replaces it after a reload.
    pub loaded: Arc<std::sync::Mutex<serde_json::Value>>,
}

/// A stream on one of the worker's Envoys.
type Key = (usize, StreamHandle);

/// An answer from the outside world.
enum Event {
    /// The upstream's response head (and what of its body was there).
    Upstream { key: Key, answer: http::Answer },
    /// A part of the client's (`from_client`) or the upstream's body.
    Body {
        key: Key,
        from_client: bool,
        part: BodyPart,
    },
    /// A peer's connection took bytes the worker waits on (see [`carried`]).
    Drained,
    Callout {
        listener: usize,
        callout: HeldCallout,
        answer: HttpCalloutAnswer,
    },
    /// Bytes on a proxied TCP connection (see [`tcp`]).
    Bytes {
        key: Key,
        from_client: bool,
        bytes: Option<(Vec<u8>, bool)>,
    },
}

/// One listener's Envoy on this worker (one generation of it: a reload
/// starts another, and the old one serves its streams in flight).
struct Served {
    envoy: Envoy,
    /// The plans it was built from, and its listener's index there.
    plans: Arc<Vec<ListenerPlan>>,
    plan_index: usize,
    /// The worker's real ms at this Envoy's virtual time 0.
    epoch_ms: u64,
    /// Its plugins' names in chain order, for log lines.
    names: Vec<String>,
}

struct Worker {
    index: usize,
    /// Every generation's Envoys, by slot (a stream's key names its slot);
    /// a retired generation's slot is emptied once its streams ended.
    served: Vec<Option<Served>>,
    /// The slot each listener's new streams go to.
    current: Vec<usize>,
    shared: SharedHost,
    loaded: Arc<std::sync::Mutex<serde_json::Value>>,
    /// The wall clock when the worker started (its virtual time 0).
    wall_ms: u64,
    start: Instant,
    client: HttpClient,
    clusters: Arc<Vec<(String, Upstream)>>,
    /// HTTP streams in flight.
    http: HashMap<Key, carried::Carried>,
    /// Held callouts already sent out: (listener, VM, token).
    asked: HashSet<(usize, usize, u32)>,
    /// A peer's connection took bytes since the streams were last carried.
    drained: bool,
    /// Proxied TCP connections.
    tcp: HashMap<Key, tcp::Proxied>,
    /// Where the HTTP connections this worker serves send their requests.
    requests: mpsc::UnboundedSender<Job>,
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
        // Virtual time 0 is now: the filters' clock reads the wall clock.
        let start = Instant::now();
        let wall_ms = u64::try_from(utc_now().timestamp_millis()).unwrap_or_default();
        let served = match build_served(&setup.listeners, &setup.shared, wall_ms, 0) {
            Ok(served) => served,
            Err(message) => {
                let _ = ready.send(Err(message));
                return;
            }
        };
        if setup.index == 0 {
            for s in &served {
                print_logs(0, &s.names.join(","), &s.envoy.startup().logs);
            }
        }
        let current = (0..served.len()).collect();
        let (requests, local) = mpsc::unbounded_channel();
        let _ = ready.send(Ok(()));
        let worker = Worker {
            index: setup.index,
            served: served.into_iter().map(Some).collect(),
            current,
            shared: setup.shared,
            loaded: setup.loaded,
            wall_ms,
            start,
            client: http::client(),
            clusters: setup.clusters,
            http: HashMap::new(),
            asked: HashSet::new(),
            drained: false,
            tcp: HashMap::new(),
            requests,
        };
        worker.serve(jobs, local).await;
    });
}

/// One Envoy per listener, each with its plugins started (the first
/// failure stops it, naming the listener).
/// `epoch_ms`: the worker's real ms now, which is the new Envoys' virtual 0.
fn build_served(
    plans: &Arc<Vec<ListenerPlan>>,
    shared: &SharedHost,
    wall_ms: u64,
    epoch_ms: u64,
) -> Result<Vec<Served>, String> {
    let mut served = Vec::new();
    for (plan_index, plan) in plans.iter().enumerate() {
        let chain: Vec<_> = plan
            .chain
            .iter()
            .map(|(module, config)| {
                let mut config = config.clone();
                config.start_time_unix_ms = wall_ms + epoch_ms;
                (module.clone(), config)
            })
            .collect();
        let envoy = Envoy::builder()
            .plugins(&chain)
            .shared(shared.clone())
            .lean()
            .build()
            .map_err(|e| format!("the plugin did not start (listener {}): {e}", plan.name))?;
        served.push(Served {
            envoy,
            plans: Arc::clone(plans),
            plan_index,
            epoch_ms,
            names: plan.plugin_names(),
        });
    }
    Ok(served)
}

impl Worker {
    /// `jobs` from the listeners and the admin (serving ends when they go
    /// away), `local` requests from the connections the worker serves.
    async fn serve(
        mut self,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        mut local: mpsc::UnboundedReceiver<Job>,
    ) {
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        loop {
            let wait = self.until_next_event();
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.take_job(job, &events_tx),
                    None => break,
                },
                Some(job) = local.recv() => self.take_job(job, &events_tx),
                Some(event) = events.recv() => self.take_event(event, &events_tx),
                () = tokio::time::sleep(wait) => {}
            }
            self.catch_up();
            self.pump(&events_tx);
            if jobs.is_empty() && local.is_empty() && events.is_empty() {
                access_log::flush();
            }
        }
        access_log::flush();
    }

    fn real_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long until an Envoy's next timer or callout timeout is due.
    fn until_next_event(&self) -> Duration {
        let next = self
            .served
            .iter()
            .flatten()
            .filter_map(|s| s.envoy.next_event_at().map(|at| at + s.epoch_ms))
            .min();
        match next {
            Some(at) => Duration::from_millis(at.saturating_sub(self.real_ms())),
            None => Duration::from_secs(3600),
        }
    }

    /// Moves the virtual clocks to the real one: what fell due runs.
    fn catch_up(&mut self) {
        let now = self.real_ms();
        for slot in 0..self.served.len() {
            let Some(served) = self.slot_mut(slot) else {
                continue;
            };
            let lag = now
                .saturating_sub(served.epoch_ms)
                .saturating_sub(served.envoy.now_ms());
            if lag > 0 {
                match served.envoy.advance(lag) {
                    Ok(outcome) => self.show(slot, &outcome),
                    Err(e) => log::warn!("worker {}: {e}", self.index),
                }
            }
        }
    }

    fn slot(&self, slot: usize) -> Option<&Served> {
        self.served.get(slot).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, slot: usize) -> Option<&mut Served> {
        self.served.get_mut(slot).and_then(Option::as_mut)
    }

    /// Log lines under the chain's plugin names.
    fn show(&self, slot: usize, outcome: &Outcome) {
        if let Some(served) = self.slot(slot) {
            print_logs(self.index, &served.names.join(","), &outcome.logs);
        }
    }

    /// Log lines of one step, each under its own plugin's name.
    fn show_step(&self, slot: usize, step: &EnvoyOutcome) {
        let Some(served) = self.slot(slot) else {
            return;
        };
        if step.filters.len() == served.names.len() {
            for (filter, name) in step.filters.iter().zip(&served.names) {
                print_logs(self.index, name, &filter.logs);
            }
        } else {
            self.show(slot, &step.outcome);
        }
    }

    /// New streams go to fresh VMs; the old generation serves the streams
    /// it has until they end (see [`Worker::retire`]). A plugin that does
    /// not start keeps the old generation serving.
    fn reload(&mut self, plans: Arc<Vec<ListenerPlan>>, clusters: Arc<Vec<(String, Upstream)>>) {
        if plans.len() != self.current.len() {
            log::warn!(
                "worker {}: a reload must keep the listeners; restart serve",
                self.index
            );
            return;
        }
        let epoch = self.real_ms();
        match build_served(&plans, &self.shared, self.wall_ms, epoch) {
            Ok(fresh) => {
                for (listener, served) in fresh.into_iter().enumerate() {
                    self.served.push(Some(served));
                    self.current[listener] = self.served.len() - 1;
                }
                if self.index == 0 {
                    let dump = crate::commands::serve::plan::config_dump(&plans, &clusters);
                    if let Ok(mut loaded) = self.loaded.lock() {
                        *loaded = dump;
                    }
                }
                self.clusters = clusters;
                if self.index == 0 {
                    eprintln!(
                        "harness serve: reloaded; new streams use the new modules and configuration"
                    );
                }
            }
            Err(message) => {
                if self.index == 0 {
                    eprintln!(
                        "harness serve: reload refused, the old one keeps serving: {message}"
                    );
                }
            }
        }
    }

    /// Empties the slots of old generations with no stream left.
    fn retire(&mut self) {
        for slot in 0..self.served.len() {
            if self.current.contains(&slot) || self.served[slot].is_none() {
                continue;
            }
            let busy = self.http.keys().chain(self.tcp.keys()).any(|k| k.0 == slot)
                || self.asked.iter().any(|k| k.0 == slot);
            if !busy {
                self.served[slot] = None;
            }
        }
    }

    fn take_job(&mut self, job: Job, events: &mpsc::UnboundedSender<Event>) {
        self.catch_up();
        match job {
            Job::Request {
                listener,
                request,
                body,
                reply,
            } => self.take_request(listener, *request, body, reply, events),
            Job::HttpConnection {
                listener,
                stream,
                watcher,
            } => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => {
                        let requests = self.requests.clone();
                        super::serve_connection(stream, listener, requests, watcher);
                    }
                    Err(e) => log::warn!("worker {}: a connection failed: {e}", self.index),
                }
            }
            Job::Connection { listener, stream } => {
                let slot = self.current.get(listener).copied().unwrap_or(usize::MAX);
                let plan = self.slot(slot).map(|s| &s.plans[s.plan_index]);
                if let Some(ListenerKind::Tcp { cluster }) = plan.map(|p| &p.kind) {
                    let cluster = cluster.clone();
                    self.take_connection(slot, stream, &cluster, events);
                }
            }
            Job::Reload {
                listeners,
                clusters,
            } => self.reload(listeners, clusters),
        }
    }

    fn take_event(&mut self, event: Event, events: &mpsc::UnboundedSender<Event>) {
        self.catch_up();
        match event {
            Event::Upstream { key, answer } => self.take_upstream_answer(key, answer, events),
            Event::Body {
                key,
                from_client,
                part,
            } => self.take_body_part(key, from_client, part),
            // Every stream's watermark is looked at again.
            Event::Drained => self.drained = true,
            Event::Callout {
                listener: slot,
                callout,
                answer,
            } => {
                let Some(served) = self.slot_mut(slot) else {
                    return;
                };
                match served.envoy.answer_held(0, &callout, Some(&answer)) {
                    Ok((_, outcome)) => self.show_step(slot, &outcome),
                    Err(e) => log::warn!("worker {}: {e}", self.index),
                }
            }
            Event::Bytes {
                key,
                from_client,
                bytes,
            } => self.take_bytes(key, from_client, bytes, events),
        }
    }

    /// Sends out what the chains produced (requests and responses,
    /// callouts) and answers the clients whose streams ended.
    fn pump(&mut self, events: &mpsc::UnboundedSender<Event>) {
        self.retire();
        for slot in 0..self.served.len() {
            if self.slot(slot).is_some() {
                self.call_out(slot, events);
            }
        }
        self.carry_streams(events);
        self.reap_connections();
    }

    /// Held http_calls go to their real cluster, each once.
    fn call_out(&mut self, slot: usize, events: &mpsc::UnboundedSender<Event>) {
        let Some(served) = self.slot(slot) else {
            return;
        };
        let held = served.envoy.held_callouts(0);
        let waiting: HashSet<(usize, usize, u32)> =
            held.iter().map(|c| (slot, c.vm, c.record.token)).collect();
        self.asked.retain(|k| k.0 != slot || waiting.contains(k));
        for callout in held {
            if !self.asked.insert((slot, callout.vm, callout.record.token)) {
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
                let _ = events.send(Event::Callout {
                    listener: slot,
                    callout,
                    answer,
                });
            });
        }
    }
}
