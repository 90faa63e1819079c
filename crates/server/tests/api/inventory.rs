//! Machine inventories over HTTP: a device reports its installed software
//! and logged-on users (`PUT /device/v1/inventory`, whole, replacing what
//! it reported before); `GET /api/machines/{id}/software` and
//! `/logonusers` answer them in MDE's shape; machines without a device
//! answer what their seed implies.

use crate::harness::*;
use palisade_contract::{OsPlatform, Permission, Timestamp};
use palisade_device::client::DeviceError;
use palisade_device::{InstalledSoftware, Inventory, Logon, MAX_INVENTORY_SOFTWARE};
use serde_json::Value;

fn package(name: &str, version: &str) -> InstalledSoftware {
    InstalledSoftware {
        name: name.into(),
        vendor: "debian".into(),
        version: version.into(),
    }
}

fn logon(name: &str, first: &str, last: &str, kind: &str) -> Logon {
    Logon {
        account_name: name.into(),
        account_domain: "lnx-inventory".into(),
        first_seen: Timestamp::parse(first).unwrap(),
        last_seen: Timestamp::parse(last).unwrap(),
        logon_types: kind.into(),
    }
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.json["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn entry<'a>(reply: &'a Reply, id: &str) -> &'a Value {
    reply.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {}", reply.text))
}

#[tokio::test]
async fn a_devices_inventory_is_answered_as_mde_and_replaced_by_its_next_report() {
    let server = TestServer::start().await;
    let first = server.enroll(&linux_device("lnx-inventory", &[])).await;
    let second = server.enroll(&linux_device("lnx-inventory-2", &[])).await;
    let machine = first.enrollment.machine_id.clone();
    let software_path = format!("/api/machines/{machine}/software");

    // Before its first report, a device's machine has nothing listed.
    let empty = server.get(&software_path).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(ids(&empty), Vec::<String>::new());

    let report = Inventory {
        software: vec![
            package("openssl", "3.0.15-1"),
            package("bash", "5.2.15-2"),
            // Two architectures of one package are one software.
            package("libc6", "2.36-9"),
            package("libc6", "2.36-9"),
        ],
        logon_users: vec![
            logon(
                "alice",
                "2026-11-01T08:00:00Z",
                "2026-11-20T17:00:00Z",
                "Interactive",
            ),
            logon(
                "bob",
                "2026-11-02T08:00:00Z",
                "2026-11-30T09:00:00Z",
                "RemoteInteractive",
            ),
        ],
    };
    first.device.report_inventory(&report).await.unwrap();
    let only_bash = Inventory {
        software: vec![package("bash", "5.2.15-2")],
        logon_users: vec![],
    };
    second.device.report_inventory(&only_bash).await.unwrap();

    let software = server.get(&software_path).await;
    assert_eq!(software.status, 200, "{}", software.text);
    assert_eq!(
        software.json["@odata.context"],
        format!("{}/api/$metadata#Software", server.origin)
    );
    assert_eq!(
        ids(&software),
        ["debian-_-bash", "debian-_-libc6", "debian-_-openssl"]
    );
    let bash = entry(&software, "debian-_-bash");
    assert_eq!(bash["name"], "bash");
    assert_eq!(bash["vendor"], "debian");
    // Both machines have bash; only this one has openssl.
    assert_eq!(bash["exposedMachines"], 2, "{bash}");
    assert_eq!(entry(&software, "debian-_-openssl")["exposedMachines"], 1);
    for key in ["weaknesses", "publicExploit", "activeAlert", "impactScore"] {
        assert!(!bash[key].is_null(), "{key} in {bash}");
    }

    let users = server
        .get(&format!("/api/machines/{machine}/logonusers"))
        .await;
    assert_eq!(users.status, 200, "{}", users.text);
    assert_eq!(
        users.json["@odata.context"],
        format!("{}/api/$metadata#Users", server.origin)
    );
    // Most recently seen first.
    assert_eq!(ids(&users), ["lnx-inventory\\bob", "lnx-inventory\\alice"]);
    let bob = entry(&users, "lnx-inventory\\bob");
    assert_eq!(bob["accountName"], "bob");
    assert_eq!(bob["accountDomain"], "lnx-inventory");
    assert_eq!(bob["firstSeen"], "2026-11-02T08:00:00Z");
    assert_eq!(bob["lastSeen"], "2026-11-30T09:00:00Z");
    assert_eq!(bob["logonTypes"], "RemoteInteractive");
    assert_eq!(bob["isDomainAdmin"], false);

    // The next report replaces the whole inventory.
    first.device.report_inventory(&only_bash).await.unwrap();
    let replaced = server.get(&software_path).await;
    assert_eq!(ids(&replaced), ["debian-_-bash"]);
    let users = server
        .get(&format!("/api/machines/{machine}/logonusers"))
        .await;
    assert_eq!(ids(&users), Vec::<String>::new());
}

#[tokio::test]
async fn a_machine_without_a_device_answers_from_its_seed_and_unknown_ones_404() {
    let server = TestServer::start().await;
    let linux = machine(OsPlatform::Linux);
    let windows = machine(OsPlatform::Windows11);
    server.put_machines(&[linux.clone(), windows.clone()]).await;

    let software = server
        .get(&format!("/api/machines/{}/software", linux.id))
        .await;
    assert_eq!(software.status, 200, "{}", software.text);
    assert!(
        ids(&software).contains(&"openssl-_-openssl".to_string()),
        "{}",
        software.text
    );
    let software = server
        .get(&format!("/api/machines/{}/software", windows.id))
        .await;
    assert!(
        ids(&software).contains(&"microsoft-_-edge".to_string()),
        "{}",
        software.text
    );
    let users = server
        .get(&format!("/api/machines/{}/logonusers", windows.id))
        .await;
    assert_eq!(
        users.json["value"].as_array().unwrap().len(),
        1,
        "{}",
        users.text
    );
    assert_eq!(
        users.json["value"][0]["lastSeen"],
        windows.last_seen.to_string()
    );

    for path in ["software", "logonusers"] {
        let reply = server
            .get(&format!("/api/machines/{}/{path}", "0".repeat(40)))
            .await;
        reply.assert_error(404, "ResourceNotFound");
    }
}

#[tokio::test]
async fn inventories_need_their_own_permissions() {
    let server = TestServer::start().await;
    let m = machine(OsPlatform::Linux);
    server.put_machines(std::slice::from_ref(&m)).await;
    let software = format!("/api/machines/{}/software", m.id);
    let users = format!("/api/machines/{}/logonusers", m.id);
    let reader = server
        .app_token("Machine reader", &[Permission::MachineReadAll])
        .await;
    for path in [&software, &users] {
        server
            .get_as(Some(&reader), path)
            .await
            .assert_error(403, "Forbidden");
    }
    let software_reader = server
        .app_token("Software reader", &[Permission::SoftwareReadAll])
        .await;
    assert_eq!(
        server
            .get_as(Some(&software_reader), &software)
            .await
            .status,
        200
    );
    server
        .get_as(Some(&software_reader), &users)
        .await
        .assert_error(403, "Forbidden");
    let user_reader = server
        .app_token("User reader", &[Permission::UserReadAll])
        .await;
    assert_eq!(server.get_as(Some(&user_reader), &users).await.status, 200);
}

#[tokio::test]
async fn an_inventory_out_of_bounds_is_refused_and_keeps_the_last() {
    let server = TestServer::start().await;
    let device = server.enroll(&linux_device("lnx-bounds", &[])).await;
    let kept = Inventory {
        software: vec![package("bash", "5.2")],
        logon_users: vec![],
    };
    device.device.report_inventory(&kept).await.unwrap();
    let refused = [
        Inventory {
            software: vec![package("", "1")],
            logon_users: vec![],
        },
        Inventory {
            software: vec![package("a\0b", "1")],
            logon_users: vec![],
        },
        Inventory {
            software: vec![package(&"x".repeat(257), "1")],
            logon_users: vec![],
        },
        Inventory {
            software: (0..=MAX_INVENTORY_SOFTWARE)
                .map(|n| package(&format!("p{n}"), "1"))
                .collect(),
            logon_users: vec![],
        },
    ];
    for inventory in refused {
        match device.device.report_inventory(&inventory).await {
            Err(DeviceError::Refused { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (400, "InvalidInput"))
            }
            other => panic!("{other:?}"),
        }
    }
    let path = format!("/api/machines/{}/software", device.enrollment.machine_id);
    assert_eq!(ids(&server.get(&path).await), ["debian-_-bash"]);
}
