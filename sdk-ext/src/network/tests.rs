//! A network filter driven through the adapter against a model of Envoy's
//! side: the data buffer exists only during its callback (context.cc
//! onData/onWrite), writes follow `Buffer::copyFrom`, paused downstream
//! bytes are delivered again with the next chunk, and foreign calls and
//! properties are recorded and answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::filter_state::{LifeSpan, TCP_PROXY_CLUSTER, encode_arguments};
use super::runtime::{NetworkShared, StreamAdapter};
use super::*;
use crate::ConfigError;
use crate::ffi::HostStatus;
use crate::types::{Action, Bytes, PeerType};
use proxy_wasm::traits::StreamContext;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Default)]
struct ModelEnvoy {
    /// The buffer Envoy points the filter at during a data callback.
    live: RefCell<Option<(Side, Vec<u8>)>>,
    host_calls: Cell<u32>,
    foreign: RefCell<Vec<(String, Vec<u8>)>>,
    foreign_status: Cell<u32>,
    continued: Cell<u32>,
    closed: Cell<u32>,
    properties: RefCell<HashMap<String, Vec<u8>>>,
}

impl ModelEnvoy {
    fn buffer_of(&self, side: Side) -> Result<(), HostStatus> {
        match &*self.live.borrow() {
            Some((live, _)) if *live == side => Ok(()),
            _ => Err(HostStatus(1)),
        }
    }

    fn property(&self, path: &str, value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(path.to_string(), value.to_vec());
    }
}

impl ConnectionHost for ModelEnvoy {
    fn read(&self, side: Side) -> Result<Bytes, HostStatus> {
        self.host_calls.set(self.host_calls.get() + 1);
        self.buffer_of(side)?;
        Ok(self.live.borrow().as_ref().unwrap().1.clone())
    }

    fn write(&self, side: Side, start: usize, size: usize, data: &[u8]) -> Result<(), HostStatus> {
        self.host_calls.set(self.host_calls.get() + 1);
        self.buffer_of(side)?;
        let mut live = self.live.borrow_mut();
        let buffer = &mut live.as_mut().unwrap().1;
        if start == 0 {
            buffer.drain(..size.min(buffer.len()));
            buffer.splice(0..0, data.iter().copied());
        } else if start >= buffer.len() {
            buffer.extend_from_slice(data);
        } else {
            return Err(HostStatus(2));
        }
        Ok(())
    }

    fn continue_downstream(&self) -> Result<(), HostStatus> {
        self.continued.set(self.continued.get() + 1);
        Ok(())
    }

    fn close(&self) -> Result<(), HostStatus> {
        self.closed.set(self.closed.get() + 1);
        Ok(())
    }

    fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Bytes, HostStatus> {
        self.foreign
            .borrow_mut()
            .push((name.to_string(), arguments.to_vec()));
        crate::ffi::check(self.foreign_status.get()).map(|()| Vec::new())
    }

    fn property(&self, path: &[&str]) -> Option<Bytes> {
        self.properties.borrow().get(&path.join(".")).cloned()
    }
}

/// Routes by the first byte once `needed` bytes are in, tags the client's
/// bytes with a prefix and the upstream's with a suffix.
#[derive(Default)]
struct Sniffer {
    route: Option<Result<(), RouteError>>,
    closes: Vec<(&'static str, PeerType)>,
    late: Option<(Bytes, Result<(), HostStatus>)>,
}

impl NetworkFilter for Sniffer {
    const NAME: &'static str = "sniffer";
    type Config = usize;

    fn configure(_raw: &[u8]) -> Result<usize, ConfigError> {
        Ok(3)
    }

    fn create(_connection: &Connection<Self>) -> Self {
        Sniffer::default()
    }

    fn on_new_connection(&mut self, _connection: &mut Connection<Self>) -> Action {
        Action::Pause
    }

    fn on_downstream_data(&mut self, c: &mut Connection<Self>, size: usize, eos: bool) -> Action {
        if self.route.is_some() {
            return Action::Continue;
        }
        if size < *c.config() && !eos {
            return Action::Pause;
        }
        let cluster = match c.data(Side::Downstream).first() {
            Some(b'*') => "redis",
            _ => "fallback",
        };
        self.route = Some(c.set_tcp_proxy_cluster(cluster));
        c.prepend_data(Side::Downstream, b"<").unwrap();
        c.append_data(Side::Downstream, b">").unwrap();
        Action::Continue
    }

    fn on_upstream_data(&mut self, c: &mut Connection<Self>, _size: usize, _eos: bool) -> Action {
        // Out of reach: the client's buffer during the upstream callback.
        assert!(c.data(Side::Downstream).is_empty());
        c.append_data(Side::Upstream, b"!").unwrap();
        Action::Continue
    }

    fn on_downstream_close(&mut self, c: &mut Connection<Self>, peer: PeerType) {
        self.closes.push(("downstream", peer));
        self.late = Some((
            c.data(Side::Upstream),
            c.replace_data(Side::Downstream, b"x"),
        ));
    }

    fn on_upstream_close(&mut self, _c: &mut Connection<Self>, peer: PeerType) {
        self.closes.push(("upstream", peer));
    }
}

struct Run {
    envoy: Rc<ModelEnvoy>,
    adapter: StreamAdapter<Sniffer>,
    /// Downstream bytes Envoy holds for the filter after a Pause.
    held: Vec<u8>,
}

impl Run {
    fn new() -> Run {
        let envoy = Rc::new(ModelEnvoy::default());
        let host: Rc<dyn ConnectionHost> = envoy.clone();
        let shared = Rc::new(NetworkShared::new(3, 1));
        let adapter = StreamAdapter::new(Connection::new(2, shared, host));
        Run {
            envoy,
            adapter,
            held: Vec::new(),
        }
    }

    /// Delivers `chunk` (after any held bytes); the bytes let through, if any.
    fn downstream(&mut self, chunk: &[u8], eos: bool) -> Option<Vec<u8>> {
        self.held.extend_from_slice(chunk);
        let buffer = std::mem::take(&mut self.held);
        let size = buffer.len();
        *self.envoy.live.borrow_mut() = Some((Side::Downstream, buffer));
        let action = self.adapter.on_downstream_data(size, eos);
        let (_, after) = self.envoy.live.borrow_mut().take().unwrap();
        match action {
            Action::Continue => Some(after),
            _ => {
                self.held = after;
                None
            }
        }
    }

    fn upstream(&mut self, chunk: &[u8], eos: bool) -> Vec<u8> {
        *self.envoy.live.borrow_mut() = Some((Side::Upstream, chunk.to_vec()));
        let action = self.adapter.on_upstream_data(chunk.len(), eos);
        assert_eq!(action, Action::Continue);
        self.envoy.live.borrow_mut().take().unwrap().1
    }
}

#[test]
fn a_paused_connection_is_routed_by_its_first_bytes_then_let_through() {
    let mut run = Run::new();
    assert_eq!(run.adapter.on_new_connection(), Action::Pause);
    assert!(!run.adapter.parts().1.downstream_released());
    // Two bytes are not enough: held, and delivered again with the third.
    assert_eq!(run.downstream(b"*2", false), None);
    let passed = run.downstream(b"\r\n", false).unwrap();
    assert_eq!(passed, b"<*2\r\n>", "prepend and append follow copyFrom");
    let (sniffer, connection) = run.adapter.parts();
    assert_eq!(sniffer.route, Some(Ok(())));
    assert!(connection.downstream_released());
    let calls = run.envoy.foreign.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "set_envoy_filter_state");
    assert_eq!(
        calls[0].1,
        encode_arguments(TCP_PROXY_CLUSTER, "redis", LifeSpan::DownstreamConnection)
    );
}

#[test]
fn end_of_stream_decides_with_what_arrived() {
    let mut run = Run::new();
    run.adapter.on_new_connection();
    assert_eq!(run.downstream(b"a", true).unwrap(), b"<a>");
    let calls = run.envoy.foreign.borrow();
    assert_eq!(
        calls[0].1,
        encode_arguments(
            TCP_PROXY_CLUSTER,
            "fallback",
            LifeSpan::DownstreamConnection
        )
    );
}

#[test]
fn buffers_are_out_of_reach_outside_their_callback() {
    let mut run = Run::new();
    run.adapter.on_new_connection();
    run.downstream(b"abc", false).unwrap();
    // The downstream buffer is not read during the upstream callback.
    assert_eq!(run.upstream(b"pong", false), b"pong!");
    let calls_before = run.envoy.host_calls.get();
    run.adapter.on_downstream_close(PeerType::Remote);
    let (sniffer, _) = run.adapter.parts();
    let (read, write) = sniffer.late.take().unwrap();
    assert!(read.is_empty());
    assert_eq!(write, Err(HostStatus(1)), "NOT_FOUND, as Envoy answers");
    assert_eq!(
        run.envoy.host_calls.get(),
        calls_before,
        "no host call is made out of reach"
    );
    assert_eq!(sniffer.closes, [("downstream", PeerType::Remote)]);
}

#[test]
fn a_cluster_chosen_after_tcp_proxy_connected_is_reported_too_late() {
    let envoy = Rc::new(ModelEnvoy::default());
    let host: Rc<dyn ConnectionHost> = envoy.clone();
    let connection = Connection::<Sniffer>::new(2, Rc::new(NetworkShared::new(3, 1)), host);
    connection.finished_new_connection(Action::Continue);
    assert_eq!(
        connection.set_tcp_proxy_cluster("late"),
        Err(RouteError::TooLate)
    );
    assert_eq!(
        envoy.foreign.borrow().len(),
        1,
        "the state is still written"
    );
    assert!(RouteError::TooLate.to_string().contains("Action::Pause"));
}

#[test]
fn continuing_releases_the_connection_and_host_refusals_are_reported() {
    let envoy = Rc::new(ModelEnvoy::default());
    let host: Rc<dyn ConnectionHost> = envoy.clone();
    let connection = Connection::<Sniffer>::new(2, Rc::new(NetworkShared::new(3, 1)), host);
    connection.finished_new_connection(Action::Pause);
    envoy.foreign_status.set(1);
    assert_eq!(
        connection.set_tcp_proxy_cluster("unknown"),
        Err(RouteError::Host(HostStatus(1)))
    );
    connection.continue_downstream().unwrap();
    assert!(connection.downstream_released());
    assert_eq!(envoy.continued.get(), 1);
    connection.close().unwrap();
    assert_eq!(envoy.closed.get(), 1);
}

#[test]
fn replace_drains_the_whole_buffer_after_earlier_edits() {
    let envoy = Rc::new(ModelEnvoy::default());
    let host: Rc<dyn ConnectionHost> = envoy.clone();
    let connection = Connection::<Sniffer>::new(2, Rc::new(NetworkShared::new(3, 1)), host);
    *envoy.live.borrow_mut() = Some((Side::Upstream, b"hello".to_vec()));
    connection.enter_data(Side::Upstream, 5);
    connection.append_data(Side::Upstream, b" world").unwrap();
    connection.prepend_data(Side::Upstream, b">> ").unwrap();
    assert_eq!(connection.data(Side::Upstream), b">> hello world");
    connection.replace_data(Side::Upstream, b"bye").unwrap();
    assert_eq!(connection.data(Side::Upstream), b"bye");
    connection.append_data(Side::Upstream, b"!").unwrap();
    assert_eq!(connection.data(Side::Upstream), b"bye!");
    connection.leave_data(Side::Upstream, Action::Continue);
    assert!(connection.data(Side::Upstream).is_empty());
    assert!(
        !connection.downstream_released(),
        "upstream data does not release"
    );
}

#[test]
fn connection_properties_are_decoded() {
    let envoy = Rc::new(ModelEnvoy::default());
    envoy.property("source.address", b"[2001:db8::7]:51000");
    envoy.property("source.port", &51000i64.to_le_bytes());
    envoy.property("destination.address", b"10.0.0.2:6379");
    envoy.property("destination.port", &6379i64.to_le_bytes());
    envoy.property("connection.id", &42i64.to_le_bytes());
    envoy.property("connection.requested_server_name", b"");
    envoy.property("connection.mtls", &[1]);
    envoy.property("plugin_name", b"guard");
    let host: Rc<dyn ConnectionHost> = envoy.clone();
    let connection = Connection::<Sniffer>::new(2, Rc::new(NetworkShared::new(3, 1)), host);
    assert_eq!(connection.source_ip(), "2001:db8::7".parse().ok());
    assert_eq!(connection.source_port(), Some(51000));
    assert_eq!(
        connection.destination_address().as_deref(),
        Some("10.0.0.2:6379")
    );
    assert_eq!(connection.destination_port(), Some(6379));
    assert_eq!(connection.connection_id(), Some(42));
    assert_eq!(
        connection.requested_server_name(),
        None,
        "empty SNI is none"
    );
    assert_eq!(connection.mtls(), Some(true));
    assert_eq!(connection.upstream_address(), None);
    assert_eq!(connection.log_prefix(), "guard [conn 42]");
}
