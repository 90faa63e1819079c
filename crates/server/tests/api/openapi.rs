//! The OpenAPI document is generated from the routes: every operation it
//! lists is served, and the API is all there.

use crate::harness::*;
use palisade_contract::OsPlatform;

#[tokio::test]
async fn every_documented_operation_is_served() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = server.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert!(reply.json["openapi"].as_str().unwrap().starts_with("3."));
    let paths = reply.json["paths"].as_object().expect("paths");
    for expected in [
        "/api/machines",
        "/api/machines/{id}",
        "/api/machines/{id}/tags",
        "/api/machines/AddOrRemoveTagForMultipleMachines",
        "/api/machines/findbytag",
        "/api/machines/{id}/setDeviceValue",
        "/api/machines/{id}/isolate",
        "/api/machines/{id}/unisolate",
        "/api/machines/{id}/offboard",
        "/api/machines/{id}/restrictCodeExecution",
        "/api/machines/{id}/unrestrictCodeExecution",
        "/api/machines/{id}/runAntiVirusScan",
        "/api/machines/{id}/collectInvestigationPackage",
        "/api/machines/{id}/StopAndQuarantineFile",
        "/api/machineactions",
        "/api/machineactions/{id}",
        "/api/machineactions/{id}/cancel",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", &m.id);
        for method in ["get", "post", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let request = match method {
                "get" => server.client.get(server.url(&concrete)),
                "post" => server
                    .client
                    .post(server.url(&concrete))
                    .json(&serde_json::json!({})),
                _ => server
                    .client
                    .patch(server.url(&concrete))
                    .json(&serde_json::json!({})),
            };
            let reply = server.send(request).await;
            // Served: anything but the router's own "no such route" and "wrong method".
            assert_ne!(reply.json["error"]["code"], "NotFound", "{method} {path}");
            assert_ne!(reply.status, 405, "{method} {path}");
            assert!(
                reply.status.as_u16() < 500,
                "{method} {path}: {}",
                reply.text
            );
        }
    }
    assert!(operations >= 19, "{operations} operations");
}

#[tokio::test]
async fn health_answers_once_the_store_is_open() {
    let server = TestServer::start().await;
    let reply = server.get("/healthz").await;
    assert_eq!(reply.status, 200);
}
