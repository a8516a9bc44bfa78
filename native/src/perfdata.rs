//! Finds the GC cause in the JVM's own hsperfdata file (`sun.gc.cause`), for `gc=poll`: the
//! cause is the one detail of a collection that `GetLastGCStat` (and `getLastGcInfo()`) does
//! not carry.
//!
//! HotSpot maps `<tmp>/hsperfdata_<user>/<pid>` shared and updates its string counters in
//! place. We find that file in `/proc/self/maps`, parse its entry table once and map it
//! read-only ourselves (the same page-cache pages, so we see the JVM's stores); the GC-finish
//! callback then copies the current cause from that memory (see [`crate::gcwake`]). With
//! `-XX:-UsePerfData` or `-XX:+PerfDisableSharedMem` there is no file and causes are unknown.
//! The file is the JVM's, but it is parsed like any foreign input: every offset is
//! bounds-checked.
//!
//! Not for GC callbacks: [`map_own`] makes system calls and allocates (VM init).

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The file's magic number, `0xcafec0c0`, stored big-endian.
const MAGIC: [u8; 4] = [0xca, 0xfe, 0xc0, 0xc0];
/// Size of the prologue the entry table offset and count are read from.
const PROLOGUE: usize = 32;
/// Size of an entry header.
const ENTRY_HEADER: usize = 20;

/// Maps this process's hsperfdata file read-only once and returns where each string counter
/// of `names` lives in it (address, length), valid for the life of the process (the mapping
/// is never unmapped; HotSpot keeps the file, at its size, until the JVM exits). `None` when
/// the JVM has no file, it does not parse, or a counter is missing.
pub fn map_own<const N: usize>(names: [&str; N]) -> Option<[(*const u8, usize); N]> {
    let file = File::open(own_file()?).ok()?;
    let size = usize::try_from(file.metadata().ok()?.len()).ok()?.min(16 << 20);
    let mut bytes = vec![0u8; size];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let mut found = [(0usize, 0usize); N];
    for (slot, name) in found.iter_mut().zip(names) {
        *slot = find_string(&bytes, name)?;
    }
    // SAFETY: a fresh read-only shared mapping of `size` bytes of an open file.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: every `offset + len <= size` (checked by find_string against the image of that
    // size), so each address is inside the mapping.
    Some(found.map(|(offset, len)| (unsafe { base.cast::<u8>().add(offset) }.cast_const(), len)))
}

/// This process's hsperfdata file, from `/proc/self/maps`.
fn own_file() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let suffix = format!("/{}", std::process::id());
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with(&suffix) && p.contains("/hsperfdata_"))
        .map(str::to_string)
}

/// The (offset, length) of string counter `name` in an hsperfdata image.
///
/// Layout (HotSpot perfMemory.hpp): prologue { magic u32 BE, byte_order u8 (1: little),
/// major u8, minor u8, accessible u8, used i32, overflow i32, mod_time_stamp i64,
/// entry_offset i32, num_entries i32 }; each entry { entry_length i32, name_offset i32,
/// vector_length i32, data_type u8, flags u8, data_units u8, data_variability u8,
/// data_offset i32 }, offsets relative to the entry; names NUL-terminated.
pub fn find_string(img: &[u8], name: &str) -> Option<(usize, usize)> {
    if img.len() < PROLOGUE || img[..4] != MAGIC {
        return None;
    }
    let little = img[4] == 1;
    let i32_at = |at: usize| -> Option<i32> {
        let b: [u8; 4] = img.get(at..at + 4)?.try_into().ok()?;
        Some(if little { i32::from_le_bytes(b) } else { i32::from_be_bytes(b) })
    };
    let mut at = usize::try_from(i32_at(24)?).ok()?;
    let entries = i32_at(28)?;
    for _ in 0..entries.clamp(0, 100_000) {
        let entry_len = usize::try_from(i32_at(at)?).ok()?;
        if entry_len < ENTRY_HEADER || at.checked_add(entry_len)? > img.len() {
            return None;
        }
        let entry = &img[at..at + entry_len];
        let name_off = usize::try_from(i32_at(at + 4)?).ok()?;
        let vector_len = usize::try_from(i32_at(at + 8)?).ok()?;
        let data_type = entry[12];
        let data_off = usize::try_from(i32_at(at + 16)?).ok()?;
        let n = entry.get(name_off..)?;
        let n = &n[..n.iter().position(|&b| b == 0)?];
        if n == name.as_bytes() && data_type == b'B' && vector_len > 0 && data_off.checked_add(vector_len)? <= entry_len
        {
            return Some((at + data_off, vector_len));
        }
        at += entry_len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian image with the given (name, type, value) entries.
    fn image(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut img = vec![0u8; PROLOGUE];
        img[..4].copy_from_slice(&MAGIC);
        img[4] = 1;
        img[24..28].copy_from_slice(&(PROLOGUE as i32).to_le_bytes());
        img[28..32].copy_from_slice(&(entries.len() as i32).to_le_bytes());
        for (name, ty, value) in entries {
            let name_off = ENTRY_HEADER;
            let data_off = (name_off + name.len() + 1).next_multiple_of(8);
            let len = (data_off + value.len()).next_multiple_of(8);
            let mut e = vec![0u8; len];
            e[0..4].copy_from_slice(&(len as i32).to_le_bytes());
            e[4..8].copy_from_slice(&(name_off as i32).to_le_bytes());
            e[8..12].copy_from_slice(&(value.len() as i32).to_le_bytes());
            e[12] = *ty;
            e[16..20].copy_from_slice(&(data_off as i32).to_le_bytes());
            e[name_off..name_off + name.len()].copy_from_slice(name.as_bytes());
            e[data_off..data_off + value.len()].copy_from_slice(value);
            img.extend(e);
        }
        img
    }

    #[test]
    fn finds_a_string_counter_and_refuses_bad_images() {
        let img =
            image(&[("sun.gc.cause", b'B', b"No GC\0\0\0"), ("sun.gc.lastCause", b'B', b"G1 Evacuation Pause\0")]);
        let (off, len) = find_string(&img, "sun.gc.lastCause").unwrap();
        assert_eq!(&img[off..off + 19], b"G1 Evacuation Pause");
        assert_eq!(len, 20);
        assert_eq!(find_string(&img, "sun.gc.nope"), None);
        // A long counter of the same name is not a string.
        assert_eq!(find_string(&image(&[("sun.gc.lastCause", b'J', &[0; 8])]), "sun.gc.lastCause"), None);
        // Foreign magic, truncation at every length, and an entry length pointing outside.
        let mut foreign = img.clone();
        foreign[0] = 0;
        assert_eq!(find_string(&foreign, "sun.gc.lastCause"), None);
        for cut in 0..img.len() {
            let _ = find_string(&img[..cut], "sun.gc.lastCause");
        }
        let mut huge = img.clone();
        huge[PROLOGUE..PROLOGUE + 4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert_eq!(find_string(&huge, "sun.gc.lastCause"), None);
    }
}
