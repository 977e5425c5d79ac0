//! Proxy-Wasm ABI 0.2.1 enums, status codes and the header-map wire format.
