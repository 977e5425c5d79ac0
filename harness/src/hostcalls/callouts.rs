//! Callouts.

use super::*;
use crate::host::resolve_timing;

/// `proxy_http_call`: unknown cluster or headers without `:method`, `:path`
/// or `:authority` -> BAD_ARGUMENT. The answer comes from the cluster's script.
#[allow(clippy::too_many_arguments)]
pub fn proxy_http_call<G: Guest>(
    g: &mut G,
    upstream: u64,
    upstream_size: u64,
    headers: u64,
    headers_size: u64,
    body: u64,
    body_size: u64,
    trailers: u64,
    trailers_size: u64,
    timeout_ms: u32,
    return_token: u64,
) -> HostcallResult {
    let cluster = read_owned(g, upstream, upstream_size)?;
    let headers = input(g, headers, headers_size, |_, h| decode_headers(h))??;
    let trailers = input(g, trailers, trailers_size, |_, h| decode_headers(h))??;
    let body = read_owned(g, body, body_size)?;
    let host = g.host();
    let Some(answer) = host.next_http_answer(&cluster) else {
        host.harness_log(
            LogLevel::Debug,
            format!(
                "http_call to unknown cluster {:?}: BAD_ARGUMENT",
                String::from_utf8_lossy(&cluster)
            ),
        );
        return Ok(Status::BadArgument);
    };
    if [&b":method"[..], b":path", b":authority"]
        .iter()
        .any(|k| headers.get(k).is_none())
    {
        return Ok(Status::BadArgument);
    }
    let mut sent = headers.clone();
    if !body.is_empty() {
        sent.replace(b"content-length", body.len().to_string().as_bytes());
    }
    // The async client's router sets it as the router of a stream does
    // (FilterUtility::finalTimeout; envoy headers are not suppressed there).
    if timeout_ms > 0 {
        let timeout = timeout_ms.to_string();
        sent.replace(b"x-envoy-expected-rq-timeout-ms", timeout.as_bytes());
    }
    let token = host.new_token();
    let context_id = host.effective_context;
    let cluster = String::from_utf8_lossy(&cluster).into_owned();
    host.pend_http(token, &cluster, answer, timeout_ms);
    host.http_calls.push(HttpCallRecord {
        token,
        context_id,
        cluster,
        headers: sent.to_headers(),
        body: ByteString(body),
        trailers: trailers.to_headers(),
        timeout_ms,
        result: CalloutResult::Pending,
    });
    write_u32(g, return_token, token)?;
    Ok(Status::Ok)
}

#[allow(clippy::too_many_arguments)]
fn start_grpc<G: Guest>(
    g: &mut G,
    upstream: (u64, u64),
    service: (u64, u64),
    method: (u64, u64),
    metadata: (u64, u64),
    message: Option<(u64, u64)>,
    timeout_ms: u32,
    return_token: u64,
) -> HostcallResult {
    let cluster = read_owned(g, upstream.0, upstream.1)?;
    let service = read_owned(g, service.0, service.1)?;
    let method = read_owned(g, method.0, method.1)?;
    let metadata = input(g, metadata.0, metadata.1, |_, h| decode_headers(h))??;
    let message = match message {
        Some((a, l)) => Some(read_owned(g, a, l)?),
        None => None,
    };
    let host = g.host();
    let Some(answer) = host.next_grpc_answer(&cluster) else {
        return Ok(Status::ParseFailure);
    };
    let token = host.new_token();
    let context_id = host.effective_context;
    let streaming = message.is_none();
    let (delay, failure) = answer
        .as_ref()
        .map_or((0, Some(CalloutFailure::Reset)), |a| {
            (a.delay_ms, a.failure)
        });
    let (after, failure) = resolve_timing(delay, failure, timeout_ms);
    // Envoy's async gRPC client (source/common/grpc/async_client_impl.cc)
    // runs the call as an HTTP stream through a router: a timeout or an
    // unreachable cluster is the router's local reply (504 / 503, in gRPC
    // form: grpc-status 14 as httpToGrpcStatus maps both), a reset is
    // `onReset` -> `streamError(Internal)` with no message.
    let plan = match (failure, answer) {
        (Some(CalloutFailure::Timeout), _) => GrpcPlan::Fail {
            code: 14,
            reason: "upstream request timeout",
            router_reply: true,
        },
        (Some(CalloutFailure::Unreachable), _) => GrpcPlan::Fail {
            code: 14,
            reason: "no healthy upstream",
            router_reply: true,
        },
        (Some(CalloutFailure::Reset), _) | (None, None) => GrpcPlan::Fail {
            code: 13,
            reason: "",
            router_reply: false,
        },
        (None, Some(a)) => GrpcPlan::Answer(a),
    };
    host.grpc_calls.push(GrpcCallRecord {
        token,
        context_id,
        cluster: String::from_utf8_lossy(&cluster).into_owned(),
        service: String::from_utf8_lossy(&service).into_owned(),
        method: String::from_utf8_lossy(&method).into_owned(),
        initial_metadata: metadata.to_headers(),
        messages: message.into_iter().map(ByteString).collect(),
        timeout_ms,
        streaming,
        result: CalloutResult::Pending,
    });
    host.grpc_pending.insert(
        token,
        PendingGrpc {
            streaming,
            plan,
            local_closed: false,
        },
    );
    let at = host.now_ms + after;
    host.schedule(at, Event::GrpcAnswer { token });
    write_u32(g, return_token, token)?;
    Ok(Status::Ok)
}

/// `proxy_grpc_call`: unknown cluster -> PARSE_FAILURE.
#[allow(clippy::too_many_arguments)]
pub fn proxy_grpc_call<G: Guest>(
    g: &mut G,
    upstream: u64,
    upstream_size: u64,
    service: u64,
    service_size: u64,
    method: u64,
    method_size: u64,
    metadata: u64,
    metadata_size: u64,
    message: u64,
    message_size: u64,
    timeout_ms: u32,
    return_token: u64,
) -> HostcallResult {
    start_grpc(
        g,
        (upstream, upstream_size),
        (service, service_size),
        (method, method_size),
        (metadata, metadata_size),
        Some((message, message_size)),
        timeout_ms,
        return_token,
    )
}

/// `proxy_grpc_stream`: unknown cluster -> PARSE_FAILURE.
#[allow(clippy::too_many_arguments)]
pub fn proxy_grpc_stream<G: Guest>(
    g: &mut G,
    upstream: u64,
    upstream_size: u64,
    service: u64,
    service_size: u64,
    method: u64,
    method_size: u64,
    metadata: u64,
    metadata_size: u64,
    return_token: u64,
) -> HostcallResult {
    start_grpc(
        g,
        (upstream, upstream_size),
        (service, service_size),
        (method, method_size),
        (metadata, metadata_size),
        None,
        0,
        return_token,
    )
}

/// `proxy_grpc_send`: NOT_FOUND for an unknown stream, BAD_ARGUMENT after end_stream.
pub fn proxy_grpc_send<G: Guest>(
    g: &mut G,
    token: u32,
    message: u64,
    message_size: u64,
    end_stream: bool,
) -> HostcallResult {
    let message = read_owned(g, message, message_size)?;
    let host = g.host();
    let Some(p) = host.grpc_pending.get_mut(&token) else {
        return Ok(Status::NotFound);
    };
    if !p.streaming {
        return Ok(Status::NotFound);
    }
    if p.local_closed {
        return Ok(Status::BadArgument);
    }
    p.local_closed = end_stream;
    host.push_grpc_message(token, &message);
    Ok(Status::Ok)
}

/// `proxy_grpc_cancel`: no callback follows.
pub fn proxy_grpc_cancel<G: Guest>(g: &mut G, token: u32) -> HostcallResult {
    let host = g.host();
    if host.grpc_pending.remove(&token).is_none() {
        return Ok(Status::NotFound);
    }
    host.set_grpc_result(token, CalloutResult::Cancelled);
    Ok(Status::Ok)
}

/// `proxy_grpc_close`: half-closes a stream (the answer still arrives); cancels a unary call.
pub fn proxy_grpc_close<G: Guest>(g: &mut G, token: u32) -> HostcallResult {
    let host = g.host();
    let Some(p) = host.grpc_pending.get_mut(&token) else {
        return Ok(Status::NotFound);
    };
    if p.streaming {
        p.local_closed = true;
    } else {
        host.grpc_pending.remove(&token);
        host.set_grpc_result(token, CalloutResult::Cancelled);
    }
    Ok(Status::Ok)
}

/// `proxy_get_status`: code and message of the last callout result delivered.
pub fn proxy_get_status<G: Guest>(
    g: &mut G,
    return_code: u64,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    let host = g.host();
    let code = host.status_code;
    let message = std::mem::take(&mut host.status_message);
    set_scratch(host, &message);
    host.status_message = message;
    let status = return_scratch(g, return_data, return_size)?;
    if status != Status::Ok {
        return Ok(status);
    }
    write_u32(g, return_code, code)?;
    Ok(Status::Ok)
}

/// `proxy_set_effective_context`: BAD_ARGUMENT for an unknown context.
pub fn proxy_set_effective_context<G: Guest>(g: &mut G, context_id: u32) -> HostcallResult {
    let host = g.host();
    if !host.context_exists(context_id) {
        return Ok(Status::BadArgument);
    }
    host.effective_context = context_id;
    Ok(Status::Ok)
}

/// `proxy_call_foreign_function`: runs the function in [`crate::host::foreign`]
/// and returns its result bytes; unknown names NOT_FOUND.
pub fn proxy_call_foreign_function<G: Guest>(
    g: &mut G,
    name: u64,
    name_size: u64,
    arguments: u64,
    arguments_size: u64,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    let name = read_owned(g, name, name_size)?;
    let args = read_owned(g, arguments, arguments_size)?;
    let host = g.host();
    match crate::host::foreign::call(host, &name, &args) {
        Ok(result) => set_scratch(host, &result),
        Err(status) => return Ok(status),
    }
    return_scratch(g, return_data, return_size)
}

/// `proxy_done`: Envoy only accepts it from a root context whose
/// `proxy_on_done` returned false during VM shutdown; the harness never
/// drains a VM, so it is always NOT_FOUND.
pub fn proxy_done<G: Guest>(g: &mut G) -> HostcallResult {
    g.host().done_called = true;
    Ok(Status::NotFound)
}
