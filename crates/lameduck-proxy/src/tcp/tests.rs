//! TCP mode's phases on real loopback sockets: idle close at Closing, busy connections left
//! to finish, the forced close.

use std::net::SocketAddr;
use std::time::Duration;

use lameduck_core::{Settings, Shutdown, Trigger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};

use super::{Quiet, TcpForward, serve_tcp};
use crate::ClientAddress;
use crate::ProxyMetrics;

const IDLE_GRACE: Duration = Duration::from_millis(400);
/// How often the busy clients below send a byte: well inside the idle grace.
const BUSY_EVERY: Duration = Duration::from_millis(40);

/// An app that echoes every byte, on loopback.
async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

async fn round_trip(stream: &mut TcpStream, byte: u8) -> std::io::Result<()> {
    stream.write_all(&[byte]).await?;
    let mut back = [0];
    stream.read_exact(&mut back).await?;
    assert_eq!(back[0], byte, "the echo came back unchanged");
    Ok(())
}

/// Whether the proxy closed the stream (end of stream or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0; 16];
    matches!(
        timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Round-trips a byte on each of `streams` every [`BUSY_EVERY`], `rounds` times; returns when
/// the last byte was sent.
async fn keep_busy(streams: &mut [&mut TcpStream], rounds: u8) -> Instant {
    let mut last_sent = Instant::now();
    for round in 0..rounds {
        last_sent = Instant::now();
        for stream in streams.iter_mut() {
            round_trip(stream, round)
                .await
                .expect("a connection moving bytes stays open at Closing");
        }
        sleep(BUSY_EVERY).await;
    }
    last_sent
}

#[tokio::test]
async fn at_closing_quiet_connections_close_and_busy_ones_stay_until_quiet_or_forced() {
    let app = echo_app().await;
    let mut settings = Settings::from_lookup(|_| None).unwrap();
    settings
        .set(
            "LAMEDUCK_IDLE_GRACE",
            &format!("{}ms", IDLE_GRACE.as_millis()),
        )
        .unwrap();
    let shutdown = Shutdown::new(settings.validate().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(serve_tcp(
        shutdown.clone(),
        listener,
        TcpForward {
            upstream: app,
            client_address: ClientAddress::None,
            accept_proxy_protocol: false,
            metrics: ProxyMetrics::default(),
            after_detection: false,
        },
    ));
    shutdown.lifecycle().mark_ready();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let mut forced = TcpStream::connect(addr).await.unwrap();
    for stream in [&mut idle, &mut busy, &mut forced] {
        round_trip(stream, b'a').await.unwrap();
    }

    shutdown.lifecycle().drain(Trigger::Programmatic);
    shutdown.lifecycle().close();
    timeout(Duration::from_secs(5), serving)
        .await
        .expect("the accept loop ends at Closing")
        .unwrap();
    // Five idle graces of traffic: only the quiet connection is closed meanwhile.
    let rounds = u8::try_from(5 * IDLE_GRACE.as_millis() / BUSY_EVERY.as_millis()).unwrap();
    let busy_last_sent = keep_busy(&mut [&mut busy, &mut forced], rounds).await;
    // Already closed by now; the wait only covers a proxy thread slowed by a loaded machine.
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "the connection quiet since before Closing was closed"
    );

    // `busy` goes quiet: it is closed, while `forced` keeps moving bytes and stays open.
    let mut busy_closed = false;
    for round in 0..100 {
        round_trip(&mut forced, round)
            .await
            .expect("a connection moving bytes stays open at Closing");
        if closed_within(&mut busy, BUSY_EVERY).await {
            busy_closed = true;
            break;
        }
    }
    assert!(
        busy_closed,
        "a connection that went quiet at Closing was closed"
    );
    assert!(
        busy_last_sent.elapsed() >= IDLE_GRACE,
        "not before a whole idle grace of quiet"
    );

    // The forced close drops a connection even while bytes move on it.
    shutdown.force_close().cancel();
    let mut dropped = false;
    for round in 0..50 {
        if round_trip(&mut forced, round).await.is_err() {
            dropped = true;
            break;
        }
        sleep(BUSY_EVERY).await;
    }
    assert!(dropped, "the forced close dropped a busy connection");
}

#[test]
fn a_connection_is_idle_a_whole_grace_after_the_sample_that_saw_its_last_bytes() {
    let grace = Duration::from_millis(400);
    let start = Instant::now();
    let mut quiet = Quiet {
        count: 0,
        since: start,
    };
    // Bytes moved before this sample: the quiet counts from the sample.
    let sampled = start + Duration::from_millis(100);
    quiet.sample(3, sampled);
    let just_before = sampled + grace - Duration::from_millis(1);
    assert_eq!(
        quiet.idle_check(sampled, grace),
        Some(sampled + grace / 4),
        "looks again within a quarter grace"
    );
    assert_eq!(quiet.idle_check(just_before, grace), Some(sampled + grace));
    // No byte since: the same count leaves the quiet where it was.
    quiet.sample(3, just_before);
    assert_eq!(quiet.idle_check(sampled + grace, grace), None);
    // A byte more starts the quiet again.
    quiet.sample(4, sampled + grace);
    assert_eq!(
        quiet.idle_check(sampled + grace, grace),
        Some(sampled + grace + grace / 4)
    );
}
