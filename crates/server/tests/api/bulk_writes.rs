//! A fleet stored in bulk (`Store::put_machines` with thousands of machines
//! at once, as seeding and the benchmark do) reads back as stored, one
//! machine at a time would: its machines, their tags in order, and the
//! addresses findbyip answers from, also when a second bulk write changes
//! some of them.

use crate::harness::*;
use palisade_contract::machine::IpAddress;
use palisade_contract::{Machine, OsPlatform, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const FLEET: usize = 3_000;

fn adapter(ip: String, status: &str) -> IpAddress {
    IpAddress {
        ip_address: ip,
        mac_address: None,
        kind: "Ethernet".into(),
        operational_status: status.into(),
    }
}

/// The `i`th machine of the fleet, last seen at `seen`: its own address, one
/// it shares with two others (`172.16.0.{i % 1000}`), one on an adapter that
/// is down, and three tags in an order that is not alphabetical.
fn fleet_machine(i: usize, seen: Timestamp) -> Machine {
    let mut m = machine(OsPlatform::Windows11);
    let own = format!("10.{}.{}.1", i / 250, i % 250);
    m.last_ip_address = Some(own.clone());
    m.ip_addresses = vec![
        adapter(own, "Up"),
        adapter(format!("172.16.0.{}", i % 1_000), "Up"),
        adapter(format!("172.31.0.{}", i % 250), "Down"),
    ];
    m.machine_tags = vec![
        format!("zone-{}", i % 7),
        "fleet".into(),
        format!("rack-{}", i % 50),
    ];
    m.first_seen = seen.minus_days(10);
    m.last_seen = seen;
    m
}

async fn find_by_ip(server: &TestServer, ip: &str, at: Timestamp) -> Vec<String> {
    let reply = server
        .get(&format!("/api/machines/findbyip(ip='{ip}',timestamp={at})"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut ids = reply.value_ids();
    ids.sort();
    ids
}

/// Every machine the API lists, by id: its tags and last address.
async fn listed(server: &TestServer) -> BTreeMap<String, (Value, Value)> {
    let reply = server
        .get("/api/machines?$top=10000&$count=true&$select=id,machineTags,lastIpAddress")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["@odata.count"], FLEET, "{}", &reply.text[..200]);
    reply.json["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|m| {
            let id = m["id"].as_str().expect("id").to_string();
            (id, (m["machineTags"].clone(), m["lastIpAddress"].clone()))
        })
        .collect()
}

fn expected(fleet: &[Machine]) -> BTreeMap<String, (Value, Value)> {
    fleet
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                (json!(m.machine_tags), json!(m.last_ip_address)),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_fleet_stored_in_bulk_reads_back_as_stored() {
    let server = TestServer::start().await;
    let seen = server.palisade.now().plus_seconds(-3 * 3_600);
    let mut fleet: Vec<Machine> = (0..FLEET).map(|i| fleet_machine(i, seen)).collect();
    for chunk in fleet.chunks(1_000) {
        server.put_machines(chunk).await;
    }
    assert_eq!(listed(&server).await, expected(&fleet));

    let one = &fleet[1_234];
    let reply = server.get(&format!("/api/machines/{}", one.id)).await;
    assert_eq!(
        reply.json["machineTags"],
        json!(["zone-2", "fleet", "rack-34"])
    );
    let rack = server
        .get("/api/machines?$filter=machineTags/any(t:t%20eq%20'rack-34')&$count=true&$select=id")
        .await;
    assert_eq!(rack.json["@odata.count"], FLEET / 50, "{}", rack.text);

    assert_eq!(
        find_by_ip(&server, "10.4.234.1", seen).await,
        vec![one.id.clone()]
    );
    let mut sharing = vec![
        fleet[234].id.clone(),
        fleet[1_234].id.clone(),
        fleet[2_234].id.clone(),
    ];
    sharing.sort();
    assert_eq!(find_by_ip(&server, "172.16.0.234", seen).await, sharing);
    assert!(find_by_ip(&server, "172.31.0.234", seen).await.is_empty());

    // Two hours later every tenth machine moves to a new address and its
    // tags change: reordered (every twentieth), or one removed and one
    // appended (the others). Machine 1 is given twice: the second wins.
    let moved_at = seen.plus_seconds(2 * 3_600);
    let mut changed = Vec::new();
    for (i, m) in fleet.iter_mut().enumerate().filter(|(i, _)| i % 10 == 0) {
        let new = format!("10.200.{}.{}", i / 2_500, i / 10 % 250);
        m.last_ip_address = Some(new.clone());
        m.ip_addresses[0] = adapter(new, "Up");
        m.last_seen = moved_at;
        m.machine_tags = if i % 20 == 0 {
            vec![
                m.machine_tags[2].clone(),
                m.machine_tags[0].clone(),
                "fleet".into(),
            ]
        } else {
            vec![
                m.machine_tags[0].clone(),
                m.machine_tags[2].clone(),
                "moved".into(),
            ]
        };
        changed.push(m.clone());
    }
    let mut first_pass = fleet[1].clone();
    first_pass.machine_tags.push("first pass".into());
    fleet[1].machine_tags.push("second pass".into());
    changed.insert(5, first_pass);
    changed.push(fleet[1].clone());
    server.put_machines(&changed).await;
    assert_eq!(listed(&server).await, expected(&fleet));

    let reordered = server.get(&format!("/api/machines/{}", fleet[20].id)).await;
    assert_eq!(
        reordered.json["machineTags"],
        json!(["rack-20", "zone-6", "fleet"])
    );
    let appended = server.get(&format!("/api/machines/{}", fleet[30].id)).await;
    assert_eq!(
        appended.json["machineTags"],
        json!(["zone-2", "rack-30", "moved"])
    );
    let twice = server.get(&format!("/api/machines/{}", fleet[1].id)).await;
    assert_eq!(
        twice.json["machineTags"],
        json!(["zone-1", "fleet", "rack-1", "second pass"])
    );

    // Machine 30 left 10.0.30.1 when last seen with it, and took 10.200.0.3
    // when seen with that; it keeps its shared address.
    let mover = vec![fleet[30].id.clone()];
    assert_eq!(find_by_ip(&server, "10.0.30.1", seen).await, mover);
    assert!(find_by_ip(&server, "10.0.30.1", moved_at).await.is_empty());
    assert_eq!(find_by_ip(&server, "10.200.0.3", moved_at).await, mover);
    assert!(find_by_ip(&server, "10.200.0.3", seen).await.is_empty());
    // Addresses shared by machines that all moved, and by machines that
    // were not seen again.
    let mut moved_sharing = vec![
        fleet[30].id.clone(),
        fleet[1_030].id.clone(),
        fleet[2_030].id.clone(),
    ];
    moved_sharing.sort();
    assert_eq!(
        find_by_ip(&server, "172.16.0.30", moved_at).await,
        moved_sharing
    );
    let mut unseen_sharing = vec![
        fleet[31].id.clone(),
        fleet[1_031].id.clone(),
        fleet[2_031].id.clone(),
    ];
    unseen_sharing.sort();
    assert_eq!(
        find_by_ip(&server, "172.16.0.31", seen).await,
        unseen_sharing
    );
    assert!(find_by_ip(&server, "172.16.0.31", moved_at)
        .await
        .is_empty());
}
