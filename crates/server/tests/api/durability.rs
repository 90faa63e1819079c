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
                    Ok(r) => panic!("unexpected status {}", r.status()),
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
