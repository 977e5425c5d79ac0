//! Stream control (deferred until the running callback returns).

use super::*;

fn defer_stream_action<G: Guest>(g: &mut G, stream_type: u32, close: bool) -> HostcallResult {
    let Some(st) = StreamType::from_u32(stream_type) else {
        return Ok(Status::BadArgument);
    };
    let host = g.host();
    // Envoy's `Context::continueStream` has no way to resume the upstream
    // direction, in any context.
    if st == StreamType::Upstream && !close {
        host.harness_log(
            LogLevel::Warn,
            "proxy_continue_stream(UPSTREAM) is UNIMPLEMENTED in Envoy (status 12, which the \
             Rust SDK cannot represent): a network filter cannot resume upstream data it paused"
                .to_string(),
        );
        return Ok(Status::Unimplemented);
    }
    // On a root context (no stream) Envoy has nothing to continue: OK, no-op.
    let Some((context_id, is_connection)) =
        host.effective_stream_ref().map(|s| (s.id, s.is_connection))
    else {
        return Ok(Status::Ok);
    };
    let http = matches!(st, StreamType::HttpRequest | StreamType::HttpResponse);
    // An HTTP direction on a connection, or a TCP one on an HTTP stream,
    // has no callbacks behind it in Envoy: OK, nothing happens.
    if http == is_connection {
        return Ok(Status::Ok);
    }
    let action = if close {
        // Envoy's Context::closeStream names the reason at once, unless
        // details were already set; only the reset itself waits.
        if let Some(s) = host.stream_mut(context_id)
            && http
        {
            s.response_code_details
                .get_or_insert_with(|| "wasm_close_stream".to_string());
        }
        Deferred::Close {
            context_id,
            stream: st,
        }
    } else {
        // The continue itself waits for the callback to return, but the
        // filter's access to the direction's fields ends now.
        if http {
            host.continue_withdraws(context_id, st == StreamType::HttpRequest);
        }
        Deferred::Continue {
            context_id,
            stream: st,
        }
    };
    host.deferred.push(action);
    Ok(Status::Ok)
}

/// `proxy_continue_stream` (deferred).
pub fn proxy_continue_stream<G: Guest>(g: &mut G, stream_type: u32) -> HostcallResult {
    defer_stream_action(g, stream_type, false)
}

/// `proxy_continue_request` (ABI 0.1.0; deferred like `proxy_continue_stream`).
pub fn proxy_continue_request<G: Guest>(g: &mut G) -> HostcallResult {
    defer_stream_action(g, StreamType::HttpRequest as u32, false)
}

/// `proxy_continue_response` (ABI 0.1.0; deferred like `proxy_continue_stream`).
pub fn proxy_continue_response<G: Guest>(g: &mut G) -> HostcallResult {
    defer_stream_action(g, StreamType::HttpResponse as u32, false)
}

/// `proxy_clear_route_cache` (ABI 0.1.0): the harness has no route table, so
/// there is nothing to recompute; OK, as Envoy answers.
pub fn proxy_clear_route_cache<G: Guest>(_g: &mut G) -> HostcallResult {
    Ok(Status::Ok)
}

/// `proxy_get_configuration` (ABI 0.1.0): the plugin configuration while
/// `proxy_on_configure` runs, the VM configuration otherwise (Envoy returns
/// the plugin's only while configuring it).
pub fn proxy_get_configuration<G: Guest>(
    g: &mut G,
    return_data: u64,
    return_size: u64,
) -> HostcallResult {
    return_filled(g, return_data, return_size, |host, out| {
        out.clear();
        out.extend_from_slice(if host.configuring {
            host.plugin.configuration.as_bytes()
        } else {
            host.plugin.vm_config.as_bytes()
        });
        Status::Ok
    })
}

/// `proxy_close_stream` (deferred): resets the HTTP stream, or closes the
/// TCP connection (either direction: Envoy closes the downstream connection).
pub fn proxy_close_stream<G: Guest>(g: &mut G, stream_type: u32) -> HostcallResult {
    defer_stream_action(g, stream_type, true)
}

/// `proxy_send_local_response` (deferred; forces the running callback to stop).
#[allow(clippy::too_many_arguments)]
pub fn proxy_send_local_response<G: Guest>(
    g: &mut G,
    status_code: u32,
    details: u64,
    details_size: u64,
    body: u64,
    body_size: u64,
    headers: u64,
    headers_size: u64,
    grpc_status: i32,
) -> HostcallResult {
    let details = read_owned(g, details, details_size)?;
    let body = read_owned(g, body, body_size)?;
    let headers = input(g, headers, headers_size, |_, h| decode_headers(h))??;
    let host = g.host();
    // Envoy's Context::sendLocalResponse acts only with a stream's decoder
    // callbacks; from a root context it does nothing and answers OK.
    let Some(context_id) = host.effective_stream_ref().map(|s| s.id) else {
        host.harness_log(
            LogLevel::Warn,
            "proxy_send_local_response from a root context does nothing (Envoy answers OK \
             and sends no reply): set the effective context to the stream first"
                .to_string(),
        );
        return Ok(Status::Ok);
    };
    host.deferred.push(Deferred::LocalReply {
        context_id,
        reply: LocalReplySpec {
            status: status_code,
            details: String::from_utf8_lossy(&details).into_owned(),
            body,
            headers,
            grpc_status,
        },
    });
    Ok(Status::Ok)
}
