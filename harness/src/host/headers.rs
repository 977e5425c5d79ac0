//! A header map with Envoy's behaviour: keys lower-cased on every write,
//! lookups by lower-cased key, order and duplicates preserved.

use crate::model::Headers;

/// Ordered header pairs, keys stored lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMap {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn eq_lower(stored: &[u8], key: &[u8]) -> bool {
    stored.len() == key.len()
        && stored
            .iter()
            .zip(key)
            .all(|(a, b)| *a == b.to_ascii_lowercase())
}

impl HeaderMap {
    /// Builds from model headers, lower-casing keys.
    pub fn from_headers(h: &Headers) -> Self {
        let mut m = HeaderMap::default();
        for (k, v) in h.iter() {
            m.add(k, v);
        }
        m
    }
    /// To model headers (bytes exact).
    pub fn to_headers(&self) -> Headers {
        Headers::from_pairs(self.pairs.iter().map(|(k, v)| (k, v)))
    }
    /// First value for `key` (compared lower-cased).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| eq_lower(k, key))
            .map(|(_, v)| v.as_slice())
    }
    /// Appends a pair (key lower-cased).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.pairs.push((key.to_ascii_lowercase(), value.to_vec()));
    }
    /// Sets the first entry's value and removes the others, or appends.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) {
        match self.pairs.iter().position(|(k, _)| eq_lower(k, key)) {
            Some(first) => {
                self.pairs[first].1.clear();
                self.pairs[first].1.extend_from_slice(value);
                let mut i = 0;
                self.pairs.retain(|(k, _)| {
                    let keep = i <= first || !eq_lower(k, key);
                    i += 1;
                    keep
                });
            }
            None => self.add(key, value),
        }
    }
    /// Removes every value of `key`.
    pub fn remove(&mut self, key: &[u8]) {
        self.pairs.retain(|(k, _)| !eq_lower(k, key));
    }
    /// Replaces everything with these pairs (keys lower-cased).
    pub fn set_all<'a>(&mut self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        self.pairs.clear();
        for (k, v) in pairs {
            self.add(k, v);
        }
    }
    /// The sum of key and value lengths (Envoy's `byteSize()`).
    pub fn byte_size(&self) -> usize {
        self.pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
    /// Whether one more pair of `key` and `value` stays within the caps the
    /// harness puts on any map a guest builds: the 1 MiB and 1024 pairs it
    /// also decodes (`proxy_abi::MAX_MAP_BYTES`, `MAX_MAP_PAIRS`).
    pub fn has_room_for(&self, key: &[u8], value: &[u8]) -> bool {
        self.pairs.len() < proxy_abi::MAX_MAP_PAIRS
            && self.byte_size() + key.len() + value.len() <= proxy_abi::MAX_MAP_BYTES
    }
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
    /// Pairs as slices.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
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
}
