use std::time::Duration;

use super::*;

const DAY_MS: i64 = 86_400_000;
const NOW: i64 = 1_000 * DAY_MS;

fn artifact(digest: &str, days_old: i64) -> Artifact {
    Artifact {
        digest: digest.to_owned(),
        pushed_at: NOW - days_old * DAY_MS,
        tags: Vec::new(),
        children: Vec::new(),
        subject: None,
        tier: Tier::Dev,
        tier_since: NOW - days_old * DAY_MS,
        pins: Vec::new(),
    }
}

fn tagged(digest: &str, days_old: i64, tags: &[&str]) -> Artifact {
    let mut a = artifact(digest, days_old);
    a.tags = tags
        .iter()
        .map(|tag| ((*tag).to_owned(), a.pushed_at))
        .collect();
    a
}

fn verdicts(decisions: &[Decision]) -> BTreeMap<String, bool> {
    decisions
        .iter()
        .map(|d| (d.digest.clone(), matches!(d.verdict, Verdict::Expire(_))))
        .collect()
}

fn expired(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| matches!(d.verdict, Verdict::Expire(_)))
        .map(|d| d.digest.as_str())
        .collect()
}

fn rules(keep_tagged: u32) -> RetentionRules {
    RetentionRules {
        keep_tagged,
        ..RetentionRules::default()
    }
}

#[test]
fn ages_read_days_durations_and_forever_and_render_as_read() {
    assert_eq!(
        MaxAge::parse("7d"),
        Ok(MaxAge::After(Duration::from_secs(7 * 86_400)))
    );
    assert_eq!(
        MaxAge::parse("36h"),
        Ok(MaxAge::After(Duration::from_secs(36 * 3600)))
    );
    assert_eq!(MaxAge::parse("forever"), Ok(MaxAge::Forever));
    for refused in ["0d", "-1d", "7", "soon", "", "0s", "d"] {
        assert!(MaxAge::parse(refused).is_err(), "{refused:?}");
    }
    for text in ["7d", "30d", "forever", "36h", "1h 30m"] {
        assert_eq!(
            MaxAge::parse(text).map(|age| age.to_string()),
            Ok(text.to_owned())
        );
    }
    assert_eq!(
        MaxAge::Forever
            .min(MaxAge::parse("7d").expect("age"))
            .to_string(),
        "7d"
    );
}

#[test]
fn untagged_artifacts_expire_after_the_shorter_of_their_limit_and_their_tier() {
    let decisions = decide(
        &[
            artifact("young", 3),
            artifact("old", 8),
            artifact("edge", 7),
        ],
        &RetentionRules::default(),
        NOW,
    );
    // dev's 7 days come before the untagged rule's 30.
    assert_eq!(expired(&decisions), vec!["edge", "old"]);
    let old = decisions
        .iter()
        .find(|d| d.digest == "old")
        .expect("decided");
    assert_eq!(
        old.verdict.clone(),
        Verdict::Expire(Rule::Untagged {
            limit: MaxAge::parse("7d").expect("age")
        })
    );
    let mut rc = artifact("rc", 20);
    rc.tier = Tier::Rc;
    let decisions = decide(&[rc], &RetentionRules::default(), NOW);
    assert!(expired(&decisions).is_empty(), "rc keeps 30 days");
}

#[test]
fn the_newest_tagged_are_kept_whatever_their_age_and_the_rest_by_their_tier() {
    let artifacts = [
        tagged("a", 100, &["v1"]),
        tagged("b", 90, &["v2"]),
        tagged("c", 80, &["v3"]),
        tagged("d", 2, &["v4"]),
    ];
    let decisions = decide(&artifacts, &rules(2), NOW);
    // d and c are the newest two; b and a are older than dev's 7 days.
    assert_eq!(expired(&decisions), vec!["a", "b"]);
    let mut release = tagged("r", 400, &["v0"]);
    release.tier = Tier::Release;
    let decisions = decide(&[release], &rules(0), NOW);
    assert!(expired(&decisions).is_empty(), "release is kept forever");
}

#[test]
fn a_tag_moved_recently_counts_as_recent_for_the_newest_tagged() {
    let mut moved = tagged("moved", 100, &["stable"]);
    moved.tags[0].1 = NOW - DAY_MS;
    let decisions = decide(&[moved, tagged("fresh", 50, &["v9"])], &rules(1), NOW);
    assert_eq!(expired(&decisions), vec!["fresh"]);
}

#[test]
fn an_artifact_with_a_tag_outside_the_filter_is_kept() {
    let filter = RetentionRules {
        keep_tagged: 0,
        tags: vec!["sha-*".to_owned()],
        ..RetentionRules::default()
    };
    let decisions = decide(
        &[
            tagged("build", 50, &["sha-1"]),
            tagged("both", 50, &["sha-2", "v1.0"]),
        ],
        &filter,
        NOW,
    );
    assert_eq!(expired(&decisions), vec!["build"]);
    let both = decisions
        .iter()
        .find(|d| d.digest == "both")
        .expect("decided");
    assert_eq!(
        both.verdict,
        Verdict::Keep(Keep::TagOutsideFilter("v1.0".to_owned()))
    );
}

#[test]
fn a_pin_overrides_every_rule_whatever_the_age_and_says_what_it_saved_from() {
    let pins = [
        Pin::Runs {
            environment: "prod".into(),
        },
        Pin::RollbackWindow {
            environment: "prod".into(),
            deployment: 7,
        },
        Pin::RollbackTarget {
            environment: "staging".into(),
        },
        Pin::Promotion {
            environment: "prod".into(),
            promotion: 3,
            bundle: true,
        },
        Pin::Deploying {
            environment: "dev".into(),
        },
        Pin::Observed {
            environment: "dev".into(),
        },
        Pin::ReleaseTier {
            repository: "release/acme/web".into(),
        },
    ];
    for pin in pins {
        let mut old = tagged("old", 10_000, &["v1"]);
        old.pins = vec![pin.clone()];
        let mut untagged = artifact("untagged", 10_000);
        untagged.pins = vec![pin.clone()];
        let decisions = decide(&[old, untagged, tagged("new", 0, &["v2"])], &rules(0), NOW);
        assert!(expired(&decisions).is_empty(), "{pin}");
        for decision in &decisions {
            if decision.digest != "new" {
                assert_eq!(
                    decision.verdict,
                    Verdict::Keep(Keep::Pinned(vec![pin.clone()]))
                );
                assert!(
                    decision.saved_from.is_some(),
                    "{pin}: the rule it was saved from"
                );
            }
        }
    }
}

#[test]
fn index_children_and_referrers_are_kept_with_a_kept_root_and_expire_with_an_expired_one() {
    let mut index = tagged("index", 100, &["v1"]);
    index.children = vec!["child-a".into(), "nested".into()];
    let mut nested = artifact("nested", 100);
    nested.children = vec!["child-b".into()];
    let mut signature = artifact("sig", 100);
    signature.subject = Some("index".into());
    let mut attestation = artifact("att", 100);
    attestation.subject = Some("child-a".into());
    let set = |pinned: bool| {
        let mut root = index.clone();
        if pinned {
            root.pins = vec![Pin::Runs {
                environment: "prod".into(),
            }];
        }
        vec![
            root,
            artifact("child-a", 100),
            nested.clone(),
            artifact("child-b", 100),
            signature.clone(),
            attestation.clone(),
        ]
    };
    let kept = decide(&set(true), &rules(0), NOW);
    assert!(expired(&kept).is_empty(), "{kept:?}");
    let gone = decide(&set(false), &rules(0), NOW);
    assert!(verdicts(&gone).values().all(|expired| *expired), "{gone:?}");
    // The index comes before what it lists, and a subject before its referrers.
    let order = expired(&gone);
    let at = |digest: &str| order.iter().position(|d| *d == digest).expect("expired");
    assert!(at("index") < at("child-a") && at("index") < at("nested"));
    assert!(at("nested") < at("child-b"));
    assert!(at("index") < at("sig") && at("child-a") < at("att"));
}

#[test]
fn a_child_listed_by_a_kept_index_survives_the_expiry_of_another() {
    let mut old = tagged("old-index", 100, &["v1"]);
    old.children = vec!["shared".into(), "only-old".into()];
    let mut new = tagged("new-index", 1, &["v2"]);
    new.children = vec!["shared".into()];
    let decisions = decide(
        &[old, new, artifact("shared", 100), artifact("only-old", 100)],
        &rules(0),
        NOW,
    );
    assert_eq!(expired(&decisions), vec!["old-index", "only-old"]);
}

#[test]
fn a_referrer_whose_subject_is_absent_is_left_to_garbage_collection() {
    let mut early = artifact("early", 100);
    early.subject = Some("not-pushed-yet".into());
    let decisions = decide(&[early], &rules(0), NOW);
    assert_eq!(
        decisions[0].verdict,
        Verdict::Keep(Keep::SubjectAbsent("not-pushed-yet".into()))
    );
}

#[test]
fn the_lowest_priority_then_the_first_name_governs_a_repository() {
    let policy = |name: &str, priority, glob: &str| RetentionPolicy {
        name: name.into(),
        repositories: vec![glob.into()],
        priority,
        rules: RetentionRules::default(),
    };
    let policies = [
        policy("b-all", 100, "*"),
        policy("a-all", 100, "*"),
        policy("acme", 10, "acme/*"),
    ];
    let name = |repo: &str| governing(&policies, repo).map(|p| p.name.as_str());
    assert_eq!(name("acme/web"), Some("acme"));
    assert_eq!(name("other/web"), Some("a-all"));
    assert_eq!(governing(&policies[2..], "other/web"), None);
}

/// A small model: random repositories, then for every pinned digest, everything it
/// reaches must be kept.
#[test]
fn nothing_reachable_from_a_pinned_or_kept_manifest_ever_expires() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for _ in 0..300 {
        let count = 2 + next(10) as usize;
        let mut artifacts: Vec<Artifact> = (0..count)
            .map(|i| {
                let mut a = artifact(&format!("m{i}"), next(60) as i64);
                if next(2) == 0 {
                    a.tags = vec![(format!("t{i}"), a.pushed_at)];
                }
                if next(5) == 0 {
                    a.pins = vec![Pin::Runs {
                        environment: "prod".into(),
                    }];
                }
                if next(3) == 0 {
                    a.tier = Tier::Rc;
                }
                a
            })
            .collect();
        // Only later manifests list earlier ones, as content addressing forces.
        for (i, artifact) in artifacts.iter_mut().enumerate().skip(1) {
            for j in 0..i {
                if next(4) == 0 {
                    let child = format!("m{j}");
                    if next(3) == 0 {
                        artifact.subject = Some(child);
                    } else {
                        artifact.children.push(child);
                    }
                }
            }
        }
        let keep_tagged = next(3) as u32;
        let decisions = decide(&artifacts, &rules(keep_tagged), NOW);
        assert_eq!(decisions.len(), count);
        let expired: BTreeSet<&str> = expired(&decisions).into_iter().collect();
        let kept: Vec<&Artifact> = artifacts
            .iter()
            .filter(|a| !expired.contains(a.digest.as_str()))
            .collect();
        for a in &artifacts {
            if !a.pins.is_empty() {
                assert!(!expired.contains(a.digest.as_str()), "pinned {a:?} expired");
            }
        }
        for a in kept {
            for child in &a.children {
                assert!(
                    !expired.contains(child.as_str()),
                    "{child} of kept {}",
                    a.digest
                );
            }
            if let Some(subject) = &a.subject
                && expired.contains(subject.as_str())
            {
                // A referrer outlives its subject only when it is kept on its own
                // account: tagged, pinned, or listed by a kept index.
                let listed = artifacts.iter().any(|p| {
                    p.children.contains(&a.digest) && !expired.contains(p.digest.as_str())
                });
                assert!(
                    !a.tags.is_empty() || !a.pins.is_empty() || listed,
                    "referrer {} kept though {subject} expires",
                    a.digest
                );
            }
        }
        // Expiries are in an order that removes every lister before what it lists.
        let order: Vec<&str> = decisions
            .iter()
            .filter(|d| matches!(d.verdict, Verdict::Expire(_)))
            .map(|d| d.digest.as_str())
            .collect();
        for (position, digest) in order.iter().enumerate() {
            for parent in artifacts
                .iter()
                .filter(|p| p.children.iter().any(|c| c == digest))
            {
                if let Some(parent_at) = order.iter().position(|d| *d == parent.digest) {
                    assert!(
                        parent_at < position,
                        "{} listed {digest} but expires after it",
                        parent.digest
                    );
                }
            }
        }
    }
}
