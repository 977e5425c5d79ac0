//! Resident memory of this process, from `/proc/self/statm`.

use serde::Serialize;

/// One reading of the process's memory, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Resident set size.
    pub resident: u64,
    /// Resident pages backed by files (code, mapped libraries and artifacts).
    pub file_backed: u64,
}

impl Memory {
    /// Resident anonymous memory (heap, stacks, linear memories).
    pub fn anonymous(&self) -> u64 {
        self.resident.saturating_sub(self.file_backed)
    }
}

/// Parses `/proc/<pid>/statm` (`size resident shared text lib data dt`, in
/// pages) into bytes.
pub fn parse_statm(text: &str, page_size: u64) -> Option<Memory> {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
    let _size = fields.next()?.ok()?;
    let resident = fields.next()?.ok()?;
    let shared = fields.next()?.ok()?;
    Some(Memory {
        resident: resident * page_size,
        file_backed: shared * page_size,
    })
}

/// The page size from an auxiliary vector (`/proc/self/auxv`: pairs of
/// native-endian machine words, `AT_PAGESZ` = 6, ending with `AT_NULL` = 0).
pub fn page_size_from_auxv(auxv: &[u8]) -> Option<u64> {
    const AT_NULL: u64 = 0;
    const AT_PAGESZ: u64 = 6;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> Option<u64> {
        let mut buf = [0u8; 8];
        buf.get_mut(..WORD)?.copy_from_slice(b.get(..WORD)?);
        Some(if cfg!(target_endian = "little") {
            u64::from_le_bytes(buf)
        } else {
            u64::from_be_bytes(buf) >> (8 * (8 - WORD))
        })
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        let key = word(pair)?;
        let value = word(pair.get(WORD..)?)?;
        match key {
            AT_PAGESZ => return Some(value),
            AT_NULL => return None,
            _ => {}
        }
    }
    None
}

/// How the binary's allocator returns the memory it holds freed to the
/// system, run before each reading. Without it a reading taken after more
/// work can come out lower than one before (an allocator that purges
/// freed pages lazily gives back an earlier case's pages in between), and
/// the memory added per VM comes out negative.
static RELEASE_FREED: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets [`RELEASE_FREED`] (once; the binary that picks the allocator
/// knows how).
pub fn release_freed_with(release: fn()) {
    let _ = RELEASE_FREED.set(release);
}

/// This process's memory now; `None` where `/proc` is not available.
pub fn current() -> Option<Memory> {
    if let Some(release) = RELEASE_FREED.get() {
        release();
    }
    let page_size = std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|a| page_size_from_auxv(&a))
        .unwrap_or(4096);
    parse_statm(
        &std::fs::read_to_string("/proc/self/statm").ok()?,
        page_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_pages_become_bytes() {
        let m = parse_statm("52734 3012 1500 300 0 20000 0\n", 4096).unwrap();
        assert_eq!(m.resident, 3012 * 4096);
        assert_eq!(m.file_backed, 1500 * 4096);
        assert_eq!(m.anonymous(), 1512 * 4096);
        assert_eq!(parse_statm("12 x 3", 4096), None);
        assert_eq!(parse_statm("12", 4096), None);
    }

    #[test]
    fn the_page_size_comes_from_at_pagesz() {
        let mut auxv = Vec::new();
        for (k, v) in [(33u64, 0x7fff_0000u64), (6, 16384), (0, 0)] {
            auxv.extend_from_slice(&(k as usize).to_ne_bytes());
            auxv.extend_from_slice(&(v as usize).to_ne_bytes());
        }
        assert_eq!(page_size_from_auxv(&auxv), Some(16384));
        // AT_NULL before AT_PAGESZ: not found.
        assert_eq!(
            page_size_from_auxv(&auxv[4 * std::mem::size_of::<usize>()..]),
            None
        );
        assert_eq!(page_size_from_auxv(&[]), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let m = current().unwrap();
        assert!(m.resident > 0 && m.file_backed <= m.resident, "{m:?}");
    }
}
