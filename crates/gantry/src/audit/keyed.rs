//! `gantry audit verify --key`: the chain recomputed here from the export, and held
//! to the signed checkpoints. Each checkpoint's signature must verify with a key
//! given, and the entry it names must still have the hash it signed; the first entry
//! that no longer matches one is named.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use attest::PublicKey;
use client::{AuditEntryView, CheckpointView};
use domain::audit::{AuditFields, ChainWalk};

use super::BROKEN_CHAIN;
use crate::remote::RemoteArgs;

pub(super) fn verify(
    remote: &RemoteArgs,
    key_files: &[std::path::PathBuf],
    kept: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut keys = Vec::new();
    for path in key_files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the key {}", path.display()))?;
        keys.extend(
            PublicKey::all_from_pem(&text)
                .with_context(|| format!("the key {}", path.display()))?,
        );
    }
    let client = remote.client()?;
    // The checkpoints first: one signed after the export was read would name an entry
    // the export does not hold.
    let checkpoints: Vec<CheckpointView> = match kept {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(serde_json::from_str::<CheckpointView>)
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading the checkpoints in {}", path.display()))?,
        None => client.audit_checkpoints()?.checkpoints,
    };
    let mut exported = Vec::new();
    client.audit_export(&mut exported)?;
    let entries = String::from_utf8(exported)
        .context("the export is not UTF-8")?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str::<AuditEntryView>)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the export")?;
    match check(&entries, &checkpoints, &keys) {
        Ok(report) => {
            println!(
                "audit log intact: {} entries; {} signed checkpoint(s) match, the last at entry {}",
                entries.len(),
                report.matched,
                report.last
            );
            if report.after > 0 {
                println!(
                    "the {} entries after it are held by the hash chain only until the next checkpoint",
                    report.after
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!(
                "audit log BROKEN at entry {}: {}",
                broken.sequence, broken.reason
            );
            Ok(ExitCode::from(BROKEN_CHAIN))
        }
    }
}

/// What a keyed verification found.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    matched: usize,
    /// The sequence of the last checkpoint matched.
    last: i64,
    /// Entries after it.
    after: usize,
}

#[derive(Debug, PartialEq, Eq)]
struct Broken {
    sequence: i64,
    reason: String,
}

/// The chain recomputed, then every checkpoint held against it.
fn check(
    entries: &[AuditEntryView],
    checkpoints: &[CheckpointView],
    keys: &[PublicKey],
) -> Result<Report, Broken> {
    let mut walk = ChainWalk::default();
    for entry in entries {
        let fields = AuditFields {
            sequence: entry.sequence,
            at: entry.at_millis,
            actor: &entry.actor,
            action: &entry.action,
            subject: &entry.subject,
            payload: &entry.payload,
            previous_hash: &entry.previous_hash,
        };
        walk.step(&fields, &entry.hash).map_err(|broken| Broken {
            sequence: broken.sequence,
            reason: broken.reason,
        })?;
    }
    let mut matched = 0;
    let mut last = 0;
    let mut sorted: Vec<&CheckpointView> = checkpoints.iter().collect();
    sorted.sort_by_key(|checkpoint| checkpoint.sequence);
    for checkpoint in sorted {
        let Some(key) = keys.iter().find(|key| key.key_id() == checkpoint.key_id) else {
            return Err(Broken {
                sequence: checkpoint.sequence,
                reason: format!(
                    "its checkpoint is signed by key {}, which is not among the keys given",
                    checkpoint.key_id
                ),
            });
        };
        if !attest::checkpoint::verify(
            key,
            checkpoint.sequence,
            &checkpoint.hash,
            checkpoint.at_millis,
            &checkpoint.signature,
        ) {
            return Err(Broken {
                sequence: checkpoint.sequence,
                reason: "its checkpoint's signature does not verify: the checkpoint was forged or altered".to_owned(),
            });
        }
        let Some(entry) = usize::try_from(checkpoint.sequence - 1)
            .ok()
            .and_then(|index| entries.get(index))
        else {
            return Err(Broken {
                sequence: checkpoint.sequence,
                reason: format!(
                    "a checkpoint signed at {} names it, but the log ends at entry {}: entries were removed",
                    checkpoint.at,
                    entries.len()
                ),
            });
        };
        if entry.hash != checkpoint.hash {
            return Err(Broken {
                sequence: checkpoint.sequence,
                reason: format!(
                    "it no longer matches the checkpoint signed at {}: the log was rewritten at or before it, its later hashes recomputed",
                    checkpoint.at
                ),
            });
        }
        matched += 1;
        last = checkpoint.sequence;
    }
    if matched == 0 {
        return Err(Broken {
            sequence: 1,
            reason: "there is no signed checkpoint to hold the chain against".to_owned(),
        });
    }
    Ok(Report {
        matched,
        last,
        after: entries.len() - usize::try_from(last).unwrap_or(0),
    })
}
