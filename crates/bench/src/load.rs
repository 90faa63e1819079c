//! A small closed-loop load generator: N requests in flight on kept-alive
//! connections for a fixed time, with every latency recorded.

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One planned request: method, path, body, and its own `Authorization` if
/// it does not send the run's.
type Planned = (Method, String, Option<String>, Option<String>);

/// The n-th request of a run, or `None` when the plan has no more to send.
type MakeRequest = Arc<dyn Fn(usize) -> Option<Planned> + Send + Sync>;

/// What each request of a run is: the n-th request's method, path and body.
#[derive(Clone)]
pub struct RequestPlan(MakeRequest);

impl RequestPlan {
    pub fn get(path: impl Fn(usize) -> String + Send + Sync + 'static) -> Self {
        RequestPlan(Arc::new(move |n| Some((Method::GET, path(n), None, None))))
    }

    /// POSTs, each with its own `Authorization` (a device's credential): `(authorization, path, body)`.
    pub fn post_as(
        request: impl Fn(usize) -> (String, String, String) + Send + Sync + 'static,
    ) -> Self {
        RequestPlan(Arc::new(move |n| {
            let (authorization, path, body) = request(n);
            Some((Method::POST, path, Some(body), Some(authorization)))
        }))
    }

    /// POSTs; `request` answers `None` when it has no more to send.
    pub fn post(
        request: impl Fn(usize) -> Option<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        RequestPlan(Arc::new(move |n| {
            request(n).map(|(path, body)| (Method::POST, path, Some(body), None))
        }))
    }
}

pub struct LoadReport {
    pub completed: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub concurrency: usize,
}

impl LoadReport {
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Throughput, load and latency on one line.
    pub fn summary(&self) -> String {
        format!(
            "{:>8.0} req/s  at {:>2} in flight  (p50 {:.2} ms, p99 {:.2} ms){}",
            self.throughput(),
            self.concurrency,
            self.ms(0.5),
            self.ms(0.99),
            self.failures()
        )
    }

    fn failures(&self) -> String {
        if self.failed == 0 {
            String::new()
        } else {
            format!("  [{} unexpected statuses]", self.failed)
        }
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `path` once and returns its body.
pub async fn fetch(origin: &str, authorization: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let request = Request::get(format!("{origin}{path}"))
        .header("authorization", authorization)
        .body(Full::new(Bytes::new()))?;
    let response = client().request(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    Ok(response.into_body().collect().await?.to_bytes().to_vec())
}

/// Every request carries `authorization` (the bench app's bearer token).
pub async fn run_load(
    origin: &str,
    authorization: &str,
    plan: RequestPlan,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    let client = client();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, plan, counter, origin, authorization) = (
            client.clone(),
            plan.clone(),
            counter.clone(),
            origin.to_string(),
            authorization.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            let (mut completed, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((method, path, body, own_authorization)) = (plan.0)(n) else {
                    break;
                };
                let mut builder = Request::builder()
                    .method(method)
                    .uri(format!("{origin}{path}"))
                    .header(
                        "authorization",
                        own_authorization.as_deref().unwrap_or(&authorization),
                    );
                if body.is_some() {
                    builder = builder.header("content-type", "application/json");
                }
                let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
                let sent = Instant::now();
                let response = client.request(request).await?;
                let ok = response.status().is_success();
                response.into_body().collect().await?;
                latency.record(sent.elapsed().as_micros() as u64).ok();
                if ok {
                    completed += 1;
                } else {
                    failed += 1;
                }
            }
            anyhow::Ok((latency, completed, failed))
        }));
    }
    let mut report = LoadReport {
        completed: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new(3)?,
        concurrency,
    };
    for task in tasks {
        let (latency, completed, failed) = task.await??;
        report.latency_us.add(latency)?;
        report.completed += completed;
        report.failed += failed;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
