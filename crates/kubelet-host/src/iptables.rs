//! The kubelet's iptables chains (upstream `kubelet_network_linux.go` syncNetworkUtil, with
//! `makeIPTablesUtilChains`): KUBE-MARK-DROP and KUBE-FIREWALL, which drops marked packets and
//! packets to 127.0.0.0/8 from elsewhere (CVE-2020-8558, "martian" localhost traffic), jumped
//! to from INPUT and OUTPUT; KUBE-MARK-MASQ and KUBE-POSTROUTING for masquerading.
//! [`Iptables`] is the seam: [`IptablesCmd`] runs the `iptables` binary.

use std::io;

/// Runs one iptables invocation; `Ok(true)` when it exited 0, `Ok(false)` otherwise (with
/// its error output), `Err` when it could not run.
pub trait Iptables: Send + Sync + std::fmt::Debug {
    fn run(&self, args: &[&str]) -> io::Result<(bool, String)>;
}

/// The `iptables` program, waiting for the xtables lock (`-w`); `prefix` runs it through
/// another command (`ip netns exec NAME`), for tests in a network namespace of their own.
#[derive(Debug, Default)]
pub struct IptablesCmd {
    pub prefix: Vec<String>,
}

impl Iptables for IptablesCmd {
    fn run(&self, args: &[&str]) -> io::Result<(bool, String)> {
        let mut argv: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        argv.extend(["iptables", "-w"]);
        argv.extend_from_slice(args);
        let out = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

pub const KUBE_MARK_DROP: &str = "KUBE-MARK-DROP";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";

/// Upstream's mark for a bit, as Go's `%#08x`: `0x004000` for bit 14.
pub fn mark(bit: u32) -> String {
    format!("{:#08x}", 1u64 << bit)
}

/// A chain or rule that could not be put in place (upstream's words).
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("running iptables: {0}")]
    Run(#[from] io::Error),
    #[error("error ensuring chain {chain} in table {table}: {output}")]
    Chain {
        table: String,
        chain: String,
        output: String,
    },
    #[error("error ensuring rule in {table}/{chain}: {output}")]
    Rule {
        table: String,
        chain: String,
        output: String,
    },
}

fn ensure_chain(ipt: &dyn Iptables, table: &str, chain: &str) -> Result<(), IptablesError> {
    let (ok, output) = ipt.run(&["-t", table, "-N", chain])?;
    if ok || output.contains("already exists") {
        Ok(())
    } else {
        Err(IptablesError::Chain {
            table: table.into(),
            chain: chain.into(),
            output,
        })
    }
}

/// Adds the rule unless `-C` finds it; `prepend` puts it first.
fn ensure_rule(
    ipt: &dyn Iptables,
    prepend: bool,
    table: &str,
    chain: &str,
    rule: &[&str],
) -> Result<(), IptablesError> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(rule);
    let (exists, _) = ipt.run(&check)?;
    if exists {
        return Ok(());
    }
    let mut add = vec!["-t", table, if prepend { "-I" } else { "-A" }, chain];
    add.extend_from_slice(rule);
    let (ok, output) = ipt.run(&add)?;
    if ok {
        Ok(())
    } else {
        Err(IptablesError::Rule {
            table: table.into(),
            chain: chain.into(),
            output,
        })
    }
}

/// `-m comment --comment TEXT` before `rule`, as upstream labels its rules.
fn commented<'a>(comment: &'a str, rule: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-m", "comment", "--comment", comment];
    args.extend_from_slice(rule);
    args
}

/// Makes sure the chains and rules are in place; every error on the way.
pub fn sync_network_util(
    ipt: &dyn Iptables,
    masquerade_bit: u32,
    drop_bit: u32,
) -> Vec<IptablesError> {
    let drop = mark(drop_bit);
    let drop_match = format!("{drop}/{drop}");
    let masq = mark(masquerade_bit);
    let masq_match = format!("{masq}/{masq}");
    let new_chain = |table, chain| ensure_chain(ipt, table, chain);
    let append = |table, chain, rule: &[&str]| ensure_rule(ipt, false, table, chain, rule);
    let prepend = |table, chain, rule: &[&str]| ensure_rule(ipt, true, table, chain, rule);
    // Every step runs, in this order, whether or not an earlier one failed.
    [
        new_chain("nat", KUBE_MARK_DROP),
        append("nat", KUBE_MARK_DROP, &["-j", "MARK", "--or-mark", &drop]),
        new_chain("filter", KUBE_FIREWALL),
        append(
            "filter",
            KUBE_FIREWALL,
            &commented(
                "kubernetes firewall for dropping marked packets",
                &["-m", "mark", "--mark", &drop_match, "-j", "DROP"],
            ),
        ),
        // Packets to localhost that did not come from it, unless part of a forwarded
        // connection: a pod or a neighbour reaching a localhost-only service (CVE-2020-8558).
        append(
            "filter",
            KUBE_FIREWALL,
            &commented(
                "block incoming localnet connections",
                &[
                    "--dst",
                    "127.0.0.0/8",
                    "!",
                    "--src",
                    "127.0.0.0/8",
                    "-m",
                    "conntrack",
                    "!",
                    "--ctstate",
                    "RELATED,ESTABLISHED,DNAT",
                    "-j",
                    "DROP",
                ],
            ),
        ),
        prepend("filter", "OUTPUT", &["-j", KUBE_FIREWALL]),
        prepend("filter", "INPUT", &["-j", KUBE_FIREWALL]),
        new_chain("nat", KUBE_MARK_MASQ),
        new_chain("nat", KUBE_POSTROUTING),
        append("nat", KUBE_MARK_MASQ, &["-j", "MARK", "--or-mark", &masq]),
        prepend(
            "nat",
            "POSTROUTING",
            &commented("kubernetes postrouting rules", &["-j", KUBE_POSTROUTING]),
        ),
        append(
            "nat",
            KUBE_POSTROUTING,
            &["-m", "mark", "!", "--mark", &masq_match, "-j", "RETURN"],
        ),
        // Clear the mark so a packet that goes through the stack again is not masqueraded twice.
        append(
            "nat",
            KUBE_POSTROUTING,
            &["-j", "MARK", "--xor-mark", &masq],
        ),
        append(
            "nat",
            KUBE_POSTROUTING,
            &commented(
                "kubernetes service traffic requiring SNAT",
                &["-j", "MASQUERADE"],
            ),
        ),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

#[cfg(any(test, feature = "test-util"))]
/// A recording iptables that keeps rules in memory, for tests.
#[derive(Debug, Default)]
pub struct FakeIptables {
    /// (table, chain, rule) in order; chains are rules with an empty rule.
    pub rules: std::sync::Mutex<Vec<(String, String, String)>>,
    pub calls: std::sync::Mutex<Vec<String>>,
}

#[cfg(any(test, feature = "test-util"))]
impl Iptables for FakeIptables {
    fn run(&self, args: &[&str]) -> io::Result<(bool, String)> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(args.join(" "));
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let (table, op, chain) = match args {
            ["-t", t, op, c, ..] => (t.to_string(), *op, c.to_string()),
            _ => return Ok((false, "bad arguments".into())),
        };
        let rule = args[4..].join(" ");
        let has = |r: &[(String, String, String)], rule: &str| {
            r.iter()
                .any(|(t, c, x)| *t == table && *c == chain && x == rule)
        };
        Ok(match op {
            "-N" if has(&rules, "") => (false, "iptables: Chain already exists.".into()),
            "-N" => {
                rules.push((table, chain, String::new()));
                (true, String::new())
            }
            "-C" => (has(&rules, &rule), String::new()),
            "-A" => {
                rules.push((table, chain, rule));
                (true, String::new())
            }
            "-I" => {
                rules.insert(0, (table, chain, rule));
                (true, String::new())
            }
            _ => (false, format!("unsupported {op}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_as_go_prints_them() {
        assert_eq!(mark(14), "0x004000");
        assert_eq!(mark(15), "0x008000");
        assert_eq!(mark(0), "0x000001");
    }

    #[test]
    fn chains_and_rules_are_made_once() {
        let ipt = FakeIptables::default();
        assert!(sync_network_util(&ipt, 14, 15).is_empty());
        let first = ipt.rules.lock().unwrap().clone();
        assert!(first.iter().any(|(t, c, r)| t == "filter"
            && c == KUBE_FIREWALL
            && r.contains("--dst 127.0.0.0/8 ! --src 127.0.0.0/8")
            && r.contains("! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")));
        assert!(
            first
                .iter()
                .any(|(t, c, r)| t == "filter" && c == "INPUT" && r == "-j KUBE-FIREWALL")
        );
        assert!(
            first
                .iter()
                .any(|(t, c, r)| t == "filter" && c == "OUTPUT" && r == "-j KUBE-FIREWALL")
        );
        assert!(first.iter().any(|(t, c, r)| t == "nat"
            && c == KUBE_MARK_DROP
            && r == "-j MARK --or-mark 0x008000"));
        // A second pass finds everything and adds nothing.
        assert!(sync_network_util(&ipt, 14, 15).is_empty());
        assert_eq!(*ipt.rules.lock().unwrap(), first);
    }
}
