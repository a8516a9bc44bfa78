//! Archived rings: a dead ring compressed with zstd into `<archive>/<id>.ring.zst`, written
//! atomically; read back into an anonymous memory file (memfd) and through the ordinary
//! untrusting reader, so `inspect` and the API read them as they read any ring.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use jvmwatch_ring::layout::HEADER_SIZE;
use jvmwatch_ring::{ReadError, Ring};

/// File name suffix of an archived ring.
pub const SUFFIX: &str = ".ring.zst";
/// zstd frame magic number (little-endian 0xFD2FB528).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd level: the default; a dead 4 MiB ring compresses in a few ms.
pub const LEVEL: i32 = 3;

/// The id of an archived ring's file name (`<id>.ring.zst`), if it is one.
pub fn id_of(name: &str) -> Option<&str> {
    name.strip_suffix(SUFFIX).filter(|id| crate::serve::registry::valid_id(id))
}

fn opened(path: &Path) -> Result<File, ReadError> {
    jvmwatch_ring::reader::open_untrusted(path)
}

fn corrupt(e: io::Error) -> ReadError {
    ReadError::Corrupt(format!("archived ring does not decompress: {e}"))
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens a ring file, plain or zstd-compressed (recognised by its magic number, whatever its
/// name). A compressed one is decompressed into an anonymous memory file: first the header
/// page, which is validated and says how long the ring is (bounded by the format), then at
/// most that many bytes; a longer stream is refused. So a hostile file can make this allocate
/// no more than the largest valid ring, and gives an error, never a panic.
pub fn open(path: &Path) -> Result<Ring, ReadError> {
    let file = opened(path)?;
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0).unwrap_or(0);
    if n < 4 || magic != ZSTD_MAGIC {
        return Ring::from_file(file, path);
    }
    let mut dec = zstd::stream::read::Decoder::new(file).map_err(corrupt)?;
    let mut head = vec![0u8; HEADER_SIZE];
    let got = read_full(&mut dec, &mut head).map_err(corrupt)?;
    head.truncate(got);
    // Validated like any header; the real size is not known yet, so only the claimed one
    // bounds what follows.
    let header = jvmwatch_ring::reader::parse_header(&head, u64::MAX)?;
    let mem = memfd()?;
    let mut w = io::BufWriter::with_capacity(1 << 20, &mem);
    w.write_all(&head)?;
    let rest = header.file_size - head.len() as u64;
    let copied = io::copy(&mut (&mut dec).take(rest), &mut w).map_err(corrupt)?;
    w.flush()?;
    drop(w);
    if copied < rest {
        return Err(ReadError::Truncated { need: header.file_size, have: head.len() as u64 + copied });
    }
    let mut one = [0u8; 1];
    if read_full(&mut dec, &mut one).map_err(corrupt)? != 0 {
        return Err(ReadError::Corrupt(format!(
            "archived ring decompresses to more than the {} bytes its header says",
            header.file_size
        )));
    }
    Ring::from_file(mem, path)
}

/// An anonymous memory file (closed on exec).
fn memfd() -> io::Result<File> {
    // SAFETY: the name is a NUL-terminated C string literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"jvmwatch-archived-ring".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Reads just the header page of an archived ring (decompressing only its first block): for
/// listings. The live part of the header (app, exit time, state) is in that page too.
pub fn header_page(path: &Path) -> Result<Vec<u8>, ReadError> {
    let file = opened(path)?;
    let mut dec = zstd::stream::read::Decoder::new(file).map_err(corrupt)?;
    let mut head = vec![0u8; HEADER_SIZE];
    let got = read_full(&mut dec, &mut head).map_err(corrupt)?;
    head.truncate(got);
    jvmwatch_ring::reader::parse_header(&head, u64::MAX)?;
    Ok(head)
}

/// What [`compress_into`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// The archived file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// Creates `dir` (and its parents, mode 0700) if missing; refuses a symlink or someone
/// else's directory.
pub fn ensure_archive_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let md = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !md.is_dir() || md.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a directory of this user", dir.display()),
        ));
    }
    Ok(())
}

/// Compresses `len` bytes of `src` into `<dir>/<id>.ring.zst` atomically: a hidden temporary
/// file, fsynced, its modification time set to `mtime_ns` (when the JVM ended: the archive's
/// age), renamed into place, the directory fsynced. A crash at any point leaves either no
/// archived file or a whole one (and at worst a hidden temporary to remove).
pub fn compress_into(src: &File, len: u64, dir: &Path, id: &str, mtime_ns: u64) -> io::Result<Written> {
    ensure_archive_dir(dir)?;
    let to = dir.join(format!("{id}{SUFFIX}"));
    let tmp = dir.join(format!(".{id}{SUFFIX}.{}.tmp", std::process::id()));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let result = (|| {
        let mut enc = zstd::stream::write::Encoder::new(&out, LEVEL)?;
        enc.include_checksum(true)?;
        enc.set_pledged_src_size(Some(len))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < len {
            let n = buf.len().min((len - off) as usize);
            src.read_exact_at(&mut buf[..n], off)?;
            enc.write_all(&buf[..n])?;
            off += n as u64;
        }
        enc.finish()?;
        out.sync_all()?;
        let t = libc::timespec { tv_sec: (mtime_ns / 1_000_000_000) as _, tv_nsec: (mtime_ns % 1_000_000_000) as _ };
        let times = [t, t];
        // SAFETY: `out` is an open descriptor; `times` points at two valid timespecs.
        if unsafe { libc::futimens(out.as_raw_fd(), times.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        std::fs::rename(&tmp, &to)?;
        File::open(dir)?.sync_all()?;
        Ok(out.metadata()?.len())
    })();
    match result {
        Ok(bytes) => Ok(Written { path: to, bytes }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jvmwatch_ring::{Collector, Event, Identity, Writer};

    fn dead_ring(dir: &Path) -> PathBuf {
        let id = Identity { pid: 7, start_ns: 1_000, interval_ns: 1, ..Identity::default() };
        let w = Writer::create(&dir.join("7-1-aa.ring"), 1024, &id).unwrap();
        for i in 0..50 {
            w.emit(&Event::GcPauseStart { gc_id: i, collector: Collector::G1 });
        }
        w.path().to_path_buf()
    }

    #[test]
    fn a_ring_round_trips_through_the_archive() {
        let d = tempfile::tempdir().unwrap();
        let ring = dead_ring(d.path());
        let f = File::open(&ring).unwrap();
        let len = f.metadata().unwrap().len();
        let w = compress_into(&f, len, &d.path().join("archive/deep"), "7-1-aa", 5_000_000_123).unwrap();
        assert!(w.path.ends_with("archive/deep/7-1-aa.ring.zst"));
        assert!(w.bytes < len / 10, "{} of {len}", w.bytes);
        let mtime = std::fs::metadata(&w.path).unwrap().modified().unwrap();
        assert_eq!(mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos(), 5_000_000_123);
        let r = open(&w.path).unwrap();
        assert_eq!(r.header().pid, 7);
        assert!(!r.writer_alive());
        let s = r.scan(0, false).unwrap();
        assert_eq!(s.records.len(), 50);
        assert!(header_page(&w.path).is_ok());
        // No temporary left behind.
        let names: Vec<_> = std::fs::read_dir(d.path().join("archive/deep")).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn hostile_archives_give_errors() {
        let d = tempfile::tempdir().unwrap();
        let ring = dead_ring(d.path());
        let bytes = std::fs::read(&ring).unwrap();
        let write = |name: &str, b: &[u8]| {
            let p = d.path().join(name);
            std::fs::write(&p, b).unwrap();
            p
        };
        let good = zstd::encode_all(&bytes[..], 3).unwrap();
        // Cut short.
        let e = open(&write("cut.zst", &good[..good.len() / 2])).unwrap_err();
        assert!(matches!(e, ReadError::Corrupt(_) | ReadError::Truncated { .. }), "{e}");
        // Garbage after the magic.
        let mut g = ZSTD_MAGIC.to_vec();
        g.extend([0xffu8; 100]);
        assert!(matches!(open(&write("garbage.zst", &g)).unwrap_err(), ReadError::Corrupt(_)));
        // A bit flipped in the middle of an archive as retention writes it (with a frame
        // checksum): the decoder or the checksum catches it.
        let f = File::open(&ring).unwrap();
        let w = compress_into(&f, bytes.len() as u64, &d.path().join("a"), "7-1-aa", 1).unwrap();
        let mut f = std::fs::read(&w.path).unwrap();
        let mid = f.len() / 2;
        f[mid] ^= 0x40;
        assert!(open(&write("flip.zst", &f)).is_err());
        // A valid stream of something that is not a ring.
        let notring = zstd::encode_all(&vec![7u8; 1 << 20][..], 3).unwrap();
        assert!(matches!(open(&write("notring.zst", &notring)).unwrap_err(), ReadError::BadMagic));
        // A ring followed by much more than its header says (a bomb padded with zeros).
        let mut long = bytes.clone();
        long.extend(vec![0u8; 64 << 20]);
        let bomb = zstd::encode_all(&long[..], 3).unwrap();
        assert!(bomb.len() < 1 << 20);
        let e = open(&write("bomb.zst", &bomb)).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        // Empty and magic-only.
        assert!(open(&write("empty.zst", b"")).is_err());
        assert!(open(&write("magic.zst", &ZSTD_MAGIC)).is_err());
    }
}
