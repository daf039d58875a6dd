//! A bare event loop: per thread, one level-triggered epoll set that reads a ready socket and
//! writes to its peer at once, as HAProxy's loop does, with no tasks, wakers or run queue.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::PeerError;

/// The epoll data of the listening socket; connections use their descriptor.
const LISTENER: u64 = u64::MAX;
/// HAProxy's default `tune.bufsize`.
const BUFFER: usize = 16 * 1024;
/// HAProxy's default `tune.maxpollevents`.
const EVENTS_PER_WAIT: usize = 200;

/// Accepts on `listen` and splices each connection to `upstream` until the process is killed.
pub(crate) fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
) -> Result<(), PeerError> {
    let listener = TcpListener::bind(listen).map_err(|e| PeerError::Listen(listen, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| PeerError::Listen(listen, e))?;
    crate::announce(listener.local_addr());
    let listener = Arc::new(listener);
    let mut handles = Vec::with_capacity(threads);
    for number in 0..threads {
        let listener = Arc::clone(&listener);
        let handle = std::thread::Builder::new()
            .name(format!("epoll-{number}"))
            .spawn(move || EventLoop::new(listener, upstream)?.run())
            .map_err(PeerError::Thread)?;
        handles.push(handle);
    }
    for handle in handles {
        // A loop only returns on an epoll error; a panic is a bug worth seeing as one.
        match handle.join() {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    Ok(())
}

/// One side of a spliced pair.
struct Side {
    stream: TcpStream,
    peer: RawFd,
    /// Bytes read from the peer that this side's socket did not take yet. While any wait, the
    /// peer is not read, so a slow side slows its sender instead of growing this.
    outbox: Vec<u8>,
}

struct EventLoop {
    epoll: Epoll,
    listener: Arc<TcpListener>,
    upstream: SocketAddr,
    /// Indexed by descriptor.
    sides: Vec<Option<Side>>,
    buffer: Box<[u8]>,
}

impl EventLoop {
    fn new(listener: Arc<TcpListener>, upstream: SocketAddr) -> Result<Self, PeerError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(PeerError::Epoll)?;
        // Exclusive: a new connection wakes one thread, not all of them.
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        epoll
            .add(&*listener, EpollEvent::new(flags, LISTENER))
            .map_err(PeerError::Epoll)?;
        Ok(Self {
            epoll,
            listener,
            upstream,
            sides: Vec::new(),
            buffer: vec![0; BUFFER].into_boxed_slice(),
        })
    }

    fn run(mut self) -> Result<(), PeerError> {
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => return Err(PeerError::Epoll(error)),
            };
            for event in &events[..ready] {
                if event.data() == LISTENER {
                    self.accept();
                    continue;
                }
                let Ok(fd) = RawFd::try_from(event.data()) else {
                    continue;
                };
                let flags = event.events();
                if flags.contains(EpollFlags::EPOLLOUT) {
                    self.flush(fd);
                }
                let hangup = flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
                if hangup || flags.contains(EpollFlags::EPOLLIN) {
                    self.forward(fd, hangup);
                }
            }
        }
    }

    /// Takes one connection per event, so the next one wakes a thread that is waiting (with
    /// `EPOLLEXCLUSIVE`, one at a time) instead of piling onto this one.
    fn accept(&mut self) {
        // None left (another thread took it), or this one client failed.
        let Ok((client, _)) = self.listener.accept() else {
            return;
        };
        if let Ok(server) = TcpStream::connect(self.upstream) {
            self.pair(client, server);
        }
    }

    fn pair(&mut self, client: TcpStream, server: TcpStream) {
        for stream in [&client, &server] {
            if stream.set_nodelay(true).is_err() || stream.set_nonblocking(true).is_err() {
                return;
            }
        }
        let (client_fd, server_fd) = (client.as_raw_fd(), server.as_raw_fd());
        for stream in [&client, &server] {
            let event = EpollEvent::new(EpollFlags::EPOLLIN, descriptor_data(stream.as_raw_fd()));
            if self.epoll.add(stream, event).is_err() {
                return;
            }
        }
        self.put(client_fd, Side::new(client, server_fd));
        self.put(server_fd, Side::new(server, client_fd));
    }

    fn put(&mut self, fd: RawFd, side: Side) {
        let Ok(index) = usize::try_from(fd) else {
            return;
        };
        if self.sides.len() <= index {
            self.sides.resize_with(index + 1, || None);
        }
        self.sides[index] = Some(side);
    }

    /// Reads what `fd` has and writes it to its peer.
    fn forward(&mut self, fd: RawFd, hangup: bool) {
        let Some(peer) = side_at(&mut self.sides, fd).map(|side| side.peer) else {
            return;
        };
        let backlog = side_at(&mut self.sides, peer).map(|target| !target.outbox.is_empty());
        match backlog {
            None => return self.close(fd),
            // Not read until the peer took what waits; a hangup cannot wait (it stays ready).
            Some(true) if hangup => return self.close(fd),
            Some(true) => return,
            Some(false) => {}
        }
        let Some(side) = side_at(&mut self.sides, fd) else {
            return;
        };
        let read = match side.stream.read(&mut self.buffer) {
            Ok(0) => return self.close(fd),
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(_) => return self.close(fd),
        };
        let Some(target) = side_at(&mut self.sides, peer) else {
            return self.close(fd);
        };
        let data = &self.buffer[..read];
        let written = match target.stream.write(data) {
            Ok(written) => written,
            Err(error) if error.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => return self.close(fd),
        };
        if written < read {
            target.outbox.extend_from_slice(&data[written..]);
            // Wait for room at the peer and stop reading this side until then.
            let both = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT;
            if !(self.watch(peer, both) && self.watch(fd, EpollFlags::empty())) {
                self.close(fd);
            }
        }
    }

    /// Writes what waits for `fd`; once all is out, its peer is read again.
    fn flush(&mut self, fd: RawFd) {
        let Some(side) = side_at(&mut self.sides, fd) else {
            return;
        };
        if side.outbox.is_empty() {
            return;
        }
        let written = match side.stream.write(&side.outbox) {
            Ok(written) => written,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(_) => return self.close(fd),
        };
        side.outbox.drain(..written);
        if side.outbox.is_empty() {
            let peer = side.peer;
            if !(self.watch(fd, EpollFlags::EPOLLIN) && self.watch(peer, EpollFlags::EPOLLIN)) {
                self.close(fd);
            }
        }
    }

    fn watch(&mut self, fd: RawFd, flags: EpollFlags) -> bool {
        let Some(side) = side_at(&mut self.sides, fd) else {
            return false;
        };
        let mut event = EpollEvent::new(flags, descriptor_data(fd));
        self.epoll.modify(&side.stream, &mut event).is_ok()
    }

    /// Closes both sides of `fd`'s pair; closing a descriptor also leaves the epoll set.
    fn close(&mut self, fd: RawFd) {
        let peer = side_at(&mut self.sides, fd).map(|side| side.peer);
        for fd in [Some(fd), peer].into_iter().flatten() {
            if let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.sides.get_mut(i)) {
                *slot = None;
            }
        }
    }
}

impl Side {
    fn new(stream: TcpStream, peer: RawFd) -> Self {
        Self {
            stream,
            peer,
            outbox: Vec::new(),
        }
    }
}

fn side_at(sides: &mut [Option<Side>], fd: RawFd) -> Option<&mut Side> {
    usize::try_from(fd)
        .ok()
        .and_then(|index| sides.get_mut(index))
        .and_then(Option::as_mut)
}

/// Descriptors are never negative, so this keeps them apart from [`LISTENER`].
fn descriptor_data(fd: RawFd) -> u64 {
    u64::try_from(fd).unwrap_or(LISTENER)
}
