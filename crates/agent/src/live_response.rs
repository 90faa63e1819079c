//! Live-response sessions on this host, as MDE runs them: the commands in
//! order (PutFile, RunScript, GetFile), a failed one skipping the rest.
//! Only library files run: PutFile and RunScript fetch theirs from the
//! server for the session; scripts run as the configured user (`nobody`
//! unless the operator chose otherwise), within a time limit, their output
//! bounded; GetFile uploads a regular file up to a size limit.

use palisade_contract::live_response::{
    is_library_file_name, ActionCommand, CommandStatus, CommandType, ScriptTranscript,
};
use palisade_contract::{MachineAction, Timestamp};
use palisade_device::client::DeviceClient;
use palisade_device::hresult::ERROR_TIMEOUT;
use palisade_device::{ActionResult, CommandOutcome};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct LiveResponseConfig {
    /// Where PutFile places files (`files/`, also the scripts' working
    /// folder) and scripts are kept to run (`scripts/`); its parents must
    /// let the script user through.
    pub dir: PathBuf,
    /// Who scripts run as (the agent runs as root): `nobody` unless the
    /// operator names another (`root` included).
    pub script_user: String,
    /// A script still running after this is killed (MDE: 10 minutes).
    pub script_timeout: Duration,
    /// Of each of a script's standard output and error, what is kept.
    pub max_output_bytes: usize,
    /// The largest file GetFile uploads (and PutFile places).
    pub max_file_bytes: u64,
}

impl LiveResponseConfig {
    fn files_dir(&self) -> PathBuf {
        self.dir.join("files")
    }

    fn scripts_dir(&self) -> PathBuf {
        self.dir.join("scripts")
    }
}

/// Why a command failed, as its `errors` show it.
struct Failure {
    message: String,
    timed_out: bool,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            message: error.to_string(),
            timed_out: false,
        }
    }
}

/// Runs the session's commands in order; the first that fails ends it.
pub async fn run_session(
    client: &DeviceClient,
    config: &LiveResponseConfig,
    action: &MachineAction,
) -> ActionResult {
    let mut outcomes = Vec::new();
    let mut failed = None;
    for command in &action.commands {
        let start_time = Timestamp::now();
        let done = run_command(client, config, action, command).await;
        let end_time = Timestamp::now();
        let (command_status, errors) = match &done {
            Ok(()) => (CommandStatus::Completed, vec![]),
            Err(failure) => (CommandStatus::Failed, vec![failure.message.clone()]),
        };
        outcomes.push(CommandOutcome {
            index: command.index,
            command_status,
            errors,
            start_time,
            end_time,
        });
        if let Err(failure) = done {
            failed = Some((command, failure));
            break;
        }
    }
    match failed {
        None => ActionResult {
            commands: outcomes,
            ..ActionResult::succeeded(format!("{} commands completed", action.commands.len()))
        },
        Some((command, failure)) => ActionResult {
            commands: outcomes,
            error_h_result: failure.timed_out.then_some(ERROR_TIMEOUT),
            ..ActionResult::failed(format!(
                "command {} ({}) failed: {}",
                command.index, command.command.command_type, failure.message
            ))
        },
    }
}

async fn run_command(
    client: &DeviceClient,
    config: &LiveResponseConfig,
    action: &MachineAction,
    command: &ActionCommand,
) -> Result<(), Failure> {
    let param = |key: &str| command.command.param(key).unwrap_or_default();
    // The server checks library names; a name that is no plain file name
    // (a server not to be trusted) must not place a file elsewhere.
    if let Some(name) = command.command.library_file() {
        if !is_library_file_name(name) {
            return Err(format!("{name:?} is not the name of a library file").into());
        }
    }
    match command.command.command_type {
        CommandType::PutFile => {
            let name = param("FileName");
            let dir = working_dir(&config.files_dir())?;
            fetch(client, config, &action.id, name, &dir.join(name), 0o644).await
        }
        CommandType::RunScript => {
            let name = param("ScriptName");
            let scripts = working_dir(&config.scripts_dir())?;
            // The scripts' working folder, though no PutFile made it.
            working_dir(&config.files_dir())?;
            let script = scripts.join(format!("{}-{}-{name}", action.id, command.index));
            fetch(client, config, &action.id, name, &script, 0o755).await?;
            let ran = run_script(config, name, &script, param("Args")).await;
            let _ = std::fs::remove_file(&script);
            let transcript = serde_json::to_vec(&ran?)?;
            let size = transcript.len() as u64;
            client
                .upload_command_result(&action.id, command.index, transcript, size)
                .await?;
            Ok(())
        }
        CommandType::GetFile => {
            let path = Path::new(param("Path"));
            let (body, size) = collected(path, config.max_file_bytes).await?;
            client
                .upload_command_result(&action.id, command.index, body, size)
                .await?;
            Ok(())
        }
    }
}

/// The regular file at `path` to upload: opened without blocking (a FIFO
/// or a device is refused, not waited on), as long as it was when opened
/// (a log that grows meanwhile is sent as it was); a file that says it is
/// empty (`/proc`) is read whole, up to `max_bytes`.
async fn collected(path: &Path, max_bytes: u64) -> Result<(reqwest::Body, u64), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()).into());
    }
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(shown)?;
    let metadata = file.metadata().map_err(shown)?;
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", path.display()).into());
    }
    let too_large = |size: u64| {
        format!(
            "{} is {size} bytes, more than the {max_bytes} this agent uploads",
            path.display()
        )
    };
    let file = tokio::fs::File::from_std(file);
    let size = metadata.len();
    if size > max_bytes {
        return Err(too_large(size).into());
    }
    if size == 0 {
        let mut whole = Vec::new();
        file.take(max_bytes + 1)
            .read_to_end(&mut whole)
            .await
            .map_err(shown)?;
        if whole.len() as u64 > max_bytes {
            return Err(too_large(whole.len() as u64).into());
        }
        let size = whole.len() as u64;
        return Ok((whole.into(), size));
    }
    let stream = tokio_util::io::ReaderStream::new(file.take(size));
    Ok((reqwest::Body::wrap_stream(stream), size))
}

/// `dir`, made if need be, that the script user may enter and read.
fn working_dir(dir: &Path) -> Result<PathBuf, Failure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Downloads library file `name` of the session to `to` (through a
/// temporary file, so that a partial one is never in its place).
async fn fetch(
    client: &DeviceClient,
    config: &LiveResponseConfig,
    action_id: &str,
    name: &str,
    to: &Path,
    mode: u32,
) -> Result<(), Failure> {
    let mut response = client.download_session_file(action_id, name).await?;
    // A name of its own, made anew: nothing in the folder is followed or truncated.
    let partial = to.with_file_name(format!(".{}.partial", uuid::Uuid::new_v4()));
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .await?;
    let mut size = 0u64;
    let written: Result<(), Failure> = async {
        while let Some(chunk) = response.chunk().await? {
            size += chunk.len() as u64;
            if size > config.max_file_bytes {
                return Err(
                    format!("{name} is larger than {} bytes", config.max_file_bytes).into(),
                );
            }
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        Ok(())
    }
    .await;
    if written.is_ok() {
        tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode)).await?;
        tokio::fs::rename(&partial, to).await?;
        return Ok(());
    }
    let _ = tokio::fs::remove_file(&partial).await;
    written
}

/// Runs `script` (with its `#!` interpreter, else `/bin/sh`) with `args`
/// split as a shell would, as the script user, in the working folder.
async fn run_script(
    config: &LiveResponseConfig,
    name: &str,
    script: &Path,
    args: &str,
) -> Result<ScriptTranscript, Failure> {
    let args = shlex::split(args).ok_or("Args could not be split into words (an open quote?)")?;
    let head = std::fs::read(script)?;
    let mut command = match head.starts_with(b"#!") {
        true => tokio::process::Command::new(script),
        false => {
            let mut shell = tokio::process::Command::new("/bin/sh");
            shell.arg(script);
            shell
        }
    };
    command
        .args(&args)
        .current_dir(config.files_dir())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if rustix::process::geteuid().is_root() {
        let user = uzers::get_user_by_name(&config.script_user)
            .ok_or_else(|| format!("the script user {} does not exist", config.script_user))?;
        command.uid(user.uid()).gid(user.primary_group_id());
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("{name} could not be started: {e}"))?;
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let max = config.max_output_bytes;
    // The whole group: a script's children end with it (they would hold
    // its output open, or outlive the session).
    let kill_group = || {
        if let Some(group) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    };
    let ran = tokio::time::timeout(config.script_timeout, async {
        let exited = async {
            let status = child.wait().await;
            kill_group();
            status
        };
        let (status, out, err) = tokio::join!(exited, capped(stdout, max), capped(stderr, max));
        Ok::<_, std::io::Error>((status?, out?, err?))
    })
    .await;
    let (status, out, err) = match ran {
        Ok(done) => done?,
        Err(_) => {
            kill_group();
            return Err(Failure {
                message: format!(
                    "{name} was still running after {} seconds and was stopped",
                    config.script_timeout.as_secs()
                ),
                timed_out: true,
            });
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(ScriptTranscript {
        script_name: name.to_string(),
        // Killed by a signal: 128 + its number, as a shell reports it.
        exit_code: status
            .code()
            .or(status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        script_output: out,
        script_errors: err,
    })
}

/// Everything `stream` writes, read to its end; the first `max` bytes kept
/// (as text), and a note if there was more.
async fn capped(stream: Option<impl AsyncRead + Unpin>, max: usize) -> std::io::Result<String> {
    let Some(mut stream) = stream else {
        return Ok(String::new());
    };
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        total += n;
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if total > kept.len() {
        text.push_str(&format!("\n[{} more bytes not kept]", total - kept.len()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> LiveResponseConfig {
        LiveResponseConfig {
            dir: dir.to_path_buf(),
            script_user: "nobody".into(),
            script_timeout: Duration::from_secs(2),
            max_output_bytes: 16,
            max_file_bytes: 1024,
        }
    }

    fn script(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("s.sh");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_script_runs_with_its_arguments_and_its_output_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = config(dir.path());
        working_dir(&config.files_dir()).ok().unwrap();
        let path = script(
            dir.path(),
            "echo \"$1|$2\"; echo oops >&2; head -c 100 /dev/zero | tr '\\0' x; exit 3",
        );
        let transcript = run_script(&config, "s.sh", &path, "'a b' c")
            .await
            .ok()
            .unwrap();
        assert_eq!(transcript.exit_code, 3);
        assert!(transcript.script_output.starts_with("a b|c\nxxxxxxxxxx"));
        assert!(
            transcript
                .script_output
                .ends_with("[90 more bytes not kept]"),
            "{}",
            transcript.script_output
        );
        assert_eq!(transcript.script_errors, "oops\n");
        assert!(run_script(&config, "s.sh", &path, "'open").await.is_err());
    }

    #[tokio::test]
    async fn a_script_past_its_time_is_stopped_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = config(dir.path());
        working_dir(&config.files_dir()).ok().unwrap();
        // Writable by the script user: the child could leave its mark.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let marker = dir.path().join("survived");
        let path = script(
            dir.path(),
            &format!("(sleep 4; touch {}) & sleep 30", marker.display()),
        );
        let Err(failure) = run_script(&config, "s.sh", &path, "").await else {
            panic!("the script was not stopped");
        };
        assert!(failure.timed_out && failure.message.contains("2 seconds"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "a child of the script outlived it");
    }

    #[tokio::test]
    async fn get_file_refuses_what_is_no_regular_file_and_reads_proc_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // Opened without blocking: refused at once, not waited on.
        let Err(refused) = collected(&fifo, 1024).await else {
            panic!("a FIFO was collected");
        };
        assert!(
            refused.message.contains("not a regular file"),
            "{}",
            refused.message
        );
        let Err(relative) = collected(Path::new("etc/hostname"), 1024).await else {
            panic!("a relative path was collected");
        };
        assert!(relative.message.contains("absolute"));
        // /proc files say they are empty: read whole, and bounded.
        let (_, size) = collected(Path::new("/proc/self/status"), 1 << 20)
            .await
            .ok()
            .unwrap();
        assert!(size > 0);
        assert!(collected(Path::new("/proc/self/status"), 8).await.is_err());
        let file = dir.path().join("big");
        std::fs::write(&file, vec![1u8; 2048]).unwrap();
        let Err(large) = collected(&file, 1024).await else {
            panic!("a file past the limit was collected");
        };
        assert!(
            large.message.contains("more than the 1024"),
            "{}",
            large.message
        );
    }
}
