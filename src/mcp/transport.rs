//! The stdio transport: one JSON-RPC message per line on stdin and stdout.
//!
//! Why this module exists rather than rmcp's `transport::stdio()`: rmcp's stdio transport
//! (checked again in rmcp 3.11, `transport/async_rw.rs`) still drops a line that is not JSON
//! with only a debug log (on purpose: a reply to garbage can start an echo storm between two
//! misconfigured peers), and answers JSON of the wrong shape with a bare Invalid Request that
//! carries no id. JSON-RPC 2.0 asks for a Parse error instead, and an agent host that sent a
//! broken line should learn why nothing came back, so this transport answers every line it
//! cannot hand to rmcp (the unit tests below and `tests/mcp.rs` check each case):
//!
//! * not JSON → `-32700` Parse error;
//! * JSON but not a JSON-RPC message (an array, a batch, a bad id) → `-32600` Invalid Request;
//! * a request whose params do not fit its method (`tools/call` without a `name`) →
//!   `-32602` Invalid params, with the request's id;
//! * a line longer than [`MAX_LINE_BYTES`] → `-32600`, and the line is skipped;
//! * notifications and responses it cannot read are ignored (nothing may answer them).
//!
//! When the id cannot be read, the error carries no `id` member: the MCP schema makes it
//! optional for exactly this case, and MCP clients reject the `"id": null` plain JSON-RPC 2.0
//! would use.
//!
//! Stdin is read on its own thread with blocking reads, so parsing a large message never
//! stalls the runtime and end of input is seen at once. Stdout is written synchronously,
//! under std's stdout lock, one whole line and a flush per message: a host that stops reading
//! stops the server, which is the backpressure a pipe should give.

use std::io::{self, BufRead, Write};
use std::thread;

use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, JsonRpcRequest,
    NumberOrString, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::sync::mpsc;

/// Longest line accepted: a memory is at most 64 KiB, so this leaves room for any honest
/// message (and matches rmcp's own limit) while a runaway peer cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Lines read ahead of the server; the reader blocks when the server falls behind.
const QUEUE: usize = 32;

/// What the reader thread hands over for one line.
enum Incoming {
    /// A message for rmcp.
    Message(ClientJsonRpcMessage),
    /// An error response to write instead.
    Reject(ServerJsonRpcMessage),
}

/// The server side of a newline-delimited JSON-RPC stream on stdin/stdout.
pub struct StdioTransport {
    incoming: mpsc::Receiver<Incoming>,
}

impl StdioTransport {
    /// Starts the reader thread on stdin.
    pub fn start() -> io::Result<StdioTransport> {
        let (sender, incoming) = mpsc::channel(QUEUE);
        thread::Builder::new()
            .name("mcp-stdin".into())
            .spawn(move || read_lines(io::stdin().lock(), &sender))?;
        Ok(StdioTransport { incoming })
    }
}

impl Transport<RoleServer> for StdioTransport {
    type Error = io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), io::Error>> + Send + 'static {
        std::future::ready(write_message(&item))
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            match self.incoming.recv().await? {
                Incoming::Message(message) => return Some(message),
                Incoming::Reject(reply) => {
                    if let Err(e) = write_message(&reply) {
                        eprintln!("modstate mcp: cannot write to stdout: {e}");
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), io::Error> {
        self.incoming.close();
        Ok(())
    }
}

/// Writes one message as one line and flushes it.
fn write_message(message: &ServerJsonRpcMessage) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&line)?;
    out.flush()
}

/// The reader thread: one [`Incoming`] per meaningful line, until end of input (which drops
/// `sender`, and rmcp sees the stream close) or until the server stops listening.
fn read_lines(mut input: impl BufRead, sender: &mpsc::Sender<Incoming>) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let incoming = match read_line(&mut input, &mut line, MAX_LINE_BYTES) {
            Ok(Line::End) => return,
            Ok(Line::TooLong) => Some(Incoming::Reject(ServerJsonRpcMessage::error(
                ErrorData::invalid_request(
                    format!(
                        "message longer than the {MAX_LINE_BYTES}-byte limit was skipped; send smaller messages"
                    ),
                    None,
                ),
                None,
            ))),
            Ok(Line::Read) => classify(&line),
            Err(e) => {
                eprintln!("modstate mcp: cannot read stdin: {e}; stopping");
                return;
            }
        };
        if let Some(incoming) = incoming
            && sender.blocking_send(incoming).is_err()
        {
            return;
        }
    }
}

enum Line {
    /// A line (possibly the last one, without a newline) is in the buffer.
    Read,
    /// A line longer than the limit was consumed and dropped.
    TooLong,
    /// End of input and nothing left.
    End,
}

/// Reads one `\n`-terminated line into `line` without ever holding more than `limit` bytes
/// of it: a longer line is consumed to its end and reported as [`Line::TooLong`].
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => Line::Read,
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |at| at + 1);
        if !too_long && line.len() + take > limit + 1 {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(&available[..take]);
        }
        input.consume(take);
        if newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Read });
        }
    }
}

/// Turns one line into a message for rmcp, an error to answer with, or nothing (blank lines,
/// and notifications or responses that cannot be read: JSON-RPC forbids answering those).
fn classify(line: &[u8]) -> Option<Incoming> {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let error = match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(message) => return Some(check_params(message)),
        Err(e) => e,
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            return Some(reject(
                ErrorData::parse_error(format!("parse error: the line is not JSON: {e}"), None),
                None,
            ));
        }
    };
    let Value::Object(object) = &value else {
        let message = if value.is_array() {
            "invalid request: batches are not supported; send one JSON-RPC message per line"
        } else {
            "invalid request: a JSON-RPC message is a JSON object"
        };
        return Some(reject(ErrorData::invalid_request(message, None), None));
    };
    let id = object.get("id");
    let method = object.get("method").and_then(Value::as_str);
    let Some(id) = id else {
        // A notification (or an id-less response): never answered.
        eprintln!(
            "modstate mcp: ignoring an unreadable notification ({}): {error}",
            method.unwrap_or("no method")
        );
        return None;
    };
    let Some(id) = request_id(id) else {
        return Some(reject(
            ErrorData::invalid_request(
                "invalid request: \"id\" must be a string or an integer",
                None,
            ),
            None,
        ));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(reject(
            ErrorData::invalid_request("invalid request: \"jsonrpc\" must be \"2.0\"", None),
            Some(id),
        ));
    }
    let Some(method) = method else {
        if object.contains_key("result") || object.contains_key("error") {
            eprintln!("modstate mcp: ignoring an unreadable response: {error}");
            return None;
        }
        return Some(reject(
            ErrorData::invalid_request("invalid request: \"method\" must be a string", None),
            Some(id),
        ));
    };
    Some(reject(
        ErrorData::invalid_params(
            format!("invalid params for {method}: {error}; see the MCP specification for {method}"),
            None,
        ),
        Some(id),
    ))
}

/// rmcp reads a request whose params do not fit its method as a custom request, which it
/// then answers "method not found"; for the methods this server serves, the truth is
/// `-32602` Invalid params, and for `tools/call` serde can say what is wrong.
fn check_params(message: ClientJsonRpcMessage) -> Incoming {
    let JsonRpcMessage::Request(JsonRpcRequest {
        id,
        request: ClientRequest::CustomRequest(custom),
        ..
    }) = &message
    else {
        return Incoming::Message(message);
    };
    let method = custom.method.as_str();
    if !SERVED_METHODS.contains(&method) {
        // A method rmcp does not know at all: say which, rather than rmcp's bare "Method not
        // found".
        return reject(
            ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                format!("unknown method {method}"),
                None,
            ),
            Some(id.clone()),
        );
    }
    let params = custom.params.clone().unwrap_or(Value::Null);
    let detail = match method {
        "tools/call" => serde_json::from_value::<CallToolRequestParams>(params)
            .err()
            .map(|e| e.to_string()),
        _ => None,
    }
    .unwrap_or_else(|| "they do not fit the method".into());
    reject(
        ErrorData::invalid_params(
            format!(
                "invalid params for {method}: {detail}; see the MCP specification for {method}"
            ),
            None,
        ),
        Some(id.clone()),
    )
}

/// Request methods this server answers; a request for one of them must fit its schema.
const SERVED_METHODS: &[&str] = &["initialize", "ping", "tools/list", "tools/call"];

fn reject(error: ErrorData, id: Option<RequestId>) -> Incoming {
    Incoming::Reject(ServerJsonRpcMessage::error(error, id))
}

/// A JSON-RPC id: a string or an integer (MCP forbids null).
fn request_id(value: &Value) -> Option<RequestId> {
    match value {
        Value::String(s) => Some(NumberOrString::String(s.as_str().into())),
        Value::Number(n) => n.as_i64().map(NumberOrString::Number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Value {
        match classify(line.as_bytes()) {
            Some(Incoming::Reject(reply)) => serde_json::to_value(&reply).unwrap(),
            Some(Incoming::Message(m)) => panic!("{line} was accepted as {m:?}"),
            None => panic!("{line} was ignored"),
        }
    }

    #[test]
    fn requests_with_numeric_and_string_ids_are_messages() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#,
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\r\n",
        ] {
            assert!(
                matches!(classify(line.as_bytes()), Some(Incoming::Message(_))),
                "{line}"
            );
        }
    }

    #[test]
    fn malformed_lines_get_the_right_error() {
        let parse = reply("{not json");
        assert_eq!(parse["error"]["code"], -32700);
        assert!(parse.get("id").is_none());
        assert_eq!(reply("[1,2]")["error"]["code"], -32600);
        assert_eq!(reply("42")["error"]["code"], -32600);
        let bad_id = reply(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#);
        assert_eq!(bad_id["error"]["code"], -32600);
        let bad_params = reply(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}"#);
        assert_eq!(bad_params["error"]["code"], -32602);
        assert_eq!(bad_params["id"], 3);
        let message = bad_params["error"]["message"].as_str().unwrap();
        assert!(message.contains("name"), "{message}");
        let bad_arguments = reply(
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
        );
        assert_eq!(bad_arguments["error"]["code"], -32602);
        let no_version = reply(r#"{"id":4,"method":"tools/call","params":{}}"#);
        assert_eq!(no_version["error"]["code"], -32600);
        assert_eq!(no_version["id"], 4);
    }

    #[test]
    fn blank_lines_and_unreadable_notifications_are_ignored() {
        assert!(classify(b"   \r\n").is_none());
        assert!(
            classify(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":5}"#)
                .is_none()
        );
    }

    #[test]
    fn long_lines_are_skipped_without_being_held() {
        let mut input = io::Cursor::new(b"0123456789\nabc\nlast".to_vec());
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut input, &mut line, 5),
            Ok(Line::TooLong)
        ));
        line.clear();
        assert!(matches!(
            read_line(&mut input, &mut line, 5),
            Ok(Line::Read)
        ));
        assert_eq!(line, b"abc\n");
        line.clear();
        assert!(matches!(
            read_line(&mut input, &mut line, 5),
            Ok(Line::Read)
        ));
        assert_eq!(line, b"last");
        line.clear();
        assert!(matches!(read_line(&mut input, &mut line, 5), Ok(Line::End)));
    }
}
