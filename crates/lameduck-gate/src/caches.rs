//! What the gate reads on every decision, kept by watches (reflectors), not polled per
//! request: EndpointSlices (the evidence) and Namespaces (the opt-in label).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::task::JoinHandle;

use crate::settings::{OPT_IN_LABEL, OPT_IN_VALUE};

/// The watched objects.
#[derive(Clone)]
pub struct Caches {
    slices: Store<EndpointSlice>,
    namespaces: Store<Namespace>,
}

/// Starts a reflector for `K` whose objects lose their managed fields (the gate never reads
/// them; they are most of an object's size).
fn reflect<K>(client: &kube::Client) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear());
    let task = tokio::spawn(async move {
        reflector::reflector(writer, stream)
            .for_each(|event| async move {
                if let Err(error) = event {
                    tracing::warn!(%error, "watch failed; retrying with backoff");
                }
            })
            .await;
    });
    (reader, task)
}

impl Caches {
    /// Starts the watches and waits (at most `limit`) for their first lists.
    pub async fn start(
        client: &kube::Client,
        limit: Duration,
    ) -> Result<(Self, Vec<JoinHandle<()>>), String> {
        let (slices, slices_task) = reflect::<EndpointSlice>(client);
        let (namespaces, namespaces_task) = reflect::<Namespace>(client);
        let ready = async {
            slices.wait_until_ready().await.map_err(|e| e.to_string())?;
            namespaces
                .wait_until_ready()
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(limit, ready)
            .await
            .map_err(|_| format!("EndpointSlices and Namespaces not listed within {limit:?}"))??;
        Ok((
            Self { slices, namespaces },
            vec![slices_task, namespaces_task],
        ))
    }

    /// Whether the namespace carries the opt-in label.
    pub fn namespace_opted_in(&self, namespace: &str) -> bool {
        self.namespaces
            .get(&reflector::ObjectRef::new(namespace))
            .is_some_and(|ns| {
                ns.labels().get(OPT_IN_LABEL).map(String::as_str) == Some(OPT_IN_VALUE)
            })
    }

    /// The EndpointSlices (as `namespace/name`) that still list `ip` as ready. A missing
    /// `ready` counts as ready: consumers read it so.
    pub fn still_ready_in(&self, ip: IpAddr) -> Vec<String> {
        let address = ip.to_string();
        self.slices
            .state()
            .iter()
            .filter(|slice| {
                slice.endpoints.iter().flatten().any(|endpoint| {
                    endpoint.addresses.contains(&address)
                        && endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false)
                })
            })
            .map(|slice| {
                format!(
                    "{}/{}",
                    slice.namespace().unwrap_or_default(),
                    slice.name_any()
                )
            })
            .collect()
    }
}
