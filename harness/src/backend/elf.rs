//! Just enough ELF to list a shared library's undefined dynamic symbols:
//! a native twin's `proxy_*` imports, checked against its ABI version the
//! way a wasm module's imports are (64-bit little-endian ELF only).

/// `SHT_DYNSYM`: the dynamic symbol table.
const SHT_DYNSYM: u32 = 11;
/// Size of an `Elf64_Shdr`.
const SECTION_HEADER_SIZE: usize = 64;
/// Size of an `Elf64_Sym`.
const SYMBOL_SIZE: usize = 24;

fn bytes_at(data: &[u8], at: usize, len: usize) -> Result<&[u8], String> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or_else(|| format!("truncated ELF file ({len} bytes wanted at offset {at})"))
}

fn u16_at(data: &[u8], at: usize) -> Result<usize, String> {
    let b = bytes_at(data, at, 2)?;
    Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    let b = bytes_at(data, at, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn offset_at(data: &[u8], at: usize) -> Result<usize, String> {
    let b = bytes_at(data, at, 8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(b);
    usize::try_from(u64::from_le_bytes(word))
        .map_err(|_| format!("ELF offset at {at} does not fit this machine"))
}

/// A section's (file offset, size, linked section, type).
fn section(data: &[u8], table: usize, index: usize) -> Result<(usize, usize, usize, u32), String> {
    let at = index
        .checked_mul(SECTION_HEADER_SIZE)
        .and_then(|offset| table.checked_add(offset))
        .ok_or_else(|| format!("ELF section header {index} lies outside the file"))?;
    let header = bytes_at(data, at, SECTION_HEADER_SIZE)?;
    let kind = u32_at(header, 4)?;
    let offset = offset_at(header, 24)?;
    let size = offset_at(header, 32)?;
    let link = u32_at(header, 40)? as usize;
    Ok((offset, size, link, kind))
}

/// Names of the undefined symbols in the dynamic symbol table: what the
/// library expects the executable that loads it to provide.
pub(crate) fn undefined_dynamic_symbols(data: &[u8]) -> Result<Vec<&str>, String> {
    if bytes_at(data, 0, 6)? != b"\x7fELF\x02\x01" {
        return Err("not a 64-bit little-endian ELF file".to_string());
    }
    let table = offset_at(data, 0x28)?;
    let count = u16_at(data, 0x3c)?;
    let mut names = Vec::new();
    for index in 0..count {
        let (offset, size, link, kind) = section(data, table, index)?;
        if kind != SHT_DYNSYM {
            continue;
        }
        let (strings, strings_size, _, _) = section(data, table, link)?;
        let strings = bytes_at(data, strings, strings_size)?;
        for symbol in bytes_at(data, offset, size)?.chunks_exact(SYMBOL_SIZE) {
            let name = u32_at(symbol, 0)? as usize;
            let defined_in = u16_at(symbol, 6)?;
            if defined_in != 0 || name == 0 {
                continue;
            }
            let tail = strings
                .get(name..)
                .ok_or_else(|| format!("symbol name offset {name} is outside the string table"))?;
            let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
            if let Ok(text) = std::str::from_utf8(&tail[..end]) {
                names.push(text);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_imports_libc_functions() {
        let exe = std::env::current_exe().and_then(std::fs::read);
        let exe = exe.expect("the test binary is readable");
        let names = undefined_dynamic_symbols(&exe).expect("a valid ELF file");
        // Every Rust binary on Linux takes memcpy or malloc from libc.
        assert!(
            names.iter().any(|n| *n == "memcpy" || *n == "malloc"),
            "{names:?}"
        );
        // Host functions are defined here (exported), not imported.
        assert!(!names.iter().any(|n| n.starts_with("proxy_")));
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        assert!(undefined_dynamic_symbols(b"\0asm\x01\0\0\0").is_err());
        assert!(undefined_dynamic_symbols(b"\x7fELF\x02\x01\x01").is_err());
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        header[0x3c] = 1;
        assert!(undefined_dynamic_symbols(&header).is_err());
    }
}
