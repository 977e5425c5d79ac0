//! Several plugins in one VM: Envoy runs plugins whose vm_id, VM
//! configuration and code are equal in ONE VM per worker, each with its own
//! root context (proxy-wasm-cpp-host `WasmBase::start` creates a root
//! context per plugin and calls `proxy_on_vm_start` and `proxy_on_configure`
//! on it; Envoy's `Common::Wasm::createWasm` looks the VM up by that key).
//!
//! The host keeps the active root's plugin, properties and tick timer in
//! its own fields (what every hostcall reads) and the other roots here;
//! before each callback the driver makes the callback's root active.

use std::mem::swap;

use super::Host;
use super::properties::{self, PropertyStore};
use crate::model::{PluginConfig, Properties};

/// A root context that is not active right now.
pub(crate) struct RootSlot {
    id: u32,
    plugin: PluginConfig,
    properties: PropertyStore,
    tick_period_ms: u32,
    tick_generation: u64,
}

impl Host {
    /// Adds another plugin's root context to this VM; its id comes from the
    /// VM's one context counter.
    pub(crate) fn add_root(&mut self, plugin: &PluginConfig, extra: &Properties) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        let mut store = PropertyStore::from_properties(&properties::defaults(
            &plugin.name,
            &plugin.root_id,
            &plugin.vm_id,
        ));
        store.extend(extra);
        self.other_roots.push(RootSlot {
            id,
            plugin: plugin.clone(),
            properties: store,
            tick_period_ms: 0,
            tick_generation: 0,
        });
        id
    }

    /// Makes root context `id` the active one (no-op if it already is, or
    /// if `id` is not a root of this VM).
    pub(crate) fn enter_root(&mut self, id: u32) {
        if id == self.root_context_id {
            return;
        }
        let Some(slot) = self.other_roots.iter_mut().find(|s| s.id == id) else {
            return;
        };
        swap(&mut slot.id, &mut self.root_context_id);
        swap(&mut slot.plugin, &mut self.plugin);
        swap(&mut slot.properties, &mut self.properties);
        swap(&mut slot.tick_period_ms, &mut self.tick_period_ms);
        swap(&mut slot.tick_generation, &mut self.tick_generation);
    }

    /// True when `id` is one of this VM's root contexts.
    pub(crate) fn is_root(&self, id: u32) -> bool {
        id == self.root_context_id || self.other_roots.iter().any(|s| s.id == id)
    }

    /// The root context a context belongs to (a root belongs to itself).
    pub(crate) fn root_of(&self, context_id: u32) -> u32 {
        self.stream_ref(context_id)
            .map_or(context_id, |s| s.root_id)
    }

    /// The plugin whose root context is `id` (the active one if unknown).
    pub(crate) fn plugin_of(&self, id: u32) -> &PluginConfig {
        self.other_roots
            .iter()
            .find(|s| s.id == id)
            .map_or(&self.plugin, |s| &s.plugin)
    }

    /// A root's tick timer: (period, generation).
    pub(crate) fn tick_state(&self, id: u32) -> (u32, u64) {
        match self.other_roots.iter().find(|s| s.id == id) {
            Some(s) => (s.tick_period_ms, s.tick_generation),
            None => (self.tick_period_ms, self.tick_generation),
        }
    }
}
