//! Shared data (`proxy_get_shared_data`/`proxy_set_shared_data`): a key-value
//! store shared by every worker of a VM, with compare-and-swap updates.

use crate::types::{Bytes, Status};
use proxy_wasm::hostcalls;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The operations [`update`] needs, so its retry logic is testable off-host.
pub trait SharedStore {
    /// Value and CAS token; `(None, None)` when the key is absent.
    fn get(&self, key: &str) -> Result<(Option<Bytes>, Option<u32>), Status>;
    /// Writes if `cas` still matches (`None` writes unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
}

/// The host's shared data.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Bytes>, Option<u32>), Status> {
        hostcalls::get_shared_data(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        hostcalls::set_shared_data(key, Some(value), cas)
    }
}

/// What the update closure decides.
pub enum Update<T> {
    /// Write this value (if the key did not change meanwhile) and return `T`.
    Write(Bytes, T),
    /// Leave the key as it is and return `T`.
    Keep(T),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// Other workers kept changing the key; gave up after this many attempts.
    Contended { attempts: u32 },
    /// The host refused the read or write.
    Host(Status),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Contended { attempts } => {
                write!(
                    f,
                    "shared data kept changing; gave up after {attempts} attempts"
                )
            }
            UpdateError::Host(status) => write!(
                f,
                "shared data access failed: {}",
                crate::status_name(*status)
            ),
        }
    }
}

/// Read-modify-write of `key` with CAS: `decide` sees the current value and
/// is re-run on a fresh read whenever another worker wrote in between.
///
/// A key that does not exist yet is created without a CAS check (the ABI has
/// no "create if absent"), so two workers creating it at once may both write.
pub fn update<S: SharedStore, T>(
    store: &S,
    key: &str,
    max_attempts: u32,
    mut decide: impl FnMut(Option<&[u8]>) -> Update<T>,
) -> Result<T, UpdateError> {
    for _ in 0..max_attempts.max(1) {
        let (current, cas) = store.get(key).map_err(UpdateError::Host)?;
        match decide(current.as_deref()) {
            Update::Keep(result) => return Ok(result),
            Update::Write(value, result) => match store.set(key, &value, cas) {
                Ok(()) => return Ok(result),
                Err(Status::CasMismatch) => continue,
                Err(status) => return Err(UpdateError::Host(status)),
            },
        }
    }
    Err(UpdateError::Contended {
        attempts: max_attempts.max(1),
    })
}

/// An in-memory store with Envoy's CAS rules (a global, never-zero CAS
/// counter; a stale CAS is CAS_MISMATCH), for testing filter logic off-host.
/// `interfere(n)` makes the next `n` writes find that another worker wrote first.
#[derive(Default)]
pub struct MemoryStore {
    data: RefCell<HashMap<String, (Bytes, u32)>>,
    next_cas: Cell<u32>,
    interfere: Cell<u32>,
}

impl MemoryStore {
    pub fn interfere(&self, times: u32) {
        self.interfere.set(times);
    }

    fn bump(&self) -> u32 {
        self.next_cas.set(self.next_cas.get() + 1);
        self.next_cas.get()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Bytes>, Option<u32>), Status> {
        Ok(match self.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        if self.interfere.get() > 0 {
            self.interfere.set(self.interfere.get() - 1);
            let cas = self.bump();
            let mut data = self.data.borrow_mut();
            let entry = data.entry(key.to_string()).or_insert((Vec::new(), cas));
            entry.1 = cas;
            entry.0.push(b'!');
        }
        let current = self.data.borrow().get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(current)) = (cas, current)
            && expected != current
        {
            return Err(Status::CasMismatch);
        }
        let cas = self.bump();
        self.data
            .borrow_mut()
            .insert(key.to_string(), (value.to_vec(), cas));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn increment(store: &MemoryStore, attempts: u32) -> Result<usize, UpdateError> {
        update(store, "n", attempts, |current| {
            let next = current.map_or(0, <[u8]>::len) + 1;
            Update::Write(vec![b'x'; next], next)
        })
    }

    #[test]
    fn creates_then_updates() {
        let store = MemoryStore::default();
        assert_eq!(increment(&store, 3), Ok(1));
        assert_eq!(increment(&store, 3), Ok(2));
    }

    #[test]
    fn retries_on_cas_mismatch_with_a_fresh_read() {
        let store = MemoryStore::default();
        increment(&store, 3).unwrap();
        store.interfere(2);
        // Two interfering writes each appended one byte: 1 + 2 + ours = 4.
        assert_eq!(increment(&store, 3), Ok(4));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let store = MemoryStore::default();
        increment(&store, 3).unwrap();
        store.interfere(5);
        assert_eq!(
            increment(&store, 3),
            Err(UpdateError::Contended { attempts: 3 })
        );
    }

    #[test]
    fn keep_does_not_write() {
        let store = MemoryStore::default();
        let seen = update(&store, "k", 3, |current| Update::Keep(current.is_some())).unwrap();
        assert!(!seen);
        assert_eq!(store.get("k").unwrap(), (None, None));
    }
}
