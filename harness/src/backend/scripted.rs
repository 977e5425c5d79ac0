//! A VM with no module behind it, for testing the filter manager without
//! compiling anything. Each callback runs a small script: host actions
//! done during the call, then a return value or a trap. The actions go
//! through the real hostcalls, over a little flat memory the way a
//! module's calls arrive, so deferral, phase scoping and callout
//! bookkeeping are the production code, not a copy. Every callback
//! received is recorded in a [`CallLog`] that the test (and the other VMs
//! of a chain) share, so tests assert exact callback order.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::abi::{self, AbiVersion, BufferType, MapType, Status, StreamType};
use crate::backend::{Callback, StartExports, Vm};
use crate::host::{Host, SharedHost};
use crate::hostcalls::{self, Fault, Guest, GuestMemory, Hostcall};
use crate::model::HarnessConfig;

/// What the scripted filter does during a callback, each through the
/// hostcall of the same name.
#[derive(Clone, Debug)]
pub(crate) enum Act {
    /// `proxy_continue_stream`.
    Continue(StreamType),
    /// `proxy_close_stream`.
    Close(StreamType),
    /// `proxy_send_local_response` (details "scripted", no gRPC status).
    LocalReply {
        status: u32,
        body: &'static str,
        headers: &'static [(&'static str, &'static str)],
    },
    /// `proxy_http_call` (GET /check) to a cluster; the token is kept with
    /// the calling context, as the SDKs do.
    HttpCall { cluster: &'static str },
    /// In `on_http_call_response`: `proxy_set_effective_context` to the
    /// context that made the call.
    ToCaller,
    /// `proxy_set_effective_context`.
    SetEffectiveContext(u32),
    /// `proxy_set_tick_period_milliseconds`.
    SetTick(u32),
    /// `proxy_get_header_map_value`, recorded as a read.
    GetHeader(MapType, &'static str),
    /// `proxy_get_buffer_bytes` of the whole buffer, recorded as a read.
    GetBody(BufferType),
    /// `proxy_get_property` of a dotted path (segments joined by NUL on
    /// the wire), recorded as a read.
    GetProperty(&'static str),
    /// `proxy_get_buffer_bytes` of a buffer, then
    /// `proxy_replace_header_map_value` of that text into a header.
    BodyToHeader(BufferType, MapType, &'static str),
}

/// What a callback returns once its actions ran.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// What Envoy assumes for an export the module lacks.
    Default,
    Value(u64),
    Trap(&'static str),
}

/// One line of a script: which calls it applies to, what they do.
pub(crate) struct Rule {
    /// The export without its `proxy_on_` prefix (`request_headers`).
    callback: &'static str,
    context: Option<u32>,
    /// Only the nth call (from 1) this rule applies to.
    nth: Option<usize>,
    seen: usize,
    acts: Vec<Act>,
    reply: Reply,
}

impl Rule {
    /// Only calls in context `id`.
    pub(crate) fn ctx(&mut self, id: u32) -> &mut Rule {
        self.context = Some(id);
        self
    }

    /// Only the `n`th call (from 1) the rule applies to.
    pub(crate) fn nth(&mut self, n: usize) -> &mut Rule {
        self.nth = Some(n);
        self
    }

    /// Adds an action, done in order during the call.
    pub(crate) fn then(&mut self, act: Act) -> &mut Rule {
        self.acts.push(act);
        self
    }

    /// The callback returns `value`.
    pub(crate) fn returns(&mut self, value: u64) -> &mut Rule {
        self.reply = Reply::Value(value);
        self
    }

    /// The callback returns Pause (1).
    pub(crate) fn pause(&mut self) -> &mut Rule {
        self.returns(1)
    }

    /// The callback traps with `text` (after its actions).
    pub(crate) fn traps(&mut self, text: &'static str) -> &mut Rule {
        self.reply = Reply::Trap(text);
        self
    }

    fn applies(&self, cb: &Callback) -> bool {
        cb.name().strip_prefix("proxy_on_") == Some(self.callback)
            && self.context.is_none_or(|c| c == cb.context_id())
    }
}

/// Every callback (and scripted read) the VMs sharing this log received, in order.
#[derive(Clone, Default)]
pub(crate) struct CallLog(Rc<RefCell<Vec<Entry>>>);

struct Entry {
    vm: &'static str,
    line: String,
    is_read: bool,
}

impl CallLog {
    fn push(&self, vm: &'static str, line: String, is_read: bool) {
        self.0.borrow_mut().push(Entry { vm, line, is_read });
    }

    /// VM `vm`'s callbacks, as `request_headers(2,6,1)` (context id first).
    pub(crate) fn calls(&self, vm: &str) -> Vec<String> {
        self.lines(|e| e.vm == vm && !e.is_read, |e| e.line.clone())
    }

    /// Every VM's callbacks, as `f1 request_headers(2,6,1)`.
    pub(crate) fn all_calls(&self) -> Vec<String> {
        self.lines(|e| !e.is_read, |e| format!("{} {}", e.vm, e.line))
    }

    /// What VM `vm`'s scripted reads saw, as `HTTP_REQUEST_BODY -> abcd`.
    pub(crate) fn reads(&self, vm: &str) -> Vec<String> {
        self.lines(|e| e.vm == vm && e.is_read, |e| e.line.clone())
    }

    /// Forgets everything so far (start-up, earlier steps).
    pub(crate) fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    fn lines(&self, keep: impl Fn(&Entry) -> bool, show: impl Fn(&Entry) -> String) -> Vec<String> {
        self.0
            .borrow()
            .iter()
            .filter(|e| keep(e))
            .map(show)
            .collect()
    }
}

/// `request_headers(2,6,1)`: the export without `proxy_on_`, its arguments.
fn render(cb: &Callback) -> String {
    let name = cb.name();
    let args: Vec<String> = cb.args().iter().map(u64::to_string).collect();
    format!(
        "{}({})",
        name.strip_prefix("proxy_on_").unwrap_or(name),
        args.join(",")
    )
}

/// Out-parameters (pointer, size) live at the start of memory; the bump
/// allocator hands out addresses after them, so none is 0.
const OUT_AREA: usize = 16;
const OUT_PTR: u64 = 0;
const OUT_SIZE: u64 = 4;

/// The host and the flat memory the hostcalls read and write.
struct Machine {
    host: Host,
    mem: Vec<u8>,
}

struct Flat<'a>(&'a mut Vec<u8>);

fn range(addr: u64, len: u64) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(addr).ok()?;
    Some(start..start.checked_add(usize::try_from(len).ok()?)?)
}

impl GuestMemory for Flat<'_> {
    const POINTER_SIZE: usize = 4;
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        self.0.get(range(addr, len)?)
    }
    fn slice_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        self.0.get_mut(range(addr, len)?)
    }
}

impl Guest for Machine {
    type Memory<'m> = Flat<'m>;
    fn host(&mut self) -> &mut Host {
        &mut self.host
    }
    fn with_memory<R>(&mut self, f: impl FnOnce(&mut Host, &mut Flat<'_>) -> R) -> R {
        f(&mut self.host, &mut Flat(&mut self.mem))
    }
    fn allocate(&mut self, size: u64) -> Result<u64, Fault> {
        let at = self.mem.len();
        let size = usize::try_from(size).map_err(|_| Fault(format!("cannot allocate {size}")))?;
        self.mem.resize(at + size, 0);
        Ok(at as u64)
    }
}

impl Machine {
    /// Copies `bytes` into memory: (address, length).
    fn put(&mut self, bytes: &[u8]) -> (u64, u64) {
        let at = self.mem.len();
        self.mem.extend_from_slice(bytes);
        (at as u64, bytes.len() as u64)
    }

    fn word(&self, addr: u64) -> u64 {
        let at = addr as usize;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.mem[at..at + 4]);
        u64::from(u32::from_le_bytes(b))
    }

    /// The value a read returned through the out-parameters, or the
    /// status that refused it.
    fn returned(&self, status: Status) -> Result<String, Status> {
        if status != Status::Ok {
            return Err(status);
        }
        let (ptr, len) = (self.word(OUT_PTR) as usize, self.word(OUT_SIZE) as usize);
        Ok(String::from_utf8_lossy(&self.mem[ptr..ptr + len]).into_owned())
    }

    /// Runs one hostcall as a backend does (counted, phase-checked, traced).
    fn call(
        &mut self,
        which: Hostcall,
        f: impl FnOnce(&mut Machine) -> hostcalls::HostcallResult,
    ) -> Result<Status, Fault> {
        let raw = hostcalls::dispatch(self, which as usize, &[], |g| hostcalls::answer(f(g)))?;
        Ok(Status::from_u32(raw).unwrap_or(Status::InternalFailure))
    }

    /// The whole of buffer `bt`, or the status that refused it.
    fn read_buffer(&mut self, bt: BufferType) -> Result<Result<String, Status>, Fault> {
        let status = self.call(Hostcall::proxy_get_buffer_bytes, |g| {
            hostcalls::proxy_get_buffer_bytes(
                g,
                bt as u32,
                0,
                u64::from(u32::MAX),
                OUT_PTR,
                OUT_SIZE,
            )
        })?;
        Ok(self.returned(status))
    }
}

/// A VM whose callbacks follow a script (see the module docs).
pub(crate) struct ScriptedVm {
    name: &'static str,
    machine: Machine,
    rules: Vec<Rule>,
    /// http_call token -> the context that made the call.
    callers: HashMap<u64, u32>,
    log: CallLog,
}

impl ScriptedVm {
    /// A VM named `name` in `log`, its host configured by `config`.
    pub(crate) fn new(
        name: &'static str,
        config: &HarnessConfig,
        shared: &SharedHost,
        log: &CallLog,
    ) -> ScriptedVm {
        let mut host = Host::new(config, shared.clone());
        host.abi = AbiVersion::V0_2_1;
        ScriptedVm {
            name,
            machine: Machine {
                host,
                mem: vec![0; OUT_AREA],
            },
            rules: Vec::new(),
            callers: HashMap::new(),
            log: log.clone(),
        }
    }

    /// A new rule for `callback` (the export without `proxy_on_`). The
    /// first rule that applies to a call decides it; calls no rule
    /// applies to do nothing and return Envoy's default.
    pub(crate) fn on(&mut self, callback: &'static str) -> &mut Rule {
        self.rules.push(Rule {
            callback,
            context: None,
            nth: None,
            seen: 0,
            acts: Vec::new(),
            reply: Reply::Default,
        });
        let last = self.rules.len() - 1;
        &mut self.rules[last]
    }

    fn read(&self, what: String, value: Result<String, Status>) {
        let value = value.unwrap_or_else(|s| s.name().to_string());
        self.log.push(self.name, format!("{what} -> {value}"), true);
    }

    fn act(&mut self, act: &Act, cb: Callback) -> Result<(), Fault> {
        let m = &mut self.machine;
        m.mem.truncate(OUT_AREA);
        match *act {
            Act::Continue(st) => {
                m.call(Hostcall::proxy_continue_stream, |g| {
                    hostcalls::proxy_continue_stream(g, st as u32)
                })?;
            }
            Act::Close(st) => {
                m.call(Hostcall::proxy_close_stream, |g| {
                    hostcalls::proxy_close_stream(g, st as u32)
                })?;
            }
            Act::LocalReply {
                status,
                body,
                headers,
            } => {
                let pairs: Vec<abi::Pair<'_>> = headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                    .collect();
                let (d, dl) = m.put(b"scripted");
                let (b, bl) = m.put(body.as_bytes());
                let (h, hl) = m.put(&abi::encode_map(&pairs));
                m.call(Hostcall::proxy_send_local_response, |g| {
                    hostcalls::proxy_send_local_response(g, status, d, dl, b, bl, h, hl, -1)
                })?;
            }
            Act::HttpCall { cluster } => {
                let headers = abi::encode_map(&[
                    (b":method", b"GET"),
                    (b":path", b"/check"),
                    (b":authority", cluster.as_bytes()),
                ]);
                let (c, cl) = m.put(cluster.as_bytes());
                let (h, hl) = m.put(&headers);
                let status = m.call(Hostcall::proxy_http_call, |g| {
                    hostcalls::proxy_http_call(g, c, cl, h, hl, 0, 0, 0, 0, 0, OUT_PTR)
                })?;
                if status == Status::Ok {
                    let token = m.word(OUT_PTR);
                    let caller = m.host.effective_context;
                    self.callers.insert(token, caller);
                }
            }
            Act::ToCaller => {
                let caller = match cb {
                    Callback::HttpCallResponse { token, .. } => {
                        self.callers.remove(&u64::from(token))
                    }
                    _ => None,
                };
                if let Some(ctx) = caller {
                    m.call(Hostcall::proxy_set_effective_context, |g| {
                        hostcalls::proxy_set_effective_context(g, ctx)
                    })?;
                }
            }
            Act::SetEffectiveContext(ctx) => {
                m.call(Hostcall::proxy_set_effective_context, |g| {
                    hostcalls::proxy_set_effective_context(g, ctx)
                })?;
            }
            Act::SetTick(ms) => {
                m.call(Hostcall::proxy_set_tick_period_milliseconds, |g| {
                    hostcalls::proxy_set_tick_period_milliseconds(g, ms)
                })?;
            }
            Act::GetHeader(mt, key) => {
                let (k, kl) = m.put(key.as_bytes());
                let status = m.call(Hostcall::proxy_get_header_map_value, |g| {
                    hostcalls::proxy_get_header_map_value(g, mt as u32, k, kl, OUT_PTR, OUT_SIZE)
                })?;
                let value = m.returned(status);
                self.read(format!("{} {key}", mt.name()), value);
            }
            Act::GetProperty(path) => {
                let (p, pl) = m.put(path.replace('.', "\0").as_bytes());
                let status = m.call(Hostcall::proxy_get_property, |g| {
                    hostcalls::proxy_get_property(g, p, pl, OUT_PTR, OUT_SIZE)
                })?;
                let value = m.returned(status);
                self.read(path.to_string(), value);
            }
            Act::GetBody(bt) => {
                let value = m.read_buffer(bt)?;
                self.read(bt.name().to_string(), value);
            }
            Act::BodyToHeader(bt, mt, key) => {
                let text = m.read_buffer(bt)?.unwrap_or_default();
                let (k, kl) = m.put(key.as_bytes());
                let (v, vl) = m.put(text.as_bytes());
                m.call(Hostcall::proxy_replace_header_map_value, |g| {
                    hostcalls::proxy_replace_header_map_value(g, mt as u32, k, kl, v, vl)
                })?;
            }
        }
        Ok(())
    }
}

impl Vm for ScriptedVm {
    fn host(&mut self) -> &mut Host {
        &mut self.machine.host
    }

    fn host_ref(&self) -> &Host {
        &self.machine.host
    }

    fn start_exports(&self) -> StartExports {
        StartExports::default()
    }

    fn call(&mut self, cb: Callback) -> Result<u64, String> {
        self.log.push(self.name, render(&cb), false);
        // Every rule that applies counts the call (for `nth`); the first
        // whose `nth` matches decides it.
        let mut chosen = None;
        for (i, rule) in self.rules.iter_mut().enumerate() {
            if rule.applies(&cb) {
                rule.seen += 1;
                if chosen.is_none() && rule.nth.is_none_or(|n| n == rule.seen) {
                    chosen = Some(i);
                }
            }
        }
        let Some(i) = chosen else {
            return Ok(cb.default_result());
        };
        let (acts, reply) = (self.rules[i].acts.clone(), self.rules[i].reply);
        for act in &acts {
            // A fault in a hostcall traps the guest, as in the wasm backend.
            self.act(act, cb).map_err(|f| f.0)?;
        }
        match reply {
            Reply::Default => Ok(cb.default_result()),
            Reply::Value(v) => Ok(v),
            Reply::Trap(text) => Err(text.to_string()),
        }
    }
}
