//! Reading blobs as a stream of chunks. A local file is opened and read by one blocking
//! task: a small blob (up to [`SMALL`]) is read whole in the same hand-off that opens
//! it, so serving it costs one thread hand-off; a larger one is read in large chunks
//! handed over through a small bounded channel, so memory stays flat and the download
//! path does not pay a hand-off per few kilobytes.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use object_store::GetResult;
use tokio::sync::mpsc;

use crate::BlobError;

/// Size of each chunk read from a local file.
const READ_CHUNK: usize = 512 << 10;
/// Chunks read ahead of the network per download.
const READ_AHEAD: usize = 4;
/// Blobs (or ranges) up to this size are read whole when they are opened.
const SMALL: u64 = 1 << 20;

/// The bytes of a blob (or a range of it), as a stream. Its length is known up front.
pub struct BlobBody {
    inner: Inner,
    len: u64,
}

enum Inner {
    /// The whole content, read already (taken when yielded).
    Whole(Option<Bytes>),
    Channel(mpsc::Receiver<Result<Bytes, BlobError>>),
    Stream(BoxStream<'static, object_store::Result<Bytes>>),
}

impl BlobBody {
    /// A blob from a store other than the local directory (which `open_local`
    /// reads): the store's own stream.
    pub(crate) fn from_result(result: GetResult) -> BlobBody {
        let len = result.range.end - result.range.start;
        BlobBody {
            inner: Inner::Stream(result.into_stream()),
            len,
        }
    }

    /// Opens `path` (a local file) at `range` (inclusive; `None`: whole), reading it
    /// at once if it is small, in one blocking task that goes on reading a large one.
    pub(crate) async fn open_local(
        path: std::path::PathBuf,
        range: Option<(u64, u64)>,
    ) -> Result<BlobBody, BlobError> {
        let (opened, wait_opened) = tokio::sync::oneshot::channel();
        let (sender, receiver) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    let _ = opened.send(Err(BlobError::NotFound));
                    return;
                }
                Err(error) => {
                    let _ = opened.send(Err(storage_error(&path, error)));
                    return;
                }
            };
            let size = match file.metadata() {
                Ok(metadata) => metadata.len(),
                Err(error) => {
                    let _ = opened.send(Err(storage_error(&path, error)));
                    return;
                }
            };
            let (start, len) = match range {
                None => (0, size),
                Some((first, last)) if first <= last && last < size => (first, last - first + 1),
                Some(_) => {
                    let _ = opened.send(Err(storage_error(
                        &path,
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("range beyond the blob's {size} bytes"),
                        ),
                    )));
                    return;
                }
            };
            if len <= SMALL {
                let read = read_whole(file, start, len)
                    .map(|bytes| BlobBody {
                        inner: Inner::Whole(Some(bytes)),
                        len,
                    })
                    .map_err(|error| storage_error(&path, error));
                let _ = opened.send(read);
                return;
            }
            if opened
                .send(Ok(BlobBody {
                    inner: Inner::Channel(receiver),
                    len,
                }))
                .is_ok()
            {
                read_file(file, start, len, &sender, &path);
            }
        });
        wait_opened.await.unwrap_or_else(|_| {
            Err(BlobError::Storage(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: "the reading task ended unexpectedly".into(),
            }))
        })
    }

    /// The number of bytes the stream yields.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn storage_error(path: &std::path::Path, error: std::io::Error) -> BlobError {
    BlobError::Storage(object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("reading {}: {error}", path.display()).into(),
    })
}

/// `len` bytes of `file` from `start`, in one buffer.
fn read_whole(mut file: std::fs::File, start: u64, len: u64) -> std::io::Result<Bytes> {
    file.seek(SeekFrom::Start(start))?;
    let mut buffer = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    (&mut file).take(len).read_to_end(&mut buffer)?;
    if (buffer.len() as u64) < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "blob shorter than recorded",
        ));
    }
    Ok(Bytes::from(buffer))
}

fn read_file(
    mut file: std::fs::File,
    start: u64,
    len: u64,
    sender: &mpsc::Sender<Result<Bytes, BlobError>>,
    path: &std::path::Path,
) {
    let fail = |error: std::io::Error| {
        let _ = sender.blocking_send(Err(storage_error(path, error)));
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
            Inner::Whole(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Inner::Channel(receiver) => receiver.poll_recv(cx),
            Inner::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|r| r.map_err(BlobError::from))),
        }
    }
}
