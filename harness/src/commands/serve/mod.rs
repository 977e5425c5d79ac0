//! `harness serve`: a filter on real traffic. A listener (HTTP/1.1 and
//! HTTP/2 cleartext) takes requests; each worker thread runs its own
//! simulated Envoy (its own VMs) on the real clock: every request goes
//! through the filter chain, the router sends it to the real upstream,
//! http_calls go to real clusters with the filter's own timeouts, timers
//! fire in real time.
//!
//! Quick form only (for now): `harness serve filter.wasm --config @c.json
//! --listen 127.0.0.1:10000 --upstream http://127.0.0.1:8080 [--cluster
//! NAME=http://host:port]... [--concurrency N]`.

mod admin;
mod http;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, oneshot};

use harness::scenario::plugin_name_of;
use harness::{
    ByteString, ClusterSpec, FilterModule, HarnessConfig, HarnessError, HttpCalloutAnswer,
    SharedHost, TraceLevel,
};

use super::text_or_file;
use http::Upstream;
use worker::{Job, Reply};

/// `harness serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The filter module (.wasm; a native twin .so works too).
    module: PathBuf,
    /// Plugin configuration: inline text (usually JSON) or @file.
    #[arg(long)]
    config: Option<String>,
    /// Where to listen (HTTP/1.1, and HTTP/2 with prior knowledge).
    #[arg(long, default_value = "127.0.0.1:10000")]
    listen: SocketAddr,
    /// The upstream every request is routed to, `http://host:port`.
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// A cluster the filter may http_call, `NAME=http://host:port` (repeatable).
    #[arg(long = "cluster", value_name = "NAME=URL")]
    clusters: Vec<String>,
    /// Worker threads, each with its own VMs [default: the machine's cores].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Plugin name [default: the module's file name].
    #[arg(long)]
    name: Option<String>,
    /// Root id of the plugin.
    #[arg(long)]
    root_id: Option<String>,
    /// VM id.
    #[arg(long)]
    vm_id: Option<String>,
    /// Let traffic through when the filter traps (Envoy's fail_open).
    #[arg(long)]
    fail_open: bool,
    /// The admin listener (`/ready`, `/stats`, `/stats/prometheus`,
    /// `POST /quitquitquit`), e.g. 127.0.0.1:9901 as Envoy's.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
}

/// Runs `harness serve` until Ctrl-C / SIGTERM.
pub fn command(args: &ServeArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::failed("harness serve", &e),
    }
}

fn usage(message: String) -> HarnessError {
    HarnessError::Usage(message)
}

/// The plugin's configuration: every cluster's callouts wait for the
/// real answer (`hold`), which the worker fetches.
fn config(
    args: &ServeArgs,
    clusters: &[(String, Upstream)],
) -> Result<HarnessConfig, HarnessError> {
    let mut config = HarnessConfig::default();
    let plugin = &mut config.plugin;
    plugin.name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .module
            .to_str()
            .and_then(plugin_name_of)
            .unwrap_or_else(|| "filter".to_string()),
    };
    if let Some(root_id) = &args.root_id {
        plugin.root_id.clone_from(root_id);
    }
    if let Some(vm_id) = &args.vm_id {
        plugin.vm_id.clone_from(vm_id);
    }
    if let Some(text) = &args.config {
        plugin.configuration = ByteString(text_or_file(text, "--config")?);
    }
    plugin.fail_open = args.fail_open;
    config.trace = TraceLevel::Off;
    config.clusters = clusters
        .iter()
        .map(|(name, _)| ClusterSpec {
            name: name.clone(),
            http: vec![HttpCalloutAnswer {
                hold: true,
                ..HttpCalloutAnswer::default()
            }],
            ..ClusterSpec::default()
        })
        .collect();
    Ok(config)
}

fn serve(args: &ServeArgs) -> Result<(), HarnessError> {
    let upstream = Upstream::parse(&args.upstream, "--upstream")?;
    let mut clusters = Vec::new();
    for spec in &args.clusters {
        let (name, url) = spec.split_once('=').ok_or_else(|| {
            usage(format!(
                "--cluster '{spec}' must look like NAME=http://host:port"
            ))
        })?;
        clusters.push((name.to_string(), Upstream::parse(url, "--cluster")?));
    }
    let config = config(args, &clusters)?;
    let module = FilterModule::from_file(&args.module)?;
    let workers = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let shared = SharedHost::new();
    let clusters = Arc::new(clusters);
    let mut queues = Vec::new();
    let mut threads = Vec::new();
    for index in 0..workers {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let setup = worker::Setup {
            index,
            module: module.clone(),
            config: config.clone(),
            shared: shared.clone(),
            upstream: upstream.clone(),
            clusters: Arc::clone(&clusters),
        };
        let thread = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || worker::run(setup, rx, ready_tx))
            .map_err(|e| usage(format!("cannot start worker thread {index}: {e}")))?;
        // A plugin that does not start stops the server before it listens.
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(usage(message)),
            Err(_) => return Err(usage(format!("worker {index} stopped during start-up"))),
        }
        queues.push(tx);
        threads.push(thread);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the listener's runtime: {e}")))?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let result = runtime.block_on(async {
        if let Some(addr) = args.admin {
            admin::serve(addr, shared.clone(), Arc::clone(&stop)).await?;
        }
        listen(args.listen, queues, workers, stop).await
    });
    drop(runtime);
    for thread in threads {
        let _ = thread.join();
    }
    result
}

async fn listen(
    addr: SocketAddr,
    queues: Vec<mpsc::UnboundedSender<Job>>,
    workers: usize,
    quit: Arc<tokio::sync::Notify>,
) -> Result<(), HarnessError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| usage(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!("harness serve: listening on http://{bound} with {workers} worker(s)");
    let queues = Arc::new(queues);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
            () = quit.notified() => break,
        };
        let (stream, _peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        // Envoy hands each connection to one worker for its whole life.
        let worker = next.fetch_add(1, Ordering::Relaxed) % queues.len();
        let queue = queues[worker].clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let queue = queue.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(queue, request).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("connection ended: {e}");
            }
        });
    }
    eprintln!("harness serve: shutting down");
    Ok(())
}

/// One request: read it whole, hand it to the connection's worker, wait
/// for what the client should receive.
async fn handle(
    queue: mpsc::UnboundedSender<Job>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let request = match http::downstream_request(request).await {
        Ok(r) => r,
        Err(message) => return http::plain(400, &message),
    };
    let (reply, answer) = oneshot::channel::<Reply>();
    if queue.send(Job::Request { request, reply }).is_err() {
        return http::plain(503, "harness serve: the worker stopped");
    }
    match answer.await {
        Ok(reply) => http::client_response(reply),
        Err(_) => http::plain(503, "harness serve: the worker dropped the request"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
