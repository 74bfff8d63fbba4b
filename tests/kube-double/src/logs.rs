//! Pod logs: lines appended by tests (which followers receive at once) after an
//! optional run of generated lines, produced lazily as they are streamed so a
//! multi-gigabyte log costs no memory. One log per pod: the `container` parameter
//! is checked against the pod's containers but every container shares the log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::broadcast;

use crate::store::now;

/// Every generated line is this long, newline included (the last one may be
/// shorter so the total is exact).
const GENERATED_LINE_LENGTH: u64 = 100;

/// Generated lines per streamed chunk (about 64 KiB).
const GENERATED_LINES_PER_CHUNK: u64 = 655;

/// How many lines a follower may fall behind before it skips ahead.
const FOLLOWER_BACKLOG: usize = 4096;

/// How a log is read (`pods/log` query parameters).
#[derive(Clone, Debug, Default)]
pub(crate) struct LogOptions {
    pub(crate) follow: bool,
    pub(crate) timestamps: bool,
    pub(crate) tail_lines: Option<u64>,
}

#[derive(Debug)]
struct LogLine {
    timestamp: String,
    text: String,
}

struct PodLog {
    generated_bytes: u64,
    lines: Vec<Arc<LogLine>>,
    followers: broadcast::Sender<Arc<LogLine>>,
}

impl Default for PodLog {
    fn default() -> Self {
        PodLog {
            generated_bytes: 0,
            lines: Vec::new(),
            followers: broadcast::channel(FOLLOWER_BACKLOG).0,
        }
    }
}

#[derive(Default)]
pub(crate) struct PodLogs {
    logs: Mutex<HashMap<(String, String), PodLog>>,
}

impl PodLogs {
    pub(crate) fn append(&self, namespace: &str, pod: &str, line: &str) {
        let mut logs = self.logs.lock().expect("pod logs poisoned");
        let log = logs
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default();
        let text = if line.ends_with('\n') {
            line.to_owned()
        } else {
            format!("{line}\n")
        };
        let line = Arc::new(LogLine {
            timestamp: now(),
            text,
        });
        log.lines.push(line.clone());
        // Nobody following is not an error.
        let _ = log.followers.send(line);
    }

    pub(crate) fn set_generated(&self, namespace: &str, pod: &str, total_bytes: u64) {
        let mut logs = self.logs.lock().expect("pod logs poisoned");
        logs.entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .generated_bytes = total_bytes;
    }

    /// The log as a stream of chunks: what exists now, then (when following)
    /// every line appended later, until the reader goes away.
    pub(crate) fn open(
        &self,
        namespace: &str,
        pod: &str,
        options: &LogOptions,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let mut logs = self.logs.lock().expect("pod logs poisoned");
        let log = logs
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default();
        let generated_lines = log.generated_bytes.div_ceil(GENERATED_LINE_LENGTH);
        let total_lines = generated_lines + log.lines.len() as u64;
        let skip = options
            .tail_lines
            .map_or(0, |tail| total_lines.saturating_sub(tail));
        let appended_skip = skip.saturating_sub(generated_lines) as usize;
        let reader = LogReader {
            generated_next: skip.min(generated_lines),
            generated_lines,
            generated_bytes: log.generated_bytes,
            generated_timestamp: now(),
            snapshot: log.lines.iter().skip(appended_skip).cloned().collect(),
            follow: options.follow.then(|| log.followers.subscribe()),
            timestamps: options.timestamps,
        };
        futures::stream::unfold(reader, |reader| reader.next_chunk())
    }
}

struct LogReader {
    generated_next: u64,
    generated_lines: u64,
    generated_bytes: u64,
    generated_timestamp: String,
    snapshot: VecDeque<Arc<LogLine>>,
    follow: Option<broadcast::Receiver<Arc<LogLine>>>,
    timestamps: bool,
}

impl LogReader {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.generated_next < self.generated_lines {
            let end = (self.generated_next + GENERATED_LINES_PER_CHUNK).min(self.generated_lines);
            let mut chunk = Vec::with_capacity(
                ((end - self.generated_next) * (GENERATED_LINE_LENGTH + 32)) as usize,
            );
            for index in self.generated_next..end {
                if self.timestamps {
                    chunk.extend_from_slice(self.generated_timestamp.as_bytes());
                    chunk.push(b' ');
                }
                chunk.extend_from_slice(&generated_line(index, self.generated_bytes));
            }
            self.generated_next = end;
            return Some((Ok(Bytes::from(chunk)), self));
        }
        if let Some(line) = self.snapshot.pop_front() {
            let chunk = self.render(&line);
            return Some((Ok(chunk), self));
        }
        let mut receiver = self.follow.take()?;
        loop {
            match receiver.recv().await {
                Ok(line) => {
                    let chunk = self.render(&line);
                    self.follow = Some(receiver);
                    return Some((Ok(chunk), self));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn render(&self, line: &LogLine) -> Bytes {
        if self.timestamps {
            Bytes::from(format!("{} {}", line.timestamp, line.text))
        } else {
            Bytes::from(line.text.clone())
        }
    }
}

/// Generated line `index` of a log of `total_bytes` generated bytes.
fn generated_line(index: u64, total_bytes: u64) -> Vec<u8> {
    let length = (total_bytes - index * GENERATED_LINE_LENGTH).min(GENERATED_LINE_LENGTH) as usize;
    let mut line = format!("{index:012} kube-double generated log line ").into_bytes();
    line.resize(length - 1, b'.');
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn read_all(logs: &PodLogs, options: &LogOptions) -> String {
        let chunks: Vec<_> = logs.open("shop", "api", options).collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|chunk| chunk.unwrap().to_vec())
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn appended_lines_and_tails() {
        let logs = PodLogs::default();
        for line in ["one", "two", "three\n"] {
            logs.append("shop", "api", line);
        }
        assert_eq!(
            read_all(&logs, &LogOptions::default()).await,
            "one\ntwo\nthree\n"
        );
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(read_all(&logs, &tail).await, "two\nthree\n");
    }

    #[tokio::test]
    async fn generated_logs_have_the_exact_size_and_come_first() {
        let logs = PodLogs::default();
        logs.set_generated("shop", "api", 1_000_050);
        logs.append("shop", "api", "last");
        let text = read_all(&logs, &LogOptions::default()).await;
        assert_eq!(text.len(), 1_000_050 + "last\n".len());
        assert!(text.starts_with("000000000000 kube-double generated log line ..."));
        assert!(text
            .lines()
            .all(|line| line.len() < GENERATED_LINE_LENGTH as usize));
        assert!(text.ends_with("\nlast\n"));
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        let tail = read_all(&logs, &tail).await;
        assert_eq!(tail.lines().count(), 2);
        assert!(tail.starts_with("000000010000 kube-double"));
    }

    #[tokio::test]
    async fn followers_receive_new_lines() {
        let logs = PodLogs::default();
        logs.append("shop", "api", "before");
        let follow = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let mut stream = Box::pin(logs.open("shop", "api", &follow));
        assert_eq!(stream.next().await.unwrap().unwrap(), "before\n");
        logs.append("shop", "api", "after");
        assert_eq!(stream.next().await.unwrap().unwrap(), "after\n");
    }
}
