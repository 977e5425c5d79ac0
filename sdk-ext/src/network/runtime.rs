//! The proxy-wasm adapter behind [`crate::network_filter!`]: a root context
//! that parses and validates the configuration and creates stream contexts,
//! which forward each connection callback to the filter with a
//! [`Connection`] handle that knows which data buffer is in reach.

use super::connection::Connection;
use super::filter::NetworkFilter;
use super::host::{EnvoyHost, Side};
use crate::types::{Action, ContextType, LogLevel, PeerType};
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use std::rc::Rc;
use std::time::SystemTime;

/// Registers network filter `F` with the SDK; called from `_initialize` by
/// [`crate::network_filter!`].
pub fn install<F: NetworkFilter>() {
    // As for HTTP plugins: forward everything until on_configure learns the
    // host's level (proxy_get_log_level is not allowed during start-up).
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(NetworkRootAdapter::<F> {
            context_id,
            shared: None,
        })
    });
}

/// What every connection of one root context (one worker) shares.
pub struct NetworkShared<F: NetworkFilter> {
    pub(crate) config: F::Config,
    root_context_id: u32,
}

impl<F: NetworkFilter> NetworkShared<F> {
    pub(crate) fn new(config: F::Config, root_context_id: u32) -> Self {
        Self {
            config,
            root_context_id,
        }
    }
}

/// The root context as [`NetworkFilter::on_tick`] sees it.
pub struct NetworkRoot<F: NetworkFilter> {
    shared: Rc<NetworkShared<F>>,
}

impl<F: NetworkFilter> NetworkRoot<F> {
    pub fn config(&self) -> &F::Config {
        &self.shared.config
    }

    pub fn context_id(&self) -> u32 {
        self.shared.root_context_id
    }

    pub fn now(&self) -> SystemTime {
        crate::clock::now()
    }
}

struct NetworkRootAdapter<F: NetworkFilter> {
    context_id: u32,
    shared: Option<Rc<NetworkShared<F>>>,
}

impl<F: NetworkFilter> Context for NetworkRootAdapter<F> {}

impl<F: NetworkFilter> RootContext for NetworkRootAdapter<F> {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let loaded = crate::runtime::load_configuration(F::NAME, F::configure, F::tick_period);
        match loaded {
            Some(config) => {
                self.shared = Some(Rc::new(NetworkShared::new(config, self.context_id)));
                true
            }
            None => false,
        }
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            F::on_tick(&NetworkRoot {
                shared: Rc::clone(shared),
            });
        }
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(match &self.shared {
            Some(shared) => {
                let connection = Connection::new(context_id, Rc::clone(shared), Rc::new(EnvoyHost));
                Box::new(StreamAdapter::new(connection))
            }
            // The host does not create connections for a plugin that failed
            // to configure; if one does, let the bytes through untouched.
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }
}

struct Unconfigured;

impl Context for Unconfigured {}
impl StreamContext for Unconfigured {}

/// One connection: the filter's state and its handle.
pub(super) struct StreamAdapter<F: NetworkFilter> {
    filter: F,
    connection: Connection<F>,
}

impl<F: NetworkFilter> StreamAdapter<F> {
    pub(super) fn new(connection: Connection<F>) -> Self {
        let filter = F::create(&connection);
        Self { filter, connection }
    }

    #[cfg(test)]
    pub(super) fn parts(&mut self) -> (&mut F, &mut Connection<F>) {
        (&mut self.filter, &mut self.connection)
    }

    fn data(&mut self, side: Side, size: usize, end_of_stream: bool) -> Action {
        self.connection.enter_data(side, size);
        let connection = &mut self.connection;
        let action = match side {
            Side::Downstream => self
                .filter
                .on_downstream_data(connection, size, end_of_stream),
            Side::Upstream => self
                .filter
                .on_upstream_data(connection, size, end_of_stream),
        };
        self.connection.leave_data(side, action);
        action
    }
}

impl<F: NetworkFilter> Context for StreamAdapter<F> {}

impl<F: NetworkFilter> StreamContext for StreamAdapter<F> {
    fn on_new_connection(&mut self) -> Action {
        let action = self.filter.on_new_connection(&mut self.connection);
        self.connection.finished_new_connection(action);
        action
    }

    fn on_downstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        self.data(Side::Downstream, data_size, end_of_stream)
    }

    fn on_downstream_close(&mut self, peer_type: PeerType) {
        self.filter
            .on_downstream_close(&mut self.connection, peer_type);
    }

    fn on_upstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        self.data(Side::Upstream, data_size, end_of_stream)
    }

    fn on_upstream_close(&mut self, peer_type: PeerType) {
        self.filter
            .on_upstream_close(&mut self.connection, peer_type);
    }

    fn on_log(&mut self) {
        self.filter.on_log(&mut self.connection);
    }
}
