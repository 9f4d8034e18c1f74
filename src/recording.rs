//! Call recordings: two-channel (caller left, agent right) 8 kHz 16-bit WAV files, written as the
//! call goes in large chunks on a dedicated thread (never on the async workers), with the header
//! rewritten after every chunk so that a killed server leaves a playable file. [`repair`] fixes a
//! header from the file's length after a crash.
//!
//! A hand-written writer rather than `hound`: the format is 44 bytes of header, and `repair` needs to
//! rewrite a header hound would refuse to open.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::engine::audio::g711;

pub const SAMPLE_RATE: u32 = 8000;
pub const CHANNELS: u16 = 2;
const HEADER_LEN: u64 = 44;

fn header(data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let byte_rate = SAMPLE_RATE * CHANNELS as u32 * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_len)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&CHANNELS.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&(CHANNELS * 2).to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// Chunks appended between header rewrites. The data itself reaches the OS at every chunk; the
/// header's sizes lag by at most this many chunks, and [`repair`] fixes them after a crash.
const HEADER_EVERY_CHUNKS: u32 = 16;

/// A WAV file being written. It holds no buffer of its own (an open recording costs its file
/// handle and a few counters): each chunk is converted into the caller's scratch buffer and written
/// with one `write`, so thousands of open calls do not each keep a write buffer.
pub struct WavWriter {
    file: File,
    data_len: u64,
    chunks_since_header: u32,
}

impl WavWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = File::create(path)?;
        file.write_all(&header(0))?;
        Ok(Self {
            file,
            data_len: 0,
            chunks_since_header: 0,
        })
    }

    /// Append interleaved (caller, agent) samples, converted in `scratch` (reused across calls);
    /// the file is a playable WAV at every point (its header's sizes are refreshed every few
    /// chunks and at the end).
    pub fn append(&mut self, interleaved: &[i16], scratch: &mut Vec<u8>) -> io::Result<()> {
        self.append_after_gap(0, interleaved, scratch)
    }

    /// [`append`](Self::append), after `gap` interleaved samples of silence: chunks that never
    /// reached the writer keep their place in the timeline.
    pub fn append_after_gap(
        &mut self,
        gap: usize,
        interleaved: &[i16],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        self.write_after_gap(gap, interleaved.iter().copied(), scratch)
    }

    /// [`append_after_gap`](Self::append_after_gap) for µ-law samples (what a call's chunks
    /// are), decoded as they are converted.
    pub fn append_mulaw_after_gap(
        &mut self,
        gap: usize,
        interleaved: &[u8],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        self.append_mulaw_chunks([(gap, interleaved)], scratch)
    }

    /// Several µ-law chunks of the call, each after its gap of silence, converted together and
    /// written with one `write`: the kernel's cost of a buffered write is mostly per write (a
    /// new block's unwritten part zeroed, the inode's times), not per byte.
    pub fn append_mulaw_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (usize, &'a [u8])>,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        scratch.clear();
        let mut count = 0;
        for (gap, mulaw) in chunks {
            extend_pcm(scratch, gap, mulaw.iter().map(|&b| g711::ulaw_decode(b)));
            count += 1;
        }
        self.write_chunks(scratch, count)
    }

    fn write_after_gap(
        &mut self,
        gap: usize,
        samples: impl ExactSizeIterator<Item = i16>,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        scratch.clear();
        extend_pcm(scratch, gap, samples);
        self.write_chunks(scratch, 1)
    }

    /// `bytes` (`chunks` chunks of the call) to the file, and the header refreshed every
    /// [`HEADER_EVERY_CHUNKS`] chunks.
    fn write_chunks(&mut self, bytes: &[u8], chunks: u32) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.data_len += bytes.len() as u64;
        self.chunks_since_header += chunks;
        if self.chunks_since_header >= HEADER_EVERY_CHUNKS {
            self.chunks_since_header = 0;
            self.rewrite_header()?;
        }
        Ok(())
    }

    fn rewrite_header(&mut self) -> io::Result<()> {
        let header = header(self.data_len.min(u32::MAX as u64 - 36) as u32);
        // one positioned write: the file's offset stays at its end for the next chunk
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_all_at(&self.file, &header, 0)
        }
        #[cfg(not(unix))]
        {
            let f = &mut self.file;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&header)?;
            f.seek(SeekFrom::End(0))?;
            Ok(())
        }
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.rewrite_header()?;
        self.file.sync_data()
    }

    /// After a failed write (a full disk, an I/O error): keep what was written whole (a torn
    /// chunk cut off, which frees space rather than needing it) with a header that says so.
    /// Best effort: the disk may refuse this too.
    pub fn abandon(mut self) -> io::Result<()> {
        self.file.set_len(HEADER_LEN + self.data_len)?;
        self.rewrite_header()?;
        self.file.sync_data()
    }
}

/// `gap` interleaved samples of silence, then `samples`, appended to `out` as 16-bit little-endian
/// PCM (pairs of bytes by index: `extend` over a `flat_map` pushed a byte at a time).
fn extend_pcm(out: &mut Vec<u8>, gap: usize, samples: impl ExactSizeIterator<Item = i16>) {
    let start = out.len() + gap * 2;
    out.resize(start + samples.len() * 2, 0);
    for (bytes, sample) in out[start..].chunks_exact_mut(2).zip(samples) {
        bytes.copy_from_slice(&sample.to_le_bytes());
    }
}

/// How a failed write is told in the log: a full disk by name.
fn write_error(call: &str, e: &io::Error, what: &str) {
    if e.kind() == io::ErrorKind::StorageFull {
        tracing::error!(call = %call, error = %e, "recordings disk full: {what}; the call goes on, its recording is flagged incomplete");
    } else {
        tracing::error!(call = %call, error = %e, "recording write failed: {what}; the call goes on, its recording is flagged incomplete");
    }
}

/// Make a recording left by a crash playable: header sizes from the file length, a partial sample
/// frame cut off. A missing or header-less file is an error.
pub fn repair(path: &Path) -> io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len < HEADER_LEN {
        // not even a header: write an empty, valid file
        f.set_len(0)?;
        f.write_all(&header(0))?;
        return Ok(0);
    }
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)?;
    if &magic != b"RIFF" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a WAV file"));
    }
    let frame = CHANNELS as u64 * 2;
    let data = (len - HEADER_LEN) / frame * frame;
    f.set_len(HEADER_LEN + data)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header(data.min(u32::MAX as u64 - 36) as u32))?;
    f.sync_data()?;
    Ok(data)
}

enum Command {
    Open {
        id: String,
        path: PathBuf,
    },
    /// `mulaw` (interleaved µ-law) after `gap` interleaved samples of silence (chunks the queue
    /// had no room for).
    Append {
        id: String,
        gap: usize,
        mulaw: Vec<u8>,
        /// The call's chunks in the queue ([`RecordingFeed`]), decremented once written.
        queued: Arc<AtomicUsize>,
    },
    Close {
        id: String,
        gap: usize,
        /// Whether every chunk that reached the recorder is in the file.
        written: tokio::sync::oneshot::Sender<bool>,
    },
}

/// Handle to the recording thread. Cheap to clone.
///
/// A call never waits on it for its audio: a chunk the queue has no room for (a slow or stalled
/// disk) is not written, and its length is written as silence before the call's next chunk that
/// gets through (see [`RecordingFeed`]), so the call goes on, the recording keeps its timeline
/// and the gap is counted.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    /// The recording thread, woken before its gathering window is over when a call's end or a
    /// full batch waits ([`GATHER_WINDOW`]).
    thread: std::thread::Thread,
}

/// After each wake-up the recording thread lets chunks gather this long before it looks again,
/// so that it wakes about once a second rather than once or twice for every chunk: a wake-up of
/// a thread costs this project's 2-core reference VM more than writing a chunk (measured with
/// `scripts/thread-cpu` under `loadgen`: 10 calls woke it about 10 times a second, 500 calls 645
/// times), and a call's chunks that gathered go to its file with one write (about four at 10
/// calls; the kernel's cost of a buffered write is mostly per write). A call's end, and
/// [`GATHER_CHUNKS`] waiting, wake it at once; a chunk reaches the file at most this much later,
/// which only a crash of the process could notice (the header is repaired then anyway).
pub const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_millis(1000);

/// Chunks waiting that wake the recording thread before its window is over: a bound on the audio
/// held in memory for it (about 240 KiB) however many calls there are.
pub const GATHER_CHUNKS: usize = 64;

/// Chunks of one call that may wait in the recorder's queue at once (about 30 s of audio at 240 ms a
/// chunk): the queue is shared, and no call may take more than its share of it.
pub const CALL_QUEUE_CHUNKS: usize = 128;

/// One call's side of the recorder: hands its chunks over without waiting and remembers what
/// could not be handed over, to be written as silence.
#[derive(Debug, Default)]
pub struct RecordingFeed {
    /// The call's chunks waiting in the recorder's queue (at most [`CALL_QUEUE_CHUNKS`]).
    queued: Arc<AtomicUsize>,
    /// Interleaved samples not handed over since the last chunk that was.
    gap: usize,
    /// Interleaved samples not handed over in the whole call.
    dropped: u64,
}

impl RecordingFeed {
    /// Interleaved samples of the call written as silence because the recorder could not keep up.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped
    }
}

impl Command {
    fn id(&self) -> &str {
        match self {
            Command::Open { id, .. } | Command::Append { id, .. } | Command::Close { id, .. } => id,
        }
    }
}

/// The recording thread's open files.
#[derive(Default)]
struct Files {
    open: HashMap<String, WavWriter>,
    /// Calls whose file the disk refused: the rest of each is not written (one log line each,
    /// not one per chunk), and its close says so.
    failed: std::collections::HashSet<String>,
    /// One conversion buffer for every call's chunks (grows to the largest batch of one call).
    scratch: Vec<u8>,
    /// One call's chunks in a batch, written together.
    group: Vec<(usize, Vec<u8>, Arc<AtomicUsize>)>,
}

impl Files {
    /// Carry out `batch` (emptied). Each call's commands keep their order (a stable sort by
    /// call), so that its chunks in the batch are consecutive and go to its file with one
    /// write: at 10 calls and [`GATHER_WINDOW`], about four chunks a write instead of one.
    fn run(&mut self, batch: &mut Vec<Command>) {
        batch.sort_by(|a, b| a.id().cmp(b.id()));
        let mut cmds = batch.drain(..).peekable();
        while let Some(cmd) = cmds.next() {
            match cmd {
                Command::Open { id, path } => match WavWriter::create(&path) {
                    Ok(w) => {
                        self.open.insert(id, w);
                    }
                    Err(e) => {
                        write_error(&id, &e, "cannot create the recording");
                        self.failed.insert(id);
                    }
                },
                Command::Append {
                    id,
                    gap,
                    mulaw,
                    queued,
                } => {
                    self.group.push((gap, mulaw, queued));
                    // the call's next chunks in the batch join them
                    while let Some(Command::Append {
                        gap, mulaw, queued, ..
                    }) = cmds
                        .next_if(|c| matches!(c, Command::Append { id: next, .. } if *next == id))
                    {
                        self.group.push((gap, mulaw, queued));
                    }
                    self.append(id);
                }
                Command::Close { id, gap, written } => {
                    let mut ok = !self.failed.remove(&id);
                    if let Some(mut w) = self.open.remove(&id) {
                        let padded = w.append_after_gap(gap, &[], &mut self.scratch);
                        if let Err(e) = padded.and_then(|()| w.finish()) {
                            write_error(&id, &e, "cannot finish the recording");
                            ok = false;
                        }
                    }
                    let _ = written.send(ok);
                }
            }
        }
    }

    /// The call's chunks in [`group`](Self::group) (emptied), with one write.
    fn append(&mut self, id: String) {
        if let Some(w) = self.open.get_mut(&id) {
            let chunks = self.group.iter().map(|(gap, m, _)| (*gap, m.as_slice()));
            if let Err(e) = w.append_mulaw_chunks(chunks, &mut self.scratch) {
                write_error(&id, &e, "the rest of the call is not recorded");
                if let Some(w) = self.open.remove(&id) {
                    let _ = w.abandon();
                }
                self.failed.insert(id);
            }
        }
        for (_, _, queued) in self.group.drain(..) {
            queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Recorder {
    /// Start the recording thread. `queue` bounds the chunks waiting to be written.
    pub fn start(queue: usize) -> Self {
        Self::start_slowed(queue, None)
    }

    /// [`start`](Self::start), with the thread sleeping `write_delay` before each command (a
    /// slow disk, for fault tests: `serve --recorder-delay-ms`).
    pub fn start_slowed(queue: usize, write_delay: Option<std::time::Duration>) -> Self {
        Self::start_gathering(queue, write_delay, GATHER_WINDOW)
    }

    /// [`start_slowed`](Self::start_slowed), with the thread's gathering window `window`
    /// instead of [`GATHER_WINDOW`].
    pub fn start_gathering(
        queue: usize,
        write_delay: Option<std::time::Duration>,
        window: std::time::Duration,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Command>(queue);
        let handle = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                let mut files = Files::default();
                // what was taken from the queue since the last write, written together
                let mut batch: Vec<Command> = Vec::with_capacity(GATHER_CHUNKS);
                // the first command is taken when it comes, and the window counts from it (a
                // thread that found its queue empty before the first `open` came would
                // otherwise wait out a whole window for it, unless a full batch woke it)
                let mut first = rx.blocking_recv();
                let mut woke = std::time::Instant::now();
                loop {
                    let cmd = match first.take().map_or_else(|| rx.try_recv(), Ok) {
                        Ok(cmd) => Some(cmd),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            // all that waited is taken: write it, then let the next chunks
                            // gather (a call's end or a full batch unparks this thread sooner;
                            // a spurious return only means an early look)
                            files.run(&mut batch);
                            let due = woke + window;
                            let now = std::time::Instant::now();
                            if now < due {
                                std::thread::park_timeout(due - now);
                            }
                            let cmd = rx.blocking_recv();
                            woke = std::time::Instant::now();
                            cmd
                        }
                    };
                    let Some(cmd) = cmd else {
                        files.run(&mut batch);
                        break;
                    };
                    if let Some(delay) = write_delay {
                        std::thread::sleep(delay);
                    }
                    batch.push(cmd);
                    if batch.len() >= GATHER_CHUNKS {
                        files.run(&mut batch);
                    }
                }
            })
            .expect("spawning the recorder thread must succeed at startup");
        Self {
            tx,
            thread: handle.thread().clone(),
        }
    }

    pub async fn open(&self, id: &str, path: PathBuf) {
        let _ = self
            .tx
            .send(Command::Open {
                id: id.to_string(),
                path,
            })
            .await;
    }

    /// Interleaved (caller, agent) µ-law samples, handed over without waiting: when the queue
    /// is full, or holds [`CALL_QUEUE_CHUNKS`] of this call's chunks already, the chunk is
    /// dropped and `feed` remembers its length (written as silence before the next chunk that
    /// gets through). Whether it was handed over.
    pub fn append(&self, id: &str, feed: &mut RecordingFeed, mulaw: Vec<u8>) -> bool {
        let len = mulaw.len();
        let sent = feed.queued.load(Ordering::Relaxed) < CALL_QUEUE_CHUNKS && {
            feed.queued.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .tx
                .try_send(Command::Append {
                    id: id.to_string(),
                    gap: feed.gap,
                    mulaw,
                    queued: feed.queued.clone(),
                })
                .is_ok();
            if !sent {
                feed.queued.fetch_sub(1, Ordering::Relaxed);
            }
            sent
        };
        if sent {
            feed.gap = 0;
            if self.tx.max_capacity() - self.tx.capacity() >= GATHER_CHUNKS {
                self.thread.unpark();
            }
        } else {
            feed.gap += len;
            feed.dropped += len as u64;
        }
        sent
    }

    /// The call's recording is complete (its last gap, if any, written as silence). Waits for
    /// room in the queue: the call is over, only its own end waits. The answer, once the
    /// recorder has closed the file: whether the recording holds the whole call (false when the
    /// disk refused a write, or chunks were missed and written as silence).
    pub async fn close(
        &self,
        id: &str,
        feed: &mut RecordingFeed,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let gap = std::mem::take(&mut feed.gap);
        let missed = feed.dropped > 0;
        let (written, answer) = tokio::sync::oneshot::channel();
        let _ = self
            .tx
            .send(Command::Close {
                id: id.to_string(),
                gap,
                written,
            })
            .await;
        // the call's end is not held back by the gathering window
        self.thread.unpark();
        async move { answer.await.unwrap_or(false) && !missed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_is_valid_at_every_chunk_and_repairable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.wav");
        let mut w = WavWriter::create(&path).unwrap();
        let mut scratch = Vec::new();
        w.append(&[1, 2, 3, 4], &mut scratch).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 8, "data reaches the file at every chunk");
        for _ in 1..HEADER_EVERY_CHUNKS {
            w.append(&[], &mut scratch).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 8);
        w.append(&[5, 6], &mut scratch).unwrap();
        drop(w); // a crash: no finish
        // simulate a torn write: half a sample frame appended
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 9, 9]).unwrap();
        drop(f);
        assert_eq!(repair(&path).unwrap(), 12);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 12);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 36 + 12);
        assert_eq!(&bytes[44..46], &1i16.to_le_bytes());
    }

    /// A batch's chunks of one call go to its file together, in order, whatever the other
    /// calls' chunks between them; an open comes before the call's chunks and a close after
    /// them; each chunk's gap becomes silence in its place; every chunk taken is counted off its
    /// call's share of the queue.
    #[test]
    fn a_batch_writes_each_calls_chunks_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
        let (qa, qb) = (Arc::new(AtomicUsize::new(3)), Arc::new(AtomicUsize::new(2)));
        let append = |id: &str, gap: usize, v: u8, queued: &Arc<AtomicUsize>| Command::Append {
            id: id.into(),
            gap,
            mulaw: vec![v; 4],
            queued: queued.clone(),
        };
        let (close_a, closed_a) = tokio::sync::oneshot::channel();
        let mut batch = vec![
            Command::Open {
                id: "b".into(),
                path: b.clone(),
            },
            Command::Open {
                id: "a".into(),
                path: a.clone(),
            },
            append("b", 0, 10, &qb),
            append("a", 0, 1, &qa),
            append("b", 2, 11, &qb),
            append("a", 0, 2, &qa),
            append("a", 4, 3, &qa),
            Command::Close {
                id: "a".into(),
                gap: 2,
                written: close_a,
            },
        ];
        let mut files = Files::default();
        files.run(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(closed_a.blocking_recv(), Ok(true));
        assert_eq!(
            (qa.load(Ordering::Relaxed), qb.load(Ordering::Relaxed)),
            (0, 0)
        );
        let pcm = |v: u8, n: usize| std::iter::repeat_n(g711::ulaw_decode(v), n);
        let read = |path: &Path| -> Vec<i16> {
            std::fs::read(path).unwrap()[44..]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect()
        };
        let want_a: Vec<i16> = pcm(1, 4)
            .chain(pcm(2, 4))
            .chain([0; 4])
            .chain(pcm(3, 4))
            .chain([0; 2])
            .collect();
        assert_eq!(
            read(&a),
            want_a,
            "a: in order, its gaps and its close's gap as silence"
        );
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
            36,
            "a's header"
        );
        // b is still open: its chunks are in the file, its header not yet rewritten
        let want_b: Vec<i16> = pcm(10, 4).chain([0; 2]).chain(pcm(11, 4)).collect();
        assert_eq!(read(&b), want_b);
        assert!(files.open.contains_key("b") && !files.open.contains_key("a"));
    }

    /// A disk that stops (here: a FIFO nobody reads, where the recorder's thread blocks) never
    /// holds up a call: chunks the queue has no room for are dropped at once, and written as
    /// silence before the call's next chunk once the recorder moves again.
    #[tokio::test]
    async fn a_stalled_recorder_never_holds_up_a_call_and_gaps_become_silence() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stalled.wav");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let recorder = Recorder::start(2);
        recorder.open("stalled", fifo.clone()).await;
        // the recorder's thread has taken the open and is blocked in it
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while recorder.tx.capacity() < 2 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let path = dir.path().join("b.wav");
        recorder.open("b", path.clone()).await;
        let mut feed = RecordingFeed::default();
        let chunk = |v: u8| vec![v; 320];
        assert!(recorder.append("b", &mut feed, chunk(1)), "room for one");
        // (a waiting append would never return here: the recorder is blocked for good)
        assert!(!recorder.append("b", &mut feed, chunk(2)), "full: dropped");
        assert!(!recorder.append("b", &mut feed, chunk(3)), "full: dropped");
        assert_eq!(feed.dropped_samples(), 640);
        // the disk comes back
        let reader = std::thread::spawn(move || std::fs::read(&fifo).unwrap().len());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !recorder.append("b", &mut feed, chunk(4)) {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // every chunk that found no room (also while the queue drained) became a gap
        let gap = feed.dropped_samples() as usize;
        assert!(gap >= 640 && gap.is_multiple_of(320), "{gap}");
        let whole = recorder.close("b", &mut feed).await;
        drop(
            recorder
                .close("stalled", &mut RecordingFeed::default())
                .await,
        );
        let want = 44 + (640 + gap) * 2;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let bytes = loop {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.len() >= want && u32::from_le_bytes(bytes[40..44].try_into().unwrap()) > 0 {
                break bytes;
            }
            assert!(std::time::Instant::now() < deadline, "{}", bytes.len());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let samples: Vec<i16> = bytes[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(samples.len(), 640 + gap);
        assert!(samples[..320].iter().all(|&s| s == g711::ulaw_decode(1)));
        assert!(
            samples[320..320 + gap].iter().all(|&s| s == 0),
            "the gap is silence"
        );
        assert!(
            samples[320 + gap..]
                .iter()
                .all(|&s| s == g711::ulaw_decode(4))
        );
        assert!(!whole.await, "missed chunks: the recording is not whole");
        drop(recorder);
        assert_eq!(
            reader.join().unwrap(),
            44,
            "the stalled file got its header"
        );
    }

    /// The length of the data a WAV file holds so far (0 while it is missing).
    fn data_bytes(path: &Path) -> usize {
        std::fs::metadata(path)
            .map_or(0, |m| m.len() as usize)
            .saturating_sub(44)
    }

    #[tokio::test]
    async fn chunks_gather_for_the_window_but_a_full_batch_and_a_calls_end_go_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        // a window no test waits out: what is written before it is over was woken for
        let recorder = Recorder::start_gathering(256, None, std::time::Duration::from_secs(600));
        recorder.open("a", path.clone()).await;
        // the thread has created the file and, with nothing left to write, begun its window
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "the open waited");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut feed = RecordingFeed::default();
        let chunk = vec![7u8; 320];
        for _ in 0..GATHER_CHUNKS - 1 {
            assert!(recorder.append("a", &mut feed, chunk.clone()));
        }
        // short of a batch: the chunks wait
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(data_bytes(&path), 0, "written before the window was over");
        // a full batch wakes the thread
        assert!(recorder.append("a", &mut feed, chunk.clone()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while data_bytes(&path) < GATHER_CHUNKS * 640 {
            assert!(std::time::Instant::now() < deadline, "a full batch waited");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // the rest of the call: one more chunk, then its end, answered without the window
        assert!(recorder.append("a", &mut feed, chunk.clone()));
        let whole = recorder.close("a", &mut feed).await;
        let whole = tokio::time::timeout(std::time::Duration::from_secs(10), whole).await;
        assert_eq!(whole, Ok(true), "the call's end waited out the window");
        assert_eq!(data_bytes(&path), (GATHER_CHUNKS + 1) * 640);
    }

    /// A recorder that started with nothing to do (its thread found the queue empty) takes the
    /// first call's open when it comes, not after a window.
    #[tokio::test]
    async fn the_first_open_after_an_idle_start_is_taken_when_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let recorder = Recorder::start_gathering(256, None, std::time::Duration::from_secs(600));
        // the thread has started and found nothing
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        recorder.open("a", path.clone()).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "the open waited");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A stalled disk: one call fills no more than its share of the shared queue, and another
    /// call's chunks still get in.
    #[tokio::test]
    async fn no_call_takes_more_than_its_share_of_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stalled.wav");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let recorder = Recorder::start(CALL_QUEUE_CHUNKS * 2 + 8);
        recorder.open("stalled", fifo.clone()).await;
        let (mut a, mut b) = (RecordingFeed::default(), RecordingFeed::default());
        let taken = (0..CALL_QUEUE_CHUNKS * 3)
            .filter(|_| recorder.append("a", &mut a, vec![1; 320]))
            .count();
        assert_eq!(taken, CALL_QUEUE_CHUNKS, "call a: its share, no more");
        assert_eq!(
            a.dropped_samples(),
            (CALL_QUEUE_CHUNKS * 2 * 320) as u64,
            "the rest became a gap"
        );
        assert!(
            recorder.append("b", &mut b, vec![2; 320]),
            "call b: room left"
        );
        assert_eq!(b.dropped_samples(), 0);
        // the disk comes back: a's chunks are written and its share is free again
        let reader = std::thread::spawn(move || std::fs::read(&fifo).unwrap().len());
        drop(
            recorder
                .close("stalled", &mut RecordingFeed::default())
                .await,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while a.queued.load(Ordering::Relaxed) > 0 {
            assert!(std::time::Instant::now() < deadline, "a's chunks written");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(recorder.append("a", &mut a, vec![3; 320]));
        drop(recorder);
        reader.join().unwrap();
    }

    /// A disk that refuses writes (`/dev/full`: every write fails with "no space") flags that
    /// call's recording, once, and leaves the other calls' recordings whole.
    #[tokio::test]
    async fn a_full_disk_flags_the_call_and_spares_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(64);
        recorder.open("full", PathBuf::from("/dev/full")).await;
        let ok = dir.path().join("ok.wav");
        recorder.open("ok", ok.clone()).await;
        let (mut full_feed, mut ok_feed) = (RecordingFeed::default(), RecordingFeed::default());
        for v in 0..4 {
            assert!(recorder.append("full", &mut full_feed, vec![v; 320]));
            assert!(recorder.append("ok", &mut ok_feed, vec![v; 320]));
        }
        let full = recorder.close("full", &mut full_feed).await;
        let whole = recorder.close("ok", &mut ok_feed).await;
        assert!(!full.await, "the refused recording is flagged");
        assert!(whole.await, "the other call's recording is whole");
        let bytes = std::fs::read(&ok).unwrap();
        assert_eq!(bytes.len(), 44 + 4 * 320 * 2);
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
            4 * 320 * 2
        );
    }

    #[test]
    fn repair_rejects_non_wav_and_fixes_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        std::fs::write(
            &p,
            b"hello world this is not a wav file at all, no it is not",
        )
        .unwrap();
        assert!(repair(&p).is_err());
        std::fs::write(&p, b"RIF").unwrap();
        assert_eq!(repair(&p).unwrap(), 0);
        assert_eq!(std::fs::read(&p).unwrap().len(), 44);
    }
}
