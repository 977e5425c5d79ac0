//! Query strings of `:path`: read a parameter, or remove it before the
//! request goes upstream.

/// Splits `:path` into the path and the query (without `?`).
pub fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// The first value of parameter `name`, percent-decoded (`+` is a space).
pub fn get(path: &str, name: &str) -> Option<Vec<u8>> {
    let (_, query) = split(path);
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| decode(key) == name.as_bytes())
        .map(|(_, value)| decode(value))
}

/// `path` without any `name=...` parameter; `None` if it had none.
pub fn remove(path: &str, name: &str) -> Option<String> {
    let (base, query) = split(path);
    let query = query?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            decode(key) != name.as_bytes()
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    Some(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// Form decoding (`+` is a space, then percent-decoding); malformed escapes
/// are kept as they are. An escape never spans a `+` (not a hex digit), so
/// each piece between them decodes alone and `%2B` stays a plus.
pub fn decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for (i, piece) in text.split('+').enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(percent_encoding::percent_decode_str(piece));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_decodes_the_first_value() {
        assert_eq!(
            get("/a?apikey=k%201&x=2&apikey=other", "apikey"),
            Some(b"k 1".to_vec())
        );
        assert_eq!(get("/a?flag", "flag"), Some(Vec::new()));
        assert_eq!(get("/a?x=1", "apikey"), None);
        assert_eq!(get("/a", "apikey"), None);
        assert_eq!(get("/a?api%6Bey=v", "apikey"), Some(b"v".to_vec()));
    }

    #[test]
    fn remove_drops_every_occurrence_and_keeps_the_rest() {
        assert_eq!(
            remove("/a?apikey=k&x=1&apikey=z", "apikey").as_deref(),
            Some("/a?x=1")
        );
        assert_eq!(remove("/a?apikey=k", "apikey").as_deref(), Some("/a"));
        assert_eq!(remove("/a?x=1", "apikey"), None);
        assert_eq!(remove("/a", "apikey"), None);
    }

    #[test]
    fn decode_handles_plus_and_bad_escapes() {
        assert_eq!(decode("a+b%2Fc"), b"a b/c".to_vec());
        assert_eq!(decode("100%"), b"100%".to_vec());
        assert_eq!(decode("%zz"), b"%zz".to_vec());
        assert_eq!(decode("%2B+%2b"), b"+ +".to_vec());
        assert_eq!(decode("%e2%82%AC%4"), "\u{20ac}%4".as_bytes().to_vec());
        assert_eq!(decode("%ff"), vec![0xff]);
        // A sign is no hex digit: `%+5` is not byte 5.
        assert_eq!(decode("%+5"), b"% 5".to_vec());
    }
}
