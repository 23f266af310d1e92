//! Wires the parts together and runs them until cancelled (upstream `kubelet.go` + `server.go`).

use crate::healthz;
use crate::node_facts::{HostFacts, watch_runtime};
use crate::settings::swap_in_use;
pub use crate::settings::{KubeletError, Settings, TunableError, settings, setup_kernel_tunables};
use k8s_openapi::api::core::v1::NodeAddress;
use kubelet_api::client::ApiClient;
use kubelet_api::events::Recorder;
use kubelet_api::kubelet_node_status::NodeStatusManager;
use kubelet_api::mirror_client::{MirrorPodManager, MirrorPods};
use kubelet_api::nodelease::LeaseController;
use kubelet_api::pod_source;
use kubelet_api::status_manager::StatusManager;
use kubelet_config::KubeletConfiguration;
use kubelet_core::clock::{SharedClock, SystemClock};
use kubelet_core::nodestatus::RuntimeState;
use kubelet_cri::RuntimeService;
use kubelet_cri::remote::RemoteRuntime;
use kubelet_host::{Host, RealHost};
use kubelet_pod::config::SourceUpdate;
use kubelet_pod::kuberuntime::{RuntimeConfig, RuntimeManager};
use kubelet_pod::pleg::{Pleg, PlegHealth};
use kubelet_pod::pod_workers::{PodWorkers, WorkerDeps};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The API clients, each with its own connections and budget so no caller waits behind
/// another kind: the main one (`kubeAPIQPS`/`kubeAPIBurst`), the heartbeat's (lease and node
/// status, unlimited like upstream's HeartbeatClient, with a request timeout), and the 10250
/// API's TokenReviews and SubjectAccessReviews (a small budget of their own).
#[derive(Debug, Clone)]
pub struct ApiClients {
    pub main: ApiClient,
    pub heartbeat: ApiClient,
    pub auth: ApiClient,
}

/// What the 10250 API's authentication and authorization may spend on the API server.
pub const AUTH_QPS: f64 = 10.0;
pub const AUTH_BURST: u32 = 20;

async fn connect_api(
    path: &str,
    cfg: &KubeletConfiguration,
    cert: Option<kubelet_api::client::ClientCertificate>,
) -> Result<ApiClients, KubeletError> {
    let err = |message: String| KubeletError::Kubeconfig {
        path: path.into(),
        message,
    };
    let mut kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    if cert.is_some() {
        // The certificate manager's pair is used; the files may not exist yet.
        for a in kc
            .auth_infos
            .iter_mut()
            .filter_map(|a| a.auth_info.as_mut())
        {
            a.client_certificate = None;
            a.client_key = None;
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    let client = |c: kube::Config| match &cert {
        Some(cert) => {
            kubelet_api::client::rotating_client(c, cert.clone()).map_err(|e| err(e.to_string()))
        }
        None => {
            let layer = kubelet_api::rest_metrics::RestMetricsLayer::new(&c.cluster_url);
            kube::client::ClientBuilder::try_from(c)
                .map(|b| b.with_layer(&layer).build())
                .map_err(|e| err(e.to_string()))
        }
    };
    let mut beat = config.clone();
    // As upstream: a heartbeat request may take no longer than the status update period.
    let beat_timeout = cfg.node_status_update_frequency.min(Duration::from_secs(
        u64::from(cfg.node_lease_duration_seconds).max(1),
    ));
    beat.read_timeout = Some(beat_timeout);
    beat.write_timeout = Some(beat_timeout);
    beat.connect_timeout = Some(beat_timeout);
    Ok(ApiClients {
        main: ApiClient::new(
            client(config.clone())?,
            cfg.kube_api_qps,
            cfg.kube_api_burst,
        ),
        heartbeat: ApiClient::new(client(beat)?, 0.0, 1),
        auth: ApiClient::new(client(config)?, AUTH_QPS, AUTH_BURST),
    })
}

/// `kernelMemcgNotification`: the kernel's memory threshold notifications, on cgroup v1
/// (on v2 the eviction manager polls, as upstream 1.20 does there).
fn memcg_notifiers(cfg: &KubeletConfiguration) -> Option<Arc<kubelet_host::memcg::MemcgNotifiers>> {
    if !cfg.kernel_memcg_notification {
        return None;
    }
    let pods = cfg.cgroup_layout().kubepods().path(cfg.cgroup_driver);
    let n = kubelet_host::memcg::MemcgNotifiers::new(
        std::path::Path::new(kubelet_host::memcg::MEMCG_ROOT),
        &pods,
    );
    if n.is_none() {
        warn!(
            "kernelMemcgNotification: no cgroup v1 memory controller; the eviction manager polls"
        );
    }
    n.map(Arc::new)
}

/// Container GC's limits, from upstream's (deprecated, still honoured) flags.
fn gc_policy(f: &kubelet_config::flags::KubeletFlags) -> kubelet_core::gc::GcPolicy {
    kubelet_core::gc::GcPolicy {
        min_age: f.minimum_container_ttl_duration,
        max_per_pod_container: f.maximum_dead_containers_per_container,
        max_containers: f.maximum_dead_containers,
    }
}

/// What start-up learned about the node, for the later steps.
struct NodeSetup {
    cfg: KubeletConfiguration,
    host: Arc<dyn Host>,
    root_dir: PathBuf,
    clock: SharedClock,
    cgroups: Arc<dyn kubelet_host::cgroups::Cgroups>,
    machine: kubelet_core::machine::MachineInfo,
    node_ip: Option<IpAddr>,
    addresses: Vec<NodeAddress>,
    host_dns: kubelet_core::dns::DnsConfig,
}

/// The container runtime, connected.
struct Cri {
    rt: Arc<dyn RuntimeService>,
    runtime_name: String,
}

/// The API side, or the little of it standalone mode has.
struct ApiSide {
    /// The main client; `None` standalone.
    api: Option<ApiClient>,
    recorder: Recorder,
    status: StatusManager,
    objects: Option<kubelet_api::object_manager::ObjectManager>,
    /// UIDs of pods whose ConfigMaps or Secrets changed.
    objects_rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    secrets: Option<Arc<dyn kubelet_pod::credentialprovider::SecretSource>>,
    /// The API's mirror pods; `None` standalone.
    mirrors: Option<MirrorPods>,
}

/// The running pod pipeline.
struct Pipeline {
    runtime: Arc<RuntimeManager>,
    volumes: Arc<kubelet_pod::volume_manager::VolumeManager>,
    workers: PodWorkers,
    workers_cancel: CancellationToken,
    prober: kubelet_pod::prober::ProbeManager,
    pleg_health: PlegHealth,
    pods_synced: Arc<AtomicBool>,
    /// `true` once every pod source has been seen (systemd's READY waits for it).
    pods_listed: watch::Receiver<bool>,
    /// Where the API's pod source sends.
    pod_updates: tokio::sync::mpsc::Sender<SourceUpdate>,
    mirrors: Option<MirrorPods>,
    stats: Arc<kubelet_pod::stats::StatsProvider>,
    status: StatusManager,
    /// Set by the node shutdown manager: the node reports NotReady, at once (`kick`).
    shutting_down: Arc<AtomicBool>,
    node_status_kick: Arc<tokio::sync::Notify>,
    /// The Node as the API server returns it; admission reads it.
    node_published: watch::Sender<Option<Arc<k8s_openapi::api::core::v1::Node>>>,
    /// The eviction manager's pressure conditions; admission and the node status read them.
    pressure: watch::Sender<Vec<String>>,
    /// No API server: containers of pods the kubelet does not know are left alone.
    standalone: bool,
}

/// How long the API's pods wait for the node informer's first list.
const NODE_LISTED_WAIT: Duration = Duration::from_secs(10);

/// Runs the kubelet until `cancel` (or until one of its tasks ends early, an error).
pub async fn run(s: Settings, cancel: CancellationToken) -> Result<(), KubeletError> {
    let node = prepare_node(&s).await?;
    let cri = connect_runtime(&s, &node.cfg).await?;
    crate::cm::check_runtime_driver(cri.rt.as_ref(), node.cfg.cgroup_driver).await?;
    let mut tasks = crate::tasks::Tasks::new();
    let clients = match &s.flags.kubeconfig {
        Some(p) => {
            let cert_dir = s
                .flags
                .cert_dir
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| node.root_dir.join("pki"));
            let paths = crate::certificate::client::Paths {
                kubeconfig: std::path::Path::new(p),
                bootstrap: s
                    .flags
                    .bootstrap_kubeconfig
                    .as_deref()
                    .map(std::path::Path::new),
                cert_dir: &cert_dir,
            };
            let cert = crate::certificate::client::setup(
                paths,
                node.cfg.rotate_certificates,
                &s.node_name,
                node.clock.clone(),
                node.cfg.kube_api_qps,
                node.cfg.kube_api_burst,
            )
            .await
            .map_err(|e| KubeletError::Certificate(e.to_string()))?;
            let clients =
                connect_api(p, &node.cfg, cert.as_ref().map(|c| c.current.clone())).await?;
            if let Some(c) = cert {
                let _ = c.node_client.set(clients.main.clone());
                tasks.spawn("client certificate", c.manager.run(cancel.child_token()));
            }
            Some(clients)
        }
        None => {
            info!("no --kubeconfig: running standalone");
            None
        }
    };
    let api = build_api_side(&s, &node, clients.as_ref(), &mut tasks, &cancel);
    let pipeline = start_pod_pipeline(&s, &node, &cri, api, &mut tasks, &cancel);
    let shutdown = crate::nodeshutdown::ShutdownManager::new(
        &node.cfg,
        pipeline.workers.clone(),
        pipeline.status.clone(),
        pipeline.shutting_down.clone(),
        pipeline.node_status_kick.clone(),
    );
    if let Some(run) = shutdown.start(cancel.child_token()).await? {
        tasks.spawn("node shutdown", run);
    }
    match &clients {
        Some(clients) => {
            start_node_status(&s, &node, &cri, clients, &pipeline, &mut tasks, &cancel)
        }
        // Standalone there is no node to register: ready once the static pods are read.
        None => tasks.spawn(
            "systemd notify",
            crate::service::notify_systemd(
                watch::channel(true).1,
                pipeline.pods_listed.clone(),
                cancel.child_token(),
            ),
        ),
    }
    serve(&s, &node, clients.as_ref(), &pipeline, &mut tasks, &cancel).await?;
    info!(node = %s.node_name, "kubelet started");
    supervise(tasks, pipeline, cancel).await
}

/// Host checks and set-up: swap, kernel settings, directories, QoS cgroups, addresses.
async fn prepare_node(s: &Settings) -> Result<NodeSetup, KubeletError> {
    let cfg = s.config.clone();
    // As Go's runtime does: connection caps, not EMFILE, bound the servers.
    match kubelet_server::listener::raise_nofile_limit() {
        Some(n) => info!(limit = n, "open files limit"),
        None => warn!("could not raise the open files limit"),
    }
    let host: Arc<dyn Host> = Arc::new(RealHost);
    if cfg.fail_swap_on && swap_in_use(host.as_ref()) {
        return Err(KubeletError::Flag {
            flag: "fail-swap-on",
            message: "running with swap on is not supported, please disable swap or set failSwapOn to false".into(),
        });
    }
    setup_kernel_tunables(host.as_ref(), cfg.protect_kernel_defaults)?;
    let root_dir = PathBuf::from(&s.flags.root_dir);
    for dir in [
        root_dir.join("pods"),
        PathBuf::from("/var/log/pods"),
        PathBuf::from("/var/log/containers"),
    ] {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| KubeletError::Io {
                what: "creating",
                path: dir.display().to_string(),
                source,
            })?;
    }
    // Pod directories hold secrets and tokens: root's (and its group's) alone, as upstream's
    // 0750; enforced on a directory an older kubelet made too.
    for dir in [root_dir.clone(), root_dir.join("pods")] {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))
            .await
            .map_err(|source| KubeletError::Io {
                what: "chmod",
                path: dir.display().to_string(),
                source,
            })?;
    }
    let clock: SharedClock = Arc::new(SystemClock);
    // The kubelet outlives its pods under memory pressure (upstream: warn if not allowed).
    let adj = kubelet_core::qos::KUBELET_OOM_SCORE_ADJ.to_string();
    if let Err(e) = host.write_string(std::path::Path::new("/proc/self/oom_score_adj"), &adj) {
        warn!(value = %adj, error = %e, "setting the kubelet's oom_score_adj failed");
    }
    let machine = host.machine_info()?;
    let cgroups = crate::cm::setup_cgroups(&cfg, &machine).await?;
    // Upstream's order: --node-ip, a node name that is an IP, what the node name resolves
    // to (if assigned here), then the default route's interface.
    let node_ip: Option<IpAddr> = match &s.flags.node_ip {
        Some(ip) => ip.split(',').next().and_then(|p| p.trim().parse().ok()),
        None => match s.node_name.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let (h, name) = (host.clone(), s.node_name.clone());
                let lookup = tokio::task::spawn_blocking(move || h.lookup_node_ip(&name));
                // A resolver that does not answer must not hold the start up for long.
                let found = tokio::time::timeout(Duration::from_secs(5), lookup)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
                found.or_else(|| host.default_route_ip())
            }
        },
    };
    let mut addresses = vec![];
    if let Some(ip) = node_ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: s.node_name.clone(),
    });
    let host_dns = tokio::fs::read_to_string(&cfg.resolv_conf)
        .await
        .map(|t| kubelet_core::dns::parse_resolv_conf(&t))
        .unwrap_or_default();

    Ok(NodeSetup {
        cfg,
        host,
        root_dir,
        clock,
        cgroups,
        machine,
        node_ip,
        addresses,
        host_dns,
    })
}

/// Connects to the CRI runtime and waits (up to 30 s) for it to answer.
async fn connect_runtime(s: &Settings, cfg: &KubeletConfiguration) -> Result<Cri, KubeletError> {
    let rt: Arc<dyn RuntimeService> = Arc::new(
        kubelet_pod::instrumented_services::InstrumentedRuntime(Arc::new(RemoteRuntime::connect(
            &s.flags.container_runtime_endpoint,
            cfg.runtime_request_timeout,
        )?)),
    );
    kubelet_pod::metrics::METRICS
        .node_name
        .get_or_create(&vec![("node".to_string(), s.node_name.clone())])
        .set(1);
    let runtime_name = match tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rt.version().await {
                Ok(v) => return v,
                Err(e) => {
                    warn!(error = %e, "container runtime not answering yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
    .await
    {
        Ok(v) => {
            info!(runtime = %v.runtime_name, version = %v.runtime_version, api = %v.runtime_api_version, "container runtime connected");
            v.runtime_name
        }
        Err(_) => rt.version().await?.runtime_name,
    };

    Ok(Cri { rt, runtime_name })
}

/// The API clients, the event recorder, the status manager and the object cache.
fn build_api_side(
    s: &Settings,
    node: &NodeSetup,
    clients: Option<&ApiClients>,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) -> ApiSide {
    let NodeSetup { cfg, clock, .. } = node;
    let api = clients.map(|c| c.main.clone());
    let recorder = match &api {
        Some(api) => {
            // Events have their own budget (eventRecordQPS/eventBurst), as upstream's recorder.
            let events_api = api.with_limits(cfg.event_record_qps, cfg.event_burst);
            let (r, sender) =
                Recorder::new(Arc::new(events_api), s.node_name.clone(), clock.clone());
            tasks.spawn("event recorder", sender);
            r
        }
        None => Recorder::disabled(),
    };
    let mirrors = api.as_ref().map(|_| MirrorPods::default());
    let mut status = StatusManager::new(
        api.clone()
            .map(|a| Arc::new(a) as Arc<dyn kubelet_api::PodStatusWriter>),
    );
    if let Some(m) = &mirrors {
        status = status.with_mirrors(m.clone());
    }
    tasks.spawn("status manager", status.clone().run(cancel.child_token()));

    let (objects_tx, objects_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let objects = api.as_ref().map(|a| {
        kubelet_api::object_manager::ObjectManager::new(
            Arc::new(a.clone()),
            objects_tx,
            cancel.child_token(),
        )
    });
    let secrets: Option<Arc<dyn kubelet_pod::credentialprovider::SecretSource>> =
        api.as_ref().map(|a| {
            // Services for the containers' environment, from one watch on all of them.
            let (store, mut writer) = kube::runtime::reflector::store();
            let mut services = kubelet_api::ObjectSource::watch_services(a);
            let stop = cancel.child_token();
            tasks.spawn("service watch", async move {
                use futures::StreamExt;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        item = services.next() => match item {
                            None => return,
                            // The stream backs off before it retries.
                            Some(Err(e)) => warn!(error = %e, "service watch failed; retrying"),
                            Some(Ok(ev)) => writer.apply_watcher_event(&ev),
                        },
                    }
                }
            });
            Arc::new(kubelet_pod::credentialprovider::ApiSecrets {
                api: Arc::new(a.clone()),
                services: store,
                objects: objects.clone(),
            }) as Arc<dyn kubelet_pod::credentialprovider::SecretSource>
        });
    ApiSide {
        api,
        recorder,
        status,
        objects,
        objects_rx,
        secrets,
        mirrors,
    }
}

/// Volumes, the runtime manager, prober, pod workers, PLEG, stats, log rotation and
/// housekeeping.
fn start_pod_pipeline(
    s: &Settings,
    node: &NodeSetup,
    cri: &Cri,
    api: ApiSide,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) -> Pipeline {
    let NodeSetup {
        cfg,
        host,
        root_dir,
        clock,
        cgroups,
        machine,
        node_ip,
        host_dns,
        ..
    } = node;
    let Cri { rt, runtime_name } = cri;
    let ApiSide {
        api,
        recorder,
        status,
        objects,
        mut objects_rx,
        secrets,
        mirrors,
    } = api;
    let allocatable = kubelet_core::nodestatus::downward_allocatable(
        machine,
        &host.fs_stats(root_dir).unwrap_or_default(),
        &cfg.eviction_hard(),
        &cfg.reserved(),
    );
    let mut volumes = kubelet_pod::volume_manager::VolumeManager::new(
        root_dir.clone(),
        Arc::new(kubelet_host::mount::RealMounter),
        secrets.clone(),
        recorder.clone(),
        clock.clone(),
    );
    volumes.allocatable = allocatable.clone();
    volumes.host_ip = node_ip.map(|i| i.to_string()).unwrap_or_default();
    volumes.objects = objects;
    volumes.prepare_root();
    let volumes = Arc::new(volumes);
    let runtime = Arc::new(RuntimeManager {
        rt: rt.clone(),
        runtime_name: runtime_name.clone(),
        cfg: RuntimeConfig {
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            host_dns: host_dns.clone(),
            pod_logs_root: PathBuf::from("/var/log/pods"),
            container_logs_root: PathBuf::from("/var/log/containers"),
            pod_pids_limit: cfg.pod_pids_limit,
            root_dir: root_dir.clone(),
            host_ip: node_ip.map(|i| i.to_string()),
            gc_policy: gc_policy(&s.flags),
            allocatable,
            cgroup_driver: cfg.cgroup_driver,
            cgroup_layout: cfg.cgroup_layout(),
            memory_capacity: machine.memory_bytes,
        },
        recorder,
        clock: clock.clone(),
        secrets,
        cgroups: Some(cgroups.clone()),
        qos_changed: Default::default(),
        exited: Default::default(),
        volumes: volumes.clone(),
    });
    let workers_cancel = cancel.child_token();
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let prober = kubelet_pod::prober::ProbeManager::new(
        rt.clone(),
        runtime.recorder.clone(),
        probe_tx,
        workers_cancel.child_token(),
        clock.clone(),
    );
    let labels = kubelet_core::nodestatus::node_labels(
        &s.node_name,
        &s.node_name,
        &machine.architecture,
        &s.node_labels,
    );
    let (node_published, node_rx) = watch::channel(None);
    let (pressure, pressure_rx) = watch::channel(Vec::<String>::new());
    let local_node = {
        let facts = HostFacts {
            host: host.clone(),
            rt: rt.clone(),
            runtime_state: watch::channel(RuntimeState::default()).1,
            root_dir: root_dir.clone(),
            addresses: vec![],
            port: cfg.port,
            max_pods: cfg.pod_capacity(machine.num_cpus),
            eviction_hard: cfg.eviction_hard(),
            reserved: cfg.reserved(),
            max_images: 0,
            health: Arc::new(Vec::new),
            pressure: pressure_rx.clone(),
        };
        let (name, registration, clock) =
            (s.node_name.clone(), s.registration.clone(), clock.clone());
        Arc::new(move || facts.local_node(&name, &labels, &registration, clock.now()))
    };
    let workers = PodWorkers::new(
        Arc::new(WorkerDeps {
            runtime: runtime.clone(),
            status: status.clone(),
            host_ip: node_ip.map(|i| i.to_string()),
            clock: clock.clone(),
            resync: cfg.sync_frequency,
            prober: prober.clone(),
            admission: kubelet_pod::admission::Admitter {
                node: kubelet_pod::admission::NodeSource {
                    api: node_rx,
                    local: local_node,
                },
                pressure: pressure_rx,
                allowed_unsafe_sysctls: cfg.allowed_unsafe_sysctls.clone(),
            },
        }),
        workers_cancel.clone(),
    );
    // A changed ConfigMap or Secret refreshes the volumes of the pods using it.
    // (Standalone, nothing is watched and the channel is closed.)
    if api.is_some() {
        let (workers, volumes) = (workers.clone(), volumes.clone());
        tasks.spawn("object changes", async move {
            while let Some(uid) = objects_rx.recv().await {
                volumes.mark_dirty(&uid);
                workers.kick(&uid);
            }
        });
    }
    // A changed probe result wakes the pod's worker.
    {
        let workers = workers.clone();
        tasks.spawn("probe results", async move {
            while let Some(uid) = probe_rx.recv().await {
                workers.kick(&uid);
            }
        });
    }
    tasks.spawn(
        "qos tiers",
        crate::cm::update_qos_tiers(
            cgroups.clone(),
            cfg.cgroup_layout(),
            {
                let workers = workers.clone();
                move || workers.active_pods()
            },
            runtime.qos_changed.clone(),
            cancel.child_token(),
        ),
    );
    let (pods_synced, pods_listed, pod_updates) = start_pod_config(
        s,
        node,
        api.is_some(),
        &workers,
        &mirrors,
        &runtime.recorder,
        tasks,
        cancel,
    );
    let pleg_health = PlegHealth::new();
    tasks.spawn(
        "pleg",
        Pleg {
            runtime: runtime.clone(),
            workers: workers.clone(),
            health: pleg_health.clone(),
            period: Duration::from_secs(5),
            pods_synced: pods_synced.clone(),
            // Standalone, never touch another kubelet's pods (there is no API to say whose).
            own_root: api
                .is_none()
                .then(|| root_dir.to_string_lossy().into_owned()),
        }
        .run(cancel.child_token()),
    );

    let stats = Arc::new(
        kubelet_pod::stats::StatsProvider::new(
            s.node_name.clone(),
            rt.clone(),
            host.clone(),
            Some(cgroups.clone()),
            root_dir.clone(),
            PathBuf::from("/var/log/pods"),
            volumes.clone(),
            clock.clone(),
        )
        .with_layout(cfg.cgroup_layout())
        .with_pods_memory_limit(cfg.reserved().memory_left(machine)),
    );
    let pipeline = Pipeline {
        runtime,
        volumes,
        workers,
        workers_cancel,
        prober,
        pleg_health,
        pods_synced,
        pods_listed,
        pod_updates,
        mirrors,
        stats,
        status,
        shutting_down: Arc::default(),
        node_status_kick: Arc::default(),
        node_published,
        pressure,
        standalone: api.is_none(),
    };
    start_housekeeping(cfg, rt, clock, &pipeline, tasks, cancel);
    start_eviction_manager(s, cfg, clock, host, None, &pipeline, tasks, cancel);
    pipeline
}

/// The pod config: the static pod sources and the merge feeding the workers. Returns the
/// "synced" flag, its watch, and where the API's pod source is to send.
#[allow(clippy::too_many_arguments)]
fn start_pod_config(
    s: &Settings,
    node: &NodeSetup,
    with_api: bool,
    workers: &PodWorkers,
    mirrors: &Option<MirrorPods>,
    recorder: &Recorder,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) -> (
    Arc<AtomicBool>,
    watch::Receiver<bool>,
    tokio::sync::mpsc::Sender<SourceUpdate>,
) {
    use kubelet_core::config::Source;
    let cfg = &node.cfg;
    let mut sources = vec![];
    let (tx, rx) = tokio::sync::mpsc::channel(kubelet_pod::config::QUEUE);
    if !cfg.static_pod_path.is_empty() {
        sources.push(Source::File);
        tasks.spawn(
            "static pod files",
            kubelet_pod::config::file::FileSource {
                path: PathBuf::from(&cfg.static_pod_path),
                node: s.node_name.clone(),
                period: cfg.file_check_frequency,
                recorder: recorder.clone(),
            }
            .run(tx.clone(), cancel.child_token()),
        );
    }
    if !cfg.static_pod_url.is_empty() {
        sources.push(Source::Http);
        tasks.spawn(
            "static pod URL",
            kubelet_pod::config::http::HttpSource {
                url: cfg.static_pod_url.clone(),
                headers: cfg.static_pod_url_header.clone(),
                node: s.node_name.clone(),
                period: cfg.http_check_frequency,
            }
            .run(tx.clone(), cancel.child_token()),
        );
    }
    if with_api {
        sources.push(Source::Api);
    }
    let synced = Arc::new(AtomicBool::new(sources.is_empty()));
    let (listed_tx, listed_rx) = watch::channel(sources.is_empty());
    tasks.spawn(
        "pod config",
        kubelet_pod::config::PodConfig {
            workers: workers.clone(),
            mirrors: mirrors.clone(),
            sources,
            synced: synced.clone(),
            listed: listed_tx,
            recorder: recorder.clone(),
            clock: node.clock.clone(),
        }
        .run(rx, cancel.child_token()),
    );
    (synced, listed_rx, tx)
}

/// Container log rotation, and housekeeping: orphaned pod volumes and directories, and the
/// eviction manager's local-storage checks.
fn start_housekeeping(
    cfg: &KubeletConfiguration,
    rt: &Arc<dyn RuntimeService>,
    clock: &SharedClock,
    pipeline: &Pipeline,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) {
    // Container log rotation, every 10 s as upstream.
    if let Some(max_bytes) = cfg.container_log_max_bytes() {
        let logs = kubelet_pod::logs::ContainerLogManager::new(
            rt.clone(),
            kubelet_pod::logs::LogPolicy {
                max_bytes,
                max_files: usize::try_from(cfg.container_log_max_files).unwrap_or(5),
            },
            clock.clone(),
        );
        let logs = Arc::new(logs);
        tasks.spawn_every(
            "log rotation",
            kubelet_pod::logs::LOG_MONITOR_PERIOD,
            cancel.child_token(),
            move || {
                let logs = logs.clone();
                async move { logs.rotate_logs().await }
            },
        );
    }
    // Housekeeping: volumes and directories of pods the kubelet no longer knows (every 10 s,
    // as upstream).
    {
        let (workers, synced, volumes) = (
            pipeline.workers.clone(),
            pipeline.pods_synced.clone(),
            pipeline.volumes.clone(),
        );
        tasks.spawn_every(
            "housekeeping",
            kubelet_pod::volume_manager::HOUSEKEEPING_PERIOD,
            cancel.child_token(),
            move || {
                let (workers, synced, volumes) = (workers.clone(), synced.clone(), volumes.clone());
                async move {
                    if synced.load(std::sync::atomic::Ordering::Acquire) {
                        let active: std::collections::HashSet<String> =
                            workers.known().into_iter().collect();
                        volumes.cleanup_orphans(&active);
                    }
                }
            },
        );
    }
}

/// The eviction manager (node pressure, the pods' local-storage limits, evictions) and the
/// image garbage collector it reclaims disk with.
#[allow(clippy::too_many_arguments)]
fn start_eviction_manager(
    s: &Settings,
    cfg: &KubeletConfiguration,
    clock: &SharedClock,
    host: &Arc<dyn Host>,
    sandbox_image: Option<String>,
    pipeline: &Pipeline,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) {
    // Checked when the config was loaded.
    let thresholds = cfg.eviction_thresholds().unwrap_or_else(|e| {
        error!(error = %e, "eviction thresholds");
        vec![]
    });
    let image_gc = Arc::new(kubelet_pod::images::ImageGcManager::new(
        pipeline.runtime.rt.clone(),
        host.clone(),
        kubelet_pod::images::ImageGcPolicy {
            high_threshold_percent: u8::try_from(cfg.image_gc_high_threshold_percent)
                .unwrap_or(100),
            low_threshold_percent: u8::try_from(cfg.image_gc_low_threshold_percent).unwrap_or(0),
            min_age: cfg.image_minimum_gc_age,
        },
        sandbox_image,
        clock.clone(),
        pipeline.runtime.recorder.clone(),
        s.node_name.clone(),
    ));
    tasks.spawn("image gc", image_gc.clone().run(cancel.child_token()));
    let container_gc = kubelet_pod::container_gc::ContainerGc {
        runtime: pipeline.runtime.clone(),
        workers: pipeline.workers.clone(),
        policy: gc_policy(&s.flags),
        sources_ready: pipeline.pods_synced.clone(),
        own_only: pipeline.standalone,
    };
    {
        let gc = container_gc.clone();
        tasks.spawn_every(
            "container gc",
            kubelet_pod::container_gc::CONTAINER_GC_PERIOD,
            cancel.child_token(),
            move || {
                let gc = gc.clone();
                async move {
                    gc.garbage_collect().await;
                }
            },
        );
    }
    let manager = kubelet_pod::eviction::EvictionManager {
        workers: pipeline.workers.clone(),
        summary: pipeline.stats.clone(),
        local_storage: Some(pipeline.volumes.clone()),
        thresholds,
        max_pod_grace_seconds: i64::from(cfg.eviction_max_pod_grace_period),
        transition: cfg.eviction_pressure_transition_period,
        clock: clock.clone(),
        recorder: pipeline.runtime.recorder.clone(),
        node: s.node_name.clone(),
        pressure: pipeline.pressure.clone(),
        container_gc: Some(container_gc),
        image_gc: Some(image_gc),
        memcg: memcg_notifiers(cfg),
    };
    tasks.spawn("eviction manager", manager.run(cancel.child_token()));
}

/// The runtime's state, node registration and status, the lease, and the pod source.
fn start_node_status(
    s: &Settings,
    node: &NodeSetup,
    cri: &Cri,
    clients: &ApiClients,
    pipeline: &Pipeline,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) {
    let NodeSetup {
        cfg,
        host,
        root_dir,
        clock,
        machine,
        addresses,
        ..
    } = node;
    let rt = &cri.rt;
    let Pipeline {
        workers,
        pleg_health,
        pods_listed,
        pod_updates,
        mirrors,
        status,
        shutting_down,
        node_status_kick,
        node_published,
        pressure,
        ..
    } = pipeline;
    // Upstream's birth cry, and the kubepods cgroup's limits set by prepare_node.
    let node = kubelet_api::events::node_ref(&s.node_name);
    let recorder = &pipeline.runtime.recorder;
    recorder.emit(
        node.clone(),
        kubelet_api::events::NORMAL,
        "Starting",
        "Starting kubelet.",
    );
    recorder.emit(
        node,
        kubelet_api::events::NORMAL,
        "NodeAllocatableEnforced",
        "Updated Node Allocatable limit across pods",
    );
    let (rt_tx, rt_rx) = watch::channel(RuntimeState::default());
    tasks.spawn(
        "runtime state",
        watch_runtime(
            rt.clone(),
            rt_tx,
            Duration::from_secs(5),
            cancel.child_token(),
        ),
    );

    let health_errors = {
        let (h, shutting_down) = (pleg_health.clone(), shutting_down.clone());
        Arc::new(move || {
            let mut errors: Vec<String> =
                h.check().err().into_iter().map(|e| e.to_string()).collect();
            if shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
                errors.push(kubelet_core::nodeshutdown::NODE_SHUTTING_DOWN.into());
            }
            errors
        })
    };
    let api = &clients.main;
    let (registered_tx, registered_rx) = watch::channel(false);
    tasks.spawn(
        "node status",
        NodeStatusManager {
            api: Arc::new(clients.heartbeat.clone()),
            node_name: s.node_name.clone(),
            facts: Arc::new(HostFacts {
                host: host.clone(),
                rt: rt.clone(),
                runtime_state: rt_rx.clone(),
                root_dir: root_dir.clone(),
                addresses: addresses.clone(),
                port: cfg.port,
                max_pods: cfg.pod_capacity(machine.num_cpus),
                eviction_hard: cfg.eviction_hard(),
                reserved: cfg.reserved(),
                max_images: cfg.node_status_max_images,
                health: health_errors,
                pressure: pressure.subscribe(),
            }),
            runtime_state: rt_rx,
            clock: clock.clone(),
            labels: kubelet_core::nodestatus::node_labels(
                &s.node_name,
                &s.node_name,
                &machine.architecture,
                &s.node_labels,
            ),
            update_frequency: cfg.node_status_update_frequency,
            register: s.flags.register_node,
            registration: s.registration.clone(),
            registered: registered_tx,
            kick: node_status_kick.clone(),
            recorder: pipeline.runtime.recorder.clone(),
        }
        .run(cancel.child_token()),
    );
    tasks.spawn(
        "node lease",
        LeaseController {
            api: Arc::new(clients.heartbeat.clone()),
            node_name: s.node_name.clone(),
            duration_seconds: cfg.node_lease_duration_seconds,
            clock: clock.clone(),
        }
        .run(cancel.child_token()),
    );
    let (node_listed_tx, mut node_listed_rx) = watch::channel(false);
    tasks.spawn(
        "node informer",
        kubelet_api::node_informer::run(
            Arc::new(api.clone()),
            s.node_name.clone(),
            node_published.clone(),
            node_listed_tx,
            cancel.child_token(),
        ),
    );
    let (pods_tx, mut pods_rx) = tokio::sync::mpsc::channel(pod_source::QUEUE);
    tasks.spawn(
        "pod source",
        pod_source::run(
            Arc::new(api.clone()),
            s.node_name.clone(),
            pods_tx,
            cancel.child_token(),
        ),
    );
    let updates = pod_updates.clone();
    tasks.spawn("api pod updates", async move {
        // Admission judges pods by the Node's labels as the API server has them: the pods
        // wait for the node informer's first list (10 s at most).
        let listed = node_listed_rx.wait_for(|l| *l);
        if tokio::time::timeout(NODE_LISTED_WAIT, listed)
            .await
            .is_err()
        {
            warn!("the Node was not listed within 10 s; admitting pods by its local labels");
        }
        while let Some(u) = pods_rx.recv().await {
            if updates.send(SourceUpdate::Api(u)).await.is_err() {
                return;
            }
        }
    });
    if let Some(mirrors) = mirrors {
        let workers = workers.clone();
        tasks.spawn(
            "mirror pods",
            MirrorPodManager {
                client: Arc::new(api.clone()),
                mirrors: mirrors.clone(),
                statics: Arc::new(move || {
                    let mut pods = workers.pods();
                    pods.retain(kubelet_core::config::is_static_pod);
                    pods
                }),
                status: status.clone(),
                node: s.node_name.clone(),
                period: Duration::from_secs(10),
                synced: pipeline.pods_synced.clone(),
            }
            .run(cancel.child_token()),
        );
    }
    tasks.spawn(
        "systemd notify",
        crate::service::notify_systemd(registered_rx, pods_listed.clone(), cancel.child_token()),
    );
}

/// The kubelet API on 10250, the read-only port, the iptables chains and healthz.
async fn serve(
    s: &Settings,
    node: &NodeSetup,
    clients: Option<&ApiClients>,
    pipeline: &Pipeline,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) -> Result<(), KubeletError> {
    let NodeSetup {
        cfg,
        root_dir,
        clock,
        node_ip,
        ..
    } = node;
    let Pipeline {
        runtime,
        workers,
        pleg_health,
        stats,
        ..
    } = pipeline;
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let cert_dir = s
        .flags
        .cert_dir
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| root_dir.join("pki"));
    let files = (set(&cfg.tls_cert_file), set(&cfg.tls_private_key_file));
    // serverTLSBootstrap: the pair comes from CSRs, the files (if any) only until then.
    let serving = match (cfg.server_tls_bootstrap, clients) {
        (true, Some(c)) if cfg.enable_server => Some(
            crate::certificate::serving::start(
                &s.node_name,
                &node.addresses,
                &cert_dir,
                files.0.as_deref().zip(files.1.as_deref()),
                &c.main,
                clock.clone(),
                tasks,
                cancel,
            )
            .map_err(|e| KubeletError::Certificate(e.to_string()))?,
        ),
        _ => None,
    };
    let tls_files = match files {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) if serving.is_some() => None,
        // As upstream: no files configured, a self-signed pair in --cert-dir.
        (None, None) if clients.is_some() => {
            let dir = cert_dir.clone();
            let (c, k) = crate::certificate::self_signed(
                &dir,
                &s.node_name,
                &node_ip.iter().copied().collect::<Vec<_>>(),
                clock.now(),
            )?;
            info!(cert = %c.display(), "no tlsCertFile: serving with a self-signed certificate");
            Some((c.display().to_string(), k.display().to_string()))
        }
        (None, None) => None,
        _ => {
            return Err(KubeletError::Server(
                "tlsCertFile and tlsPrivateKeyFile must be set together".into(),
            ));
        }
    };
    let api_host = Arc::new(crate::server::KubeletHost {
        node_name: s.node_name.clone(),
        workers: workers.clone(),
        runtime: runtime.clone(),
        pleg: pleg_health.clone(),
        stats: stats.clone(),
        config: serde_json::to_value(cfg).unwrap_or_default(),
        debugging_handlers: cfg.enable_debugging_handlers,
        streaming_idle_timeout: cfg.streaming_connection_idle_timeout,
    });
    if !cfg.enable_server {
        info!(
            "enableServer is false: no kubelet API on port {} or readOnlyPort",
            cfg.port
        );
    }
    if let (true, Some(clients), true) = (
        cfg.enable_server,
        clients,
        tls_files.is_some() || serving.is_some(),
    ) {
        let read = |p: &str| {
            std::fs::read(p).map_err(|source| KubeletError::Io {
                what: "reading",
                path: p.into(),
                source,
            })
        };
        let client_ca = match &cfg.authentication.x509.client_ca_file {
            Some(p) if !p.is_empty() => Some(read(p)?),
            _ => None,
        };
        let addr: std::net::SocketAddr =
            format!("{}:{}", cfg.address, cfg.port)
                .parse()
                .map_err(|_| KubeletError::Flag {
                    flag: "address",
                    message: format!("{}:{} is not an address", cfg.address, cfg.port),
                })?;
        let server_cfg = kubelet_server::ServerConfig {
            min_version: cfg.tls_min_version.clone(),
            cipher_suites: cfg.tls_cipher_suites.clone(),
            addr,
            cert_pem: match (&serving, &tls_files) {
                (None, Some((cert, _))) => read(cert)?,
                _ => vec![],
            },
            key_pem: match (&serving, &tls_files) {
                (None, Some((_, key))) => read(key)?,
                _ => vec![],
            },
            cert_resolver: serving,
            client_ca_pem: client_ca,
        };
        let bound = kubelet_server::bind(&server_cfg)
            .await
            .map_err(|e| KubeletError::Server(e.to_string()))?;
        let reviewers = Arc::new(crate::server::ApiReviewers::new(clients.auth.clone()));
        let authn = &cfg.authentication;
        let tokens: Option<Arc<dyn kubelet_server::auth::TokenReviewer>> = authn
            .webhook
            .enabled
            .then(|| reviewers.clone() as Arc<dyn kubelet_server::auth::TokenReviewer>);
        let authenticator = Arc::new(kubelet_server::auth::Authenticator::new(
            authn.anonymous.enabled,
            tokens,
            authn.webhook.cache_ttl,
        ));
        let access: Option<Arc<dyn kubelet_server::auth::AccessReviewer>> =
            match cfg.authorization.mode {
                kubelet_config::AuthorizationMode::Webhook => Some(reviewers),
                kubelet_config::AuthorizationMode::AlwaysAllow => None,
            };
        let w = &cfg.authorization.webhook;
        let authorizer = Arc::new(kubelet_server::auth::Authorizer::new(
            access,
            w.cache_authorized_ttl,
            w.cache_unauthorized_ttl,
        ));
        info!(%addr, "serving the kubelet API");
        tasks.spawn(
            "kubelet API server",
            kubelet_server::serve(
                bound,
                api_host.clone(),
                authenticator,
                authorizer,
                cancel.child_token(),
            ),
        );
    }

    if cfg.enable_server && cfg.read_only_port != 0 {
        let addr = format!("{}:{}", cfg.address, cfg.read_only_port);
        let listener = listen(&addr).await?;
        warn!(%addr, "serving the read-only kubelet API without authentication (readOnlyPort)");
        tasks.spawn(
            "read-only API server",
            kubelet_server::server::serve_read_only(
                listener,
                api_host.clone(),
                cancel.child_token(),
            ),
        );
    }

    start_host_chores(cfg, pleg_health, tasks, cancel).await
}

/// The iptables util chains (checked every minute) and the healthz server.
async fn start_host_chores(
    cfg: &KubeletConfiguration,
    pleg_health: &PlegHealth,
    tasks: &mut crate::tasks::Tasks,
    cancel: &CancellationToken,
) -> Result<(), KubeletError> {
    if cfg.make_iptables_util_chains {
        // As upstream: made at start and checked every minute.
        let (masq, drop) = (
            cfg.iptables_masquerade_bit.unsigned_abs(),
            cfg.iptables_drop_bit.unsigned_abs(),
        );
        tasks.spawn_every(
            "iptables",
            Duration::from_secs(60),
            cancel.child_token(),
            move || async move {
                let ipt = kubelet_host::iptables::IptablesCmd::default();
                match tokio::task::spawn_blocking(move || {
                    kubelet_host::iptables::sync_network_util(&ipt, masq, drop)
                })
                .await
                {
                    Ok(errors) => {
                        for e in errors {
                            warn!(error = %e, "making the iptables util chains failed");
                        }
                    }
                    Err(e) => warn!(error = %e, "making the iptables util chains failed"),
                }
            },
        );
    }

    if cfg.healthz_port != 0 {
        let addr = format!("{}:{}", cfg.healthz_bind_address, cfg.healthz_port);
        let listener = listen(&addr).await?;
        let h = pleg_health.clone();
        let check: healthz::Check = Arc::new(move || h.check().map_err(crate::server::PlegFailed));
        tasks.spawn(
            "healthz server",
            healthz::serve(listener, check, cancel.child_token()),
        );
    }
    Ok(())
}

/// A TCP listener on `addr`, or an error naming it.
async fn listen(addr: &str) -> Result<tokio::net::TcpListener, KubeletError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| KubeletError::Io {
            what: "listening on",
            path: addr.into(),
            source,
        })
}

/// Waits for shutdown or for a task to end early, then stops everything; pods keep running.
async fn supervise(
    mut tasks: crate::tasks::Tasks,
    pipeline: Pipeline,
    cancel: CancellationToken,
) -> Result<(), KubeletError> {
    let Pipeline {
        workers,
        workers_cancel,
        prober,
        ..
    } = pipeline;

    let died = tokio::select! {
        // Shutdown ends tasks too: it must win over their exits.
        biased;
        _ = cancel.cancelled() => None,
        exit = tasks.first_exit() => (!cancel.is_cancelled()).then_some(exit),
    };
    match &died {
        None => info!("shutting down; pods keep running"),
        Some(exit) => error!(%exit, "a kubelet task ended early; stopping (pods keep running)"),
    }
    cancel.cancel();
    workers_cancel.cancel();
    workers.shutdown().await;
    prober.shutdown().await;
    // Give the tasks a moment to finish what they are sending, then stop the rest.
    tasks.shutdown(Duration::from_secs(1)).await;
    match died {
        None => Ok(()),
        Some(exit) => Err(KubeletError::Task(exit)),
    }
}
