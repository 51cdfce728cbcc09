//! Retention as declared: `kind: RetentionPolicy` and an application's `retention`
//! block, read with their defaults (dev 7 days, rc 30 days, release forever, the
//! newest 30 tagged, untagged 30 days, a rollback window of 5), refused at the field
//! that is wrong, rendered canonically and read back.

use std::time::Duration;

use domain::retention::{MaxAge, RetentionRules};
use resources::{Resource, ResourceKey, ResourceKind};

use crate::{errors_of, parsed};

const DAY: u64 = 86_400;

const FULL: &str = r#"kind: RetentionPolicy
name: team-builds
repositories: ["team/*", "acme/web-*"]
priority: 10
keep_tagged: 20
expire_untagged_after: 3d
expire_after: { dev: 7d, rc: 36h, release: forever }
tags: ["sha-*", "pr-*"]
rollback_window: 3
"#;

fn policy(text: &str) -> domain::retention::RetentionPolicy {
    match parsed(text).resources().next() {
        Some(Resource::RetentionPolicy(policy)) => policy.clone(),
        other => panic!("expected a retention policy, got {other:?}"),
    }
}

#[test]
fn a_policy_reads_every_field_and_fills_the_per_tier_defaults() {
    let full = policy(FULL);
    assert_eq!(full.name, "team-builds");
    assert_eq!(full.repositories, ["team/*", "acme/web-*"]);
    assert_eq!(full.priority, 10);
    assert_eq!(full.rules.keep_tagged, 20);
    assert_eq!(
        full.rules.expire_untagged_after,
        MaxAge::After(Duration::from_secs(3 * DAY))
    );
    assert_eq!(
        full.rules.expire_after.rc,
        MaxAge::After(Duration::from_secs(36 * 3600))
    );
    assert_eq!(full.rules.tags, ["sha-*", "pr-*"]);
    assert_eq!(full.rules.rollback_window, 3);

    let minimal = policy("kind: RetentionPolicy\nname: all\nrepositories: ['*']\n");
    assert_eq!(minimal.priority, 100);
    assert_eq!(minimal.rules, RetentionRules::default());
    assert_eq!(
        minimal.rules.expire_after.dev,
        MaxAge::After(Duration::from_secs(7 * DAY))
    );
    assert_eq!(
        minimal.rules.expire_after.rc,
        MaxAge::After(Duration::from_secs(30 * DAY))
    );
    assert_eq!(minimal.rules.expire_after.release, MaxAge::Forever);
    assert_eq!(minimal.rules.keep_tagged, 30);
    assert_eq!(minimal.rules.rollback_window, 5);
    let key = parsed(FULL).resources().next().map(Resource::key);
    assert_eq!(
        key,
        Some(ResourceKey {
            kind: ResourceKind::RetentionPolicy,
            name: "team-builds".into()
        })
    );
}

#[test]
fn a_policy_renders_canonically_and_reads_back_the_same() {
    for text in [
        FULL,
        "kind: RetentionPolicy\nname: all\nrepositories: ['*']\n",
    ] {
        let set = parsed(text);
        let resource = set.resources().next().expect("one");
        let canonical = resource.canonical();
        let back = resources::retention_policy_from_canonical(&canonical).expect("reads back");
        assert_eq!(Resource::RetentionPolicy(back.clone()), *resource);
        assert_eq!(Resource::RetentionPolicy(back).canonical(), canonical);
    }
    let canonical = parsed(FULL).resources().next().expect("one").canonical();
    assert!(
        canonical.contains(r#""expire_untagged_after": "3d""#),
        "{canonical}"
    );
    assert!(canonical.contains(r#""release": "forever""#), "{canonical}");
    assert!(
        canonical.contains(r#""rc": "1d 12h""#) || canonical.contains(r#""rc": "36h""#),
        "{canonical}"
    );
}

#[test]
fn an_applications_retention_block_wins_and_reads_back_and_an_absent_one_renders_as_before() {
    let application = |retention: &str| {
        format!(
            "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: standard\n\
             environments:\n  dev: {{ target: {{ record: {{}} }} }}\n{retention}"
        )
    };
    let with = parsed(&application(
        "retention: { keep_tagged: 5, expire_after: { dev: 2d } }\n",
    ));
    let Some(Resource::Application(read)) = with.resources().next() else {
        panic!("an application");
    };
    let rules = read.retention.clone().expect("its retention");
    assert_eq!(rules.keep_tagged, 5);
    assert_eq!(
        rules.expire_after.dev,
        MaxAge::After(Duration::from_secs(2 * DAY))
    );
    assert_eq!(
        rules.expire_after.rc,
        RetentionRules::default().expire_after.rc
    );
    let canonical = with.resources().next().expect("one").canonical();
    let back = resources::application_from_canonical(&canonical).expect("reads back");
    assert_eq!(back.retention, Some(rules));
    let without = parsed(&application(""))
        .resources()
        .next()
        .expect("one")
        .canonical();
    assert!(!without.contains("retention"), "{without}");
}

#[test]
fn each_wrong_field_is_named() {
    let cases = [
        (
            "repositories: []",
            "field repositories: an empty list matches nothing",
        ),
        (
            "repositories: ['']",
            "field repositories[0]: an empty pattern matches nothing",
        ),
        ("keep_tagged: -1", "keep_tagged"),
        (
            "rollback_window: 0",
            "field rollback_window: 0 is out of range: use 1–1000",
        ),
        ("expire_untagged_after: 7", "is not an age"),
        ("expire_untagged_after: 0d", "is not an age"),
        ("expire_after: { prod: 7d }", "unknown field `prod`"),
        ("tags: []", "field tags: an empty list matches nothing"),
        ("keep: 3", "unknown field `keep`"),
    ];
    for (line, expected) in cases {
        let field = line.split(':').next().unwrap_or_default();
        let mut text = String::new();
        let mut replaced = false;
        for original in FULL.lines() {
            if original.starts_with(&format!("{field}:")) {
                text.push_str(line);
                replaced = true;
            } else {
                text.push_str(original);
            }
            text.push('\n');
        }
        if !replaced {
            text.push_str(line);
            text.push('\n');
        }
        let errors = errors_of(&text);
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "{line}: {errors:?}"
        );
        assert!(
            errors.iter().all(|error| error.contains("RetentionPolicy")),
            "{errors:?}"
        );
    }
    let errors = errors_of(
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\npipeline: standard\n\
         environments:\n  dev: { target: { record: {} } }\nretention: { rollback_window: 5000 }\n",
    );
    assert!(
        errors
            .iter()
            .any(|error| error.contains("field retention.rollback_window")),
        "{errors:?}"
    );
}
