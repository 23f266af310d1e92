//! Which container instance `/containerLogs` serves (upstream `validateContainerLogStatus`),
//! decided from the pod's reported status alone.

use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

/// Why `/containerLogs` has no log to serve, in upstream's words (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogStatusError {
    #[error("container {container:?} in pod {pod:?} is not available")]
    NotAvailable { container: String, pod: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious { container: String, pod: String },
    #[error("container {container:?} in pod {pod:?} is terminated")]
    Terminated { container: String, pod: String },
    #[error("container {container:?} in pod {pod:?} is waiting to start: {why}")]
    Waiting {
        container: String,
        pod: String,
        why: String,
    },
    #[error("container {container:?} in pod {pod:?} is waiting to start - no logs yet")]
    NoLogsYet { container: String, pod: String },
}

/// The runtime ID (the part after `containerd://`) of the container whose log to read, or
/// why there is none.
pub fn log_container_id(
    pod_name: &str,
    status: &PodStatus,
    container: &str,
    previous: bool,
) -> Result<String, LogStatusError> {
    let (cn, pn) = (container.to_string(), pod_name.to_string());
    let find = |list: &Option<Vec<ContainerStatus>>| {
        list.iter().flatten().find(|c| c.name == container).cloned()
    };
    let c = find(&status.container_statuses)
        .or_else(|| find(&status.init_container_statuses))
        .or_else(|| find(&status.ephemeral_container_statuses))
        .ok_or_else(|| LogStatusError::NotAvailable {
            container: cn.clone(),
            pod: pn.clone(),
        })?;
    let state = c.state.clone().unwrap_or_default();
    let last_terminated = c.last_state.as_ref().and_then(|s| s.terminated.clone());
    let last_id = last_terminated
        .as_ref()
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let terminated_msg = || LogStatusError::Terminated {
        container: cn.clone(),
        pod: pn.clone(),
    };
    let id = if previous {
        last_id.ok_or_else(|| LogStatusError::NoPrevious {
            container: cn.clone(),
            pod: pn.clone(),
        })?
    } else if state.running.is_some() {
        c.container_id.clone().unwrap_or_default()
    } else if let Some(t) = &state.terminated {
        match t.container_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => id.to_string(),
            // The next instance did not start: the last one's log.
            None => last_id.ok_or_else(terminated_msg)?,
        }
    } else if last_terminated.is_some() {
        last_id.ok_or_else(terminated_msg)?
    } else if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or_default();
        let why = match reason {
            "ErrImagePull" => "image can't be pulled",
            "ImagePullBackOff" => "trying and failing to pull image",
            r => r,
        };
        return Err(LogStatusError::Waiting {
            container: cn,
            pod: pn,
            why: why.into(),
        });
    } else {
        return Err(LogStatusError::NoLogsYet {
            container: cn,
            pod: pn,
        });
    };
    // "containerd://<id>" -> "<id>", as kubecontainer.ParseContainerID.
    Ok(id
        .split_once("://")
        .map_or(id.clone(), |(_, id)| id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    fn status(c: ContainerStatus) -> PodStatus {
        PodStatus {
            container_statuses: Some(vec![c]),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The ID `c`'s logs come from, or the error's text.
    fn id_of(c: &ContainerStatus, name: &str, previous: bool) -> Result<String, String> {
        log_container_id("p", &status(c.clone()), name, previous).map_err(|e| e.to_string())
    }

    fn terminated(id: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(id.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn waiting_containers_say_why() {
        let waiting_msg = |why: &str| {
            Err(format!(
                r#"container "c" in pod "p" is waiting to start{why}"#
            ))
        };
        assert_eq!(
            id_of(&waiting("CreateContainerConfigError"), "c", false),
            waiting_msg(": CreateContainerConfigError")
        );
        assert_eq!(
            id_of(&waiting("ErrImagePull"), "c", false),
            waiting_msg(": image can't be pulled")
        );
        let c = waiting("ImagePullBackOff");
        assert_eq!(
            id_of(&c, "c", false),
            waiting_msg(": trying and failing to pull image")
        );
        assert_eq!(
            id_of(&c, "other", false),
            Err(r#"container "other" in pod "p" is not available"#.into())
        );
        assert_eq!(
            id_of(&c, "c", true),
            Err(r#"previous terminated container "c" in pod "p" not found"#.into())
        );
        let mut none = waiting("x");
        none.state = None;
        assert_eq!(id_of(&none, "c", false), waiting_msg(" - no logs yet"));
    }

    #[test]
    fn running_terminated_and_previous_instances() {
        let mut c = waiting("CrashLoopBackOff");
        c.last_state = Some(terminated("containerd://old"));
        // Waiting after a crash: the last instance's log, as kubectl logs shows it.
        assert_eq!(id_of(&c, "c", false), Ok("old".into()));
        assert_eq!(id_of(&c, "c", true), Ok("old".into()));
        c.state = Some(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        });
        c.container_id = Some("containerd://new".into());
        assert_eq!(id_of(&c, "c", false), Ok("new".into()));
        c.state = Some(terminated("containerd://done"));
        assert_eq!(id_of(&c, "c", false), Ok("done".into()));
        // Terminated without an ID (the next instance never started): the last one.
        c.state = Some(terminated(""));
        assert_eq!(id_of(&c, "c", false), Ok("old".into()));
        c.last_state = None;
        assert_eq!(
            id_of(&c, "c", false),
            Err(r#"container "c" in pod "p" is terminated"#.into())
        );
        // Init containers are found too.
        let s = PodStatus {
            init_container_statuses: Some(vec![ContainerStatus {
                name: "init".into(),
                state: Some(terminated("containerd://i")),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(log_container_id("p", &s, "init", false), Ok("i".into()));
    }
}
