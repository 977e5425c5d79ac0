//! Runs scripted steps and logs one result line per step at info level.

use crate::abi;
use crate::script::{Decode, Num, Op, Step};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

const INFO: u32 = proxy_abi::LogLevel::Info as u32;

thread_local! {
    /// Values saved by steps (`save`), shared by every context of the VM so a
    /// token saved by a stream can be used by the root and vice versa.
    static VARS: RefCell<HashMap<String, i64>> = RefCell::new(HashMap::new());
}

pub fn say(line: &str) {
    abi::log(INFO, line);
}

fn save(step: &Step, value: i64) {
    if let Some(name) = &step.save {
        VARS.with(|vars| vars.borrow_mut().insert(name.clone(), value));
    }
}

fn resolve(num: &Num) -> i64 {
    match num {
        Num::Literal(value) => *value,
        Num::Var(name) => {
            let key = name.trim_start_matches('$');
            VARS.with(|vars| vars.borrow().get(key).copied())
                .unwrap_or_else(|| {
                    say(&format!("probe: variable `{key}` is not set; using 0"));
                    0
                })
        }
    }
}

fn resolve_u32(num: &Num) -> u32 {
    resolve(num) as u32
}

fn text(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Bytes from hex digits (either case); `None` unless every pair is hex.
fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// The status as the spec names it (`STATUS_<n>` for a code it does not define).
fn status_name(status: u32) -> String {
    proxy_abi::Status::from_u32(status)
        .map_or_else(|| format!("STATUS_{status}"), |s| s.name().to_string())
}

fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    proxy_abi::encode_map_into(
        pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        &mut out,
    );
    out
}

fn pairs_text(bytes: &[u8]) -> String {
    match proxy_abi::decode_map(bytes) {
        Ok(pairs) => {
            let shown: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", text(k), text(v)))
                .collect();
            format!("[{}]", shown.join(", "))
        }
        Err(_) => format!("<malformed pairs: {} bytes>", bytes.len()),
    }
}

fn decode(bytes: &[u8], how: Decode) -> String {
    let eight = || -> Option<[u8; 8]> { bytes.try_into().ok() };
    match how {
        Decode::Str => text(bytes),
        Decode::I64 => eight().map_or_else(
            || format!("<{} bytes, not i64>", bytes.len()),
            |b| i64::from_le_bytes(b).to_string(),
        ),
        Decode::U64 => eight().map_or_else(
            || format!("<{} bytes, not u64>", bytes.len()),
            |b| u64::from_le_bytes(b).to_string(),
        ),
        Decode::F64 => eight().map_or_else(
            || format!("<{} bytes, not f64>", bytes.len()),
            |b| f64::from_le_bytes(b).to_string(),
        ),
        Decode::Bool => match bytes {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => format!("<{} bytes, not bool>", bytes.len()),
        },
        Decode::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Decode::Pairs => pairs_text(bytes),
    }
}

fn owned_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

pub fn run(steps: &[Step]) {
    for step in steps {
        run_one(step);
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Log { .. } => "log",
        Op::GetLogLevel => "get_log_level",
        Op::GetCurrentTime => "get_current_time",
        Op::SetTickPeriod { .. } => "set_tick_period",
        Op::GetHeader { .. } => "get_header",
        Op::GetHeaders { .. } => "get_headers",
        Op::SetHeaders { .. } => "set_headers",
        Op::AddHeader { .. } => "add_header",
        Op::ReplaceHeader { .. } => "replace_header",
        Op::RemoveHeader { .. } => "remove_header",
        Op::GetHeaderMapSize { .. } => "get_header_map_size",
        Op::GetBuffer { .. } => "get_buffer",
        Op::SetBuffer { .. } => "set_buffer",
        Op::GetBufferStatus { .. } => "get_buffer_status",
        Op::GetProperty { .. } => "get_property",
        Op::SetProperty { .. } => "set_property",
        Op::GetSharedData { .. } => "get_shared_data",
        Op::SetSharedData { .. } => "set_shared_data",
        Op::RegisterQueue { .. } => "register_queue",
        Op::ResolveQueue { .. } => "resolve_queue",
        Op::Enqueue { .. } => "enqueue",
        Op::Dequeue { .. } => "dequeue",
        Op::DefineMetric { .. } => "define_metric",
        Op::IncrementMetric { .. } => "increment_metric",
        Op::RecordMetric { .. } => "record_metric",
        Op::GetMetric { .. } => "get_metric",
        Op::HttpCall { .. } => "http_call",
        Op::GrpcCall { .. } => "grpc_call",
        Op::GrpcStream { .. } => "grpc_stream",
        Op::GrpcSend { .. } => "grpc_send",
        Op::GrpcCancel { .. } => "grpc_cancel",
        Op::GrpcClose { .. } => "grpc_close",
        Op::GetStatus => "get_status",
        Op::ContinueStream { .. } => "continue_stream",
        Op::CloseStream { .. } => "close_stream",
        Op::SendLocalResponse { .. } => "send_local_response",
        Op::CallForeign { .. } => "call_foreign",
        Op::SetEffectiveContext { .. } => "set_effective_context",
        Op::Done => "done",
        Op::Panic { .. } => "panic",
        Op::Stdout { .. } => "stdout",
        Op::Stderr { .. } => "stderr",
        Op::EnvVar { .. } => "env_var",
        Op::Random { .. } => "random",
        Op::WasiTime => "wasi_time",
    }
}

/// Maps an SDK callout result to (status code, token).
fn callout_result(result: Result<u32, proxy_wasm::types::Status>) -> (u32, u32) {
    match result {
        Ok(token) => (0, token),
        Err(status) => (status as u32, 0),
    }
}

fn run_one(step: &Step) {
    let label = step.label.as_deref().unwrap_or(op_name(&step.op));
    let line = |status: u32, rest: String| {
        if rest.is_empty() {
            format!("{label}: {}", status_name(status))
        } else {
            format!("{label}: {} {rest}", status_name(status))
        }
    };
    let out = match &step.op {
        Op::Log { level, message } => {
            let status = abi::log(*level, message);
            if status == 0 {
                // The message itself is the observable result.
                return;
            }
            line(status, String::new())
        }
        Op::GetLogLevel => {
            let (status, level) = abi::get_log_level();
            save(step, i64::from(level));
            line(status, format!("level={level}"))
        }
        Op::GetCurrentTime => {
            let (status, ns) = abi::current_time();
            save(step, ns as i64);
            line(status, format!("ns={ns}"))
        }
        Op::SetTickPeriod { ms } => line(abi::set_tick_period(*ms), String::new()),
        Op::GetHeader { map, key } => {
            let (status, value) = abi::get_value(*map, key);
            if status == 0 {
                line(status, format!("value={}", text(&value)))
            } else {
                line(status, String::new())
            }
        }
        Op::GetHeaders { map } => {
            let (status, bytes) = abi::get_pairs(*map);
            line(status, format!("pairs={}", pairs_text(&bytes)))
        }
        Op::SetHeaders { map, pairs } => {
            line(abi::set_pairs(*map, &encode_pairs(pairs)), String::new())
        }
        Op::AddHeader { map, key, value } => line(abi::add_value(*map, key, value), String::new()),
        Op::ReplaceHeader { map, key, value } => {
            line(abi::replace_value(*map, key, value), String::new())
        }
        Op::RemoveHeader { map, key } => line(abi::remove_value(*map, key), String::new()),
        Op::GetHeaderMapSize { map } => {
            let (status, size) = abi::map_size(*map);
            save(step, size as i64);
            line(status, format!("size={size}"))
        }
        Op::GetBuffer { buffer, start, max } => {
            let (status, bytes) = abi::get_buffer(*buffer, *start, *max);
            save(step, bytes.len() as i64);
            line(status, format!("bytes={}", text(&bytes)))
        }
        Op::SetBuffer {
            buffer,
            start,
            size,
            data,
        } => line(
            abi::set_buffer(*buffer, *start, *size, data.as_bytes()),
            String::new(),
        ),
        Op::GetBufferStatus { buffer } => {
            let (status, length, flags) = abi::buffer_status(*buffer);
            save(step, length as i64);
            line(status, format!("length={length} flags={flags}"))
        }
        Op::GetProperty { path, decode: how } => {
            let (status, bytes) = abi::get_property(path.join("\0").as_bytes());
            if status == 0 {
                line(status, format!("value={}", decode(&bytes, *how)))
            } else {
                line(status, String::new())
            }
        }
        Op::SetProperty { path, value } => line(
            abi::set_property(path.join("\0").as_bytes(), value.as_bytes()),
            String::new(),
        ),
        Op::GetSharedData { key } => {
            let (status, value, cas) = abi::get_shared_data(key);
            save(step, i64::from(cas));
            if status == 0 {
                line(status, format!("value={} cas={cas}", text(&value)))
            } else {
                line(status, String::new())
            }
        }
        Op::SetSharedData { key, value, cas } => line(
            abi::set_shared_data(key, value.as_bytes(), resolve_u32(cas)),
            String::new(),
        ),
        Op::RegisterQueue { name } => {
            let (status, id) = abi::register_queue(name);
            save(step, i64::from(id));
            line(status, format!("id={id}"))
        }
        Op::ResolveQueue { vm_id, name } => {
            let (status, id) = abi::resolve_queue(vm_id, name);
            save(step, i64::from(id));
            line(status, format!("id={id}"))
        }
        Op::Enqueue { queue, data } => line(
            abi::enqueue(resolve_u32(queue), data.as_bytes()),
            String::new(),
        ),
        Op::Dequeue { queue } => {
            let (status, data) = abi::dequeue(resolve_u32(queue));
            if status == 0 {
                line(status, format!("data={}", text(&data)))
            } else {
                line(status, String::new())
            }
        }
        Op::DefineMetric { kind, name } => {
            let (status, id) = abi::define_metric(*kind, name);
            save(step, i64::from(id));
            line(status, format!("id={id}"))
        }
        Op::IncrementMetric { id, offset } => line(
            abi::increment_metric(resolve_u32(id), *offset),
            String::new(),
        ),
        Op::RecordMetric { id, value } => {
            line(abi::record_metric(resolve_u32(id), *value), String::new())
        }
        Op::GetMetric { id } => {
            let (status, value) = abi::get_metric(resolve_u32(id));
            save(step, value as i64);
            line(status, format!("value={value}"))
        }
        Op::HttpCall {
            cluster,
            headers,
            body,
            trailers,
            timeout_ms,
        } => {
            let (status, token) = callout_result(proxy_wasm::hostcalls::dispatch_http_call(
                cluster,
                owned_pairs(headers),
                body.as_deref().map(str::as_bytes),
                owned_pairs(trailers),
                Duration::from_millis(*timeout_ms),
            ));
            save(step, i64::from(token));
            line(status, format!("token={token}"))
        }
        Op::GrpcCall {
            cluster,
            service,
            method,
            metadata,
            message,
            timeout_ms,
        } => {
            let metadata: Vec<(&str, &[u8])> = metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            let (status, token) = callout_result(proxy_wasm::hostcalls::dispatch_grpc_call(
                cluster,
                service,
                method,
                metadata,
                message.as_deref().map(str::as_bytes),
                Duration::from_millis(*timeout_ms),
            ));
            save(step, i64::from(token));
            line(status, format!("token={token}"))
        }
        Op::GrpcStream {
            cluster,
            service,
            method,
            metadata,
        } => {
            let metadata: Vec<(&str, &[u8])> = metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            let (status, token) = callout_result(proxy_wasm::hostcalls::open_grpc_stream(
                cluster, service, method, metadata,
            ));
            save(step, i64::from(token));
            line(status, format!("token={token}"))
        }
        Op::GrpcSend {
            token,
            message,
            end_stream,
        } => line(
            abi::grpc_send(resolve_u32(token), message.as_bytes(), *end_stream),
            String::new(),
        ),
        Op::GrpcCancel { token } => line(abi::grpc_cancel(resolve_u32(token)), String::new()),
        Op::GrpcClose { token } => line(abi::grpc_close(resolve_u32(token)), String::new()),
        Op::GetStatus => {
            let (status, code, message) = abi::get_status();
            save(step, i64::from(code));
            line(status, format!("code={code} message={}", text(&message)))
        }
        Op::ContinueStream { stream } => line(abi::continue_stream(*stream), String::new()),
        Op::CloseStream { stream } => line(abi::close_stream(*stream), String::new()),
        Op::SendLocalResponse {
            status,
            details,
            body,
            headers,
            grpc_status,
        } => line(
            abi::send_local_response(
                *status,
                details,
                body.as_bytes(),
                &encode_pairs(headers),
                *grpc_status,
            ),
            String::new(),
        ),
        Op::CallForeign {
            name,
            args,
            args_hex,
            decode: how,
        } => match args_hex.as_deref().map(parse_hex) {
            Some(None) => format!("{label}: args_hex is not hex"),
            parsed => {
                let bytes = parsed.flatten().unwrap_or_else(|| args.as_bytes().to_vec());
                let (status, result) = abi::call_foreign(name, &bytes);
                line(status, format!("result={}", decode(&result, *how)))
            }
        },
        Op::SetEffectiveContext { id } => {
            line(abi::set_effective_context(resolve_u32(id)), String::new())
        }
        Op::Done => line(abi::done(), String::new()),
        Op::Panic { message } => panic!("{message}"),
        Op::Stdout { text } => {
            println!("{text}");
            return;
        }
        Op::Stderr { text } => {
            eprintln!("{text}");
            return;
        }
        Op::EnvVar { name } => match std::env::var(name) {
            Ok(value) => format!("{label}: value={value:?}"),
            Err(_) => format!("{label}: missing"),
        },
        Op::Random { len } => {
            let (errno, bytes) = abi::random(*len);
            let nonzero = bytes.iter().any(|b| *b != 0);
            format!(
                "{label}: errno={errno} len={} nonzero={nonzero}",
                bytes.len()
            )
        }
        Op::WasiTime => match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => {
                save(step, since.as_nanos() as i64);
                format!("{label}: ns={}", since.as_nanos())
            }
            Err(_) => format!("{label}: before the epoch"),
        },
    };
    say(&out);
}
