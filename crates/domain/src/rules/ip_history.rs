//! Which internal addresses a machine is seen with, and when: what
//! `findbyip` answers from (MDE: the machines seen with an internal IP within
//! 15 minutes of a timestamp of the past 30 days).
//!
//! The history is a list of spans per machine and address. A span is opened
//! when the machine is first stored with the address and closed, at the
//! machine's last sighting with it, when a later write of the machine no
//! longer shows it. An open span lasts until the machine's own `lastSeen`,
//! so a check-in that changes no address writes no history.

use palisade_contract::{Machine, Timestamp};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// How far before and after the asked timestamp a sighting counts.
pub const WINDOW_SECONDS: i64 = 15 * 60;
/// How far back `findbyip` may ask, and how long ended spans are kept.
pub const HISTORY_DAYS: u32 = 30;

/// The internal addresses `machine` shows: its `lastIpAddress` and the
/// addresses of its adapters that are up, loopback excepted. Each is in its
/// canonical form (`fe80::1`, not `FE80:0::1`), as `findbyip` asks for it.
pub fn internal_addresses(machine: &Machine) -> BTreeSet<String> {
    let adapters = machine
        .ip_addresses
        .iter()
        .filter(|a| a.kind != "SoftwareLoopback" && a.operational_status == "Up")
        .map(|a| a.ip_address.as_str());
    machine
        .last_ip_address
        .as_deref()
        .into_iter()
        .chain(adapters)
        .filter_map(|text| match text.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => None,
            Ok(ip) => Some(ip.to_string()),
            // Not an address: kept as reported, though no findbyip can name it.
            Err(_) => Some(text.to_string()),
        })
        .collect()
}

/// What storing a machine does to its address history: the spans of the
/// addresses it no longer shows end at `left_at`; those of the addresses it
/// shows (`addresses`) that have no open span open at `joined_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpHistorySync {
    pub addresses: Vec<String>,
    pub left_at: Timestamp,
    pub joined_at: Timestamp,
}

/// How the history moves when `before` is stored as `after`: `None` when
/// its addresses stay the same. A known machine took a new address when it
/// was last seen with it and left an old one when it was last seen before
/// that. Without `before` (a machine seeded, enrolled or taken over), what
/// is stored decides: an address it newly shows it has held since it was
/// first seen, all that a seed or a report tells.
pub fn sync(before: Option<&Machine>, after: &Machine) -> Option<IpHistorySync> {
    let addresses = internal_addresses(after);
    let (left_at, joined_at) = match before {
        Some(before) if internal_addresses(before) == addresses => return None,
        Some(before) => (before.last_seen, after.last_seen),
        None => (after.last_seen, after.first_seen),
    };
    Some(IpHistorySync {
        addresses: addresses.into_iter().collect(),
        left_at,
        joined_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::machine::IpAddress;

    fn adapter(ip: &str, kind: &str, status: &str) -> IpAddress {
        IpAddress {
            ip_address: ip.into(),
            mac_address: None,
            kind: kind.into(),
            operational_status: status.into(),
        }
    }

    fn seen_with(last_ip: Option<&str>, adapters: Vec<IpAddress>, at: i64) -> Machine {
        let mut machine: Machine = serde_json::from_value(serde_json::json!({
            "id": "a", "mergedIntoMachineId": null, "isPotentialDuplication": false,
            "isExcluded": false, "exclusionReason": null, "computerDnsName": "m",
            "firstSeen": "2026-01-01T00:00:00Z", "lastSeen": "2026-01-01T00:00:00Z",
            "osPlatform": "Linux", "osVersion": null, "osProcessor": null, "version": null,
            "lastIpAddress": null, "lastExternalIpAddress": null, "agentVersion": null,
            "osBuild": null, "healthStatus": "Active", "deviceValue": null, "rbacGroupId": 0,
            "rbacGroupName": null, "riskScore": null, "exposureLevel": null,
            "isAadJoined": false, "aadDeviceId": null, "machineTags": [],
            "defenderAvStatus": null, "onboardingStatus": "Onboarded", "osArchitecture": null,
            "managedBy": null, "managedByStatus": null, "ipAddresses": [], "vmMetadata": null
        }))
        .unwrap();
        machine.last_ip_address = last_ip.map(String::from);
        machine.ip_addresses = adapters;
        machine.last_seen = Timestamp::from_ticks(at);
        machine
    }

    #[test]
    fn internal_addresses_leave_out_loopback_and_adapters_that_are_down() {
        let m = seen_with(
            Some("10.0.0.5"),
            vec![
                adapter("10.0.0.5", "Ethernet", "Up"),
                adapter("192.168.1.9", "Wireless80211", "Up"),
                adapter("172.16.0.1", "Ethernet", "Down"),
                adapter("127.0.0.1", "SoftwareLoopback", "Up"),
                adapter("::1", "Ethernet", "Up"),
                adapter("FE80:0::1", "Ethernet", "Up"),
            ],
            0,
        );
        assert_eq!(
            internal_addresses(&m).into_iter().collect::<Vec<_>>(),
            vec!["10.0.0.5", "192.168.1.9", "fe80::1"]
        );
    }

    #[test]
    fn a_move_ends_the_old_address_when_last_seen_with_it() {
        let before = seen_with(Some("10.0.0.5"), vec![], 100);
        let after = seen_with(Some("10.0.0.9"), vec![], 200);
        assert_eq!(
            sync(Some(&before), &after),
            Some(IpHistorySync {
                addresses: vec!["10.0.0.9".to_string()],
                left_at: Timestamp::from_ticks(100),
                joined_at: Timestamp::from_ticks(200),
            })
        );
        let later = seen_with(Some("10.0.0.9"), vec![], 300);
        assert_eq!(sync(Some(&after), &later), None);
        let new = sync(None, &before).unwrap();
        assert_eq!(new.addresses, vec!["10.0.0.5"]);
        assert_eq!(new.joined_at, before.first_seen);
    }
}
