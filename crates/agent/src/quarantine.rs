//! Where files with a blocked hash go: a directory only root can read, each
//! file beside a record of where it came from.
//!
//! A file is moved only if it is still the file that was judged: it is
//! opened without following links, hashed again through that descriptor,
//! and the inode that lands in quarantine must be that descriptor's, so
//! that swapping the path for a link (or another file) between the scan
//! and the move quarantines nothing it should not, and changes the mode of
//! nothing else.

use crate::hashes::Hashes;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};
use serde_json::json;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The quarantine directory.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

/// Why a file could not be quarantined.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} changed since it was scanned")]
    Changed(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> QuarantineError + '_ {
    move |error| QuarantineError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The inode a descriptor or a path names.
fn inode(stat: &rustix::fs::Stat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

impl Quarantine {
    pub fn open(dir: PathBuf) -> std::io::Result<Quarantine> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Quarantine { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the regular file at `path` for judging: no link followed in
    /// any part of the path (`RESOLVE_NO_SYMLINKS`), no blocking on a FIFO.
    pub fn open_judged(path: &Path) -> Result<(File, rustix::fs::Stat), QuarantineError> {
        let (dir, name) = Self::parent(path)?;
        Self::open_in(&dir, name, path)
    }

    /// The regular file `name` of `dir` (which is `path`), opened.
    fn open_in(
        dir: &std::os::fd::OwnedFd,
        name: &std::ffi::OsStr,
        path: &Path,
    ) -> Result<(File, rustix::fs::Stat), QuarantineError> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| io(path)(e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| io(path)(e.into()))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(QuarantineError::NotAFile(path.to_path_buf()));
        }
        Ok((File::from(fd), stat))
    }

    /// The directory holding `path` (reached without following a link) and
    /// the file's name in it.
    fn parent(path: &Path) -> Result<(std::os::fd::OwnedFd, &std::ffi::OsStr), QuarantineError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(QuarantineError::NotAFile(path.to_path_buf()));
        };
        let dir = rustix::fs::openat2(
            CWD,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            rustix::fs::ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| io(path)(e.into()))?;
        Ok((dir, name))
    }

    /// Moves the file at `path` in, if it still has `expected`'s hashes, as
    /// `<sha256>-<unique>` (owner-read-only) with its record beside it
    /// (`.json`: where it came from, its hashes, `reason`); returns where
    /// it is now. Every step is relative to the directory opened once, so
    /// the file moved is the file hashed.
    pub fn take(
        &self,
        path: &Path,
        expected: &Hashes,
        reason: &serde_json::Value,
    ) -> Result<PathBuf, QuarantineError> {
        let (dir, name) = Self::parent(path)?;
        let (mut file, stat) = Self::open_in(&dir, name, path)?;
        if Hashes::of(&mut file).map_err(io(path))? != *expected {
            return Err(QuarantineError::Changed(path.to_path_buf()));
        }
        let kept_name = format!("{}-{}", expected.sha256, uuid::Uuid::new_v4().simple());
        let kept = self.dir.join(&kept_name);
        match rustix::fs::renameat_with(&dir, name, CWD, &kept, RenameFlags::NOREPLACE) {
            Ok(()) => {
                let landed = rustix::fs::statat(CWD, &kept, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(&kept)(e.into()))?;
                if inode(&landed) != inode(&stat) {
                    // Swapped after it was opened: put back what moved.
                    let _ =
                        rustix::fs::renameat_with(CWD, &kept, &dir, name, RenameFlags::NOREPLACE);
                    return Err(QuarantineError::Changed(path.to_path_buf()));
                }
            }
            Err(rustix::io::Errno::XDEV) => {
                // Another file system: copy what was hashed, then remove the
                // original if its name still names it.
                file.seek(SeekFrom::Start(0)).map_err(io(path))?;
                let mut copy = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&kept)
                    .map_err(io(&kept))?;
                std::io::copy(&mut file, &mut copy).map_err(io(&kept))?;
                copy.sync_all().map_err(io(&kept))?;
                let now = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(path)(e.into()))?;
                if inode(&now) != inode(&stat) {
                    let _ = std::fs::remove_file(&kept);
                    return Err(QuarantineError::Changed(path.to_path_buf()));
                }
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                    .map_err(|e| io(path)(e.into()))?;
                file = File::open(&kept).map_err(io(&kept))?;
            }
            Err(error) => return Err(io(path)(error.into())),
        }
        rustix::fs::fchmod(file.as_fd(), Mode::RUSR).map_err(|e| io(&kept)(e.into()))?;
        let record = json!({
            "originalPath": path.display().to_string(),
            "quarantinedAs": kept_name,
            "sha1": expected.sha1, "sha256": expected.sha256, "md5": expected.md5,
            "size": stat.st_size,
            "owner": stat.st_uid,
            "mode": format!("{:o}", stat.st_mode & 0o7777),
            "reason": reason,
            "quarantinedAt": palisade_contract::Timestamp::now(),
        });
        let record_path = self.dir.join(format!("{kept_name}.json"));
        std::fs::write(&record_path, record.to_string()).map_err(io(&record_path))?;
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_quarantined_file_is_moved_with_a_record_of_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let quarantine = Quarantine::open(dir.path().join("q")).unwrap();
        let mut kept = Vec::new();
        // Two files with the same content: both kept, each with its own record.
        for name in ["evil.bin", "copy.bin"] {
            let file = dir.path().join(name);
            std::fs::write(&file, b"payload").unwrap();
            let hashes = Hashes::of_path(&file).unwrap();
            let path = quarantine
                .take(&file, &hashes, &json!({"indicatorId": "9"}))
                .unwrap();
            assert!(!file.exists());
            assert_eq!(std::fs::read(&path).unwrap(), b"payload");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o400);
            let record: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(path.with_extension("json")).unwrap(),
            )
            .unwrap();
            assert_eq!(record["originalPath"], file.display().to_string());
            assert_eq!(record["reason"]["indicatorId"], "9");
            kept.push(path);
        }
        assert_ne!(kept[0], kept[1]);
        let mode = std::fs::metadata(dir.path().join("q"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_link_or_a_changed_file_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let quarantine = Quarantine::open(dir.path().join("q")).unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, b"payload").unwrap();
        std::fs::set_permissions(&precious, std::fs::Permissions::from_mode(0o644)).unwrap();
        let hashes = Hashes::of_path(&precious).unwrap();
        // The scanned path swapped for a link to another file with the same content.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        let refused = quarantine.take(&link, &hashes, &json!({}));
        assert!(refused.is_err(), "{refused:?}");
        assert!(link.exists() && precious.exists());
        let mode = std::fs::metadata(&precious).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the link's target keeps its mode");
        // A directory on the way swapped for a link (to somewhere else).
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("passwd"), b"payload").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("drop")).unwrap();
        let through = dir.path().join("drop").join("passwd");
        assert!(quarantine.take(&through, &hashes, &json!({})).is_err());
        assert!(Quarantine::open_judged(&through).is_err());
        assert!(
            real.join("passwd").exists(),
            "nothing moved through the link"
        );
        // Changed since the scan.
        std::fs::write(&precious, b"other").unwrap();
        assert!(matches!(
            quarantine.take(&precious, &hashes, &json!({})),
            Err(QuarantineError::Changed(_))
        ));
        assert!(precious.exists());
    }
}
