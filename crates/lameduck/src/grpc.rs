//! gRPC support (feature `tonic`): a standard health service that follows the lifecycle.
//!
//! gRPC clients and meshes that use `grpc.health.v1.Health` (and Kubernetes' native gRPC
//! probes) see `SERVING` only in the Serving phase and `NOT_SERVING` from Draining on, exactly
//! like `/readyz`. Serve tonic services with [`crate::Lameduck::serve`] and a
//! `tonic::service::Routes`: HTTP/2 connections then get the two-step GOAWAY while draining.

use lameduck_core::Phase;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::Lameduck;

/// A `grpc.health.v1.Health` service whose overall status (service name `""`) and the status of
/// each name in `services` follow the lifecycle.
pub fn health_service(lameduck: &Lameduck, services: &[&str]) -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    let mut names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    names.push(String::new());
    let mut phases = lameduck.lifecycle().subscribe();
    tokio::spawn(async move {
        loop {
            let phase = phases.borrow_and_update().phase;
            let status = if phase == Phase::Serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for name in &names {
                reporter.set_service_status(name, status).await;
            }
            if phase >= Phase::Draining || phases.changed().await.is_err() {
                return;
            }
        }
    });
    service
}
