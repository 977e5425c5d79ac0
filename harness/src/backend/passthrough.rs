//! A VM with no code: the chain of a connection manager whose only HTTP
//! filter is the router. Every callback gets the result Envoy assumes for
//! an export a module lacks (proxy-wasm-cpp-host looks each `proxy_on_*`
//! up once and skips a missing one, `src/wasm.cc` `registerCallbacks`;
//! Envoy then continues the stream), so streams go through the filter
//! manager, the router and the access log with no filter logic at all.

use crate::backend::{Callback, StartExports, Vm};
use crate::host::Host;

pub(crate) struct PassThroughVm {
    host: Host,
}

impl PassThroughVm {
    pub(crate) fn new(host: Host) -> PassThroughVm {
        PassThroughVm { host }
    }
}

impl Vm for PassThroughVm {
    fn host(&mut self) -> &mut Host {
        &mut self.host
    }

    fn host_ref(&self) -> &Host {
        &self.host
    }

    fn start_exports(&self) -> StartExports {
        StartExports::default()
    }

    fn call(&mut self, callback: Callback) -> Result<u64, String> {
        Ok(callback.default_result())
    }
}
