//! The signing key a server holds, and its rotation.
//!
//! The private key is the file `attest::SigningKey` reads; the store records the
//! public half of every key that was current, with when ([`store::SigningKeys`]). A
//! rotation writes a new key file, then records it as current (retiring the old one),
//! under one lock so two rotations on one replica never interleave. Another replica
//! sharing the file picks the new key up when [`KeyRing::current`] finds the store's
//! current key is not the one it holds.

use attest::SigningKey;
use tokio::sync::Mutex;

/// The key this replica signs with.
pub struct KeyRing {
    key: Mutex<SigningKey>,
}

/// Why the key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Key(#[from] attest::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl KeyRing {
    pub fn new(key: SigningKey) -> KeyRing {
        KeyRing {
            key: Mutex::new(key),
        }
    }

    /// Records the held key as the current one (retiring any other), as done by
    /// `actor`; whether that changed anything.
    pub async fn publish(&self, store: &store::Store, actor: &str) -> Result<bool, SigningError> {
        let key = self.key.lock().await;
        publish(&key, store, actor).await
    }

    /// The current key's id, reloading the key file first when the store says another
    /// replica rotated it.
    pub async fn current(&self, store: &store::Store) -> Result<String, SigningError> {
        let mut key = self.key.lock().await;
        reload(&mut key, store).await?;
        Ok(key.key_id())
    }

    /// Calls `sign` with the current key (reloaded first as [`KeyRing::current`] does).
    pub async fn with_key<T>(
        &self,
        store: &store::Store,
        sign: impl FnOnce(&SigningKey) -> T,
    ) -> Result<T, SigningError> {
        let mut key = self.key.lock().await;
        reload(&mut key, store).await?;
        Ok(sign(&key))
    }

    /// Makes a new key, replaces the key file with it, and records it as current
    /// (retiring the old one), as done by `actor`. Returns the new key's id.
    pub async fn rotate(&self, store: &store::Store, actor: &str) -> Result<String, SigningError> {
        let mut key = self.key.lock().await;
        let next = key.rotate()?;
        publish(&next, store, actor).await?;
        let id = next.key_id();
        *key = next;
        Ok(id)
    }
}

/// Reloads the key file when the store's current key is not the one held.
async fn reload(key: &mut SigningKey, store: &store::Store) -> Result<(), SigningError> {
    let recorded = store
        .signing_keys()
        .list()
        .await?
        .into_iter()
        .find(|record| record.retired_at.is_none())
        .map(|record| record.key_id);
    if recorded.is_some_and(|id| id != key.key_id()) {
        *key = SigningKey::load(key.path())?;
    }
    Ok(())
}

async fn publish(
    key: &SigningKey,
    store: &store::Store,
    actor: &str,
) -> Result<bool, SigningError> {
    Ok(store
        .signing_keys()
        .make_current(
            &key.key_id(),
            attest::ALGORITHM,
            &key.public().pem(),
            actor,
            store::now_millis(),
        )
        .await?)
}
