//! Running processes, held by a pidfd: a process judged by its executable
//! is the one signalled, never another that took its id after it exited.

use crate::hashes::Hashes;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The ids of the running processes, but this one's.
pub fn ids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let own = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|pid| *pid != own)
        .collect()
}

/// One running process.
pub struct Process {
    pub pid: i32,
    pidfd: OwnedFd,
}

impl Process {
    /// The process with `pid` now, if there is one (and it may be held).
    pub fn open(pid: i32) -> Option<Process> {
        let pidfd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?;
        Some(Process { pid, pidfd })
    }

    /// Where its executable was started from (`" (deleted)"` appended when
    /// the file is gone).
    pub fn executable_path(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid)).ok()
    }

    /// The hashes of the executable it runs: read through `/proc/<pid>/exe`,
    /// which is the file it runs even if its path now names another. Read
    /// after the pidfd was opened: if the id was reused since, the pidfd's
    /// process is gone and [`Self::kill`] fails.
    pub fn executable_hashes(&self) -> Option<Hashes> {
        let (mut file, metadata) = self.executable()?;
        (metadata.len() <= crate::enforcement::MAX_SCANNED_BYTES)
            .then(|| Hashes::of(&mut file).ok())
            .flatten()
    }

    /// Its executable, opened, and what the file system says of it.
    pub fn executable(&self) -> Option<(std::fs::File, std::fs::Metadata)> {
        let file = std::fs::File::open(format!("/proc/{}/exe", self.pid)).ok()?;
        let metadata = file.metadata().ok()?;
        Some((file, metadata))
    }

    /// Stops it with SIGKILL.
    pub fn kill(&self) -> std::io::Result<()> {
        Ok(pidfd_send_signal(&self.pidfd, Signal::KILL)?)
    }
}
