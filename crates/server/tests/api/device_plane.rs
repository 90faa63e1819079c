//! The device plane end to end: enrollment with an onboarding token, check-ins,
//! action delivery by long poll, the action life cycle as devices drive it,
//! and what outcomes do to the machine, all seen through the MDE API.

use crate::harness::TestServer;
use palisade_contract::{ActionStatus, IpAddress, OsPlatform};
use palisade_device::client::{DeviceClient, DeviceError};
use palisade_device::{ActionResult, Capability, CheckIn, EnrollRequest, Enrollment, Isolation};
use palisade_domain::devices::DELIVERY_HOLD_SECONDS;
use serde_json::json;
use std::time::Duration;

/// Generous bound for calls that must answer well before their long poll ends.
const PROMPTLY: Duration = Duration::from_secs(20);

fn enroll_request(name: &str, platform: OsPlatform, capabilities: &[Capability]) -> EnrollRequest {
    EnrollRequest {
        hardware_id: format!("hw-{name}"),
        computer_dns_name: name.to_string(),
        os_platform: platform,
        os_version: Some("Debian GNU/Linux 12".into()),
        version: Some("12".into()),
        os_build: Some(22631),
        os_architecture: Some("64-bit".into()),
        agent_version: "0.1.0".into(),
        ip_addresses: vec![IpAddress {
            ip_address: "192.0.2.10".into(),
            mac_address: Some("0A0000000001".into()),
            kind: "Ethernet".into(),
            operational_status: "Up".into(),
        }],
        last_external_ip_address: None,
        capabilities: capabilities.to_vec(),
        credential: None,
    }
}

pub(crate) struct Enrolled {
    pub device: DeviceClient,
    pub enrollment: Enrollment,
}

impl TestServer {
    pub(crate) async fn onboarding_token(&self) -> String {
        let (_, text) = self
            .admin
            .put_onboarding_token(&self.tenant_id, None, "tests")
            .await
            .unwrap();
        text
    }

    pub(crate) fn device_client(&self) -> DeviceClient {
        DeviceClient::new(reqwest::Client::new(), &self.origin)
    }

    pub(crate) async fn enroll(&self, request: &EnrollRequest) -> Enrolled {
        let token = self.onboarding_token().await;
        let enrollment = self.device_client().enroll(&token, request).await.unwrap();
        Enrolled {
            device: self.device_client().with_credential(&enrollment.credential),
            enrollment,
        }
    }

    /// Enrolls `request` again as the device `enrolled`, presenting its credential.
    pub(crate) async fn re_enroll(&self, enrolled: &Enrolled, request: &EnrollRequest) -> Enrolled {
        let token = self.onboarding_token().await;
        let enrollment = enrolled.device.enroll(&token, request).await.unwrap();
        Enrolled {
            device: self.device_client().with_credential(&enrollment.credential),
            enrollment,
        }
    }

    pub(crate) async fn enroll_windows(&self, name: &str) -> Enrolled {
        self.enroll(&enroll_request(name, OsPlatform::Windows11, &[]))
            .await
    }

    pub(crate) async fn isolate(&self, machine_id: &str, isolation: &str) -> String {
        let reply = self
            .post(
                &format!("/api/machines/{machine_id}/isolate"),
                json!({"Comment": "contain", "IsolationType": isolation}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json["id"].as_str().unwrap().to_string()
    }

    pub(crate) async fn action_status(&self, id: &str) -> serde_json::Value {
        let reply = self.get(&format!("/api/machineactions/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json
    }
}

pub(crate) fn report(isolation: Isolation) -> CheckIn {
    CheckIn {
        isolation,
        ..CheckIn::default()
    }
}

#[tokio::test]
async fn an_enrolled_device_is_a_machine_of_the_tenant() {
    let server = TestServer::start().await;
    let enrolled = server.enroll_windows("ws-042.contoso.test").await;
    let e = &enrolled.enrollment;
    assert_eq!(e.tenant_id, server.tenant_id);
    assert_eq!(e.machine_id.len(), 40);
    assert!(e.credential.starts_with("pdc."), "{}", e.credential);

    let machine = server.get(&format!("/api/machines/{}", e.machine_id)).await;
    assert_eq!(machine.status, 200, "{}", machine.text);
    let m = &machine.json;
    assert_eq!(m["computerDnsName"], "ws-042.contoso.test");
    assert_eq!(m["osPlatform"], "Windows11");
    assert_eq!(m["osBuild"], 22631);
    assert_eq!(m["agentVersion"], "0.1.0");
    assert_eq!(m["onboardingStatus"], "Onboarded");
    assert_eq!(m["healthStatus"], "Active");
    assert_eq!(m["lastIpAddress"], "192.0.2.10");
    assert_eq!(m["ipAddresses"][0]["macAddress"], "0A0000000001");
    assert_eq!(m["firstSeen"], m["lastSeen"]);
}

#[tokio::test]
async fn enrollment_needs_a_current_onboarding_token() {
    let server = TestServer::start().await;
    let request = enroll_request("pc-1", OsPlatform::Windows11, &[]);
    let client = server.device_client();
    for token in ["", "nonsense", "pot.x.y.z"] {
        match client.enroll(token, &request).await {
            Err(DeviceError::Unauthorized(_)) => {}
            other => panic!("{token:?}: {other:?}"),
        }
    }
    let (token, text) = server
        .admin
        .put_onboarding_token(&server.tenant_id, Some("lab"), "lab")
        .await
        .unwrap();
    let forged = format!("{}x", text);
    assert!(matches!(
        client.enroll(&forged, &request).await,
        Err(DeviceError::Unauthorized(_))
    ));
    client
        .enroll(&text, &request)
        .await
        .expect("a current token enrolls");
    server
        .admin
        .revoke_onboarding_token(&server.tenant_id, &token.id)
        .await
        .unwrap();
    match client.enroll(&text, &request).await {
        Err(DeviceError::Unauthorized(message)) => {
            assert!(message.contains("revoked"), "{message}")
        }
        other => panic!("a revoked token enrolled: {other:?}"),
    }

    // The HTTP answer itself is MDE-shaped.
    let reply = server
        .send(
            reqwest::Client::new()
                .post(server.url("/device/v1/enroll"))
                .bearer_auth(&text)
                .json(&request),
        )
        .await;
    reply.assert_error(401, "Unauthorized");
    let bad_body = server
        .send(
            reqwest::Client::new()
                .post(server.url("/device/v1/enroll"))
                .bearer_auth(server.onboarding_token().await)
                .json(&json!({"computerDnsName": "no-hardware-id"})),
        )
        .await;
    bad_body.assert_error(400, "InvalidRequestBody");
    let mut control = enroll_request("bad\u{7}name", OsPlatform::Linux, &[]);
    control.hardware_id = "hw".into();
    let refused = server
        .send(
            reqwest::Client::new()
                .post(server.url("/device/v1/enroll"))
                .bearer_auth(server.onboarding_token().await)
                .json(&control),
        )
        .await;
    refused.assert_error(400, "InvalidInput");
}

#[tokio::test]
async fn check_ins_move_last_seen_and_addresses() {
    let server = TestServer::start().await;
    let enrolled = server.enroll_windows("pc-report").await;
    let id = &enrolled.enrollment.machine_id;
    let before = server.get(&format!("/api/machines/{id}")).await.json;
    server.clock.advance(120);
    let reply = enrolled
        .device
        .check_in(
            &CheckIn {
                ip_addresses: vec![IpAddress {
                    ip_address: "198.51.100.7".into(),
                    mac_address: Some("0A0000000002".into()),
                    kind: "Ethernet".into(),
                    operational_status: "Up".into(),
                }],
                last_ip_address: None,
                last_external_ip_address: Some("203.0.113.9".into()),
                health_status: Some(palisade_contract::HealthStatus::ImpairedCommunication),
                agent_version: Some("0.2.0".into()),
                isolation: Isolation::None,
                indicators_version: None,
            },
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(reply.actions.is_empty());
    assert_eq!(reply.check_in_interval_seconds, 60);
    assert_eq!(server.devices.flush_check_ins().await.unwrap(), 1);
    let after = server.get(&format!("/api/machines/{id}")).await.json;
    assert_ne!(after["lastSeen"], before["lastSeen"], "{after}");
    assert_eq!(after["firstSeen"], before["firstSeen"]);
    assert_eq!(after["lastIpAddress"], "198.51.100.7");
    assert_eq!(after["lastExternalIpAddress"], "203.0.113.9");
    assert_eq!(after["ipAddresses"][0]["ipAddress"], "198.51.100.7");
    assert_eq!(after["healthStatus"], "ImpairedCommunication");
    assert_eq!(after["agentVersion"], "0.2.0");
}

#[tokio::test]
async fn check_in_fields_are_bounded() {
    let server = TestServer::start().await;
    let enrolled = server.enroll_windows("pc-long").await;
    let report = CheckIn {
        agent_version: Some("9".repeat(200_000)),
        ..CheckIn::default()
    };
    match enrolled.device.check_in(&report, Duration::ZERO).await {
        Err(DeviceError::Refused {
            status: 400, code, ..
        }) => assert_eq!(code, "InvalidInput"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.devices.flush_check_ins().await.unwrap(),
        0,
        "nothing kept"
    );
}

#[tokio::test]
async fn a_waiting_device_receives_a_new_action_and_drives_its_life_cycle() {
    let server = TestServer::start().await;
    let enrolled = server.enroll_windows("pc-isolate").await;
    let machine_id = enrolled.enrollment.machine_id.clone();
    let device = enrolled.device.clone();
    // The device waits (up to 55 s) before the action exists.
    let poll = tokio::spawn(async move {
        device
            .check_in(&report(Isolation::None), Duration::from_secs(55))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let action_id = server.isolate(&machine_id, "Full").await;
    let reply = tokio::time::timeout(PROMPTLY, poll)
        .await
        .expect("the long poll answers as soon as the action exists")
        .unwrap()
        .unwrap();
    assert_eq!(reply.actions.len(), 1);
    let action = &reply.actions[0];
    assert_eq!(action.id, action_id);
    assert_eq!(action.scope.as_deref(), Some("Full"));
    assert_eq!(action.status, ActionStatus::Pending);

    let created = server.action_status(&action_id).await;
    server.clock.advance(1);
    let started = enrolled.device.start(&action_id).await.unwrap();
    assert_eq!(started.status, ActionStatus::InProgress);
    let in_progress = server.action_status(&action_id).await;
    assert_eq!(in_progress["status"], "InProgress");
    assert_ne!(
        in_progress["lastUpdateDateTimeUtc"],
        created["lastUpdateDateTimeUtc"]
    );
    // Delivered once: while its delivery holds, another check-in (on any
    // node) does not get it again.
    let meanwhile = enrolled
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert!(meanwhile.actions.is_empty(), "{:?}", meanwhile.actions);
    // Still open: a device that restarted with it gets it again once the hold
    // ends, and may start it again.
    server.clock.advance(DELIVERY_HOLD_SECONDS);
    let again = enrolled
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.actions.len(), 1, "{:?}", again.actions);
    assert_eq!(again.actions[0].status, ActionStatus::InProgress);
    enrolled.device.start(&action_id).await.unwrap();

    server.clock.advance(1);
    let done = enrolled
        .device
        .finish(
            &action_id,
            &ActionResult::succeeded("table inet palisade in force"),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ActionStatus::Succeeded);
    let succeeded = server.action_status(&action_id).await;
    assert_eq!(succeeded["status"], "Succeeded");
    assert_eq!(succeeded["errorHResult"], 0);
    assert_ne!(
        succeeded["lastUpdateDateTimeUtc"],
        in_progress["lastUpdateDateTimeUtc"]
    );
    assert_eq!(
        succeeded["creationDateTimeUtc"],
        created["creationDateTimeUtc"]
    );
    // Final: no longer delivered, and cannot be reported twice.
    let after = enrolled
        .device
        .check_in(&report(Isolation::Full), Duration::ZERO)
        .await
        .unwrap();
    assert!(after.actions.is_empty());
    match enrolled
        .device
        .finish(&action_id, &ActionResult::failed("late"))
        .await
    {
        Err(DeviceError::Refused {
            status: 400,
            message,
            ..
        }) => {
            assert!(message.contains("already Succeeded"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // The machine's isolation follows the action.
    let devices = server
        .palisade
        .store()
        .devices(&server.tenant_id)
        .await
        .unwrap();
    assert_eq!(devices[0].isolation, Isolation::Full);

    let release = server
        .post(
            &format!("/api/machines/{machine_id}/unisolate"),
            json!({"Comment": "release"}),
        )
        .await;
    assert_eq!(release.status, 201, "{}", release.text);
    let release_id = release.json["id"].as_str().unwrap();
    enrolled.device.start(release_id).await.unwrap();
    enrolled
        .device
        .finish(release_id, &ActionResult::succeeded("table deleted"))
        .await
        .unwrap();
    let devices = server
        .palisade
        .store()
        .devices(&server.tenant_id)
        .await
        .unwrap();
    assert_eq!(devices[0].isolation, Isolation::None);
}

#[tokio::test]
async fn a_failure_carries_its_detail_and_changes_nothing() {
    let server = TestServer::start().await;
    let enrolled = server.enroll_windows("pc-fail").await;
    let action_id = server
        .isolate(&enrolled.enrollment.machine_id, "Full")
        .await;
    match enrolled
        .device
        .finish(&action_id, &ActionResult::failed("too early"))
        .await
    {
        Err(DeviceError::Refused { message, .. }) => {
            assert!(message.contains("has not been started"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    enrolled.device.start(&action_id).await.unwrap();
    enrolled
        .device
        .finish(
            &action_id,
            &ActionResult::failed("nft: Operation not permitted; rolled back"),
        )
        .await
        .unwrap();
    let failed = server.action_status(&action_id).await;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["errorHResult"], -2147467259);
    assert_eq!(
        failed["troubleshootInfo"],
        "nft: Operation not permitted; rolled back"
    );
    let devices = server
        .palisade
        .store()
        .devices(&server.tenant_id)
        .await
        .unwrap();
    assert_eq!(devices[0].isolation, Isolation::None);
    // A result must be Succeeded or Failed.
    let second = server
        .isolate(&enrolled.enrollment.machine_id, "Full")
        .await;
    enrolled.device.start(&second).await.unwrap();
    let mut bogus = ActionResult::succeeded("x");
    bogus.status = ActionStatus::Cancelled;
    assert!(matches!(
        enrolled.device.finish(&second, &bogus).await,
        Err(DeviceError::Refused { status: 400, .. })
    ));
}

/// A device that took an action on and never reported: the action ends
/// TimeOut once it has gone the action timeout (3 days) without an update,
/// counted from when the device started it, not from its creation.
#[tokio::test]
async fn an_action_started_and_never_reported_times_out() {
    let mut server = TestServer::start().await;
    let enrolled = server.enroll_windows("pc-silent").await;
    let action_id = server
        .isolate(&enrolled.enrollment.machine_id, "Full")
        .await;
    server.clock.advance(2 * 86_400);
    server.renew_token().await;
    enrolled.device.start(&action_id).await.unwrap();
    // Created three days ago, but started one day ago: not stale yet.
    server.clock.advance(86_400 + 60);
    server.renew_token().await;
    assert_eq!(server.palisade.time_out_stale_actions().await.unwrap(), 0);
    assert_eq!(
        server.action_status(&action_id).await["status"],
        "InProgress"
    );

    server.clock.advance(2 * 86_400);
    server.renew_token().await;
    assert_eq!(server.palisade.time_out_stale_actions().await.unwrap(), 1);
    let timed_out = server.action_status(&action_id).await;
    assert_eq!(timed_out["status"], "TimeOut");
    // A report that comes after the time-out changes nothing.
    match enrolled
        .device
        .finish(&action_id, &ActionResult::succeeded("isolated late"))
        .await
    {
        Err(DeviceError::Refused { message, .. }) => {
            assert!(message.contains("already TimeOut"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.action_status(&action_id).await, timed_out);
    // The machine may be isolated again: nothing is left in progress.
    let again = server
        .isolate(&enrolled.enrollment.machine_id, "Full")
        .await;
    assert_eq!(server.action_status(&again).await["status"], "Pending");
}

#[tokio::test]
async fn cancelled_and_timed_out_actions_are_not_delivered() {
    let mut server = TestServer::start().await;
    let enrolled = server.enroll_windows("pc-offline").await;
    let machine_id = enrolled.enrollment.machine_id.clone();
    let cancelled = server.isolate(&machine_id, "Full").await;
    let cancel = server
        .post(
            &format!("/api/machineactions/{cancelled}/cancel"),
            json!({"Comment": "wrong machine"}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    assert_eq!(cancel.json["status"], "Cancelled");
    let reply = enrolled
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert!(reply.actions.is_empty(), "{:?}", reply.actions);
    match enrolled.device.start(&cancelled).await {
        Err(DeviceError::Refused { message, .. }) => {
            assert!(message.contains("already Cancelled"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // Offline past the action timeout (3 days): TimeOut.
    let stale = server.isolate(&machine_id, "Full").await;
    server.clock.advance(3 * 86_400 + 60);
    server.renew_token().await;
    assert_eq!(server.palisade.time_out_stale_actions().await.unwrap(), 1);
    assert_eq!(server.action_status(&stale).await["status"], "TimeOut");
    let reply = enrolled
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert!(reply.actions.is_empty(), "{:?}", reply.actions);
}

#[tokio::test]
async fn a_device_sees_only_its_own_actions() {
    let server = TestServer::start().await;
    let a = server.enroll_windows("pc-a").await;
    let b = server.enroll_windows("pc-b").await;
    let action_of_a = server.isolate(&a.enrollment.machine_id, "Full").await;
    let of_b = b
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert!(of_b.actions.is_empty());
    match b.device.start(&action_of_a).await {
        Err(DeviceError::Refused { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.action_status(&action_of_a).await["status"],
        "Pending"
    );
    // No credential, or a forged one: 401.
    let forged = DeviceClient::new(reqwest::Client::new(), &server.origin)
        .with_credential(&format!("{}x", a.enrollment.credential));
    assert!(matches!(
        forged.check_in(&CheckIn::default(), Duration::ZERO).await,
        Err(DeviceError::Unauthorized(_))
    ));
    let bare = server
        .send(
            reqwest::Client::new()
                .post(server.url("/device/v1/checkin"))
                .json(&json!({})),
        )
        .await;
    bare.assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn offboarding_ends_the_enrollment_and_a_new_one_is_a_new_onboarding() {
    let server = TestServer::start().await;
    let request = enroll_request("pc-leaver", OsPlatform::Windows11, &[]);
    let first = server.enroll(&request).await;
    let machine_id = first.enrollment.machine_id.clone();
    let tag = server
        .post(
            &format!("/api/machines/{machine_id}/tags"),
            json!({"Value": "finance", "Action": "Add"}),
        )
        .await;
    assert_eq!(tag.status, 200, "{}", tag.text);

    // The same device enrolling again with its credential: the same machine,
    // its tags kept, and the same credential.
    let second = server.re_enroll(&first, &request).await;
    assert_eq!(second.enrollment.machine_id, machine_id);
    assert_eq!(second.enrollment.credential, first.enrollment.credential);
    let machine = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .json;
    assert_eq!(machine["machineTags"], json!(["finance"]));

    let offboard = server
        .post(
            &format!("/api/machines/{machine_id}/offboard"),
            json!({"Comment": "decommissioned"}),
        )
        .await;
    assert_eq!(offboard.status, 201, "{}", offboard.text);
    let action_id = offboard.json["id"].as_str().unwrap();
    let delivered = second
        .device
        .check_in(&CheckIn::default(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(delivered.actions[0].id, action_id);
    second.device.start(action_id).await.unwrap();
    second
        .device
        .finish(action_id, &ActionResult::succeeded("agent removed"))
        .await
        .unwrap();
    let machine = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .json;
    assert_eq!(machine["onboardingStatus"], "CanBeOnboarded");
    assert_eq!(machine["healthStatus"], "Inactive");
    match second
        .device
        .check_in(&CheckIn::default(), Duration::ZERO)
        .await
    {
        Err(DeviceError::Offboarded) => {}
        other => panic!("an offboarded device checked in: {other:?}"),
    }
    // Nor may it report on actions any more.
    assert!(matches!(
        second.device.start(action_id).await,
        Err(DeviceError::Offboarded)
    ));
    // A check-in buffered before the offboard does not bring the machine back.
    server.devices.flush_check_ins().await.unwrap();
    let machine = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .json;
    assert_eq!(machine["healthStatus"], "Inactive");

    // Presenting its offboarded credential, it learns it is offboarded.
    assert!(matches!(
        server
            .device_client()
            .with_credential(&second.enrollment.credential)
            .enroll(&server.onboarding_token().await, &request)
            .await,
        Err(DeviceError::Offboarded)
    ));
    let again = server.enroll(&request).await;
    assert_ne!(
        again.enrollment.machine_id, machine_id,
        "a new onboarding is a new machine"
    );
    again
        .device
        .check_in(&CheckIn::default(), Duration::ZERO)
        .await
        .expect("the new enrollment checks in");
    let new_machine = server
        .get(&format!("/api/machines/{}", again.enrollment.machine_id))
        .await
        .json;
    assert_eq!(new_machine["onboardingStatus"], "Onboarded");
    assert_eq!(new_machine["machineTags"], json!([]));
    assert_eq!(
        new_machine["isPotentialDuplication"], false,
        "the hardware's earlier device is offboarded"
    );
}

/// Holding the tenant's onboarding token is not being the device: enrolling
/// with an enrolled device's hardware id (and without its credential, or
/// with a forged one) makes a new machine marked as a potential duplicate;
/// the real device keeps its machine, its credential and its pending action.
#[tokio::test]
async fn known_hardware_without_its_credential_enrolls_as_a_duplicate_and_takes_nothing_over() {
    let server = TestServer::start().await;
    let request = enroll_request("pc-victim", OsPlatform::Windows11, &[]);
    let real = server.enroll(&request).await;
    let machine_id = real.enrollment.machine_id.clone();
    let action_id = server.isolate(&machine_id, "Full").await;

    let intruder = server.enroll(&request).await;
    let forged = server
        .device_client()
        .with_credential(&format!("{}x", real.enrollment.credential))
        .enroll(&server.onboarding_token().await, &request)
        .await
        .unwrap();
    for other in [&intruder.enrollment, &forged] {
        assert_ne!(other.machine_id, machine_id);
        assert_ne!(other.credential, real.enrollment.credential);
        let duplicate = server
            .get(&format!("/api/machines/{}", other.machine_id))
            .await
            .json;
        assert_eq!(duplicate["isPotentialDuplication"], true, "{duplicate}");
        assert_eq!(duplicate["computerDnsName"], "pc-victim");
    }
    let original = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .json;
    assert_eq!(original["isPotentialDuplication"], false, "{original}");

    // The intruder gets nothing of the real machine's.
    let stolen = intruder
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert!(stolen.actions.is_empty(), "{:?}", stolen.actions);
    assert!(matches!(
        intruder.device.start(&action_id).await,
        Err(DeviceError::Refused { status: 404, .. })
    ));
    assert!(matches!(
        intruder
            .device
            .finish(&action_id, &ActionResult::succeeded("isolated, honestly"))
            .await,
        Err(DeviceError::Refused { status: 404, .. })
    ));
    assert_eq!(server.action_status(&action_id).await["status"], "Pending");

    // The real device still works and carries its action out.
    let delivered = real
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .expect("the real device's credential still works");
    assert_eq!(delivered.actions.len(), 1);
    assert_eq!(delivered.actions[0].id, action_id);
    real.device.start(&action_id).await.unwrap();
    real.device
        .finish(&action_id, &ActionResult::succeeded("in force"))
        .await
        .unwrap();
    assert_eq!(
        server.action_status(&action_id).await["status"],
        "Succeeded"
    );
    let devices = server
        .palisade
        .store()
        .devices(&server.tenant_id)
        .await
        .unwrap();
    let real_device = devices.iter().find(|d| d.machine_id == machine_id).unwrap();
    assert_eq!(real_device.isolation, Isolation::Full);
    assert_eq!(devices.len(), 3, "three machines of one hardware id");
}

/// A device that enrolls again presenting its credential stays the same
/// machine: its report is updated, its credential, tags and pending actions stay.
#[tokio::test]
async fn a_device_presenting_its_credential_re_enrolls_in_place() {
    let server = TestServer::start().await;
    let mut request = enroll_request("pc-renamed", OsPlatform::Windows11, &[]);
    let first = server.enroll(&request).await;
    let machine_id = first.enrollment.machine_id.clone();
    let action_id = server.isolate(&machine_id, "Full").await;

    request.computer_dns_name = "pc-renamed-2".into();
    request.agent_version = "0.2.0".into();
    let again = server.re_enroll(&first, &request).await;
    assert_eq!(again.enrollment.machine_id, machine_id);
    assert_eq!(again.enrollment.credential, first.enrollment.credential);
    let machine = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .json;
    assert_eq!(machine["computerDnsName"], "pc-renamed-2");
    assert_eq!(machine["agentVersion"], "0.2.0");
    assert_eq!(machine["isPotentialDuplication"], false);
    let delivered = first
        .device
        .check_in(&report(Isolation::None), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(delivered.actions[0].id, action_id);
    let listed = server
        .get("/api/machines?$filter=startswith(computerDnsName,'pc-renamed')&$count=true")
        .await
        .json;
    assert_eq!(listed["@odata.count"], 1, "{listed}");
    // Twice in place is still in place (a lost reply is harmless).
    let third = server.re_enroll(&first, &request).await;
    assert_eq!(third.enrollment.machine_id, machine_id);
}

/// Enrollments are counted per onboarding token: beyond the limit, 429 with
/// `Retry-After` in the MDE error shape; other tokens are not held back.
#[tokio::test]
async fn enrollment_is_rate_limited_per_onboarding_token() {
    let server = TestServer::start_with(crate::harness::Options {
        enrollment_rate_limits: Some(palisade_domain::rate_limit::RateLimits {
            per_minute: 3,
            per_hour: 100,
        }),
        ..Default::default()
    })
    .await;
    let token = server.onboarding_token().await;
    let client = server.device_client();
    for n in 0..3 {
        let request = enroll_request(&format!("burst-{n}"), OsPlatform::Linux, &[]);
        client.enroll(&token, &request).await.unwrap();
    }
    let request = enroll_request("burst-3", OsPlatform::Linux, &[]);
    let refused = server
        .send(
            reqwest::Client::new()
                .post(server.url("/device/v1/enroll"))
                .bearer_auth(&token)
                .json(&request),
        )
        .await;
    let message = refused.assert_error(429, "TooManyRequests");
    assert!(
        message.contains("3 enrollments a minute with this onboarding token"),
        "{message}"
    );
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    match client.enroll(&token, &request).await {
        Err(DeviceError::Throttled { retry_after, .. }) => {
            assert!(retry_after >= Duration::from_secs(1))
        }
        other => panic!("{other:?}"),
    }
    // A forged secret of the token is refused as such, before any count.
    assert!(matches!(
        client.enroll(&format!("{token}x"), &request).await,
        Err(DeviceError::Unauthorized(_))
    ));
    client
        .enroll(&server.onboarding_token().await, &request)
        .await
        .expect("another token has its own count");
    server.clock.advance(61);
    client
        .enroll(&token, &request)
        .await
        .expect("the minute has passed");
}

#[tokio::test]
async fn what_a_device_declares_it_enforces_widens_what_its_platform_allows() {
    let server = TestServer::start().await;
    // MDE's own Linux sensor has neither Selective isolation nor offboarding.
    let plain = server
        .enroll(&enroll_request("linux-plain", OsPlatform::Linux, &[]))
        .await;
    let selective = server
        .post(
            &format!("/api/machines/{}/isolate", plain.enrollment.machine_id),
            json!({"Comment": "x", "IsolationType": "Selective"}),
        )
        .await;
    selective.assert_error(400, "OsPlatformNotSupported");
    let offboard = server
        .post(
            &format!("/api/machines/{}/offboard", plain.enrollment.machine_id),
            json!({"Comment": "x"}),
        )
        .await;
    offboard.assert_error(400, "OsPlatformNotSupported");

    let agent = server
        .enroll(&enroll_request(
            "linux-agent",
            OsPlatform::Linux,
            &[
                Capability::FullIsolation,
                Capability::SelectiveIsolation,
                Capability::Offboard,
            ],
        ))
        .await;
    let id = &agent.enrollment.machine_id;
    let action = server.isolate(id, "Selective").await;
    assert_eq!(server.action_status(&action).await["scope"], "Selective");
    let offboard = server
        .post(
            &format!("/api/machines/{id}/offboard"),
            json!({"Comment": "x"}),
        )
        .await;
    assert_eq!(offboard.status, 201, "{}", offboard.text);
}
