//! The embedded L4 router: kube-proxy's behaviour in user space.
//!
//! - one endpoint is chosen per *connection* (round robin);
//! - an established connection stays pinned to its endpoint after the endpoint is withdrawn, as a
//!   conntrack entry does, until either side closes it;
//! - a failed connect to the endpoint reaches the client: its connection is reset before any byte
//!   (the client cannot tell it from a refused connect, and the router records it as refused);
//! - an upstream reset is passed on as a reset; no retries.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{RouterError, Table};
use crate::events::{PodId, RouterId};

/// What the router did with one client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    /// The pod it was sent to (None: no endpoint at all).
    pub pod: Option<PodId>,
    /// The connect to the pod failed.
    pub refused: bool,
}

/// The kube-proxy-like router.
#[derive(Debug)]
pub(crate) struct L4Router {
    id: RouterId,
    addr: SocketAddr,
    table: Table,
    conns: Mutex<HashMap<SocketAddr, ConnInfo>>,
    cancel: CancellationToken,
}

impl L4Router {
    pub async fn start(id: RouterId) -> Result<Arc<Self>, RouterError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RouterError::io("l4 bind", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RouterError::io("l4 bind", e))?;
        let router = Arc::new(Self {
            id,
            addr,
            table: Table::default(),
            conns: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        });
        tokio::spawn(Arc::clone(&router).serve(listener));
        Ok(router)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// What the router did with the client connection from `client` (its local address).
    pub fn conn_info(&self, client: SocketAddr) -> Option<ConnInfo> {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
            .copied()
    }

    async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((client, peer)) => {
                    let me = Arc::clone(&self);
                    tokio::spawn(async move { me.handle(client, peer).await });
                }
                Err(e) => {
                    tracing::debug!(router = self.id, "l4 accept: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    fn record(&self, peer: SocketAddr, info: ConnInfo) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, info);
    }

    async fn handle(&self, mut client: TcpStream, peer: SocketAddr) {
        let Some(ep) = self.table.pick() else {
            self.record(
                peer,
                ConnInfo {
                    pod: None,
                    refused: true,
                },
            );
            reset(client);
            return;
        };
        self.record(
            peer,
            ConnInfo {
                pod: Some(ep.pod),
                refused: false,
            },
        );
        let upstream =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(ep.addr)).await;
        let mut upstream = match upstream {
            Ok(Ok(s)) => s,
            _ => {
                self.record(
                    peer,
                    ConnInfo {
                        pod: Some(ep.pod),
                        refused: true,
                    },
                );
                reset(client);
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        let res = tokio::select! {
            () = self.cancel.cancelled() => Ok((0, 0)),
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => r,
        };
        if res.is_err() {
            // The pod reset the connection (or died): pass the reset on, as the kernel would.
            reset(client);
        }
    }
}

/// Closes with RST instead of FIN.
pub(crate) fn reset(stream: TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
