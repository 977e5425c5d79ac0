//! Envoy's foreign functions (`proxy_call_foreign_function`), as
//! `source/extensions/common/wasm/foreign.cc` registers them: each takes
//! the argument bytes and answers a status and result bytes.

mod filter_state;
mod signing;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use flate2::{Compression, Decompress, FlushDecompress, write::ZlibEncoder};

use super::Host;
use crate::abi::Status;
use crate::model::LogLevel;
use wire::{Malformed, Value};

/// The largest output `uncompress` produces. Envoy has no cap (it doubles
/// its buffer until zlib succeeds), so a small zip bomb from a guest could
/// take the host's memory; the harness refuses past this instead.
pub(crate) const UNCOMPRESS_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// Properties declared through `declare_property`, by the context that
/// declared them (Envoy keeps them on that `Context`, and
/// `Context::setProperty` consults the root context's).
#[derive(Debug, Default)]
pub(crate) struct Declarations {
    by_context: HashMap<u32, HashMap<String, DeclaredProperty>>,
}

/// One `DeclarePropertyArguments` message (declare_property.proto).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeclaredProperty {
    pub readonly: bool,
    /// `WasmType`: 0 bytes, 1 string, 2 flatbuffers, 3 protobuf.
    pub kind: i32,
    pub schema: Vec<u8>,
    /// `LifeSpan`: 0 filter chain, 1 downstream request, 2 downstream connection.
    pub span: i32,
}

/// Filter-state objects set through `set_envoy_filter_state`, by factory
/// name, in their serialized form (what a TCP proxy or a later
/// `proxy_get_property(["filter_state", name])` reads).
pub type EnvoyFilterState = BTreeMap<String, Vec<u8>>;

/// Calls the foreign function `name`: its result bytes, or the status Envoy answers.
pub(crate) fn call(host: &mut Host, name: &[u8], args: &[u8]) -> Result<Vec<u8>, Status> {
    match name {
        b"compress" => compress(args),
        b"uncompress" => uncompress(host, args),
        b"set_envoy_filter_state" => set_envoy_filter_state(host, args).map(|()| Vec::new()),
        b"declare_property" => declare_property(host, args).map(|()| Vec::new()),
        // Envoy clears the HTTP route cache; the harness has no route table.
        b"clear_route_cache" => Ok(Vec::new()),
        b"verify_signature" => signing::verify_signature(args)?
            .map_err(|signing::NotSimulated| key_not_simulated(host, name)),
        b"sign" => {
            signing::sign_text(args)?.map_err(|signing::NotSimulated| key_not_simulated(host, name))
        }
        b"expr_create" | b"expr_evaluate" | b"expr_delete" => Err(not_simulated(host, name)),
        _ => Err(Status::NotFound),
    }
}

fn not_simulated(host: &mut Host, name: &[u8]) -> Status {
    let name = String::from_utf8_lossy(name);
    host.harness_log(
        LogLevel::Warn,
        format!("foreign function {name} exists in Envoy but is not simulated: NOT_FOUND"),
    );
    Status::NotFound
}

fn key_not_simulated(host: &mut Host, name: &[u8]) -> Status {
    let name = String::from_utf8_lossy(name);
    host.harness_log(
        LogLevel::Warn,
        format!(
            "foreign function {name}: the harness simulates RSA keys and EC keys on P-256, P-384 and P-521 \
             only, not this curve (Envoy supports P-224 too): NOT_FOUND"
        ),
    );
    Status::NotFound
}

/// zlib's `compress()` (zlib format, default level); Envoy answers
/// SERIALIZATION_FAILURE if zlib fails.
fn compress(args: &[u8]) -> Result<Vec<u8>, Status> {
    let mut encoder = ZlibEncoder::new(
        Vec::with_capacity(args.len() / 2 + 16),
        Compression::default(),
    );
    encoder
        .write_all(args)
        .and_then(|()| encoder.finish())
        .map_err(|_| Status::SerializationFailure)
}

/// zlib's `uncompress()`: one complete zlib stream (bytes after its end are
/// ignored, as zlib does); anything else is SERIALIZATION_FAILURE, Envoy's
/// answer to every zlib error but a full buffer.
fn uncompress(host: &mut Host, args: &[u8]) -> Result<Vec<u8>, Status> {
    match inflate(args, UNCOMPRESS_LIMIT_BYTES) {
        Ok(out) => Ok(out),
        Err(Inflate::Malformed) => Err(Status::SerializationFailure),
        Err(Inflate::TooLarge) => {
            host.harness_log(
                LogLevel::Warn,
                format!(
                    "uncompress: the output exceeds the harness's limit of {} MiB; Envoy has no \
                     limit and would go on allocating. Answering SERIALIZATION_FAILURE",
                    UNCOMPRESS_LIMIT_BYTES >> 20
                ),
            );
            Err(Status::SerializationFailure)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Inflate {
    Malformed,
    TooLarge,
}

fn inflate(input: &[u8], limit: usize) -> Result<Vec<u8>, Inflate> {
    let mut inflater = Decompress::new(true);
    // Envoy's first guess, then doubling like Envoy's loop, up to `limit`.
    let mut out = Vec::with_capacity(input.len().saturating_mul(2).saturating_add(2).min(limit));
    loop {
        let read = usize::try_from(inflater.total_in()).map_err(|_| Inflate::Malformed)?;
        let (before_in, before_out) = (read, out.len());
        let status = inflater
            .decompress_vec(
                &input[read.min(input.len())..],
                &mut out,
                FlushDecompress::None,
            )
            .map_err(|_| Inflate::Malformed)?;
        if status == flate2::Status::StreamEnd {
            return Ok(out);
        }
        if out.len() < out.capacity() {
            // Room left but no stream end and nothing more came out: the
            // input is truncated or corrupt.
            let read = usize::try_from(inflater.total_in()).map_err(|_| Inflate::Malformed)?;
            if read == before_in && out.len() == before_out {
                return Err(Inflate::Malformed);
            }
            continue;
        }
        if out.len() >= limit {
            return Err(Inflate::TooLarge);
        }
        out.reserve_exact(out.len().max(64).min(limit - out.len()));
    }
}

/// `set_envoy_filter_state` (`Context::setEnvoyFilterState`): a malformed
/// `SetEnvoyFilterStateArguments` is BAD_ARGUMENT; a path naming no
/// filter-state object factory NOT_FOUND; a value the factory refuses
/// BAD_ARGUMENT; no stream (a root context) NOT_FOUND.
fn set_envoy_filter_state(host: &mut Host, args: &[u8]) -> Result<(), Status> {
    let (path, value, _span) = filter_state_arguments(args).map_err(|_| Status::BadArgument)?;
    let object = match filter_state::create(&path, &value) {
        filter_state::Created::Object(object) => object,
        filter_state::Created::Refused => return Err(Status::BadArgument),
        filter_state::Created::UnknownFactory => return Err(Status::NotFound),
    };
    let stream = host.effective_stream().ok_or(Status::NotFound)?;
    // The span decides how long Envoy keeps the object; the harness's
    // stream state lives as long as the stream, which covers all three.
    stream.filter_state_mut().objects.insert(path, object);
    Ok(())
}

/// `SetEnvoyFilterStateArguments`: path = 1, value = 2 (strings), span = 3.
fn filter_state_arguments(args: &[u8]) -> Result<(String, String, i32), Malformed> {
    let (mut path, mut value, mut span) = (String::new(), String::new(), 0);
    for (number, field) in wire::fields(args)? {
        match (number, field) {
            (1, Value::Bytes(b)) => path = wire::string(b)?,
            (2, Value::Bytes(b)) => value = wire::string(b)?,
            (3, Value::Varint(v)) => span = wire::int32(v),
            _ => {}
        }
    }
    Ok((path, value, span))
}

/// `proxy_get_property(["filter_state", name])` for an object set through
/// `set_envoy_filter_state`: its serialized form (Envoy's
/// `FilterStateWrapper` answers `serializeAsString()`).
pub(crate) fn lookup_filter_state(
    objects: &EnvoyFilterState,
    path: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let Some(name) = path.strip_prefix(b"filter_state\0") else {
        return false;
    };
    let Some(value) = std::str::from_utf8(name)
        .ok()
        .and_then(|name| objects.get(name))
    else {
        return false;
    };
    out.clear();
    out.extend_from_slice(value);
    true
}

/// True when the root context `root` declared `name` read-only
/// (`Context::setProperty` then refuses to overwrite a value once set).
pub(crate) fn is_readonly(host: &Host, root: u32, name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    host.declared_properties
        .by_context
        .get(&root)
        .and_then(|declared| declared.get(name))
        .is_some_and(|p| p.readonly)
}

/// `declare_property` (`Context::declareProperty`): a malformed
/// `DeclarePropertyArguments` is BAD_ARGUMENT, and so is a second
/// declaration of a name on the same context.
fn declare_property(host: &mut Host, args: &[u8]) -> Result<(), Status> {
    let (name, property) = declare_arguments(args).map_err(|_| Status::BadArgument)?;
    // Envoy uses the context whose callback runs, not the effective one.
    let context = host.active_context;
    // Declarations of contexts that are gone can never be read again.
    let live: Vec<u32> = host
        .declared_properties
        .by_context
        .keys()
        .copied()
        .filter(|id| host.context_exists(*id))
        .collect();
    let declarations = &mut host.declared_properties.by_context;
    declarations.retain(|id, _| live.contains(id));
    let declared = declarations.entry(context).or_default();
    if declared.contains_key(&name) {
        return Err(Status::BadArgument);
    }
    declared.insert(name, property);
    Ok(())
}

/// `DeclarePropertyArguments`: name = 1, readonly = 2, type = 3, schema = 4, span = 5.
fn declare_arguments(args: &[u8]) -> Result<(String, DeclaredProperty), Malformed> {
    let mut name = String::new();
    let mut property = DeclaredProperty::default();
    for (number, field) in wire::fields(args)? {
        match (number, field) {
            (1, Value::Bytes(b)) => name = wire::string(b)?,
            (2, Value::Varint(v)) => property.readonly = v != 0,
            (3, Value::Varint(v)) => property.kind = wire::int32(v),
            (4, Value::Bytes(b)) => property.schema = b.to_vec(),
            (5, Value::Varint(v)) => property.span = wire::int32(v),
            _ => {}
        }
    }
    Ok((name, property))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(u8, &[u8])]) -> Vec<u8> {
        // Length-delimited fields only (values under 128 bytes).
        let mut out = Vec::new();
        for (number, bytes) in fields {
            out.extend_from_slice(&[number << 3 | 2, bytes.len() as u8]);
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn compress_round_trips_in_zlib_format() {
        let text = b"hello hello hello hello".repeat(50);
        let packed = compress(&text).unwrap();
        // A zlib header (CMF 0x78) and a smaller body than the input.
        assert_eq!(packed[0], 0x78);
        assert!(packed.len() < text.len());
        assert_eq!(inflate(&packed, UNCOMPRESS_LIMIT_BYTES), Ok(text));
        let empty = compress(b"").unwrap();
        assert_eq!(inflate(&empty, UNCOMPRESS_LIMIT_BYTES), Ok(Vec::new()));
    }

    #[test]
    fn inflate_refuses_malformed_truncated_and_oversized_streams() {
        let packed = compress(&[7u8; 4096]).unwrap();
        assert_eq!(inflate(b"not zlib", 1 << 20), Err(Inflate::Malformed));
        assert_eq!(inflate(b"", 1 << 20), Err(Inflate::Malformed));
        assert_eq!(
            inflate(&packed[..packed.len() - 3], 1 << 20),
            Err(Inflate::Malformed)
        );
        let mut bad_checksum = packed.clone();
        let last = bad_checksum.len() - 1;
        bad_checksum[last] ^= 1;
        assert_eq!(inflate(&bad_checksum, 1 << 20), Err(Inflate::Malformed));
        // Bytes after the stream's end are ignored, as zlib's uncompress does.
        let mut trailing = packed.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(inflate(&trailing, 1 << 20).map(|v| v.len()), Ok(4096));
        assert_eq!(inflate(&packed, 4095), Err(Inflate::TooLarge));
        assert_eq!(inflate(&packed, 4096).map(|v| v.len()), Ok(4096));
    }

    #[test]
    fn decodes_set_envoy_filter_state_arguments() {
        let mut args = message(&[(1, b"envoy.tcp_proxy.cluster"), (2, b"backend")]);
        args.extend_from_slice(&[0x18, 2]); // span = DownstreamConnection
        assert_eq!(
            filter_state_arguments(&args),
            Ok(("envoy.tcp_proxy.cluster".into(), "backend".into(), 2))
        );
        // Unknown fields are skipped; a later occurrence wins.
        let args = message(&[(9, b"x"), (1, b"a"), (1, b"b")]);
        assert_eq!(
            filter_state_arguments(&args),
            Ok(("b".into(), String::new(), 0))
        );
        assert_eq!(
            filter_state_arguments(&message(&[(2, &[0xc3])])),
            Err(Malformed)
        );
        assert_eq!(filter_state_arguments(b"\x0a\x09short"), Err(Malformed));
    }

    #[test]
    fn signing_arguments_need_exactly_one_key() {
        use signing::{KeyForm, SIGN, VERIFY_SIGNATURE, key_arguments};
        let der = message(&[(1, b"sha256"), (2, b"\x30\x00"), (4, b"text")]);
        let parsed = key_arguments(&der, &VERIFY_SIGNATURE).unwrap();
        assert_eq!(parsed.key, KeyForm::Der(b"\x30\x00"));
        assert_eq!((parsed.hash, parsed.text), ("sha256", &b"text"[..]));
        let pem = message(&[(1, b"sha256"), (5, b"-----BEGIN PUBLIC KEY-----")]);
        assert_eq!(
            key_arguments(&pem, &VERIFY_SIGNATURE).map(|a| a.key),
            Ok(KeyForm::Pem("-----BEGIN PUBLIC KEY-----"))
        );
        let both = message(&[(2, b"\x30\x00"), (5, b"pem")]);
        assert_eq!(
            key_arguments(&both, &VERIFY_SIGNATURE).err(),
            Some(Status::BadArgument)
        );
        let neither = message(&[(1, b"sha256"), (3, b"sig")]);
        assert_eq!(
            key_arguments(&neither, &VERIFY_SIGNATURE).err(),
            Some(Status::BadArgument)
        );
        let cleared = message(&[(2, b"\x30\x00"), (2, b"")]);
        assert_eq!(
            key_arguments(&cleared, &SIGN).err(),
            Some(Status::BadArgument)
        );
        let sign_pem = message(&[(3, b"text"), (4, b"pem")]);
        assert_eq!(
            key_arguments(&sign_pem, &SIGN).map(|a| (a.key, a.text)),
            Ok((KeyForm::Pem("pem"), &b"text"[..]))
        );
        let bad_hash = message(&[(1, &[0xff]), (2, b"\x30\x00")]);
        assert_eq!(
            key_arguments(&bad_hash, &SIGN).err(),
            Some(Status::BadArgument)
        );
        assert_eq!(
            key_arguments(b"\x0a\x05", &SIGN).err(),
            Some(Status::BadArgument)
        );
    }

    #[test]
    fn decodes_declare_property_arguments() {
        let mut args = message(&[(1, b"my_prop"), (4, b"\x00schema")]);
        args.extend_from_slice(&[0x10, 1, 0x18, 3, 0x28, 1]);
        assert_eq!(
            declare_arguments(&args),
            Ok((
                "my_prop".into(),
                DeclaredProperty {
                    readonly: true,
                    kind: 3,
                    schema: b"\x00schema".to_vec(),
                    span: 1
                }
            ))
        );
        assert_eq!(declare_arguments(&[0x0a]), Err(Malformed));
    }
}
