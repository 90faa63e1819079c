//! Investigation packages through the server: a device's upload and a
//! client's download of one package, beside the same bytes copied on disk,
//! and the process's anonymous resident memory meanwhile (the server runs in
//! this process: what it holds of a package shows as growth over the
//! baseline).

use palisade_device::client::{http_client, DeviceClient};
use palisade_device::{ActionResult, EnrollRequest};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// What one package's trip measured, in bytes a second and bytes.
pub struct PackageReport {
    pub bytes: u64,
    pub upload: f64,
    pub download: f64,
    pub disk_copy: f64,
    pub rss_before: u64,
    pub rss_peak: u64,
}

/// The process's anonymous resident memory now (its heaps and stacks; not
/// the database file's pages SQLite maps, which the kernel may drop), in
/// bytes (Linux: /proc/self/status).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Samples the resident set every 20 ms until `stop` is set; the peak.
fn watch_memory(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(resident_bytes());
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

pub async fn measure(
    origin: &str,
    authorization: &str,
    onboarding_token: &str,
    dir: &Path,
    megabytes: u64,
) -> anyhow::Result<PackageReport> {
    let bytes = megabytes * 1024 * 1024;
    let package = dir.join("package.bin");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&package)?);
        let mut block = vec![0u8; 1024 * 1024];
        for n in 0..megabytes {
            rand::fill(&mut block[..]);
            block[0] = n as u8;
            file.write_all(&block)?;
        }
        file.flush()?;
    }
    let started = Instant::now();
    std::fs::copy(&package, dir.join("package.copy"))?;
    let disk_copy = bytes as f64 / started.elapsed().as_secs_f64();

    let http = http_client(None)?;
    let device = DeviceClient::new(http.clone(), origin);
    let enrollment = device
        .enroll(onboarding_token, &enroll_request())
        .await
        .map_err(|e| anyhow::anyhow!("enrolling: {e}"))?;
    let device = device.with_credential(&enrollment.credential);
    let created: serde_json::Value = http
        .post(format!(
            "{origin}/api/machines/{}/collectInvestigationPackage",
            enrollment.machine_id
        ))
        .header("authorization", authorization)
        .json(&serde_json::json!({"Comment": "benchmark"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let action_id = created["id"].as_str().unwrap_or_default().to_string();
    device
        .start(&action_id)
        .await
        .map_err(|e| anyhow::anyhow!("starting: {e}"))?;

    let rss_before = resident_bytes();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_memory(stop.clone());
    let started = Instant::now();
    let file = tokio::fs::File::open(&package).await?;
    device
        .upload_package(&action_id, file, bytes)
        .await
        .map_err(|e| anyhow::anyhow!("uploading: {e}"))?;
    let upload = bytes as f64 / started.elapsed().as_secs_f64();
    device
        .finish(&action_id, &ActionResult::succeeded("benchmark package"))
        .await
        .map_err(|e| anyhow::anyhow!("finishing: {e}"))?;
    let link: serde_json::Value = http
        .get(format!(
            "{origin}/api/machineactions/{action_id}/GetPackageUri"
        ))
        .header("authorization", authorization)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let url = link["value"].as_str().unwrap_or_default();
    let started = Instant::now();
    let mut response = http.get(url).send().await?.error_for_status()?;
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
    }
    let download = received as f64 / started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rss_peak = watcher.join().unwrap_or(0);
    anyhow::ensure!(received == bytes, "downloaded {received} of {bytes} bytes");
    Ok(PackageReport {
        bytes,
        upload,
        download,
        disk_copy,
        rss_before,
        rss_peak,
    })
}

fn enroll_request() -> EnrollRequest {
    EnrollRequest {
        hardware_id: "bench:package-device".into(),
        computer_dns_name: "bench-package-device".into(),
        os_platform: palisade_contract::OsPlatform::Linux,
        os_version: None,
        version: None,
        os_build: None,
        os_architecture: Some("x86_64".into()),
        agent_version: concat!("palisade-bench/", env!("CARGO_PKG_VERSION")).into(),
        ip_addresses: vec![],
        last_external_ip_address: None,
        capabilities: vec![],
        credential: None,
    }
}
