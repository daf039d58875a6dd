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
