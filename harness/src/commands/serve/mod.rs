//! `harness serve`: filters on real traffic. Listeners (HTTP/1.1 and
//! HTTP/2 cleartext, or TCP) take requests and connections; each worker
//! thread runs its own simulated Envoy per listener (its own VMs) on the
//! real clock: every request goes through the filter chain, the router
//! sends it where its route says, http_calls go to real clusters with the
//! filter's own timeouts, timers fire in real time.
//!
//! Two ways to configure it, one [`plan::Plan`] to run: the quick form
//! `harness serve filter.wasm --config @c.json --listen 127.0.0.1:10000
//! --upstream http://127.0.0.1:8080 [--cluster NAME=http://host:port]...`,
//! or an Envoy bootstrap file, `harness serve -c envoy.yaml` (see
//! [`bootstrap`]), or Istio WasmPlugin resources on the quick form's listener,
//! `harness serve --wasmplugin plugin.yaml --upstream ...` (see [`wasmplugin`]).

mod access_log;
mod admin;
mod bootstrap;
mod carry;
mod http;
mod logs;
mod plan;
mod pool;
mod routes;
mod wasmplugin;
mod watch;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{mpsc, oneshot};

use harness::scenario::plugin_name_of;
use harness::{ByteString, FilterModule, HarnessConfig, HarnessError, LogLevel, SharedHost};

use super::text_or_file;
use http::Upstream;
use plan::{ListenerKind, ListenerPlan, Plan};
use routes::RouteTable;
use worker::{ClientReply, Job};

/// `harness serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The filter module (.wasm; a native twin .so works too). Without one
    /// (and without --wasmplugin), the router alone: a floor to compare
    /// filters against.
    module: Option<PathBuf>,
    /// An Envoy bootstrap file (YAML or JSON): its static listeners,
    /// clusters and admin instead of the flags below.
    #[arg(
        short = 'c',
        long = "config-path",
        value_name = "FILE",
        conflicts_with_all = ["module", "config", "listen", "upstream", "clusters", "name", "root_id", "vm_id", "fail_open", "wasmplugin"]
    )]
    config_path: Option<PathBuf>,
    /// Istio WasmPlugin files (extensions.istio.io/v1alpha1, `---` between
    /// documents): their plugins in one chain in Istio's phase/priority
    /// order, on --listen / --upstream / --cluster. `oci://` images are
    /// pulled with the Docker config's credentials (as publish does) and
    /// checked (sha256 = the manifest digest); pulled modules are cached in
    /// $PUBLISH_CACHE_DIR, else $XDG_CACHE_HOME/publish-wasm, else
    /// ~/.cache/publish-wasm, so imagePullPolicy IfNotPresent starts without
    /// the registry. `file://` or a plain path loads a local module.
    #[arg(
        long,
        value_name = "FILE",
        num_args = 1..,
        conflicts_with_all = ["module", "config", "name", "root_id", "vm_id", "fail_open"]
    )]
    wasmplugin: Vec<PathBuf>,
    /// Plugin configuration: inline text (usually JSON) or @file.
    #[arg(long, requires = "module")]
    config: Option<String>,
    /// Where to listen (HTTP/1.1, and HTTP/2 with prior knowledge)
    /// [default: 127.0.0.1:10000].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The upstream every request is routed to, `http://host:port`.
    #[arg(long, value_name = "URL", required_unless_present = "config_path")]
    upstream: Option<String>,
    /// A cluster the filter may http_call, `NAME=http://host:port` (repeatable).
    #[arg(long = "cluster", value_name = "NAME=URL")]
    clusters: Vec<String>,
    /// Worker threads, each with its own VMs [default: the machine's cores].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Plugin name [default: the module's file name].
    #[arg(long, requires = "module")]
    name: Option<String>,
    /// Root id of the plugin.
    #[arg(long, requires = "module")]
    root_id: Option<String>,
    /// VM id.
    #[arg(long, requires = "module")]
    vm_id: Option<String>,
    /// Let traffic through when the filter traps (Envoy's fail_open).
    #[arg(long, requires = "module")]
    fail_open: bool,
    /// The admin listener (`/ready`, `/stats`, `/stats/prometheus`,
    /// `POST /quitquitquit`), e.g. 127.0.0.1:9901 as Envoy's (over the
    /// bootstrap's `admin`).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// On SIGTERM, Ctrl-C or `/quitquitquit`: stop accepting, then let
    /// requests in flight finish for at most this many seconds (Envoy's
    /// flag name; Istio drains its sidecar for 5 s by default).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    drain_time_s: u64,
    /// Reload when a module or configuration file changes: new streams get
    /// fresh VMs, streams in flight finish on the old ones, and a module or
    /// configuration that does not load keeps the old one serving. With
    /// --wasmplugin: when a WasmPlugin file or a local module changes (images
    /// are fetched again as their imagePullPolicy says).
    #[arg(long)]
    watch: bool,
    /// The filters' log level (what proxy_get_log_level reports; lower
    /// lines are dropped) and the lowest printed: trace, debug, info, warn,
    /// error, critical [default: info, Envoy's]. `POST /logging?level=`
    /// on the admin listener changes what is printed.
    #[arg(long, value_name = "LEVEL", value_parser = super::run::parse_log_level)]
    log_level: Option<LogLevel>,
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

/// The quick form's one plugin.
fn quick_config(args: &ServeArgs, module: &std::path::Path) -> Result<HarnessConfig, HarnessError> {
    let mut config = HarnessConfig::default();
    let plugin = &mut config.plugin;
    plugin.name = match &args.name {
        Some(name) => name.clone(),
        None => module
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
    Ok(config)
}

/// The quick form as a plan: one listener, every request to `--upstream`;
/// its chain the module given, or the plugins of the `--wasmplugin` files.
fn quick_plan(args: &ServeArgs) -> Result<Plan, HarnessError> {
    let Some(upstream) = &args.upstream else {
        return Err(usage(
            "give --upstream (with a module, --wasmplugin files, or neither for the router alone), \
             or an Envoy bootstrap with -c envoy.yaml"
                .to_string(),
        ));
    };
    let upstream = Upstream::parse(upstream, "--upstream")?;
    let mut clusters = Vec::new();
    for spec in &args.clusters {
        let (name, url) = spec.split_once('=').ok_or_else(|| {
            usage(format!(
                "--cluster '{spec}' must look like NAME=http://host:port"
            ))
        })?;
        clusters.push((name.to_string(), Upstream::parse(url, "--cluster")?));
    }
    let (chain, origins, watched) = if args.wasmplugin.is_empty() {
        let Some(module) = &args.module else {
            // No filter: the connection manager with the router alone.
            let (module, config) = plan::pass_through("router");
            return Ok(one_listener(
                args,
                upstream,
                vec![(module, plan::served(config, &clusters))],
                Vec::new(),
                clusters,
                Vec::new(),
            ));
        };
        let config = plan::served(quick_config(args, module)?, &clusters);
        let mut watched = vec![module.clone()];
        if let Some(file) = args.config.as_deref().and_then(|c| c.strip_prefix('@'))
            && file != "-"
        {
            watched.push(PathBuf::from(file));
        }
        (
            vec![(FilterModule::from_file(module)?, config)],
            Vec::new(),
            watched,
        )
    } else {
        let loaded = wasmplugin::load(&args.wasmplugin)?;
        let chain = loaded
            .chain
            .into_iter()
            .map(|(module, config)| (module, plan::served(config, &clusters)))
            .collect();
        (chain, loaded.origins, loaded.watched)
    };
    Ok(one_listener(
        args, upstream, chain, origins, clusters, watched,
    ))
}

/// The quick form's one listener, every request to `upstream`.
fn one_listener(
    args: &ServeArgs,
    upstream: Upstream,
    chain: Vec<(FilterModule, HarnessConfig)>,
    origins: Vec<serde_json::Value>,
    clusters: Vec<(String, Upstream)>,
    watched: Vec<PathBuf>,
) -> Plan {
    let address = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 10000)));
    let listener = ListenerPlan {
        name: address.to_string(),
        address,
        chain,
        origins,
        kind: ListenerKind::Http(Arc::new(RouteTable::everything_to(upstream))),
        access_log: Arc::new(access_log::AccessLogs::default_stdout()),
    };
    Plan {
        listeners: vec![listener],
        clusters,
        admin: None,
        watched,
    }
}

/// The plan the flags or the bootstrap file describe (again on a reload).
fn make_plan(args: &ServeArgs) -> Result<Plan, HarnessError> {
    let mut plan = match &args.config_path {
        Some(path) => bootstrap::load(path)?,
        None => quick_plan(args)?,
    };
    if let Some(level) = args.log_level {
        for listener in &mut plan.listeners {
            for (_, config) in &mut listener.chain {
                config.plugin.log_level = level;
            }
        }
    }
    Ok(plan)
}

fn serve(args: &ServeArgs) -> Result<(), HarnessError> {
    let mut plan = make_plan(args)?;
    if args.admin.is_some() {
        plan.admin = args.admin;
    }
    let options = serde_json::json!({
        "concurrency": args.concurrency,
        "config_path": args.config_path,
        "wasmplugin": args.wasmplugin,
        "drain_time_s": args.drain_time_s,
        "watch": args.watch,
        "log_level": args.log_level.map(LogLevel::name),
    });
    let reload = args.watch.then(|| {
        let args = args.clone();
        Box::new(move || make_plan(&args)) as watch::Rebuild
    });
    let workers = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let drain = Duration::from_secs(args.drain_time_s);
    run(plan, workers, drain, reload, options)
}

/// Starts the workers (every plugin configures before anything listens),
/// binds every listener, and serves until stopped.
fn run(
    plan: Plan,
    workers: usize,
    drain: Duration,
    reload: Option<watch::Rebuild>,
    options: serde_json::Value,
) -> Result<(), HarnessError> {
    let started = Instant::now();
    let shared = SharedHost::new();
    // One wasm log level for the process, as Envoy's (--log-level gave it
    // to every plugin): /logging changes it.
    let configured = plan.listeners.iter().flat_map(|l| &l.chain).next();
    shared.set_log_level(configured.map_or(LogLevel::Info, |(_, c)| c.plugin.log_level));
    let clusters = Arc::new(plan.clusters);
    let listeners = Arc::new(plan.listeners);
    let loaded = Arc::new(Mutex::new(plan::config_dump(&listeners, &clusters)));
    let mut queues = Vec::new();
    let mut threads = Vec::new();
    for index in 0..workers {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let setup = worker::Setup {
            index,
            listeners: Arc::clone(&listeners),
            shared: shared.clone(),
            clusters: Arc::clone(&clusters),
            loaded: Arc::clone(&loaded),
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
    if let Some(rebuild) = reload {
        let addresses = listeners.iter().map(|l| l.address).collect();
        watch::spawn(plan.watched, addresses, rebuild, queues.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the listener's runtime: {e}")))?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let result = runtime.block_on(async {
        if let Some(addr) = plan.admin {
            let state = admin::AdminState {
                shared: shared.clone(),
                stop: Arc::clone(&stop),
                loaded: Arc::clone(&loaded),
                started,
                options,
            };
            admin::serve(addr, state).await?;
        }
        listen(&listeners, queues, workers, stop, drain).await
    });
    drop(runtime);
    for thread in threads {
        let _ = thread.join();
    }
    result
}

/// Binds every listener (all or none), then accepts on each until a
/// signal or `/quitquitquit`.
async fn listen(
    plans: &[ListenerPlan],
    queues: Vec<mpsc::UnboundedSender<Job>>,
    workers: usize,
    quit: Arc<tokio::sync::Notify>,
    drain: Duration,
) -> Result<(), HarnessError> {
    let mut bound = Vec::new();
    for plan in plans {
        let addr = plan.address;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            usage(format!(
                "cannot listen on {addr} (listener {}): {e}",
                plan.name
            ))
        })?;
        bound.push(listener);
    }
    let queues = Arc::new(queues);
    let next = Arc::new(AtomicUsize::new(0));
    let graceful = Arc::new(GracefulShutdown::new());
    let mut accepting = Vec::new();
    for (index, (listener, plan)) in bound.into_iter().zip(plans).enumerate() {
        let at = listener.local_addr().unwrap_or(plan.address);
        let tcp = matches!(plan.kind, ListenerKind::Tcp { .. });
        let scheme = if tcp { "tcp" } else { "http" };
        eprintln!(
            "harness serve: listening on {scheme}://{at} with {workers} worker(s) (listener {})",
            plan.name
        );
        let (queues, next) = (Arc::clone(&queues), Arc::clone(&next));
        let watched = Arc::clone(&graceful);
        accepting.push(tokio::spawn(accept_loop(
            listener, index, tcp, queues, next, watched,
        )));
    }
    tokio::select! {
        () = shutdown_signal() => {}
        () = quit.notified() => {}
    }
    // Drain: no new connections (the listeners close), then each HTTP
    // connection finishes the requests it has in flight and closes
    // (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY), for at most the drain time.
    for task in accepting {
        task.abort();
        let _ = task.await;
    }
    if let Ok(graceful) = Arc::try_unwrap(graceful) {
        let open = graceful.count();
        eprintln!(
            "harness serve: draining {open} connection(s) (at most {} s)",
            drain.as_secs()
        );
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            eprintln!("harness serve: the drain time ran out with requests unanswered");
        }
    }
    eprintln!("harness serve: shutting down");
    Ok(())
}

/// One listener's connections, each handed to one worker.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    index: usize,
    tcp: bool,
    queues: Arc<Vec<mpsc::UnboundedSender<Job>>>,
    next: Arc<AtomicUsize>,
    graceful: Arc<GracefulShutdown>,
) {
    loop {
        let accepted = listener.accept().await;
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
        if tcp {
            // The worker's own runtime drives the proxied sockets.
            match stream.into_std() {
                Ok(stream) => {
                    let _ = queue.send(Job::Connection {
                        listener: index,
                        stream,
                    });
                }
                Err(e) => log::warn!("a connection failed: {e}"),
            }
            continue;
        }
        // The worker's own runtime serves the connection, as an Envoy
        // worker owns its connections: hyper, the chain and the upstream
        // client on one thread, no hop between threads per request.
        match stream.into_std() {
            Ok(stream) => {
                let watcher = graceful.watcher();
                let _ = queue.send(Job::HttpConnection {
                    listener: index,
                    stream,
                    watcher,
                });
            }
            Err(e) => log::warn!("a connection failed: {e}"),
        }
    }
}

/// Serves one HTTP connection on the current (a worker's) runtime; its
/// requests go to `requests`. `watcher` lets the drain wait for it.
pub(crate) fn serve_connection(
    stream: tokio::net::TcpStream,
    listener: usize,
    requests: mpsc::UnboundedSender<Job>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let requests = requests.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(requests, listener, request).await) }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        if let Err(e) = watcher.watch(connection).await {
            log::debug!("connection ended: {e}");
        }
    });
}

/// One request: its head goes to the connection's worker at once (the
/// body follows as the worker reads it), then the response head the
/// worker sends back goes out, its body streaming.
async fn handle(
    queue: mpsc::UnboundedSender<Job>,
    listener: usize,
    request: hyper::Request<Incoming>,
) -> hyper::Response<carry::OutBody> {
    let (parts, body) = request.into_parts();
    let request = Box::new(http::downstream_request(&parts));
    let body = (!hyper::body::Body::is_end_stream(&body)).then_some(body);
    let (reply, answer) = oneshot::channel::<ClientReply>();
    let job = Job::Request {
        listener,
        request,
        body,
        reply,
    };
    if queue.send(job).is_err() {
        return http::plain(503, "harness serve: the worker stopped");
    }
    match answer.await {
        Ok(response) => response,
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
