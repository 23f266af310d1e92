//! This node's Node object as the API server has it (upstream's node informer and
//! `nodeLister`, field-selected by name): what admission judges labels and allocatable by.

use crate::api::NodeWatcher;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher::Event;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Follows the Node until cancelled; `None` while it does not exist. `listed` turns true
/// once the first list is in.
pub async fn run(
    source: Arc<dyn NodeWatcher>,
    name: String,
    tx: watch::Sender<Option<Arc<Node>>>,
    listed: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut stream = source.watch_node(&name);
    let mut seen = false;
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        match ev {
            Ok(Event::Apply(n) | Event::InitApply(n)) => {
                seen = true;
                tx.send_replace(Some(Arc::new(n)));
            }
            Ok(Event::Delete(_)) => {
                tx.send_replace(None);
            }
            Ok(Event::Init) => seen = false,
            // A list without the node: it is gone (or not registered yet).
            Ok(Event::InitDone) => {
                if !seen {
                    tx.send_replace(None);
                }
                listed.send_replace(true);
            }
            // The stream backs off before it retries.
            Err(e) => warn!(error = %e, "node watch failed; retrying"),
        }
    }
}
