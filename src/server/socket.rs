//! Fewer wake-ups per call for inbound media: a carrier sends a small message every 20 ms, and
//! each one would wake a thread. Once a call's stream has shown that its messages each carry one
//! 20 ms frame, the socket's receive low-water mark (`SO_RCVLOWAT`) is raised to one and a half
//! messages, so the kernel reports it readable every second message: half the wake-ups, each
//! handling two messages (the driver reads all a socket holds per wake-up). The cost is at most
//! one frame (20 ms) of added delay on what the caller says and on mark echoes.
//!
//! A message left alone under the mark (a carrier that stops streaming without closing) is not
//! stranded: when nothing has arrived for [`WATCHDOG`], the mark drops back to one byte, which
//! makes the kernel report any waiting bytes at once; it is raised again once the stream is
//! steady. A closed connection is always reported. Only on Linux; elsewhere this does nothing.
//!
//! While the caller talks over the agent the mark is held at one byte ([`RecvCoalescer::hold`]):
//! each of those frames may be the one at which the agent is stopped, or at which the recogniser
//! is asked whether it should be, so none waits for the next.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::extract::connect_info::ConnectInfo;
use axum::http::request::Parts;
use tokio::net::TcpStream;

/// The raw descriptor of an accepted connection, recorded at accept time (`ConnectInfo`) so that
/// a media upgrade can tune its socket.
#[derive(Debug, Clone, Copy)]
pub struct PeerSocket {
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

impl PeerSocket {
    /// The socket of an accepted connection.
    pub fn of(tcp: &TcpStream) -> Self {
        #[cfg(not(unix))]
        let _ = tcp;
        Self {
            #[cfg(unix)]
            fd: std::os::fd::AsRawFd::as_raw_fd(tcp),
        }
    }
}

/// The socket under a request, when the server recorded it (`serve` does; a router driven
/// without a listener, as in some tests, does not).
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaSocket(Option<PeerSocket>);

impl<S: Send + Sync> FromRequestParts<S> for MediaSocket {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<PeerSocket>>()
                .map(|c| c.0),
        ))
    }
}

/// Nothing received for this long: the low-water mark drops to one byte.
pub const WATCHDOG: Duration = Duration::from_millis(100);
/// Steady one-frame messages seen before the mark is raised.
const STEADY_MESSAGES: u32 = 25;
/// WebSocket framing a client adds to each message (header and mask).
const FRAMING_BYTES: usize = 8;

/// The receive low-water mark of one call's socket.
#[derive(Debug)]
pub struct RecvCoalescer {
    socket: Option<PeerSocket>,
    /// The mark in bytes while raised.
    raised: Option<usize>,
    steady: u32,
    bytes: usize,
    last_rx: Instant,
    /// The mark is held at one byte ([`Self::hold`]).
    held: bool,
}

impl RecvCoalescer {
    pub fn new(socket: MediaSocket, now: Instant) -> Self {
        Self {
            socket: socket.0,
            raised: None,
            steady: 0,
            bytes: 0,
            last_rx: now,
            held: false,
        }
    }

    /// A message of `len` bytes arrived; `frames`: the 20 ms caller frames it carried.
    pub fn on_message(&mut self, now: Instant, len: usize, frames: usize) {
        self.last_rx = now;
        if self.raised.is_some() || self.socket.is_none() {
            return;
        }
        match frames {
            // control messages (marks, DTMF) come between media: they neither count nor reset
            0 => {}
            1 => {
                self.steady += 1;
                self.bytes += len + FRAMING_BYTES;
                if self.steady >= STEADY_MESSAGES {
                    let mark = self.bytes / self.steady as usize * 3 / 2;
                    // while held, the mark is learnt now and applied when released
                    if self.held || self.set(mark) {
                        self.raised = Some(mark);
                    } else {
                        // not supported here: stop trying
                        self.socket = None;
                    }
                }
            }
            // a carrier that already batches its audio (Exotel's 100 ms): leave it alone
            _ => {
                self.socket = None;
            }
        }
    }

    /// Hold the mark at one byte (`true`: the caller talks over the agent, and each of their
    /// frames is read as it arrives) or release it to what the stream has shown (`false`). Two
    /// system calls per talk over the agent, none when the mark is not raised.
    pub fn hold(&mut self, hold: bool) {
        if self.held == hold {
            return;
        }
        self.held = hold;
        if let Some(mark) = self.raised
            && !self.set(if hold { 1 } else { mark })
        {
            // a mark learnt while held that cannot be set: not supported here, stop trying
            self.raised = None;
            self.socket = None;
        }
    }

    /// When the watchdog is due, while the mark is raised (and not held).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.raised
            .filter(|_| !self.held)
            .map(|_| self.last_rx + WATCHDOG)
    }

    /// The watchdog: if nothing arrived for [`WATCHDOG`] and less than a mark's worth waits in
    /// the socket, drop the mark to one byte (the kernel then reports waiting bytes at once) and
    /// learn the stream again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(mark) = self.raised
            && !self.held
            && now >= self.last_rx + WATCHDOG
        {
            // A thread that batches its wake-ups (`threads.rs`, every 100 ms) often finds this
            // due in the same wake-up as the messages that would have put it off: a mark's worth
            // is waiting, the socket is readable and nothing is stuck. Dropping the mark there
            // cost two system calls and half a second of learning the stream again, about once a
            // second per call (measured at 10 calls: 19 `setsockopt` a second before, none in
            // 10 s after, for 15 `ioctl`s a second here).
            if self.queued().is_some_and(|bytes| bytes >= mark) {
                self.last_rx = now;
                return;
            }
            self.set(1);
            self.raised = None;
            self.steady = 0;
            self.bytes = 0;
        }
    }

    /// The mark in bytes while raised.
    pub fn raised(&self) -> Option<usize> {
        self.raised
    }

    /// Bytes waiting in the socket's receive queue (`FIONREAD`).
    #[cfg(target_os = "linux")]
    fn queued(&self) -> Option<usize> {
        let socket = self.socket?;
        let mut value: libc::c_int = 0;
        // SAFETY: `socket.fd` is open for as long as this coalescer lives (see `set`); FIONREAD
        // writes one `c_int` to the pointer given.
        let rc = unsafe { libc::ioctl(socket.fd, libc::FIONREAD, &mut value as *mut libc::c_int) };
        (rc == 0).then_some(value.max(0) as usize)
    }

    #[cfg(not(target_os = "linux"))]
    fn queued(&self) -> Option<usize> {
        None
    }

    #[cfg(target_os = "linux")]
    fn set(&self, bytes: usize) -> bool {
        let Some(socket) = self.socket else {
            return false;
        };
        let value: libc::c_int = bytes.clamp(1, 64 * 1024) as libc::c_int;
        // SAFETY: `socket.fd` is the connection under this call's WebSocket, which the call's
        // driver owns (and so keeps open) for as long as this coalescer lives; setsockopt only
        // reads `size_of::<c_int>()` bytes from `&value`.
        let rc = unsafe {
            libc::setsockopt(
                socket.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn set(&self, _bytes: usize) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    fn lowat(fd: std::os::fd::RawFd) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads an int option of a socket this test owns into a local of that size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    }

    /// A loopback connection (listener, client, server) whose server side's coalescer has seen
    /// a steady stream of 392-byte one-frame messages, and when the last came.
    fn raised_on_loopback() -> (
        std::net::TcpListener,
        std::net::TcpStream,
        std::net::TcpStream,
        RecvCoalescer,
        Instant,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let fd = server.as_raw_fd();
        let mut now = Instant::now();
        let mut c = RecvCoalescer::new(MediaSocket(Some(PeerSocket { fd })), now);
        for _ in 0..STEADY_MESSAGES {
            now += Duration::from_millis(20);
            c.on_message(now, 392, 1);
        }
        (listener, client, server, c, now)
    }

    #[test]
    fn the_mark_rises_on_a_steady_stream_and_the_watchdog_drops_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let fd = server.as_raw_fd();
        let t0 = Instant::now();
        let mut c = RecvCoalescer::new(MediaSocket(Some(PeerSocket { fd })), t0);
        assert_eq!(c.poll_timeout(), None);
        let mut now = t0;
        for i in 0..STEADY_MESSAGES {
            assert_eq!(c.raised(), None, "raised after {i} messages");
            now += Duration::from_millis(20);
            c.on_message(now, 392, 1);
            // marks between the media do not count
            c.on_message(now, 80, 0);
        }
        assert_eq!(c.raised(), Some(600));
        assert_eq!(lowat(fd), 600);
        assert_eq!(c.poll_timeout(), Some(now + WATCHDOG));

        // a lone small message under the mark is not readable...
        client.write_all(&[7u8; 100]).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one descriptor this test owns, without waiting.
        assert_eq!(
            unsafe { libc::poll(&mut poll, 1, 50) },
            0,
            "held under the mark"
        );
        // ...until the watchdog drops the mark
        c.handle_timeout(now + WATCHDOG - Duration::from_millis(1));
        assert_eq!(c.raised(), Some(600));
        c.handle_timeout(now + WATCHDOG);
        assert_eq!(c.raised(), None);
        assert_eq!(lowat(fd), 1);
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::poll(&mut poll, 1, 50) },
            1,
            "readable at once"
        );
        let mut buf = [0u8; 200];
        assert_eq!(server.read(&mut buf).unwrap(), 100);
    }

    /// A watchdog due in the wake-up that finds a mark's worth waiting (a thread batching its
    /// wake-ups) keeps the mark: the socket is readable, nothing is stuck.
    #[test]
    fn the_watchdog_keeps_the_mark_while_a_marks_worth_waits() {
        let (_listener, mut client, mut server, mut c, now) = raised_on_loopback();
        let fd = server.as_raw_fd();
        assert_eq!(c.raised(), Some(600));
        client.write_all(&[7u8; 700]).unwrap();
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one descriptor this test owns, waiting at most 1 s.
        assert_eq!(
            unsafe { libc::poll(&mut poll, 1, 1000) },
            1,
            "over the mark"
        );
        let due = now + WATCHDOG;
        c.handle_timeout(due);
        assert_eq!(c.raised(), Some(600), "kept");
        assert_eq!(lowat(fd), 600);
        assert_eq!(c.poll_timeout(), Some(due + WATCHDOG), "put off from now");
        // once read, with less than a mark left and nothing more coming, it drops as before
        let mut buf = [0u8; 650];
        server.read_exact(&mut buf).unwrap();
        c.handle_timeout(due + WATCHDOG);
        assert_eq!(c.raised(), None);
        assert_eq!(lowat(fd), 1);
    }

    #[test]
    fn talk_over_the_agent_holds_the_mark_at_one_byte() {
        let (listener, mut client, server, mut c, now) = raised_on_loopback();
        let fd = server.as_raw_fd();
        assert_eq!(lowat(fd), 600);
        c.hold(true);
        assert_eq!(lowat(fd), 1, "held: every frame is readable as it arrives");
        assert_eq!(c.poll_timeout(), None, "no watchdog while held");
        client.write_all(&[7u8; 100]).unwrap();
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one descriptor this test owns, waiting at most 1 s.
        assert_eq!(unsafe { libc::poll(&mut poll, 1, 1000) }, 1);
        c.hold(true);
        assert_eq!(lowat(fd), 1);
        c.hold(false);
        assert_eq!(lowat(fd), 600, "released: back to the stream's mark");
        assert_eq!(c.raised(), Some(600));
        assert_eq!(c.poll_timeout(), Some(now + WATCHDOG));

        // held before the stream was learnt: the mark is applied when released
        let (server2, _) = {
            let _client2 = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            listener.accept().unwrap()
        };
        let fd2 = server2.as_raw_fd();
        let mut c = RecvCoalescer::new(MediaSocket(Some(PeerSocket { fd: fd2 })), now);
        c.hold(true);
        for _ in 0..STEADY_MESSAGES {
            c.on_message(now, 392, 1);
        }
        assert_eq!(c.raised(), Some(600));
        assert_eq!(lowat(fd2), 1);
        c.hold(false);
        assert_eq!(lowat(fd2), 600);
    }

    #[test]
    fn batched_audio_and_unknown_sockets_are_left_alone() {
        let t0 = Instant::now();
        let mut c = RecvCoalescer::new(MediaSocket(None), t0);
        for _ in 0..100 {
            c.on_message(t0, 392, 1);
        }
        assert_eq!(c.raised(), None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let fd = server.as_raw_fd();
        let mut c = RecvCoalescer::new(MediaSocket(Some(PeerSocket { fd })), t0);
        // Exotel: 100 ms a message
        c.on_message(t0, 2200, 5);
        for _ in 0..100 {
            c.on_message(t0, 392, 1);
        }
        assert_eq!(c.raised(), None);
        assert_eq!(lowat(fd), 1);
    }
}
