use crate::harness::*;
use palisade_contract::{DeviceValue, Machine, OsPlatform, Timestamp};
use serde_json::{json, Value};

/// The machine properties in the order real responses carry them (contract §2.2).
const PROPERTIES: [&str; 32] = [
    "id",
    "mergedIntoMachineId",
    "isPotentialDuplication",
    "isExcluded",
    "exclusionReason",
    "computerDnsName",
    "firstSeen",
    "lastSeen",
    "osPlatform",
    "osVersion",
    "osProcessor",
    "version",
    "lastIpAddress",
    "lastExternalIpAddress",
    "agentVersion",
    "osBuild",
    "healthStatus",
    "deviceValue",
    "rbacGroupId",
    "rbacGroupName",
    "riskScore",
    "exposureLevel",
    "isAadJoined",
    "aadDeviceId",
    "machineTags",
    "defenderAvStatus",
    "onboardingStatus",
    "osArchitecture",
    "managedBy",
    "managedByStatus",
    "ipAddresses",
    "vmMetadata",
];

const ODATA_CONTENT_TYPE: &str =
    "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

/// The member names of a JSON object, in the order they were sent.
fn keys(object: &Value) -> Vec<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn tags_of(machine: &Value) -> Vec<String> {
    machine["machineTags"]
        .as_array()
        .unwrap_or_else(|| panic!("machineTags is not an array: {machine}"))
        .iter()
        .map(|t| t.as_str().expect("a tag is a string").to_string())
        .collect()
}

/// The ids of a collection's `value`, sorted.
fn ids_of(reply: &Reply) -> Vec<String> {
    let mut ids = reply.value_ids();
    ids.sort();
    ids
}

fn sorted_tags(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// A timestamp as MDE writes it: UTC, `Z`, at most 7 fractional digits, no trailing zeros.
#[track_caller]
fn assert_mde_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "{text} does not end in Z");
    assert!(text.len() >= 20, "{text} is too short");
    assert_eq!(&text[10..11], "T", "{text}");
    if let Some((_, fraction)) = text.trim_end_matches('Z').split_once('.') {
        assert!(
            (1..=7).contains(&fraction.len()),
            "{text}: {} fractional digits",
            fraction.len()
        );
        assert!(fraction.bytes().all(|b| b.is_ascii_digit()), "{text}");
        assert!(!fraction.ends_with('0'), "{text}: trailing zero kept");
    }
    assert!(Timestamp::parse(text).is_some(), "{text} is not RFC 3339");
}

async fn get_machine(server: &TestServer, id: &str) -> Reply {
    server.get(&format!("/api/machines/{id}")).await
}

async fn tag(server: &TestServer, id: &str, value: &str, action: &str) -> Reply {
    server
        .post(
            &format!("/api/machines/{id}/tags"),
            json!({"Value": value, "Action": action}),
        )
        .await
}

async fn bulk(server: &TestServer, value: &str, action: &str, ids: &[&str]) -> Reply {
    server
        .post(
            "/api/machines/AddOrRemoveTagForMultipleMachines",
            json!({"Value": value, "Action": action, "MachineIds": ids}),
        )
        .await
}

/// The machine's tags as a fresh GET sees them.
async fn stored_tags(server: &TestServer, id: &str) -> Vec<String> {
    let reply = get_machine(server, id).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    tags_of(&reply.json)
}

fn with_tags(platform: OsPlatform, tags: &[&str]) -> Machine {
    let mut m = machine(platform);
    m.machine_tags = tags.iter().map(|t| t.to_string()).collect();
    m
}

#[tokio::test]
async fn get_machine_by_id_and_by_name() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines/$entity", server.origin)
    );
    assert_eq!(reply.headers["odata-version"], "4.0");
    let by_name = server
        .get(&format!(
            "/api/machines/{}",
            m.computer_dns_name.to_uppercase()
        ))
        .await;
    assert_eq!(by_name.json["id"], m.id);
}

// ---------------------------------------------------------------------------
// GET /api/machines and GET /api/machines/{id}: shape
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_machines_is_an_odata_collection_of_full_machines() {
    let server = TestServer::start().await;
    server.put_group(7, "Finance servers").await;
    let ungrouped = machine(OsPlatform::Windows11);
    let mut grouped = machine(OsPlatform::WindowsServer2022);
    grouped.rbac_group_id = 7;
    server
        .put_machines(&[ungrouped.clone(), grouped.clone()])
        .await;

    let reply = server.get("/api/machines").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    assert_eq!(reply.headers["odata-version"], "4.0");
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines", server.origin)
    );
    assert!(reply.json["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("#Machines"));
    assert_eq!(keys(&reply.json)[0], "@odata.context", "{}", reply.text);
    assert!(reply.json["value"].is_array(), "{}", reply.text);
    assert_eq!(
        ids_of(&reply),
        sorted(&[ungrouped.id.as_str(), grouped.id.as_str()])
    );

    for item in reply.json["value"].as_array().unwrap() {
        assert_eq!(keys(item), PROPERTIES, "property set and order: {item}");
        assert_mde_timestamp(&item["firstSeen"]);
        assert_mde_timestamp(&item["lastSeen"]);
        assert!(
            item["rbacGroupId"].is_i64(),
            "rbacGroupId is an integer: {item}"
        );
        assert!(item["machineTags"].is_array());
        assert!(item["ipAddresses"].is_array());
    }
    let find = |id: &str| {
        reply.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    };
    let u = find(&ungrouped.id);
    assert_eq!(u["rbacGroupId"], json!(0));
    assert_eq!(u["rbacGroupName"], Value::Null);
    assert_eq!(u["computerDnsName"], ungrouped.computer_dns_name);
    assert_eq!(u["osPlatform"], "Windows11");
    assert_eq!(u["onboardingStatus"], "Onboarded");
    assert_eq!(u["healthStatus"], "Active");
    assert_eq!(u["lastSeen"], ungrouped.last_seen.to_string());
    assert_eq!(u["machineTags"], json!([]));
    assert_eq!(
        u["ipAddresses"][0],
        json!({"ipAddress": "10.0.0.5", "macAddress": "000C2992A64D", "type": "Ethernet", "operationalStatus": "Up"})
    );
    let g = find(&grouped.id);
    assert_eq!(g["rbacGroupId"], json!(7));
    assert_eq!(g["rbacGroupName"], "Finance servers");
    assert_eq!(g["osPlatform"], "WindowsServer2022");
}

#[tokio::test]
async fn get_machine_carries_the_full_property_set_in_order() {
    let server = TestServer::start().await;
    server.put_group(3, "Laptops").await;
    let mut m = machine(OsPlatform::MacOs);
    m.rbac_group_id = 3;
    m.device_value = Some(DeviceValue::High);
    m.machine_tags = vec!["b".into(), "a".into()];
    server.put_machines(std::slice::from_ref(&m)).await;

    let reply = get_machine(&server, &m.id).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    let mut expected = vec!["@odata.context"];
    expected.extend(PROPERTIES);
    assert_eq!(keys(&reply.json), expected, "{}", reply.text);
    assert_eq!(reply.json["rbacGroupId"], json!(3));
    assert_eq!(reply.json["rbacGroupName"], "Laptops");
    assert_eq!(reply.json["osPlatform"], "macOS");
    assert_eq!(reply.json["deviceValue"], "High");
    assert_eq!(
        reply.json["machineTags"],
        json!(["b", "a"]),
        "tags keep their order"
    );
    assert_mde_timestamp(&reply.json["firstSeen"]);
    assert_mde_timestamp(&reply.json["lastSeen"]);
}

#[tokio::test]
async fn ungrouped_machine_has_group_zero_and_null_name() {
    let (server, m) = server_with(OsPlatform::Linux).await;
    // A group exists, but the machine is not in it.
    server.put_group(9, "Unrelated").await;
    let reply = get_machine(&server, &m.id).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json["rbacGroupId"].is_i64(), "{}", reply.text);
    assert_eq!(reply.json["rbacGroupId"], json!(0));
    assert!(reply.json["rbacGroupName"].is_null(), "{}", reply.text);
}

#[tokio::test]
async fn timestamps_have_at_most_seven_digits_and_no_trailing_zeros() {
    let server = TestServer::start().await;
    let now = Timestamp::now().ticks();
    let whole = now - now.rem_euclid(10_000_000) - 3_600 * 10_000_000;
    let mut a = machine(OsPlatform::Windows10);
    a.last_seen = Timestamp::from_ticks(whole + 3_600_000); // .36
    a.first_seen = Timestamp::from_ticks(whole - 86_400 * 10_000_000); // whole second
    let mut b = machine(OsPlatform::Windows10);
    b.last_seen = Timestamp::from_ticks(whole + 1_234_567); // .1234567
    b.first_seen = Timestamp::from_ticks(whole - 86_400 * 10_000_000 + 10); // .000001
    server.put_machines(&[a.clone(), b.clone()]).await;

    let ra = get_machine(&server, &a.id).await;
    let last = ra.json["lastSeen"].as_str().unwrap().to_string();
    assert!(last.ends_with(".36Z"), "{last}");
    let first = ra.json["firstSeen"].as_str().unwrap().to_string();
    assert!(!first.contains('.') && first.ends_with('Z'), "{first}");
    assert_eq!(Timestamp::parse(&last), Some(a.last_seen));

    let rb = get_machine(&server, &b.id).await;
    let last = rb.json["lastSeen"].as_str().unwrap().to_string();
    assert!(last.ends_with(".1234567Z"), "{last}");
    let first = rb.json["firstSeen"].as_str().unwrap().to_string();
    assert!(first.ends_with(".000001Z"), "{first}");
    for r in [&ra, &rb] {
        assert_mde_timestamp(&r.json["firstSeen"]);
        assert_mde_timestamp(&r.json["lastSeen"]);
    }
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

fn seen_days_ago(days: u32) -> Machine {
    let mut m = machine(OsPlatform::Windows11);
    let now = Timestamp::now();
    m.first_seen = now.minus_days(days + 30);
    m.last_seen = now.minus_days(days);
    m
}

#[tokio::test]
async fn machine_outside_retention_is_absent_from_lists_and_gets() {
    let server = TestServer::start().await;
    let mut old = seen_days_ago(181);
    old.machine_tags = vec!["aged".into()];
    let mut recent = seen_days_ago(179);
    recent.machine_tags = vec!["aged".into()];
    server.put_machines(&[old.clone(), recent.clone()]).await;

    let list = server.get("/api/machines").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(ids_of(&list), vec![recent.id.clone()]);

    let count = server.get("/api/machines?$count=true").await;
    assert_eq!(count.json["@odata.count"], json!(1), "{}", count.text);

    let by_tag = server.get("/api/machines/findbytag?tag=aged").await;
    assert_eq!(by_tag.status, 200, "{}", by_tag.text);
    assert_eq!(ids_of(&by_tag), vec![recent.id.clone()]);

    let reply = get_machine(&server, &old.id).await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {} was not found", old.id));
    let by_name = get_machine(&server, &old.computer_dns_name).await;
    by_name.assert_error(404, "ResourceNotFound");

    let ok = get_machine(&server, &recent.id).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["id"], recent.id);
    let ok = get_machine(&server, &recent.computer_dns_name).await;
    assert_eq!(ok.json["id"], recent.id, "{}", ok.text);
}

#[tokio::test]
async fn machine_outside_retention_refuses_every_post() {
    let server = TestServer::start().await;
    let old = seen_days_ago(181);
    let recent = seen_days_ago(179);
    server.put_machines(&[old.clone(), recent.clone()]).await;

    let reply = tag(&server, &old.id, "x", "Add").await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {} was not found", old.id));

    let reply = server
        .post(
            &format!("/api/machines/{}/isolate", old.id),
            json!({"Comment": "contain", "IsolationType": "Full"}),
        )
        .await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {} was not found", old.id));

    let reply = server
        .post(
            &format!("/api/machines/{}/setDeviceValue", old.id),
            json!({"DeviceValue": "High"}),
        )
        .await;
    reply.assert_error(404, "ResourceNotFound");

    let reply = server
        .patch(
            &format!("/api/machines/{}", old.id),
            json!({"machineTags": ["x"]}),
        )
        .await;
    reply.assert_error(404, "ResourceNotFound");

    let reply = bulk(&server, "x", "Add", &[&old.id]).await;
    reply.assert_error(404, "ResourceNotFound");

    // No action was recorded for the machine that does not exist.
    let actions = server.get("/api/machineactions").await;
    assert_eq!(actions.status, 200, "{}", actions.text);
    assert_eq!(actions.json["value"], json!([]), "{}", actions.text);

    // The machine at 179 days accepts the same requests.
    let reply = tag(&server, &recent.id, "x", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = server
        .post(
            &format!("/api/machines/{}/isolate", recent.id),
            json!({"Comment": "contain", "IsolationType": "Full"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

// ---------------------------------------------------------------------------
// GET by name
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_by_name_is_case_insensitive() {
    let server = TestServer::start().await;
    let mut m = machine(OsPlatform::Windows10);
    m.computer_dns_name = "Desktop-Mixed.Contoso.local".into();
    server.put_machines(std::slice::from_ref(&m)).await;
    for name in [
        "Desktop-Mixed.Contoso.local",
        "desktop-mixed.contoso.local",
        "DESKTOP-MIXED.CONTOSO.LOCAL",
    ] {
        let reply = get_machine(&server, name).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        assert_eq!(reply.json["id"], m.id, "{name}");
        assert_eq!(reply.json["computerDnsName"], "Desktop-Mixed.Contoso.local");
    }
    let reply = get_machine(&server, "desktop-mixed").await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert_eq!(message, "Machine desktop-mixed was not found");
}

#[tokio::test]
async fn get_by_shared_name_answers_the_most_recently_seen() {
    let server = TestServer::start().await;
    let now = Timestamp::now();
    let mut newer = machine(OsPlatform::Windows11);
    newer.computer_dns_name = "reonboarded.contoso.local".into();
    newer.last_seen = now.plus_seconds(-120);
    let mut older = machine(OsPlatform::Windows11);
    older.computer_dns_name = "REONBOARDED.contoso.local".into();
    older.last_seen = now.plus_seconds(-86_400);
    let mut oldest = machine(OsPlatform::Windows11);
    oldest.computer_dns_name = "reonboarded.contoso.local".into();
    oldest.last_seen = now.minus_days(10);
    // Stored newest first, then older ones: insertion order must not decide.
    server.put_machines(std::slice::from_ref(&newer)).await;
    server.put_machines(&[oldest.clone(), older.clone()]).await;

    let reply = get_machine(&server, "Reonboarded.Contoso.Local").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], newer.id, "{}", reply.text);

    // Each one stays reachable by its id.
    for m in [&newer, &older, &oldest] {
        let reply = get_machine(&server, &m.id).await;
        assert_eq!(reply.json["id"], m.id);
    }

    // Another server, the other insertion order.
    let server = TestServer::start().await;
    let mut a = machine(OsPlatform::Linux);
    a.computer_dns_name = "twin".into();
    a.last_seen = now.plus_seconds(-7_200);
    let mut b = machine(OsPlatform::Linux);
    b.computer_dns_name = "TWIN".into();
    b.last_seen = now.plus_seconds(-60);
    server.put_machines(&[a.clone(), b.clone()]).await;
    let reply = get_machine(&server, "twin").await;
    assert_eq!(reply.json["id"], b.id, "{}", reply.text);
}

#[tokio::test]
async fn a_40_hex_key_is_an_id_first_then_a_name() {
    let server = TestServer::start().await;
    let by_id = machine(OsPlatform::Windows11);
    // Its name is the id of the other machine.
    let mut impostor = machine(OsPlatform::Windows11);
    impostor.computer_dns_name = by_id.id.clone();
    impostor.last_seen = Timestamp::now().plus_seconds(-1);
    // Its name looks like an id that no machine has.
    let mut hex_named = machine(OsPlatform::Windows11);
    hex_named.computer_dns_name = "abcdefabcdefabcdefabcdefabcdefabcdefabcd".into();
    server
        .put_machines(&[by_id.clone(), impostor.clone(), hex_named.clone()])
        .await;

    let reply = get_machine(&server, &by_id.id).await;
    assert_eq!(reply.json["id"], by_id.id, "{}", reply.text);
    let reply = get_machine(&server, &hex_named.computer_dns_name).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], hex_named.id);
}

/// A machine's Entra device id (`aadDeviceId`) names it wherever a machine
/// id does (GET, tags, PATCH, setDeviceValue, the actions, bulk tags), in
/// any case and GUID form; several machines with one, the most recently seen.
#[tokio::test]
async fn an_entra_device_id_names_the_machine_everywhere() {
    let server = TestServer::start().await;
    let aad = "0b8e31a2-4d4b-4f1a-9a39-3f7c2e9d1e55";
    let now = Timestamp::now();
    let mut m = machine(OsPlatform::Windows11);
    m.is_aad_joined = true;
    m.aad_device_id = Some(aad.into());
    m.last_seen = now.plus_seconds(-30);
    // The same device onboarded before: seen earlier, reachable by its id only.
    let mut earlier = m.clone();
    earlier.id = format!("{:040x}", u128::MAX);
    earlier.computer_dns_name = "old-record".into();
    earlier.last_seen = now.minus_days(3);
    let other = machine(OsPlatform::Windows11);
    server
        .put_machines(&[earlier.clone(), m.clone(), other.clone()])
        .await;

    for key in [
        aad.to_string(),
        aad.to_ascii_uppercase(),
        aad.replace('-', ""),
        format!("{{{aad}}}"),
    ] {
        let reply = get_machine(&server, &key).await;
        assert_eq!(reply.status, 200, "{key}: {}", reply.text);
        assert_eq!(reply.json["id"], m.id, "{key}");
    }

    let reply = tag(&server, &aad.to_ascii_uppercase(), "by-aad", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(stored_tags(&server, &m.id).await, vec!["by-aad"]);
    let reply = server
        .patch(
            &format!("/api/machines/{aad}"),
            json!({"deviceValue": "High"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
    let reply = server
        .post(
            &format!("/api/machines/{aad}/setDeviceValue"),
            json!({"DeviceValue": "Low"}),
        )
        .await;
    assert_eq!(reply.json["deviceValue"], "Low", "{}", reply.text);
    let reply = server
        .post(
            &format!("/api/machines/{aad}/isolate"),
            json!({"Comment": "contain"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["machineId"], m.id);
    let reply = server
        .post(
            &format!("/api/machines/{aad}/runAntiVirusScan"),
            json!({"Comment": "scan", "ScanType": "Quick"}),
        )
        .await;
    assert_eq!(reply.json["machineId"], m.id, "{}", reply.text);
    let reply = bulk(&server, "bulk", "Add", &[aad, &other.id]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut expected = vec![m.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(ids_of(&reply), expected);
    assert_eq!(
        stored_tags(&server, &earlier.id).await,
        Vec::<String>::new()
    );

    // A GUID no machine has is no machine, named as given.
    let unknown = "5c6d8a1e-0f2b-4c3d-8e9f-a0b1c2d3e4f5";
    let message = get_machine(&server, unknown)
        .await
        .assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {unknown} was not found"));
    tag(&server, unknown, "x", "Add")
        .await
        .assert_error(404, "ResourceNotFound");
}

/// A user limited to one device group cannot reach a machine of another by
/// its Entra device id either.
#[tokio::test]
async fn an_entra_device_id_does_not_reach_an_invisible_machine() {
    let server = TestServer::start().await;
    server.put_group(1, "Workstations").await;
    server.put_group(2, "Servers").await;
    let aad = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let mut m = machine(OsPlatform::WindowsServer2022);
    m.rbac_group_id = 2;
    m.aad_device_id = Some(aad.into());
    server.put_machines(std::slice::from_ref(&m)).await;
    let token = server
        .user_token(
            "ws-only@contoso.example",
            &[
                palisade_domain::Role::ViewData,
                palisade_domain::Role::ManageSecuritySettings,
            ],
            Some(vec![1]),
            &all_permissions(),
        )
        .await;
    let reply = server
        .get_as(Some(&token), &format!("/api/machines/{aad}"))
        .await;
    reply.assert_error(404, "ResourceNotFound");
    let reply = server
        .post_as(
            &token,
            &format!("/api/machines/{aad}/tags"),
            json!({"Value": "x", "Action": "Add"}),
        )
        .await;
    reply.assert_error(404, "ResourceNotFound");
    assert_eq!(stored_tags(&server, &m.id).await, Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// POST /api/machines/{id}/tags
// ---------------------------------------------------------------------------

#[tokio::test]
async fn add_and_remove_a_tag() {
    let (server, m) = server_with(OsPlatform::Windows11).await;

    let reply = tag(&server, &m.id, "test Tag 2", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines/$entity", server.origin)
    );
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(keys(&reply.json)[1..], PROPERTIES, "the whole machine");
    assert_eq!(tags_of(&reply.json), ["test Tag 2"]);
    assert_eq!(stored_tags(&server, &m.id).await, ["test Tag 2"]);

    let reply = tag(&server, &m.id, "second", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(tags_of(&reply.json), ["test Tag 2", "second"]);

    let reply = tag(&server, &m.id, "test Tag 2", "Remove").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(tags_of(&reply.json), ["second"]);
    assert_eq!(stored_tags(&server, &m.id).await, ["second"]);

    // The list sees it too.
    let list = server.get("/api/machines").await;
    assert_eq!(list.json["value"][0]["machineTags"], json!(["second"]));
}

#[tokio::test]
async fn adding_a_present_tag_and_removing_an_absent_one_are_no_ops() {
    let server = TestServer::start().await;
    let m = with_tags(OsPlatform::Windows11, &["kept"]);
    server.put_machines(std::slice::from_ref(&m)).await;

    let reply = tag(&server, &m.id, "kept", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(tags_of(&reply.json), ["kept"], "not added twice");

    let reply = tag(&server, &m.id, "never-there", "Remove").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(tags_of(&reply.json), ["kept"]);

    assert_eq!(stored_tags(&server, &m.id).await, ["kept"]);
}

#[tokio::test]
async fn tags_are_case_sensitive() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    assert_eq!(tag(&server, &m.id, "VIP", "Add").await.status, 200);
    let reply = tag(&server, &m.id, "vip", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(tags_of(&reply.json), ["VIP", "vip"], "two distinct tags");

    let reply = tag(&server, &m.id, "Vip", "Remove").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(tags_of(&reply.json), ["VIP", "vip"], "'Vip' is neither");

    let reply = tag(&server, &m.id, "vip", "Remove").await;
    assert_eq!(tags_of(&reply.json), ["VIP"]);
    assert_eq!(stored_tags(&server, &m.id).await, ["VIP"]);

    let found = server.get("/api/machines/findbytag?tag=vip").await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.json["value"], json!([]));
    let found = server.get("/api/machines/findbytag?tag=VIP").await;
    assert_eq!(ids_of(&found), vec![m.id.clone()]);
}

#[tokio::test]
async fn tags_are_stored_exactly_as_given() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let odd = [
        " padded ",
        "ünïcødé 🚀",
        "a,b(c)",
        "quote\"and\\slash",
        "%_*",
    ];
    for t in odd {
        let reply = tag(&server, &m.id, t, "Add").await;
        assert_eq!(reply.status, 200, "{t:?}: {}", reply.text);
    }
    assert_eq!(stored_tags(&server, &m.id).await, odd);
}

#[tokio::test]
async fn invalid_tags_are_refused() {
    let server = TestServer::start().await;
    let m = with_tags(OsPlatform::Windows11, &["kept"]);
    server.put_machines(std::slice::from_ref(&m)).await;

    let too_long = "x".repeat(201);
    for bad in [
        too_long.as_str(),
        "",
        "bell\u{7}",
        "line\nbreak",
        "tab\there",
        "nul\u{0}byte",
        "del\u{7f}",
        "c1\u{85}control",
    ] {
        for action in ["Add", "Remove"] {
            let reply = tag(&server, &m.id, bad, action).await;
            reply.assert_error(400, "InvalidInput");
        }
    }
    assert_eq!(
        stored_tags(&server, &m.id).await,
        ["kept"],
        "nothing changed"
    );

    // The limits are in characters, not bytes.
    let reply = tag(&server, &m.id, &"x".repeat(200), "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = tag(&server, &m.id, &"é".repeat(200), "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = tag(&server, &m.id, &"é".repeat(201), "Add").await;
    reply.assert_error(400, "InvalidInput");
    let reply = tag(&server, &m.id, "a", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        stored_tags(&server, &m.id).await,
        vec![
            "kept".to_string(),
            "x".repeat(200),
            "é".repeat(200),
            "a".to_string()
        ]
    );
}

#[tokio::test]
async fn tag_body_needs_value_and_action() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let path = format!("/api/machines/{}/tags", m.id);
    let reply = server.post(&path, json!({"Action": "Add"})).await;
    let message = reply.assert_error(400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter Value is missing.");
    let reply = server.post(&path, json!({"Value": "t"})).await;
    let message = reply.assert_error(400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter Action is missing.");
    let reply = server
        .post(&path, json!({"value": "t", "action": "Add"}))
        .await;
    reply.assert_error(400, "MissingRequiredParameter");
    let reply = server
        .post(&path, json!({"Value": "t", "Action": "Toggle"}))
        .await;
    reply.assert_error(400, "InvalidInput");
    assert_eq!(stored_tags(&server, &m.id).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_machine_holds_at_most_1000_tags() {
    let server = TestServer::start().await;
    let mut m = machine(OsPlatform::Windows11);
    m.machine_tags = (0..999).map(|i| format!("t{i}")).collect();
    server.put_machines(std::slice::from_ref(&m)).await;
    let reply = tag(&server, &m.id, "the thousandth", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(tags_of(&reply.json).len(), 1000);
    let reply = tag(&server, &m.id, "one too many", "Add").await;
    reply.assert_error(400, "InvalidInput");
    // Adding one that is present is still a no-op, not an overflow.
    let reply = tag(&server, &m.id, "t0", "Add").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(stored_tags(&server, &m.id).await.len(), 1000);
}

#[tokio::test]
async fn patch_on_tags_works_as_post() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let path = format!("/api/machines/{}/tags", m.id);
    let reply = server
        .patch(&path, json!({"Value": "patched", "Action": "Add"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(tags_of(&reply.json), ["patched"]);
    assert_eq!(stored_tags(&server, &m.id).await, ["patched"]);

    let reply = server
        .patch(&path, json!({"Value": "patched", "Action": "Remove"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(stored_tags(&server, &m.id).await, Vec::<String>::new());
}

#[tokio::test]
async fn tagging_an_unknown_machine_is_not_found() {
    let server = TestServer::start().await;
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let reply = tag(&server, unknown, "x", "Add").await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {unknown} was not found"));
}

// ---------------------------------------------------------------------------
// POST /api/machines/AddOrRemoveTagForMultipleMachines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bulk_tagging_answers_the_updated_machines() {
    let server = TestServer::start().await;
    let a = machine(OsPlatform::Windows11);
    let b = with_tags(OsPlatform::Linux, &["Bulk"]);
    let c = machine(OsPlatform::MacOs);
    server
        .put_machines(&[a.clone(), b.clone(), c.clone()])
        .await;

    let reply = bulk(&server, "Bulk", "Add", &[&a.id, &b.id]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines", server.origin)
    );
    assert_eq!(ids_of(&reply), sorted(&[&a.id, &b.id]));
    for item in reply.json["value"].as_array().unwrap() {
        assert_eq!(keys(item), PROPERTIES);
        assert_eq!(tags_of(item), ["Bulk"], "{item}");
    }
    assert_eq!(stored_tags(&server, &a.id).await, ["Bulk"]);
    assert_eq!(stored_tags(&server, &b.id).await, ["Bulk"]);
    assert_eq!(stored_tags(&server, &c.id).await, Vec::<String>::new());

    let reply = bulk(&server, "Bulk", "Remove", &[&a.id, &b.id, &c.id]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(ids_of(&reply), sorted(&[&a.id, &b.id, &c.id]));
    for item in reply.json["value"].as_array().unwrap() {
        assert_eq!(item["machineTags"], json!([]), "{item}");
    }
    for m in [&a, &b, &c] {
        assert_eq!(stored_tags(&server, &m.id).await, Vec::<String>::new());
    }
}

#[tokio::test]
async fn bulk_tagging_takes_500_ids_and_refuses_501() {
    let server = TestServer::start().await;
    let machines: Vec<Machine> = (0..501).map(|_| machine(OsPlatform::Windows11)).collect();
    server.put_machines(&machines).await;
    let ids: Vec<&str> = machines.iter().map(|m| m.id.as_str()).collect();

    let reply = bulk(&server, "many", "Add", &ids).await;
    let message = reply.assert_error(400, "MaximumBatchSizeExceeded");
    assert_eq!(
        message,
        "Maximum batch size exceeded. Received: 501, allowed: 500."
    );
    assert_eq!(
        stored_tags(&server, ids[0]).await,
        Vec::<String>::new(),
        "nothing changed"
    );

    let reply = bulk(&server, "many", "Add", &ids[..500]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["value"].as_array().unwrap().len(), 500);
    assert_eq!(stored_tags(&server, ids[499]).await, ["many"]);
    assert_eq!(stored_tags(&server, ids[500]).await, Vec::<String>::new());
}

#[tokio::test]
async fn bulk_tagging_with_an_unknown_id_changes_nothing() {
    let server = TestServer::start().await;
    let a = with_tags(OsPlatform::Windows11, &["keep"]);
    let b = with_tags(OsPlatform::Windows10, &["keep"]);
    server.put_machines(&[a.clone(), b.clone()]).await;
    let unknown = "feedfacefeedfacefeedfacefeedfacefeedface";

    let reply = bulk(&server, "new", "Add", &[&a.id, unknown, &b.id]).await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert!(message.contains(unknown), "{message}");
    assert_eq!(message, format!("Machine {unknown} was not found"));
    assert_eq!(stored_tags(&server, &a.id).await, ["keep"]);
    assert_eq!(stored_tags(&server, &b.id).await, ["keep"]);

    let reply = bulk(&server, "keep", "Remove", &[&a.id, &b.id, unknown]).await;
    reply.assert_error(404, "ResourceNotFound");
    assert_eq!(stored_tags(&server, &a.id).await, ["keep"]);
    assert_eq!(stored_tags(&server, &b.id).await, ["keep"]);

    // A machine outside retention counts as unknown.
    let old = seen_days_ago(200);
    server.put_machines(std::slice::from_ref(&old)).await;
    let reply = bulk(&server, "new", "Add", &[&a.id, &old.id]).await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert!(message.contains(&old.id), "{message}");
    assert_eq!(stored_tags(&server, &a.id).await, ["keep"]);
}

#[tokio::test]
async fn bulk_tagging_validates_its_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let path = "/api/machines/AddOrRemoveTagForMultipleMachines";
    let reply = server
        .post(path, json!({"Value": "t", "Action": "Add"}))
        .await;
    let message = reply.assert_error(400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter MachineIds is missing.");
    let reply = server
        .post(path, json!({"Action": "Add", "MachineIds": [m.id]}))
        .await;
    reply.assert_error(400, "MissingRequiredParameter");
    let reply = server
        .post(
            path,
            json!({"Value": "t", "Action": "add", "MachineIds": [m.id]}),
        )
        .await;
    reply.assert_error(400, "InvalidInput");
    let reply = bulk(&server, &"x".repeat(201), "Add", &[&m.id]).await;
    reply.assert_error(400, "InvalidInput");
    let reply = bulk(&server, "", "Add", &[&m.id]).await;
    reply.assert_error(400, "InvalidInput");
    let reply = bulk(&server, "a\u{1}b", "Add", &[&m.id]).await;
    reply.assert_error(400, "InvalidInput");
    assert_eq!(stored_tags(&server, &m.id).await, Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// PATCH /api/machines/{id} and setDeviceValue
// ---------------------------------------------------------------------------

#[tokio::test]
async fn patch_machine_tags_replaces_all_tags() {
    let server = TestServer::start().await;
    let mut m = with_tags(OsPlatform::Windows11, &["a", "b", "c"]);
    m.device_value = Some(DeviceValue::Low);
    server.put_machines(std::slice::from_ref(&m)).await;
    let path = format!("/api/machines/{}", m.id);

    let reply = server
        .patch(&path, json!({"machineTags": ["d", "b"]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines/$entity", server.origin)
    );
    assert_eq!(reply.json["id"], m.id);
    // The order of a replaced set is not specified: compare as sets.
    assert_eq!(sorted_tags(tags_of(&reply.json)), ["b", "d"]);
    assert_eq!(reply.json["deviceValue"], "Low", "device value untouched");
    assert_eq!(sorted_tags(stored_tags(&server, &m.id).await), ["b", "d"]);

    let reply = server.patch(&path, json!({"machineTags": []})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(tags_of(&reply.json), Vec::<String>::new());
    assert_eq!(stored_tags(&server, &m.id).await, Vec::<String>::new());

    let reply = server
        .patch(&path, json!({"machineTags": ["x", "x", "X"]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        sorted_tags(stored_tags(&server, &m.id).await),
        ["X", "x"],
        "duplicates dropped, case kept"
    );

    // An invalid tag refuses the whole replacement.
    let reply = server
        .patch(&path, json!({"machineTags": ["fine", "y".repeat(201)]}))
        .await;
    reply.assert_error(400, "InvalidInput");
    let reply = server
        .patch(&path, json!({"machineTags": ["fine", ""]}))
        .await;
    reply.assert_error(400, "InvalidInput");
    assert_eq!(sorted_tags(stored_tags(&server, &m.id).await), ["X", "x"]);
}

#[tokio::test]
async fn patch_answer_is_the_machine_a_later_get_sees() {
    let server = TestServer::start().await;
    let m = with_tags(OsPlatform::Windows11, &["a", "b", "c"]);
    server.put_machines(std::slice::from_ref(&m)).await;
    let path = format!("/api/machines/{}", m.id);
    let reply = server
        .patch(&path, json!({"machineTags": ["d", "b"]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let later = get_machine(&server, &m.id).await;
    assert_eq!(
        reply.json, later.json,
        "the PATCH answer and a later GET disagree"
    );
}

#[tokio::test]
async fn patch_machine_sets_device_value() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let path = format!("/api/machines/{}", m.id);
    tag(&server, &m.id, "stays", "Add").await;

    let reply = server.patch(&path, json!({"deviceValue": "Low"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["deviceValue"], "Low");
    assert_eq!(tags_of(&reply.json), ["stays"], "tags untouched");
    let stored = get_machine(&server, &m.id).await;
    assert_eq!(stored.json["deviceValue"], "Low");

    let reply = server
        .patch(
            &path,
            json!({"deviceValue": "Normal", "machineTags": ["only"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["deviceValue"], "Normal");
    assert_eq!(tags_of(&reply.json), ["only"]);

    for bad in [json!("Critical"), json!("low"), json!("HIGH"), json!("")] {
        let reply = server.patch(&path, json!({"deviceValue": bad})).await;
        reply.assert_error(400, "InvalidInput");
    }
    let stored = get_machine(&server, &m.id).await;
    assert_eq!(stored.json["deviceValue"], "Normal", "nothing changed");
    assert_eq!(tags_of(&stored.json), ["only"]);

    let unknown = "9999999999999999999999999999999999999999";
    let reply = server
        .patch(
            &format!("/api/machines/{unknown}"),
            json!({"deviceValue": "Low"}),
        )
        .await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {unknown} was not found"));
}

#[tokio::test]
async fn set_device_value() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let path = format!("/api/machines/{}/setDeviceValue", m.id);

    let reply = server.post(&path, json!({"DeviceValue": "High"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines/$entity", server.origin)
    );
    assert_eq!(reply.json["id"], m.id);
    assert_eq!(reply.json["deviceValue"], "High");
    assert_eq!(keys(&reply.json)[1..], PROPERTIES);
    let stored = get_machine(&server, &m.id).await;
    assert_eq!(stored.json["deviceValue"], "High");

    let reply = server.post(&path, json!({"DeviceValue": "Low"})).await;
    assert_eq!(reply.json["deviceValue"], "Low", "{}", reply.text);

    let reply = server.post(&path, json!({"DeviceValue": "high"})).await;
    reply.assert_error(400, "InvalidInput");
    let reply = server.post(&path, json!({"DeviceValue": "Critical"})).await;
    reply.assert_error(400, "InvalidInput");
    let reply = server.post(&path, json!({"deviceValue": "High"})).await;
    let message = reply.assert_error(400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter DeviceValue is missing.");
    let stored = get_machine(&server, &m.id).await;
    assert_eq!(stored.json["deviceValue"], "Low", "nothing changed");
}

// ---------------------------------------------------------------------------
// GET /api/machines/findbytag
// ---------------------------------------------------------------------------

#[tokio::test]
async fn find_by_tag_exact_and_starts_with() {
    let server = TestServer::start().await;
    let prod = with_tags(OsPlatform::Windows11, &["prod"]);
    let prod_web = with_tags(OsPlatform::Linux, &["other", "prod-web"]);
    let upper = with_tags(OsPlatform::Windows10, &["Prod"]);
    let none = machine(OsPlatform::MacOs);
    let wildcard = with_tags(OsPlatform::Windows11, &["a_c"]);
    let letters = with_tags(OsPlatform::Windows11, &["abc"]);
    server
        .put_machines(&[
            prod.clone(),
            prod_web.clone(),
            upper.clone(),
            none.clone(),
            wildcard.clone(),
            letters.clone(),
        ])
        .await;

    let reply = server.get("/api/machines/findbytag?tag=prod").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], ODATA_CONTENT_TYPE);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines", server.origin)
    );
    assert_eq!(ids_of(&reply), vec![prod.id.clone()]);
    assert_eq!(keys(&reply.json["value"][0]), PROPERTIES);

    let reply = server
        .get("/api/machines/findbytag?tag=prod&useStartsWithFilter=false")
        .await;
    assert_eq!(ids_of(&reply), vec![prod.id.clone()]);

    let reply = server
        .get("/api/machines/findbytag?tag=prod&useStartsWithFilter=true")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        ids_of(&reply),
        sorted(&[&prod.id, &prod_web.id]),
        "case-sensitive prefix: 'Prod' does not start with 'prod'"
    );

    let reply = server.get("/api/machines/findbytag?tag=pro").await;
    assert_eq!(reply.json["value"], json!([]), "exact by default");

    let reply = server.get("/api/machines/findbytag?tag=other").await;
    assert_eq!(ids_of(&reply), vec![prod_web.id.clone()]);

    // Wildcard characters are literal.
    let reply = server
        .get("/api/machines/findbytag?tag=a_&useStartsWithFilter=true")
        .await;
    assert_eq!(ids_of(&reply), vec![wildcard.id.clone()]);
    let reply = server
        .get("/api/machines/findbytag?tag=%25&useStartsWithFilter=true")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["value"], json!([]));
}

#[tokio::test]
async fn find_by_tag_decodes_the_query() {
    let server = TestServer::start().await;
    let m = with_tags(OsPlatform::Windows11, &["test Tag 2", "a&b=c"]);
    server.put_machines(std::slice::from_ref(&m)).await;
    for tag in ["test Tag 2", "a&b=c"] {
        let reply = server
            .send(
                server
                    .client
                    .get(server.url("/api/machines/findbytag"))
                    .query(&[("tag", tag)]),
            )
            .await;
        assert_eq!(reply.status, 200, "{tag}: {}", reply.text);
        assert_eq!(ids_of(&reply), vec![m.id.clone()], "{tag}");
    }
}

#[tokio::test]
async fn find_by_tag_without_tag_is_refused() {
    let (server, _) = server_with(OsPlatform::Windows11).await;
    let reply = server.get("/api/machines/findbytag").await;
    let message = reply.assert_error(400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter tag is missing.");
    let reply = server
        .get("/api/machines/findbytag?useStartsWithFilter=true")
        .await;
    reply.assert_error(400, "MissingRequiredParameter");
}

#[tokio::test]
async fn bulk_tagging_refused_by_a_rule_on_one_machine_changes_none() {
    let server = TestServer::start().await;
    let first = machine(OsPlatform::Windows11);
    let mut full = machine(OsPlatform::Windows11);
    full.machine_tags = (0..1000).map(|n| format!("t{n}")).collect();
    server.put_machines(&[first.clone(), full.clone()]).await;
    let reply = server
        .post(
            "/api/machines/AddOrRemoveTagForMultipleMachines",
            json!({"Value": "one more", "Action": "Add", "MachineIds": [first.id, full.id]}),
        )
        .await;
    reply.assert_error(400, "InvalidInput");
    let after = server.get(&format!("/api/machines/{}", first.id)).await;
    assert_eq!(
        after.json["machineTags"],
        json!([]),
        "the first machine was not changed"
    );
}

// ---------------------------------------------------------------------------
// GET /api/machines/findbyip(ip='…',timestamp=…)
// ---------------------------------------------------------------------------

async fn find_by_ip(server: &TestServer, ip: &str, at: Timestamp) -> Reply {
    server
        .get(&format!("/api/machines/findbyip(ip='{ip}',timestamp={at})"))
        .await
}

#[track_caller]
fn found(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    ids_of(reply)
}

fn seen_at(ip: &str, last_seen: Timestamp) -> Machine {
    let mut m = machine(OsPlatform::Windows11);
    m.last_ip_address = Some(ip.into());
    m.ip_addresses[0].ip_address = ip.into();
    m.last_seen = last_seen;
    m
}

/// Seen at an address at T: found from T-15 to T+15 minutes, not at T+20;
/// an OData collection of full machines, as `/api/machines` answers.
#[tokio::test]
async fn find_by_ip_answers_the_machines_seen_within_15_minutes() {
    let server = TestServer::start().await;
    let t = server.palisade.now().plus_seconds(-3_600);
    let m = seen_at("10.20.30.40", t);
    let elsewhere = seen_at("10.20.30.41", t);
    server.put_machines(&[m.clone(), elsewhere]).await;

    for minutes in [-10, 0, 10, 14] {
        let reply = find_by_ip(&server, "10.20.30.40", t.plus_seconds(minutes * 60)).await;
        assert_eq!(found(&reply), vec![m.id.clone()], "T{minutes:+} min");
    }
    let reply = find_by_ip(&server, "10.20.30.40", t).await;
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines", server.origin)
    );
    assert_eq!(reply.json["value"][0]["lastIpAddress"], "10.20.30.40");
    assert_eq!(
        reply.json["value"][0]["computerDnsName"],
        m.computer_dns_name
    );
    let later = find_by_ip(&server, "10.20.30.40", t.plus_seconds(20 * 60)).await;
    assert!(found(&later).is_empty(), "{}", later.text);
    let other = find_by_ip(&server, "10.20.30.42", t).await;
    assert!(found(&other).is_empty());

    // Versioned, any case, the timestamp quoted or with an offset, or left out (now).
    let path = format!(
        "/api/v1.0/Machines/FindByIp(IP='10.20.30.40',Timestamp='{}')",
        t
    );
    assert_eq!(found(&server.get(&path).await), vec![m.id.clone()]);
    // The same instant two hours east of UTC.
    let east = t.plus_seconds(7_200).to_string().replace('Z', "+02:00");
    let path = format!("/api/machines/findbyip(ip='10.20.30.40',timestamp={east})");
    assert_eq!(
        found(&server.get(&path).await),
        vec![m.id.clone()],
        "{path}"
    );
    let now = server.get("/api/machines/findbyip(ip='10.20.30.40')").await;
    assert!(
        found(&now).is_empty(),
        "last seen an hour ago: {}",
        now.text
    );
}

/// Timestamps up to 30 days back; older is a 400.
#[tokio::test]
async fn find_by_ip_looks_back_30_days() {
    let server = TestServer::start().await;
    let now = server.palisade.now();
    let mut m = seen_at("10.9.9.9", now.plus_seconds(-60));
    m.first_seen = now.minus_days(60);
    server.put_machines(std::slice::from_ref(&m)).await;
    let reply = find_by_ip(&server, "10.9.9.9", now.minus_days(29)).await;
    assert_eq!(found(&reply), vec![m.id.clone()]);
    let reply = find_by_ip(&server, "10.9.9.9", now.minus_days(31)).await;
    let message = reply.assert_error(400, "InvalidInput");
    assert!(message.contains("30 days"), "{message}");
}

/// A machine that moved is found by its old address at the old time and by
/// its new one after, whether the move was stored or reported by its device.
#[tokio::test]
async fn a_machine_that_moved_is_found_by_its_old_address_at_the_old_time() {
    let mut server = TestServer::start().await;
    let now = server.palisade.now();
    let (t1, t2) = (now.plus_seconds(-3 * 3_600), now.plus_seconds(-3_600));
    let m = seen_at("10.1.1.1", t1);
    server.put_machines(std::slice::from_ref(&m)).await;
    let moved = seen_at("10.2.2.2", t2);
    let moved = Machine {
        id: m.id.clone(),
        computer_dns_name: m.computer_dns_name.clone(),
        ..moved
    };
    server.put_machines(std::slice::from_ref(&moved)).await;
    assert_eq!(
        found(&find_by_ip(&server, "10.1.1.1", t1).await),
        vec![m.id.clone()]
    );
    assert!(found(&find_by_ip(&server, "10.1.1.1", t2).await).is_empty());
    assert_eq!(
        found(&find_by_ip(&server, "10.2.2.2", t2).await),
        vec![m.id.clone()]
    );
    assert!(found(&find_by_ip(&server, "10.2.2.2", t1).await).is_empty());

    // A device enrolls at 192.0.2.10 and two hours later reports another address.
    let enrolled = server.enroll_windows("pc-moves").await;
    let id = enrolled.enrollment.machine_id.clone();
    let enrolled_at = server.palisade.now();
    server.clock.advance(2 * 3_600);
    let mut report = crate::device_plane::report(palisade_device::Isolation::None);
    report.ip_addresses = vec![palisade_contract::IpAddress {
        ip_address: "198.51.100.7".into(),
        mac_address: Some("0A0000000001".into()),
        kind: "Ethernet".into(),
        operational_status: "Up".into(),
    }];
    enrolled
        .device
        .check_in(&report, std::time::Duration::ZERO)
        .await
        .unwrap();
    server.devices.flush_check_ins().await.unwrap();
    server.renew_token().await;
    let later = server.palisade.now();
    assert_eq!(
        found(&find_by_ip(&server, "192.0.2.10", enrolled_at).await),
        vec![id.clone()]
    );
    assert!(found(&find_by_ip(&server, "192.0.2.10", later).await).is_empty());
    assert_eq!(
        found(&find_by_ip(&server, "198.51.100.7", later).await),
        vec![id.clone()]
    );
    // Check-ins that change no address keep the span open to the last one.
    server.clock.advance(3_600);
    enrolled
        .device
        .check_in(&report, std::time::Duration::ZERO)
        .await
        .unwrap();
    server.devices.flush_check_ins().await.unwrap();
    server.renew_token().await;
    let last = server.palisade.now();
    assert_eq!(
        found(&find_by_ip(&server, "198.51.100.7", last).await),
        vec![id]
    );
}

/// A user limited to one device group finds only that group's machines.
#[tokio::test]
async fn find_by_ip_answers_only_visible_machines() {
    let server = TestServer::start().await;
    server.put_group(1, "Workstations").await;
    server.put_group(2, "Servers").await;
    let t = server.palisade.now().plus_seconds(-60);
    let mut shown = seen_at("10.5.5.5", t);
    shown.rbac_group_id = 1;
    let mut hidden = seen_at("10.5.5.5", t);
    hidden.rbac_group_id = 2;
    server.put_machines(&[shown.clone(), hidden.clone()]).await;
    let mut both = vec![shown.id.clone(), hidden.id.clone()];
    both.sort();
    assert_eq!(found(&find_by_ip(&server, "10.5.5.5", t).await), both);
    let token = server
        .user_token(
            "ws-ip@contoso.example",
            &[palisade_domain::Role::ViewData],
            Some(vec![1]),
            &all_permissions(),
        )
        .await;
    let path = format!("/api/machines/findbyip(ip='10.5.5.5',timestamp={t})");
    let reply = server.get_as(Some(&token), &path).await;
    assert_eq!(found(&reply), vec![shown.id.clone()]);
}

/// A malformed call is a 400 in MDE's shape, never a 500.
#[tokio::test]
async fn find_by_ip_refuses_malformed_calls() {
    let (server, _) = server_with(OsPlatform::Windows11).await;
    let t = "2026-01-01T00:00:00Z";
    for (call, code) in [
        ("findbyip()".to_string(), "MissingRequiredParameter"),
        (
            format!("findbyip(timestamp={t})"),
            "MissingRequiredParameter",
        ),
        (format!("findbyip(ip=10.0.0.5,timestamp={t})"), "ODataError"),
        (
            format!("findbyip(ip='10.0.0.5,timestamp={t})"),
            "ODataError",
        ),
        (
            "findbyip(ip='10.0.0.5',ip='10.0.0.6')".to_string(),
            "ODataError",
        ),
        (
            "findbyip(ip='10.0.0.5',timestamp=yesterday)".to_string(),
            "ODataError",
        ),
        (
            "findbyip(ip='10.0.0.5',timestamp=2026-13-01T00:00:00Z)".to_string(),
            "ODataError",
        ),
        (
            "findbyip(ip='10.0.0.5',timestamp='noon')".to_string(),
            "InvalidInput",
        ),
        (
            "findbyip(ip='10.0.0.5',timestamp=5)".to_string(),
            "InvalidInput",
        ),
        (
            format!("findbyip(ip='300.0.0.1',timestamp={t})"),
            "InvalidIpAddress",
        ),
        (
            format!("findbyip(ip=null,timestamp={t})"),
            "InvalidIpAddress",
        ),
        (
            format!("findbyip(ip='10.0.0.5',machine='x',timestamp={t})"),
            "InvalidInput",
        ),
        (
            format!("findbyip(ip='{}')", "1".repeat(2_000)),
            "ODataError",
        ),
        ("findbyip(ip=%ZZ)".to_string(), "ODataError"),
    ] {
        let reply = server.get(&format!("/api/machines/{call}")).await;
        reply.assert_error(400, code);
    }
}

/// Ended address spans are forgotten once `findbyip` can no longer reach
/// them (30 days and its 15 minutes); a machine's current ones stay.
#[tokio::test]
async fn ended_address_spans_are_forgotten_after_30_days() {
    let server = TestServer::start().await;
    let now = server.palisade.now();
    let m = seen_at("10.7.7.7", now.plus_seconds(-7_200));
    server.put_machines(std::slice::from_ref(&m)).await;
    let moved = Machine {
        id: m.id.clone(),
        ..seen_at("10.8.8.8", now.plus_seconds(-60))
    };
    server.put_machines(std::slice::from_ref(&moved)).await;
    assert_eq!(server.palisade.forget_old_ip_history().await.unwrap(), 0);
    // The span of 10.7.7.7 ended two hours ago: kept 30 days and 15 minutes from then.
    server.clock.advance(30 * 86_400 - 7_200 + 14 * 60);
    assert_eq!(server.palisade.forget_old_ip_history().await.unwrap(), 0);
    server.clock.advance(2 * 60);
    assert_eq!(server.palisade.forget_old_ip_history().await.unwrap(), 1);
    assert_eq!(server.palisade.forget_old_ip_history().await.unwrap(), 0);
}

/// The demo fleet can be tried with findbyip and Entra device ids: its
/// machines' addresses are in the history, its Entra-joined ones have an id.
#[tokio::test]
async fn the_demo_fleet_answers_find_by_ip_and_entra_device_ids() {
    let server = TestServer::start().await;
    let credentials = palisade_server::demo::ensure_demo(
        &server.palisade,
        &server.origin,
        server.operator_token.clone(),
    )
    .await
    .unwrap();
    let token = server
        .send(reqwest::Client::new().post(&credentials.token_url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.as_str()),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ]))
        .await;
    let token = token.json["access_token"].as_str().unwrap().to_string();
    let since = server.palisade.now().minus_days(1);
    let list = server
        .get_as(
            Some(&token),
            &format!("/api/machines?$filter=lastSeen gt {since} and aadDeviceId ne null&$top=5"),
        )
        .await;
    let machines = list.json["value"]
        .as_array()
        .expect("demo machines")
        .clone();
    assert!(!machines.is_empty(), "{}", list.text);
    for m in machines {
        let (ip, seen) = (
            m["lastIpAddress"].as_str().unwrap(),
            m["lastSeen"].as_str().unwrap(),
        );
        let path = format!("/api/machines/findbyip(ip='{ip}',timestamp={seen})");
        let reply = server.get_as(Some(&token), &path).await;
        assert!(
            reply
                .value_ids()
                .contains(&m["id"].as_str().unwrap().to_string()),
            "{}",
            reply.text
        );
        let aad = m["aadDeviceId"].as_str().unwrap();
        let reply = server
            .get_as(Some(&token), &format!("/api/machines/{aad}"))
            .await;
        assert_eq!(reply.json["id"], m["id"], "{}", reply.text);
    }
}
