//! The kernel settings the kubelet expects (upstream `setupKernelTunables`): with
//! `protectKernelDefaults` a differing value stops the kubelet; without, it is set.

/// Sysctls (as paths under /proc/sys) and the values upstream wants.
pub const KERNEL_TUNABLES: &[(&str, i64)] = &[
    ("vm/overcommit_memory", 1),
    ("vm/panic_on_oom", 0),
    ("kernel/panic", 10),
    ("kernel/panic_on_oops", 1),
    ("kernel/keys/root_maxkeys", 1_000_000),
    ("kernel/keys/root_maxbytes", 25_000_000),
];

/// What to do about the current values: the settings to write, and the errors (upstream's
/// words) that stop the kubelet. `current` holds each tunable's value, or why it could not be
/// read.
pub fn plan<E: std::fmt::Display>(
    current: &[(&'static str, Result<i64, E>)],
    protect: bool,
) -> (Vec<(&'static str, i64)>, Vec<String>) {
    let (mut set, mut errors) = (vec![], vec![]);
    for (flag, want) in KERNEL_TUNABLES {
        let Some((_, got)) = current.iter().find(|(f, _)| f == flag) else {
            continue;
        };
        match got {
            Err(e) => errors.push(e.to_string()),
            Ok(v) if v == want => {}
            Ok(v) if protect => errors.push(format!(
                "invalid kernel flag: {flag}, expected value: {want}, actual value: {v}"
            )),
            Ok(_) => set.push((*flag, *want)),
        }
    }
    (set, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(overcommit: i64) -> Vec<(&'static str, Result<i64, &'static str>)> {
        KERNEL_TUNABLES
            .iter()
            .map(|(f, v)| {
                (
                    *f,
                    Ok(if *f == "vm/overcommit_memory" {
                        overcommit
                    } else {
                        *v
                    }),
                )
            })
            .collect()
    }

    #[test]
    fn protect_refuses_and_otherwise_sets() {
        assert_eq!(plan(&current(1), true), (vec![], vec![]));
        assert_eq!(
            plan(&current(0), true),
            (
                vec![],
                vec![
                    "invalid kernel flag: vm/overcommit_memory, expected value: 1, actual value: 0"
                        .to_string()
                ]
            )
        );
        assert_eq!(
            plan(&current(0), false),
            (vec![("vm/overcommit_memory", 1)], vec![])
        );
        let unreadable = vec![("kernel/panic", Err("no /proc/sys".to_string()))];
        assert_eq!(plan(&unreadable, false).1, vec!["no /proc/sys".to_string()]);
    }
}
