//! Leader election with a `coordination.k8s.io/v1` Lease: of all the gate's replicas, only the
//! holder runs the background loops (putting pods back, opening readiness gates); every
//! replica answers admission requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// How long a lease lasts without renewal.
const LEASE_SECONDS: i32 = 15;
/// How often the holder renews it, and others try to take it.
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// Whether this replica holds the lease now.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: AtomicBool,
}

impl Leadership {
    /// Whether this replica is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

/// Takes and renews the lease `name` in `namespace` as `identity`, for the life of the gate.
pub async fn run(
    client: kube::Client,
    namespace: String,
    name: String,
    identity: String,
    leadership: Arc<Leadership>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut tick = tokio::time::interval(RENEW_EVERY);
    loop {
        tick.tick().await;
        let leading = match try_lead(&api, &name, &identity).await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(lease = %format!("{namespace}/{name}"), "{e}");
                false
            }
        };
        if leading != leadership.leader.swap(leading, Ordering::Relaxed) {
            tracing::info!(lease = %format!("{namespace}/{name}"), leading, "leadership changed");
        }
    }
}

async fn try_lead(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, String> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let Some(mut lease) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e.to_string()),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let mine = spec.holder_identity.as_deref() == Some(identity);
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
        now.as_second() - renewed.0.as_second() > duration
    });
    if !mine && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(identity.to_owned());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(LEASE_SECONDS);
    // The resourceVersion makes this a compare-and-swap: of two replicas, one wins.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
