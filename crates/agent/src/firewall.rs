//! Network isolation and the tenant's address indicators, with nftables,
//! in one table of the agent's own.
//!
//! The rules are written in nft's own language and handed to the `nft`
//! binary in one `nft -f -` transaction: that is the form an administrator
//! reads back with `nft list table inet palisade`, and the binary is the one
//! interface nftables supports (the Rust `nftables` crate, too, only drives
//! this binary, through its JSON schema). Verification reads the table back
//! as JSON (`nft -j`).
//!
//! Why a drop policy in our own table isolates whatever else is configured:
//! in nftables a packet must pass every base chain on its hook, and a drop
//! anywhere is final. Release deletes exactly this table, unless indicators
//! are in force: then it keeps the table, their rules and an accept policy.
//!
//! An indicator's rules carry its id in their comment and a counter: the
//! agent reads the counters back to tell that traffic met an indicator.

use ipnet::IpNet;
use palisade_device::Isolation;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The agent's table: family `inet`, so IPv4 and IPv6 alike.
pub const TABLE: &str = "palisade";

/// What isolation lets through besides loopback and established traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub isolation: Isolation,
    /// The Palisade server's addresses and port: new connections to it stay allowed.
    pub control_plane: Vec<SocketAddr>,
    /// DNS servers, allowed only when the control plane is named by host name.
    pub resolvers: Vec<IpAddr>,
    /// Selective isolation only: networks reachable in both directions.
    pub allow: Vec<IpNet>,
    /// Addresses of the tenant's indicators, in force whatever the isolation.
    pub indicators: Vec<AddressRule>,
}

/// One address an indicator names (a domain's indicator names each of the
/// addresses it resolves to).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressRule {
    pub indicator_id: String,
    pub address: IpAddr,
    /// Dropped (Block, AlertAndBlock, BlockAndRemediate), or only counted (Alert, Audit).
    pub block: bool,
}

/// The comment an indicator's rules carry: how counters are told apart.
const INDICATOR_COMMENT: &str = "palisade-indicator:";

impl Policy {
    /// Whether it needs the table at all.
    pub fn is_empty(&self) -> bool {
        self.isolation == Isolation::None && self.indicators.is_empty()
    }
}

/// Why isolation could not be put in force or lifted.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// Enforcement is impossible here: no nft binary, or no privileges.
    #[error("network isolation is unavailable: {0}")]
    Unavailable(String),
    /// nft ran and refused, or the table is not what was applied.
    #[error("nftables: {0}")]
    Failed(String),
}

fn family_match(address: &IpAddr, direction: &str) -> String {
    match address {
        IpAddr::V4(a) => format!("ip {direction} {a}"),
        IpAddr::V6(a) => format!("ip6 {direction} {a}"),
    }
}

fn network_match(network: &IpNet, direction: &str) -> String {
    match network {
        IpNet::V4(n) => format!("ip {direction} {n}"),
        IpNet::V6(n) => format!("ip6 {direction} {n}"),
    }
}

/// The rules of the indicators, for the chain whose packets `direction`
/// (`daddr` or `saddr`) names the far end.
fn indicator_rules(policy: &Policy, direction: &str) -> Vec<String> {
    policy
        .indicators
        .iter()
        .map(|rule| {
            let verdict = if rule.block { " drop" } else { "" };
            // Counted once per connection, not per packet: a hit is a connection.
            let new = if rule.block { "" } else { " ct state new" };
            format!(
                "{}{new} counter{verdict} comment \"{INDICATOR_COMMENT}{}\"",
                family_match(&rule.address, direction),
                rule.indicator_id
            )
        })
        .collect()
}

/// The nft script that replaces the agent's table with `policy`, atomically.
pub fn script(policy: &Policy) -> String {
    let isolated = policy.isolation != Isolation::None;
    // What keeps the host on the network at all: neighbour discovery and router
    // advertisements (IPv6), and DHCP leases (v4 and v6); without them the
    // address or default route lapses and the control plane is lost too.
    let mut output = vec!["oif \"lo\" accept".to_string()];
    // The control plane before the indicators: no indicator cuts the device off its server.
    for endpoint in &policy.control_plane {
        output.push(format!(
            "{} tcp dport {} accept",
            family_match(&endpoint.ip(), "daddr"),
            endpoint.port()
        ));
    }
    output.extend(indicator_rules(policy, "daddr"));
    output.extend([
        "ct state established,related accept".to_string(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept"
            .to_string(),
        "udp sport 68 udp dport 67 accept".to_string(),
        "udp sport 546 udp dport 547 accept".to_string(),
    ]);
    let mut input = vec!["iif \"lo\" accept".to_string()];
    // The server's replies, too, before the indicators (replies only: a
    // new connection from that address and port is no reply).
    for endpoint in &policy.control_plane {
        input.push(format!(
            "{} tcp sport {} ct state established,related accept",
            family_match(&endpoint.ip(), "saddr"),
            endpoint.port()
        ));
    }
    input.extend(indicator_rules(policy, "saddr"));
    input.extend([
        "ct state established,related accept".to_string(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept"
            .to_string(),
        "udp sport 67 udp dport 68 accept".to_string(),
        "udp sport 547 udp dport 546 accept".to_string(),
    ]);
    for resolver in &policy.resolvers {
        for protocol in ["udp", "tcp"] {
            output.push(format!(
                "{} {protocol} dport 53 accept",
                family_match(resolver, "daddr")
            ));
        }
    }
    if policy.isolation == Isolation::Selective {
        for network in &policy.allow {
            output.push(format!("{} accept", network_match(network, "daddr")));
            input.push(format!("{} accept", network_match(network, "saddr")));
        }
    }
    let verdict = if isolated { "drop" } else { "accept" };
    let chain = |name: &str, hook: &str, rules: &[String]| {
        let mut text = format!(
            "  chain {name} {{\n    type filter hook {hook} priority filter - 10; policy {verdict};\n"
        );
        for rule in rules {
            text += &format!("    {rule}\n");
        }
        text + "  }\n"
    };
    // Declaring then deleting the table makes the load a replacement whether
    // or not it exists; nft applies the whole file as one transaction.
    // Forward too: containers and VMs behind the host must not stay connected.
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  comment \"palisade-agent: {isolation} isolation, {count} indicator addresses\"\n{input}{output}{forward}}}\n",
        isolation = policy.isolation,
        count = policy.indicators.len(),
        input = chain("input", "input", &input),
        output = chain("output", "output", &output),
        forward = chain("forward", "forward", &[]),
    )
}

/// Runs `nft` in the agent's network namespace.
#[derive(Debug, Clone)]
pub struct Nft {
    pub binary: PathBuf,
}

impl Nft {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            FirewallError::Unavailable(format!(
                "cannot run {} ({e}); install nftables",
                self.binary.display()
            ))
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| FirewallError::Failed(format!("writing to nft: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| FirewallError::Failed(format!("waiting for nft: {e}")))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.contains("Operation not permitted") {
            Err(FirewallError::Unavailable(format!(
                "nft is not permitted to change the ruleset (run the agent as root or with CAP_NET_ADMIN): {stderr}"
            )))
        } else {
            Err(FirewallError::Failed(stderr))
        }
    }

    /// Puts `policy` in force and reads the table back to confirm it is (a
    /// policy of nothing: no table); on failure leaves whatever nft left
    /// (its load is one transaction).
    pub async fn apply(&self, policy: &Policy) -> Result<(), FirewallError> {
        if policy.is_empty() {
            return self.release().await;
        }
        self.run(&["-f", "-"], Some(&script(policy))).await?;
        self.verify(policy).await
    }

    /// [`Self::apply`], and on failure returns the table to `previous` (`None`: no table).
    pub async fn isolate(
        &self,
        policy: &Policy,
        previous: Option<&Policy>,
    ) -> Result<(), FirewallError> {
        if let Err(error) = self.apply(policy).await {
            let rollback = match previous.filter(|p| !p.is_empty()) {
                Some(previous) => self
                    .run(&["-f", "-"], Some(&script(previous)))
                    .await
                    .map(drop),
                None => self.release().await,
            };
            let note = match rollback {
                Ok(()) => "rolled back".to_string(),
                Err(rollback) => format!("rolling back also failed: {rollback}"),
            };
            // The kind stays the original failure's: it tells whether enforcement is possible here.
            return Err(match error {
                FirewallError::Unavailable(m) => FirewallError::Unavailable(format!("{m}; {note}")),
                FirewallError::Failed(m) => FirewallError::Failed(format!("{m}; {note}")),
            });
        }
        Ok(())
    }

    /// Deletes the agent's table (nothing else); absent already is fine.
    pub async fn release(&self) -> Result<(), FirewallError> {
        match self.run(&["delete", "table", "inet", TABLE], None).await {
            Ok(_) => {}
            Err(FirewallError::Failed(message)) if message.contains("No such file") => {}
            Err(error) => return Err(error),
        }
        match self.table().await? {
            None => Ok(()),
            Some(_) => Err(FirewallError::Failed(format!(
                "table inet {TABLE} is still there after deleting it"
            ))),
        }
    }

    /// Whether `policy` is in force: no table for an empty one; else the
    /// three base chains hooked with its policy (drop when isolated), and
    /// the rules of each of its indicators.
    pub async fn verify(&self, policy: &Policy) -> Result<(), FirewallError> {
        let Some(listing) = self.table().await? else {
            if policy.is_empty() {
                return Ok(());
            }
            return Err(FirewallError::Failed(format!(
                "table inet {TABLE} is missing after applying it"
            )));
        };
        let items = || listing["nftables"].as_array().into_iter().flatten();
        let verdict = if policy.isolation == Isolation::None {
            "accept"
        } else {
            "drop"
        };
        for hook in ["input", "output", "forward"] {
            let hooked = items()
                .filter_map(|item| item.get("chain"))
                .any(|chain| chain["hook"] == hook && chain["policy"] == verdict);
            if !hooked {
                return Err(FirewallError::Failed(format!(
                    "table inet {TABLE} has no {hook} chain with policy {verdict}"
                )));
            }
        }
        let rules = items().filter(|item| {
            item["rule"]["comment"]
                .as_str()
                .is_some_and(|c| c.starts_with(INDICATOR_COMMENT))
        });
        // Each address has a rule on input and one on output.
        if rules.count() != policy.indicators.len() * 2 {
            return Err(FirewallError::Failed(format!(
                "table inet {TABLE} does not hold the rules of its {} indicator addresses",
                policy.indicators.len()
            )));
        }
        Ok(())
    }

    /// The packets each indicator's rules have counted, by indicator id.
    pub async fn indicator_hits(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, FirewallError> {
        let mut hits = std::collections::HashMap::new();
        let Some(listing) = self.table().await? else {
            return Ok(hits);
        };
        for item in listing["nftables"].as_array().into_iter().flatten() {
            let rule = &item["rule"];
            let Some(id) = rule["comment"]
                .as_str()
                .and_then(|c| c.strip_prefix(INDICATOR_COMMENT))
            else {
                continue;
            };
            let packets: u64 = rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["counter"]["packets"].as_u64())
                .sum();
            *hits.entry(id.to_string()).or_default() += packets;
        }
        Ok(hits)
    }

    /// The agent's table as nft lists it in JSON, if it exists.
    async fn table(&self) -> Result<Option<serde_json::Value>, FirewallError> {
        match self
            .run(&["-j", "list", "table", "inet", TABLE], None)
            .await
        {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| FirewallError::Failed(format!("unreadable nft listing: {e}"))),
            Err(FirewallError::Failed(message)) if message.contains("No such file") => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_isolation_keeps_only_loopback_established_and_the_control_plane() {
        let policy = Policy {
            isolation: Isolation::Full,
            control_plane: vec![
                "10.0.0.1:8443".parse().unwrap(),
                "[fd00::1]:8443".parse().unwrap(),
            ],
            resolvers: vec!["10.0.0.53".parse().unwrap()],
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            indicators: vec![],
        };
        let text = script(&policy);
        assert!(text.starts_with("table inet palisade\ndelete table inet palisade\n"));
        assert_eq!(text.matches("policy drop;").count(), 3);
        assert!(text.contains("hook forward"));
        assert!(text.contains("ip daddr 10.0.0.1 tcp dport 8443 accept"));
        assert!(text.contains("ip6 daddr fd00::1 tcp dport 8443 accept"));
        assert!(text.contains("ip daddr 10.0.0.53 udp dport 53 accept"));
        assert!(
            !text.contains("192.0.2.0/24"),
            "the allow-list is for Selective only"
        );
    }

    #[test]
    fn selective_isolation_adds_the_allow_list_both_ways() {
        let policy = Policy {
            isolation: Isolation::Selective,
            control_plane: vec![],
            resolvers: vec![],
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            indicators: vec![],
        };
        let text = script(&policy);
        assert!(text.contains("ip daddr 192.0.2.0/24 accept"));
        assert!(text.contains("ip saddr 192.0.2.0/24 accept"));
    }

    #[test]
    fn indicators_alone_keep_an_accept_policy_and_never_cut_the_control_plane() {
        let policy = Policy {
            isolation: Isolation::None,
            control_plane: vec!["10.0.0.1:8443".parse().unwrap()],
            resolvers: vec![],
            allow: vec![],
            indicators: vec![
                AddressRule {
                    indicator_id: "7".into(),
                    address: "10.0.0.1".parse().unwrap(),
                    block: true,
                },
                AddressRule {
                    indicator_id: "8".into(),
                    address: "2001:db8::8".parse().unwrap(),
                    block: false,
                },
            ],
        };
        let text = script(&policy);
        assert_eq!(text.matches("policy accept;").count(), 3);
        assert!(!text.contains("policy drop"));
        let control = text
            .find("ip daddr 10.0.0.1 tcp dport 8443 accept")
            .unwrap();
        let block = text
            .find("ip daddr 10.0.0.1 counter drop comment \"palisade-indicator:7\"")
            .unwrap();
        assert!(control < block, "the control plane first:\n{text}");
        let replies = text
            .find("ip saddr 10.0.0.1 tcp sport 8443 ct state established,related accept")
            .unwrap();
        let block_in = text
            .find("ip saddr 10.0.0.1 counter drop comment \"palisade-indicator:7\"")
            .unwrap();
        assert!(replies < block_in, "the server's replies first:\n{text}");
        assert!(text.contains(
            "ip6 daddr 2001:db8::8 ct state new counter comment \"palisade-indicator:8\""
        ));
    }
}
