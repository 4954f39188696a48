//! The skip-NAT driver: traffic to remote pod subnets must leave the node with its pod source
//! address (the remote side routes replies back through the tunnel by that address), so it is
//! exempted from whatever masquerading the node does (CNI, kube-proxy, an administrator).
//!
//! Two backends, picked by what the node has ([`NatBackend::detect`], nftables first):
//!
//! * **nftables**: our own table `ip raven` with the set `raven-skip-nat-set` (interval IPv4
//!   prefixes) and a NAT chain at postrouting priority `srcnat - 10` whose rule
//!   `ip daddr @raven-skip-nat-set snat to ip saddr` gives matching connections an identity
//!   source NAT. Once a connection has a source NAT binding the kernel consults no later NAT
//!   chain, so masquerade rules in other tables (nftables or iptables, which run at `srcnat`)
//!   no longer apply to it; an `accept` would not be enough, as it ends only our own chain.
//! * **iptables**: our own chain `RAVEN-SKIP-NAT` in the `nat` table, one
//!   `-d <subnet> -j ACCEPT` per subnet, jumped to from the first rule of `POSTROUTING` (an
//!   accept there ends the `nat` table's traversal, so later masquerade rules are skipped).
//!
//! Every change rewrites our table or chain in one transaction (`nft -f`,
//! `iptables-restore --noflush`) from the observed set plus the changes; when the set becomes
//! empty the table or chain and its jump are deleted. The observation reports nothing when our
//! structure is damaged (chain or jump missing), so the engine re-adds every entry and the
//! rewrite repairs it. IPv6 subnets are not handled (the planner's underlay is IPv4).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{Driver, DriverError};
use crate::l3::{Change, Cidr, Item, SKIP_NAT_SET};

/// Our nftables table (family `ip`).
pub const NFT_TABLE: &str = "raven";
/// Our iptables chain in the `nat` table.
pub const IPTABLES_CHAIN: &str = "RAVEN-SKIP-NAT";
/// How long one nft/iptables command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Which firewall tool programs the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatBackend {
    /// `nft` (nftables).
    Nftables,
    /// `iptables` / `iptables-restore`.
    Iptables,
}

/// Output of one command.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs commands, in a network namespace when one is given (through `nsenter --net=`).
#[derive(Clone, Debug)]
struct Runner {
    netns: Option<PathBuf>,
}

impl Runner {
    async fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<Output, DriverError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--");
                c.args(argv);
                c
            }
            None => {
                let mut c = tokio::process::Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let line = argv.join(" ");
        let fail = |message: String| DriverError::Command {
            command: line.clone(),
            message,
        };
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn must(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, DriverError> {
        let out = self.run(argv, stdin).await?;
        if out.ok {
            Ok(out.stdout)
        } else {
            Err(DriverError::Command {
                command: argv.join(" "),
                message: out.stderr.trim().to_owned(),
            })
        }
    }
}

impl NatBackend {
    /// The backend the node has: nftables when `nft` runs, else iptables when `iptables`
    /// runs, else `None`.
    pub async fn detect() -> Option<Self> {
        let r = Runner { netns: None };
        for (backend, argv) in [
            (Self::Nftables, ["nft", "--version"]),
            (Self::Iptables, ["iptables", "--version"]),
        ] {
            if matches!(r.run(&argv, None).await, Ok(o) if o.ok) {
                return Some(backend);
            }
        }
        None
    }
}

/// Programs the skip-NAT subnets.
pub struct NatDriver {
    backend: NatBackend,
    runner: Runner,
}

impl NatDriver {
    /// A driver for the current network namespace.
    pub fn new(backend: NatBackend) -> Self {
        Self {
            backend,
            runner: Runner { netns: None },
        }
    }

    /// A driver acting in the network namespace at `netns` (e.g. `/run/netns/NAME`).
    pub fn in_netns(backend: NatBackend, netns: impl Into<PathBuf>) -> Self {
        Self {
            backend,
            runner: Runner {
                netns: Some(netns.into()),
            },
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> NatBackend {
        self.backend
    }

    async fn observe_set(&self) -> Result<BTreeSet<Cidr>, DriverError> {
        match self.backend {
            NatBackend::Nftables => {
                let out = self
                    .runner
                    .run(&["nft", "-j", "list", "table", "ip", NFT_TABLE], None)
                    .await?;
                if !out.ok {
                    return Ok(BTreeSet::new()); // no table
                }
                Ok(parse_nft_table(&out.stdout))
            }
            NatBackend::Iptables => {
                let jump = self
                    .runner
                    .run(
                        &[
                            "iptables",
                            "-w",
                            "-t",
                            "nat",
                            "-C",
                            "POSTROUTING",
                            "-j",
                            IPTABLES_CHAIN,
                        ],
                        None,
                    )
                    .await?;
                let rules = self
                    .runner
                    .run(&["iptables", "-w", "-t", "nat", "-S", IPTABLES_CHAIN], None)
                    .await?;
                if !jump.ok || !rules.ok {
                    return Ok(BTreeSet::new());
                }
                Ok(parse_iptables_chain(&rules.stdout))
            }
        }
    }

    async fn write_set(&self, set: &BTreeSet<Cidr>) -> Result<(), DriverError> {
        match self.backend {
            NatBackend::Nftables => {
                let script = if set.is_empty() {
                    format!("table ip {NFT_TABLE} {{}}\ndelete table ip {NFT_TABLE}\n")
                } else {
                    nft_script(set)
                };
                self.runner.must(&["nft", "-f", "-"], Some(&script)).await?;
            }
            NatBackend::Iptables => {
                if set.is_empty() {
                    // Remove every jump, then the chain; each may already be gone.
                    for _ in 0..16 {
                        let out = self
                            .runner
                            .run(
                                &[
                                    "iptables",
                                    "-w",
                                    "-t",
                                    "nat",
                                    "-D",
                                    "POSTROUTING",
                                    "-j",
                                    IPTABLES_CHAIN,
                                ],
                                None,
                            )
                            .await?;
                        if !out.ok {
                            break;
                        }
                    }
                    let _ = self
                        .runner
                        .run(&["iptables", "-w", "-t", "nat", "-F", IPTABLES_CHAIN], None)
                        .await?;
                    let _ = self
                        .runner
                        .run(&["iptables", "-w", "-t", "nat", "-X", IPTABLES_CHAIN], None)
                        .await?;
                    return Ok(());
                }
                self.runner
                    .must(
                        &["iptables-restore", "-w", "--noflush"],
                        Some(&iptables_restore(set)),
                    )
                    .await?;
                let jump = self
                    .runner
                    .run(
                        &[
                            "iptables",
                            "-w",
                            "-t",
                            "nat",
                            "-C",
                            "POSTROUTING",
                            "-j",
                            IPTABLES_CHAIN,
                        ],
                        None,
                    )
                    .await?;
                if !jump.ok {
                    self.runner
                        .must(
                            &[
                                "iptables",
                                "-w",
                                "-t",
                                "nat",
                                "-I",
                                "POSTROUTING",
                                "1",
                                "-j",
                                IPTABLES_CHAIN,
                            ],
                            None,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// The whole table, replaced atomically (the first line makes the delete valid when the table
/// does not exist yet).
fn nft_script(set: &BTreeSet<Cidr>) -> String {
    let elements: Vec<String> = set.iter().map(Cidr::to_string).collect();
    format!(
        "table ip {t} {{}}\n\
         delete table ip {t}\n\
         table ip {t} {{\n\
         \tset {s} {{ type ipv4_addr; flags interval; elements = {{ {e} }} }}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat - 10; policy accept;\n\
         \t\tip daddr @{s} snat to ip saddr\n\
         \t}}\n\
         }}\n",
        t = NFT_TABLE,
        s = SKIP_NAT_SET,
        e = elements.join(", "),
    )
}

fn iptables_restore(set: &BTreeSet<Cidr>) -> String {
    let mut s = format!("*nat\n:{IPTABLES_CHAIN} - [0:0]\n");
    for c in set {
        s.push_str(&format!("-A {IPTABLES_CHAIN} -d {c} -j ACCEPT\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// The set's elements from `nft -j list table ip raven`, or nothing when the set or the chain's
/// rule is missing (a damaged table is rewritten whole).
fn parse_nft_table(json: &str) -> BTreeSet<Cidr> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return BTreeSet::new();
    };
    let Some(objs) = v.get("nftables").and_then(Value::as_array) else {
        return BTreeSet::new();
    };
    let has_rule = objs.iter().any(|o| {
        o.get("rule").is_some_and(|r| {
            r.get("chain").and_then(Value::as_str) == Some("postrouting")
                && r.to_string().contains(SKIP_NAT_SET)
                && r.to_string().contains("snat")
        })
    });
    if !has_rule {
        return BTreeSet::new();
    }
    let mut out = BTreeSet::new();
    for o in objs {
        let Some(set) = o.get("set") else { continue };
        if set.get("name").and_then(Value::as_str) != Some(SKIP_NAT_SET) {
            continue;
        }
        for e in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cidr = if let Some(s) = e.as_str() {
                s.parse::<IpAddr>().ok().and_then(|a| Cidr::new(a, 32))
            } else if let Some(p) = e.get("prefix") {
                let addr = p
                    .get("addr")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok());
                let len = p
                    .get("len")
                    .and_then(Value::as_u64)
                    .and_then(|l| u8::try_from(l).ok());
                addr.zip(len).and_then(|(a, l)| Cidr::new(a, l))
            } else {
                None
            };
            out.extend(cidr);
        }
    }
    out
}

/// The subnets of `iptables -t nat -S RAVEN-SKIP-NAT`.
fn parse_iptables_chain(rules: &str) -> BTreeSet<Cidr> {
    rules
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            if w.next()? != "-A" || w.next()? != IPTABLES_CHAIN || w.next()? != "-d" {
                return None;
            }
            let dst = w.next()?;
            let rest: Vec<&str> = w.collect();
            if rest != ["-j", "ACCEPT"] {
                return None;
            }
            match dst.parse::<Cidr>() {
                Ok(c) => Some(c),
                Err(_) => dst.parse::<IpAddr>().ok().and_then(|a| Cidr::new(a, 32)),
            }
        })
        .collect()
}

#[async_trait]
impl Driver for NatDriver {
    fn name(&self) -> &'static str {
        "nat"
    }

    fn owns(&self, item: &Item) -> bool {
        matches!(item, Item::SkipNat(c) if c.addr().is_ipv4())
    }

    async fn observe(&self) -> Result<Vec<Item>, DriverError> {
        Ok(self
            .observe_set()
            .await?
            .into_iter()
            .map(Item::SkipNat)
            .collect())
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DriverError> {
        let mut set = self.observe_set().await?;
        let before = set.clone();
        for c in changes {
            match c {
                Change::Add(Item::SkipNat(c))
                | Change::Update {
                    new: Item::SkipNat(c),
                    ..
                } => {
                    set.insert(*c);
                }
                Change::Remove(Item::SkipNat(c)) => {
                    set.remove(c);
                }
                _ => {}
            }
        }
        if set == before && !set.is_empty() {
            return Ok(());
        }
        self.write_set(&set).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn iptables_chain_listing_is_parsed() {
        let out = "-N RAVEN-SKIP-NAT\n-A RAVEN-SKIP-NAT -d 10.1.0.0/16 -j ACCEPT\n\
                   -A RAVEN-SKIP-NAT -d 10.2.3.4/32 -j ACCEPT\n-A RAVEN-SKIP-NAT -d 10.9.0.0/16 -j RETURN\n";
        let got = parse_iptables_chain(out);
        assert_eq!(
            got,
            [c("10.1.0.0/16"), c("10.2.3.4/32")].into_iter().collect()
        );
    }

    #[test]
    fn nft_listing_needs_the_rule() {
        let set = r#"{"set":{"family":"ip","name":"raven-skip-nat-set","table":"raven","elem":[{"prefix":{"addr":"10.1.0.0","len":16}},"10.2.3.4"]}}"#;
        let rule = r#"{"rule":{"family":"ip","table":"raven","chain":"postrouting","expr":[{"match":{"right":"@raven-skip-nat-set"}},{"snat":{"addr":{"payload":{"field":"saddr"}}}}]}}"#;
        let full = format!(r#"{{"nftables":[{{"metainfo":{{}}}},{set},{rule}]}}"#);
        assert_eq!(
            parse_nft_table(&full),
            [c("10.1.0.0/16"), c("10.2.3.4/32")].into_iter().collect()
        );
        let no_rule = format!(r#"{{"nftables":[{{"metainfo":{{}}}},{set}]}}"#);
        assert!(parse_nft_table(&no_rule).is_empty());
        assert!(parse_nft_table("not json").is_empty());
    }
}
