//! The command-line side of session administration: one HTTP/1.1 request over the running
//! mxgate's admin socket, the JSON answer back.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    // Causes are in the messages and not also a `source`, so `{:#}` says them once.
    #[error("cannot reach mxgate's admin socket {path}: {cause} (is `mxgate serve` running with this config?)")]
    Connect { path: String, cause: std::io::Error },
    #[error("admin socket: {0}")]
    Io(std::io::Error),
    #[error("admin socket: unexpected answer: {0}")]
    Answer(String),
    #[error("mxgate refused: {0}")]
    Refused(String),
}

impl From<std::io::Error> for AdminClientError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Sends `method path?query` and returns the JSON body of a 200 answer.
pub fn request(socket: &Path, method: &str, path_and_query: &str) -> Result<serde_json::Value, AdminClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|cause| AdminClientError::Connect {
        path: socket.display().to_string(),
        cause,
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path_and_query} HTTP/1.1\r\nhost: mxgate-admin\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| AdminClientError::Answer("no HTTP head".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| AdminClientError::Answer(format!("{e}: {body}")))?;
    if status != "200" {
        let message = json.get("error").and_then(|e| e.as_str()).unwrap_or(body).to_string();
        return Err(AdminClientError::Refused(message));
    }
    Ok(json)
}
