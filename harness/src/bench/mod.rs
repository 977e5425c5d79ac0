//! `harness bench`: how much does Wasm cost? A filter's wasm module against
//! its native twin (the same crate built for the host), both driven through
//! the same host code, so the difference is the VM: per-request latency
//! (HDR histogram, median and p99), throughput on one and two workers,
//! guest-boundary traffic, cold start and memory per VM.
//!
//! A suite file (YAML) lists cases; `harness bench <module.wasm> --native
//! <lib.so>` builds a one-case suite from the command line.

pub mod allocations;
pub mod rss;
mod run;
pub mod stats;
pub mod table;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use run::{
    Backend, BackendRun, BenchOptions, CaseReport, ColdStart, PerRequest, VariantReport, VmMemory,
    run_case, sample_body, variants,
};
use table::{Table, allocs, bytes, count, duration_ns, rate, signed_ns, times};

use crate::error::HarnessError;
use crate::model::{DownstreamRequest, UpstreamResponse};

mod work;

/// What a case sweeps over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sweep {
    /// Only the base request.
    #[default]
    None,
    /// 1, 10 and 50 request headers (and as many response headers).
    Headers,
    /// Response bodies of 0 B, 1 KiB, 64 KiB, 1 MiB (whole), 64 KiB and 1 MiB in 16 KiB chunks.
    ResponseBody,
    /// The same sizes as request bodies.
    RequestBody,
}

impl std::str::FromStr for Sweep {
    type Err = HarnessError;

    /// The names `harness bench --sweep` takes.
    fn from_str(s: &str) -> Result<Sweep, HarnessError> {
        match s {
            "none" => Ok(Sweep::None),
            "headers" => Ok(Sweep::Headers),
            "response-body" => Ok(Sweep::ResponseBody),
            "request-body" => Ok(Sweep::RequestBody),
            _ => Err(HarnessError::Usage(format!(
                "unknown sweep '{s}' (none, headers, response-body, request-body)"
            ))),
        }
    }
}

/// One filter to measure.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchCase {
    /// Shown in the tables.
    pub name: String,
    /// The wasm module.
    pub module: PathBuf,
    /// The native twin (`cargo build --release -p <filter>`: the same
    /// optimisation profile as the wasm build).
    pub native: PathBuf,
    /// Plugin configuration: text, or YAML/JSON structure sent as JSON.
    #[serde(default, deserialize_with = "config_text")]
    pub config: String,
    /// The base request.
    #[serde(default)]
    pub request: DownstreamRequest,
    /// What the upstream answers.
    #[serde(default)]
    pub upstream: UpstreamResponse,
    /// What to sweep.
    #[serde(default)]
    pub sweep: Sweep,
    /// Per-stream buffer limit (bodies above 1 MiB need more).
    #[serde(default)]
    pub buffer_limit_bytes: Option<u64>,
    /// A network filter: each iteration is this whole TCP connection
    /// (instead of `request`/`upstream`/`sweep`).
    #[serde(default)]
    pub connection: Option<crate::model::ConnectionExchange>,
    /// Clusters the filter may call, or tcp_proxy connect to.
    #[serde(default)]
    pub clusters: Vec<crate::model::ClusterSpec>,
}

fn config_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// A suite file: `cases: [...]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// The filters to measure, in order.
    pub cases: Vec<BenchCase>,
}

impl Suite {
    /// Reads a suite; module paths resolve like scenario files' do
    /// (relative to the file, `target/...` under CARGO_TARGET_DIR, the workspace root).
    pub fn from_file(path: &Path) -> Result<Suite, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            HarnessError::Usage(format!(
                "cannot read the bench suite {}: {e}",
                path.display()
            ))
        })?;
        let mut suite: Suite = serde_yaml_ng::from_str(&text)
            .map_err(|e| HarnessError::Usage(format!("bench suite {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for case in &mut suite.cases {
            for p in [&mut case.module, &mut case.native] {
                *p = crate::scenario::resolve_module(&p.to_string_lossy(), base).map_err(|e| {
                    HarnessError::Usage(format!(
                        "bench case {}: {e} (native twins: `cargo build --release -p <filter>`)",
                        case.name
                    ))
                })?;
            }
        }
        Ok(suite)
    }
}

/// Where and with what the numbers were taken.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical CPUs available.
    pub cpus: usize,
    /// `rustc -V` on the PATH, when there is one.
    pub rustc: String,
    /// The wasmtime version the harness links.
    pub wasmtime: String,
    /// `/proc/loadavg` before and after the run (other load on the machine).
    pub load_before: String,
    /// See `load_before`.
    pub load_after: String,
    /// UTC, when the run started.
    pub date: String,
    /// Whether the harness was built with optimisations.
    pub optimized_harness: bool,
}

impl Machine {
    /// Reads the machine's details now.
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let rustc = std::process::Command::new("rustc")
            .arg("-V")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rustc,
            wasmtime: wasmtime_version(include_str!("../../../Cargo.lock")),
            load_before: load_average(),
            load_after: String::new(),
            date: utc_now(),
            optimized_harness: !cfg!(debug_assertions),
        }
    }
}

/// The `wasmtime` package version recorded in a Cargo.lock.
fn wasmtime_version(lock: &str) -> String {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasmtime\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return v.trim_end_matches('"').to_string();
        }
    }
    "unknown".to_string()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// `YYYY-MM-DD HH:MM UTC` for `secs` since the Unix epoch.
fn format_utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(
            || format!("{secs} s after 1970 (out of the calendar's range)"),
            |time| time.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

/// A whole benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The machine.
    pub machine: Machine,
    /// The options used.
    pub options: BenchOptions,
    /// One report per case.
    pub cases: Vec<CaseReport>,
}

impl BenchReport {
    /// Runs every case of a suite (`only`: names to keep; empty keeps all).
    pub fn run(
        suite: &Suite,
        options: &BenchOptions,
        only: &[String],
        progress: &mut dyn FnMut(&str),
    ) -> Result<BenchReport, HarnessError> {
        let mut machine = Machine::detect();
        let mut cases = Vec::new();
        for case in &suite.cases {
            if !only.is_empty() && !only.contains(&case.name) {
                continue;
            }
            cases.push(run_case(case, options, progress)?);
        }
        machine.load_after = load_average();
        Ok(BenchReport {
            machine,
            options: options.clone(),
            cases,
        })
    }

    /// The readable tables.
    pub fn tables(&self) -> Vec<Table> {
        let mut latency = Table::new(
            "Per-request time, full lifecycle (median / p99), wasm against the native twin",
            &[
                "filter",
                "request",
                "native p50",
                "wasm p50",
                "wasm/native",
                "added",
                "native p99",
                "wasm p99",
            ],
        )
        .with_text_columns(2);
        let mut tput = Table::new(
            "Throughput (requests/s): one worker = one core; two workers = one VM each",
            &[
                "filter",
                "request",
                "native 1w",
                "wasm 1w",
                "wasm/native",
                "native 2w",
                "wasm 2w",
                "wasm/native 2w",
            ],
        )
        .with_text_columns(2);
        let mut traffic = Table::new(
            "Guest boundary per request (wasm; the twin makes the same calls)",
            &[
                "filter",
                "request",
                "status",
                "guest entries",
                "hostcalls",
                "bytes copied",
                "heap allocs native",
                "heap allocs wasm",
            ],
        )
        .with_text_columns(2);
        let mut cold = Table::new(
            "Cold start (medians): compile, load precompiled, instantiate, start-up callbacks",
            &[
                "filter",
                "backend",
                "compile",
                "load",
                "instantiate",
                "init+root ctx",
                "on_vm_start",
                "on_configure",
                "artifact -> configured",
            ],
        )
        .with_text_columns(2);
        let mut memory = Table::new(
            "Resident memory added per extra VM (code counted once for wasm; each native VM maps a private copy of the library)",
            &["filter", "backend", "VMs", "idle", "after requests", "of which anonymous", "requests per VM"],
        )
        .with_text_columns(2);
        for case in &self.cases {
            for v in &case.variants {
                let (n, w) = (&v.native, &v.wasm);
                latency.row(vec![
                    case.name.clone(),
                    v.label.clone(),
                    duration_ns(n.latency.median_ns as f64),
                    duration_ns(w.latency.median_ns as f64),
                    times(v.latency_ratio),
                    signed_ns(v.added_ns),
                    duration_ns(n.latency.p99_ns as f64),
                    duration_ns(w.latency.p99_ns as f64),
                ]);
                tput.row(vec![
                    case.name.clone(),
                    v.label.clone(),
                    rate(n.per_core_rps),
                    rate(w.per_core_rps),
                    times(v.throughput_ratio),
                    rate(n.two_worker_rps),
                    rate(w.two_worker_rps),
                    times(v.two_worker_ratio),
                ]);
                traffic.row(vec![
                    case.name.clone(),
                    v.label.clone(),
                    v.status.to_string(),
                    count(w.per_request.guest_entries),
                    count(w.per_request.hostcalls),
                    bytes(w.per_request.bytes_copied),
                    allocs(n.per_request.host_allocations),
                    allocs(w.per_request.host_allocations),
                ]);
            }
            for (backend, c) in [
                ("native", &case.cold_start_native),
                ("wasm", &case.cold_start_wasm),
            ] {
                let opt = |ns: u64| {
                    if ns == 0 {
                        "-".to_string()
                    } else {
                        duration_ns(ns as f64)
                    }
                };
                cold.row(vec![
                    case.name.clone(),
                    backend.to_string(),
                    opt(c.compile_ns),
                    opt(c.load_ns),
                    opt(c.instantiate_ns),
                    opt(c.initialize_ns),
                    opt(c.vm_start_ns),
                    opt(c.configure_ns),
                    opt(c.total_ns),
                ]);
            }
            for (backend, m) in [("native", &case.memory_native), ("wasm", &case.memory_wasm)] {
                memory.row(vec![
                    case.name.clone(),
                    backend.to_string(),
                    m.vms.to_string(),
                    bytes(m.idle_bytes),
                    bytes(m.after_requests_bytes),
                    bytes(m.after_requests_anon_bytes),
                    m.requests.to_string(),
                ]);
            }
        }
        vec![latency, tput, traffic, cold, memory]
    }

    /// The tables and the machine, as printed by `harness bench`.
    pub fn render(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "machine: {} ({} CPUs), {}, wasmtime {}, {}; load average {} before, {} after{}\n\n",
            m.cpu,
            m.cpus,
            m.rustc,
            m.wasmtime,
            m.date,
            m.load_before,
            m.load_after,
            if m.optimized_harness {
                ""
            } else {
                " -- WARNING: unoptimised harness build, numbers are not meaningful"
            }
        );
        for t in self.tables() {
            out.push_str(&t.render());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(
            format_utc(1_704_067_200 + 3_600 + 120),
            "2024-01-01 01:02 UTC"
        );
        assert_eq!(format_utc(1_709_164_800), "2024-02-29 00:00 UTC");
    }

    #[test]
    fn the_wasmtime_version_comes_from_the_lock_file() {
        let lock = "[[package]]\nname = \"wasmtime-environ\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"wasmtime\"\nversion = \"48.0.8\"\n";
        assert_eq!(wasmtime_version(lock), "48.0.8");
        assert_eq!(wasmtime_version(""), "unknown");
    }

    #[test]
    fn a_suite_takes_structured_or_text_configuration() {
        let suite: Suite = serde_yaml_ng::from_str(
            "cases:\n  - {name: a, module: a.wasm, native: liba.so, config: {k: [1]}, sweep: headers}\n  - {name: b, module: b.wasm, native: libb.so, config: 'k=v'}\n",
        )
        .unwrap();
        assert_eq!(suite.cases[0].config, r#"{"k":[1]}"#);
        assert_eq!(suite.cases[0].sweep, Sweep::Headers);
        assert_eq!(suite.cases[1].config, "k=v");
        assert_eq!(suite.cases[1].sweep, Sweep::None);
    }

    #[test]
    fn sweeps_make_the_documented_request_shapes() {
        let case = |sweep| BenchCase {
            name: "x".into(),
            module: "x.wasm".into(),
            native: "libx.so".into(),
            config: String::new(),
            request: DownstreamRequest::default(),
            upstream: UpstreamResponse::default(),
            sweep,
            buffer_limit_bytes: None,
            connection: None,
            clusters: Vec::new(),
        };
        let http = |case: BenchCase| -> Vec<(String, crate::model::Exchange)> {
            variants(&case)
                .into_iter()
                .map(|(label, work)| match work {
                    work::Work::Http(ex) => (label, ex),
                    work::Work::Tcp(_) => panic!("an HTTP case made a connection"),
                })
                .collect()
        };
        let headers = http(case(Sweep::Headers));
        let counts: Vec<usize> = headers
            .iter()
            .map(|(_, e)| e.request.headers.len())
            .collect();
        assert_eq!(counts, [1, 10, 50]);
        assert_eq!(headers[2].1.upstream.headers.len(), 50);
        let bodies = http(case(Sweep::ResponseBody));
        let sizes: Vec<(usize, usize)> = bodies
            .iter()
            .map(|(_, e)| (e.upstream.body.total_len(), e.upstream.body.0.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                (0, 0),
                (1024, 1),
                (65536, 1),
                (1 << 20, 1),
                (65536, 4),
                (1 << 20, 64)
            ]
        );
        assert_eq!(bodies[4].0, "64 KiB body in 16 KiB chunks");
        assert!(bodies[2].1.request.body.is_empty());
        assert_eq!(variants(&case(Sweep::None)).len(), 1);
    }

    #[test]
    fn the_sample_body_has_the_size_asked_and_card_numbers() {
        let body = sample_body(4096);
        assert_eq!(body.len(), 4096);
        assert!(String::from_utf8_lossy(&body).contains("4111-1111-1111-0004"));
        assert!(sample_body(0).is_empty());
    }
}
