//! Reads text lines from a TCP socket (Flink's `socketTextStream`): non-parallel, ends
//! when the peer closes the connection unless told to reconnect.

use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Lines from `host:port`.
pub struct SocketTextSource {
    address: String,
    /// Reconnect attempts after the connection closes (0: end instead; Flink's maxRetry).
    max_retries: u32,
    retry_delay: Duration,
}

impl SocketTextSource {
    pub fn new(host: &str, port: u16) -> Self {
        SocketTextSource {
            address: format!("{host}:{port}"),
            max_retries: 0,
            retry_delay: Duration::from_millis(500),
        }
    }
    /// Reconnects up to `retries` times when the connection closes.
    pub fn reconnect(mut self, retries: u32, delay: Duration) -> Self {
        self.max_retries = retries;
        self.retry_delay = delay;
        self
    }
}

fn connect(address: &str) -> Result<TcpStream, BoxError> {
    let stream =
        TcpStream::connect(address).map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(stream)
}

impl Source<String> for SocketTextSource {
    fn fixed_parallelism(&self) -> Option<usize> {
        Some(1)
    }
    fn is_bounded(&self) -> bool {
        false
    }
    fn create_reader(&self, _: &SourceContext) -> Result<Box<dyn SourceReader<String>>, BoxError> {
        Ok(Box::new(SocketReader {
            address: self.address.clone(),
            stream: Some(connect(&self.address)?),
            retries_left: self.max_retries,
            retry_delay: self.retry_delay,
            reconnect_at: None,
            pending: Vec::new(),
            line_no: 0,
        }))
    }
}

struct SocketReader {
    address: String,
    stream: Option<TcpStream>,
    retries_left: u32,
    retry_delay: Duration,
    reconnect_at: Option<Instant>,
    pending: Vec<u8>,
    line_no: u64,
}

impl SocketReader {
    fn emit_lines(&mut self, out: &mut SourceOutput<'_, String>) {
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            let mut line = &self.pending[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            self.line_no += 1;
            match std::str::from_utf8(line) {
                Ok(s) => out.collect(s.to_string()),
                Err(e) => out.dead_letter(
                    format!("socket {} line {}", self.address, self.line_no),
                    format!("not UTF-8 text ({e})"),
                    String::from_utf8_lossy(line),
                ),
            }
            start = end + 1;
        }
        self.pending.drain(..start);
    }
}

impl SourceReader<String> for SocketReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, String>) -> Result<SourcePoll, BoxError> {
        let Some(stream) = self.stream.as_mut() else {
            let at = self.reconnect_at.unwrap_or_else(Instant::now);
            if Instant::now() < at {
                return Ok(SourcePoll::Wait(at - Instant::now()));
            }
            match connect(&self.address) {
                Ok(s) => self.stream = Some(s),
                Err(e) if self.retries_left > 0 => {
                    self.retries_left -= 1;
                    tracing::warn!(address = %self.address, error = %e, "reconnecting");
                    self.reconnect_at = Some(Instant::now() + self.retry_delay);
                }
                Err(e) => return Err(e),
            }
            return Ok(SourcePoll::More);
        };
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => {
                // The peer closed: the last line may lack its newline.
                if !self.pending.is_empty() {
                    self.pending.push(b'\n');
                    self.emit_lines(out);
                }
                self.stream = None;
                if self.retries_left > 0 {
                    self.retries_left -= 1;
                    self.reconnect_at = Some(Instant::now() + self.retry_delay);
                    return Ok(SourcePoll::More);
                }
                Ok(SourcePoll::Finished)
            }
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                self.emit_lines(out);
                Ok(SourcePoll::More)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(SourcePoll::Wait(Duration::from_millis(1)))
            }
            Err(e) => Err(format!("reading from {}: {e}", self.address).into()),
        }
    }
}
