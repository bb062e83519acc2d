//! An HTTP receiver on loopback for the tests of notifications: it keeps
//! every request's headers and body, and answers as its mode says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver does with each request.
#[derive(Debug, Clone, Copy)]
pub enum Receiver {
    /// Answers 200 at once.
    Ok,
    /// Holds the answer this long.
    Slow(Duration),
    /// Answers 302 to this port on loopback.
    Redirect(u16),
    /// Answers 200 with a 10 MB body, sent slowly.
    Huge,
}

/// One request as received: its head (lower-cased header names) and body.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver on loopback served by `runtime`: its port and what it got.
pub fn receiver(
    runtime: &tokio::runtime::Runtime,
    mode: Receiver,
) -> (u16, Arc<Mutex<Vec<Received>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&got);
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0_u8; 8192];
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let headers: Vec<(String, String)> = text[..end]
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        let body = String::from_utf8_lossy(&request[end + 4..]).into_owned();
                        kept.lock().expect("got").push(Received { headers, body });
                        break;
                    }
                }
                match mode {
                    Receiver::Ok => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    }
                    Receiver::Slow(hold) => {
                        tokio::time::sleep(hold).await;
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    Receiver::Redirect(to) => {
                        let answer = format!(
                            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{to}/elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    Receiver::Huge => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\nconnection: close\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..160 {
                            if socket.write_all(&chunk).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
            });
        }
    });
    (port, got)
}
