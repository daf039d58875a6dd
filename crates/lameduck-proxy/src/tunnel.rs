//! Upgraded connections (WebSocket and other `Upgrade:` protocols): bytes both ways.
//!
//! A WebSocket that just stops is an abnormal closure (1006) to the client, which many client
//! libraries report as an error. Apps wrapped by `lameduck run` are often naive: they exit on
//! the stop signal without closing their WebSockets. So for WebSocket tunnels the proxy follows
//! the frames the app sends, and when the app's side ends without a close frame, or the forced
//! close cuts the tunnel, it sends the client a close frame of its own, `1001 Going Away`, at a
//! frame boundary: the client reconnects, through routers that by then route elsewhere.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod frames;

// Crate-wide for the fuzz entry points (feature `fuzzing`).
pub(crate) use frames::FrameTracker;

/// How long the client may take to read the close frame and close its side.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
/// Bytes moved per read, each direction.
const BUFFER: usize = 16 * 1024;

/// Splices the client's and the app's upgraded connections once both upgrades completed.
///
/// The tunnel ends when both sides closed, when the app's side ends (for WebSockets), or when
/// `force_close` fires. `websocket` turns on the close frame described in the module docs.
pub(crate) fn spawn(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    websocket: bool,
    force_close: CancellationToken,
) {
    tokio::spawn(async move {
        let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        splice(
            TokioIo::new(downstream),
            TokioIo::new(upstream),
            websocket,
            &force_close,
        )
        .await;
    });
}

async fn splice<C, A>(client: C, app: A, websocket: bool, force_close: &CancellationToken)
where
    C: AsyncRead + AsyncWrite,
    A: AsyncRead + AsyncWrite,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut app_rd, mut app_wr) = tokio::io::split(app);
    let mut frames = websocket.then(FrameTracker::default);
    // Boxed rather than pinned on the stack, so it can be dropped to read the client directly.
    let mut to_app = Box::pin(async {
        let copied = tokio::io::copy(&mut client_rd, &mut app_wr).await;
        let _ = app_wr.shutdown().await;
        copied
    });
    // Set once the client's side ended (and the copy to the app with it).
    let mut from_client = None;
    let from_app = tokio::select! {
        biased;
        () = force_close.cancelled() => None,
        from_app = async {
            let to_client = relay(&mut app_rd, &mut client_wr, frames.as_mut());
            tokio::pin!(to_client);
            // At most two turns: the client's side may end first, the app's ends the loop.
            loop {
                tokio::select! {
                    from_app = &mut to_client => break from_app,
                    copied = &mut to_app, if from_client.is_none() => from_client = Some(copied),
                }
            }
        } => Some(from_app),
    };
    match &from_app {
        None => tracing::debug!("forced close: cutting an upgraded connection"),
        Some(Err(error)) => {
            tracing::debug!(%error, "the app's side of an upgraded connection failed")
        }
        Some(Ok(())) => {}
    }
    let Some(frames) = frames else {
        // A plain tunnel half-closes like TCP: the client may still be sending.
        if from_app.is_some() && from_client.is_none() {
            tokio::select! {
                biased;
                () = force_close.cancelled() => {}
                _ = &mut to_app => {}
            }
        }
        return;
    };
    if frames.close_sent() {
        // The app closed the WebSocket itself: let the client's answer reach it.
        if from_client.is_none() {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, &mut to_app).await;
        }
        let _ = client_wr.shutdown().await;
        return;
    }
    if !frames.at_boundary() {
        tracing::debug!("the app's side ended mid-frame: no close frame can be sent");
        return;
    }
    drop(to_app);
    let sent = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        client_wr.write_all(&frames::GOING_AWAY).await?;
        client_wr.shutdown().await?;
        // The closing handshake: the client answers with its close frame and closes. Reading
        // that out before dropping the socket keeps the kernel from answering it with a reset,
        // which can destroy the close frame before the client reads it.
        tokio::io::copy(&mut client_rd, &mut tokio::io::sink()).await
    })
    .await;
    match sent {
        Ok(Ok(_)) => {
            tracing::debug!("sent the client 1001 Going Away for a WebSocket the app left open")
        }
        Ok(Err(error)) => tracing::debug!(%error, "cannot send the client a close frame"),
        Err(_) => tracing::debug!("the client did not take the close frame in time"),
    }
}

/// Copies the app's bytes to the client until the app's side ends, following WebSocket frames
/// when `frames` is given. Only bytes the client's socket took are counted as sent, so the
/// tracker knows the boundary the client is at whenever this future is dropped.
async fn relay<R, W>(
    app: &mut R,
    client: &mut W,
    mut frames: Option<&mut FrameTracker>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; BUFFER];
    loop {
        let read = app.read(&mut buffer).await?;
        if read == 0 {
            if frames.is_none() {
                client.shutdown().await?;
            }
            return Ok(());
        }
        let mut pending = &buffer[..read];
        while !pending.is_empty() {
            let written = client.write(pending).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            if let Some(frames) = frames.as_deref_mut() {
                frames.feed(&pending[..written]);
            }
            pending = &pending[written..];
        }
    }
}
