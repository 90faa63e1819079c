//! A 200/201 answer means the change is on disk: it survives a kill -9.

use crate::harness::ServerProcess;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn demo_machine_ids(client: &reqwest::Client, origin: &str, n: usize) -> Vec<String> {
    let url = format!(
        "{origin}/api/machines?$filter=osPlatform eq 'Windows11' and onboardingStatus eq 'Onboarded'&$top={n}"
    );
    let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// What a server acknowledged before it was killed.
pub(crate) struct Acknowledged {
    machines: Vec<String>,
    /// (machine, tag) added.
    tags: Vec<(String, String)>,
    /// Scan actions created.
    actions: Vec<String>,
}

/// Writes tags and creates actions, many in flight, until `server` has
/// acknowledged 300 tags; then kills it with SIGKILL mid-write.
pub(crate) async fn write_until_killed(mut server: ServerProcess) -> Acknowledged {
    let client = server.client.clone();
    let origin = server.origin.clone();
    let machines = demo_machine_ids(&client, &origin, 8).await;
    assert_eq!(machines.len(), 8, "the demo fleet has Windows 11 machines");

    // Tag writes and isolate actions, many in flight, until the server is killed.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let actions = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for worker in 0..16 {
        let (client, origin, machines) = (client.clone(), origin.clone(), machines.clone());
        let (acknowledged, actions, acks) = (acknowledged.clone(), actions.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let machine = &machines[(worker + n) % machines.len()];
                let tag = format!("w{worker}-n{n}");
                let reply = client
                    .post(format!("{origin}/api/machines/{machine}/tags"))
                    .json(&json!({"Value": tag, "Action": "Add"}))
                    .send()
                    .await;
                match reply {
                    Ok(r) if r.status() == 200 => {
                        acknowledged.lock().unwrap().push((machine.clone(), tag));
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    // Not acknowledged: the store was busy past its wait (a
                    // CI machine under load), which clients retry.
                    Ok(r) if r.status() == 503 => {
                        let body = r.text().await.unwrap_or_default();
                        eprintln!("a tag write was answered 503 (retried): {body}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(r) => {
                        let status = r.status();
                        panic!(
                            "unexpected status {status}: {}",
                            r.text().await.unwrap_or_default()
                        )
                    }
                    Err(_) => return, // the server is gone
                }
                if worker == 0 {
                    let reply = client
                        .post(format!("{origin}/api/machines/{machine}/runAntiVirusScan"))
                        .json(&json!({"Comment": "durability", "ScanType": "Quick"}))
                        .send()
                        .await;
                    if let Ok(r) = reply {
                        if r.status() == 201 {
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            if let Some(id) = body["id"].as_str() {
                                actions.lock().unwrap().push(id.to_string());
                            }
                        }
                    }
                }
            }
        }));
    }
    while acks.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = Acknowledged {
        machines,
        tags: acknowledged.lock().unwrap().clone(),
        actions: actions.lock().unwrap().clone(),
    };
    assert!(acknowledged.tags.len() >= 300);
    assert!(
        !acknowledged.actions.is_empty(),
        "at least one scan was acknowledged"
    );
    acknowledged
}

/// Asserts that `server` has every write in `acknowledged`.
pub(crate) async fn assert_kept(server: &ServerProcess, acknowledged: &Acknowledged) {
    let client = server.client.clone();
    let origin = server.origin.clone();
    for machine in &acknowledged.machines {
        let body: Value = client
            .get(format!("{origin}/api/machines/{machine}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tags: Vec<&str> = body["machineTags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for (_, tag) in acknowledged.tags.iter().filter(|(m, _)| m == machine) {
            assert!(
                tags.contains(&tag.as_str()),
                "acknowledged tag {tag} lost on {machine}"
            );
        }
    }
    for id in &acknowledged.actions {
        let reply = client
            .get(format!("{origin}/api/machineactions/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "acknowledged action {id} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let acknowledged = write_until_killed(server).await;
    let restarted = ServerProcess::start_in(dir.path(), &[]).await;
    assert_kept(&restarted, &acknowledged).await;
}

/// Writes in flight together commit together (both stores batch them). A
/// refused one among them, a bulk tag that names a machine that exists and
/// then one that does not, is undone alone: the first machine is not left
/// tagged. Every acknowledged write, and the audit entry of every answered
/// request (written before the answer), survives a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_among_concurrent_ones_is_undone_alone_and_the_rest_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_in(dir.path(), &[]).await;
    let (client, origin) = (server.client.clone(), server.origin.clone());
    let machines = demo_machine_ids(&client, &origin, 8).await;
    assert_eq!(machines.len(), 8, "the demo fleet has Windows 11 machines");
    let missing = "f".repeat(40);

    // (machine, tag, request id) acknowledged; (tag, request id) refused.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(String, String, String)>::new()));
    let refused = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let mut writers = Vec::new();
    for worker in 0..16 {
        let (client, origin, machines) = (client.clone(), origin.clone(), machines.clone());
        let (acknowledged, refused, missing) =
            (acknowledged.clone(), refused.clone(), missing.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let machine = &machines[(worker + n) % machines.len()];
                let refusing = n % 4 == 3;
                let tag = match refusing {
                    true => format!("refused-w{worker}-n{n}"),
                    false => format!("w{worker}-n{n}"),
                };
                let request = match refusing {
                    true => client
                        .post(format!(
                            "{origin}/api/machines/AddOrRemoveTagForMultipleMachines"
                        ))
                        .json(&json!({"Value": tag, "Action": "Add",
                                      "MachineIds": [machine, missing]})),
                    false => client
                        .post(format!("{origin}/api/machines/{machine}/tags"))
                        .json(&json!({"Value": tag, "Action": "Add"})),
                };
                let Ok(reply) = request.send().await else {
                    return; // the server is gone
                };
                let request_id = reply.headers()["request-id"].to_str().unwrap().to_string();
                match (refusing, reply.status().as_u16()) {
                    (false, 200) => {
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((machine.clone(), tag, request_id));
                    }
                    (true, 404) => refused.lock().unwrap().push((tag, request_id)),
                    (_, status) => panic!("unexpected status {status} for {tag}"),
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 300 || refused.lock().unwrap().len() < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }

    let restarted = ServerProcess::start_in(dir.path(), &[]).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    for machine in &machines {
        let body: Value = restarted
            .client
            .get(format!("{}/api/machines/{machine}", restarted.origin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tags: Vec<&str> = body["machineTags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for (_, tag, _) in acknowledged.iter().filter(|(m, _, _)| m == machine) {
            assert!(
                tags.contains(&tag.as_str()),
                "acknowledged tag {tag} lost on {machine}"
            );
        }
        let undone: Vec<_> = tags.iter().filter(|t| t.starts_with("refused-")).collect();
        assert!(
            undone.is_empty(),
            "refused tags kept on {machine}: {undone:?}"
        );
    }
    let log: Value = restarted
        .client
        .get(format!("{}/api/auditlog", restarted.origin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let audited: std::collections::HashMap<&str, u64> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["requestId"].as_str().unwrap(),
                e["result"].as_u64().unwrap(),
            )
        })
        .collect();
    for (_, tag, request_id) in &acknowledged {
        assert_eq!(
            audited.get(request_id.as_str()),
            Some(&200),
            "audit of {tag}"
        );
    }
    for (tag, request_id) in &refused {
        assert_eq!(
            audited.get(request_id.as_str()),
            Some(&404),
            "audit of {tag}"
        );
    }
}
