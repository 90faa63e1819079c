//! Device groups by rule and by explicit membership: `rbacGroupId` and
//! `rbacGroupName` follow them, and so does what a restricted user sees.

use crate::harness::*;
use palisade_contract::OsPlatform;
use palisade_domain::rules::device_groups::GroupRules;
use palisade_domain::store::DeviceGroup;
use palisade_domain::Role;
use serde_json::{json, Value};

async fn group_of(server: &TestServer, id: &str) -> (Value, Value) {
    let reply = server.get(&format!("/api/machines/{id}")).await;
    (
        reply.json["rbacGroupId"].clone(),
        reply.json["rbacGroupName"].clone(),
    )
}

#[tokio::test]
async fn machines_are_placed_by_rank_rule_and_explicit_membership() {
    let server = TestServer::start().await;
    let server_2022 = machine(OsPlatform::WindowsServer2022);
    let mut laptop = machine(OsPlatform::Windows11);
    laptop.computer_dns_name = "fin-lt-042.contoso.local".into();
    let mac = machine(OsPlatform::MacOs);
    let loner = machine(OsPlatform::Linux);
    server
        .put_machines(&[
            server_2022.clone(),
            laptop.clone(),
            mac.clone(),
            loner.clone(),
        ])
        .await;

    let put = |group: DeviceGroup| {
        let server = &server;
        async move {
            server
                .admin
                .put_device_group(&server.tenant_id, &group)
                .await
                .unwrap()
        }
    };
    put(DeviceGroup {
        id: 3,
        name: "Finance".into(),
        rank: 1,
        rules: GroupRules {
            tags: vec!["Finance".into()],
            ..GroupRules::default()
        },
    })
    .await;
    put(DeviceGroup {
        id: 2,
        name: "Servers".into(),
        rank: 2,
        rules: GroupRules {
            os_platforms: vec![OsPlatform::WindowsServer2019, OsPlatform::WindowsServer2022],
            ..GroupRules::default()
        },
    })
    .await;
    put(DeviceGroup {
        id: 4,
        name: "Finance laptops".into(),
        rank: 3,
        rules: GroupRules {
            name_prefixes: vec!["FIN-".into()],
            os_platforms: vec![OsPlatform::Windows10, OsPlatform::Windows11],
            machine_ids: vec![mac.id.clone()],
            ..GroupRules::default()
        },
    })
    .await;

    assert_eq!(
        group_of(&server, &server_2022.id).await,
        (json!(2), json!("Servers"))
    );
    assert_eq!(
        group_of(&server, &laptop.id).await,
        (json!(4), json!("Finance laptops"))
    );
    assert_eq!(
        group_of(&server, &mac.id).await,
        (json!(4), json!("Finance laptops")),
        "explicit"
    );
    assert_eq!(
        group_of(&server, &loner.id).await,
        (json!(0), Value::Null),
        "ungrouped"
    );

    // A tag moves the server to the higher-ranked Finance group at once...
    let tagged = server
        .post(
            &format!("/api/machines/{}/tags", server_2022.id),
            json!({"Value": "Finance", "Action": "Add"}),
        )
        .await;
    assert_eq!(tagged.json["rbacGroupId"], 3, "{}", tagged.text);
    assert_eq!(tagged.json["rbacGroupName"], "Finance");
    // ...and a user who sees only Finance sees it, and only it.
    let auditor = server
        .user_token(
            "auditor@contoso.example",
            &[Role::ViewData],
            Some(vec![3]),
            &all_permissions(),
        )
        .await;
    let list = server.get_as(Some(&auditor), "/api/machines").await;
    assert_eq!(list.value_ids(), vec![server_2022.id.clone()]);
    let filtered = server.get("/api/machines?$filter=rbacGroupId eq 3").await;
    assert_eq!(filtered.json["value"].as_array().unwrap().len(), 1);

    // Removing the tag puts it back; a device report is placed by the rules too.
    server
        .post(
            &format!("/api/machines/{}/tags", server_2022.id),
            json!({"Value": "Finance", "Action": "Remove"}),
        )
        .await;
    assert_eq!(group_of(&server, &server_2022.id).await.0, json!(2));
    let mut reported = machine(OsPlatform::WindowsServer2019);
    reported.rbac_group_id = 9; // what the report says does not override the rules
    server.put_machines(std::slice::from_ref(&reported)).await;
    assert_eq!(group_of(&server, &reported.id).await.0, json!(2));
}
