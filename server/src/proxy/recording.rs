//! Exec and attach session recording: the cluster's stdout and stderr frames
//! of a WebSocket (`*.channel.k8s.io`) session, written as an asciicast v2
//! file with timing, per the `recording` policy of the cluster.
//!
//! `required` refuses a session whose recording cannot be set up; what the
//! user types (stdin) is not recorded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingConfig {
    /// Where asciicast files are written.
    pub directory: Option<PathBuf>,
    /// First matching rule wins; clusters matching none are not recorded.
    #[serde(default)]
    pub rules: Vec<RecordingRule>,
}

/// The compiled recording policy.
#[derive(Debug, Clone, Default)]
pub struct RecordingPolicy {
    directory: Option<PathBuf>,
    rules: Vec<(Vec<GlobMatcher>, RecordMode)>,
}

impl RecordingPolicy {
    pub fn new(config: &RecordingConfig) -> Result<Self, String> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let globs = rule
                    .clusters
                    .iter()
                    .map(|pattern| {
                        Glob::new(&pattern.to_ascii_lowercase())
                            .map(|glob| glob.compile_matcher())
                            .map_err(|error| format!("recording.rules[{index}].clusters: {error}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((globs, rule.mode))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if config.directory.is_none() && rules.iter().any(|(_, mode)| *mode != RecordMode::Off) {
            return Err("recording.directory: required when a rule records sessions".into());
        }
        Ok(Self {
            directory: config.directory.clone(),
            rules,
        })
    }

    pub fn mode(&self, cluster: &str) -> RecordMode {
        let cluster = cluster.to_ascii_lowercase();
        self.rules
            .iter()
            .find(|(globs, _)| globs.iter().any(|glob| glob.is_match(&cluster)))
            .map_or(RecordMode::Off, |(_, mode)| *mode)
    }

    /// Creates the recording file and writes its header.
    pub async fn start(
        &self,
        cluster: &str,
        target: &str,
        subject: &str,
    ) -> std::io::Result<Recorder> {
        let directory = self
            .directory
            .as_deref()
            .ok_or_else(|| std::io::Error::other("no recording directory is configured"))?;
        let name = format!(
            "{}-{}-{}.cast",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            cluster,
            uuid::Uuid::new_v4().simple()
        );
        let path = directory.join(&name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let mut writer = BufWriter::new(file);
        let header = serde_json::json!({
            "version": 2,
            "width": 120,
            "height": 40,
            "timestamp": chrono::Utc::now().timestamp(),
            "title": format!("{subject} on {cluster}: {target}"),
            "env": {"TERM": "xterm-256color"},
        });
        writer.write_all(header.to_string().as_bytes()).await?;
        writer.write_all(b"\n").await?;
        writer.flush().await?;
        Ok(Recorder {
            name,
            writer,
            started: Instant::now(),
            frames: FrameParser::default(),
        })
    }

    /// Reads a recording by its file name (as the audit record names it).
    pub async fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let valid = !name.is_empty()
            && name.ends_with(".cast")
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
            && !name.contains("..");
        let directory = self
            .directory
            .as_deref()
            .filter(|_| valid)
            .ok_or(std::io::ErrorKind::NotFound)?;
        tokio::fs::read(directory.join(Path::new(name))).await
    }
}

/// Writes one session's output as asciicast events.
pub struct Recorder {
    pub name: String,
    writer: BufWriter<File>,
    started: Instant,
    frames: FrameParser,
}

impl Recorder {
    /// Feeds bytes the cluster sent; complete stdout/stderr messages become events.
    async fn observe(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for payload in self.frames.push(bytes) {
            // channel.k8s.io: the first byte names the stream (1 stdout, 2 stderr).
            if let [1 | 2, data @ ..] = payload.as_slice() {
                if data.is_empty() {
                    continue;
                }
                let event = serde_json::json!([
                    self.started.elapsed().as_secs_f64(),
                    "o",
                    String::from_utf8_lossy(data),
                ]);
                self.writer.write_all(event.to_string().as_bytes()).await?;
                self.writer.write_all(b"\n").await?;
            }
        }
        // Interactive output is small: keep the file playable while the session runs.
        self.writer.flush().await
    }

    async fn finish(mut self) -> std::io::Result<()> {
        self.writer.flush().await?;
        self.writer.get_ref().sync_all().await
    }
}

/// Just enough of RFC 6455 to read server-to-client frames (unmasked, with
/// continuation frames joined) out of a byte stream.
#[derive(Default)]
struct FrameParser {
    buffer: Vec<u8>,
    message: Vec<u8>,
}

impl FrameParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        loop {
            let buffer = &self.buffer;
            if buffer.len() < 2 {
                break;
            }
            let fin = buffer[0] & 0x80 != 0;
            let opcode = buffer[0] & 0x0f;
            let masked = buffer[1] & 0x80 != 0;
            let (length, mut offset) = match buffer[1] & 0x7f {
                126 if buffer.len() >= 4 => {
                    (u16::from_be_bytes([buffer[2], buffer[3]]) as usize, 4)
                }
                127 if buffer.len() >= 10 => {
                    let mut length = [0u8; 8];
                    length.copy_from_slice(&buffer[2..10]);
                    (u64::from_be_bytes(length) as usize, 10)
                }
                126 | 127 => break,
                length => (length as usize, 2),
            };
            let mask = if masked {
                if buffer.len() < offset + 4 {
                    break;
                }
                let mask = [
                    buffer[offset],
                    buffer[offset + 1],
                    buffer[offset + 2],
                    buffer[offset + 3],
                ];
                offset += 4;
                Some(mask)
            } else {
                None
            };
            if buffer.len() < offset + length {
                break;
            }
            let mut payload = buffer[offset..offset + length].to_vec();
            if let Some(mask) = mask {
                for (index, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[index % 4];
                }
            }
            self.buffer.drain(..offset + length);
            // Continuation, text and binary frames carry data; control frames do not.
            if opcode <= 0x2 {
                self.message.extend_from_slice(&payload);
                if fin {
                    messages.push(std::mem::take(&mut self.message));
                }
            }
        }
        messages
    }
}

/// Copies the cluster's bytes to the client, recording them on the way.
pub async fn copy_recorded<R, W>(
    mut from_cluster: R,
    mut to_client: W,
    mut recorder: Recorder,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 16 * 1024];
    let mut recording_ok = true;
    loop {
        let read = from_cluster.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        // Recorded before it is delivered: what the user saw is in the file.
        if recording_ok {
            if let Err(error) = recorder.observe(&buffer[..read]).await {
                tracing::warn!(recording = %recorder.name, %error, "session recording stopped");
                recording_ok = false;
            }
        }
        to_client.write_all(&buffer[..read]).await?;
    }
    to_client.shutdown().await.ok();
    recorder.finish().await
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
            messages.extend(parser.push(chunk));
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], b"\x01hello world");
        assert_eq!(messages[1].len(), 300);
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = RecordingPolicy::new(&RecordingConfig {
            directory: Some("/tmp".into()),
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
        })
        .unwrap();
        assert_eq!(policy.mode("PROD-eu"), RecordMode::Required);
        assert_eq!(policy.mode("dev"), RecordMode::BestEffort);
        assert!(RecordingPolicy::new(&RecordingConfig {
            directory: None,
            rules: vec![RecordingRule {
                clusters: vec!["*".into()],
                mode: RecordMode::Required
            }],
        })
        .is_err());
    }
}
