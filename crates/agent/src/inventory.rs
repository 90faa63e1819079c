//! What is installed on this host (the dpkg or rpm database) and who logged
//! on to it (the login records, wtmp and utmp), reported to the server
//! whenever it changes.

use palisade_contract::Timestamp;
use palisade_device::{
    InstalledSoftware, Inventory, Logon, MAX_INVENTORY_SOFTWARE, MAX_INVENTORY_USERS,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Login records, oldest history first, then the sessions open now.
const LOGIN_RECORDS: &[&str] = &["/var/log/wtmp", "/run/utmp"];

/// The host's inventory now.
pub fn collect() -> Inventory {
    let mut software = packages();
    software.truncate(MAX_INVENTORY_SOFTWARE);
    let hostname = crate::host::hostname();
    let mut logon_users = logons(LOGIN_RECORDS.iter().map(Path::new), &hostname);
    logon_users.truncate(MAX_INVENTORY_USERS);
    Inventory {
        software,
        logon_users,
    }
}

/// Installed packages, from dpkg, else rpm; none if neither is here.
fn packages() -> Vec<InstalledSoftware> {
    let distribution = crate::host::os_release_field("ID").unwrap_or_else(|| "linux".into());
    let dpkg = run(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${Package}\\t${Version}\\t${db:Status-Status}\\n",
        ],
    );
    if let Some(listing) = dpkg {
        return listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let (name, version, status) = (fields.next()?, fields.next()?, fields.next()?);
                (status == "installed").then(|| InstalledSoftware {
                    name: name.to_string(),
                    vendor: distribution.clone(),
                    version: version.to_string(),
                })
            })
            .collect();
    }
    let rpm = run(
        "rpm",
        &[
            "-qa",
            "--qf",
            "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{VENDOR}\\n",
        ],
    );
    rpm.map(|listing| {
        listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let (name, version, vendor) = (fields.next()?, fields.next()?, fields.next()?);
                let vendor = match vendor {
                    "" | "(none)" => distribution.clone(),
                    named => named.to_lowercase(),
                };
                Some(InstalledSoftware {
                    name: name.to_string(),
                    vendor,
                    version: version.to_string(),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The program's standard output, if it ran and succeeded.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Each user of the login records once, from first to last seen; a login
/// from another host makes the user's logons `RemoteInteractive`.
fn logons<'a>(records: impl Iterator<Item = &'a Path>, hostname: &str) -> Vec<Logon> {
    let mut users: BTreeMap<String, Logon> = BTreeMap::new();
    for path in records {
        let Ok(entries) = utmp_rs::parse_from_path(path) else {
            continue;
        };
        for entry in entries {
            let utmp_rs::UtmpEntry::UserProcess {
                user, host, time, ..
            } = entry
            else {
                continue;
            };
            let Some(at) = chrono::DateTime::from_timestamp(time.unix_timestamp(), 0) else {
                continue;
            };
            let at = Timestamp::from_datetime(at);
            let kind = if host.is_empty() {
                "Interactive"
            } else {
                "RemoteInteractive"
            };
            let logon = users.entry(user.clone()).or_insert_with(|| Logon {
                account_name: user,
                account_domain: hostname.to_string(),
                first_seen: at,
                last_seen: at,
                logon_types: kind.to_string(),
            });
            logon.first_seen = logon.first_seen.min(at);
            logon.last_seen = logon.last_seen.max(at);
            if kind == "RemoteInteractive" {
                logon.logon_types = kind.to_string();
            }
        }
    }
    users.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_packages_are_listed() {
        // The test host is Debian: dpkg knows its own package.
        if run("dpkg-query", &["--version"]).is_none() {
            eprintln!("SKIPPED: no dpkg here");
            return;
        }
        let software = packages();
        let dpkg = software
            .iter()
            .find(|s| s.name == "dpkg")
            .expect("dpkg listed");
        assert!(!dpkg.version.is_empty());
        assert_eq!(
            Some(dpkg.vendor.clone()),
            crate::host::os_release_field("ID")
        );
    }

    #[test]
    fn missing_login_records_are_no_users() {
        assert!(logons([Path::new("/no/such/wtmp")].into_iter(), "h").is_empty());
    }
}
