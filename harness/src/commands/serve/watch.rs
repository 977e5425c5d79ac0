//! `harness serve --watch`: a thread that polls the plan's files (modules,
//! configuration, bootstrap) and, when one changed and stayed so for a
//! poll, makes the plan again and hands it to every worker, which starts
//! fresh VMs for new streams (see `worker::Job::Reload`). A plan that does
//! not build keeps the running one, and says why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use harness::HarnessError;

use super::plan::Plan;
use super::worker::Job;

/// Makes the plan again from the same flags or file.
pub(super) type Rebuild = Box<dyn Fn() -> Result<Plan, HarnessError> + Send>;

const POLL: Duration = Duration::from_millis(250);

/// What a file looks like on disk: changed when this does.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// Starts the watching thread; it ends when the workers are gone.
pub(super) fn spawn(
    files: Vec<PathBuf>,
    addresses: Vec<SocketAddr>,
    rebuild: Rebuild,
    queues: Vec<mpsc::UnboundedSender<Job>>,
) {
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    eprintln!("harness serve: watching {}", shown.join(", "));
    let spawned = std::thread::Builder::new()
        .name("watch".to_string())
        .spawn(move || watch(files, &addresses, &rebuild, &queues));
    if let Err(e) = spawned {
        eprintln!("harness serve: --watch could not start its thread: {e}");
    }
}

fn watch(
    mut files: Vec<PathBuf>,
    addresses: &[SocketAddr],
    rebuild: &Rebuild,
    queues: &[mpsc::UnboundedSender<Job>],
) {
    let mut seen = stamps(&files);
    loop {
        std::thread::sleep(POLL);
        if queues.iter().all(mpsc::UnboundedSender::is_closed) {
            return;
        }
        let now = stamps(&files);
        if now == seen {
            continue;
        }
        // Wait for the writer (cargo, an editor) to finish.
        std::thread::sleep(POLL);
        if stamps(&files) != now {
            continue;
        }
        seen = now;
        match rebuild() {
            Ok(plan) => {
                let same = plan.listeners.len() == addresses.len()
                    && plan
                        .listeners
                        .iter()
                        .zip(addresses)
                        .all(|(l, a)| l.address == *a);
                if !same {
                    eprintln!(
                        "harness serve: reload refused, the old one keeps serving: the \
                         listeners changed (their addresses); restart serve for that"
                    );
                    continue;
                }
                files = plan.watched.clone();
                seen = stamps(&files);
                let listeners = Arc::new(plan.listeners);
                let clusters = Arc::new(plan.clusters);
                for queue in queues {
                    let _ = queue.send(Job::Reload {
                        listeners: Arc::clone(&listeners),
                        clusters: Arc::clone(&clusters),
                    });
                }
            }
            Err(e) => eprintln!("harness serve: reload refused, the old one keeps serving: {e}"),
        }
    }
}
