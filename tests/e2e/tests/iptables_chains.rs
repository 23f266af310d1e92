//! The kubelet's iptables chains (makeIPTablesUtilChains), made by the real `iptables` in a
//! network namespace of the test's own, so the host's firewall is left alone: KUBE-FIREWALL
//! drops martian traffic to localhost (CVE-2020-8558), and a second pass adds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubelet_host::iptables::{IptablesCmd, sync_network_util};

/// Deletes the namespace, whatever happens.
struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn rules(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "iptables-save"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chains_are_made_once_in_a_namespace() {
    let name = format!("krs-ipt-{}", std::process::id());
    let st = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(st.success());
    let ns = Netns(name);
    let ipt = IptablesCmd {
        prefix: vec!["ip".into(), "netns".into(), "exec".into(), ns.0.clone()],
    };
    assert_eq!(
        sync_network_util(&ipt, 14, 15)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    let first = rules(&ns.0);
    for want in [
        "-A INPUT -j KUBE-FIREWALL",
        "-A OUTPUT -j KUBE-FIREWALL",
        "-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP",
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        "-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE",
    ] {
        assert!(first.contains(want), "missing {want:?} in:\n{first}");
    }
    // Checked every minute: a second pass finds every rule and adds none.
    assert_eq!(
        sync_network_util(&ipt, 14, 15)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with(':'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&rules(&ns.0)), strip(&first));
}
