//! A tokio splice as a first tokio proxy would be written: one task per connection.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::PeerError;

/// Accepts on `listen` and splices each connection to `upstream` until the process is killed.
pub(crate) fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
) -> Result<(), PeerError> {
    crate::serve_on_tokio(listen, threads, |client, _| {
        tokio::spawn(splice(client, upstream));
    })
}

async fn splice(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Request/response traffic: no Nagle delay on small writes, as HAProxy and lameduck do.
    if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
