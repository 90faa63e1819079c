use crate::harness::*;

use palisade_contract::{
    ExposureLevel, HealthStatus, Machine, OnboardingStatus, OsPlatform, RiskScore, Timestamp,
};
use palisade_server::demo;
use serde_json::Value;
use std::collections::BTreeSet;

/// Machines older than this are past the default retention and never listed.
const RETENTION_DAYS: u32 = 180;

/// A server holding a demo fleet plus a few hand-made machines.
struct Fleet {
    server: TestServer,
    /// Every machine the API must show (within retention).
    visible: Vec<Machine>,
    /// A hand-made machine past retention, carrying tags and values the filters look for.
    expired: Machine,
}

const AAD_ID: &str = "80fe8ff8-2624-418e-9591-41f0491218f9";

fn hand_made(now: Timestamp) -> (Vec<Machine>, Machine) {
    let mut a = machine(OsPlatform::Windows11);
    a.computer_dns_name = "alpha-01.lab.local".into();
    a.aad_device_id = Some(AAD_ID.into());
    a.is_aad_joined = true;
    a.risk_score = None;
    a.exposure_level = None;
    a.health_status = HealthStatus::Inactive;
    a.rbac_group_id = 2;
    a.machine_tags = vec!["x".into(), "VIP".into()];

    let mut b = machine(OsPlatform::Linux);
    b.computer_dns_name = "Alpha-02.lab.local".into();
    b.machine_tags = vec!["x".into()];
    b.risk_score = Some(RiskScore::High);
    b.exposure_level = Some(ExposureLevel::High);
    b.last_ip_address = None;

    let mut c = machine(OsPlatform::MacOs);
    c.computer_dns_name = "alpha-03.lab.local".into();
    c.machine_tags = vec!["it's".into(), "Pilot ring".into()];
    c.health_status = HealthStatus::NoSensorData;
    c.risk_score = Some(RiskScore::Informational);
    c.rbac_group_id = 3;
    c.last_seen = now.minus_days(45);

    let mut d = machine(OsPlatform::WindowsServer2025);
    d.computer_dns_name = "beta-01.lab.local".into();
    d.aad_device_id = Some("0b8e31a2-4d4b-4f1a-9a39-3f7c2e9d1e55".into());
    d.onboarding_status = OnboardingStatus::Unsupported;
    d.last_seen = now.minus_days(170);

    let mut expired = machine(OsPlatform::Windows11);
    expired.computer_dns_name = "alpha-99.lab.local".into();
    expired.aad_device_id = Some("5c6d8a1e-0f2b-4c3d-8e9f-a0b1c2d3e4f5".into());
    expired.machine_tags = vec!["x".into(), "VIP".into()];
    expired.rbac_group_id = 2;
    expired.last_seen = now.minus_days(RETENTION_DAYS + 20);

    (vec![a, b, c, d], expired)
}

async fn fleet_server() -> Fleet {
    let server = TestServer::start().await;
    for (id, name) in demo::DEMO_GROUPS {
        server.put_group(id, name).await;
    }
    let now = Timestamp::now();
    let mut all = demo::fleet(300, 20_240_501, now);
    let (mine, expired) = hand_made(now);
    all.extend(mine);
    all.push(expired.clone());
    server.put_machines(&all).await;
    // The fleet's machines are either at most 170 days old or more than 181.
    let cutoff = now.minus_days(RETENTION_DAYS);
    let visible: Vec<Machine> = all.into_iter().filter(|m| m.last_seen >= cutoff).collect();
    assert!(visible.len() < 305, "some demo machines are past retention");
    Fleet {
        server,
        visible,
        expired,
    }
}

/// `GET /api/machines{query}`, expecting 200.
async fn list(server: &TestServer, query: &str) -> Reply {
    let reply = server.get(&format!("/api/machines{query}")).await;
    assert_eq!(
        reply.status.as_u16(),
        200,
        "GET /api/machines{query}: {}",
        reply.text
    );
    reply
}

fn value(reply: &Reply) -> &Vec<Value> {
    reply.json["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value array: {}", reply.text))
}

fn ids_where(machines: &[Machine], keep: impl Fn(&Machine) -> bool) -> BTreeSet<String> {
    machines
        .iter()
        .filter(|m| keep(m))
        .map(|m| m.id.clone())
        .collect()
}

fn has_tag(m: &Machine, tag: &str) -> bool {
    m.machine_tags.iter().any(|t| t == tag)
}

fn risk(m: &Machine) -> Option<&'static str> {
    m.risk_score.map(|r| r.as_str())
}

/// The timestamp as an OData literal (the wire form).
fn literal(t: Timestamp) -> String {
    t.to_string()
}

/// The date of `t` as a date-only literal, e.g. `2024-05-01Z`, and that midnight.
fn date_literal(t: Timestamp) -> (String, Timestamp) {
    let day = t.to_string()[..10].to_string();
    let midnight = Timestamp::parse(&format!("{day}T00:00:00Z")).unwrap();
    (format!("{day}Z"), midnight)
}

type Predicate = Box<dyn Fn(&Machine) -> bool>;

/// Runs each `$filter` and compares the ids listed with those `expected` keeps.
/// Reports every mismatch at once.
async fn check_filters(fleet: &Fleet, cases: Vec<(String, Predicate)>) {
    let mut failures = Vec::new();
    for (filter, expected) in cases {
        let want = ids_where(&fleet.visible, &expected);
        assert!(
            !want.is_empty() && want.len() < fleet.visible.len(),
            "test case '{filter}' should select some but not all machines ({} of {})",
            want.len(),
            fleet.visible.len()
        );
        let reply = fleet
            .server
            .get(&format!("/api/machines?$filter={filter}"))
            .await;
        if reply.status.as_u16() != 200 {
            failures.push(format!("'{filter}': {} {}", reply.status, reply.text));
            continue;
        }
        let got_list = reply.value_ids();
        let got: BTreeSet<String> = got_list.iter().cloned().collect();
        if got.len() != got_list.len() {
            failures.push(format!("'{filter}': duplicate ids in the answer"));
        }
        if got != want {
            let missing: Vec<_> = want.difference(&got).take(3).collect();
            let extra: Vec<_> = got.difference(&want).take(3).collect();
            failures.push(format!(
                "'{filter}': expected {} machines, got {} (missing e.g. {missing:?}, extra e.g. {extra:?})",
                want.len(),
                got.len()
            ));
        }
        assert!(
            !got.contains(&fleet.expired.id),
            "'{filter}' listed a machine past retention"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn case(
    filter: impl Into<String>,
    keep: impl Fn(&Machine) -> bool + 'static,
) -> (String, Predicate) {
    (filter.into(), Box::new(keep))
}

// ---------------------------------------------------------------------------
// The fleet itself
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unfiltered_list_is_every_machine_within_retention() {
    let fleet = fleet_server().await;
    let reply = list(&fleet.server, "").await;
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines", fleet.server.origin)
    );
    let got: BTreeSet<String> = reply.value_ids().into_iter().collect();
    assert_eq!(got, ids_where(&fleet.visible, |_| true));
    assert!(!got.contains(&fleet.expired.id));
    assert!(
        reply.json.get("@odata.nextLink").is_none(),
        "{}",
        reply.text
    );
}

// ---------------------------------------------------------------------------
// $filter
// ---------------------------------------------------------------------------

#[tokio::test]
async fn filter_comparison_operators() {
    let fleet = fleet_server().await;
    check_filters(
        &fleet,
        vec![
            case("healthStatus eq 'Active'", |m| {
                m.health_status == HealthStatus::Active
            }),
            case("healthStatus ne 'Active'", |m| {
                m.health_status != HealthStatus::Active
            }),
            case("rbacGroupId eq 2", |m| m.rbac_group_id == 2),
            case("rbacGroupId ne 1", |m| m.rbac_group_id != 1),
            case("rbacGroupId gt 1", |m| m.rbac_group_id > 1),
            case("rbacGroupId ge 2", |m| m.rbac_group_id >= 2),
            case("rbacGroupId lt 2", |m| m.rbac_group_id < 2),
            case("rbacGroupId le 1", |m| m.rbac_group_id <= 1),
            case("2 lt rbacGroupId", |m| m.rbac_group_id > 2),
            case("osPlatform eq 'macOS'", |m| {
                m.os_platform == OsPlatform::MacOs
            }),
            case("riskScore eq 'High'", |m| risk(m) == Some("High")),
            case("riskScore ne 'High'", |m| risk(m) != Some("High")),
            case("exposureLevel eq 'Medium'", |m| {
                m.exposure_level == Some(ExposureLevel::Medium)
            }),
            case("onboardingStatus ne 'Onboarded'", |m| {
                m.onboarding_status != OnboardingStatus::Onboarded
            }),
            case("deviceValue eq 'High'", |m| {
                m.device_value.map(|v| v.as_str()) == Some("High")
            }),
            case("version eq '1709'", |m| {
                m.version.as_deref() == Some("1709")
            }),
            case("computerDnsName eq 'alpha-01.lab.local'", |m| {
                m.computer_dns_name == "alpha-01.lab.local"
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_on_id_and_ip_address() {
    let fleet = fleet_server().await;
    let first = fleet.visible[3].clone();
    let second = fleet.visible[10].clone();
    let ip = first.last_ip_address.clone().unwrap();
    let (id1, id2) = (first.id.clone(), second.id.clone());
    check_filters(
        &fleet,
        vec![
            case(format!("id eq '{id1}'"), {
                let id1 = id1.clone();
                move |m| m.id == id1
            }),
            case(format!("id in ('{id1}', '{id2}')"), move |m| {
                m.id == id1 || m.id == id2
            }),
            case(format!("lastIpAddress eq '{ip}'"), move |m| {
                m.last_ip_address.as_deref() == Some(ip.as_str())
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_and_or_not_and_parentheses() {
    let fleet = fleet_server().await;
    let linux_or_mac = |m: &Machine| matches!(m.os_platform, OsPlatform::Linux | OsPlatform::MacOs);
    let active = |m: &Machine| m.health_status == HealthStatus::Active;
    check_filters(
        &fleet,
        vec![
            case(
                "osPlatform eq 'Windows10' and healthStatus eq 'Active'",
                move |m| m.os_platform == OsPlatform::Windows10 && active(m),
            ),
            case("osPlatform eq 'Linux' or osPlatform eq 'macOS'", linux_or_mac),
            case(
                "(osPlatform eq 'Linux' or osPlatform eq 'macOS') and healthStatus eq 'Active'",
                move |m| linux_or_mac(m) && active(m),
            ),
            // `and` binds tighter than `or`.
            case(
                "osPlatform eq 'Linux' or osPlatform eq 'macOS' and healthStatus eq 'Active'",
                move |m| {
                    m.os_platform == OsPlatform::Linux
                        || (m.os_platform == OsPlatform::MacOs && active(m))
                },
            ),
            case("not (osPlatform eq 'Linux')", |m| {
                m.os_platform != OsPlatform::Linux
            }),
            case(
                "not (rbacGroupId eq 1 or rbacGroupId eq 2) and healthStatus ne 'Inactive'",
                |m| {
                    !(m.rbac_group_id == 1 || m.rbac_group_id == 2)
                        && m.health_status != HealthStatus::Inactive
                },
            ),
            case(
                "((rbacGroupId eq 3)) and (osPlatform eq 'Windows11' or (osPlatform eq 'Windows10'))",
                |m| {
                    m.rbac_group_id == 3
                        && matches!(m.os_platform, OsPlatform::Windows11 | OsPlatform::Windows10)
                },
            ),
        ],
    )
    .await;
}

/// `not (p eq v)` must select what `p ne v` selects, machines where `p` is null included.
#[tokio::test]
async fn filter_not_of_a_comparison_includes_null_values() {
    let fleet = fleet_server().await;
    assert!(fleet.visible.iter().any(|m| m.risk_score.is_none()));
    check_filters(
        &fleet,
        vec![
            case("not (riskScore eq 'High')", |m| risk(m) != Some("High")),
            case("not (riskScore in ('High', 'Medium'))", |m| {
                !matches!(risk(m), Some("High") | Some("Medium"))
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_startswith_and_in() {
    let fleet = fleet_server().await;
    check_filters(
        &fleet,
        vec![
            case("startswith(computerDnsName,'lnx-')", |m| {
                m.computer_dns_name.starts_with("lnx-")
            }),
            case("startswith(computerDnsName, 'desktop-001')", |m| {
                m.computer_dns_name.starts_with("desktop-001")
            }),
            case("startswith(computerDnsName,'alpha-')", |m| {
                m.computer_dns_name.starts_with("alpha-")
            }),
            case(
                "startswith(computerDnsName,'srv-') and rbacGroupId eq 2",
                |m| m.computer_dns_name.starts_with("srv-") && m.rbac_group_id == 2,
            ),
            case("not startswith(computerDnsName,'desktop-')", |m| {
                !m.computer_dns_name.starts_with("desktop-")
            }),
            case("osPlatform in ('Linux','macOS')", |m| {
                matches!(m.os_platform, OsPlatform::Linux | OsPlatform::MacOs)
            }),
            case("rbacGroupId in (0, 3)", |m| {
                m.rbac_group_id == 0 || m.rbac_group_id == 3
            }),
            case("healthStatus in ('Inactive')", |m| {
                m.health_status == HealthStatus::Inactive
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_machine_tags_any() {
    let fleet = fleet_server().await;
    check_filters(
        &fleet,
        vec![
            case("machineTags/any(t: t eq 'VIP')", |m| has_tag(m, "VIP")),
            case("machineTags/any(t: t eq 'x')", |m| has_tag(m, "x")),
            case("machineTags/any(tag: tag eq 'Pilot ring')", |m| {
                has_tag(m, "Pilot ring")
            }),
            case("machineTags/any(t: t eq 'it''s')", |m| has_tag(m, "it's")),
            case(
                "machineTags/any(t: t eq 'VIP') and osPlatform eq 'Windows11'",
                |m| has_tag(m, "VIP") && m.os_platform == OsPlatform::Windows11,
            ),
            case(
                "osPlatform eq 'Windows10' and machineTags/any(tag: tag eq 'Prod')",
                |m| has_tag(m, "Prod") && m.os_platform == OsPlatform::Windows10,
            ),
            case("machineTags/any(t: t eq 'VIP' or t eq 'Kiosk')", |m| {
                has_tag(m, "VIP") || has_tag(m, "Kiosk")
            }),
            case(
                "machineTags/any(t: t eq 'VIP') or machineTags/any(t: t eq 'Legacy')",
                |m| has_tag(m, "VIP") || has_tag(m, "Legacy"),
            ),
            case(
                "machineTags/any(t: t eq 'VIP') and machineTags/any(t: t eq 'Prod')",
                |m| has_tag(m, "VIP") && has_tag(m, "Prod"),
            ),
            case("not machineTags/any(t: t eq 'VIP')", |m| !has_tag(m, "VIP")),
            case("MachineTags/any(t: t eq 'Finance')", |m| {
                has_tag(m, "Finance")
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn tag_matching_is_exact() {
    let fleet = fleet_server().await;
    // Tags are matched case-sensitively: 'vip' is not 'VIP'.
    assert!(fleet.visible.iter().all(|m| !has_tag(m, "vip")));
    let reply = list(&fleet.server, "?$filter=machineTags/any(t: t eq 'vip')").await;
    assert!(value(&reply).is_empty(), "{}", reply.text);
    let reply = list(&fleet.server, "?$filter=machineTags/any(t: t eq 'VI')").await;
    assert!(value(&reply).is_empty(), "{}", reply.text);
}

#[tokio::test]
async fn filter_property_names_in_any_case() {
    let fleet = fleet_server().await;
    check_filters(
        &fleet,
        vec![
            case("RiskScore eq 'High'", |m| risk(m) == Some("High")),
            case("riskscore eq 'Low'", |m| risk(m) == Some("Low")),
            case("OSPLATFORM eq 'Linux'", |m| {
                m.os_platform == OsPlatform::Linux
            }),
            case("OsPlatform eq 'Windows11'", |m| {
                m.os_platform == OsPlatform::Windows11
            }),
            case("HealthStatus ne 'Active'", |m| {
                m.health_status != HealthStatus::Active
            }),
            case("RbacGroupId eq 2", |m| m.rbac_group_id == 2),
            case("ComputerDnsName eq 'Alpha-02.lab.local'", |m| {
                m.computer_dns_name == "Alpha-02.lab.local"
            }),
            case("startswith(COMPUTERDNSNAME,'mac-')", |m| {
                m.computer_dns_name.starts_with("mac-")
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_on_last_seen_with_date_and_datetime_literals() {
    let fleet = fleet_server().await;
    let now = Timestamp::now();
    let (week_ago, week_midnight) = date_literal(now.minus_days(7));
    // An exact lastSeen of one machine: ge includes it, gt does not.
    let mut seen: Vec<Timestamp> = fleet.visible.iter().map(|m| m.last_seen).collect();
    seen.sort();
    let pivot = seen[seen.len() / 3];
    let pivot_text = literal(pivot);
    let all_but_expired = |_: &Machine| true;
    // `lastSeen gt 2018-08-01Z` selects every machine, so check it on its own.
    let reply = list(&fleet.server, "?$filter=lastSeen gt 2018-08-01Z").await;
    let got: BTreeSet<String> = reply.value_ids().into_iter().collect();
    assert_eq!(got, ids_where(&fleet.visible, all_but_expired));
    let reply = list(
        &fleet.server,
        "?$filter=lastSeen ge 2018-08-01T00:00:00Z and lastSeen lt 2999-12-31T23:59:59.9999999Z",
    )
    .await;
    assert_eq!(value(&reply).len(), fleet.visible.len());
    check_filters(
        &fleet,
        vec![
            case(format!("lastSeen lt {week_ago}"), move |m| {
                m.last_seen < week_midnight
            }),
            case(format!("lastSeen ge {week_ago}"), move |m| {
                m.last_seen >= week_midnight
            }),
            case(format!("lastSeen gt {pivot_text}"), move |m| {
                m.last_seen > pivot
            }),
            case(format!("lastSeen ge {pivot_text}"), move |m| {
                m.last_seen >= pivot
            }),
            case(format!("lastSeen le {pivot_text}"), move |m| {
                m.last_seen <= pivot
            }),
            case(format!("lastSeen lt {pivot_text}"), move |m| {
                m.last_seen < pivot
            }),
            case(format!("lastSeen eq {pivot_text}"), move |m| {
                m.last_seen == pivot
            }),
            case(
                format!("lastSeen gt {week_ago} and osPlatform eq 'Windows11'"),
                move |m| m.last_seen > week_midnight && m.os_platform == OsPlatform::Windows11,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_null_comparisons() {
    let fleet = fleet_server().await;
    check_filters(
        &fleet,
        vec![
            case("aadDeviceId eq null", |m| m.aad_device_id.is_none()),
            case("aadDeviceId ne null", |m| m.aad_device_id.is_some()),
            case(format!("aadDeviceId eq '{AAD_ID}'"), |m| {
                m.aad_device_id.as_deref() == Some(AAD_ID)
            }),
            case("riskScore eq null", |m| m.risk_score.is_none()),
            case("lastIpAddress eq null", |m| m.last_ip_address.is_none()),
            case("exposureLevel eq null or exposureLevel eq 'High'", |m| {
                m.exposure_level.is_none() || m.exposure_level == Some(ExposureLevel::High)
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn filter_forms_percent_encoded_and_plus_for_space() {
    let fleet = fleet_server().await;
    let want = ids_where(&fleet.visible, |m| m.health_status != HealthStatus::Active);
    for query in [
        "?$filter=healthStatus+ne+'Active'",
        "?$filter=healthStatus%20ne%20%27Active%27",
        "?%24filter=healthStatus%20ne%20%27Active%27",
        "?$filter=healthStatus+ne+%27Active%27&$top=10000",
    ] {
        let reply = list(&fleet.server, query).await;
        let got: BTreeSet<String> = reply.value_ids().into_iter().collect();
        assert_eq!(got, want, "{query}");
    }
    // The docs' own example.
    let reply = list(&fleet.server, "?$filter=healthStatus+ne+'Active'&$top=100").await;
    let got = reply.value_ids();
    assert_eq!(got.len(), want.len().min(100));
    assert!(got.iter().all(|id| want.contains(id)));
    // Encoded parentheses, commas, colons and slashes.
    let want = ids_where(&fleet.visible, |m| has_tag(m, "Pilot ring"));
    let reply = list(
        &fleet.server,
        "?%24filter=machineTags%2Fany%28t%3A+t+eq+%27Pilot+ring%27%29",
    )
    .await;
    let got: BTreeSet<String> = reply.value_ids().into_iter().collect();
    assert_eq!(got, want);
    let want = ids_where(&fleet.visible, |m| m.computer_dns_name.starts_with("lnx-"));
    let reply = list(
        &fleet.server,
        "?$filter=startswith%28computerDnsName%2C%27lnx-%27%29",
    )
    .await;
    let got: BTreeSet<String> = reply.value_ids().into_iter().collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn filter_on_a_property_that_is_not_filterable_is_odata_error() {
    let fleet = fleet_server().await;
    for (filter, property) in [
        ("firstSeen gt 2018-08-01Z", "firstSeen"),
        ("rbacGroupName eq 'Servers'", "rbacGroupName"),
        ("agentVersion eq '10.8760.19045.4412'", "agentVersion"),
        ("nosuch eq 1", "nosuch"),
    ] {
        let reply = fleet
            .server
            .get(&format!("/api/machines?$filter={filter}"))
            .await;
        let message = reply.assert_error(400, "ODataError");
        assert!(message.contains(property), "{filter}: {message}");
    }
}

#[tokio::test]
async fn malformed_filters_are_odata_errors() {
    let fleet = fleet_server().await;
    for filter in [
        "healthStatus eq",
        "healthStatus eq 'Active",
        "(healthStatus eq 'Active'",
        "healthStatus equals 'Active'",
        "lastSeen gt 'yesterday'",
        "rbacGroupId eq 'two'",
        "machineTags eq 'VIP'",
        "contains(computerDnsName,'a')",
    ] {
        let reply = fleet
            .server
            .get(&format!("/api/machines?$filter={filter}"))
            .await;
        reply.assert_error(400, "ODataError");
    }
}

// ---------------------------------------------------------------------------
// $top, $skip, paging
// ---------------------------------------------------------------------------

#[tokio::test]
async fn top_and_skip_page_through_without_overlap() {
    let fleet = fleet_server().await;
    let everything = list(&fleet.server, "").await.value_ids();
    assert_eq!(everything.len(), fleet.visible.len());
    // The same query twice gives the same order.
    assert_eq!(list(&fleet.server, "").await.value_ids(), everything);

    let page_size = 37;
    let mut paged = Vec::new();
    let mut skip = 0;
    loop {
        let reply = list(&fleet.server, &format!("?$top={page_size}&$skip={skip}")).await;
        assert!(
            reply.json.get("@odata.nextLink").is_none(),
            "no nextLink with $top: {}",
            reply.text
        );
        let page = reply.value_ids();
        assert!(page.len() <= page_size);
        let short = page.len() < page_size;
        paged.extend(page);
        skip += page_size;
        if short {
            break;
        }
    }
    assert_eq!(paged, everything);
    let unique: BTreeSet<&String> = paged.iter().collect();
    assert_eq!(unique.len(), paged.len(), "pages overlap");
}

#[tokio::test]
async fn top_and_skip_page_through_a_filtered_ordered_list() {
    let fleet = fleet_server().await;
    let filter = "$filter=healthStatus ne 'ImpairedCommunication'&$orderby=lastSeen desc";
    let everything = list(&fleet.server, &format!("?{filter}")).await.value_ids();
    let want = ids_where(&fleet.visible, |m| {
        m.health_status != HealthStatus::ImpairedCommunication
    });
    assert_eq!(everything.iter().cloned().collect::<BTreeSet<_>>(), want);
    let mut paged = Vec::new();
    for skip in (0..everything.len() + 50).step_by(50) {
        paged.extend(
            list(&fleet.server, &format!("?{filter}&$top=50&$skip={skip}"))
                .await
                .value_ids(),
        );
    }
    assert_eq!(paged, everything);
}

#[tokio::test]
async fn top_over_ten_thousand_is_odata_error() {
    let fleet = fleet_server().await;
    let reply = fleet.server.get("/api/machines?$top=10001").await;
    let message = reply.assert_error(400, "ODataError");
    assert!(
        message.contains("10000") || message.contains("10,000"),
        "{message}"
    );
    // 10,000 itself is fine.
    let reply = list(&fleet.server, "?$top=10000").await;
    assert_eq!(value(&reply).len(), fleet.visible.len());
}

#[tokio::test]
async fn top_zero_is_odata_error() {
    let server = TestServer::start().await;
    let reply = server.get("/api/machines?$top=0").await;
    let message = reply.assert_error(400, "ODataError");
    assert!(message.contains("1 to 10000"), "{message}");
}

#[tokio::test]
async fn top_gives_no_next_link_even_when_more_match() {
    let fleet = fleet_server().await;
    let reply = list(&fleet.server, "?$top=5").await;
    assert_eq!(value(&reply).len(), 5);
    assert!(
        reply.json.get("@odata.nextLink").is_none(),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn skip_past_the_end_is_an_empty_page() {
    let fleet = fleet_server().await;
    let reply = list(&fleet.server, &format!("?$skip={}", fleet.visible.len())).await;
    assert!(value(&reply).is_empty(), "{}", reply.text);
    let reply = list(&fleet.server, "?$skip=2").await;
    assert_eq!(value(&reply).len(), fleet.visible.len() - 2);
}

#[tokio::test]
async fn without_top_pages_of_ten_thousand_follow_next_link() {
    let server = TestServer::start().await;
    let now = Timestamp::now();
    let mut machines = demo::fleet(10_050, 99, now);
    for (i, m) in machines.iter_mut().enumerate() {
        // All within retention.
        m.last_seen = now.plus_seconds(-(i as i64) - 1);
    }
    server.put_machines(&machines).await;
    let all: BTreeSet<String> = machines.iter().map(|m| m.id.clone()).collect();
    assert_eq!(all.len(), 10_050);

    for query in ["", "?$filter=lastSeen gt 2018-08-01Z", "?$count=true"] {
        let first = list(&server, query).await;
        let first_ids = first.value_ids();
        assert_eq!(first_ids.len(), 10_000, "{query}");
        let link = first.json["@odata.nextLink"]
            .as_str()
            .unwrap_or_else(|| panic!("{query}: no @odata.nextLink"))
            .to_string();
        assert!(link.starts_with(&server.origin), "{link}");
        assert!(link.contains("$skip=10000"), "{link}");
        if query == "?$count=true" {
            assert_eq!(first.json["@odata.count"], 10_050);
        }

        let second = server.send(server.client.get(&link)).await;
        assert_eq!(second.status.as_u16(), 200, "{link}: {}", second.text);
        let second_ids = second.value_ids();
        assert_eq!(second_ids.len(), 50, "{link}");
        assert!(
            second.json.get("@odata.nextLink").is_none(),
            "{}",
            second.json["@odata.nextLink"]
        );
        let mut union: BTreeSet<String> = first_ids.into_iter().collect();
        union.extend(second_ids);
        assert_eq!(union, all, "{query}: pages overlap or miss machines");
    }

    // With $top there is never a nextLink.
    let reply = list(&server, "?$top=10000").await;
    assert_eq!(value(&reply).len(), 10_000);
    assert!(reply.json.get("@odata.nextLink").is_none());
}

// ---------------------------------------------------------------------------
// $count, $select, $orderby, $expand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn count_is_the_total_matching() {
    let fleet = fleet_server().await;
    let reply = list(&fleet.server, "?$count=true").await;
    assert_eq!(reply.json["@odata.count"], fleet.visible.len() as u64);

    let want = ids_where(&fleet.visible, |m| m.os_platform == OsPlatform::Windows10).len();
    let reply = list(
        &fleet.server,
        "?$filter=osPlatform eq 'Windows10'&$count=true&$top=3",
    )
    .await;
    assert_eq!(reply.json["@odata.count"], want as u64, "{}", reply.text);
    assert_eq!(value(&reply).len(), 3.min(want));

    let reply = list(&fleet.server, "?$filter=osPlatform eq 'Windows10'").await;
    assert!(
        reply.json.get("@odata.count").is_none(),
        "no count unless asked"
    );
    let reply = list(&fleet.server, "?$count=false").await;
    assert!(reply.json.get("@odata.count").is_none());
}

#[tokio::test]
async fn select_keeps_exactly_the_selected_properties() {
    let fleet = fleet_server().await;
    let reply = list(&fleet.server, "?$select=id,computerDnsName").await;
    let items = value(&reply);
    assert_eq!(items.len(), fleet.visible.len());
    for item in items {
        let keys: BTreeSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "computerDnsName"]), "{item}");
    }
    let by_id: std::collections::HashMap<&str, &str> = items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap(),
                i["computerDnsName"].as_str().unwrap(),
            )
        })
        .collect();
    for m in &fleet.visible {
        assert_eq!(by_id[m.id.as_str()], m.computer_dns_name);
    }
    // With a filter too.
    let reply = list(
        &fleet.server,
        "?$filter=osPlatform eq 'Linux'&$select=id,rbacGroupId",
    )
    .await;
    let want = ids_where(&fleet.visible, |m| m.os_platform == OsPlatform::Linux);
    assert_eq!(value(&reply).len(), want.len());
    for item in value(&reply) {
        assert_eq!(item.as_object().unwrap().len(), 2, "{item}");
        assert!(item["rbacGroupId"].is_i64(), "{item}");
    }
}

#[tokio::test]
async fn select_of_an_unknown_property_is_odata_error() {
    let fleet = fleet_server().await;
    let reply = fleet.server.get("/api/machines?$select=nosuch").await;
    let message = reply.assert_error(400, "ODataError");
    assert!(message.contains("nosuch"), "{message}");
    let reply = fleet.server.get("/api/machines?$select=id,nosuch").await;
    reply.assert_error(400, "ODataError");
}

#[tokio::test]
async fn orderby_last_seen() {
    let fleet = fleet_server().await;
    for (query, descending) in [
        ("?$orderby=lastSeen desc", true),
        ("?$orderby=lastSeen+desc", true),
        ("?$orderby=lastSeen", false),
        ("?$orderby=LastSeen asc", false),
    ] {
        let reply = list(&fleet.server, query).await;
        let seen: Vec<Timestamp> = value(&reply)
            .iter()
            .map(|m| Timestamp::parse(m["lastSeen"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(seen.len(), fleet.visible.len(), "{query}");
        let ordered = seen.windows(2).all(|w| {
            if descending {
                w[0] >= w[1]
            } else {
                w[0] <= w[1]
            }
        });
        assert!(ordered, "{query}: not ordered");
    }
    // With a filter and $top: the most recently seen Linux machines.
    let reply = list(
        &fleet.server,
        "?$filter=osPlatform eq 'Linux'&$orderby=lastSeen desc&$top=3",
    )
    .await;
    let mut linux: Vec<&Machine> = fleet
        .visible
        .iter()
        .filter(|m| m.os_platform == OsPlatform::Linux)
        .collect();
    linux.sort_by_key(|m| std::cmp::Reverse(m.last_seen));
    let want: Vec<String> = linux.iter().take(3).map(|m| m.id.clone()).collect();
    assert_eq!(reply.value_ids(), want);
}

#[tokio::test]
async fn orderby_rbac_group_then_id() {
    let fleet = fleet_server().await;
    let reply = list(&fleet.server, "?$orderby=rbacGroupId desc,id asc").await;
    let got = reply.value_ids();
    let mut want: Vec<&Machine> = fleet.visible.iter().collect();
    want.sort_by(|a, b| b.rbac_group_id.cmp(&a.rbac_group_id).then(a.id.cmp(&b.id)));
    let want: Vec<String> = want.iter().map(|m| m.id.clone()).collect();
    assert_eq!(got, want);
}

/// A filter that requires a tag is read from the tag index (a join): the
/// order, paging and count must still be those of the whole filter.
#[tokio::test]
async fn a_required_tag_keeps_order_paging_and_count() {
    let fleet = fleet_server().await;
    let vip = |m: &&Machine| has_tag(m, "VIP");
    let mut by_id: Vec<&Machine> = fleet.visible.iter().filter(vip).collect();
    assert!(by_id.len() >= 4, "the fleet has too few VIP machines");
    by_id.sort_by(|a, b| a.id.cmp(&b.id));
    let reply = list(&fleet.server, "?$filter=machineTags/any(t: t eq 'VIP')").await;
    let want: Vec<String> = by_id.iter().map(|m| m.id.clone()).collect();
    assert_eq!(reply.value_ids(), want, "default order is by id");

    let mut by_group = by_id.clone();
    by_group.sort_by(|a, b| b.rbac_group_id.cmp(&a.rbac_group_id).then(a.id.cmp(&b.id)));
    let reply = list(
        &fleet.server,
        "?$filter=machineTags/any(t: t eq 'VIP') and lastSeen gt 2000-01-01Z&$orderby=rbacGroupId desc&$count=true&$top=2&$skip=1",
    )
    .await;
    let want: Vec<String> = by_group[1..3].iter().map(|m| m.id.clone()).collect();
    assert_eq!(reply.value_ids(), want);
    assert_eq!(reply.json["@odata.count"], by_id.len(), "{}", reply.text);
}

#[tokio::test]
async fn orderby_an_unknown_or_unsupported_property_is_odata_error() {
    let fleet = fleet_server().await;
    for query in [
        "?$orderby=nosuch",
        "?$orderby=nosuch desc",
        "?$orderby=firstSeen",
        "?$orderby=lastSeen sideways",
    ] {
        let reply = fleet.server.get(&format!("/api/machines{query}")).await;
        reply.assert_error(400, "ODataError");
    }
}

#[tokio::test]
async fn expand_is_odata_error() {
    let fleet = fleet_server().await;
    let reply = fleet.server.get("/api/machines?$expand=x").await;
    let message = reply.assert_error(400, "ODataError");
    assert!(message.contains("$expand"), "{message}");
}

#[tokio::test]
async fn non_odata_parameters_are_ignored_and_options_combine() {
    let fleet = fleet_server().await;
    let want = ids_where(&fleet.visible, |m| m.rbac_group_id == 2);
    let reply = list(
        &fleet.server,
        "?api-version=1.0&$filter=rbacGroupId eq 2&$count=true&$select=id",
    )
    .await;
    let got: BTreeSet<String> = reply.value_ids().into_iter().collect();
    assert_eq!(got, want);
    assert_eq!(reply.json["@odata.count"], want.len() as u64);
}
