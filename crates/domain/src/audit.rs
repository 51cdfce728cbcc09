//! The audit log's hash chain: each entry's hash covers its own fields and the hash of
//! the entry before it, so editing, inserting or deleting any entry breaks every hash
//! after it. The encoding is canonical: every field is length-prefixed, so no two
//! different entries encode to the same bytes.

use sha2::{Digest as _, Sha256};

/// The hash that precedes the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an audit entry records. Stored by its name; new kinds of change add variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A manifest was stored or a tag was created or moved.
    Push,
    /// A repository was created by a first push (applying an application creates its
    /// repository under the apply's entry).
    CreateRepository,
    /// A promoted manifest was linked (rows only, no bytes) into a release tier
    /// repository, which is created if it did not exist.
    Link,
    DeleteManifest,
    DeleteTag,
    DeleteBlob,
    /// A declared resource (pipeline, application) was created or changed by an apply.
    Apply,
    /// Build provenance was recorded for an artifact.
    Notify,
    /// A check report arrived for an artifact.
    Check,
    /// A promotion was requested.
    Promote,
    /// A promotion's gate was bypassed by an admin (break-glass), with a reason.
    Override,
    Approve,
    Reject,
    /// A promotion was withdrawn by its requester or an admin.
    Cancel,
    /// A newer promotion or a rollback replaced a pending promotion.
    Supersede,
    /// A deployment started, succeeded or failed.
    Deploy,
    Rollback,
    /// Auto-promotion into an environment was paused, or released.
    Hold,
    Release,
    /// A user, a role grant or an API token was created.
    User,
    Token,
    /// What an environment runs started or stopped differing from what Gantry deployed.
    Drift,
    /// A webhook receiver reported the outcome of a deployment it was handed.
    Callback,
    /// A user's password for the web UI was set (never the password itself).
    Password,
    /// An admin made an invitation link for a person to choose their password.
    Invite,
    /// A person signed in to the web UI (a session began), or signed out.
    SignIn,
    SignOut,
    /// A garbage collection pass deleted a blob that no manifest referenced for longer
    /// than the grace window (its links and then its bytes).
    Collect,
    /// A digest of an application was quarantined (its promotions refused, pending
    /// ones cancelled), or its quarantine lifted.
    Quarantine,
    LiftQuarantine,
    /// A retention policy expired a manifest (its tags and the manifest; garbage
    /// collection then deletes the blobs nothing else references).
    Expire,
    /// A signing key became the current one (first start, or a rotation that retired
    /// the one before).
    SigningKey,
    /// A deployment's attestation was signed (and then stored beside the image as an
    /// OCI referrer).
    Attest,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Push => "push",
            AuditAction::CreateRepository => "create-repository",
            AuditAction::Link => "link",
            AuditAction::DeleteManifest => "delete-manifest",
            AuditAction::DeleteTag => "delete-tag",
            AuditAction::DeleteBlob => "delete-blob",
            AuditAction::Apply => "apply",
            AuditAction::Notify => "notify",
            AuditAction::Check => "check",
            AuditAction::Promote => "promote",
            AuditAction::Override => "override",
            AuditAction::Approve => "approve",
            AuditAction::Reject => "reject",
            AuditAction::Cancel => "cancel",
            AuditAction::Supersede => "supersede",
            AuditAction::Deploy => "deploy",
            AuditAction::Rollback => "rollback",
            AuditAction::Hold => "hold",
            AuditAction::Release => "release",
            AuditAction::User => "user",
            AuditAction::Token => "token",
            AuditAction::Drift => "drift",
            AuditAction::Callback => "callback",
            AuditAction::Password => "password",
            AuditAction::Invite => "invite",
            AuditAction::SignIn => "sign-in",
            AuditAction::SignOut => "sign-out",
            AuditAction::Collect => "collect",
            AuditAction::Quarantine => "quarantine",
            AuditAction::LiftQuarantine => "lift-quarantine",
            AuditAction::Expire => "expire",
            AuditAction::SigningKey => "signing-key",
            AuditAction::Attest => "attest",
        }
    }
}

/// The fields of one audit entry that the chain protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFields<'a> {
    pub sequence: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    /// Canonical JSON (object keys sorted, no insignificant whitespace).
    pub payload: &'a str,
    pub previous_hash: &'a str,
}

/// SHA-256 (lowercase hex) over the canonical encoding of `fields`.
pub fn entry_hash(fields: &AuditFields<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(b"gantry-audit-v1");
    field(&fields.sequence.to_be_bytes());
    field(&fields.at.to_be_bytes());
    field(fields.actor.as_bytes());
    field(fields.action.as_bytes());
    field(fields.subject.as_bytes());
    field(fields.payload.as_bytes());
    field(fields.previous_hash.as_bytes());
    hex::encode(hasher.finalize())
}

/// Walks a chain entry by entry, oldest first, from the genesis: each entry must be
/// the next sequence, link to the hash of the one before and hash to its own hash. The
/// one definition of a sound chain, for the server's check and the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWalk {
    expected_sequence: i64,
    previous_hash: String,
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub sequence: i64,
    pub reason: String,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk {
            expected_sequence: 1,
            previous_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainWalk {
    /// Takes the next entry, whose stored hash is `hash`.
    pub fn step(&mut self, entry: &AuditFields<'_>, hash: &str) -> Result<(), ChainBreak> {
        let expected = self.expected_sequence;
        if entry.sequence != expected {
            return Err(ChainBreak {
                sequence: expected,
                reason: format!("entry {expected} is missing (next is {})", entry.sequence),
            });
        }
        if entry.previous_hash != self.previous_hash {
            return Err(ChainBreak {
                sequence: entry.sequence,
                reason: "its previous-hash does not match the entry before it".to_owned(),
            });
        }
        if entry_hash(entry) != hash {
            return Err(ChainBreak {
                sequence: entry.sequence,
                reason: "its content does not match its hash (the entry was altered)".to_owned(),
            });
        }
        self.previous_hash = hash.to_owned();
        self.expected_sequence += 1;
        Ok(())
    }

    /// The entries taken so far.
    pub fn entries(&self) -> i64 {
        self.expected_sequence - 1
    }

    /// The hash of the last entry taken (the genesis hash before any).
    pub fn head(&self) -> &str {
        &self.previous_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(actor: &'a str, payload: &'a str) -> AuditFields<'a> {
        AuditFields {
            sequence: 1,
            at: 1000,
            actor,
            action: "push",
            subject: "acme/app",
            payload,
            previous_hash: GENESIS_HASH,
        }
    }

    #[test]
    fn every_field_changes_the_hash_and_boundaries_cannot_be_shifted() {
        let base = entry_hash(&fields("ann", "{}"));
        assert_eq!(base, entry_hash(&fields("ann", "{}")), "deterministic");
        assert_eq!(base.len(), 64);
        assert_ne!(base, entry_hash(&fields("bob", "{}")));
        assert_ne!(base, entry_hash(&fields("ann", "{\"a\":1}")));
        assert_ne!(
            base,
            entry_hash(&AuditFields {
                sequence: 2,
                ..fields("ann", "{}")
            })
        );
        assert_ne!(
            base,
            entry_hash(&AuditFields {
                at: 1001,
                ..fields("ann", "{}")
            })
        );
        assert_ne!(
            base,
            entry_hash(&AuditFields {
                previous_hash: &"1".repeat(64),
                ..fields("ann", "{}")
            })
        );
        // Moving bytes between adjacent fields must change the hash.
        let a = AuditFields {
            action: "pu",
            subject: "shacme/app",
            ..fields("ann", "{}")
        };
        let b = AuditFields {
            action: "push",
            subject: "acme/app",
            ..fields("ann", "{}")
        };
        assert_ne!(entry_hash(&a), entry_hash(&b));
    }

    #[test]
    fn a_walk_takes_a_sound_chain_and_names_the_first_missing_relinked_or_altered_entry() {
        // Three entries, each linked to the one before.
        let mut hashes = vec![GENESIS_HASH.to_owned()];
        for sequence in 1..=3 {
            let previous = hashes.last().cloned().unwrap_or_default();
            let hash = entry_hash(&AuditFields {
                sequence,
                previous_hash: &previous,
                ..fields("ann", "{}")
            });
            hashes.push(hash);
        }
        let entry = |sequence: i64, actor: &'static str| AuditFields {
            sequence,
            previous_hash: "",
            ..fields(actor, "{}")
        };
        let walk_of = |skip: Option<i64>, actor_of_2: &'static str| {
            let mut walk = ChainWalk::default();
            for sequence in 1..=3i64 {
                if Some(sequence) == skip {
                    continue;
                }
                let index = usize::try_from(sequence).unwrap_or(0);
                let fields = AuditFields {
                    previous_hash: &hashes[index - 1],
                    ..entry(sequence, if sequence == 2 { actor_of_2 } else { "ann" })
                };
                walk.step(&fields, &hashes[index])?;
            }
            Ok::<_, ChainBreak>((walk.entries(), walk.head().to_owned()))
        };
        assert_eq!(walk_of(None, "ann"), Ok((3, hashes[3].clone())));
        let altered = walk_of(None, "mallory").expect_err("altered");
        assert_eq!(altered.sequence, 2);
        assert!(altered.reason.contains("altered"), "{altered:?}");
        let missing = walk_of(Some(2), "ann").expect_err("missing");
        assert_eq!(missing.sequence, 2);
        assert!(missing.reason.contains("missing"), "{missing:?}");
        let mut walk = ChainWalk::default();
        let relinked = walk
            .step(
                &AuditFields {
                    previous_hash: "f00",
                    ..entry(1, "ann")
                },
                &hashes[1],
            )
            .expect_err("relinked");
        assert!(relinked.reason.contains("previous-hash"), "{relinked:?}");
        assert_eq!(walk.entries(), 0);
        assert_eq!(walk.head(), GENESIS_HASH);
    }
}
