//! Reading blobs as a stream of chunks. Local files are read by a blocking task in
//! large chunks handed over through a small bounded channel: memory stays flat and the
//! hot download path does not pay a thread hand-off per few kilobytes.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use object_store::{GetResult, GetResultPayload};
use tokio::sync::mpsc;

use crate::BlobError;

/// Size of each chunk read from a local file.
const READ_CHUNK: usize = 512 << 10;
/// Chunks read ahead of the network per download.
const READ_AHEAD: usize = 4;

/// The bytes of a blob (or a range of it), as a stream. Its length is known up front.
pub struct BlobBody {
    inner: Inner,
    len: u64,
}

enum Inner {
    Channel(mpsc::Receiver<Result<Bytes, BlobError>>),
    Stream(BoxStream<'static, object_store::Result<Bytes>>),
}

impl BlobBody {
    pub(crate) fn from_result(result: GetResult) -> BlobBody {
        let range = result.range.clone();
        let len = range.end - range.start;
        let inner = match result.payload {
            GetResultPayload::File(file, path) => {
                let (sender, receiver) = mpsc::channel(READ_AHEAD);
                tokio::task::spawn_blocking(move || {
                    read_file(file, range.start, len, &sender, &path)
                });
                Inner::Channel(receiver)
            }
            GetResultPayload::Stream(stream) => Inner::Stream(stream),
        };
        BlobBody { inner, len }
    }

    /// The number of bytes the stream yields.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn read_file(
    mut file: std::fs::File,
    start: u64,
    len: u64,
    sender: &mpsc::Sender<Result<Bytes, BlobError>>,
    path: &std::path::Path,
) {
    let fail = |error: std::io::Error| {
        let _ = sender.blocking_send(Err(BlobError::Storage(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("reading {}: {error}", path.display()).into(),
        })));
    };
    if let Err(error) = file.seek(SeekFrom::Start(start)) {
        return fail(error);
    }
    let mut remaining = len;
    while remaining > 0 {
        let want = remaining.min(READ_CHUNK as u64);
        // `read_to_end` fills spare capacity without zeroing it first.
        let mut buffer = Vec::with_capacity(READ_CHUNK);
        match (&mut file).take(want).read_to_end(&mut buffer) {
            Ok(0) => {
                return fail(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob shorter than recorded",
                ));
            }
            Ok(read) => remaining -= read as u64,
            Err(error) => return fail(error),
        }
        if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
            // The reader went away (client disconnected): stop reading.
            return;
        }
    }
}

impl Stream for BlobBody {
    type Item = Result<Bytes, BlobError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.inner {
            Inner::Channel(receiver) => receiver.poll_recv(cx),
            Inner::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|r| r.map_err(BlobError::from))),
        }
    }
}
