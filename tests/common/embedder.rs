//! An embedder with fixed answers for tests and benchmarks that need vectors but not meaning:
//! each text's vector comes from a hash of the text, so every engine and every run sees the
//! same vectors, with no model and no server.

use modstate::embed::{Embedder, Kind};

/// Vectors of `dimension` pseudo-random components in [-1, 1), seeded by the text (FNV-1a,
/// then xorshift); the model id is `hashed@<dimension>`.
pub struct Hashed {
    /// The vectors' length.
    pub dimension: usize,
}

impl Hashed {
    /// The vector of `text`.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        (0..self.dimension)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }
}

impl Embedder for Hashed {
    fn model_id(&self) -> modstate::Result<String> {
        Ok(format!("hashed@{}", self.dimension))
    }

    fn embed(&self, texts: &[&str], _kind: Kind) -> modstate::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

/// An OpenAI-compatible `/v1/embeddings` server on a loopback port answering [`Hashed`]
/// vectors, for tests that drive the `modstate` binary: every engine and run sees the same
/// vectors, with no model. Stops when dropped.
#[allow(dead_code)]
pub struct HashedServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[allow(dead_code)]
impl HashedServer {
    /// Serves vectors of `dimension` dimensions on a free port.
    pub fn start(dimension: usize) -> HashedServer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || serve_one(stream, &Hashed { dimension }));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        HashedServer { port, stop }
    }

    /// The URL for `--embedder` / `MODSTATE_EMBEDDER` (texts sent as they are, no prefix).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1?prefix=none", self.port)
    }
}

impl Drop for HashedServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answers one `POST` whose JSON body has `input` (a string or strings) with their vectors.
fn serve_one(stream: std::net::TcpStream, embedder: &Hashed) {
    use std::io::{Read, Write};
    let _ = stream.set_nonblocking(false);
    let mut stream = stream;
    let mut request = Vec::new();
    let mut chunk = [0u8; 8192];
    let body = loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if request.len() >= end + 4 + length {
            break request[end + 4..end + 4 + length].to_vec();
        }
    };
    let input: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let texts: Vec<String> = match &input["input"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<serde_json::Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"index": i, "embedding": embedder.vector(t)}))
        .collect();
    let answer = serde_json::json!({"data": data, "model": "hashed"}).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}
