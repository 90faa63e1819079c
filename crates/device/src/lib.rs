//! The device plane's own protocol: how a device enrolls with an onboarding
//! token, checks in, receives machine actions and reports their outcome.
//!
//! It is Palisade's, not MDE's (MDE's sensor protocol is not public), so it is
//! kept apart from `palisade-contract`. Actions travel in their MDE shape
//! (`MachineAction`), so that a device sees exactly what the API shows.
//!
//! Delivery is a long poll on the check-in (`POST /device/v1/checkin?wait=N`):
//! it is plain HTTPS through any proxy, needs no second protocol on the server
//! or the agent, resumes by simply polling again, and an idle waiting device
//! costs one parked connection. SSE or WebSocket would add a stream to keep
//! alive and reconnect logic without delivering faster.

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod detections;
#[cfg(feature = "client")]
pub mod fleet;

pub use protocol::*;

use palisade_contract::live_response::{Command, CommandType, ScriptTranscript};

/// What a simulated device's live-response command leaves (the fleet's,
/// and the emulator's for machines without one): a transcript saying so,
/// or a small text file in place of the one asked for.
pub fn simulated_command_result(command: &Command, machine_id: &str) -> Vec<u8> {
    match command.command_type {
        CommandType::RunScript => {
            let transcript = ScriptTranscript {
                script_name: command.param("ScriptName").unwrap_or_default().into(),
                exit_code: 0,
                script_output: format!("simulated run on machine {machine_id}\n"),
                script_errors: String::new(),
            };
            serde_json::to_vec(&transcript).expect("a transcript serialises")
        }
        _ => format!(
            "simulated content of {} on machine {machine_id}\n",
            command.param("Path").unwrap_or_default()
        )
        .into_bytes(),
    }
}

/// A simulated device's inventory: a Linux server's usual packages, and
/// its administrator's logon.
pub fn simulated_inventory(hostname: &str, at: palisade_contract::Timestamp) -> Inventory {
    let packages = [
        ("openssh-server", "1:9.2p1-2+deb12u3"),
        ("openssl", "3.0.15-1~deb12u1"),
        ("bash", "5.2.15-2+b7"),
        ("curl", "7.88.1-10+deb12u8"),
        ("sudo", "1.9.13p3-1+deb12u1"),
    ];
    Inventory {
        software: packages
            .iter()
            .map(|(name, version)| InstalledSoftware {
                name: name.to_string(),
                vendor: "debian".into(),
                version: version.to_string(),
            })
            .collect(),
        logon_users: vec![Logon {
            account_name: "admin".into(),
            account_domain: hostname.to_string(),
            first_seen: at,
            last_seen: at,
            logon_types: "RemoteInteractive".into(),
        }],
    }
}

/// A small investigation package of a simulated device (the fleet's, and
/// the emulator's for machines without one): MDE's folders, with plausible
/// contents.
pub fn simulated_package(machine_id: &str) -> Vec<u8> {
    use std::io::Write;
    let entries = [
        ("Summary.txt", format!("Simulated investigation package of machine {machine_id}\n")),
        ("Processes/processes.csv", "pid,ppid,user,state,start,executable,command line\n1,0,root,S,,/sbin/init,/sbin/init\n412,1,root,S,,/usr/sbin/sshd,sshd: /usr/sbin/sshd -D\n".into()),
        ("Network connections/tcp.csv", "local,remote,state,uid,inode,pid,process\n0.0.0.0:22,0.0.0.0:0,LISTEN,0,1001,412,sshd\n".into()),
        ("Installed programs/packages.csv", "openssh-server,1:9.2p1-2,amd64\n".into()),
        ("Autoruns/systemd-units.txt", "ssh.service enabled\n".into()),
        ("Scheduled tasks/timers.txt", "logrotate.timer\n".into()),
        ("Users and groups/passwd.csv", "name,uid,gid,home,shell\nroot,0,0,/root,/bin/bash\n".into()),
        ("System information/uname.txt", "Linux simulated 6.1.0 x86_64 GNU/Linux\n".into()),
        ("Security logs/auth.log", "sshd[412]: Server listening on 0.0.0.0 port 22.\n".into()),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, text) in entries {
        // Writing to memory does not fail.
        let _ = zip.start_file(name, options);
        let _ = zip.write_all(text.as_bytes());
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}
