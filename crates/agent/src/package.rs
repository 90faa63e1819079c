//! An investigation package, laid out as Microsoft Defender for Endpoint's
//! (folders of text and CSV files under a `Summary.txt`), in a zip file.
//! Every source is bounded in size and time, and one that cannot be read
//! is named in the summary rather than failing the collection.

use chrono::{Datelike, SecondsFormat, Timelike, Utc};
use rustix::process::{kill_process_group, Pid, Signal};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::{Duration, Instant};
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

/// Bounds of a collection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The zip's entries stop before their compressed bytes would pass this
    /// (`Summary.txt` is added regardless).
    pub max_bytes: u64,
    /// No entry is started past this, and commands are stopped at it.
    pub within: Duration,
    /// Each entry keeps at most this much (`Summary.txt` aside).
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 256 << 20,
            within: Duration::from_secs(120),
            max_file_bytes: 8 << 20,
        }
    }
}

/// What a collection made.
#[derive(Debug, Clone)]
pub struct Collected {
    pub path: PathBuf,
    /// The size of the zip file.
    pub bytes: u64,
    /// Of the zip file, in lowercase hex.
    pub sha256: String,
    /// The names of the entries in the zip, `Summary.txt` last.
    pub entries: Vec<String>,
    /// What was cut short or left out, one line each.
    pub truncated: Vec<String>,
}

/// The longest any one command may run.
const COMMAND_WITHIN: Duration = Duration::from_secs(15);

/// Where an entry's content comes from.
enum Source {
    /// A file, from its start.
    File(&'static str),
    /// The end of the first of these files that exists (logs grow there).
    Tail(&'static [&'static str]),
    /// These files, and the regular files in these directories, each under
    /// a header naming it.
    Files(&'static [&'static str]),
    /// The entries of a directory, with their type, owner, size and time.
    Listing(&'static str),
    /// The output (and errors) of these commands, one after another.
    Run(&'static [&'static [&'static str]]),
    /// The first of these that can be read.
    First(&'static [Source]),
    /// Fixed text.
    Note(&'static str),
    /// Made by the agent from /proc and /etc.
    Made(fn(&mut Sink) -> io::Result<()>),
}
use Source::*;

const SYSTEMD_TIMERS: Source = Run(&[&["systemctl", "list-timers", "--all", "--no-pager"]]);

/// The package's layout, in the order collected (the most volatile first).
const ENTRIES: &[(&str, Source)] = &[
    ("Processes/processes.csv", Made(processes_csv)),
    (
        "Network connections/tcp.csv",
        Made(|s| sockets_csv(s, &["tcp", "tcp6"])),
    ),
    (
        "Network connections/udp.csv",
        Made(|s| sockets_csv(s, &["udp", "udp6"])),
    ),
    (
        "Network connections/interfaces.txt",
        First(&[Run(&[&["ip", "-details", "addr"]]), File("/proc/net/dev")]),
    ),
    (
        "Network connections/routes.txt",
        Run(&[&["ip", "route"], &["ip", "-6", "route"]]),
    ),
    (
        "Network connections/dns.txt",
        Files(&["/etc/resolv.conf", "/etc/hosts"]),
    ),
    (
        "Installed programs/packages.csv",
        First(&[
            Run(&[&[
                "dpkg-query",
                "-W",
                "-f",
                "${Package},${Version},${Architecture}\n",
            ]]),
            Run(&[&[
                "rpm",
                "-qa",
                "--qf",
                "%{NAME},%{VERSION}-%{RELEASE},%{ARCH}\n",
            ]]),
        ]),
    ),
    (
        "Autoruns/systemd-units.txt",
        Run(&[&["systemctl", "list-unit-files", "--no-pager"]]),
    ),
    ("Autoruns/systemd-timers.txt", SYSTEMD_TIMERS),
    (
        "Autoruns/cron.txt",
        Files(&["/etc/crontab", "/etc/cron.d", "/var/spool/cron/crontabs"]),
    ),
    ("Autoruns/rc-local.txt", File("/etc/rc.local")),
    ("Autoruns/shell-profiles.txt", Listing("/etc/profile.d")),
    (
        "Scheduled tasks/at-jobs.txt",
        First(&[Listing("/var/spool/cron/atjobs"), Listing("/var/spool/at")]),
    ),
    (
        "Scheduled tasks/timers.txt",
        First(&[
            SYSTEMD_TIMERS,
            Note("systemd timers could not be listed: no systemctl\n"),
        ]),
    ),
    ("Users and groups/passwd.csv", Made(passwd_csv)),
    ("Users and groups/group.csv", Made(group_csv)),
    (
        "Users and groups/sudoers.txt",
        Files(&["/etc/sudoers", "/etc/sudoers.d"]),
    ),
    ("Users and groups/logged-on.txt", Run(&[&["who"]])),
    ("System information/os-release.txt", File("/etc/os-release")),
    ("System information/uname.txt", Run(&[&["uname", "-a"]])),
    ("System information/uptime.txt", File("/proc/uptime")),
    ("System information/mounts.txt", File("/proc/mounts")),
    (
        "System information/kernel-modules.txt",
        File("/proc/modules"),
    ),
    (
        "Security logs/journal.txt",
        Run(&[&["journalctl", "--no-pager", "-n", "2000", "-o", "short-iso"]]),
    ),
    (
        "Security logs/auth.log",
        Tail(&["/var/log/auth.log", "/var/log/secure"]),
    ),
];

const SUMMARY: &str = "Summary.txt";

/// Collects into a new zip file at `out` (created, mode 0600). Blocking:
/// callers run it on a blocking thread.
pub fn collect(out: &Path, limits: &Limits) -> io::Result<Collected> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)?;
    let written = write_package(&file, limits).and_then(|(entries, truncated)| {
        file.sync_all()?;
        let mut reader = &file;
        reader.seek(SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        let bytes = io::copy(&mut reader, &mut hasher)?;
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Collected {
            path: out.to_path_buf(),
            bytes,
            sha256,
            entries,
            truncated,
        })
    });
    if written.is_err() {
        // A package half written is of no use to anyone.
        let _ = std::fs::remove_file(out);
    }
    written
}

/// Writes the entries, then the summary; returns the entries' names and
/// what was truncated.
fn write_package(file: &File, limits: &Limits) -> io::Result<(Vec<String>, Vec<String>)> {
    let now = Utc::now();
    // Capped so that adding it to an Instant cannot overflow.
    let until = Instant::now() + limits.within.min(Duration::from_secs(u32::MAX.into()));
    let mut options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(limits.max_file_bytes >= u64::from(u32::MAX));
    if let Ok(at) = zip::DateTime::from_date_and_time(
        u16::try_from(now.year()).unwrap_or(1980),
        now.month() as u8,
        now.day() as u8,
        now.hour() as u8,
        now.minute() as u8,
        now.second() as u8,
    ) {
        options = options.last_modified_time(at);
    }
    let mut zip = ZipWriter::new(file);
    let (mut listed, mut missing, mut truncated) = (vec![], vec![], vec![]);
    for (index, (name, source)) in ENTRIES.iter().enumerate() {
        let left_out = || {
            let names: Vec<&str> = ENTRIES[index..].iter().map(|(n, _)| *n).collect();
            names.join(", ")
        };
        if Instant::now() >= until {
            truncated.push(format!(
                "past {} s, not collected: {}",
                limits.within.as_secs(),
                left_out()
            ));
            break;
        }
        let mut sink = Sink::new(limits.max_file_bytes);
        if let Err(what) = fill(source, &mut sink, until) {
            sink.missing.push(what);
        }
        zip.start_file(*name, options)?;
        zip.write_all(&sink.buf)?;
        zip.flush()?;
        if position(file)? > limits.max_bytes {
            // Taken out again: the entries end before max_bytes.
            zip.abort_file()?;
            truncated.push(format!(
                "over {} bytes, not collected: {}",
                limits.max_bytes,
                left_out()
            ));
            break;
        }
        missing.extend(sink.missing.iter().map(|m| format!("{name}: {m}")));
        truncated.extend(sink.cut.iter().map(|c| format!("{name}: {c}")));
        listed.push((name.to_string(), sink.buf.len()));
    }

    let mut summary = format!(
        "Palisade investigation package\nHost: {}\nCollected: {}\nAgent version: {}\n\
         Limits: max_bytes {}, within {} s, max_file_bytes {}\n\nEntries (bytes):\n",
        crate::host::hostname(),
        now.to_rfc3339_opts(SecondsFormat::Secs, true),
        env!("CARGO_PKG_VERSION"),
        limits.max_bytes,
        limits.within.as_secs(),
        limits.max_file_bytes,
    );
    for (name, size) in &listed {
        summary += &format!("{size:>12}  {name}\n");
    }
    for (title, lines) in [("Missing", &missing), ("Truncated", &truncated)] {
        summary += &format!("\n{title}:\n");
        if lines.is_empty() {
            summary += "  (none)\n";
        }
        for line in lines {
            summary += &format!("  {line}\n");
        }
    }
    zip.start_file(SUMMARY, options)?;
    zip.write_all(summary.as_bytes())?;
    zip.finish()?;
    // An entry taken out may have left bytes past the central directory.
    file.set_len(position(file)?)?;

    let mut entries: Vec<String> = listed.into_iter().map(|(name, _)| name).collect();
    entries.push(SUMMARY.into());
    Ok((entries, truncated))
}

fn position(mut file: &File) -> io::Result<u64> {
    file.stream_position()
}

/// The content of one entry, kept in memory up to its cap, with what was
/// cut short and what could not be read.
struct Sink {
    buf: Vec<u8>,
    cap: usize,
    cut: Option<String>,
    missing: Vec<String>,
}

impl Sink {
    fn new(cap: u64) -> Sink {
        Sink {
            buf: Vec::new(),
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            cut: None,
            missing: Vec::new(),
        }
    }

    fn left(&self) -> u64 {
        (self.cap - self.buf.len()) as u64
    }

    fn full(&self) -> bool {
        self.cut.is_some()
    }

    /// Notes why the entry is incomplete (the first reason stays).
    fn cut_short(&mut self, why: String) {
        self.cut.get_or_insert(why);
    }
}

impl Write for Sink {
    /// Keeps what fits and drops the rest: an entry is capped, not failed.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let kept = data.len().min(self.cap - self.buf.len());
        self.buf.extend_from_slice(&data[..kept]);
        if kept < data.len() {
            self.cut_short(format!("kept the first {} bytes", self.cap));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fills `sink` from `source`; an error names what could not be read.
fn fill(source: &Source, sink: &mut Sink, until: Instant) -> Result<(), String> {
    let naming = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| format!("{what}: {e}")
    };
    match source {
        File(path) => read_bounded(Path::new(path), true, false, sink).map_err(naming(path)),
        Tail(paths) => {
            let path = paths
                .iter()
                .find(|p| Path::new(p).exists())
                .ok_or_else(|| format!("none of {}", paths.join(", ")))?;
            read_bounded(Path::new(path), true, true, sink).map_err(naming(path))
        }
        Files(paths) => {
            for path in *paths {
                files(Path::new(path), sink);
            }
            Ok(())
        }
        Listing(dir) => listing(Path::new(dir), sink).map_err(naming(dir)),
        Run(commands) => {
            for argv in *commands {
                if commands.len() > 1 {
                    let _ = writeln!(sink, "$ {}", argv.join(" "));
                }
                run_bounded(argv, sink, until).map_err(naming(argv[0]))?;
            }
            Ok(())
        }
        First(sources) => {
            let mut errors = vec![];
            for source in *sources {
                match fill(source, sink, until) {
                    Ok(()) => return Ok(()),
                    Err(error) => errors.push(error),
                }
            }
            Err(errors.join("; "))
        }
        Note(text) => sink.write_all(text.as_bytes()).map_err(naming("note")),
        Made(make) => make(sink).map_err(|e| e.to_string()),
    }
}

/// Runs `argv` with stdin null, its output and errors going into `sink`,
/// until it ends, fills `sink`, or reaches `until` or [`COMMAND_WITHIN`];
/// then it is killed, with whatever it started.
fn run_bounded(argv: &[&str], sink: &mut Sink, until: Instant) -> io::Result<()> {
    let started = Instant::now();
    let until = until.min(started + COMMAND_WITHIN);
    let (mut reader, writer) = io::pipe()?;
    // Its own process group, so that its children are killed with it.
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .spawn()?;
    // Read on a thread of its own so that waiting for output has a limit.
    let (chunks, received) = sync_channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut chunk = vec![0; 64 << 10];
        while let Ok(n @ 1..) = reader.read(&mut chunk) {
            if chunks.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let ended = loop {
        match received.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(chunk) => {
                sink.write_all(&chunk)?;
                if sink.full() {
                    break false;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break true,
            Err(RecvTimeoutError::Timeout) => {
                let secs = started.elapsed().as_secs();
                sink.cut_short(format!("{} stopped after {secs} s", argv[0]));
                break false;
            }
        }
    };
    // Past its output, it has what remains of its time to exit.
    let mut status = None;
    while ended && Instant::now() < until {
        status = child.try_wait()?;
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if status.is_none() {
        // Not reaped yet, so its id (and its group's) is still its own.
        let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
        let _ = child.kill();
        child.wait()?;
    }
    if let Some(status) = status.filter(|s| !s.success()) {
        writeln!(sink, "[{} exited with {status}]", argv[0])?;
    }
    Ok(())
}

/// Copies the file at `path` into `sink`, as much as it takes: its start,
/// or with `tail` its end. Only a regular file is read (no FIFO to block
/// on, no device), and a symbolic link only if `follow`.
fn read_bounded(path: &Path, follow: bool, tail: bool, sink: &mut Sink) -> io::Result<()> {
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    if !follow {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if tail && meta.len() > sink.left() {
        file.seek(SeekFrom::Start(meta.len() - sink.left()))?;
        sink.cut_short(format!("kept the last {} bytes", sink.left()));
    }
    // One byte more than fits, so that a longer file is noted as cut.
    io::copy(&mut file.take(sink.left().saturating_add(1)), sink)?;
    Ok(())
}

/// A small file's text (bounded like any other).
fn read_text(path: &str, cap: u64) -> io::Result<String> {
    let mut sink = Sink::new(cap);
    read_bounded(Path::new(path), true, false, &mut sink)?;
    Ok(String::from_utf8_lossy(&sink.buf).into_owned())
}

/// `path` under a header, or if a directory each regular file in it. Links
/// in the directory are not followed: they could lead anywhere.
fn files(path: &Path, sink: &mut Sink) {
    let read = |path: &Path, follow: bool, sink: &mut Sink| {
        let _ = writeln!(sink, "==> {} <==", path.display());
        if let Err(e) = read_bounded(path, follow, false, sink) {
            sink.missing.push(format!("{}: {e}", path.display()));
        }
        let _ = writeln!(sink);
    };
    let names = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => return read(path, true, sink),
        Ok(_) => std::fs::read_dir(path).map(|dir| dir.flatten().map(|e| e.path()).collect()),
        Err(e) => Err(e),
    };
    let mut names: Vec<PathBuf> = match names {
        Ok(names) => names,
        Err(e) => return sink.missing.push(format!("{}: {e}", path.display())),
    };
    names.sort();
    for name in names {
        if name.symlink_metadata().is_ok_and(|m| m.is_file()) {
            read(&name, false, sink);
        } else {
            let _ = writeln!(
                sink,
                "==> {} (not a regular file, not read) <==\n",
                name.display()
            );
        }
    }
}

/// Each entry of `dir`: type and mode, owner, size, modified, name.
fn listing(dir: &Path, sink: &mut Sink) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let kind = match () {
            _ if meta.is_symlink() => 'l',
            _ if meta.is_dir() => 'd',
            _ if meta.is_file() => '-',
            _ => '?',
        };
        let target = std::fs::read_link(&path)
            .map(|t| format!(" -> {}", t.display()))
            .unwrap_or_default();
        writeln!(
            sink,
            "{kind}{:04o} {}:{} {:>10} {} {}{target}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            meta.len(),
            rfc3339(meta.mtime()),
            entry.file_name().to_string_lossy(),
        )?;
    }
    Ok(())
}

fn rfc3339(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// One CSV line, fields quoted where they must be.
fn csv(sink: &mut Sink, fields: &[&str]) -> io::Result<()> {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect();
    writeln!(sink, "{}", quoted.join(","))
}

/// The ids of the running processes, this one's included, in order.
fn pids() -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// The lines of /etc/passwd or /etc/group, split at colons.
fn colon_file(path: &str, sink: &mut Sink) -> Vec<Vec<String>> {
    match read_text(path, sink.cap as u64) {
        Ok(text) => text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| line.split(':').map(String::from).collect())
            .collect(),
        Err(e) => {
            sink.missing.push(format!("{path}: {e}"));
            vec![]
        }
    }
}

fn processes_csv(sink: &mut Sink) -> io::Result<()> {
    let users: HashMap<String, String> = colon_file("/etc/passwd", sink)
        .into_iter()
        .filter(|f| f.len() > 2)
        .map(|f| (f[2].clone(), f[0].clone()))
        .collect();
    let boot: u64 = read_text("/proc/stat", 1 << 20)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap_or(0);
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let small = 64 << 10;
    csv(
        sink,
        &[
            "pid",
            "ppid",
            "user",
            "state",
            "start_time",
            "executable",
            "command_line",
        ],
    )?;
    for pid in pids() {
        // A process may end while it is read: it is then left out.
        let Ok(stat) = read_text(&format!("/proc/{pid}/stat"), small) else {
            continue;
        };
        // The name (in parentheses) may hold spaces and parentheses itself.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(state), Some(ppid), Some(start)) =
            (fields.first(), fields.get(1), fields.get(19))
        else {
            continue;
        };
        let start = start.parse::<u64>().map_or(String::new(), |t| {
            rfc3339(i64::try_from(boot + t / ticks).unwrap_or(0))
        });
        let uid = read_text(&format!("/proc/{pid}/status"), small)
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                Some(
                    line.strip_prefix("Uid:")?
                        .split_whitespace()
                        .next()?
                        .to_string(),
                )
            })
            .unwrap_or_default();
        let user = users.get(&uid).unwrap_or(&uid);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let cmdline = read_text(&format!("/proc/{pid}/cmdline"), sink.left()).unwrap_or_default();
        let cmdline = cmdline.trim_end_matches('\0').replace('\0', " ");
        // Kernel threads have no command line: named as ps names them.
        let cmdline = if cmdline.is_empty() {
            format!("[{comm}]")
        } else {
            cmdline
        };
        csv(
            sink,
            &[&pid.to_string(), ppid, user, state, &start, &exe, &cmdline],
        )?;
        if sink.full() {
            break;
        }
    }
    Ok(())
}

/// The processes holding each socket (by inode), from their fd links.
fn socket_owners() -> HashMap<u64, Vec<(u32, String)>> {
    let mut owners: HashMap<u64, Vec<(u32, String)>> = HashMap::new();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let comm = read_text(&format!("/proc/{pid}/comm"), 256).unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
            if let Some(inode) = inode {
                let holders = owners.entry(inode).or_default();
                if !holders.iter().any(|(p, _)| *p == pid) {
                    holders.push((pid, comm.trim().to_string()));
                }
            }
        }
    }
    owners
}

const TCP_STATES: [&str; 12] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

/// An address of /proc/net/{tcp,udp}[6]: hex words, each printed by the
/// kernel as a number in host byte order, then `:` and the port in hex.
fn endpoint(hex: &str) -> Option<SocketAddr> {
    let (address, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in 0..address.len() / 8 {
        let word = u32::from_str_radix(address.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend(word.to_ne_bytes());
    }
    let ip: IpAddr = match bytes.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn sockets_csv(sink: &mut Sink, tables: &[&str]) -> io::Result<()> {
    let owners = socket_owners();
    csv(
        sink,
        &[
            "protocol",
            "local_address",
            "remote_address",
            "state",
            "uid",
            "inode",
            "pid",
            "process",
        ],
    )?;
    for table in tables {
        let path = format!("/proc/net/{table}");
        let text = match read_text(&path, sink.cap as u64) {
            Ok(text) => text,
            Err(e) => {
                sink.missing.push(format!("{path}: {e}"));
                continue;
            }
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote)) = (
                f.get(1).and_then(|a| endpoint(a)),
                f.get(2).and_then(|a| endpoint(a)),
            ) else {
                continue;
            };
            let (Some(state), Some(uid), Some(inode)) = (f.get(3), f.get(7), f.get(9)) else {
                continue;
            };
            let state = u8::from_str_radix(state, 16)
                .ok()
                .and_then(|s| TCP_STATES.get(usize::from(s).checked_sub(1)?))
                .map_or(state.to_string(), |s| s.to_string());
            let holders = inode.parse().ok().and_then(|i: u64| owners.get(&i));
            let join = |part: fn(&(u32, String)) -> String| {
                holders
                    .map(|h| h.iter().map(part).collect::<Vec<_>>().join(";"))
                    .unwrap_or_default()
            };
            csv(
                sink,
                &[
                    table,
                    &local.to_string(),
                    &remote.to_string(),
                    &state,
                    uid,
                    inode,
                    &join(|(pid, _)| pid.to_string()),
                    &join(|(_, name)| name.clone()),
                ],
            )?;
        }
    }
    Ok(())
}

/// Name, uid, gid, home, shell: no password field, no GECOS.
fn passwd_csv(sink: &mut Sink) -> io::Result<()> {
    csv(sink, &["name", "uid", "gid", "home", "shell"])?;
    for f in colon_file("/etc/passwd", sink)
        .iter()
        .filter(|f| f.len() >= 7)
    {
        csv(sink, &[&f[0], &f[2], &f[3], &f[5], &f[6]])?;
    }
    Ok(())
}

/// Name, gid, members: no password field.
fn group_csv(sink: &mut Sink) -> io::Result<()> {
    csv(sink, &["name", "gid", "members"])?;
    for f in colon_file("/etc/group", sink)
        .iter()
        .filter(|f| f.len() >= 4)
    {
        csv(sink, &[&f[0], &f[2], &f[3]])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;

    const FOLDERS: [&str; 8] = [
        "Processes",
        "Network connections",
        "Installed programs",
        "Autoruns",
        "Scheduled tasks",
        "Users and groups",
        "System information",
        "Security logs",
    ];

    fn package(limits: &Limits) -> (tempfile::TempDir, Collected, zip::ZipArchive<std::fs::File>) {
        let dir = tempfile::tempdir().unwrap();
        let collected = collect(&dir.path().join("package.zip"), limits).unwrap();
        let archive = zip::ZipArchive::new(std::fs::File::open(&collected.path).unwrap()).unwrap();
        (dir, collected, archive)
    }

    fn text(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> String {
        let mut text = String::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn package_has_every_folder_this_process_and_its_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_dir, collected, mut archive) = package(&Limits::default());

        let meta = std::fs::metadata(&collected.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), collected.bytes);
        let digest = Sha256::digest(std::fs::read(&collected.path).unwrap());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(collected.sha256, hex);
        let names: Vec<String> = archive.file_names().map(String::from).collect();
        let mut listed = collected.entries.clone();
        listed.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(listed, sorted);
        for folder in FOLDERS {
            assert!(
                names.iter().any(|n| n.starts_with(&format!("{folder}/"))),
                "no entry in {folder}: {names:?}"
            );
        }

        let own = std::process::id().to_string();
        let processes = text(&mut archive, "Processes/processes.csv");
        assert!(processes.starts_with("pid,ppid,user,state,start_time,executable,command_line\n"));
        assert!(
            processes
                .lines()
                .any(|l| l.split(',').next() == Some(own.as_str())),
            "{processes}"
        );

        let tcp = text(&mut archive, "Network connections/tcp.csv");
        let local = format!("127.0.0.1:{port}");
        assert!(
            tcp.lines().any(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[1] == local && f[3] == "LISTEN" && f[6].split(';').any(|p| p == own)
            }),
            "no {local} LISTEN of {own} in\n{tcp}"
        );

        let summary = text(&mut archive, SUMMARY);
        assert!(
            summary.contains(&format!("Host: {}\n", crate::host::hostname())),
            "{summary}"
        );
        assert!(summary.contains("Processes/processes.csv"), "{summary}");
        drop(listener);
    }

    #[test]
    fn package_commands_are_stopped_at_their_limits() {
        // Its child holds the pipe too: killed with its group, not waited for.
        let mut sink = Sink::new(1 << 10);
        let started = Instant::now();
        let until = started + Duration::from_secs(1);
        run_bounded(
            &["sh", "-c", "echo early; sleep 30 & sleep 30"],
            &mut sink,
            until,
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(sink.buf, b"early\n");
        assert_eq!(sink.cut.as_deref(), Some("sh stopped after 1 s"));

        let until = Instant::now() + COMMAND_WITHIN;
        let mut sink = Sink::new(1 << 10);
        run_bounded(&["yes"], &mut sink, until).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(sink.buf.len(), 1 << 10);
        assert_eq!(sink.cut.as_deref(), Some("kept the first 1024 bytes"));

        let mut sink = Sink::new(1 << 10);
        run_bounded(
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            &mut sink,
            until,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&sink.buf),
            "out\nerr\n[sh exited with exit status: 3]\n"
        );
        let missing = run_bounded(&["/nonexistent/tool"], &mut sink, until).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn package_files_follow_no_link_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job"), "* * * * * root true\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let mut sink = Sink::new(1 << 20);
        files(dir.path(), &mut sink);
        let text = String::from_utf8(sink.buf).unwrap();
        let shown = dir.path().display();
        assert_eq!(
            text,
            format!(
                "==> {shown}/job <==\n* * * * * root true\n\n\
                 ==> {shown}/link (not a regular file, not read) <==\n\n"
            )
        );
    }

    #[test]
    fn package_stops_before_max_bytes() {
        // 64 KiB, or less where a whole package is smaller (so that it stops).
        let whole = package(&Limits::default()).1.bytes;
        let max_bytes = (64 << 10).min(whole / 2);
        let limits = Limits {
            max_bytes,
            ..Limits::default()
        };
        let (_dir, collected, mut archive) = package(&limits);
        assert!(!collected.truncated.is_empty());
        assert!(collected.entries.len() < ENTRIES.len() + 1);
        // Every entry but the summary ends before max_bytes.
        assert!(archive.by_name(SUMMARY).unwrap().header_start() <= max_bytes);
        assert!(
            collected.bytes < max_bytes + (16 << 10),
            "{}",
            collected.bytes
        );
        let summary = text(&mut archive, SUMMARY);
        assert!(
            summary.contains(&format!("over {max_bytes} bytes, not collected")),
            "{summary}"
        );
    }

    #[test]
    fn package_entries_are_capped_at_max_file_bytes() {
        let limits = Limits {
            max_file_bytes: 1 << 10,
            ..Limits::default()
        };
        let (_dir, collected, mut archive) = package(&limits);
        let mut cut = 0;
        for name in collected.entries.iter().filter(|n| *n != SUMMARY) {
            let size = archive.by_name(name).unwrap().size();
            assert!(size <= 1 << 10, "{name}: {size}");
            if collected
                .truncated
                .iter()
                .any(|t| t.starts_with(&format!("{name}: kept the first")))
            {
                assert_eq!(size, 1 << 10, "{name}");
                cut += 1;
            }
        }
        assert!(cut > 0, "{:?}", collected.truncated);
        let summary = text(&mut archive, SUMMARY);
        assert!(summary.contains("kept the first 1024 bytes"), "{summary}");
    }
}
