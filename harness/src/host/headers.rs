//! A header map with Envoy's behaviour: keys lower-cased on every write,
//! lookups by lower-cased key, order and duplicates preserved.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::model::Headers;

/// Ordered header pairs, keys stored lower-case. Every pair lives in one
/// byte buffer, indexed by a short inline list, and the whole is shared
/// copy-on-write: building a map costs one or two allocations however many
/// headers it holds, and cloning one costs none until either copy is
/// written. The host keeps a copy of each map a filter lets through while
/// the filter's own map stays readable (on_log reads it), so most copies
/// are never written.
#[derive(Clone, Default)]
pub struct HeaderMap {
    /// `None` for an empty map that was never written.
    pairs: Option<Arc<Pairs>>,
}

/// Pairs up to this count are indexed without an allocation of their own.
const INLINE_PAIRS: usize = 10;

#[derive(Clone, Default)]
struct Pairs {
    bytes: Vec<u8>,
    entries: SmallVec<[Entry; INLINE_PAIRS]>,
    /// Bytes of `bytes` no entry points at any more (replaced or removed
    /// pairs); reclaimed once they outweigh the live ones.
    garbage: usize,
}

/// Appends to a map it holds written (see [`HeaderMap::appender`]).
pub(crate) struct Appender<'a>(&'a mut Pairs);

impl Appender<'_> {
    /// Appends a pair (key lower-cased).
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.0.add(key, value);
    }
}

static EMPTY: Pairs = Pairs {
    bytes: Vec::new(),
    entries: SmallVec::new_const(),
    garbage: 0,
};

/// One pair: its key at `bytes[start..start + key_len]`, its value right
/// after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: usize,
    key_len: usize,
    value_len: usize,
}

impl Entry {
    fn len(&self) -> usize {
        self.key_len + self.value_len
    }
}

fn eq_lower(stored: &[u8], key: &[u8]) -> bool {
    stored.len() == key.len()
        && stored
            .iter()
            .zip(key)
            .all(|(a, b)| *a == b.to_ascii_lowercase())
}

impl Pairs {
    fn key(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.start..e.start + e.key_len]
    }
    fn value(&self, e: &Entry) -> &[u8] {
        let from = e.start + e.key_len;
        &self.bytes[from..from + e.value_len]
    }
    fn position(&self, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| eq_lower(self.key(e), key))
    }
    fn add(&mut self, key: &[u8], value: &[u8]) {
        let start = self.push_bytes(key, value);
        self.entries.push(Entry {
            start,
            key_len: key.len(),
            value_len: value.len(),
        });
    }
    /// Writes a lower-cased key and its value at the end of the buffer.
    fn push_bytes(&mut self, key: &[u8], value: &[u8]) -> usize {
        let start = self.bytes.len();
        // Copied whole, then lower-cased in place: both are loops the
        // compiler vectorises; a push per byte does not vectorise.
        self.bytes.reserve(key.len() + value.len());
        self.bytes.extend_from_slice(key);
        self.bytes[start..].make_ascii_lowercase();
        self.bytes.extend_from_slice(value);
        start
    }
    /// Sets entry `first`'s value (its key is `key`) and removes the
    /// later entries of the same key.
    fn replace_at(&mut self, first: usize, key: &[u8], value: &[u8]) {
        let old = self.entries[first];
        if value.len() <= old.value_len {
            // Fits where the old value was: overwrite in place.
            let from = old.start + old.key_len;
            self.bytes[from..from + value.len()].copy_from_slice(value);
            self.garbage += old.value_len - value.len();
            self.entries[first].value_len = value.len();
        } else {
            let start = self.bytes.len();
            self.bytes
                .extend_from_within(old.start..old.start + old.key_len);
            self.bytes.extend_from_slice(value);
            self.garbage += old.len();
            self.entries[first] = Entry {
                start,
                key_len: old.key_len,
                value_len: value.len(),
            };
        }
        self.remove_from(first + 1, key);
    }
    /// Removes the values of `key` at index `from` and after; their bytes
    /// become garbage.
    fn remove_from(&mut self, from: usize, key: &[u8]) {
        let bytes = &self.bytes;
        let mut dropped = 0;
        let mut i = 0;
        self.entries.retain(|e| {
            let keep = i < from || !eq_lower(&bytes[e.start..e.start + e.key_len], key);
            i += 1;
            if !keep {
                dropped += e.len();
            }
            keep
        });
        self.garbage += dropped;
        self.reclaim();
    }
    /// Rewrites the buffer without dead bytes once they outweigh the live
    /// ones, so a guest replacing one header in a loop keeps memory bounded.
    fn reclaim(&mut self) {
        if self.garbage <= self.bytes.len() / 2 {
            return;
        }
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.garbage);
        for e in &mut self.entries {
            let start = bytes.len();
            bytes.extend_from_slice(&self.bytes[e.start..e.start + e.len()]);
            e.start = start;
        }
        self.bytes = bytes;
        self.garbage = 0;
    }
}

impl HeaderMap {
    /// Builds from model headers, lower-casing keys.
    pub fn from_headers(h: &Headers) -> Self {
        let mut m = HeaderMap::default();
        if h.is_empty() {
            return m;
        }
        let mut appender = m.appender(h.iter().map(|(k, v)| k.len() + v.len()).sum(), h.len());
        for (k, v) in h.iter() {
            appender.add(k, v);
        }
        m
    }
    /// For a run of additions, with room for `pairs` more pairs of `bytes`
    /// more bytes in all: one ownership check for the whole run, where
    /// each [`HeaderMap::add`] makes its own (an atomic compare-and-swap).
    pub(crate) fn appender(&mut self, bytes: usize, pairs: usize) -> Appender<'_> {
        let own = self.write();
        own.bytes.reserve(bytes);
        own.entries.reserve(pairs);
        Appender(own)
    }
    /// This map emptied with its room kept, for another message, when no
    /// other map shares its pairs and the room is at most `max_bytes`.
    pub(crate) fn into_emptied(self, max_bytes: usize) -> Option<HeaderMap> {
        let mut shared = self.pairs?;
        let own = Arc::get_mut(&mut shared)?;
        if own.bytes.capacity() > max_bytes {
            return None;
        }
        own.bytes.clear();
        own.entries.clear();
        own.garbage = 0;
        Some(HeaderMap {
            pairs: Some(shared),
        })
    }
    /// To model headers (bytes exact).
    pub fn to_headers(&self) -> Headers {
        Headers::from_pairs(self.iter())
    }
    fn read(&self) -> &Pairs {
        self.pairs.as_deref().unwrap_or(&EMPTY)
    }
    /// The pairs to write: this map's own, copied first when another map
    /// still shares them.
    fn write(&mut self) -> &mut Pairs {
        Arc::make_mut(self.pairs.get_or_insert_with(Default::default))
    }
    /// First value for `key` (compared lower-cased).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let pairs = self.read();
        pairs.position(key).map(|i| pairs.value(&pairs.entries[i]))
    }
    /// Appends a pair (key lower-cased).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.write().add(key, value);
    }
    /// Sets the first entry's value and removes the others, or appends.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) {
        match self.read().position(key) {
            Some(first) => self.write().replace_at(first, key, value),
            None => self.add(key, value),
        }
    }
    /// Removes every value of `key`.
    pub fn remove(&mut self, key: &[u8]) {
        // A shared map is copied only when there is something to remove;
        // the pairs before the first match need no second look.
        if let Some(first) = self.read().position(key) {
            self.write().remove_from(first, key);
        }
    }
    /// Replaces everything with these pairs (keys lower-cased).
    pub fn set_all<'a>(&mut self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        // Reuses the buffers when no other map shares them.
        match self.pairs.as_mut().and_then(Arc::get_mut) {
            Some(own) => {
                own.bytes.clear();
                own.entries.clear();
                own.garbage = 0;
            }
            None => self.pairs = None,
        }
        // No pairs: an unwritten map stays unallocated.
        let mut pairs = pairs.peekable();
        if pairs.peek().is_none() {
            return;
        }
        let mut appender = self.appender(0, 0);
        for (k, v) in pairs {
            appender.add(k, v);
        }
    }
    /// The sum of key and value lengths (Envoy's `byteSize()`).
    pub fn byte_size(&self) -> usize {
        let pairs = self.read();
        pairs.bytes.len() - pairs.garbage
    }
    /// Whether one more pair of `key` and `value` stays within the caps the
    /// harness puts on any map a guest builds: the 1 MiB and 1024 pairs it
    /// also decodes (`proxy_abi::MAX_MAP_BYTES`, `MAX_MAP_PAIRS`).
    pub fn has_room_for(&self, key: &[u8], value: &[u8]) -> bool {
        self.len() < proxy_abi::MAX_MAP_PAIRS
            && self.byte_size() + key.len() + value.len() <= proxy_abi::MAX_MAP_BYTES
    }
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Pairs as slices.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + Clone {
        let pairs = self.read();
        pairs.entries.iter().map(|e| (pairs.key(e), pairs.value(e)))
    }
}

/// Equal when they hold the same pairs in the same order, however their
/// buffers are laid out.
impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl std::fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_write_rules() {
        let mut m = HeaderMap::default();
        m.add(b"X-A", b"1");
        m.add(b"x-b", b"2");
        m.add(b"x-a", b"3");
        assert_eq!(m.get(b"X-A"), Some(&b"1"[..]));
        m.replace(b"X-a", b"9");
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![(&b"x-a"[..], &b"9"[..]), (&b"x-b"[..], &b"2"[..])]
        );
        m.add(b"x-b", b"4");
        m.remove(b"X-B");
        assert_eq!(m.len(), 1);
        m.replace(b"New", b"v");
        assert_eq!(m.get(b"new"), Some(&b"v"[..]));
    }

    #[test]
    fn building_from_nothing_allocates_nothing() {
        assert!(HeaderMap::from_headers(&Headers::default()).pairs.is_none());
        let mut m = HeaderMap::default();
        m.set_all(std::iter::empty());
        assert!(m.pairs.is_none());
        m.set_all([(&b"a"[..], &b"1"[..])].into_iter());
        m.set_all(std::iter::empty());
        assert!(m.is_empty());
    }

    #[test]
    fn a_copy_is_shared_until_either_side_writes() {
        let mut map = HeaderMap::default();
        map.add(b"x-a", b"1");
        let copy = map.clone();
        let shared = |a: &HeaderMap, b: &HeaderMap| match (&a.pairs, &b.pairs) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        assert!(shared(&map, &copy), "a clone shares the buffer");
        map.remove(b"absent");
        assert!(
            shared(&map, &copy),
            "a write that changes nothing copies nothing"
        );
        map.replace(b"x-a", b"2");
        map.add(b"X-B", b"3");
        assert!(!shared(&map, &copy));
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            vec![(&b"x-a"[..], &b"1"[..])]
        );
        assert_eq!(map.get(b"x-a"), Some(&b"2"[..]));
        assert_eq!(map.get(b"x-b"), Some(&b"3"[..]));
        let mut reset = copy.clone();
        reset.set_all([(&b"K"[..], &b"v"[..])].into_iter());
        assert_eq!(
            copy.get(b"x-a"),
            Some(&b"1"[..]),
            "set_all on a shared map leaves the other"
        );
        assert_eq!(
            reset.iter().collect::<Vec<_>>(),
            vec![(&b"k"[..], &b"v"[..])]
        );
        let many: Vec<(String, String)> = (0..3 * INLINE_PAIRS)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let mut big = HeaderMap::default();
        for (k, v) in &many {
            big.add(k.as_bytes(), v.as_bytes());
        }
        assert_eq!(big.len(), many.len(), "past the inline pairs");
        assert_eq!(big.get(b"K29"), Some(&b"v29"[..]));
    }

    #[test]
    fn replaced_and_removed_pairs_leave_no_trace_and_memory_stays_bounded() {
        let mut m = HeaderMap::default();
        m.add(b"a", b"short");
        m.add(b"b", b"2");
        m.add(b"A", b"dup");
        // Longer than the slot: moves to the end; shorter: stays in place.
        m.replace(b"a", b"a much longer value");
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![
                (&b"a"[..], &b"a much longer value"[..]),
                (&b"b"[..], &b"2"[..])
            ]
        );
        m.replace(b"a", b"x");
        assert_eq!(m.get(b"a"), Some(&b"x"[..]));
        assert_eq!(m.byte_size(), 1 + 1 + 1 + 1);
        for i in 0..10_000 {
            m.replace(b"b", format!("value number {i}").as_bytes());
        }
        assert_eq!(m.get(b"b"), Some(&b"value number 9999"[..]));
        assert!(
            m.read().bytes.len() < 200,
            "garbage reclaimed: {} bytes",
            m.read().bytes.len()
        );
        m.remove(b"a");
        assert_eq!(m.len(), 1);
        let mut same = HeaderMap::default();
        same.add(b"b", b"value number 9999");
        assert_eq!(m, same, "equality ignores the buffer's layout");
    }
}
