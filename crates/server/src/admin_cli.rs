//! `palisade tenants|apps|users|groups|keys|audit|onboarding|devices`: administration on the
//! database directly (the server may be running; it sees changes within seconds).

use crate::app;
use clap::{Args, Subcommand};
use palisade_contract::control::ClockChange;
use palisade_contract::{OsPlatform, Permission};
use palisade_domain::caller::{Visibility, DEFAULT_RETENTION_DAYS};
use palisade_domain::control::RulePlace;
use palisade_domain::rules::device_groups::GroupRules;
use palisade_domain::store::DeviceGroup;
use palisade_domain::{Clock, Palisade};
use palisade_domain::{DeviceGroupAccess, Role, Store, SystemClock, Tenant};
use palisade_identity::admin::{Admin, Administrator, SignInSettings};
use palisade_identity::operator;
use palisade_identity::TokenService;
use palisade_store_postgres::PoolSettings;
use serde_json::json;
use std::io::Read;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct Database {
    /// Database URL: sqlite://PATH, or postgres://USER@HOST/DATABASE.
    #[arg(
        long,
        env = "PALISADE_DATABASE",
        default_value = "sqlite://palisade.db"
    )]
    pub database: String,
    #[command(flatten)]
    pub keys: KeyFile,
}

/// Where the key that seals the token signing keys at rest is kept.
#[derive(Debug, Args)]
pub struct KeyFile {
    /// The key-encryption key sealing the token signing keys (base64 of 32
    /// bytes); by default PATH.key beside an SQLite database, made on first
    /// start. Required with PostgreSQL (the same file on every node, made
    /// beforehand), unless PALISADE_KEY_ENCRYPTION_KEY gives the key itself.
    #[arg(long, env = "PALISADE_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct InTenant {
    /// The tenant (GUID), as `palisade tenants list` shows it.
    #[arg(long, env = "PALISADE_TENANT")]
    pub tenant: String,
    #[command(flatten)]
    pub db: Database,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants.
    List(Database),
    /// Create a tenant.
    Create {
        /// A display name.
        #[arg(long)]
        name: String,
        /// Its id (a GUID); a new one by default.
        #[arg(long)]
        id: Option<uuid::Uuid>,
        /// Machines not seen for this many days (30 to 180) disappear from the API.
        #[arg(long, default_value_t = DEFAULT_RETENTION_DAYS,
              value_parser = clap::value_parser!(u32).range(30..=180))]
        retention_days: u32,
        #[command(flatten)]
        db: Database,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List the tenant's app registrations and their permissions.
    List(InTenant),
    /// Register an app (or, with --client-id of an existing one, replace its
    /// permissions and secret). Prints the client secret once.
    Create {
        /// A display name; becomes `requestor` of the actions it creates.
        #[arg(long)]
        name: String,
        /// A permission to grant, e.g. Machine.Isolate (repeat for more).
        #[arg(long = "permission", required = true, value_parser = parse_permission)]
        permissions: Vec<Permission>,
        /// Keep this client id (GUID); a new one by default.
        #[arg(long)]
        client_id: Option<String>,
        /// Allow public client flows: users sign in through the app without
        /// its secret (device code, password, authorization code with PKCE).
        #[arg(long)]
        public_client: bool,
        /// Where the authorization endpoint may send codes (repeat for more);
        /// `http://localhost` matches any port.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A PEM certificate whose key signs the app's client assertions (repeat for more).
        #[arg(long = "certificate")]
        certificates: Vec<std::path::PathBuf>,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Delete an app registration; its tokens stop working when they expire.
    Delete {
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        tenant: InTenant,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List the tenant's users, roles and device groups.
    List(InTenant),
    /// Create a user (or update the one with that name). Prints the password once.
    Create {
        /// The user's UPN, e.g. alice@contoso.example.
        #[arg(long)]
        username: String,
        /// An MDE role (repeat for more): "View data", "Alerts investigation",
        /// "Active remediation actions", "Manage security settings", "Global administrator".
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// A device group id the user may see (repeat for more); all groups by default.
        #[arg(long = "group")]
        groups: Vec<i64>,
        /// Read the password from standard input; a random one by default.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Delete a user.
    Delete {
        #[arg(long)]
        username: String,
        #[command(flatten)]
        tenant: InTenant,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the tenant's device groups.
    List(InTenant),
    /// Create or replace a device group and its rules; machines move to their
    /// groups at once. A machine matching several groups goes to the highest
    /// ranked (1 first); within a rule property any value matches, and every
    /// property given must match. Without rules, the group is a label machines
    /// keep as they were reported, until any group of the tenant has rules.
    Create {
        /// Its id (machines show it as rbacGroupId); 1 or more.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        #[arg(long)]
        name: String,
        /// 1 is the highest; by default the id.
        #[arg(long)]
        rank: Option<i64>,
        /// Machines whose computerDnsName starts with this (repeat for more).
        #[arg(long = "name-prefix")]
        name_prefixes: Vec<String>,
        /// Machines carrying this tag (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Machines of this osPlatform, e.g. WindowsServer2022 (repeat for more).
        #[arg(long = "os", value_parser = parse_os)]
        os_platforms: Vec<OsPlatform>,
        /// This machine, whatever the other rules (repeat for more).
        #[arg(long = "machine")]
        machine_ids: Vec<String>,
        #[command(flatten)]
        tenant: InTenant,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the tenant's signing keys.
    List(InTenant),
    /// Make a new signing key; tokens signed with the old one stay valid until they expire.
    Rotate(InTenant),
}

#[derive(Debug, Subcommand)]
pub enum EmulatorCommand {
    /// Show the control plane's operator token (made if there is none yet).
    OperatorToken(Database),
    /// Make a new operator token; the old one stops working at once, on every node.
    RotateOperatorToken(Database),
    /// Outcome rules: how actions of machines without an enrolled device go on.
    #[command(subcommand)]
    Outcomes(RuleCommand),
    /// Fault rules: errors and latency injected into the MDE API and the token service.
    #[command(subcommand)]
    Faults(RuleCommand),
    /// The tenant's clock: frozen, running, advanced.
    #[command(subcommand)]
    Clock(ClockCommand),
    /// The recorder of the tenant's MDE API calls.
    #[command(subcommand)]
    Recorder(RecorderCommand),
    /// Put the tenant back to the document it was made from: machines,
    /// groups, tags, actions, audit, outcome and fault rules, clock,
    /// recorder (apps and users stay).
    Reset(InTenant),
    /// Print the tenant as a document (JSON, or YAML with --yaml), as `import` takes it.
    Export {
        #[arg(long)]
        yaml: bool,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Replace the tenant's state with a document's (JSON, or YAML for .yaml/.yml; - for standard input).
    Import {
        file: std::path::PathBuf,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Create the tenant a document describes (a reset puts it back to it).
    CreateTenant {
        file: std::path::PathBuf,
        #[command(flatten)]
        db: Database,
    },
}

/// What is done with a tenant's ordered rules (outcome or fault rules).
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// The tenant's rules in the order they apply, as JSON (`{"value": [...]}`).
    List(InTenant),
    /// Add a rule (JSON as `POST /_palisade/v1/tenants/{t}/outcomes` or
    /// `.../faults` takes it, e.g.
    /// '{"match":{"actionType":"Isolate"},"script":[{"status":"Pending","polls":2},{"status":"Succeeded"}]}'
    /// or '{"match":{"operation":"ListMachines"},"count":3,"response":{"status":429,"retryAfter":5}}',
    /// or - to read it from standard input); prints it with its id.
    Add {
        /// The rule.
        rule: String,
        /// Put it before every other rule (else after).
        #[arg(long)]
        first: bool,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Remove one rule.
    Delete {
        /// The rule's id.
        id: String,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Remove every rule of the tenant.
    Clear(InTenant),
}

impl RuleCommand {
    fn tenant(&self) -> &InTenant {
        match self {
            RuleCommand::List(t) | RuleCommand::Clear(t) => t,
            RuleCommand::Add { tenant, .. } | RuleCommand::Delete { tenant, .. } => tenant,
        }
    }
}

/// The recorder; running servers follow a change within a second.
#[derive(Debug, Subcommand)]
pub enum RecorderCommand {
    /// Start recording the tenant's calls.
    On(InTenant),
    /// Stop recording (what was recorded stays).
    Off(InTenant),
    /// The recorded calls as JSON, oldest first (those of --caller, --operation, --status only, if given).
    Entries {
        /// An app's client id or a user's principal name.
        #[arg(long)]
        caller: Option<String>,
        /// An operation id (ListMachines, Isolate, ...).
        #[arg(long)]
        operation: Option<String>,
        #[arg(long)]
        status: Option<u16>,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// The recorded calls as a HAR 1.2 log.
    Har {
        /// The origin the calls were made to, for the log's URLs.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        origin: String,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Per caller: Retry-After ignored, paging URLs built, fast polls, permissions.
    Report(InTenant),
    /// Forget the recorded calls.
    Clear(InTenant),
}

/// The tenant's clock; running servers follow a change within a second.
#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// The clock as JSON: mode, now, offset.
    Show(InTenant),
    /// Stop the clock at its reading (or at --at, not before it).
    Freeze {
        /// An RFC 3339 UTC time, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Let the clock run on from its reading.
    Run(InTenant),
    /// Move the clock forward by an ISO-8601 duration (PT72H, P1D).
    Advance {
        duration: String,
        #[command(flatten)]
        tenant: InTenant,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the newest audit entries of a tenant.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        top: u32,
        #[command(flatten)]
        tenant: InTenant,
    },
}

#[derive(Debug, Subcommand)]
pub enum OnboardingCommand {
    /// List the tenant's onboarding tokens.
    List(InTenant),
    /// Make an onboarding token devices enroll with (or, with --id of an
    /// existing one, a new secret for it). Prints the token once.
    Create {
        /// What it is for, e.g. "Linux servers, Amsterdam".
        #[arg(long, default_value = "")]
        description: String,
        /// Keep this id; a new one by default.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        tenant: InTenant,
    },
    /// Revoke a token: no new enrollments with it; enrolled devices stay.
    Revoke {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        tenant: InTenant,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List the tenant's enrolled devices: machine, isolation in force, enrollment.
    List(InTenant),
}

fn parse_permission(text: &str) -> Result<Permission, String> {
    Permission::from_str(text).map_err(|_| {
        let all: Vec<&str> = <Permission as strum::VariantArray>::VARIANTS
            .iter()
            .map(|p| p.as_str())
            .collect();
        format!("unknown permission; one of: {}", all.join(", "))
    })
}

pub(crate) fn parse_os(text: &str) -> Result<OsPlatform, String> {
    OsPlatform::from_str(text).map_err(|_| {
        let all: Vec<&str> = <OsPlatform as strum::VariantArray>::VARIANTS
            .iter()
            .map(|p| p.as_str())
            .collect();
        format!("unknown osPlatform; one of: {}", all.join(", "))
    })
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::from_str(text).map_err(|_| {
        let all: Vec<&str> = <Role as strum::VariantArray>::VARIANTS
            .iter()
            .map(|r| r.as_str())
            .collect();
        format!("unknown role; one of: {}", all.join(", "))
    })
}

/// A command makes a few calls: two connections are plenty.
const COMMAND_POOL: PoolSettings = PoolSettings {
    max_connections: 2,
    timeout: std::time::Duration::from_secs(5),
};

async fn store(db: &Database) -> anyhow::Result<Arc<dyn Store>> {
    app::open_store(&db.database, COMMAND_POOL).await
}

/// The token service of `db`, with the key its signing keys are sealed with.
async fn token_service(db: &Database, store: &Arc<dyn Store>) -> anyhow::Result<TokenService> {
    let sealer = app::key_sealer(&db.database, db.keys.key_file.as_deref(), store.as_ref()).await?;
    Ok(TokenService::new(
        store.clone(),
        Arc::new(SystemClock),
        sealer,
    ))
}

fn admin(store: Arc<dyn Store>) -> Admin {
    Admin::new(store, Arc::new(SystemClock), cli_administrator())
}

/// The operating-system user running the command.
fn cli_administrator() -> Administrator {
    let name = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Administrator { kind: "cli", name }
}

pub async fn tenants(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::List(db) => {
            for tenant in store(&db).await?.tenants().await? {
                println!(
                    "{}  {}  (retention {} days)",
                    tenant.id, tenant.name, tenant.retention_days
                );
            }
        }
        TenantCommand::Create {
            name,
            id,
            retention_days,
            db,
        } => {
            let tenant = Tenant {
                id: id.unwrap_or_else(uuid::Uuid::new_v4).to_string(),
                name,
                retention_days,
            };
            let store = store(&db).await?;
            let tokens = token_service(&db, &store).await?;
            if !store.create_tenant(&tenant, &[], &[]).await? {
                anyhow::bail!("tenant {} already exists", tenant.id);
            }
            admin(store).rotate_key(&tokens, &tenant.id).await?;
            println!("created tenant {}  {}", tenant.id, tenant.name);
        }
    }
    Ok(())
}

pub async fn apps(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::List(t) => {
            for app in store(&t.db).await?.apps(&t.tenant).await? {
                let permissions: Vec<&str> = app.permissions.iter().map(|p| p.as_str()).collect();
                println!(
                    "{}  {}  {}",
                    app.client_id,
                    app.display_name,
                    permissions.join(" ")
                );
            }
        }
        AppCommand::Create {
            name,
            permissions,
            client_id,
            public_client,
            redirect_uris,
            certificates,
            tenant,
        } => {
            let certificates = certificates
                .iter()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
                })
                .collect::<anyhow::Result<Vec<String>>>()?;
            let settings = SignInSettings {
                allow_public_client: public_client,
                redirect_uris,
                certificates,
            };
            let (app, secret) = admin(store(&tenant.db).await?)
                .put_app_with(
                    &tenant.tenant,
                    client_id.as_deref(),
                    &name,
                    &permissions,
                    &settings,
                )
                .await?;
            println!("client_id:     {}", app.client_id);
            println!("client_secret: {secret}");
            println!("(the secret is shown only now; Palisade keeps only its hash)");
        }
        AppCommand::Delete { client_id, tenant } => {
            admin(store(&tenant.db).await?)
                .delete_app(&tenant.tenant, &client_id)
                .await?;
            println!("deleted app {client_id}");
        }
    }
    Ok(())
}

pub async fn users(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::List(t) => {
            for user in store(&t.db).await?.users(&t.tenant).await? {
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                let groups = match &user.device_groups {
                    DeviceGroupAccess::All => "all device groups".to_string(),
                    DeviceGroupAccess::Only(ids) => format!("device groups {ids:?}"),
                };
                println!(
                    "{}  {}  [{}]  {groups}",
                    user.id,
                    user.username,
                    roles.join(", ")
                );
            }
        }
        UserCommand::Create {
            username,
            roles,
            groups,
            password_stdin,
            tenant,
        } => {
            let password = if password_stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                Some(text.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let access = if groups.is_empty() {
                DeviceGroupAccess::All
            } else {
                DeviceGroupAccess::Only(groups)
            };
            let (user, password) = admin(store(&tenant.db).await?)
                .put_user(
                    &tenant.tenant,
                    &username,
                    &roles,
                    access,
                    password.as_deref(),
                )
                .await?;
            println!("user:     {} ({})", user.username, user.id);
            if !password_stdin {
                println!("password: {password}");
                println!("(the password is shown only now; Palisade keeps only its hash)");
            }
        }
        UserCommand::Delete { username, tenant } => {
            admin(store(&tenant.db).await?)
                .delete_user(&tenant.tenant, &username)
                .await?;
            println!("deleted user {username}");
        }
    }
    Ok(())
}

pub async fn groups(command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List(t) => {
            for group in store(&t.db).await?.device_groups(&t.tenant).await? {
                let rules = if group.rules.is_empty() {
                    "no rules".to_string()
                } else {
                    serde_json::to_string(&group.rules)?
                };
                println!("{}  {}  rank {}  {rules}", group.id, group.name, group.rank);
            }
        }
        GroupCommand::Create {
            id,
            name,
            rank,
            name_prefixes,
            tags,
            os_platforms,
            machine_ids,
            tenant,
        } => {
            let group = DeviceGroup {
                id,
                name,
                rank: rank.unwrap_or(id),
                rules: GroupRules {
                    name_prefixes,
                    tags,
                    os_platforms,
                    machine_ids: machine_ids.iter().map(|m| m.to_ascii_lowercase()).collect(),
                },
            };
            admin(store(&tenant.db).await?)
                .put_device_group(&tenant.tenant, &group)
                .await?;
            println!(
                "device group {}  {}  rank {}",
                group.id, group.name, group.rank
            );
        }
    }
    Ok(())
}

pub async fn keys(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::List(t) => {
            for key in store(&t.db).await?.signing_keys(&t.tenant).await? {
                let state = match key.retired_at {
                    None => "active".to_string(),
                    Some(at) => format!("retired {at}"),
                };
                println!("{}  created {}  {state}", key.kid, key.created_at);
            }
        }
        KeyCommand::Rotate(t) => {
            let store = store(&t.db).await?;
            let tokens = token_service(&t.db, &store).await?;
            let key = admin(store).rotate_key(&tokens, &t.tenant).await?;
            println!("new signing key {}", key.kid);
        }
    }
    Ok(())
}

pub async fn emulator(command: EmulatorCommand) -> anyhow::Result<()> {
    let (db, rotate) = match &command {
        EmulatorCommand::OperatorToken(db) => (db, false),
        EmulatorCommand::RotateOperatorToken(db) => (db, true),
        EmulatorCommand::Outcomes(command) => return rules(Rules::Outcomes, command).await,
        EmulatorCommand::Faults(command) => return rules(Rules::Faults, command).await,
        EmulatorCommand::Clock(command) => return clock(command).await,
        EmulatorCommand::Recorder(command) => return recorder(command).await,
        EmulatorCommand::Reset(_)
        | EmulatorCommand::Export { .. }
        | EmulatorCommand::Import { .. }
        | EmulatorCommand::CreateTenant { .. } => return state(&command).await,
    };
    let store = store(db).await?;
    let sealer = app::key_sealer(&db.database, db.keys.key_file.as_deref(), store.as_ref()).await?;
    let now = SystemClock.now();
    let token = match rotate {
        true => operator::rotate(store.as_ref(), &sealer, now).await?,
        false => operator::ensure(store.as_ref(), &sealer, now).await?,
    };
    println!("{token}");
    Ok(())
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Which rules a [`RuleCommand`] is about.
#[derive(Clone, Copy)]
enum Rules {
    Outcomes,
    Faults,
}

async fn rules(rules: Rules, command: &RuleCommand) -> anyhow::Result<()> {
    let tenant = command.tenant();
    let palisade = Palisade::new(store(&tenant.db).await?, Arc::new(SystemClock));
    let t = &tenant.tenant;
    match command {
        RuleCommand::List(_) => match rules {
            Rules::Outcomes => print(&json!({ "value": palisade.outcome_rules(t).await? }))?,
            Rules::Faults => print(&json!({ "value": palisade.fault_rules(t).await? }))?,
        },
        RuleCommand::Add { rule, first, .. } => {
            let text = match rule.as_str() {
                "-" => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text
                }
                given => given.to_string(),
            };
            let invalid = |e: serde_json::Error| anyhow::anyhow!("the rule is not valid: {e}");
            let place = if *first {
                RulePlace::First
            } else {
                RulePlace::Last
            };
            match rules {
                Rules::Outcomes => {
                    let rule = serde_json::from_str(&text).map_err(invalid)?;
                    print(&palisade.add_outcome_rule(t, rule, place).await?)?
                }
                Rules::Faults => {
                    let rule = serde_json::from_str(&text).map_err(invalid)?;
                    print(&palisade.add_fault_rule(t, rule, place).await?)?
                }
            }
        }
        RuleCommand::Delete { id, .. } => match rules {
            Rules::Outcomes => palisade.delete_outcome_rule(t, id).await?,
            Rules::Faults => palisade.delete_fault_rule(t, id).await?,
        },
        RuleCommand::Clear(_) => {
            let removed = match rules {
                Rules::Outcomes => palisade.delete_outcome_rules(t).await?,
                Rules::Faults => palisade.delete_fault_rules(t).await?,
            };
            println!("removed {removed} rules");
        }
    }
    Ok(())
}

async fn state(command: &EmulatorCommand) -> anyhow::Result<()> {
    use crate::control::state::{read_document, seed_from_file, seed_identities, Format};
    let db = match command {
        EmulatorCommand::Reset(t) => &t.db,
        EmulatorCommand::Export { tenant, .. } | EmulatorCommand::Import { tenant, .. } => {
            &tenant.db
        }
        EmulatorCommand::CreateTenant { db, .. } => db,
        _ => unreachable!("state commands only"),
    };
    let palisade = Palisade::new(store(db).await?, Arc::new(SystemClock));
    match command {
        EmulatorCommand::Reset(t) => {
            palisade.reset_tenant(&t.tenant).await?;
            println!("tenant {} reset to its seed", t.tenant);
        }
        EmulatorCommand::Export {
            yaml: false,
            tenant,
        } => print(&palisade.export_tenant(&tenant.tenant).await?)?,
        EmulatorCommand::Export { yaml: true, tenant } => {
            let document = palisade.export_tenant(&tenant.tenant).await?;
            print!("{}", serde_norway::to_string(&document)?);
        }
        EmulatorCommand::Import { file, tenant } => {
            let bytes = match file.to_str() {
                Some("-") => {
                    let mut bytes = Vec::new();
                    std::io::stdin().read_to_end(&mut bytes)?;
                    bytes
                }
                _ => std::fs::read(file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?,
            };
            let in_file = |e: palisade_contract::MdeError| {
                anyhow::anyhow!("{}: {}", file.display(), e.message)
            };
            let document = read_document(&bytes, Format::of_file(file)).map_err(in_file)?;
            let state = palisade
                .replace_tenant_state(&tenant.tenant, &document)
                .await
                .map_err(in_file)?;
            seed_identities(&palisade, &state, cli_administrator()).await?;
            println!("tenant {} replaced from {}", tenant.tenant, file.display());
        }
        EmulatorCommand::CreateTenant { file, .. } => seed_from_file(&palisade, file).await?,
        _ => unreachable!("state commands only"),
    }
    Ok(())
}

async fn recorder(command: &RecorderCommand) -> anyhow::Result<()> {
    use palisade_contract::control::{RecordedEntries, RecorderSetting};
    use palisade_domain::control::{RecordFilter, RecordedCall};
    let tenant = match command {
        RecorderCommand::On(t)
        | RecorderCommand::Off(t)
        | RecorderCommand::Report(t)
        | RecorderCommand::Clear(t) => t,
        RecorderCommand::Har { tenant, .. } | RecorderCommand::Entries { tenant, .. } => tenant,
    };
    let palisade = Palisade::new(store(&tenant.db).await?, Arc::new(SystemClock));
    let t = &tenant.tenant;
    match command {
        RecorderCommand::On(_) | RecorderCommand::Off(_) => {
            let enabled = matches!(command, RecorderCommand::On(_));
            print(
                &palisade
                    .set_recorder(t, RecorderSetting { enabled })
                    .await?,
            )?
        }
        RecorderCommand::Entries {
            caller,
            operation,
            status,
            ..
        } => {
            let filter = RecordFilter {
                caller: caller.clone(),
                operation: operation.clone(),
                status: status.map(i64::from),
                ..RecordFilter::default()
            };
            let calls = palisade.recorded_calls(t, &filter, 0, u64::MAX).await?;
            let value = calls.iter().map(RecordedCall::wire).collect();
            print(&RecordedEntries { value })?
        }
        RecorderCommand::Har { origin, .. } => {
            let calls = palisade
                .recorded_calls(t, &RecordFilter::default(), 0, u64::MAX)
                .await?;
            print(&palisade_domain::rules::recorder::har(&calls, origin))?
        }
        RecorderCommand::Report(_) => print(&palisade.recorder_report(t).await?)?,
        RecorderCommand::Clear(_) => {
            let removed = palisade.clear_recorded_calls(t).await?;
            println!("removed {removed} recorded calls");
        }
    }
    Ok(())
}

async fn clock(command: &ClockCommand) -> anyhow::Result<()> {
    let (tenant, change) = match command {
        ClockCommand::Show(tenant) => (tenant, None),
        ClockCommand::Freeze { at, tenant } => (tenant, Some(json!({"mode": "frozen", "now": at}))),
        ClockCommand::Run(tenant) => (tenant, Some(json!({"mode": "running"}))),
        ClockCommand::Advance { duration, tenant } => (tenant, Some(json!({"advance": duration}))),
    };
    let palisade = Palisade::new(store(&tenant.db).await?, Arc::new(SystemClock));
    let reading = match change {
        None => palisade.tenant_clock(&tenant.tenant).await?,
        Some(change) => {
            let change: ClockChange = serde_json::from_value(change)
                .map_err(|e| anyhow::anyhow!("not a clock change: {e}"))?;
            palisade
                .change_tenant_clock(&tenant.tenant, &change)
                .await?
        }
    };
    print(&reading)
}

pub async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List { top, tenant } = command;
    let page = store(&tenant.db)
        .await?
        .audit_entries(&Visibility::whole_tenant(&tenant.tenant), 0, top)
        .await?;
    for e in page.items {
        println!(
            "{}  {} {} ({})  {}  {}  -> {}  {}",
            e.time,
            e.actor_type,
            e.actor_name,
            e.actor_id,
            e.operation,
            e.target.as_deref().unwrap_or("-"),
            e.result,
            e.request_id
        );
    }
    Ok(())
}

pub async fn onboarding(command: OnboardingCommand) -> anyhow::Result<()> {
    match command {
        OnboardingCommand::List(t) => {
            for token in store(&t.db).await?.onboarding_tokens(&t.tenant).await? {
                let state = match token.revoked_at {
                    None => "active".to_string(),
                    Some(at) => format!("revoked {at}"),
                };
                println!(
                    "{}  created {}  {state}  {}",
                    token.id, token.created_at, token.description
                );
            }
        }
        OnboardingCommand::Create {
            description,
            id,
            tenant,
        } => {
            let (token, text) = admin(store(&tenant.db).await?)
                .put_onboarding_token(&tenant.tenant, id.as_deref(), &description)
                .await?;
            println!("id:               {}", token.id);
            println!("onboarding_token: {text}");
            println!("(shown only now; enroll with: palisade-agent --server URL --onboarding-token TOKEN --state-dir DIR)");
        }
        OnboardingCommand::Revoke { id, tenant } => {
            admin(store(&tenant.db).await?)
                .revoke_onboarding_token(&tenant.tenant, &id)
                .await?;
            println!("revoked onboarding token {id}");
        }
    }
    Ok(())
}

pub async fn devices(command: DeviceCommand) -> anyhow::Result<()> {
    let DeviceCommand::List(t) = command;
    for device in store(&t.db).await?.devices(&t.tenant).await? {
        let state = match device.offboarded_at {
            None => format!("isolation {}", device.isolation),
            Some(at) => format!("offboarded {at}"),
        };
        let capabilities: Vec<String> = device.capabilities.iter().map(|c| c.to_string()).collect();
        println!(
            "{}  enrolled {}  {state}  token {}  [{}]",
            device.machine_id,
            device.enrolled_at,
            device.onboarding_token_id,
            capabilities.join(", ")
        );
    }
    Ok(())
}
