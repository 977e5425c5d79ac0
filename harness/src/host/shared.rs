//! State Envoy shares between workers: shared data and queues (scoped by
//! vm_id) and metrics. One [`SharedHost`] is one simulated Envoy process;
//! nothing here is global, so independent harnesses never see each other.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::abi::{MetricType, Status};
use crate::model::{LogLevel, MetricKind, MetricSnapshot};

/// State shared by every worker (harness) of one simulated Envoy process.
/// Cheap to clone; clones share the same state.
#[derive(Clone, Default)]
pub struct SharedHost {
    inner: Arc<SharedInner>,
}

#[derive(Default)]
struct SharedInner {
    data: Mutex<SharedData>,
    cas_counter: AtomicU32,
    queues: Mutex<Queues>,
    metrics: Mutex<Metrics>,
    /// The process's wasm log level once set at run time (0: not set;
    /// otherwise the level's number + 1), as Envoy's admin `/logging`
    /// sets its wasm logger for every plugin.
    log_level: AtomicU32,
}

/// Shared data per vm_id, and the bytes it holds (keys and values).
#[derive(Default)]
struct SharedData {
    by_vm: HashMap<String, HashMap<Vec<u8>, SharedValue>>,
    bytes: usize,
}

struct SharedValue {
    value: Vec<u8>,
    cas: u32,
}

/// A notification Envoy posts to the worker that registered a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueReady {
    pub root_context_id: u32,
    pub queue_id: u32,
}

/// Where a worker receives queue notifications.
pub(crate) type Inbox = Mutex<Vec<QueueReady>>;

struct Queue {
    items: VecDeque<Vec<u8>>,
    owner: Weak<Inbox>,
    root_context_id: u32,
}

#[derive(Default)]
struct Queues {
    by_name: HashMap<(String, Vec<u8>), u32>,
    queues: HashMap<u32, Queue>,
    next_id: u32,
    /// Bytes of every item waiting, against `caps::MAX_QUEUED_BYTES`.
    bytes: usize,
}

struct Metric {
    name: String,
    kind: MetricKind,
    value: i64,
    samples: Vec<u64>,
}

#[derive(Default)]
struct Metrics {
    stats: Vec<Metric>,
    by_name: HashMap<(u32, String), usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SharedHost {
    /// Fresh, empty shared state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every plugin's log level from now on, what `proxy_get_log_level`
    /// reports and below which log lines are dropped (Envoy's `POST
    /// /logging?level=`, which sets the wasm logger they all share).
    pub fn set_log_level(&self, level: LogLevel) {
        let stored = level.as_u32() + 1;
        self.inner.log_level.store(stored, Ordering::Relaxed);
    }

    /// The level [`SharedHost::set_log_level`] set, if any.
    pub fn log_level(&self) -> Option<LogLevel> {
        let stored = self.inner.log_level.load(Ordering::Relaxed);
        stored.checked_sub(1).and_then(LogLevel::from_u32)
    }

    fn next_cas(&self) -> u32 {
        loop {
            let v = self
                .inner
                .cas_counter
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if v != 0 {
                return v;
            }
        }
    }

    /// `proxy_get_shared_data`: value and CAS, or NOT_FOUND.
    pub fn get_data(&self, vm_id: &str, key: &[u8], out: &mut Vec<u8>) -> Result<u32, Status> {
        let data = lock(&self.inner.data);
        let v = data
            .by_vm
            .get(vm_id)
            .and_then(|m| m.get(key))
            .ok_or(Status::NotFound)?;
        out.clear();
        out.extend_from_slice(&v.value);
        Ok(v.cas)
    }

    /// `proxy_set_shared_data`: cas 0 writes unconditionally; a stale cas
    /// is CAS_MISMATCH; a write past `caps::MAX_SHARED_DATA_BYTES` in all
    /// is BAD_ARGUMENT (Envoy has no cap).
    pub fn set_data(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Status {
        let mut data = lock(&self.inner.data);
        let held = data.bytes;
        let map = data.by_vm.entry(vm_id.to_string()).or_default();
        let (old, known_cas) = match map.get(key) {
            Some(existing) => (key.len() + existing.value.len(), Some(existing.cas)),
            None => (0, None),
        };
        if let Some(current) = known_cas
            && cas != 0
            && cas != current
        {
            return Status::CasMismatch;
        }
        let after = held - old + key.len() + value.len();
        if after > super::caps::MAX_SHARED_DATA_BYTES {
            return Status::BadArgument;
        }
        // Envoy accepts any cas for a new key.
        let cas = self.next_cas();
        match map.get_mut(key) {
            Some(existing) => {
                existing.value.clear();
                existing.value.extend_from_slice(value);
                existing.cas = cas;
            }
            None => {
                let value = value.to_vec();
                map.insert(key.to_vec(), SharedValue { value, cas });
            }
        }
        data.bytes = after;
        Status::Ok
    }

    /// Every shared-data entry of a vm_id (for inspection), sorted by key.
    pub fn shared_data(&self, vm_id: &str) -> Vec<(Vec<u8>, Vec<u8>, u32)> {
        let data = lock(&self.inner.data);
        let mut out: Vec<_> = data
            .by_vm
            .get(vm_id)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.value.clone(), v.cas))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// `proxy_register_shared_queue`: ids start at 1; registering an existing
    /// name again returns its id and moves notifications to the new registrant.
    pub(crate) fn register_queue(
        &self,
        vm_id: &str,
        name: &[u8],
        owner: &Arc<Inbox>,
        root_context_id: u32,
    ) -> u32 {
        let mut q = lock(&self.inner.queues);
        let key = (vm_id.to_string(), name.to_vec());
        if let Some(&id) = q.by_name.get(&key) {
            if let Some(queue) = q.queues.get_mut(&id) {
                queue.owner = Arc::downgrade(owner);
                queue.root_context_id = root_context_id;
            }
            return id;
        }
        q.next_id += 1;
        let id = q.next_id;
        q.by_name.insert(key, id);
        q.queues.insert(
            id,
            Queue {
                items: VecDeque::new(),
                owner: Arc::downgrade(owner),
                root_context_id,
            },
        );
        id
    }

    /// `proxy_resolve_shared_queue`.
    pub fn resolve_queue(&self, vm_id: &str, name: &[u8]) -> Option<u32> {
        lock(&self.inner.queues)
            .by_name
            .get(&(vm_id.to_string(), name.to_vec()))
            .copied()
    }

    /// `proxy_enqueue_shared_queue`: NOT_FOUND for an unknown id,
    /// BAD_ARGUMENT past `caps::MAX_QUEUED_BYTES` waiting in all queues
    /// (Envoy has no cap); posts on_queue_ready to the registering worker.
    pub fn enqueue(&self, queue_id: u32, value: &[u8]) -> Status {
        let mut guard = lock(&self.inner.queues);
        let q = &mut *guard;
        let after = q.bytes + value.len();
        let Some(queue) = q.queues.get_mut(&queue_id) else {
            return Status::NotFound;
        };
        if after > super::caps::MAX_QUEUED_BYTES {
            return Status::BadArgument;
        }
        queue.items.push_back(value.to_vec());
        q.bytes = after;
        if let Some(inbox) = queue.owner.upgrade() {
            lock(&inbox).push(QueueReady {
                root_context_id: queue.root_context_id,
                queue_id,
            });
        }
        Status::Ok
    }

    /// `proxy_dequeue_shared_queue`: NOT_FOUND for an unknown id, EMPTY when empty.
    pub fn dequeue(&self, queue_id: u32, out: &mut Vec<u8>) -> Status {
        let mut guard = lock(&self.inner.queues);
        let q = &mut *guard;
        let Some(queue) = q.queues.get_mut(&queue_id) else {
            return Status::NotFound;
        };
        match queue.items.pop_front() {
            Some(v) => {
                q.bytes -= v.len();
                out.clear();
                out.extend_from_slice(&v);
                Status::Ok
            }
            None => Status::Empty,
        }
    }

    /// Defines (or finds) a metric by kind and name; returns its stat
    /// index, or `None` past `caps::MAX_METRICS` distinct metrics.
    pub(crate) fn define_metric(&self, kind: MetricType, name: &str) -> Option<usize> {
        let mut m = lock(&self.inner.metrics);
        let key = (kind as u32, name.to_string());
        if let Some(&i) = m.by_name.get(&key) {
            return Some(i);
        }
        if m.stats.len() >= super::caps::MAX_METRICS {
            return None;
        }
        let kind = match kind {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram => MetricKind::Histogram,
        };
        m.stats.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
            samples: Vec::new(),
        });
        let i = m.stats.len() - 1;
        m.by_name.insert(key, i);
        Some(i)
    }

    /// `proxy_increment_metric` with Envoy's rules: counters need a positive
    /// delta, gauges take any delta, histograms refuse.
    pub(crate) fn increment_metric(&self, stat: usize, offset: i64) -> Status {
        let mut m = lock(&self.inner.metrics);
        let Some(metric) = m.stats.get_mut(stat) else {
            return Status::NotFound;
        };
        match metric.kind {
            MetricKind::Counter if offset > 0 => metric.value = metric.value.saturating_add(offset),
            MetricKind::Counter => return Status::BadArgument,
            MetricKind::Gauge => metric.value = metric.value.saturating_add(offset),
            MetricKind::Histogram => return Status::BadArgument,
        }
        Status::Ok
    }

    /// `proxy_record_metric`: adds to a counter, sets a gauge, samples a histogram.
    pub(crate) fn record_metric(&self, stat: usize, value: u64) -> Status {
        let mut m = lock(&self.inner.metrics);
        let Some(metric) = m.stats.get_mut(stat) else {
            return Status::NotFound;
        };
        let as_i64 = i64::try_from(value).unwrap_or(i64::MAX);
        match metric.kind {
            MetricKind::Counter => metric.value = metric.value.saturating_add(as_i64),
            MetricKind::Gauge => metric.value = as_i64,
            MetricKind::Histogram => {
                if metric.samples.len() < super::caps::MAX_HISTOGRAM_SAMPLES {
                    metric.samples.push(value);
                }
                metric.value = metric.value.saturating_add(1);
            }
        }
        Status::Ok
    }

    /// `proxy_get_metric`: histograms are BAD_ARGUMENT.
    pub(crate) fn get_metric(&self, stat: usize) -> Result<u64, Status> {
        let m = lock(&self.inner.metrics);
        let metric = m.stats.get(stat).ok_or(Status::NotFound)?;
        match metric.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(metric.value as u64),
        }
    }

    /// Every metric, in definition order.
    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        lock(&self.inner.metrics)
            .stats
            .iter()
            .map(|s| MetricSnapshot {
                name: s.name.clone(),
                kind: s.kind,
                value: s.value,
                samples: s.samples.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules() {
        let s = SharedHost::new();
        let mut out = Vec::new();
        assert_eq!(s.get_data("vm", b"k", &mut out), Err(Status::NotFound));
        assert_eq!(s.set_data("vm", b"k", b"v1", 0), Status::Ok);
        let cas1 = s.get_data("vm", b"k", &mut out).unwrap();
        assert_ne!(cas1, 0);
        assert_eq!(out, b"v1");
        assert_eq!(s.set_data("vm", b"k", b"v2", cas1), Status::Ok);
        let cas2 = s.get_data("vm", b"k", &mut out).unwrap();
        assert_ne!(cas1, cas2);
        assert_eq!(s.set_data("vm", b"k", b"v3", cas1), Status::CasMismatch);
        assert_eq!(s.set_data("vm", b"k", b"v3", 0), Status::Ok);
        // vm_id scopes the data; the counter is global.
        assert_eq!(s.get_data("other", b"k", &mut out), Err(Status::NotFound));
        s.set_data("other", b"k", b"x", 0);
        assert!(s.get_data("other", b"k", &mut out).unwrap() > cas2);
    }

    #[test]
    fn cas_counter_skips_zero() {
        let s = SharedHost::new();
        s.inner.cas_counter.store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(s.next_cas(), u32::MAX);
        assert_eq!(s.next_cas(), 1);
    }

    #[test]
    fn queues_notify_owner() {
        let s = SharedHost::new();
        let inbox = Arc::new(Inbox::default());
        let id = s.register_queue("vm", b"q", &inbox, 1);
        assert_eq!(id, 1);
        assert_eq!(s.register_queue("vm", b"q", &inbox, 1), 1);
        assert_eq!(s.resolve_queue("vm", b"q"), Some(1));
        assert_eq!(s.resolve_queue("vm2", b"q"), None);
        let mut out = Vec::new();
        assert_eq!(s.dequeue(id, &mut out), Status::Empty);
        assert_eq!(s.enqueue(9, b"x"), Status::NotFound);
        assert_eq!(s.enqueue(id, b"x"), Status::Ok);
        assert_eq!(
            lock(&inbox).as_slice(),
            &[QueueReady {
                root_context_id: 1,
                queue_id: 1
            }]
        );
        assert_eq!(s.dequeue(id, &mut out), Status::Ok);
        assert_eq!(out, b"x");
    }

    #[test]
    fn metric_rules() {
        let s = SharedHost::new();
        let c = s.define_metric(MetricType::Counter, "c").expect("room");
        let g = s.define_metric(MetricType::Gauge, "g").expect("room");
        let h = s.define_metric(MetricType::Histogram, "h").expect("room");
        assert_eq!(s.increment_metric(c, 0), Status::BadArgument);
        assert_eq!(s.increment_metric(c, -1), Status::BadArgument);
        assert_eq!(s.increment_metric(c, 2), Status::Ok);
        assert_eq!(s.record_metric(c, 3), Status::Ok);
        assert_eq!(s.get_metric(c), Ok(5));
        assert_eq!(s.increment_metric(g, -4), Status::Ok);
        assert_eq!(s.record_metric(g, 7), Status::Ok);
        assert_eq!(s.increment_metric(g, -2), Status::Ok);
        assert_eq!(s.get_metric(g), Ok(5));
        assert_eq!(s.record_metric(h, 10), Status::Ok);
        assert_eq!(s.get_metric(h), Err(Status::BadArgument));
        assert_eq!(s.increment_metric(h, 1), Status::BadArgument);
        assert_eq!(s.get_metric(99), Err(Status::NotFound));
        assert_eq!(s.define_metric(MetricType::Counter, "c"), Some(c));
    }
}
