//! The protobuf wire format, as far as Envoy's foreign-function argument
//! messages need it (`source/extensions/common/wasm/ext/*.proto`). Decoding
//! follows what the C++ runtime's `ParseFromString` accepts: unknown fields
//! and known fields of another wire type are skipped, the last occurrence of
//! a field wins, and a `string` field must hold UTF-8 (proto3).

/// The argument bytes are not a message of the expected type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One decoded field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed32, fixed64 or group field: skipped, its content is not needed.
    Other,
}

/// The C++ parser's nesting limit (`CodedInputStream`'s default).
const MAX_GROUP_DEPTH: usize = 100;

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for (i, byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(len).map_err(|_| Malformed)?;
        if len > self.rest.len() {
            return Err(Malformed);
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// The next tag as (field number, wire type); field 0 or a tag wider
    /// than 32 bits is malformed, as in the C++ parser.
    fn tag(&mut self) -> Result<(u32, u8), Malformed> {
        let tag = u32::try_from(self.varint()?).map_err(|_| Malformed)?;
        let number = tag >> 3;
        if number == 0 {
            return Err(Malformed);
        }
        Ok((number, (tag & 7) as u8))
    }

    /// The value of a field of `wire_type`; a start-group is skipped up to
    /// its matching end-group.
    fn value(&mut self, number: u32, wire_type: u8, depth: usize) -> Result<Value<'a>, Malformed> {
        match wire_type {
            0 => self.varint().map(Value::Varint),
            1 => self.take(8).map(|_| Value::Other),
            2 => {
                let len = self.varint()?;
                self.take(len).map(Value::Bytes)
            }
            3 => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(Malformed);
                }
                loop {
                    let (inner, inner_type) = self.tag()?;
                    if inner_type == 4 {
                        return if inner == number {
                            Ok(Value::Other)
                        } else {
                            Err(Malformed)
                        };
                    }
                    self.value(inner, inner_type, depth + 1)?;
                }
            }
            5 => self.take(4).map(|_| Value::Other),
            // An end-group with no start, or wire types 6 and 7.
            _ => Err(Malformed),
        }
    }
}

/// Every top-level field of `message`, in order.
pub(crate) fn fields(message: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Malformed> {
    let mut reader = Reader { rest: message };
    let mut out = Vec::new();
    while !reader.rest.is_empty() {
        let (number, wire_type) = reader.tag()?;
        out.push((number, reader.value(number, wire_type, 0)?));
    }
    Ok(out)
}

/// A proto3 `string` field's value: UTF-8 or the message is malformed.
pub(crate) fn string(bytes: &[u8]) -> Result<String, Malformed> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| Malformed)
}

/// A proto3 enum or int32 field: the low 32 bits, as the C++ runtime casts.
pub(crate) fn int32(varint: u64) -> i32 {
    varint as u32 as i32
}

/// Appends a varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field (bytes, string, message).
pub(crate) fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, u64::from(number) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a `bool` field set to true (proto3 leaves false out).
pub(crate) fn put_true(out: &mut Vec<u8>, number: u32) {
    put_varint(out, u64::from(number) << 3);
    out.push(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_varints_bytes_and_skips_fixed_and_groups() {
        // 1: varint 300; 2: "hi"; 3: fixed32; 4: fixed64; 5: group {6: 1}.
        let message = [
            0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d, 1, 2, 3, 4, 0x21, 0, 0, 0, 0, 0, 0, 0, 0,
            0x2b, 0x30, 1, 0x2c,
        ];
        assert_eq!(
            fields(&message),
            Ok(vec![
                (1, Value::Varint(300)),
                (2, Value::Bytes(b"hi")),
                (3, Value::Other),
                (4, Value::Other),
                (5, Value::Other),
            ])
        );
        assert_eq!(fields(&[]), Ok(vec![]));
    }

    #[test]
    fn rejects_what_the_cpp_parser_rejects() {
        for bad in [
            &[0x12, 5, b'a'][..], // length past the end
            &[0x08][..],          // truncated varint
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..], // 11-byte varint
            &[0x00, 0x01][..],    // field number 0
            &[0x0e, 0x01][..],    // wire type 6
            &[0x0c][..],          // end-group without a start
            &[0x0b, 0x14][..],    // group 1 closed as group 2
            &[0x0b][..],          // group never closed
            &[0x1d, 1, 2][..],    // truncated fixed32
            &[0x80, 0x80, 0x80, 0x80, 0x10][..], // tag wider than 32 bits
        ] {
            assert_eq!(fields(bad), Err(Malformed), "{bad:x?}");
        }
        assert_eq!(string(&[0xff]), Err(Malformed));
        assert_eq!(string(b"ok"), Ok("ok".to_string()));
        assert_eq!(int32(u64::MAX), -1);
    }
}
