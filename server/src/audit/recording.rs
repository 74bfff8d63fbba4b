//! Exec and attach session recording: the cluster's stdout and stderr of a
//! session, written as an asciicast v2 recording with timing, per the
//! `recording` policy of the cluster. The proxy records; the audit trail
//! names each recording, and any replica serves it back.
//!
//! Recordings are kept in the database, in chunks written as the session
//! runs (at least every second of output, or every 16 KiB), so a replica
//! that stops loses at most its last chunk. A session is recorded up to a
//! size limit; past it the recording is marked truncated and says so in a
//! marker event, and where recording is required the session ends.
//!
//! `required` refuses a session whose recording cannot be set up; what the
//! user types (stdin) is not recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::store::{RecordingInfo, SessionStore};

/// Whether sessions on a cluster are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordMode {
    #[default]
    Off,
    /// Record when possible; sessions go on if the recording cannot be written.
    BestEffort,
    /// Refuse sessions that cannot be recorded.
    Required,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingRule {
    /// Cluster name globs.
    pub clusters: Vec<String>,
    pub mode: RecordMode,
}

/// `recording:` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingConfig {
    /// First matching rule wins; clusters matching none are not recorded.
    #[serde(default)]
    pub rules: Vec<RecordingRule>,
    /// The most one session's recording holds (bytes of asciicast).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Read and ignored, with a warning: recordings were files in this
    /// directory before they moved into the database.
    #[serde(default)]
    pub directory: Option<std::path::PathBuf>,
}

fn default_max_bytes() -> u64 {
    64 * 1024 * 1024
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            max_bytes: default_max_bytes(),
            directory: None,
        }
    }
}

/// What is wrong with `recording:`, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum RecordingConfigError {
    #[error("recording.rules[{index}].clusters: {error}")]
    Clusters { index: usize, error: globset::Error },
    #[error("recording.maxBytes: must be at least 4096")]
    MaxBytes,
}

impl RecordingConfig {
    /// Checks that the policy compiles.
    pub fn validate(&self) -> Result<(), RecordingConfigError> {
        Self::rules(self).map(drop)?;
        if self.max_bytes < 4096 {
            return Err(RecordingConfigError::MaxBytes);
        }
        Ok(())
    }

    fn rules(&self) -> Result<Vec<(Vec<GlobMatcher>, RecordMode)>, RecordingConfigError> {
        self.rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let globs = rule
                    .clusters
                    .iter()
                    .map(|pattern| {
                        Glob::new(&pattern.to_ascii_lowercase())
                            .map(|glob| glob.compile_matcher())
                            .map_err(|error| RecordingConfigError::Clusters { index, error })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((globs, rule.mode))
            })
            .collect()
    }
}

/// The compiled recording policy, and where recordings are kept.
#[derive(Clone)]
pub struct RecordingPolicy {
    rules: Vec<(Vec<GlobMatcher>, RecordMode)>,
    max_bytes: u64,
    store: Arc<dyn SessionStore>,
    /// The ends of recordings whose sessions were dropped, being stored.
    ends: tokio_util::task::TaskTracker,
}

/// Output kept before it is written as a chunk.
const CHUNK_BYTES: usize = 16 * 1024;
/// The longest output is kept before it is written.
pub(super) const CHUNK_AGE: Duration = Duration::from_secs(1);

/// The longest marker event kubeportal writes.
const MAX_MARKER_CHARS: usize = 512;

impl RecordingPolicy {
    pub fn new(
        config: &RecordingConfig,
        store: Arc<dyn SessionStore>,
    ) -> Result<Self, RecordingConfigError> {
        config.validate()?;
        if let Some(directory) = &config.directory {
            tracing::warn!(
                directory = %directory.display(),
                "recording.directory is no longer used: recordings are kept in the database"
            );
        }
        Ok(Self {
            rules: config.rules()?,
            max_bytes: config.max_bytes,
            store,
            ends: tokio_util::task::TaskTracker::new(),
        })
    }

    pub fn mode(&self, cluster: &str) -> RecordMode {
        let cluster = cluster.to_ascii_lowercase();
        self.rules
            .iter()
            .find(|(globs, _)| globs.iter().any(|glob| glob.is_match(&cluster)))
            .map_or(RecordMode::Off, |(_, mode)| *mode)
    }

    /// Starts a recording: its row and its header, stored before the
    /// session begins.
    pub async fn start(
        &self,
        cluster: &str,
        target: &str,
        subject: &str,
        protocol: &str,
    ) -> std::io::Result<Recorder> {
        let now = Utc::now();
        let id = format!(
            "{}-{}-{}",
            now.format("%Y%m%dT%H%M%SZ"),
            cluster.to_ascii_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let header = serde_json::json!({
            "version": 2,
            "width": 120,
            "height": 40,
            "timestamp": now.timestamp(),
            "title": format!("{subject} on {cluster}: {target}"),
            "env": {"TERM": "xterm-256color"},
        });
        let mut header = header.to_string().into_bytes();
        header.push(b'\n');
        let info = RecordingInfo {
            id: id.clone(),
            cluster: cluster.to_owned(),
            subject: subject.to_owned(),
            path: target.to_owned(),
            protocol: protocol.to_owned(),
            started_at: now,
            ended_at: None,
            bytes: 0,
            truncated: false,
        };
        self.store
            .create_recording(&info)
            .await
            .map_err(std::io::Error::other)?;
        let mut recorder = Recorder {
            name: id,
            store: self.store.clone(),
            started: Instant::now(),
            frames: FrameParser::default(),
            pending: header,
            sequence: 0,
            stored: 0,
            limit: self.max_bytes,
            truncated: false,
            truncation_stored: false,
            last_write: Instant::now(),
            ended: false,
            required: self.mode(cluster) == RecordMode::Required,
            base64: false,
            ends: self.ends.clone(),
        };
        recorder.write_chunk().await?;
        Ok(recorder)
    }

    /// A recording, whole, by the id its audit record names.
    pub async fn read(&self, id: &str) -> std::io::Result<Option<(RecordingInfo, Vec<u8>)>> {
        self.store
            .read_recording(id)
            .await
            .map_err(std::io::Error::other)
    }

    /// Deletes recordings older than the audit trail keeps its records,
    /// every hour, for as long as the runtime runs.
    pub fn prune_in_background(&self, retention_days: u32) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
                match store.prune_recordings(before).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "pruned old session recordings"),
                    Err(error) => tracing::warn!(%error, "pruning session recordings failed"),
                }
            }
        });
    }

    /// Waits until the ends of recordings whose sessions were dropped are
    /// stored (before the process exits).
    pub async fn flush(&self) {
        self.ends.close();
        self.ends.wait().await;
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }
}

/// Writes one session's output as asciicast events, in chunks.
pub struct Recorder {
    pub name: String,
    store: Arc<dyn SessionStore>,
    started: Instant,
    frames: FrameParser,
    /// Events not yet stored.
    pending: Vec<u8>,
    /// The next chunk's number.
    sequence: i64,
    /// Bytes stored so far.
    stored: u64,
    limit: u64,
    truncated: bool,
    /// Whether the store knows it is truncated.
    truncation_stored: bool,
    last_write: Instant,
    /// Finished: nothing is left to store when it is dropped.
    ended: bool,
    /// The cluster's recording is `required`: a session that can be
    /// recorded no further must end.
    required: bool,
    /// The session speaks a base64 channel protocol.
    base64: bool,
    ends: tokio_util::task::TaskTracker,
}

impl Recorder {
    /// Feeds bytes the cluster sent; complete stdout/stderr messages become events.
    async fn observe(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for payload in self.frames.push(bytes)? {
            // channel.k8s.io: the first byte names the stream (1 stdout,
            // 2 stderr); in the base64 protocols it is an ASCII digit and
            // the data base64 text.
            match (self.base64, payload.as_slice()) {
                (false, [1 | 2, data @ ..]) => self.output(data).await?,
                (true, [b'1' | b'2', text @ ..]) => {
                    use base64::Engine as _;
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(text.trim_ascii())
                        .map_err(|error| {
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("the cluster sent output that is not base64: {error}"),
                            )
                        })?;
                    self.output(&data).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// How many of the last bytes observed are not yet recorded (a
    /// WebSocket frame or message in progress): held back from the client
    /// until they are, so that what the user sees is in the recording.
    pub fn withheld(&self) -> usize {
        self.frames.withheld()
    }

    /// Records output of the session (the cluster's stdout or stderr) as
    /// one event, whatever protocol carried it.
    pub async fn output(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.event("o", &String::from_utf8_lossy(data)).await
    }

    /// The session can be recorded no further (`error`): the recording
    /// says so in a marker event, and where recording is required the
    /// session must end too (an error is returned).
    pub async fn stopped(&mut self, error: String) -> std::io::Result<()> {
        tracing::warn!(recording = %self.name, %error, required = self.required, "session recording stopped");
        let _ = self.mark(&format!("recording stopped: {error}")).await;
        let _ = self.write_chunk().await;
        if self.required {
            return Err(std::io::Error::other(format!(
                "sessions on this cluster must be recorded, and this one can be recorded no further ({error})"
            )));
        }
        Ok(())
    }

    /// Marks a moment of the session (an asciicast `m` event), such as why
    /// it ended. Markers are kubeportal's own few words: written past the
    /// size limit too.
    pub async fn mark(&mut self, label: &str) -> std::io::Result<()> {
        let label: String = label.chars().take(MAX_MARKER_CHARS).collect();
        let line = self.line("m", &label);
        self.pending.extend_from_slice(&line);
        self.write_chunk().await
    }

    /// Stores what is pending if it has waited a chunk's age: called on a
    /// timer, so that output followed by silence is stored too.
    pub async fn store_due(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() && self.last_write.elapsed() >= CHUNK_AGE {
            self.write_chunk().await?;
        }
        Ok(())
    }

    /// One asciicast event line at the session's time.
    fn line(&self, code: &str, data: &str) -> Vec<u8> {
        let event = serde_json::json!([self.started.elapsed().as_secs_f64(), code, data]);
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    /// Whether the WebSocket session speaks a base64 channel protocol
    /// (as the cluster's handshake answered).
    pub fn read_base64(&mut self, base64: bool) {
        self.base64 = base64;
    }

    /// Whether it reads a base64 channel protocol.
    pub fn reads_base64(&self) -> bool {
        self.base64
    }

    /// Records a terminal resize as an asciicast `r` event.
    pub async fn resize(&mut self, width: u16, height: u16) -> std::io::Result<()> {
        self.event("r", &format!("{width}x{height}")).await
    }

    /// Records one asciicast event (`o` output, `r` resize) at the
    /// session's time, up to the size limit: the event that would pass it
    /// marks the recording truncated and is an error, after which the
    /// session is recorded no further (and, where recording is required,
    /// ends).
    async fn event(&mut self, code: &str, data: &str) -> std::io::Result<()> {
        if self.truncated {
            return Ok(());
        }
        let line = self.line(code, data);
        let size = self.stored + self.pending.len() as u64 + line.len() as u64;
        if size > self.limit {
            self.truncated = true;
            self.write_chunk().await?;
            return Err(std::io::Error::other(format!(
                "it reached its size limit of {} bytes",
                self.limit
            )));
        }
        self.pending.extend_from_slice(&line);
        if self.pending.len() >= CHUNK_BYTES || self.last_write.elapsed() >= CHUNK_AGE {
            self.write_chunk().await?;
        }
        Ok(())
    }

    /// Stores what is pending as the next chunk.
    async fn write_chunk(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() && self.truncated == self.truncation_stored {
            return Ok(());
        }
        let bytes = self.stored + self.pending.len() as u64;
        self.store
            .append_recording(
                &self.name,
                self.sequence,
                &self.pending,
                bytes,
                self.truncated,
            )
            .await
            .map_err(std::io::Error::other)?;
        self.sequence += 1;
        self.stored = bytes;
        self.truncation_stored = self.truncated;
        self.pending.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// Stores the rest and marks the recording ended.
    pub async fn finish(mut self) -> std::io::Result<()> {
        self.ended = true;
        self.write_chunk().await?;
        self.store
            .end_recording(&self.name, Utc::now())
            .await
            .map_err(std::io::Error::other)
    }
}

impl Drop for Recorder {
    /// A session cut short (its task cancelled) still gets its last
    /// output stored and its end marked.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.ended = true;
        let store = self.store.clone();
        let name = self.name.clone();
        let pending = std::mem::take(&mut self.pending);
        let (sequence, truncated) = (self.sequence, self.truncated);
        let bytes = self.stored + pending.len() as u64;
        let unstored = !pending.is_empty() || truncated != self.truncation_stored;
        self.ends.spawn_on(async move {
            if unstored {
                if let Err(error) = store
                    .append_recording(&name, sequence, &pending, bytes, truncated)
                    .await
                {
                    tracing::warn!(recording = %name, %error, "the end of a session recording was lost");
                }
            }
            let _ = store.end_recording(&name, Utc::now()).await;
        }, &runtime);
    }
}

/// The largest message (one frame, or a fragmented message joined) the
/// recorder reads. Interactive output comes in frames of a few KiB; a cluster
/// declaring more is not followed, whatever length it claims.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Why the cluster's side of a session cannot be recorded any further.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("the cluster sent a WebSocket frame of {declared} bytes (more than {MAX_MESSAGE_BYTES} cannot be recorded)")]
    FrameTooLarge { declared: u64 },
    #[error("the cluster sent a WebSocket message of more than {MAX_MESSAGE_BYTES} bytes")]
    MessageTooLarge,
    #[error("the cluster sent an invalid WebSocket frame: {0}")]
    Invalid(tungstenite::Error),
}

impl From<FrameError> for std::io::Error {
    fn from(error: FrameError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// Reads server-to-client WebSocket messages (continuation frames joined)
/// out of a byte stream, with frame headers parsed by tungstenite. Nothing
/// the cluster declares makes it hold more than one bounded frame: a larger
/// frame or message is an error, after which the parser holds nothing and
/// reads nothing more.
#[derive(Default)]
struct FrameParser {
    buffer: Vec<u8>,
    message: Vec<u8>,
    /// Bytes of the stream, in whole frames, of the message not yet ended
    /// (its fragments, and control frames between them).
    message_bytes: usize,
    failed: bool,
}

impl FrameParser {
    /// How many of the last bytes pushed are not yet recorded: the frame
    /// in progress and the message in progress. They are held back from
    /// the client until they are.
    fn withheld(&self) -> usize {
        if self.failed {
            0
        } else {
            self.buffer.len() + self.message_bytes
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        if self.failed {
            return Ok(Vec::new());
        }
        let parsed = self.parse(bytes);
        if parsed.is_err() {
            self.failed = true;
            self.buffer = Vec::new();
            self.message = Vec::new();
            self.message_bytes = 0;
        }
        parsed
    }

    fn parse(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        use tungstenite::protocol::frame::coding::OpCode;
        use tungstenite::protocol::frame::FrameHeader;

        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut consumed = 0;
        loop {
            let mut cursor = std::io::Cursor::new(&self.buffer[consumed..]);
            let Some((header, declared)) =
                FrameHeader::parse(&mut cursor).map_err(FrameError::Invalid)?
            else {
                break;
            };
            let length = usize::try_from(declared)
                .ok()
                .filter(|length| *length <= MAX_MESSAGE_BYTES)
                .ok_or(FrameError::FrameTooLarge { declared })?;
            // At most 14 bytes.
            let start = consumed + cursor.position() as usize;
            if self.buffer.len() - start < length {
                break;
            }
            let payload = &mut self.buffer[start..start + length];
            if let Some(mask) = header.mask {
                for (index, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[index % 4];
                }
            }
            let frame_bytes = start + length - consumed;
            consumed = start + length;
            // Continuation, text and binary frames carry data; control frames do not.
            if let OpCode::Data(_) = header.opcode {
                if self.message.len() + length > MAX_MESSAGE_BYTES {
                    return Err(FrameError::MessageTooLarge);
                }
                self.message
                    .extend_from_slice(&self.buffer[start..start + length]);
                if header.is_final {
                    messages.push(std::mem::take(&mut self.message));
                    self.message_bytes = 0;
                } else {
                    self.message_bytes += frame_bytes;
                }
            } else if self.message_bytes > 0 {
                self.message_bytes += frame_bytes;
            }
        }
        self.buffer.drain(..consumed);
        Ok(messages)
    }
}

/// Reads the client's side of a WebSocket session for the terminal sizes it
/// sets (channel 4 of `*.channel.k8s.io`), so that a recording replays at
/// the size the user saw. Best effort: what it cannot read it skips.
pub struct ResizeReader {
    frames: FrameParser,
    base64: bool,
}

impl ResizeReader {
    /// For a session whose protocol is (or is not) a base64 one.
    pub fn new(base64: bool) -> Self {
        Self {
            frames: FrameParser::default(),
            base64,
        }
    }

    /// The sizes the client's next bytes set, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(u16, u16)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Size {
            width: u16,
            height: u16,
        }
        let Ok(messages) = self.frames.push(bytes) else {
            return Vec::new();
        };
        messages
            .iter()
            .filter_map(|message| {
                let json = match (self.base64, message.as_slice()) {
                    (false, [4, json @ ..]) => json.to_vec(),
                    (true, [b'4', text @ ..]) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(text.trim_ascii())
                            .ok()?
                    }
                    _ => return None,
                };
                let size = serde_json::from_slice::<Size>(&json).ok()?;
                Some((size.width, size.height))
            })
            .collect()
    }
}

/// Copies the cluster's bytes to the client, recording them on the way.
/// The recording's end is stored by the caller, however the copy ends.
pub async fn copy_recorded<R, W>(
    mut from_cluster: R,
    mut to_client: W,
    recorder: &mut Recorder,
    mut resizes: tokio::sync::mpsc::Receiver<(u16, u16)>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 16 * 1024];
    // Bytes read but held back until the message they belong to is recorded.
    let mut held = Vec::new();
    let mut recording_ok = true;
    // Output followed by silence is stored within a chunk's age too.
    let mut due = tokio::time::interval(CHUNK_AGE);
    due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resizing = true;
    loop {
        let read = tokio::select! {
            read = from_cluster.read(&mut buffer) => read?,
            size = resizes.recv(), if resizing => {
                match size {
                    Some((width, height)) if recording_ok => {
                        if let Err(error) = recorder.resize(width, height).await {
                            recording_ok = false;
                            recorder.stopped(error.to_string()).await?;
                        }
                    }
                    Some(_) => {}
                    None => resizing = false,
                }
                continue;
            }
            _ = due.tick() => {
                if recording_ok {
                    if let Err(error) = recorder.store_due().await {
                        recording_ok = false;
                        recorder.stopped(error.to_string()).await?;
                    }
                }
                continue;
            }
        };
        if read == 0 {
            // What is held back is an unfinished message: never delivered.
            break;
        }
        // Recorded before it is delivered: what the user saw is in the file.
        if recording_ok {
            if let Err(error) = recorder.observe(&buffer[..read]).await {
                recording_ok = false;
                // Where recording is required, the session ends with it.
                recorder.stopped(error.to_string()).await?;
            }
        }
        let withheld = if recording_ok { recorder.withheld() } else { 0 };
        if held.is_empty() && withheld == 0 {
            to_client.write_all(&buffer[..read]).await?;
        } else {
            held.extend_from_slice(&buffer[..read]);
            let release = held.len().saturating_sub(withheld);
            to_client.write_all(&held[..release]).await?;
            held.drain(..release);
        }
    }
    to_client.shutdown().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8], fin: bool, opcode: u8) -> Vec<u8> {
        let mut frame = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            frame.push(payload.len() as u8);
        } else {
            frame.push(126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut stream = frame(b"\x01hello ", false, 2);
        stream.extend(frame(b"world", true, 0));
        stream.extend(frame(&[b'x'; 300], true, 2));
        stream.extend(frame(b"", true, 9));
        let mut parser = FrameParser::default();
        let mut messages = Vec::new();
        for chunk in stream.chunks(7) {
            messages.extend(parser.push(chunk).unwrap());
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], b"\x01hello world");
        assert_eq!(messages[1].len(), 300);
        assert!(parser.buffer.is_empty() && parser.message.is_empty());
    }

    #[test]
    fn masked_frames_are_unmasked() {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut stream = vec![0x82, 0x80 | 6];
        stream.extend_from_slice(&mask);
        stream.extend(
            b"\x01hello"
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4]),
        );
        let mut parser = FrameParser::default();
        assert_eq!(parser.push(&stream).unwrap(), vec![b"\x01hello".to_vec()]);
    }

    /// A binary frame header declaring `length` bytes, with the 64-bit length form.
    fn hostile_header(length: u64) -> Vec<u8> {
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&length.to_be_bytes());
        header
    }

    #[test]
    fn hostile_frame_lengths_neither_panic_nor_grow_the_buffer() {
        for declared in [
            1u64 << 63,
            u64::MAX,
            (1u64 << 32) + 5,
            MAX_MESSAGE_BYTES as u64 + 1,
        ] {
            let mut parser = FrameParser::default();
            let mut stream = hostile_header(declared);
            stream.extend_from_slice(&[b'x'; 64]);
            let error = parser.push(&stream).unwrap_err();
            assert!(
                matches!(error, FrameError::FrameTooLarge { declared: found } if found == declared),
                "{error}"
            );
            // What follows is neither parsed nor kept.
            for _ in 0..64 {
                assert!(parser.push(&[b'y'; 16 * 1024]).unwrap().is_empty());
            }
            assert_eq!(parser.buffer.capacity(), 0, "{declared}");
            assert_eq!(parser.message.capacity(), 0, "{declared}");
        }
    }

    #[test]
    fn frames_up_to_the_bound_are_read() {
        let payload = vec![1u8; MAX_MESSAGE_BYTES];
        let mut stream = hostile_header(payload.len() as u64);
        stream.extend_from_slice(&payload);
        let mut parser = FrameParser::default();
        let mut messages = Vec::new();
        for chunk in stream.chunks(16 * 1024) {
            messages.extend(parser.push(chunk).unwrap());
        }
        assert_eq!(messages, vec![payload]);
    }

    #[test]
    fn a_fragmented_message_is_bounded_too() {
        let mut parser = FrameParser::default();
        let fragment = vec![2u8; 64 * 1024];
        let mut refused = false;
        for _ in 0..=(MAX_MESSAGE_BYTES / fragment.len()) {
            let mut stream = vec![0x00, 127];
            stream.extend_from_slice(&(fragment.len() as u64).to_be_bytes());
            stream.extend_from_slice(&fragment);
            match parser.push(&stream) {
                Ok(messages) => assert!(messages.is_empty()),
                Err(error) => {
                    assert!(matches!(error, FrameError::MessageTooLarge), "{error}");
                    refused = true;
                    break;
                }
            }
            assert!(parser.message.len() <= MAX_MESSAGE_BYTES);
        }
        assert!(refused, "an endless message is refused");
        assert_eq!(parser.message.capacity(), 0);
    }

    #[test]
    fn reserved_opcodes_stop_the_parser() {
        let mut parser = FrameParser::default();
        assert!(matches!(
            parser.push(&[0x83, 0x00]),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = RecordingPolicy::new(
            &RecordingConfig {
                rules: vec![
                    RecordingRule {
                        clusters: vec!["prod-*".into()],
                        mode: RecordMode::Required,
                    },
                    RecordingRule {
                        clusters: vec!["*".into()],
                        mode: RecordMode::BestEffort,
                    },
                ],
                ..RecordingConfig::default()
            },
            Arc::new(super::super::store::memory::MemoryStore::default()),
        )
        .unwrap();
        assert_eq!(policy.mode("PROD-eu"), RecordMode::Required);
        assert_eq!(policy.mode("dev"), RecordMode::BestEffort);
        // Older configurations name a directory: read, and ignored.
        let older: RecordingConfig =
            serde_json::from_value(serde_json::json!({"directory": "/var/lib/recordings"}))
                .unwrap();
        assert!(RecordingPolicy::new(
            &older,
            Arc::new(super::super::store::memory::MemoryStore::default())
        )
        .is_ok());
        assert!(
            serde_json::from_value::<RecordingConfig>(serde_json::json!({"dir": "/x"})).is_err()
        );
        assert!(RecordingConfig {
            max_bytes: 100,
            ..RecordingConfig::default()
        }
        .validate()
        .is_err());
    }
}
