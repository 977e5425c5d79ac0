//! The ABI's numbered enums (status codes, map/buffer/stream/metric types, log
//! levels), its versions and the stream callbacks' action.

/// Declares a `#[repr(u32)]` ABI enum with `from_u32` (unknown values are
/// `None`) and `name` (the spec's upper-case name, for traces and messages).
macro_rules! abi_enum {
    (
        $(#[$m:meta])*
        $enum:ident {
            $( $(#[$vm:meta])* $variant:ident = $value:literal, $name:literal; )*
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $enum {
            $( $(#[$vm])* $variant = $value, )*
        }

        impl $enum {
            /// Every value, in ABI order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant),*];

            /// From the ABI number; unknown values are `None`.
            pub const fn from_u32(value: u32) -> Option<$enum> {
                match value {
                    $( $value => Some($enum::$variant), )*
                    _ => None,
                }
            }

            /// The spec's upper-case name.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $enum::$variant => $name, )*
                }
            }
        }
    };
}

abi_enum!(
    /// Status codes returned by host functions.
    Status {
        /// Success.
        Ok = 0, "OK";
        /// The key, queue or call does not exist.
        NotFound = 1, "NOT_FOUND";
        /// An argument is out of range or malformed.
        BadArgument = 2, "BAD_ARGUMENT";
        /// The value cannot be serialized.
        SerializationFailure = 3, "SERIALIZATION_FAILURE";
        /// The value cannot be parsed.
        ParseFailure = 4, "PARSE_FAILURE";
        /// A pointer or length is outside guest memory (the Rust SDK cannot
        /// represent this code).
        InvalidMemoryAccess = 6, "INVALID_MEMORY_ACCESS";
        /// Nothing to return (an empty queue).
        Empty = 7, "EMPTY";
        /// The compare-and-swap value is stale.
        CasMismatch = 8, "CAS_MISMATCH";
        /// The host failed.
        InternalFailure = 10, "INTERNAL_FAILURE";
        /// The host does not implement the call (the Rust SDK cannot
        /// represent this code).
        Unimplemented = 12, "UNIMPLEMENTED";
    }
);

abi_enum!(
    /// Buffers a filter can read or write.
    BufferType {
        /// HTTP request body.
        HttpRequestBody = 0, "HTTP_REQUEST_BODY";
        /// HTTP response body.
        HttpResponseBody = 1, "HTTP_RESPONSE_BODY";
        /// TCP downstream data.
        DownstreamData = 2, "DOWNSTREAM_DATA";
        /// TCP upstream data.
        UpstreamData = 3, "UPSTREAM_DATA";
        /// Body of the http_call response being delivered.
        HttpCallResponseBody = 4, "HTTP_CALL_RESPONSE_BODY";
        /// gRPC message being delivered.
        GrpcReceiveBuffer = 5, "GRPC_RECEIVE_BUFFER";
        /// VM configuration.
        VmConfiguration = 6, "VM_CONFIGURATION";
        /// Plugin configuration.
        PluginConfiguration = 7, "PLUGIN_CONFIGURATION";
        /// Foreign function arguments.
        CallData = 8, "CALL_DATA";
    }
);

abi_enum!(
    /// Header maps a filter can read or write.
    MapType {
        /// Request headers.
        HttpRequestHeaders = 0, "HTTP_REQUEST_HEADERS";
        /// Request trailers.
        HttpRequestTrailers = 1, "HTTP_REQUEST_TRAILERS";
        /// Response headers.
        HttpResponseHeaders = 2, "HTTP_RESPONSE_HEADERS";
        /// Response trailers.
        HttpResponseTrailers = 3, "HTTP_RESPONSE_TRAILERS";
        /// gRPC initial metadata being delivered.
        GrpcReceiveInitialMetadata = 4, "GRPC_RECEIVE_INITIAL_METADATA";
        /// gRPC trailing metadata being delivered.
        GrpcReceiveTrailingMetadata = 5, "GRPC_RECEIVE_TRAILING_METADATA";
        /// Headers of the http_call response being delivered.
        HttpCallResponseHeaders = 6, "HTTP_CALL_RESPONSE_HEADERS";
        /// Trailers of the http_call response being delivered.
        HttpCallResponseTrailers = 7, "HTTP_CALL_RESPONSE_TRAILERS";
    }
);

abi_enum!(
    /// Streams for `proxy_continue_stream` / `proxy_close_stream`.
    StreamType {
        /// Request direction.
        HttpRequest = 0, "HTTP_REQUEST";
        /// Response direction.
        HttpResponse = 1, "HTTP_RESPONSE";
        /// TCP downstream.
        Downstream = 2, "DOWNSTREAM";
        /// TCP upstream.
        Upstream = 3, "UPSTREAM";
    }
);

abi_enum!(
    /// Who closed a TCP connection, as `proxy_on_downstream_connection_close`
    /// and `proxy_on_upstream_connection_close` report it (proxy-wasm-cpp-host's
    /// `CloseType`).
    PeerType {
        /// Not known (Envoy reports the upstream's end of stream this way).
        Unknown = 0, "UNKNOWN";
        /// The proxy closed it.
        Local = 1, "LOCAL";
        /// The peer closed it.
        Remote = 2, "REMOTE";
    }
);

abi_enum!(
    /// Metric kinds for `proxy_define_metric`.
    MetricType {
        /// Monotonic counter.
        Counter = 0, "COUNTER";
        /// Gauge.
        Gauge = 1, "GAUGE";
        /// Histogram.
        Histogram = 2, "HISTOGRAM";
    }
);

abi_enum!(
    /// Log levels for `proxy_log` and `proxy_get_log_level`.
    LogLevel {
        /// Trace.
        Trace = 0, "TRACE";
        /// Debug.
        Debug = 1, "DEBUG";
        /// Info.
        Info = 2, "INFO";
        /// Warning.
        Warn = 3, "WARN";
        /// Error.
        Error = 4, "ERROR";
        /// Critical.
        Critical = 5, "CRITICAL";
    }
);

/// The Proxy-Wasm ABI version a module declares by exporting an empty
/// `proxy_abi_version_*` function; which hostcalls exist and the callbacks'
/// arities differ per version (see the tables in this crate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_1_0`: header callbacks without end_of_stream, a
    /// missing header reads as OK and empty, `proxy_continue_request`/
    /// `proxy_continue_response`, `proxy_get_configuration`,
    /// `proxy_clear_route_cache`.
    V0_1_0,
    /// `proxy_abi_version_0_2_0`: 0.2.1 without `proxy_get_log_level`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1`.
    #[default]
    V0_2_1,
}

impl AbiVersion {
    /// Every version with the export that declares it, newest first.
    pub const ALL: [(AbiVersion, &'static str); 3] = [
        (AbiVersion::V0_2_1, "proxy_abi_version_0_2_1"),
        (AbiVersion::V0_2_0, "proxy_abi_version_0_2_0"),
        (AbiVersion::V0_1_0, "proxy_abi_version_0_1_0"),
    ];

    /// The version a module declares, from its export names (the newest
    /// when several are exported).
    pub fn detect<'a>(exports: impl Iterator<Item = &'a str> + Clone) -> Option<AbiVersion> {
        Self::ALL
            .iter()
            .find(|(_, marker)| exports.clone().any(|e| e == *marker))
            .map(|(v, _)| *v)
    }

    /// The export that declares this version.
    pub const fn marker(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "proxy_abi_version_0_1_0",
            AbiVersion::V0_2_0 => "proxy_abi_version_0_2_0",
            AbiVersion::V0_2_1 => "proxy_abi_version_0_2_1",
        }
    }

    /// Whether a module of this version may import the host function
    /// `name` (from [`crate::for_each_hostcall!`]; unknown names: false).
    pub fn offers(self, name: &str) -> bool {
        crate::tables::hostcall_versions(name).is_some_and(|versions| versions.contains(&self))
    }

    /// `"0.1.0"`, `"0.2.0"`, `"0.2.1"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }
}

/// What a stream callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    /// 0: let the data through.
    Continue = 0,
    /// 1 (or anything else): stop iteration.
    Pause = 1,
}

impl Action {
    /// A body or trailers callback's result: every value other than 0 stops.
    pub const fn from_raw(value: u64) -> Action {
        if value == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// A headers callback's result as Envoy converts it: 2
    /// (ContinueAndEndStream) is not one of the statuses Envoy's
    /// `convertFilterHeadersStatus` maps, so it falls to Continue; 1, 3, 4
    /// and larger values stop (proxy-wasm-cpp-host turns them into
    /// StopAllIterationAndWatermark or StopAllIterationAndBuffer).
    pub const fn from_headers_raw(value: u64) -> Action {
        if value == 0 || value == 2 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::from_u32(*status as u32), Some(*status));
        }
        assert_eq!(Status::from_u32(5), None);
        assert_eq!(
            Status::from_u32(12).map(Status::name),
            Some("UNIMPLEMENTED")
        );
        assert_eq!(MapType::from_u32(6), Some(MapType::HttpCallResponseHeaders));
        assert_eq!(BufferType::from_u32(9), None);
        assert_eq!(LogLevel::from_u32(5).map(LogLevel::name), Some("CRITICAL"));
        assert_eq!(StreamType::ALL.len(), 4);
        assert_eq!(MetricType::Histogram.name(), "HISTOGRAM");
    }

    #[test]
    fn action_is_continue_only_for_zero() {
        assert_eq!(Action::from_raw(0), Action::Continue);
        assert_eq!(Action::from_raw(1), Action::Pause);
        assert_eq!(Action::from_raw(u64::MAX), Action::Pause);
    }

    #[test]
    fn the_newest_declared_version_wins() {
        let exports = [
            "memory",
            "proxy_abi_version_0_1_0",
            "proxy_abi_version_0_2_0",
        ];
        assert_eq!(
            AbiVersion::detect(exports.iter().copied()),
            Some(AbiVersion::V0_2_0)
        );
        assert_eq!(AbiVersion::detect(["memory"].iter().copied()), None);
        for (version, marker) in AbiVersion::ALL {
            assert_eq!(version.marker(), marker);
        }
    }
}
