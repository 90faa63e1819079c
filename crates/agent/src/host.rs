//! Facts about the host the agent reports: name, OS, addresses, resolvers.

use palisade_contract::IpAddress;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into())
}

/// A stable id of this installation of the OS (a hash of /etc/machine-id,
/// which is private to the host and must not leave it as is).
pub fn hardware_id() -> String {
    let source = read_trimmed("/etc/machine-id")
        .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
        .unwrap_or_else(hostname);
    Sha256::digest(format!("palisade:{source}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `PRETTY_NAME` and `VERSION_ID` of /etc/os-release.
pub fn os_release() -> (Option<String>, Option<String>) {
    (
        os_release_field("PRETTY_NAME"),
        os_release_field("VERSION_ID"),
    )
}

/// A field of /etc/os-release (`ID`: the distribution, e.g. `debian`).
pub fn os_release_field(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('"').to_string())
}

pub fn architecture() -> &'static str {
    if cfg!(target_pointer_width = "64") {
        "64-bit"
    } else {
        "32-bit"
    }
}

/// Every interface address, in MDE's `ipAddresses` shape.
pub fn addresses() -> Vec<IpAddress> {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    interfaces
        .into_iter()
        .map(|interface| {
            let loopback = interface.is_loopback();
            let mac = read_trimmed(&format!("/sys/class/net/{}/address", interface.name))
                .map(|m| m.replace(':', "").to_ascii_uppercase())
                .filter(|m| !loopback && m.chars().any(|c| c != '0'));
            IpAddress {
                ip_address: interface.ip().to_string(),
                mac_address: mac,
                kind: if loopback {
                    "SoftwareLoopback"
                } else {
                    "Ethernet"
                }
                .into(),
                operational_status: "Up".into(),
            }
        })
        .collect()
}

fn nameservers(path: &str) -> Vec<IpAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

/// The DNS servers the host's resolver asks. Under systemd-resolved
/// /etc/resolv.conf names only its local stub (127.0.0.53), which forwards
/// to the upstream servers listed in /run/systemd/resolve/resolv.conf: those
/// must stay reachable for the stub to answer.
pub fn resolvers() -> Vec<IpAddr> {
    let mut servers = nameservers("/etc/resolv.conf");
    if servers.iter().any(IpAddr::is_loopback) {
        servers.extend(nameservers("/run/systemd/resolve/resolv.conf"));
    }
    servers.retain(|s| !s.is_loopback());
    servers.sort();
    servers.dedup();
    servers
}
