//! Which HTTP fields of a stream a filter can reach, and when.
//!
//! Envoy's Wasm `Context` holds a pointer to each header map and body
//! buffer only while the callback that delivered it runs, or while the
//! filter keeps that direction stopped from it: `Context::decodeHeaders`,
//! `decodeData`, `decodeTrailers` and their `encode*` twins
//! (source/extensions/common/wasm/context.cc) clear the pointer when the
//! callback returns Continue, and `Context::continueStream` clears the
//! request-side pointers at once. A map out of reach is BAD_ARGUMENT to
//! read or write (`getConstMap`/`getMap` return null) and empty as pairs;
//! a body out of reach reads as empty and refuses writes
//! (proxy-wasm-cpp-host's `BufferBase`). The harness applies the same rule
//! to both directions (Envoy's `encodeData` clears the request buffer
//! pointer where the response one is meant, leaving a stale pointer: the
//! harness treats the response body as gone, the strict reading).

pub(crate) use crate::abi::HttpField as Field;
use crate::abi::{BufferType, MapType};

use super::{HeaderMap, Host, StreamState};

/// Why a field is out of reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Not delivered to this filter (yet).
    #[default]
    NotYet,
    /// Its callback returned Continue.
    Continued,
    /// The filter called `proxy_continue_stream` for the direction.
    ContinueStream,
    /// The stream is over (access-log phase and after).
    Ended,
}

/// The fields a stream's filter can reach now, why the others are gone,
/// and which ones it has already been warned about.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    live: u8,
    warned: u8,
    gone: [Gone; 6],
}

impl Reach {
    /// The field was just delivered (or created on demand).
    pub(crate) fn grant(&mut self, field: Field) {
        self.live |= field.bit();
    }

    /// The field leaves the filter's reach.
    pub(crate) fn withdraw(&mut self, field: Field, why: Gone) {
        if self.has(field) {
            self.live &= !field.bit();
            self.gone[field as usize] = why;
        }
    }

    /// Every field leaves the filter's reach: the stream is over.
    pub(crate) fn end(&mut self) {
        for field in Field::ALL {
            self.withdraw(field, Gone::Ended);
        }
    }

    pub(crate) fn has(&self, field: Field) -> bool {
        self.live & field.bit() != 0
    }

    /// True the first time a field out of reach is asked for.
    fn first_miss(&mut self, field: Field) -> bool {
        let first = self.warned & field.bit() == 0;
        self.warned |= field.bit();
        first
    }
}

impl StreamState {
    /// A connection's DOWNSTREAM_DATA or UPSTREAM_DATA while in reach.
    fn network_data(&self, buffer: BufferType) -> Option<&Vec<u8>> {
        match buffer {
            BufferType::DownstreamData => self.downstream_data.as_ref(),
            BufferType::UpstreamData => self.upstream_data.as_ref(),
            _ => None,
        }
    }

    fn header_map(&self, field: Field) -> Option<&HeaderMap> {
        match field {
            Field::RequestHeaders => self.request_headers.as_ref(),
            Field::RequestTrailers => self.request_trailers.as_ref(),
            Field::ResponseHeaders => self.response_headers.as_ref(),
            Field::ResponseTrailers => self.response_trailers.as_ref(),
            Field::RequestBody | Field::ResponseBody => None,
        }
    }

    /// The map the filter reads for `field` now: the live one while in
    /// reach; in on_log the access-log copies (what was actually sent),
    /// which have no request trailers (Envoy's `getConstMap`).
    pub(crate) fn readable_map(&self, field: Field, access_log: bool) -> Option<&HeaderMap> {
        if access_log {
            return (field != Field::RequestTrailers)
                .then(|| self.header_map(field))
                .flatten();
        }
        self.reach.has(field).then(|| self.header_map(field))?
    }
}

impl Host {
    /// The header map of this type the filter can read now, if any.
    pub fn map(&self, map: MapType) -> Option<&HeaderMap> {
        match map {
            MapType::HttpCallResponseHeaders => self.delivery.http_headers.as_ref(),
            MapType::HttpCallResponseTrailers => self.delivery.http_trailers.as_ref(),
            MapType::GrpcReceiveInitialMetadata => self.delivery.grpc_initial_metadata.as_ref(),
            MapType::GrpcReceiveTrailingMetadata => self.delivery.grpc_trailing_metadata.as_ref(),
            _ => {
                let field = Field::of_map(map)?;
                self.effective_stream_ref()?
                    .readable_map(field, self.access_log)
            }
        }
    }

    /// The writable header map of this type available now, if any
    /// (Envoy's getMap: callout and gRPC maps are not writable, nor are
    /// the access-log copies). In the last body callback of a direction
    /// without trailers, its trailers are created empty on first use, as
    /// Envoy's addDecodedTrailers / addEncodedTrailers do; they then travel
    /// on with the body.
    pub fn map_mut(&mut self, map: MapType) -> Option<&mut HeaderMap> {
        let field = Field::of_map(map)?;
        let on_demand = self.trailers_on_demand == Some(map);
        let s = self.effective_stream()?;
        if on_demand && !s.reach.has(field) {
            let trailers = match field {
                Field::RequestTrailers => &mut s.request_trailers,
                _ => &mut s.response_trailers,
            };
            if trailers.is_none() {
                *trailers = Some(HeaderMap::default());
                s.reach.grant(field);
            }
        }
        if !s.reach.has(field) {
            return None;
        }
        match field {
            Field::RequestHeaders => s.request_headers.as_mut(),
            Field::RequestTrailers => s.request_trailers.as_mut(),
            Field::ResponseHeaders => s.response_headers.as_mut(),
            Field::ResponseTrailers => s.response_trailers.as_mut(),
            Field::RequestBody | Field::ResponseBody => None,
        }
    }

    /// The buffer of this type available now, if any. A stream's body out
    /// of reach reads as empty.
    pub fn buffer(&self, buffer: BufferType) -> Option<&[u8]> {
        match buffer {
            BufferType::HttpRequestBody | BufferType::HttpResponseBody => {
                let s = self.effective_stream_ref()?;
                let field = Field::of_buffer(buffer)?;
                if !s.reach.has(field) {
                    return Some(&[]);
                }
                Some(match field {
                    Field::RequestBody => s.request_body.as_slice(),
                    _ => s.response_body.as_slice(),
                })
            }
            BufferType::HttpCallResponseBody => self.delivery.http_body.as_deref(),
            BufferType::GrpcReceiveBuffer => self.delivery.grpc_message.as_deref(),
            BufferType::VmConfiguration => Some(self.plugin.vm_config.as_bytes()),
            // Envoy holds the plugin configuration only while configuring.
            BufferType::PluginConfiguration => self
                .configuring
                .then_some(self.plugin.configuration.as_bytes()),
            // Envoy's `Context::getBuffer` answers for these in every
            // context: the connection's data while a network filter has
            // it, else an empty buffer (OK, no bytes).
            BufferType::DownstreamData | BufferType::UpstreamData => Some(
                self.effective_stream_ref()
                    .and_then(|s| s.network_data(buffer))
                    .map_or(&[][..], Vec::as_slice),
            ),
            BufferType::CallData => None,
        }
    }

    /// The writable body buffer of this type, if it is in reach.
    pub fn buffer_mut(&mut self, buffer: BufferType) -> Option<&mut Vec<u8>> {
        if matches!(
            buffer,
            BufferType::DownstreamData | BufferType::UpstreamData
        ) {
            let s = self.effective_stream()?;
            return match buffer {
                BufferType::DownstreamData => s.downstream_data.as_mut(),
                _ => s.upstream_data.as_mut(),
            };
        }
        let field = Field::of_buffer(buffer)?;
        let s = self.effective_stream()?;
        if !s.reach.has(field) {
            return None;
        }
        match field {
            Field::RequestBody => Some(&mut s.request_body),
            _ => Some(&mut s.response_body),
        }
    }

    /// `proxy_continue_stream` for a direction: Envoy's
    /// `Context::continueStream` drops the request-side pointers at once
    /// (for either direction); the harness also drops the response side's
    /// when the response is continued.
    pub(crate) fn continue_withdraws(&mut self, context_id: u32, request: bool) {
        let Some(s) = self.stream_mut(context_id) else {
            return;
        };
        for field in Field::withdrawn_by_continue(request) {
            s.reach.withdraw(field, Gone::ContinueStream);
        }
    }

    /// A map or buffer of the effective stream was out of reach: the first
    /// time per field and stream, a warning that says why and what to do.
    pub(crate) fn warn_out_of_reach(&mut self, field: Field) {
        let callback = self.callback.trim_start_matches("proxy_");
        let Some(s) = self.effective_stream() else {
            return;
        };
        if s.reach.has(field) || !s.reach.first_miss(field) {
            return;
        }
        let what = field.describe();
        let delivered_by = field.callback();
        let why = match s.reach.gone[field as usize] {
            Gone::NotYet => {
                format!("not delivered to this filter yet ({delivered_by} delivers it)")
            }
            Gone::Continued => {
                format!("{delivered_by} returned Continue, which ends a filter's access in Envoy")
            }
            Gone::ContinueStream => {
                "the filter called proxy_continue_stream, which ends access at once".to_string()
            }
            Gone::Ended => "the stream is over; on_log can only read what was sent".to_string(),
        };
        let message = format!(
            "{what} out of reach in {callback}: {why}. A header map out of reach is \
             BAD_ARGUMENT to read or write (its pairs read as empty); a body out of reach \
             reads as empty and refuses writes; the Rust SDK panics on BAD_ARGUMENT. Keep \
             what later callbacks need in the stream context, or return Pause to hold it \
             until you continue."
        );
        self.harness_log(crate::model::LogLevel::Warn, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_leave_reach_once_with_their_reason() {
        let mut r = Reach::default();
        assert!(!r.has(Field::RequestHeaders));
        r.grant(Field::RequestHeaders);
        r.grant(Field::RequestBody);
        assert!(r.has(Field::RequestHeaders));
        r.withdraw(Field::RequestHeaders, Gone::Continued);
        assert!(!r.has(Field::RequestHeaders));
        assert!(r.has(Field::RequestBody));
        assert_eq!(r.gone[Field::RequestHeaders as usize], Gone::Continued);
        // A field already gone keeps its first reason.
        r.withdraw(Field::RequestHeaders, Gone::Ended);
        assert_eq!(r.gone[Field::RequestHeaders as usize], Gone::Continued);
        assert!(r.first_miss(Field::RequestHeaders));
        assert!(!r.first_miss(Field::RequestHeaders));
        r.end();
        assert!(!r.has(Field::RequestBody));
        assert_eq!(r.gone[Field::RequestBody as usize], Gone::Ended);
    }
}
