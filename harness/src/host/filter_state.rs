//! A stream's filter state. Envoy keeps one per stream, in the stream's
//! `StreamInfo`: `Context::setProperty` and `Context::setEnvoyFilterState`
//! (source/extensions/common/wasm/context.cc) write to
//! `getRequestStreamInfo()->filterState()`, so every filter of the chain,
//! in whichever VM, reads what another one set, and the network filters of
//! a connection share the connection's. The manager hands every context of
//! one stream the same [`SharedFilterState`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::foreign::EnvoyFilterState;
use super::properties::PropertyStore;

/// What the filters of one stream have stored.
#[derive(Debug, Default)]
pub struct FilterState {
    /// `proxy_set_property` values, by filter-state key (`wasm.<path>`).
    pub(crate) properties: PropertyStore,
    /// Keys created under a read-only declaration: Envoy's `CelState`
    /// takes the prototype of the context that created it, so a later
    /// write from any filter is refused.
    pub(crate) readonly: BTreeSet<Vec<u8>>,
    /// Objects set through the `set_envoy_filter_state` foreign function.
    pub(crate) objects: EnvoyFilterState,
}

/// One stream's filter state, shared by its contexts (one worker thread
/// uses it at a time; the lock is never contended).
#[derive(Clone, Debug, Default)]
pub struct SharedFilterState(Arc<Mutex<FilterState>>);

impl SharedFilterState {
    /// The state, for reading or writing.
    pub(crate) fn lock(&self) -> MutexGuard<'_, FilterState> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where `proxy_set_property` stored a value, and whether it may.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SetProperty {
    /// Stored.
    Stored,
    /// The key was created read-only and already holds its value.
    ReadOnly,
}

impl FilterState {
    /// `Context::setProperty` on the stream's state: the first write
    /// creates the key (read-only when the writer's plugin declared it
    /// so); a read-only key keeps its first value.
    pub(crate) fn set_property(&mut self, key: &[u8], value: &[u8], readonly: bool) -> SetProperty {
        if self.readonly.contains(key) {
            return SetProperty::ReadOnly;
        }
        let exists = self.properties.exact(key).is_some();
        if readonly && !exists {
            self.readonly.insert(key.to_vec());
        }
        self.properties.set_raw(key, value);
        SetProperty::Stored
    }
}

impl super::StreamState {
    /// The stream's filter state, if anything shares or stored one.
    pub(crate) fn filter_state(&self) -> Option<MutexGuard<'_, FilterState>> {
        self.filter_state.as_ref().map(SharedFilterState::lock)
    }

    /// The stream's filter state for writing (a context the manager gave
    /// no shared state to gets its own on the first write).
    pub(crate) fn filter_state_mut(&mut self) -> MutexGuard<'_, FilterState> {
        self.filter_state
            .get_or_insert_with(Default::default)
            .lock()
    }
}
