//! The HTTPS endpoint the API server calls: `POST /validate` (AdmissionReview v1), plus
//! `/healthz` and `/metrics`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::gate::{Gate, Verdict};

/// The API server's default webhook timeout, for a call without `?timeout=`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// An AdmissionReview larger than this is refused (a pod is far smaller).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor from PEM files (the certificate chain and its private key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until the task is dropped.
pub async fn serve(gate: Arc<Gate>, listener: TcpListener, tls: TlsAcceptor) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (gate, tls) = (Arc::clone(&gate), tls.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req| respond(Arc::clone(&gate), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = conn.await {
                tracing::debug!(%error, "webhook connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond(
    gate: Arc<Gate>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => {
            gate.metrics.set_holding(gate.holding());
            let mut response = text(StatusCode::OK, gate.metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        (&Method::POST, "/validate") => validate(&gate, req).await,
        (_, "/healthz" | "/metrics" | "/validate") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: POST /validate, GET /healthz, GET /metrics\n",
        ),
    })
}

/// The call's own timeout (`?timeout=10s`, set by the API server from the webhook's
/// `timeoutSeconds`).
fn call_timeout(req: &Request<Incoming>) -> Duration {
    req.uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("timeout=")))
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(DEFAULT_CALL_TIMEOUT)
}

async fn validate(gate: &Gate, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let deadline = Instant::now() + call_timeout(&req);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the AdmissionReview: {e}\n"),
            );
        }
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("malformed AdmissionReview: {e}\n"),
            );
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "the AdmissionReview has no request\n",
            );
        }
    };
    let verdict = gate.decide(&request, deadline).await;
    let mut response = AdmissionResponse::from(&request);
    match verdict {
        Verdict::Allow(warnings) => {
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
        }
        Verdict::Deny { code, message } => {
            response = response.deny(message);
            response.result.code = code;
            if code == 429 {
                response.result.reason = "TooManyRequests".into();
            }
        }
    }
    match serde_json::to_vec(&response.into_review()) {
        Ok(json) => {
            let mut reply = Response::new(Full::new(Bytes::from(json)));
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            reply
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}\n"),
        ),
    }
}
