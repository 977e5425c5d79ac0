use super::*;
use crate::host::resolve_timing;
use crate::host::{Gone, HeaderMap, SharedHost, StreamState};
use crate::model::HarnessConfig;

/// A flat little-endian memory with a bump allocator, 4-byte pointers.
struct TestGuest {
    host: Host,
    mem: Vec<u8>,
    next: u64,
    allocations: Vec<u64>,
}
struct TestMem<'a>(&'a mut Vec<u8>);
impl GuestMemory for TestMem<'_> {
    const POINTER_SIZE: usize = 4;
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        self.0.get(addr as usize..(addr + len) as usize)
    }
    fn slice_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        self.0.get_mut(addr as usize..(addr + len) as usize)
    }
}
impl Guest for TestGuest {
    type Memory<'m> = TestMem<'m>;
    fn host(&mut self) -> &mut Host {
        &mut self.host
    }
    fn with_memory<R>(&mut self, f: impl FnOnce(&mut Host, &mut TestMem<'_>) -> R) -> R {
        f(&mut self.host, &mut TestMem(&mut self.mem))
    }
    fn allocate(&mut self, size: u64) -> Result<u64, Fault> {
        let at = self.next;
        self.next += size;
        self.allocations.push(size);
        Ok(at)
    }
}
fn guest() -> TestGuest {
    let mut host = Host::new(&HarnessConfig::default(), SharedHost::new());
    host.phase = Phase::Callback;
    let mut s = StreamState {
        id: 2,
        ..Default::default()
    };
    let mut h = HeaderMap::default();
    h.add(b":path", b"/");
    h.add(b"empty", b"");
    s.request_headers = Some(h);
    s.request_body = b"hello".to_vec();
    // As in on_request_body while the request headers stay paused.
    s.reach.grant(Field::RequestHeaders);
    s.reach.grant(Field::RequestBody);
    host.streams.push(s);
    host.effective_context = 2;
    TestGuest {
        host,
        mem: vec![0; 4096],
        next: 1024,
        allocations: Vec::new(),
    }
}
fn put(g: &mut TestGuest, at: usize, bytes: &[u8]) -> (u64, u64) {
    g.mem[at..at + bytes.len()].copy_from_slice(bytes);
    (at as u64, bytes.len() as u64)
}
fn word(g: &TestGuest, at: usize) -> u64 {
    u32::from_le_bytes(g.mem[at..at + 4].try_into().unwrap()) as u64
}

#[test]
fn empty_value_is_null_without_allocation() {
    let mut g = guest();
    let (k, kl) = put(&mut g, 0, b"EMPTY");
    g.mem[100..108].fill(0xff);
    let s = proxy_get_header_map_value(&mut g, 0, k, kl, 100, 104).unwrap();
    assert_eq!(s, Status::Ok);
    assert_eq!((word(&g, 100), word(&g, 104)), (0, 0));
    assert!(g.allocations.is_empty());
    let (k, kl) = put(&mut g, 0, b"nope!");
    assert_eq!(
        proxy_get_header_map_value(&mut g, 0, k, kl, 100, 104).unwrap(),
        Status::NotFound
    );
    // Response headers do not exist yet: Envoy answers BAD_ARGUMENT for values, OK-empty for pairs.
    assert_eq!(
        proxy_get_header_map_value(&mut g, 2, k, kl, 100, 104).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_get_header_map_pairs(&mut g, 2, 100, 104).unwrap(),
        Status::Ok
    );
    assert_eq!(word(&g, 104), 0);
}

#[test]
fn values_are_allocated_exactly() {
    let mut g = guest();
    let (k, kl) = put(&mut g, 0, b":path");
    assert_eq!(
        proxy_get_header_map_value(&mut g, 0, k, kl, 100, 104).unwrap(),
        Status::Ok
    );
    assert_eq!(g.allocations, vec![1]);
    let p = word(&g, 100) as usize;
    assert_eq!(&g.mem[p..p + 1], b"/");
    assert_eq!(
        proxy_get_buffer_bytes(&mut g, 0, 1, 3, 100, 104).unwrap(),
        Status::Ok
    );
    assert_eq!(g.allocations, vec![1, 3]);
    let p = word(&g, 100) as usize;
    assert_eq!(&g.mem[p..p + 3], b"ell");
    // Past the end: OK and empty (pointer 0, size 0).
    assert_eq!(
        proxy_get_buffer_bytes(&mut g, 0, 6, 3, 100, 104).unwrap(),
        Status::Ok
    );
    assert_eq!(word(&g, 104), 0);
    assert_eq!(g.allocations, vec![1, 3]);
}

#[test]
fn set_buffer_rules() {
    let mut g = guest();
    let (d, dl) = put(&mut g, 0, b"XY");
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 0, 0, d, dl).unwrap(),
        Status::Ok
    );
    assert_eq!(g.host.stream_ref(2).unwrap().request_body, b"XYhello");
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 7, 0, d, dl).unwrap(),
        Status::Ok
    );
    assert_eq!(g.host.stream_ref(2).unwrap().request_body, b"XYhelloXY");
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 2, 3, d, dl).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 0, 100, d, dl).unwrap(),
        Status::Ok
    );
    assert_eq!(g.host.stream_ref(2).unwrap().request_body, b"XY");
    // Response body: no stream buffer available from the root context.
    g.host.effective_context = 1;
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 0, 0, d, dl).unwrap(),
        Status::NotFound
    );
    // The plugin configuration is read-only, and only there while configuring.
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 7, 0, 0, d, dl).unwrap(),
        Status::NotFound
    );
    g.host.configuring = true;
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 7, 0, 0, d, dl).unwrap(),
        Status::BadArgument
    );
}

#[test]
fn out_of_bounds_is_invalid_memory_access() {
    let mut g = guest();
    let status = |r: HostcallResult| answer(r).ok().and_then(Status::from_u32);
    assert_eq!(
        status(proxy_log(&mut g, 2, 4090, 100)),
        Some(Status::InvalidMemoryAccess)
    );
    assert_eq!(
        status(proxy_log(&mut g, 9, 0, 1)),
        Some(Status::BadArgument)
    );
    assert_eq!(
        status(proxy_get_log_level(&mut g, 5000)),
        Some(Status::InvalidMemoryAccess)
    );
}

#[test]
fn set_property_from_root_is_not_found() {
    let mut g = guest();
    // One segment: Envoy reads filter state back only by its top-level name.
    let (p, pl) = put(&mut g, 0, b"my_prop");
    let (v, vl) = put(&mut g, 20, b"v");
    assert_eq!(
        proxy_set_property(&mut g, p, pl, v, vl).unwrap(),
        Status::Ok
    );
    assert_eq!(
        proxy_get_property(&mut g, p, pl, 100, 104).unwrap(),
        Status::Ok
    );
    g.host.effective_context = 1;
    assert_eq!(
        proxy_set_property(&mut g, p, pl, v, vl).unwrap(),
        Status::NotFound
    );
}

#[test]
fn http_call_argument_checks() {
    let mut g = guest();
    g.host.set_clusters(&[crate::model::ClusterSpec {
        name: "auth".into(),
        ..Default::default()
    }]);
    let good = abi::encode_map(&[
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":authority", b"a"),
    ]);
    let bad = abi::encode_map(&[(b":method", b"GET"), (b":path", b"/")]);
    let (c, cl) = put(&mut g, 0, b"auth");
    let (u, ul) = put(&mut g, 10, b"nope");
    let (h, hl) = put(&mut g, 100, &good);
    let (b, bl) = put(&mut g, 300, &bad);
    assert_eq!(
        proxy_http_call(&mut g, u, ul, h, hl, 0, 0, 0, 0, 1000, 900).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_http_call(&mut g, c, cl, b, bl, 0, 0, 0, 0, 1000, 900).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_http_call(&mut g, c, cl, h, hl, 0, 0, 0, 0, 1000, 900).unwrap(),
        Status::Ok
    );
    assert_eq!(word(&g, 900), 1);
    assert_eq!(
        proxy_http_call(&mut g, c, cl, h, hl, 0, 0, 0, 0, 1000, 900).unwrap(),
        Status::Ok
    );
    assert_eq!(word(&g, 900), 2);
    let (gc, gcl) = put(&mut g, 20, b"nope");
    assert_eq!(
        proxy_grpc_call(&mut g, gc, gcl, 0, 0, 0, 0, 0, 0, 0, 0, 0, 900).unwrap(),
        Status::ParseFailure
    );
}

#[test]
fn phase_rules() {
    let mut g = guest();
    g.host.phase = Phase::Allocator;
    let r = dispatch(&mut g, Hostcall::proxy_get_property as usize, &[], |_| {
        Ok(0)
    });
    assert!(r.is_err());
    assert!(dispatch(&mut g, Hostcall::proxy_log as usize, &[], |_| Ok(0)).is_ok());
    g.host.phase = Phase::Startup;
    assert!(
        dispatch(&mut g, Hostcall::proxy_define_metric as usize, &[], |_| Ok(
            0
        ))
        .is_err()
    );
    assert!(dispatch(&mut g, wasi_index("fd_write"), &[], |_| Ok(0)).is_ok());
    assert_eq!(g.host.hostcall_counts[Hostcall::proxy_log as usize], 1);
}

#[test]
fn timing_rules() {
    assert_eq!(resolve_timing(10, None, 0), (10, None));
    assert_eq!(
        resolve_timing(10, None, 5),
        (5, Some(CalloutFailure::Timeout))
    );
    assert_eq!(
        resolve_timing(3, Some(CalloutFailure::Timeout), 50),
        (50, Some(CalloutFailure::Timeout))
    );
    assert_eq!(
        resolve_timing(3, Some(CalloutFailure::Reset), 50),
        (3, Some(CalloutFailure::Reset))
    );
}

#[test]
fn set_buffer_at_start_drains_then_prepends() {
    let mut g = guest();
    let (d, dl) = put(&mut g, 0, b"J");
    // Envoy's Buffer::copyFrom: start 0 drains `size` bytes, then prepends.
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 0, 2, d, dl).unwrap(),
        Status::Ok
    );
    assert_eq!(g.host.stream_ref(2).unwrap().request_body, b"Jllo");
}

#[test]
fn fields_out_of_reach_answer_as_envoy_and_warn_once() {
    let mut g = guest();
    g.host.callback = "proxy_on_response_headers";
    if let Some(s) = g.host.stream_mut(2) {
        s.reach.withdraw(Field::RequestHeaders, Gone::Continued);
        s.reach.withdraw(Field::RequestBody, Gone::Continued);
    }
    let (k, kl) = put(&mut g, 0, b":path");
    let (v, vl) = put(&mut g, 8, b"/x");
    assert_eq!(
        proxy_get_header_map_value(&mut g, 0, k, kl, 100, 104).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_add_header_map_value(&mut g, 0, k, kl, v, vl).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_replace_header_map_value(&mut g, 0, k, kl, v, vl).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_remove_header_map_value(&mut g, 0, k, kl).unwrap(),
        Status::BadArgument
    );
    assert_eq!(
        proxy_get_header_map_size(&mut g, 0, 100).unwrap(),
        Status::BadArgument
    );
    g.mem[100..108].fill(0xff);
    assert_eq!(
        proxy_get_header_map_pairs(&mut g, 0, 100, 104).unwrap(),
        Status::Ok
    );
    assert_eq!((word(&g, 100), word(&g, 104)), (0, 0));
    // The map itself is untouched (the filter manager still forwards it).
    let kept = g
        .host
        .stream_ref(2)
        .unwrap()
        .request_headers
        .clone()
        .unwrap();
    assert_eq!(kept.get(b":path"), Some(&b"/"[..]));
    // The body out of reach: empty to read, BAD_ARGUMENT to write.
    assert_eq!(
        proxy_get_buffer_bytes(&mut g, 0, 0, 10, 100, 104).unwrap(),
        Status::Ok
    );
    assert_eq!(word(&g, 104), 0);
    assert_eq!(
        proxy_set_buffer_bytes(&mut g, 0, 0, 0, v, vl).unwrap(),
        Status::BadArgument
    );
    let warnings: Vec<_> = g
        .host
        .logs
        .iter()
        .filter(|l| l.message.contains("out of reach"))
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(warnings.len(), 2, "one warning per field: {warnings:?}");
    assert!(warnings[0].starts_with(
        "[harness] request headers out of reach in on_response_headers: \
         on_request_headers returned Continue"
    ));
    assert!(warnings[1].contains("request body out of reach"));
}

#[test]
fn continue_stream_ends_access_at_once() {
    let mut g = guest();
    assert_eq!(proxy_continue_stream(&mut g, 0).unwrap(), Status::Ok);
    let (k, kl) = put(&mut g, 0, b":path");
    assert_eq!(
        proxy_get_header_map_value(&mut g, 0, k, kl, 100, 104).unwrap(),
        Status::BadArgument
    );
    assert_eq!(g.host.deferred.len(), 1, "the continue itself is deferred");
    assert!(
        g.host
            .logs
            .iter()
            .any(|l| l.message.contains("called proxy_continue_stream"))
    );
}
