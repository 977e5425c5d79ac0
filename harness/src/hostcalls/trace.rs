//! What `--trace` (TraceLevel::Hostcalls) records for one hostcall: its
//! arguments as the call meant them (texts and property paths read from
//! guest memory, ABI enums by name) and what it handed back. Runs only at
//! that trace level, after the call, so values the host wrote to guest
//! memory can be read back. One table says how each hostcall's raw
//! arguments read; nothing here is on the path of an untraced call.

use std::fmt::Write;

use super::{GuestMemory, Hostcall, PROXY_HOSTCALL_NAMES, hostcall_name};
use crate::abi::{self, BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use crate::model::{TraceArg, TraceEvent};
use crate::printable::quoted_bytes;

/// Guest bytes shown in full up to this length; longer ones are cut and
/// their length given.
const SHOWN_BYTES: u64 = 80;

/// Serialized header maps larger than this are shown by size only (their
/// pairs would not fit a trace line anyway).
const DECODED_PAIRS_MAX: u64 = 64 * 1024;

/// How raw arguments read, in order. Texts, paths and pairs take two raw
/// arguments (pointer, size); everything else one.
#[derive(Clone, Copy)]
enum In {
    Number(&'static str),
    I32(&'static str),
    I64(&'static str),
    Flag(&'static str),
    Level,
    Map,
    Buffer,
    Stream,
    Metric,
    Text(&'static str),
    /// A property path: segments separated by NUL.
    Path,
    /// A serialized header map.
    Pairs(&'static str),
    /// An out-parameter: not shown as an argument, read back by [`Out`].
    Out,
}

/// What an OK call wrote through its out-parameters (indices of the raw
/// arguments holding the pointers).
#[derive(Clone, Copy)]
enum Out {
    /// A buffer the host allocated: pointer word at `.1`, size word at `.2`.
    Bytes(&'static str, usize, usize),
    /// The same, holding a serialized header map.
    Pairs(&'static str, usize, usize),
    U32(&'static str, usize),
    U64(&'static str, usize),
    /// A pointer-sized length.
    Word(&'static str, usize),
    Level(usize),
}

struct Shape {
    call: Hostcall,
    args: &'static [In],
    returns: &'static [Out],
}

macro_rules! shapes {
    ($( $call:ident ( $($arg:expr),* ) -> [$($out:expr),*]; )*) => {
        const SHAPES: &[Shape] = &[$(
            Shape { call: Hostcall::$call, args: &[$($arg),*], returns: &[$($out),*] },
        )*];
    };
}

use In::{Buffer, Flag, I32, I64, Level, Map, Metric, Number, Path, Stream, Text};

shapes! {
    proxy_log(Level, Text("message")) -> [];
    proxy_get_log_level(In::Out) -> [Out::Level(0)];
    proxy_get_current_time_nanoseconds(In::Out) -> [Out::U64("time_ns", 0)];
    proxy_set_tick_period_milliseconds(Number("period_ms")) -> [];
    proxy_get_buffer_bytes(Buffer, Number("start"), Number("max_size"), In::Out, In::Out)
        -> [Out::Bytes("data", 3, 4)];
    proxy_set_buffer_bytes(Buffer, Number("start"), Number("size"), Text("data")) -> [];
    proxy_get_buffer_status(Buffer, In::Out, In::Out)
        -> [Out::Word("length", 1), Out::U32("flags", 2)];
    proxy_get_header_map_pairs(Map, In::Out, In::Out) -> [Out::Pairs("pairs", 1, 2)];
    proxy_set_header_map_pairs(Map, In::Pairs("pairs")) -> [];
    proxy_get_header_map_size(Map, In::Out) -> [Out::Word("size", 1)];
    proxy_get_header_map_value(Map, Text("key"), In::Out, In::Out) -> [Out::Bytes("value", 3, 4)];
    proxy_replace_header_map_value(Map, Text("key"), Text("value")) -> [];
    proxy_remove_header_map_value(Map, Text("key")) -> [];
    proxy_add_header_map_value(Map, Text("key"), Text("value")) -> [];
    proxy_get_property(Path, In::Out, In::Out) -> [Out::Bytes("value", 2, 3)];
    proxy_set_property(Path, Text("value")) -> [];
    proxy_get_shared_data(Text("key"), In::Out, In::Out, In::Out)
        -> [Out::Bytes("value", 2, 3), Out::U32("cas", 4)];
    proxy_set_shared_data(Text("key"), Text("value"), Number("cas")) -> [];
    proxy_register_shared_queue(Text("name"), In::Out) -> [Out::U32("queue_id", 2)];
    proxy_resolve_shared_queue(Text("vm_id"), Text("name"), In::Out) -> [Out::U32("queue_id", 4)];
    proxy_dequeue_shared_queue(Number("queue_id"), In::Out, In::Out) -> [Out::Bytes("data", 1, 2)];
    proxy_enqueue_shared_queue(Number("queue_id"), Text("value")) -> [];
    proxy_continue_stream(Stream) -> [];
    proxy_close_stream(Stream) -> [];
    proxy_send_local_response(Number("status_code"), Text("details"), Text("body"),
        In::Pairs("headers"), I32("grpc_status")) -> [];
    proxy_http_call(Text("cluster"), In::Pairs("headers"), Text("body"), In::Pairs("trailers"),
        Number("timeout_ms"), In::Out) -> [Out::U32("token", 9)];
    proxy_grpc_call(Text("cluster"), Text("service"), Text("method"), In::Pairs("metadata"),
        Text("message"), Number("timeout_ms"), In::Out) -> [Out::U32("token", 11)];
    proxy_grpc_stream(Text("cluster"), Text("service"), Text("method"), In::Pairs("metadata"),
        In::Out) -> [Out::U32("token", 8)];
    proxy_grpc_send(Number("token"), Text("message"), Flag("end_stream")) -> [];
    proxy_grpc_cancel(Number("token")) -> [];
    proxy_grpc_close(Number("token")) -> [];
    proxy_get_status(In::Out, In::Out, In::Out)
        -> [Out::U32("code", 0), Out::Bytes("message", 1, 2)];
    proxy_set_effective_context(Number("context_id")) -> [];
    proxy_call_foreign_function(Text("name"), Text("arguments"), In::Out, In::Out)
        -> [Out::Bytes("result", 4, 5)];
    proxy_done() -> [];
    proxy_define_metric(Metric, Text("name"), In::Out) -> [Out::U32("metric_id", 3)];
    proxy_get_metric(Number("metric_id"), In::Out) -> [Out::U64("value", 1)];
    proxy_record_metric(Number("metric_id"), Number("value")) -> [];
    proxy_increment_metric(Number("metric_id"), I64("offset")) -> [];
    proxy_continue_request() -> [];
    proxy_continue_response() -> [];
    proxy_get_configuration(In::Out, In::Out) -> [Out::Bytes("configuration", 0, 1)];
    proxy_clear_route_cache() -> [];
}

/// The trace entry for hostcall `index` called with `args` that answered
/// `status`. `memory` is read only, within its bounds: a pointer the guest
/// got wrong shows as such instead of failing the call.
pub(crate) fn event<M: GuestMemory>(
    memory: &M,
    index: usize,
    args: &[u64],
    status: u32,
) -> TraceEvent {
    let is_proxy = index < PROXY_HOSTCALL_NAMES.len();
    let status_name = match Status::from_u32(status) {
        Some(s) if is_proxy => s.name().to_string(),
        _ if is_proxy => format!("status {status}"),
        _ => format!("errno {status}"),
    };
    let (decoded, returned) = match SHAPES.iter().find(|s| s.call as usize == index) {
        // Scripted callers pass no raw arguments: nothing to decode.
        Some(shape) if args.len() >= raw_count(shape.args) => {
            let returned = if status == Status::Ok as u32 {
                shape
                    .returns
                    .iter()
                    .map(|out| read_out(memory, args, *out))
                    .collect()
            } else {
                Vec::new()
            };
            (read_args(memory, args, shape.args), returned)
        }
        _ => (Vec::new(), Vec::new()),
    };
    TraceEvent::Hostcall {
        name: hostcall_name(index).to_string(),
        args: args.to_vec(),
        status,
        status_name,
        decoded,
        returned,
    }
}

fn raw_count(args: &[In]) -> usize {
    args.iter()
        .map(|a| match a {
            In::Text(_) | In::Path | In::Pairs(_) => 2,
            _ => 1,
        })
        .sum()
}

fn read_args<M: GuestMemory>(memory: &M, raw: &[u64], shape: &[In]) -> Vec<TraceArg> {
    let mut shown = Vec::with_capacity(shape.len());
    let mut at = 0;
    for arg in shape {
        let v = raw[at];
        let pair = (v, raw.get(at + 1).copied().unwrap_or(0));
        at += 1;
        let (name, value) = match *arg {
            In::Out => continue,
            In::Number(name) => (name, v.to_string()),
            In::I32(name) => (name, (v as u32 as i32).to_string()),
            In::I64(name) => (name, (v as i64).to_string()),
            In::Flag(name) => (name, (v != 0).to_string()),
            In::Level => ("level", enum_name(v, LogLevel::from_u32, LogLevel::name)),
            In::Map => ("map_type", enum_name(v, MapType::from_u32, MapType::name)),
            In::Buffer => (
                "buffer_type",
                enum_name(v, BufferType::from_u32, BufferType::name),
            ),
            In::Stream => (
                "stream_type",
                enum_name(v, StreamType::from_u32, StreamType::name),
            ),
            In::Metric => (
                "metric_type",
                enum_name(v, MetricType::from_u32, MetricType::name),
            ),
            In::Text(name) => {
                at += 1;
                (name, text(memory, pair))
            }
            In::Path => {
                at += 1;
                ("path", path(memory, pair))
            }
            In::Pairs(name) => {
                at += 1;
                (name, pairs(memory, pair))
            }
        };
        shown.push(TraceArg {
            name: name.to_string(),
            value,
        });
    }
    shown
}

fn read_out<M: GuestMemory>(memory: &M, raw: &[u64], out: Out) -> TraceArg {
    let word = |i: usize, width: usize| {
        raw.get(i)
            .and_then(|addr| memory.slice(*addr, width as u64))
            .map(|b| {
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(b);
                u64::from_le_bytes(le)
            })
    };
    let pointer = |i| word(i, M::POINTER_SIZE);
    let (name, value) = match out {
        Out::Bytes(name, p, s) | Out::Pairs(name, p, s) => {
            let value = match (pointer(p), pointer(s)) {
                (Some(addr), Some(len)) if matches!(out, Out::Pairs(..)) => {
                    pairs(memory, (addr, len))
                }
                (Some(addr), Some(len)) => text(memory, (addr, len)),
                _ => unreadable(raw.get(p).copied().unwrap_or(0)),
            };
            (name, value)
        }
        Out::U32(name, i) => (name, number(word(i, 4), raw[i])),
        Out::U64(name, i) => (name, number(word(i, 8), raw[i])),
        Out::Word(name, i) => (name, number(pointer(i), raw[i])),
        Out::Level(i) => (
            "level",
            word(i, 4).map_or_else(
                || unreadable(raw[i]),
                |v| enum_name(v, LogLevel::from_u32, LogLevel::name),
            ),
        ),
    };
    TraceArg {
        name: name.to_string(),
        value,
    }
}

fn enum_name<E>(raw: u64, from: fn(u32) -> Option<E>, name: fn(E) -> &'static str) -> String {
    match u32::try_from(raw).ok().and_then(from) {
        Some(e) => name(e).to_string(),
        None => format!("unknown ({raw})"),
    }
}

fn number(value: Option<u64>, addr: u64) -> String {
    value.map_or_else(|| unreadable(addr), |v| v.to_string())
}

fn unreadable(addr: u64) -> String {
    format!("<out of bounds at {addr}>")
}

/// Bytes at `(addr, len)` double-quoted, cut past [`SHOWN_BYTES`].
fn text<M: GuestMemory>(memory: &M, (addr, len): (u64, u64)) -> String {
    if memory.slice(addr, len).is_none() {
        return format!("<out of bounds: {len} bytes at {addr}>");
    }
    let shown = len.min(SHOWN_BYTES);
    let bytes = memory.slice(addr, shown).unwrap_or_default();
    if shown == len {
        quoted_bytes(bytes)
    } else {
        format!("{}... ({len} bytes)", quoted_bytes(bytes))
    }
}

/// A property path as its segments: `["request", "headers", "x-id"]`.
fn path<M: GuestMemory>(memory: &M, (addr, len): (u64, u64)) -> String {
    let Some(bytes) = memory.slice(addr, len.min(SHOWN_BYTES)) else {
        return format!("<out of bounds: {len} bytes at {addr}>");
    };
    let segments: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(quoted_bytes)
        .collect();
    let cut = if len > SHOWN_BYTES {
        format!("... ({len} bytes)")
    } else {
        String::new()
    };
    format!("[{}]{cut}", segments.join(", "))
}

/// A serialized header map as `{"name": "value", ...}`.
fn pairs<M: GuestMemory>(memory: &M, (addr, len): (u64, u64)) -> String {
    let Some(bytes) = memory.slice(addr, len) else {
        return format!("<out of bounds: {len} bytes at {addr}>");
    };
    if len > DECODED_PAIRS_MAX {
        return format!("<{len} bytes of pairs>");
    }
    if bytes.is_empty() {
        return "{}".to_string();
    }
    match abi::decode_map(bytes) {
        Ok(map) => {
            let mut shown = String::from("{");
            for (i, (k, v)) in map.iter().enumerate() {
                if shown.len() as u64 > SHOWN_BYTES {
                    let _ = write!(shown, ", ... ({} pairs)", map.len());
                    break;
                }
                if i > 0 {
                    shown.push_str(", ");
                }
                let _ = write!(shown, "{}: {}", quoted_bytes(k), quoted_bytes(v));
            }
            shown.push('}');
            shown
        }
        Err(_) => format!("<{len} bytes, not a serialized header map>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flat memory with 4-byte pointers, as wasm32 has.
    struct Flat(Vec<u8>);
    impl GuestMemory for Flat {
        const POINTER_SIZE: usize = 4;
        fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
            let end = addr.checked_add(len)?;
            self.0
                .get(usize::try_from(addr).ok()?..usize::try_from(end).ok()?)
        }
        fn slice_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
            let end = addr.checked_add(len)?;
            self.0
                .get_mut(usize::try_from(addr).ok()?..usize::try_from(end).ok()?)
        }
    }

    fn memory_with(at: usize, bytes: &[u8]) -> Flat {
        let mut m = vec![0; 1024];
        m[at..at + bytes.len()].copy_from_slice(bytes);
        Flat(m)
    }

    fn shown(event: &TraceEvent) -> (Vec<String>, Vec<String>, String) {
        let TraceEvent::Hostcall {
            decoded,
            returned,
            status_name,
            ..
        } = event
        else {
            panic!("not a hostcall event");
        };
        let text = |args: &[TraceArg]| {
            args.iter()
                .map(|a| format!("{}: {}", a.name, a.value))
                .collect()
        };
        (text(decoded), text(returned), status_name.clone())
    }

    #[test]
    fn long_values_are_cut_with_their_length_and_bad_bytes_escaped() {
        let mut value = vec![b'a'; 100];
        value[0] = 0xff;
        let mut m = memory_with(200, &value);
        m.0[16..20].copy_from_slice(&200u32.to_le_bytes());
        m.0[20..24].copy_from_slice(&100u32.to_le_bytes());
        m.0[300..304].copy_from_slice(b"k\0p\0");
        let index = Hostcall::proxy_get_property as usize;
        let event = event(&m, index, &[300, 3, 16, 20], 0);
        let (args, returned, status) = shown(&event);
        assert_eq!(args, [r#"path: ["k", "p"]"#]);
        assert_eq!(status, "OK");
        let expected = format!("value: \"\\xff{}\"... (100 bytes)", "a".repeat(79));
        assert_eq!(returned, [expected]);
    }

    #[test]
    fn wrong_pointers_and_unknown_enums_show_as_such() {
        let m = memory_with(0, b"");
        let index = Hostcall::proxy_get_header_map_value as usize;
        let event = event(&m, index, &[42, 5000, 3, 0, 4], 2);
        let (args, returned, status) = shown(&event);
        assert_eq!(
            args,
            [
                "map_type: unknown (42)",
                "key: <out of bounds: 3 bytes at 5000>"
            ]
        );
        assert!(returned.is_empty(), "not OK: nothing returned");
        assert_eq!(status, "BAD_ARGUMENT");
    }

    #[test]
    fn header_pairs_are_decoded_and_calls_without_raw_arguments_are_named_only() {
        let map = abi::encode_map(&[(b"a", b"1"), (b"b", b"2")]);
        let m = memory_with(64, &map);
        let index = Hostcall::proxy_set_header_map_pairs as usize;
        let (args, _, _) = shown(&event(&m, index, &[2, 64, map.len() as u64], 0));
        assert_eq!(
            args,
            [
                "map_type: HTTP_RESPONSE_HEADERS",
                r#"pairs: {"a": "1", "b": "2"}"#
            ]
        );
        let (args, _, _) = shown(&event(&m, index, &[2, 64, 3], 0));
        assert_eq!(args[1], "pairs: <3 bytes, not a serialized header map>");
        // The scripted backend passes no raw arguments.
        let (args, returned, status) = shown(&event(&m, index, &[], 1));
        assert!(args.is_empty() && returned.is_empty());
        assert_eq!(status, "NOT_FOUND");
    }
}
