//! Palisade benchmark harness.
//!
//! One run measures the API and, beside each figure, the ceiling it is compared
//! with, on the same machine and in the same run:
//! - writes (tag POST, isolate POST) against the raw commit rate of SQLite with
//!   the very settings Palisade uses, without HTTP;
//! - reads (GET machine, a `machineTags/any(...)` filter over the fleet) against
//!   the same HTTP stack serving a static body of the same bytes;
//! - alerts and indicators: incremental polling (`lastUpdateTime gt T`) over
//!   `--alerts` alerts against the static body of its answer, and indicator
//!   imports of 500 against raw commits of 500 rows each.
//!
//! Throughput is taken at saturation (`--concurrency`), latency at moderate load
//! (`--moderate`). Run it with `cargo run --release -p palisade-bench`.

mod devices;
mod load;
mod packages;
mod postgres;

// Requests allocate many small, short-lived objects (rows, JSON); mimalloc
// serves those markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use axum::body::Bytes;
use axum::routing::get;
use clap::Parser;
use load::{run_load, LoadReport, RequestPlan};
use palisade_contract::requests::{ActionKind, IsolationType};
use palisade_contract::Permission;
use palisade_contract::{Machine, OnboardingStatus, Timestamp};
use palisade_domain::caller::DEFAULT_RETENTION_DAYS;
use palisade_domain::rules::platform;
use palisade_domain::{Palisade, SystemClock};
use palisade_identity::admin::{Admin, Administrator};
use palisade_identity::{TokenRequest, TokenVersion};
use palisade_server::app::{self, AppState};
use palisade_server::demo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Measure Palisade beside its ceilings (run with --release).")]
struct Args {
    /// Machines in the fleet.
    #[arg(long, default_value_t = 100_000)]
    machines: usize,
    /// Machines carrying the tag the filter benchmark looks for (a rare tag,
    /// as an incident tag is; raise it to measure larger answers).
    #[arg(long, default_value_t = 5)]
    tagged: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in flight for throughput.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests in flight for latency ("moderate load").
    #[arg(long, default_value_t = 4)]
    moderate: usize,
    /// Devices enrolled for the check-in measurement.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Simulated devices long-polling while isolations are delivered.
    #[arg(long, default_value_t = 10_000)]
    connected: usize,
    /// Isolations whose delivery is timed.
    #[arg(long, default_value_t = 1_000)]
    isolations: usize,
    /// Alerts raised for the alert-listing measurement.
    #[arg(long, default_value_t = 100_000)]
    alerts: usize,
    /// Size of the investigation package moved through the server, in MiB.
    #[arg(long, default_value_t = 100)]
    package_mib: u64,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Sections::All)]
    only: Sections,
    /// Measure on PostgreSQL instead of SQLite: the server at this URL (its
    /// maintenance database, e.g. postgres://postgres@127.0.0.1:5432/postgres).
    /// The benchmark creates a database of its own there and drops it after.
    #[arg(long)]
    postgres: Option<String>,
    /// Internal: run this many simulated devices against --fleet-server
    /// (the connected fleet's own process).
    #[arg(long, hide = true, requires_all = ["fleet_server", "fleet_token"])]
    fleet_of: Option<usize>,
    #[arg(long, hide = true)]
    fleet_server: Option<String>,
    #[arg(long, hide = true)]
    fleet_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sections {
    All,
    /// The MDE API and its ceilings.
    Api,
    /// Only the API's writes (tags, isolate) beside the raw commit rate.
    Writes,
    /// Only the API's reads (GET machine, the tag filter) beside the static ceiling.
    Reads,
    /// The device plane: check-ins and action delivery.
    Devices,
    /// Alert listing and indicator import.
    Alerts,
    /// An investigation package's upload and download.
    Packages,
}

impl Sections {
    fn devices(self) -> bool {
        matches!(self, Sections::All | Sections::Devices)
    }
    fn writes(self) -> bool {
        matches!(self, Sections::All | Sections::Api | Sections::Writes)
    }
    fn reads(self) -> bool {
        matches!(self, Sections::All | Sections::Api | Sections::Reads)
    }
    fn alerts(self) -> bool {
        matches!(self, Sections::All | Sections::Api | Sections::Alerts)
    }
    fn packages(self) -> bool {
        matches!(self, Sections::All | Sections::Packages)
    }
}

/// Indicators per import, as MDE allows at most.
const IMPORT_BATCH: usize = 500;
/// Distinct batches imported: within the tenant's 15,000 indicators, so
/// that every import is taken (the first of each creates, the rest update).
const IMPORT_BATCHES: usize = 29;

const FILTER_TAG: &str = "bench-x";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(devices), Some(server), Some(token)) =
        (args.fleet_of, &args.fleet_server, &args.fleet_token)
    {
        return tokio::runtime::Runtime::new()?
            .block_on(devices::run_fleet(server, token, devices));
    }
    let dir = tempfile::tempdir()?;
    let duration = Duration::from_secs(args.seconds);

    println!(
        "Palisade benchmark: {} machines, {}s per measurement, {} in flight (latency at {})",
        args.machines, args.seconds, args.concurrency, args.moderate
    );
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (database, raw_commits, raw_batches) = match &args.postgres {
        None => {
            let raw_commits = raw_commit_rate(&dir.path().join("raw.db"), duration, 1)?;
            println!(
                "ceiling  raw SQLite commits (synchronous=FULL, WAL, no HTTP): {raw_commits:.0}/s"
            );
            let raw_batches =
                raw_commit_rate(&dir.path().join("raw-batches.db"), duration, IMPORT_BATCH)?;
            println!("ceiling  raw SQLite commits of {IMPORT_BATCH} rows: {raw_batches:.0}/s");
            let database = format!("sqlite://{}", dir.path().join("palisade.db").display());
            (database, raw_commits, raw_batches)
        }
        Some(server) => server_runtime.block_on(async {
            let database = postgres::create_database(server).await?;
            let raw_commits = postgres::raw_commit_rate(&database, duration, 1).await?;
            println!(
                "ceiling  raw PostgreSQL commits (synchronous_commit=on, one connection, no HTTP): {raw_commits:.0}/s"
            );
            let raw_batches = postgres::raw_commit_rate(&database, duration, IMPORT_BATCH).await?;
            println!("ceiling  raw PostgreSQL commits of {IMPORT_BATCH} rows: {raw_batches:.0}/s");
            anyhow::Ok((database, raw_commits, raw_batches))
        })?,
    };
    let served = server_runtime.block_on(start_server(&database, &args))?;
    let (origin, authorization, fleet) = (
        served.origin.clone(),
        served.authorization.clone(),
        served.fleet.clone(),
    );
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let eligible: Arc<Vec<String>> = Arc::new(isolatable(&fleet));
    println!(
        "fleet    {} machines seeded, {} can be isolated",
        fleet.len(),
        eligible.len()
    );
    let visible = eligible.clone();

    let measure_with = |name: &str,
                        busy_plan: RequestPlan,
                        moderate_plan: RequestPlan|
     -> anyhow::Result<(LoadReport, LoadReport)> {
        let busy = client_runtime.block_on(run_load(
            &origin,
            &authorization,
            busy_plan,
            args.concurrency,
            duration,
        ))?;
        let moderate = client_runtime.block_on(run_load(
            &origin,
            &authorization,
            moderate_plan,
            args.moderate,
            duration,
        ))?;
        println!("{name:<44} {}", busy.summary());
        println!("{:<44} {}", "", moderate.summary());
        Ok((busy, moderate))
    };
    let measure = |name: &str, plan: RequestPlan| measure_with(name, plan.clone(), plan);

    if args.only.devices() {
        println!("\ndevice plane");
        let flushes = {
            let _entered = server_runtime.enter();
            devices::FlushLog::spawn(served.devices.clone())
        };
        let started = Instant::now();
        let credentials = client_runtime.block_on(devices::enroll(
            &origin,
            &served.onboarding_token,
            args.devices,
            "bench",
        ))?;
        println!(
            "setup    enrolled {} devices over HTTP in {:.1}s",
            credentials.len(),
            started.elapsed().as_secs_f64()
        );
        flushes.take();
        let check_ins = client_runtime.block_on(devices::measure_check_ins(
            &origin,
            credentials,
            args.concurrency,
            duration,
        ))?;
        std::thread::sleep(Duration::from_millis(1_500));
        let (rows, longest) = flushes.take();
        println!("{:<44} {}", "POST /device/v1/checkin", check_ins.summary());
        println!(
            "{:<44} {rows} rows written in flushes of at most {:.0} ms",
            "  coalesced check-in writes",
            longest.as_secs_f64() * 1000.0
        );
        println!(
            "  at a 60 s check-in interval this node serves {:.0} devices (target 100,000)",
            check_ins.throughput() * 60.0
        );
        // On PostgreSQL the devices wait on a second node: delivery crosses nodes.
        let fleet_origin = match &args.postgres {
            Some(_) => server_runtime.block_on(second_node(&database))?,
            None => origin.clone(),
        };
        let delivery = client_runtime.block_on(devices::measure_delivery(
            &origin,
            &fleet_origin,
            &authorization,
            &served.onboarding_token,
            args.connected,
            args.isolations,
        ))?;
        let path = if fleet_origin == origin {
            "isolate POST -> device Succeeded"
        } else {
            "isolate POST, node a -> device on node b done"
        };
        println!("{path:<44} {} (target p99 < 1 s)", delivery.summary());
    }

    let mut ratios = Vec::new();
    if args.only.writes() {
        println!("\nwrites");
        let tag_machines = visible.clone();
        let (tags, _) = measure(
            "POST /api/machines/{id}/tags",
            RequestPlan::post(move |n| {
                let id = &tag_machines[n % tag_machines.len()];
                let action = if (n / tag_machines.len()).is_multiple_of(2) {
                    "Add"
                } else {
                    "Remove"
                };
                Some((
                    format!("/api/machines/{id}/tags"),
                    format!(r#"{{"Value":"bench","Action":"{action}"}}"#),
                ))
            }),
        )?;
        // Each isolate needs a machine with no isolation pending: each load level
        // takes its own half of the isolatable machines, and stops when they run out.
        let isolate_plan = |machines: Vec<String>| {
            let next = AtomicUsize::new(0);
            RequestPlan::post(move |_| {
                let machine = machines.get(next.fetch_add(1, Ordering::Relaxed))?;
                Some((
                    format!("/api/machines/{machine}/isolate"),
                    r#"{"Comment":"bench","IsolationType":"Full"}"#.to_string(),
                ))
            })
        };
        let (busy_half, moderate_half) = eligible.split_at(eligible.len() / 2);
        let (isolates, _) = measure_with(
            "POST /api/machines/{id}/isolate",
            isolate_plan(busy_half.to_vec()),
            isolate_plan(moderate_half.to_vec()),
        )?;

        ratios.push(("tag POST / raw commits", tags.throughput(), raw_commits));
        ratios.push((
            "isolate POST / raw commits",
            isolates.throughput(),
            raw_commits,
        ));
    }
    if args.only.reads() {
        println!("\nreads");
        // Steady state: a server that has shown each machine once holds it in
        // its machine cache (SQLite); a first read of every machine costs more.
        let started = Instant::now();
        let listed = client_runtime.block_on(list_fleet(&origin, &authorization))?;
        println!(
            "warm-up  listed the {listed} machines once in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let get_machines = visible.clone();
        let one_machine = format!("/api/machines/{}", visible[0]);
        let (gets, _) = measure(
            "GET /api/machines/{id}",
            RequestPlan::get(move |n| {
                format!("/api/machines/{}", get_machines[n % get_machines.len()])
            }),
        )?;
        let filter = format!("/api/machines?$filter=machineTags/any(t:%20t%20eq%20'{FILTER_TAG}')");
        let filter_path = filter.clone();
        let (filters, _) = measure(
            &format!(
                "GET $filter=machineTags/any(...) ({} of {})",
                args.tagged, args.machines
            ),
            RequestPlan::get(move |_| filter_path.clone()),
        )?;

        println!("\nceilings: the same HTTP stack serving the same bytes from memory");
        let machine_body =
            client_runtime.block_on(load::fetch(&origin, &authorization, &one_machine))?;
        let filter_body = client_runtime.block_on(load::fetch(&origin, &authorization, &filter))?;
        let (static_machine, _) = measure(
            "static body (GET machine bytes)",
            RequestPlan::get(static_route(machine_body)),
        )?;
        let (static_filter, _) = measure(
            "static body (filter result bytes)",
            RequestPlan::get(static_route(filter_body)),
        )?;

        ratios.push((
            "GET machine / static",
            gets.throughput(),
            static_machine.throughput(),
        ));
        ratios.push((
            "filter any() / static",
            filters.throughput(),
            static_filter.throughput(),
        ));
    }
    if args.only.alerts() {
        println!("\nalerts and indicators");
        let started = Instant::now();
        server_runtime.block_on(raise_alerts(&served, args.alerts))?;
        println!(
            "setup    raised {} alerts with evidence in {:.1}s",
            args.alerts,
            started.elapsed().as_secs_f64()
        );
        // A poller's next page: the 100 alerts updated since its last one.
        let newest: serde_json::Value = serde_json::from_slice(&client_runtime.block_on(
            load::fetch(
                &origin,
                &authorization,
                "/api/alerts?$orderby=lastUpdateTime%20desc&$skip=100&$top=1&$select=lastUpdateTime",
            ),
        )?)?;
        let since = newest["value"][0]["lastUpdateTime"]
            .as_str()
            .context("no alert to poll from")?
            .to_string();
        let poll = format!(
            "/api/alerts?$filter=lastUpdateTime%20gt%20{since}&$orderby=lastUpdateTime%20asc&$top=100"
        );
        let poll_path = poll.clone();
        let (polls, _) = measure(
            &format!("GET alerts lastUpdateTime gt T (100 of {})", args.alerts),
            RequestPlan::get(move |_| poll_path.clone()),
        )?;
        let poll_body = client_runtime.block_on(load::fetch(&origin, &authorization, &poll))?;
        let (static_poll, _) = measure(
            "static body (alert page bytes)",
            RequestPlan::get(static_route(poll_body)),
        )?;
        let (imports, _) = measure(
            &format!("POST /api/indicators/import ({IMPORT_BATCH} a call)"),
            RequestPlan::post(|n| {
                let batch = n % IMPORT_BATCHES;
                let indicators: Vec<String> = (0..IMPORT_BATCH)
                    .map(|i| {
                        format!(
                            r#"{{"indicatorValue":"i{i}.b{batch}.bench.example","indicatorType":"DomainName","action":"Block","title":"bench {n}","description":"bench"}}"#
                        )
                    })
                    .collect();
                Some((
                    "/api/indicators/import".to_string(),
                    format!(r#"{{"Indicators":[{}]}}"#, indicators.join(",")),
                ))
            }),
        )?;
        ratios.push((
            "alert poll / static",
            polls.throughput(),
            static_poll.throughput(),
        ));
        ratios.push((
            "import of 500 / raw commits of 500",
            imports.throughput(),
            raw_batches,
        ));
    }
    if args.only.packages() {
        println!("\ninvestigation packages");
        let report = server_runtime.block_on(packages::measure(
            &origin,
            &authorization,
            &served.onboarding_token,
            dir.path(),
            args.package_mib,
        ))?;
        let mib = |rate: f64| rate / 1024.0 / 1024.0;
        println!(
            "{:<44} {:.0} MiB/s",
            format!("PUT package ({} MiB, streamed)", args.package_mib),
            mib(report.upload)
        );
        println!(
            "{:<44} {:.0} MiB/s",
            "GET package link (streamed)",
            mib(report.download)
        );
        println!(
            "{:<44} {:.0} MiB/s",
            "ceiling  the same bytes copied on disk",
            mib(report.disk_copy)
        );
        println!(
            "{:<44} {:.0} MiB before, {:.0} MiB at most during ({:.0} MiB more for a {} MiB package)",
            "memory (anonymous resident, server + bench)",
            report.rss_before as f64 / 1048576.0,
            report.rss_peak as f64 / 1048576.0,
            report.rss_peak.saturating_sub(report.rss_before) as f64 / 1048576.0,
            report.bytes / 1048576
        );
        ratios.push((
            "package upload / disk copy",
            report.upload,
            report.disk_copy,
        ));
        ratios.push((
            "package download / disk copy",
            report.download,
            report.disk_copy,
        ));
    }
    if !ratios.is_empty() {
        println!("\nratios (target: writes >= 50% of raw commits, reads >= 50% of static)");
    }
    for (name, value, ceiling) in ratios {
        println!(
            "  {name:<40} {:>6.0}% ({value:.0}/s vs {ceiling:.0}/s)",
            100.0 * value / ceiling
        );
    }
    finish(&server_runtime, &args, &database)
}

/// Lists every machine the API shows, page by page; how many.
async fn list_fleet(origin: &str, authorization: &str) -> anyhow::Result<usize> {
    let mut path = "/api/machines".to_string();
    let mut listed = 0;
    loop {
        let page: serde_json::Value =
            serde_json::from_slice(&load::fetch(origin, authorization, &path).await?)?;
        listed += page["value"].as_array().map_or(0, Vec::len);
        match page["@odata.nextLink"].as_str() {
            Some(next) => path = next.trim_start_matches(origin).to_string(),
            None => return Ok(listed),
        }
    }
}

/// Drops the benchmark's PostgreSQL database (SQLite's goes with its directory).
fn finish(runtime: &tokio::runtime::Runtime, args: &Args, database: &str) -> anyhow::Result<()> {
    if let Some(server) = &args.postgres {
        runtime.block_on(postgres::drop_database(server, database))?;
    }
    Ok(())
}

/// Another node serving `database` (for the devices); its origin.
async fn second_node(database: &str) -> anyhow::Result<String> {
    let store = app::open_store(database, Default::default()).await?;
    let palisade = Palisade::new(store, Arc::new(SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let state = AppState::new(palisade, &app::Settings::default(), local.to_string());
    app::spawn_check_in_writer(&state.devices);
    let router = app::http_app(state, axum::Router::new());
    tokio::spawn(palisade_server::transport::serve(
        listener,
        router,
        None,
        palisade_server::transport::Limits::default(),
        std::future::pending(),
    ));
    Ok(format!("http://{local}"))
}

/// Bodies the static ceiling routes serve (captured from the real API in
/// this run), by their number in `/bench/static/{n}`.
static STATIC_BODIES: std::sync::RwLock<Vec<Bytes>> = std::sync::RwLock::new(Vec::new());

/// Keeps `body` to be served statically; the plan that asks for it.
fn static_route(body: Vec<u8>) -> impl Fn(usize) -> String + Send + Sync + 'static {
    let mut bodies = STATIC_BODIES.write().unwrap_or_else(|e| e.into_inner());
    bodies.push(Bytes::from(body));
    let path = format!("/bench/static/{}", bodies.len() - 1);
    move |_| path.clone()
}

/// Raises `count` alerts on the fleet's machines through the domain (as the
/// device plane and the control plane do), 64 at a time.
async fn raise_alerts(served: &Served, count: usize) -> anyhow::Result<()> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    let mut raising = tokio::task::JoinSet::new();
    for n in 0..count {
        let machine = &served.fleet[n % served.fleet.len()];
        let alert = palisade_device::detections::random_alert(
            &mut rng,
            &palisade_device::detections::Target::of(machine),
            Timestamp::now(),
        );
        let (palisade, tenant) = (served.palisade.clone(), served.tenant_id.clone());
        raising.spawn(async move { palisade.raise_alert(&tenant, alert).await });
        if raising.len() >= 64 {
            raising
                .join_next()
                .await
                .context("a raise")??
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
    }
    while let Some(raised) = raising.join_next().await {
        raised?.map_err(|e| anyhow::anyhow!(e.message))?;
    }
    Ok(())
}

/// A server running for the benchmark.
struct Served {
    origin: String,
    /// `Authorization` of an app holding every permission.
    authorization: String,
    fleet: Vec<Machine>,
    devices: palisade_domain::devices::DevicePlane,
    onboarding_token: String,
    palisade: Palisade,
    tenant_id: String,
}

/// Serves a fleet with rate limits off.
async fn start_server(database: &str, args: &Args) -> anyhow::Result<Served> {
    let store = app::open_store(database, Default::default()).await?;
    let palisade = Palisade::new(store, Arc::new(SystemClock));
    let tenant_id = app::ensure_default_tenant(&palisade).await?;
    let started = Instant::now();
    let mut fleet = demo::fleet(args.machines, 7, Timestamp::now());
    for machine in fleet.iter_mut().take(args.tagged) {
        machine.machine_tags.push(FILTER_TAG.to_string());
    }
    for chunk in fleet.chunks(5_000) {
        palisade.store().put_machines(&tenant_id, chunk).await?;
    }
    println!(
        "setup    seeded {} machines in {:.1}s",
        fleet.len(),
        started.elapsed().as_secs_f64()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let state = AppState::new(palisade, &app::Settings::default(), local.to_string());
    let admin = Admin::new(
        state.palisade.store().clone(),
        state.palisade.clock().clone(),
        Administrator {
            kind: "cli",
            name: "palisade-bench".into(),
        },
    );
    let every_permission = <Permission as strum::VariantArray>::VARIANTS;
    let (bench_app, secret) = admin
        .put_app(&tenant_id, None, "palisade-bench", every_permission)
        .await?;
    let origin = format!("http://{local}");
    let token = state
        .tokens
        .issue(
            &tenant_id,
            TokenVersion::V2,
            &origin,
            local.ip(),
            TokenRequest {
                grant_type: Some("client_credentials".into()),
                client_id: Some(bench_app.client_id),
                client_secret: Some(secret),
                scope: Some("https://api.securitycenter.microsoft.com/.default".into()),
                ..TokenRequest::default()
            },
        )
        .await?
        .access_token;
    let (_, onboarding_token) = admin
        .put_onboarding_token(&tenant_id, None, "palisade-bench")
        .await?;
    let devices = state.devices.clone();
    let palisade = state.palisade.clone();
    let statics = axum::Router::new().route(
        "/bench/static/{n}",
        get(|axum::extract::Path(n): axum::extract::Path<usize>| async move { static_body(n) }),
    );
    let router = app::http_app(state, statics);
    tokio::spawn(palisade_server::transport::serve(
        listener,
        router,
        None,
        palisade_server::transport::Limits::default(),
        std::future::pending(),
    ));
    Ok(Served {
        origin,
        authorization: format!("Bearer {token}"),
        fleet,
        devices,
        onboarding_token,
        palisade,
        tenant_id,
    })
}

fn static_body(which: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bytes = STATIC_BODIES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(which)
        .cloned()
        .unwrap_or_default();
    (
        [
            (
                "content-type",
                "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8",
            ),
            ("odata-version", "4.0"),
        ],
        bytes,
    )
        .into_response()
}

/// Machines the API shows and full isolation supports.
fn isolatable(fleet: &[Machine]) -> Vec<String> {
    let horizon = Timestamp::now().minus_days(DEFAULT_RETENTION_DAYS - 1);
    let full = ActionKind::Isolate(IsolationType::Full);
    fleet
        .iter()
        .filter(|m| m.last_seen > horizon && m.onboarding_status == OnboardingStatus::Onboarded)
        .filter(|m| platform::check(m, &[], &full, "Isolate").is_ok())
        .map(|m| m.id.clone())
        .collect()
}

/// Sequential commits of `rows` rows each per second, with Palisade's connection settings.
fn raw_commit_rate(path: &std::path::Path, duration: Duration, rows: usize) -> anyhow::Result<f64> {
    let mut conn = palisade_store_sqlite::open_connection(path).context("open the raw database")?;
    conn.execute_batch("CREATE TABLE commits (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
    let body = "x".repeat(600);
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < duration {
        let txn = conn.transaction()?;
        for _ in 0..rows {
            txn.execute("INSERT INTO commits (body) VALUES (?1)", [&body])?;
        }
        txn.commit()?;
        commits += 1;
    }
    Ok(commits as f64 / started.elapsed().as_secs_f64())
}
