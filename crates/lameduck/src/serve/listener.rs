//! Where a server takes its connections from.

use std::future::Future;
use std::io;

use tokio::net::{TcpListener, TcpStream};

/// A source of accepted connections for [`Lameduck::serve`](crate::Lameduck::serve).
///
/// A plain [`TcpListener`] is one. Implement it to hand a server sockets accepted elsewhere,
/// as the drain proxy of `lameduck run` does to even out connections between its threads.
pub trait Listener: Send + 'static {
    /// Kept for as long as the connection's socket lives (past an upgrade too), so a listener
    /// can count the connections it handed out that are still open.
    type Guard: Send + Sync + 'static;

    /// The next connection. Must be cancel-safe: the server drops the future at Closing.
    ///
    /// Errors that concern only one connection (`ConnectionReset`, `ConnectionAborted`,
    /// `ConnectionRefused`) are skipped; any other makes the server retry after a short pause.
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, Self::Guard)>> + Send;
}

impl Listener for TcpListener {
    type Guard = ();

    async fn accept(&mut self) -> io::Result<(TcpStream, ())> {
        let (stream, _peer) = TcpListener::accept(self).await?;
        Ok((stream, ()))
    }
}

/// Errors that concern only the connection being accepted, not the listener.
pub fn is_per_connection(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::serve::tests::get_ending_with;
    use crate::{Lameduck, PeerAddr};
    use axum::Extension;
    use axum::routing::get;

    /// A listener that counts the connections it handed out that are still open.
    struct Counting {
        inner: TcpListener,
        open: Arc<AtomicUsize>,
    }

    struct Open(Arc<AtomicUsize>);

    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Listener for Counting {
        type Guard = Open;

        async fn accept(&mut self) -> io::Result<(TcpStream, Open)> {
            let (stream, _) = self.inner.accept().await?;
            self.open.fetch_add(1, Ordering::SeqCst);
            Ok((stream, Open(Arc::clone(&self.open))))
        }
    }

    async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// A custom listener's guard lives as long as its connection, and every request carries
    /// the client's address as [`PeerAddr`] (read here with axum's `Extension`).
    #[tokio::test]
    async fn a_custom_listener_serves_and_requests_know_their_peer() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let listener = Counting {
            inner,
            open: Arc::clone(&open),
        };
        let lameduck = Lameduck::builder()
            .admin_addr(None)
            .hard_exit(false)
            .build()
            .unwrap();
        let app = axum::Router::new().route(
            "/",
            get(|Extension(PeerAddr(peer)): Extension<PeerAddr>| async move { peer.to_string() }),
        );
        let server = tokio::spawn(lameduck.serve(listener, app).into_future());

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let peer = client.local_addr().unwrap().to_string();
        let response = get_ending_with(&mut client, &peer).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(&peer), "the body is {peer}: {response}");
        assert_eq!(
            open.load(Ordering::SeqCst),
            1,
            "the kept-alive connection is open"
        );
        drop(client);
        assert!(
            wait_until(|| open.load(Ordering::SeqCst) == 0).await,
            "the guard is dropped with the connection"
        );
        server.abort();
    }
}
