//! Caps on what the host holds on a guest's behalf. The guest's own memory
//! is capped (`PluginConfig::max_memory_bytes`), but without these a small
//! guest could make the host hold gigabytes: appending to a body, adding
//! header pairs, logging, filling shared data or a queue, defining metrics.
//! Envoy has no such caps (it would grow until the process is killed), so
//! each refusal is the hostcall's BAD_ARGUMENT with a `[harness]` warning
//! naming the cap; a header map keeps the limits the host already applies
//! when it decodes one (`proxy_abi::MAX_MAP_BYTES`, `MAX_MAP_PAIRS`).

/// One body buffer (what filters write with `proxy_set_buffer_bytes`).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Log text one VM keeps for the outcome in one step; later lines are dropped.
pub const MAX_LOG_BYTES_PER_STEP: usize = 16 * 1024 * 1024;
/// Shared data values and keys, across every vm_id of one process.
pub const MAX_SHARED_DATA_BYTES: usize = 128 * 1024 * 1024;
/// Items waiting in shared queues, across every queue of one process.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Distinct metrics one process defines.
pub const MAX_METRICS: usize = 10_000;
/// Metric ids one VM hands out (every `proxy_define_metric` call takes one).
pub const MAX_METRIC_IDS: usize = 100_000;
/// Samples a histogram keeps (later ones are counted, not kept).
pub const MAX_HISTOGRAM_SAMPLES: usize = 100_000;
