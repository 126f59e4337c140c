//! The byte pump of `skywire dmsg cat`: stdin to the stream and the stream to stdout, both at
//! once, until both directions have ended.
//!
//! A half-close means "I send no more", never "stop": when stdin ends we close our side (FIN)
//! and keep reading until the peer's end; when the peer's end arrives we keep sending until
//! stdin ends. One exception keeps a receiver whose stdin is a terminal or a pipe nobody writes
//! from waiting forever: if we have sent nothing at all when the peer finishes, and stdin then
//! gives nothing for [`LINGER`], we close our side. The tool succeeds only if both directions
//! ended cleanly, everything received was written to stdout, and the peer closed the channel
//! after our end (it read what we sent up to it); otherwise it exits 1 with one line saying
//! what went wrong, after resetting the stream so the peer knows too.
//!
//! stdin and stdout are served by two threads (a blocking read of stdin cannot be interrupted,
//! and a slow stdout must not stall the executor), each joined to the pump by a bounded queue
//! ([`Pipe`], [`PIPE_CAP`] bytes).

use std::collections::VecDeque;
use std::future::Future as _;
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_io::Timer;
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::{CmdError, CmdResult};
use crate::dmsg::client::{DmsgClient, DmsgStream};

/// How long a side that has sent nothing waits on a silent stdin after the peer's end.
pub const LINGER: Duration = Duration::from_secs(2);
/// Bytes each queue between a stdio thread and the pump holds.
pub const PIPE_CAP: usize = 256 * 1024;
/// How long the graceful end of the sessions may take.
const SHUTDOWN: Duration = Duration::from_secs(5);
const CHUNK: usize = 32 * 1024;

#[derive(Debug, Default)]
struct PipeState {
    q: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The producer finished: `Ok` at a clean end, else why not.
    end: Option<Result<(), String>>,
    /// The consumer stopped (why).
    broken: Option<String>,
    /// The async side's waker (one async party per pipe).
    waker: Option<Waker>,
}

/// A bounded queue of byte chunks between a thread (blocking calls) and the pump (polls).
#[derive(Debug, Default)]
pub struct Pipe {
    st: Mutex<PipeState>,
    cv: Condvar,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, st: &mut PipeState) {
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        self.cv.notify_all();
    }

    /// Queues `v`, waiting for room; `Err` once the consumer has stopped.
    pub fn push_blocking(&self, v: Vec<u8>) -> Result<(), String> {
        let mut st = self.lock();
        loop {
            if let Some(b) = &st.broken {
                return Err(b.clone());
            }
            if st.bytes < PIPE_CAP {
                break;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.bytes += v.len();
        st.q.push_back(v);
        self.changed(&mut st);
        Ok(())
    }

    /// Queues the chunk in `slot` if there is room.
    pub fn poll_push(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<Vec<u8>>,
    ) -> Poll<Result<(), String>> {
        let mut st = self.lock();
        if let Some(b) = &st.broken {
            return Poll::Ready(Err(b.clone()));
        }
        if st.bytes >= PIPE_CAP {
            st.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if let Some(v) = slot.take() {
            st.bytes += v.len();
            st.q.push_back(v);
            self.changed(&mut st);
        }
        Poll::Ready(Ok(()))
    }

    /// The producer has finished (the first call counts).
    pub fn finish(&self, end: Result<(), String>) {
        let mut st = self.lock();
        st.end.get_or_insert(end);
        self.changed(&mut st);
    }

    /// The consumer stops: later pushes fail with `why` (the first call counts).
    pub fn stop(&self, why: &str) {
        let mut st = self.lock();
        st.broken.get_or_insert_with(|| why.to_string());
        self.changed(&mut st);
    }

    fn take(&self, st: &mut PipeState) -> Option<Option<Result<Vec<u8>, String>>> {
        if let Some(v) = st.q.pop_front() {
            st.bytes -= v.len();
            self.changed(st);
            return Some(Some(Ok(v)));
        }
        match &st.end {
            Some(Ok(())) => Some(None),
            Some(Err(e)) => Some(Some(Err(e.clone()))),
            None => None,
        }
    }

    /// The next chunk, waiting for one; `None` at a clean end.
    pub fn pop_blocking(&self) -> Option<Result<Vec<u8>, String>> {
        let mut st = self.lock();
        loop {
            if let Some(r) = self.take(&mut st) {
                return r;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The next chunk if there is one; `Ready(None)` at a clean end.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<u8>, String>>> {
        let mut st = self.lock();
        match self.take(&mut st) {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Both directions of one conversation.
struct Pump<'a> {
    stream: &'a mut DmsgStream,
    stdin: &'a Pipe,
    stdout: &'a Pipe,
    rbuf: Vec<u8>,
    to_stdout: Option<Vec<u8>>,
    to_peer: Option<(Vec<u8>, usize)>,
    stdin_done: bool,
    fin_sent: bool,
    peer_eof: bool,
    sent_any: bool,
    linger: Option<Timer>,
}

impl Pump<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        loop {
            let mut progress = false;
            // The peer to stdout.
            if self.to_stdout.is_some() {
                match self.stdout.poll_push(cx, &mut self.to_stdout) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(format!("cannot write to stdout: {e}")));
                    }
                    Poll::Pending => {}
                }
            }
            if self.to_stdout.is_none() && !self.peer_eof {
                match Pin::new(&mut *self.stream).poll_read(cx, &mut self.rbuf) {
                    Poll::Ready(Ok(0)) => {
                        self.peer_eof = true;
                        self.stdout.finish(Ok(()));
                        if !self.sent_any && !self.fin_sent {
                            self.linger = Some(Timer::after(LINGER));
                        }
                        progress = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.to_stdout = Some(self.rbuf[..n].to_vec());
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(format!("connection lost: {e}")));
                    }
                    Poll::Pending => {}
                }
            }
            // stdin to the peer.
            if !self.fin_sent {
                if self.to_peer.is_none() && !self.stdin_done {
                    match self.stdin.poll_pop(cx) {
                        Poll::Ready(Some(Ok(v))) => {
                            self.sent_any = true;
                            self.linger = None;
                            self.to_peer = Some((v, 0));
                            progress = true;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            return Poll::Ready(Err(format!("cannot read stdin: {e}")));
                        }
                        Poll::Ready(None) => {
                            self.stdin_done = true;
                            progress = true;
                        }
                        Poll::Pending => {}
                    }
                }
                if let Some((v, off)) = &mut self.to_peer {
                    match Pin::new(&mut *self.stream).poll_write(cx, &v[*off..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(
                                Err("send failed: the stream takes no more".into()),
                            );
                        }
                        Poll::Ready(Ok(n)) => {
                            *off += n;
                            if *off == v.len() {
                                self.to_peer = None;
                            }
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(format!("send failed: {e}")));
                        }
                        Poll::Pending => {}
                    }
                }
                let lingered = self
                    .linger
                    .as_mut()
                    .is_some_and(|t| Pin::new(t).poll(cx).is_ready());
                if self.to_peer.is_none() && (self.stdin_done || lingered) {
                    match Pin::new(&mut *self.stream).poll_close(cx) {
                        Poll::Ready(Ok(())) => {
                            self.fin_sent = true;
                            self.linger = None;
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(format!("send failed: {e}")));
                        }
                        Poll::Pending => {}
                    }
                }
            }
            if self.fin_sent && self.peer_eof && self.to_stdout.is_none() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// Runs the conversation on `stream` with this process's stdin and stdout, then ends the
/// client's sessions; `Ok` only if everything was delivered both ways (see the module docs).
pub async fn transfer(mut stream: DmsgStream, client: &DmsgClient) -> CmdResult {
    let stdin = Arc::new(Pipe::default());
    let stdout = Arc::new(Pipe::default());
    {
        // Never joined: a read of stdin may block for good (a terminal), and the process
        // exits around it.
        let stdin = stdin.clone();
        std::thread::spawn(move || {
            let mut input = std::io::stdin().lock();
            loop {
                let mut buf = vec![0u8; CHUNK];
                match input.read(&mut buf) {
                    Ok(0) => return stdin.finish(Ok(())),
                    Ok(n) => {
                        buf.truncate(n);
                        if stdin.push_blocking(buf).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return stdin.finish(Err(e.to_string())),
                }
            }
        });
    }
    let writer = {
        let stdout = stdout.clone();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stdout.pop_blocking() {
                let r = chunk.and_then(|c| {
                    out.write_all(&c)
                        .and_then(|_| out.flush())
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = r {
                    stdout.stop(&e);
                    return Err(e);
                }
            }
            out.flush().map_err(|e| e.to_string())
        })
    };
    let mut pump = Pump {
        stream: &mut stream,
        stdin: &stdin,
        stdout: &stdout,
        rbuf: vec![0u8; CHUNK],
        to_stdout: None,
        to_peer: None,
        stdin_done: false,
        fin_sent: false,
        peer_eof: false,
        sent_any: false,
        linger: None,
    };
    let result = poll_fn(|cx| pump.poll(cx)).await;
    stdin.stop("the conversation is over");
    // What the peer sent is written out in either case.
    stdout.finish(Ok(()));
    while !writer.is_finished() {
        Timer::after(Duration::from_millis(10)).await;
    }
    let written = writer
        .join()
        .unwrap_or_else(|_| Err("the stdout thread panicked".into()));
    if let Err(e) = result {
        stream.reset();
        client.shutdown(SHUTDOWN).await;
        return Err(CmdError::fail(e));
    }
    // Our end (FIN) and everything before it leave with the graceful end of the sessions.
    client.shutdown(SHUTDOWN).await;
    written.map_err(|e| CmdError::fail(format!("cannot write to stdout: {e}")))?;
    // A peer that stopped without reading our end resets the stream or the channel.
    let mut probe = [0u8; 1];
    if let Err(e) = stream.read(&mut probe).await {
        return Err(CmdError::fail(format!(
            "the peer did not take everything: {e}"
        )));
    }
    if !stream.channel_closed_by_peer() {
        let why = stream
            .channel_failure()
            .unwrap_or_else(|| "it is still open".into());
        return Err(CmdError::fail(format!(
            "the peer did not confirm the end of the transfer (the channel ended: {why})"
        )));
    }
    Ok(())
}
