//! Writing an upload part to a local directory. Each chunk is hashed and written by the
//! same blocking thread right after it arrives, while it is still in that core's cache;
//! the async side only receives. The part appears under its final name by a rename
//! once it is complete, so a reader never sees a partial part.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use domain::DigestHasher;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::BlobError;

/// Chunks received ahead of the disk per upload; bounds memory per upload.
const QUEUE: usize = 16;

enum Message {
    Data(Bytes),
    /// The body ended normally: keep the part.
    Finish,
    /// Anything else (an error, or a channel closed without `Finish` because the
    /// request was dropped): discard the part.
    Abort,
}

/// Streams `body` into `destination` (via `destination.partial`), hashing on the way.
/// Returns the number of bytes written. On any error nothing is left behind.
pub(crate) async fn write_local<S, E>(
    destination: PathBuf,
    body: S,
    hasher: Option<&mut DigestHasher>,
    already: u64,
    max_total: u64,
    fsync: bool,
) -> Result<u64, BlobError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (sender, mut receiver) = mpsc::channel::<Message>(QUEUE);
    let mut thread_hasher = hasher.as_deref().cloned();
    let writer =
        tokio::task::spawn_blocking(move || -> Result<Option<DigestHasher>, std::io::Error> {
            let staging = destination.with_extension("partial");
            if let Some(parent) = destination.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let written = (|| -> Result<bool, std::io::Error> {
                let mut file = std::fs::File::create(&staging)?;
                loop {
                    match receiver.blocking_recv() {
                        Some(Message::Data(chunk)) => {
                            if let Some(hasher) = thread_hasher.as_mut() {
                                hasher.update(&chunk);
                            }
                            file.write_all(&chunk)?;
                        }
                        Some(Message::Finish) => break,
                        Some(Message::Abort) | None => return Ok(false),
                    }
                }
                if fsync {
                    file.sync_all()?;
                }
                Ok(true)
            })();
            match written {
                Ok(true) => {
                    std::fs::rename(&staging, &destination)?;
                    if fsync && let Some(parent) = destination.parent() {
                        std::fs::File::open(parent)?.sync_all()?;
                    }
                    Ok(thread_hasher)
                }
                Ok(false) => {
                    let _ = std::fs::remove_file(&staging);
                    Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "upload aborted",
                    ))
                }
                Err(error) => {
                    let _ = std::fs::remove_file(&staging);
                    Err(error)
                }
            }
        });

    let mut written: u64 = 0;
    let mut body = std::pin::pin!(body);
    let received: Result<(), BlobError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            written += chunk.len() as u64;
            if already + written > max_total {
                return Err(BlobError::TooLarge { limit: max_total });
            }
            if sender.send(Message::Data(chunk)).await.is_err() {
                // The writer stopped early: its own error is reported below.
                break;
            }
        }
        Ok(())
    }
    .await;
    let last = if received.is_ok() {
        Message::Finish
    } else {
        Message::Abort
    };
    let _ = sender.send(last).await;
    drop(sender);
    let finished = writer
        .await
        .map_err(|e| BlobError::Body(format!("writer task failed: {e}")))?;
    received?;
    let finished_hasher = finished.map_err(|error| {
        BlobError::Storage(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(error),
        })
    })?;
    if let (Some(hasher), Some(finished)) = (hasher, finished_hasher) {
        *hasher = finished;
    }
    Ok(written)
}
