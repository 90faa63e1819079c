//! The hashes of a file, as indicators and machine actions name them.

use sha1::Digest;
use std::io::Read;
use std::path::Path;

/// A file's SHA-1, SHA-256 and MD5, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub sha1: String,
    pub sha256: String,
    pub md5: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Hashes {
    /// All three in one read through `reader`.
    pub fn of(reader: &mut impl Read) -> std::io::Result<Hashes> {
        let (mut sha1, mut sha256, mut md5) =
            (sha1::Sha1::new(), sha2::Sha256::new(), md5::Md5::new());
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            sha1.update(&buffer[..read]);
            sha256.update(&buffer[..read]);
            md5.update(&buffer[..read]);
        }
        Ok(Hashes {
            sha1: hex(&sha1.finalize()),
            sha256: hex(&sha256.finalize()),
            md5: hex(&md5.finalize()),
        })
    }

    pub fn of_path(path: &Path) -> std::io::Result<Hashes> {
        Hashes::of(&mut std::fs::File::open(path)?)
    }

    /// The hashes of the regular file at `path`, at most `max_bytes` long:
    /// opened without following a link and without blocking, so that a
    /// FIFO, a device or a link put in a file's place is passed over, never
    /// read (nor waited on).
    pub fn of_regular_file(path: &Path, max_bytes: u64) -> Option<Hashes> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).ok()?;
        let stat = rustix::fs::fstat(&fd).ok()?;
        let regular =
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
        let size = u64::try_from(stat.st_size).ok()?;
        if !regular || size > max_bytes {
            return None;
        }
        Hashes::of(&mut Read::take(std::fs::File::from(fd), size)).ok()
    }
}
