//! Evens out connections between the drain proxy's shards.
//!
//! The kernel spreads new connections over the shards' `SO_REUSEPORT` sockets by a hash of the
//! addresses, so a few dozen keep-alive connections often land 40/60 and stay that way: the
//! busier shard's connections then wait longer for their thread, which is what a p99 shows.
//! HAProxy avoids it by handing each accepted connection to its least loaded thread. Here a
//! shard keeps what it accepted unless it holds two more open connections than the least
//! loaded shard, and only then passes the socket over: the common case stays on one thread.

use std::io;
use std::net::TcpStream as StdStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lameduck::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A shard passes a connection on when it holds this many more than the least loaded one.
const IMBALANCE: usize = 2;

/// The open connections of every shard and the way to hand one a socket.
#[derive(Debug)]
pub(crate) struct Balancer {
    shards: Vec<Shard>,
}

#[derive(Debug)]
struct Shard {
    open: AtomicUsize,
    /// Sockets other shards pass to this one, each already counted open here.
    handover: mpsc::UnboundedSender<(StdStream, Open)>,
}

impl Balancer {
    /// A balancer over `count` shards, and each shard's end of it.
    pub(crate) fn seats(count: usize) -> Vec<Seat> {
        let (shards, inboxes): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| {
                let (handover, inbox) = mpsc::unbounded_channel();
                let shard = Shard {
                    open: AtomicUsize::new(0),
                    handover,
                };
                (shard, inbox)
            })
            .unzip();
        let balancer = Arc::new(Balancer { shards });
        inboxes
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Seat {
                index,
                inbox,
                balancer: Arc::clone(&balancer),
            })
            .collect()
    }

    /// The shard that should serve a connection `local` just accepted.
    fn place(&self, local: usize) -> usize {
        let load = |i: usize| self.shards[i].open.load(Ordering::Relaxed);
        let least = (0..self.shards.len())
            .min_by_key(|&i| load(i))
            .unwrap_or(local);
        if load(local) >= load(least) + IMBALANCE {
            least
        } else {
            local
        }
    }

    /// Counts one connection open on `shard` until the guard is dropped.
    fn open(self: &Arc<Self>, shard: usize) -> Open {
        self.shards[shard].open.fetch_add(1, Ordering::Relaxed);
        Open {
            balancer: Arc::clone(self),
            shard,
        }
    }
}

/// One shard's place in the balancer, until it has a listener (made on the shard's own thread,
/// whose reactor the listener registers with).
#[derive(Debug)]
pub(crate) struct Seat {
    index: usize,
    inbox: mpsc::UnboundedReceiver<(StdStream, Open)>,
    balancer: Arc<Balancer>,
}

impl Seat {
    pub(crate) fn listen(self, listener: TcpListener) -> ShardListener {
        ShardListener {
            index: self.index,
            listener,
            inbox: self.inbox,
            balancer: self.balancer,
        }
    }
}

/// One shard's source of connections: its own socket's, and those other shards pass to it.
#[derive(Debug)]
pub(crate) struct ShardListener {
    index: usize,
    listener: TcpListener,
    inbox: mpsc::UnboundedReceiver<(StdStream, Open)>,
    balancer: Arc<Balancer>,
}

/// Counts a connection open on its shard until dropped.
#[derive(Debug)]
pub(crate) struct Open {
    balancer: Arc<Balancer>,
    shard: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.balancer.shards[self.shard]
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Listener for ShardListener {
    type Guard = Open;

    async fn accept(&mut self) -> io::Result<(TcpStream, Open)> {
        loop {
            tokio::select! {
                biased;
                Some((stream, open)) = self.inbox.recv() => {
                    return Ok((TcpStream::from_std(stream)?, open));
                }
                accepted = self.listener.accept() => {
                    let (stream, _peer) = accepted?;
                    let target = self.balancer.place(self.index);
                    if target == self.index {
                        return Ok((stream, self.balancer.open(self.index)));
                    }
                    // Leaves this shard's reactor; the target registers it with its own.
                    let passed = (stream.into_std()?, self.balancer.open(target));
                    if let Err(returned) = self.balancer.shards[target].handover.send(passed) {
                        // That shard stopped accepting (Closing): serve it here.
                        let (stream, counted_there) = returned.0;
                        drop(counted_there);
                        return Ok((TcpStream::from_std(stream)?, self.balancer.open(self.index)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// Accepts `count` connections from `listener` within five seconds.
    async fn take(listener: &mut ShardListener, count: usize) -> Vec<(TcpStream, Open)> {
        let mut taken = Vec::with_capacity(count);
        for _ in 0..count {
            let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .expect("a connection within 5 s")
                .unwrap();
            taken.push(accepted);
        }
        taken
    }

    fn open(balancer: &Balancer) -> Vec<usize> {
        balancer
            .shards
            .iter()
            .map(|shard| shard.open.load(Ordering::Relaxed))
            .collect()
    }

    #[tokio::test]
    async fn connections_that_all_land_on_one_shard_are_spread_evenly() {
        let mut seats = Balancer::seats(2).into_iter();
        let mut busy = seats.next().unwrap().listen(bind().await);
        let mut idle = seats.next().unwrap().listen(bind().await);
        let addr = busy.listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        // The busy shard keeps what it accepts until it is two ahead, then passes one on.
        let kept = take(&mut busy, 4).await;
        let passed = take(&mut idle, 2).await;
        assert_eq!(open(&busy.balancer), [4, 2]);
        // Kept and passed sockets together are exactly the clients' connections.
        let mut peers: Vec<_> = passed.iter().map(|(s, _)| s.peer_addr().unwrap()).collect();
        peers.extend(kept.iter().map(|(s, _)| s.peer_addr().unwrap()));
        peers.sort();
        let mut locals: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        locals.sort();
        assert_eq!(peers, locals);

        // Closing connections frees their place: the next ones stay where they land.
        drop(passed);
        assert_eq!(open(&busy.balancer), [4, 0]);
        let _more = std::net::TcpStream::connect(idle.listener.local_addr().unwrap()).unwrap();
        let _also_kept = take(&mut idle, 1).await;
        assert_eq!(open(&busy.balancer), [4, 1]);
        drop(kept);
        assert_eq!(open(&busy.balancer), [0, 1]);
    }

    #[tokio::test]
    async fn a_shard_that_stopped_accepting_gets_nothing_passed() {
        let mut seats = Balancer::seats(2).into_iter();
        let mut busy = seats.next().unwrap().listen(bind().await);
        let stopped = seats.next().unwrap().listen(bind().await);
        let balancer = Arc::clone(&busy.balancer);
        drop(stopped);
        let addr = busy.listener.local_addr().unwrap();
        let _clients: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let kept = take(&mut busy, 4).await;
        assert_eq!(kept.len(), 4);
        assert_eq!(open(&balancer), [4, 0]);
    }
}
