//! Snapshots in S3-compatible storage, through Apache Arrow's `object_store`.
//!
//! Configured the usual AWS way, from the environment: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`) and,
//! for an S3-compatible server, `AWS_ENDPOINT_URL`, addressed path-style, over plain http
//! when that URL says `http://`. (`object_store` reads no `~/.aws` profiles; see
//! [`Client::connect`].)
//!
//! Why uploads can be trusted:
//! * an object becomes visible under its name only when complete: a small file is one PUT, a
//!   large one a multipart upload that S3 assembles only at CompleteMultipartUpload (an
//!   interrupted one leaves parts, never an object; a failed one is aborted);
//! * a single PUT is put-if-absent (`If-None-Match: *`, `PutMode::Create`): an existing
//!   snapshot is never replaced. (A multipart upload cannot carry that condition through
//!   `object_store`; it checks for the name first, and the names are timestamped per export.)
//! * every object carries its file's sha256 in its metadata (`x-amz-meta-sha256`), and each
//!   request carries the payload's SHA-256 checksum, so the server refuses a body damaged on
//!   the way;
//! * a download is hashed as it is written and compared with that metadata before anything
//!   opens it.
//!
//! `object_store` is async. The runtime is a private single-threaded tokio runtime owned by
//! each [`Client`], so nothing async leaks into the rest of the library.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt,
    PutMode, PutMultipartOptions, PutOptions, RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha256};

use super::SnapshotEntry;
use crate::digest::hex;
use crate::error::{Error, Result};
use crate::snapshot::names::split;
use crate::snapshot::temp::TempSnapshot;

/// The metadata key holding the file's sha256 (lowercase hex): `x-amz-meta-sha256`.
const SHA256_METADATA: &str = "sha256";
/// Files up to this size go up in one PUT; larger ones in parts of at least this size.
const PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3 allows at most 10,000 parts; stay clear of it by growing the part size.
const MAX_PARTS: u64 = 9_000;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Read buffer for hashing and uploading.
const CHUNK: usize = 1024 * 1024;

/// `s3://bucket/key`: a key ending in `/` (or empty) is a prefix, a "directory" of snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    bucket: String,
    key: String,
}

impl S3Location {
    /// `text` is the whole URL (for messages), `rest` what follows `s3://`.
    pub(super) fn parse(text: &str, rest: &str) -> Result<S3Location> {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid_bucket {
            return Err(Error::Invalid(format!(
                "{text} does not name an S3 bucket (3-63 characters: lowercase letters, digits, '.', '-'); write s3://bucket/prefix/"
            )));
        }
        let location = S3Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        // object_store refuses empty segments, `.`/`..` and control characters.
        if !key.is_empty() && ObjectPath::parse(key.trim_end_matches('/')).is_err()
            || key.contains("//")
        {
            return Err(Error::Invalid(format!(
                "{text} is not a usable object key (no empty, '.' or '..' segments); write s3://bucket/prefix/"
            )));
        }
        Ok(location)
    }

    /// Whether this names a prefix (ends in `/`, or the bucket itself) rather than an object.
    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The last segment of the key: the object's name.
    pub(super) fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }

    /// The object `name` under this prefix.
    pub(super) fn join(&self, name: &str) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            key: format!("{}{name}", self.as_prefix().key),
        }
    }

    /// The prefix this object is in.
    pub(super) fn parent(&self) -> S3Location {
        let key = match self.key.rfind('/') {
            Some(i) => self.key[..=i].to_owned(),
            None => String::new(),
        };
        S3Location {
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// This location read as a prefix (`s3://b/team` lists `team/`).
    pub(super) fn as_prefix(&self) -> S3Location {
        let mut key = self.key.clone();
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        S3Location {
            bucket: self.bucket.clone(),
            key,
        }
    }

    fn object_path(&self) -> ObjectPath {
        ObjectPath::from(self.key.trim_end_matches('/'))
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An upload that found its name taken, told apart so the caller can pick another name.
#[derive(Debug)]
pub(super) enum UploadError {
    Exists(S3Location),
    Other(Error),
}

impl From<Error> for UploadError {
    fn from(e: Error) -> Self {
        UploadError::Other(e)
    }
}

impl From<UploadError> for Error {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Exists(key) => Error::Invalid(format!(
                "{key} already exists, and snapshots in a bucket are never overwritten; give another name, or a prefix ending in / to get a timestamped name"
            )),
            UploadError::Other(e) => e,
        }
    }
}

/// What was being done, for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Upload,
    List,
    Download,
    Delete,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Upload => "uploading the snapshot to",
            Op::List => "listing",
            Op::Download => "downloading",
            Op::Delete => "deleting old snapshot",
        }
    }
}

/// A connection to one bucket, with its own runtime.
pub(super) struct Client {
    runtime: tokio::runtime::Runtime,
    store: AmazonS3,
    endpoint: String,
}

impl Client {
    /// Builds the client from the environment. Makes no request yet.
    ///
    /// `AWS_PROFILE` alone is refused with a clear message: `object_store` reads credentials
    /// from the environment (and instance/container/web-identity providers), not from
    /// `~/.aws/credentials` profiles.
    pub(super) fn connect(location: &S3Location) -> Result<Client> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if env("AWS_PROFILE").is_some() && env("AWS_ACCESS_KEY_ID").is_none() {
            return Err(Error::Invalid(
                "AWS_PROFILE is set but modstate reads S3 credentials from the environment only; export them, e.g. eval \"$(aws configure export-credentials --format env)\"".to_owned(),
            ));
        }
        let endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"));
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let shown_endpoint = endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let plain_http = shown_endpoint
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));

        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_region(&region)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(plain_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(plain_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300)),
            );
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| {
            Error::Invalid(format!(
                "cannot use {location}: {}; check the AWS_* environment variables",
                short_cause(&e)
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the S3 client for", location.to_string(), e))?;
        Ok(Client {
            runtime,
            store,
            endpoint: shown_endpoint,
        })
    }

    /// Uploads `file` (`bytes` long, closed and synced) as the object `key`, with its sha256
    /// in the metadata. Visible only once complete; never replaces an existing object.
    pub(super) fn upload(
        &self,
        key: &S3Location,
        file: &Path,
        bytes: u64,
    ) -> std::result::Result<(), UploadError> {
        let sha256 = sha256_of(file)?;
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_METADATA.into()),
            sha256.clone().into(),
        );
        attributes.insert(Attribute::ContentType, "application/vnd.sqlite3".into());
        let path = key.object_path();
        let fail = |e: object_store::Error| self.error(e, Op::Upload, key);

        self.runtime.block_on(async {
            if bytes <= PART_SIZE {
                let data = std::fs::read(file)
                    .map_err(|e| Error::io("reading the snapshot copy", file, e))?;
                let options = PutOptions {
                    mode: PutMode::Create,
                    attributes,
                    ..PutOptions::default()
                };
                return match self.store.put_opts(&path, data.into(), options).await {
                    Ok(_) => Ok(()),
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => Err(UploadError::Exists(key.clone())),
                    Err(e) => Err(fail(e).into()),
                };
            }
            match self.store.head(&path).await {
                Ok(_) => return Err(UploadError::Exists(key.clone())),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(fail(e).into()),
            }
            let upload = self
                .store
                .put_multipart_opts(
                    &path,
                    PutMultipartOptions {
                        attributes,
                        ..PutMultipartOptions::default()
                    },
                )
                .await
                .map_err(fail)?;
            let part_size = PART_SIZE.max(bytes.div_ceil(MAX_PARTS));
            let mut writer = WriteMultipart::new_with_chunk_size(
                upload,
                usize::try_from(part_size).unwrap_or(usize::MAX),
            );
            match send_parts(&mut writer, file).await {
                Ok(()) => {}
                Err(e) => {
                    // Best effort: parts of an aborted upload are freed now; after a kill,
                    // a lifecycle rule (AbortIncompleteMultipartUpload) frees them.
                    let _ = writer.abort().await;
                    return Err(match e {
                        SendError::Read(e) => Error::io("reading the snapshot copy", file, e),
                        SendError::Store(e) => fail(e),
                    }
                    .into());
                }
            }
            writer.finish().await.map_err(fail)?;
            Ok(())
        })
    }

    /// The snapshots directly under `prefix`.
    pub(super) fn list(&self, prefix: &S3Location) -> Result<Vec<SnapshotEntry>> {
        let prefix = prefix.as_prefix();
        let path = (!prefix.key.is_empty()).then(|| prefix.object_path());
        let listing = self
            .runtime
            .block_on(self.store.list_with_delimiter(path.as_ref()))
            .map_err(|e| self.error(e, Op::List, &prefix))?;
        Ok(listing
            .objects
            .iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                SnapshotEntry::new(prefix.join(name).to_string(), name, meta.size)
            })
            .collect())
    }

    /// Downloads `key` into `temp` and checks it against the sha256 in its metadata.
    pub(super) fn download(&self, key: &S3Location, temp: &TempSnapshot) -> Result<()> {
        let path = key.object_path();
        let mut out = temp.file()?;
        self.runtime.block_on(async {
            let result = self
                .store
                .get_opts(&path, GetOptions::default())
                .await
                .map_err(|e| self.error(e, Op::Download, key))?;
            let expected = result
                .attributes
                .get(&Attribute::Metadata(SHA256_METADATA.into()))
                .map(|v| v.as_ref().to_ascii_lowercase())
                .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    Error::Integrity(format!(
                        "{key} carries no sha256 in its metadata, so it cannot be checked; use a snapshot uploaded by `modstate snapshot export`"
                    ))
                })?;
            let size = result.meta.size;
            let mut hasher = Sha256::new();
            let mut received = 0u64;
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.error(e, Op::Download, key))?;
                hasher.update(&chunk);
                received += chunk.len() as u64;
                out.write_all(&chunk)
                    .map_err(|e| Error::io("writing the downloaded snapshot to", temp.path(), e))?;
            }
            out.sync_all()
                .map_err(|e| Error::io("syncing the downloaded snapshot", temp.path(), e))?;
            let actual = hex(&hasher.finalize());
            if actual != expected || received != size {
                return Err(Error::Integrity(format!(
                    "{key} is corrupted: its content ({received} bytes) has sha256 {actual}, but its metadata says {expected}; use another snapshot"
                )));
            }
            Ok(())
        })
    }

    /// Deletes the oldest snapshots named `<name_prefix>-<timestamp>.db` directly under
    /// `dir` so that `keep` remain, `just_written` included and never deleted.
    pub(super) fn retain(
        &self,
        dir: &S3Location,
        name_prefix: &str,
        keep: usize,
        just_written: &S3Location,
    ) -> Result<Vec<S3Location>> {
        let mut older: Vec<(String, String)> = self
            .list(dir)?
            .into_iter()
            .filter(|e| split(&e.name).is_some_and(|(p, _)| p == name_prefix))
            .filter(|e| e.name != just_written.name())
            .map(|e| (e.taken_at, e.name))
            .collect();
        older.sort();
        let excess = older.len().saturating_sub(keep.saturating_sub(1));
        let mut removed = Vec::with_capacity(excess);
        for (_, name) in older.into_iter().take(excess) {
            let key = dir.join(&name);
            match self.runtime.block_on(self.store.delete(&key.object_path())) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed.push(key),
                Err(e) => return Err(self.error(e, Op::Delete, &key)),
            }
        }
        Ok(removed)
    }

    /// One line that says what failed and what to do.
    fn error(&self, e: object_store::Error, op: Op, key: &S3Location) -> Error {
        let cause = short_cause(&e);
        let chain = full_chain(&e);
        let bucket = &key.bucket;
        let endpoint = &self.endpoint;
        let untouched = match op {
            Op::Upload => "; nothing was stored under that name and the database is untouched",
            _ => "",
        };
        let io = |message: String| Error::Io {
            action: op.verb(),
            path: key.to_string().into(),
            source: std::io::Error::other(message),
        };
        // Some requests (listings) report a missing bucket as a generic error: its S3 code
        // is the reliable sign.
        let missing_bucket = chain.contains("NoSuchBucket");
        let denied = [
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "ExpiredToken",
            "InvalidToken",
            "AuthorizationHeaderMalformed",
        ]
        .iter()
        .any(|code| chain.contains(code));
        match e {
            _ if missing_bucket => Error::NotFound(format!(
                "bucket {bucket} does not exist at {endpoint}; create it, or fix the bucket name or AWS_ENDPOINT_URL{untouched}"
            )),
            object_store::Error::NotFound { .. } if op == Op::Download => Error::NotFound(format!(
                "no snapshot at {key}; `modstate snapshot ls {}` lists those there",
                key.parent()
            )),
            object_store::Error::NotFound { .. } => Error::NotFound(format!(
                "bucket {bucket} does not exist at {endpoint}; create it, or fix the bucket name or AWS_ENDPOINT_URL{untouched}"
            )),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io(format!(
                "{endpoint} refused the credentials ({cause}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, and the bucket's policy{untouched}"
            )),
            _ if denied => io(format!(
                "{endpoint} refused the credentials ({cause}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, and the bucket's policy{untouched}"
            )),
            _ if is_unreachable(&chain) => io(format!(
                "cannot reach the S3 endpoint {endpoint} ({cause}); check AWS_ENDPOINT_URL and the network{untouched}"
            )),
            _ => io(format!("{cause}{untouched}")),
        }
    }
}

enum SendError {
    Read(std::io::Error),
    Store(object_store::Error),
}

/// Streams `file` into the multipart upload, a few parts in flight at a time.
async fn send_parts(
    writer: &mut WriteMultipart,
    file: &Path,
) -> std::result::Result<(), SendError> {
    let mut input = File::open(file).map_err(SendError::Read)?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = input.read(&mut buffer).map_err(SendError::Read)?;
        if n == 0 {
            return Ok(());
        }
        writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(SendError::Store)?;
        writer.write(&buffer[..n]);
    }
}

fn sha256_of(file: &Path) -> Result<String> {
    let mut input =
        File::open(file).map_err(|e| Error::io("reading the snapshot copy", file, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = input
            .read(&mut buffer)
            .map_err(|e| Error::io("reading the snapshot copy", file, e))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Every message in the error's source chain, joined.
fn full_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The innermost cause, on one line and short: what the server or the network said.
fn short_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(s) = innermost.source() {
        innermost = s;
    }
    let text = innermost.to_string();
    // S3 error bodies are XML; their <Code> says the most in the fewest words.
    let text = match (text.find("<Code>"), text.find("</Code>")) {
        (Some(a), Some(b)) if a + 6 <= b => text[a + 6..b].to_owned(),
        _ => text,
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

fn is_unreachable(chain: &str) -> bool {
    let chain = chain.to_ascii_lowercase();
    [
        "error sending request",
        "connection refused",
        "connect",
        "dns error",
        "timed out",
        "unreachable",
    ]
    .iter()
    .any(|needle| chain.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(text: &str) -> Result<S3Location> {
        S3Location::parse(text, text.strip_prefix("s3://").unwrap())
    }

    #[test]
    fn locations_parse_and_compose() {
        let prefix = location("s3://backups/team/").unwrap();
        assert!(prefix.is_prefix());
        let object = prefix.join("state-20261122T125726.123Z.db");
        assert_eq!(
            object.to_string(),
            "s3://backups/team/state-20261122T125726.123Z.db"
        );
        assert!(!object.is_prefix());
        assert_eq!(object.name(), "state-20261122T125726.123Z.db");
        assert_eq!(object.parent(), prefix);
        assert_eq!(location("s3://backups/team").unwrap().as_prefix(), prefix);
        assert!(location("s3://backups").unwrap().is_prefix());
        assert_eq!(
            location("s3://backups").unwrap().join("x.db").to_string(),
            "s3://backups/x.db"
        );
    }

    #[test]
    fn bad_buckets_and_keys_are_refused() {
        for bad in [
            "s3://",
            "s3://ab/",
            "s3://Backups/",
            "s3://back_ups/x",
            "s3://backups/a//b",
            "s3://backups/../x",
        ] {
            assert!(matches!(location(bad), Err(Error::Invalid(_))), "{bad}");
        }
    }
}
