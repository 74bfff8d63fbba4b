//! The store contract: the SQLite and Postgres stores behave the same.

use std::time::Duration;

use kubeportal::clusters::{AuthProvider, ClusterInput, ClusterInputExt, Registry};
use kubeportal::secrets::SecretBox;
use kubeportal::store::{self, StoreError};
use kubeportal_tests::{both_stores, test_secret_key, Backend, TestDb};
use secrecy::SecretString;

fn input(name: &str, token: &str) -> ClusterInput {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "url": "https://10.0.0.1:6443",
        "authProvider": "serviceAccount",
        "serviceAccountToken": token,
    }))
    .unwrap()
}

async fn registry(db: &TestDb) -> Registry {
    let database = store::connect(&db.url, None).await.unwrap();
    Registry::new(
        database.clusters(),
        SecretBox::from_base64(&test_secret_key()).unwrap(),
        Duration::from_secs(60),
    )
}

both_stores!(names_are_unique_case_insensitively, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    registry.create(&input("Prod-EU", "t0k3n")).await.unwrap();
    let duplicate = registry.store().create(&row("prod-eu")).await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate)),
        "{duplicate:?}"
    );
    let found = registry.store().get("PROD-eu").await.unwrap().unwrap();
    assert_eq!(found.name, "Prod-EU");
    assert_eq!(found.version, 1);
});

/// A row as the store receives it (the store never looks inside sealed bytes).
/// Audit records as the store is handed them.
fn entries(records: &[kubeportal::audit::AuditRecord]) -> Vec<kubeportal::audit::Entry> {
    records
        .iter()
        .cloned()
        .map(|record| record.try_into().unwrap())
        .collect()
}

fn row(name: &str) -> kubeportal::store::ClusterRow {
    kubeportal::store::ClusterRow {
        name: name.to_owned(),
        title: None,
        url: "https://10.0.0.1:6443".into(),
        auth_provider: AuthProvider::ServiceAccount,
        ca_data: None,
        skip_tls_verify: false,
        sealed_service_account_token: Some(vec![1, 2, 3]),
        client_cert_data: None,
        sealed_client_key_data: None,
        dashboard_url: None,
        dashboard_app: None,
        dashboard_parameters: None,
        oidc_token_provider: None,
        skip_metrics_lookup: false,
        labels: [("team".to_owned(), "a".to_owned())].into(),
    }
}

both_stores!(updates_need_the_current_version, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    let created = registry.create(&input("dev", "t0k3n")).await.unwrap();
    let mut row = row("dev");
    row.title = Some("Development".into());
    let updated = registry
        .store()
        .update(created.version, &row)
        .await
        .unwrap();
    assert_eq!(updated.version, created.version + 1);
    assert_eq!(updated.title.as_deref(), Some("Development"));
    assert_eq!(updated.labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(updated.sealed_service_account_token, Some(vec![1, 2, 3]));
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);

    row.title = Some("Stale".into());
    let stale = registry.store().update(created.version, &row).await;
    assert!(
        matches!(stale, Err(StoreError::VersionMismatch { current }) if current == updated.version),
        "{stale:?}"
    );
    let unchanged = registry.store().get("dev").await.unwrap().unwrap();
    assert_eq!(unchanged.title.as_deref(), Some("Development"));

    row.name = "missing".into();
    assert!(matches!(
        registry.store().update(1, &row).await,
        Err(StoreError::NotFound)
    ));
});

both_stores!(
    registrations_have_identities_that_never_repeat,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let registry = registry(&db).await;
        let first = registry.create(&input("dev", "t0k3n")).await.unwrap();
        assert_eq!(first.uid.len(), 32, "{}", first.uid);
        assert!(first.uid.bytes().all(|byte| byte.is_ascii_hexdigit()));
        let updated = registry
            .store()
            .update(first.version, &row("dev"))
            .await
            .unwrap();
        assert_eq!(updated.uid, first.uid, "an update keeps the identity");
        let other = registry.create(&input("other", "t0k3n")).await.unwrap();
        assert_ne!(other.uid, first.uid);

        registry.delete("dev", None).await.unwrap();
        let again = registry.create(&input("DEV", "t0k3n")).await.unwrap();
        assert_eq!(again.version, 1, "versions start again");
        assert_ne!(again.uid, first.uid, "the identity does not");
        let found = registry.store().get("dev").await.unwrap().unwrap();
        assert_eq!(found.uid, again.uid);
    }
);

both_stores!(deletes_are_conditional_when_asked, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    registry.create(&input("dev", "t0k3n")).await.unwrap();
    assert!(matches!(
        registry.store().delete("DEV", Some(7)).await,
        Err(StoreError::VersionMismatch { current: 1 })
    ));
    registry.store().delete("DEV", Some(1)).await.unwrap();
    assert!(registry.store().get("dev").await.unwrap().is_none());
    assert!(matches!(
        registry.store().delete("dev", None).await,
        Err(StoreError::NotFound)
    ));
});

both_stores!(lists_page_in_name_order, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    for name in ["charlie", "Alpha", "bravo", "delta", "echo"] {
        registry.create(&input(name, "t")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = registry.list(cursor.as_deref(), Some(2)).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|record| record.name.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["Alpha", "bravo", "charlie", "delta", "echo"]);
});

both_stores!(raw_table_holds_no_plaintext_secret, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["client".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let token = "plaintext-token-9f2c";
    let mut with_key = input("secretive", token);
    with_key.client_cert_data = Some(certificate.pem());
    with_key.client_key_data = Some(SecretString::from(key.serialize_pem()));
    registry.create(&with_key).await.unwrap();
    let key_marker = key.serialize_pem().lines().nth(1).unwrap().to_owned();

    let dump: Vec<String> = match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT row_to_json(c)::text FROM clusters c")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let rows: Vec<(Vec<u8>, Vec<u8>)> =
                sqlx::query_as("SELECT service_account_token, client_key_data FROM clusters")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let everything: Vec<String> = sqlx::query_scalar(
                "SELECT name || url || auth_provider || coalesce(client_cert_data, '') || labels FROM clusters",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            rows.into_iter()
                .map(|(a, b)| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&a),
                        String::from_utf8_lossy(&b)
                    )
                })
                .chain(everything)
                .collect()
        }
    };
    let dump = dump.join("\n");
    assert!(dump.contains("secretive"), "the dump is of the right table");
    assert!(!dump.contains(token), "token stored in plaintext");
    assert!(
        !dump.contains(&key_marker),
        "client key stored in plaintext"
    );
    let record = registry.store().get("secretive").await.unwrap().unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        registry
            .open_token(&record)
            .unwrap()
            .unwrap()
            .expose_secret(),
        token
    );
});

both_stores!(lookups_by_name_use_the_unique_index, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    for index in 0..300 {
        registry
            .create(&input(&format!("cluster-{index}"), "t"))
            .await
            .unwrap();
    }
    if backend == Backend::Postgres {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query("ANALYZE clusters")
            .execute(&pool)
            .await
            .unwrap();
    }
    let plan = registry.store().explain_lookup().await.unwrap();
    assert!(
        plan.contains("clusters_name_key"),
        "plan does not use the index:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan") && !plan.starts_with("SCAN"),
        "{plan}"
    );
});

both_stores!(the_cache_is_invalidated_by_writes, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    registry.create(&input("dev", "t")).await.unwrap();
    let first = registry.resolve("DEV").await.unwrap().unwrap();
    assert_eq!(first.version, 1);
    let update: kubeportal::clusters::ClusterUpdate = serde_json::from_value(serde_json::json!({
        "url": "https://10.9.9.9:6443", "authProvider": "serviceAccount",
        "serviceAccountToken": "t"
    }))
    .unwrap();
    registry.update("dev", &update, 1).await.unwrap();
    let second = registry.resolve("dev").await.unwrap().unwrap();
    assert_eq!(second.url, "https://10.9.9.9:6443");
    registry.delete("dev", None).await.unwrap();
    assert!(registry.resolve("dev").await.unwrap().is_none());
});

both_stores!(
    upserts_from_configuration_are_idempotent,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let registry = registry(&db).await;
        use kubeportal::clusters::Upserted;
        let spec = input("declared", "t1").validate_new().unwrap();
        assert_eq!(registry.upsert(&spec).await.unwrap(), Upserted::Created);
        assert_eq!(registry.upsert(&spec).await.unwrap(), Upserted::Unchanged);
        let rotated = input("declared", "t2").validate_new().unwrap();
        assert_eq!(registry.upsert(&rotated).await.unwrap(), Upserted::Updated);
        assert_eq!(
            registry
                .store()
                .get("declared")
                .await
                .unwrap()
                .unwrap()
                .version,
            2
        );
    }
);

both_stores!(ping_answers, |backend| async move {
    let db = TestDb::new(backend).await;
    let registry = registry(&db).await;
    registry.store().ping().await.unwrap();
    assert_eq!(
        registry.store().kind(),
        if backend == Backend::Postgres {
            "postgres"
        } else {
            "sqlite"
        }
    );
});

both_stores!(
    values_with_nul_match_nothing_and_audit_keeps_them_readable,
    |backend| async move {
        // Postgres text cannot hold NUL; a request can still carry one (`%00`).
        let db = TestDb::new(backend).await;
        let registry = registry(&db).await;
        let store = registry.store();
        let audit = store::connect(&db.url, None).await.unwrap().audit();
        assert!(store.get("dev\0").await.unwrap().is_none());
        assert!(matches!(
            store.delete("dev\0", None).await,
            Err(StoreError::NotFound)
        ));
        let record: kubeportal::audit::AuditRecord = serde_json::from_value(serde_json::json!({
            "time": "2026-01-01T00:00:00Z",
            "kind": "registry",
            "subject": "user:default/a\0b",
            "groups": ["group:default/x\0"],
            "cluster": "dev\0",
            "method": "GET",
            "path": "/api/kubernetes/clusters/dev%00",
            "status": 404,
            "bytesIn": 0,
            "bytesOut": 0,
            "durationMs": 1,
            "decision": "allow",
        }))
        .unwrap();
        audit
            .insert_audit(&[record.try_into().unwrap()])
            .await
            .unwrap();
        let everything = kubeportal::audit::AuditFilter::default();
        let stored = audit.query_audit(&everything, None, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].record.subject, "user:default/a\u{FFFD}b");
        assert_eq!(stored[0].record.cluster.as_deref(), Some("dev\u{FFFD}"));
        assert_eq!(stored[0].record.groups, vec!["group:default/x\0"]);
        let by_nul = kubeportal::audit::AuditFilter {
            subject: Some("user:default/a\0b".into()),
            ..Default::default()
        };
        assert!(audit
            .query_audit(&by_nul, None, 10)
            .await
            .unwrap()
            .is_empty());
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("dev\0");
        assert!(registry.list(Some(&forged), None).await.is_err());
    }
);

both_stores!(
    a_ticket_is_spent_once_and_pruned_once_expired,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let sessions = store::connect(&db.url, None).await.unwrap().sessions();
        let expires = chrono::Utc::now() + chrono::Duration::seconds(30);
        assert!(sessions.spend_ticket("digest-a", expires).await.unwrap());
        assert!(!sessions.spend_ticket("digest-a", expires).await.unwrap());
        assert!(sessions.spend_ticket("digest-b", expires).await.unwrap());
        assert_eq!(sessions.prune_tickets(chrono::Utc::now()).await.unwrap(), 0);
        assert_eq!(
            sessions
                .prune_tickets(expires + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            2
        );
        // Pruned after its expiry: a digest could be spent again, but the
        // ticket it stood for is refused as expired before it is spent.
        assert!(sessions.spend_ticket("digest-a", expires).await.unwrap());
    }
);

both_stores!(
    a_recording_is_stored_in_chunks_as_it_runs_and_stops_at_its_limit,
    |backend| async move {
        use kubeportal::audit::recording::{RecordingConfig, RecordingPolicy};
        let db = TestDb::new(backend).await;
        let sessions = store::connect(&db.url, None).await.unwrap().sessions();
        let policy = RecordingPolicy::new(
            &RecordingConfig {
                max_bytes: 40 * 1024,
                ..RecordingConfig::default()
            },
            sessions.clone(),
        )
        .unwrap();
        let mut recorder = policy
            .start(
                "Dev",
                "/api/v1/namespaces/a/pods/p/exec",
                "user:default/alice",
                "websocket",
            )
            .await
            .unwrap();
        let id = recorder.name.clone();
        // The header is stored at once: a reader elsewhere sees the session.
        let (info, text) = policy.read(&id).await.unwrap().unwrap();
        assert_eq!(info.ended_at, None);
        assert_eq!(info.cluster, "Dev");
        let header: serde_json::Value =
            serde_json::from_slice(text.split(|byte| *byte == b'\n').next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        // Output is stored once 16 KiB are pending, without waiting for the end.
        let line = vec![b'x'; 1024];
        for _ in 0..20 {
            recorder.output(&line).await.unwrap();
        }
        let (info, text) = policy.read(&id).await.unwrap().unwrap();
        assert!(info.bytes >= 16 * 1024, "{info:?}");
        assert_eq!(info.bytes, text.len() as u64);
        // Past the limit the recording stops, marked truncated: the output
        // that would pass it is refused, once, and the rest is not recorded.
        let mut refused = 0;
        for _ in 0..40 {
            if let Err(error) = recorder.output(&line).await {
                assert!(error.to_string().contains("size limit"), "{error}");
                refused += 1;
            }
        }
        assert_eq!(refused, 1);
        recorder.finish().await.unwrap();
        let (info, text) = policy.read(&id).await.unwrap().unwrap();
        assert!(info.truncated && info.ended_at.is_some(), "{info:?}");
        assert!(text.len() as u64 <= 40 * 1024, "{}", text.len());
        assert_eq!(info.bytes, text.len() as u64);
        for event in text
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .skip(1)
        {
            let event: serde_json::Value = serde_json::from_slice(event).unwrap();
            assert_eq!(event[1], "o");
        }
        assert!(policy.read("no-such-recording").await.unwrap().is_none());
        // Listed newest first, paged by a cursor.
        let listed = sessions
            .list_recordings(&Default::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        assert_eq!(
            sessions
                .prune_recordings(chrono::Utc::now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            1
        );
        assert!(policy.read(&id).await.unwrap().is_none());
    }
);

// A batch is written in chunks of several sizes; every value of every row
// comes back where it was put, on both stores.
both_stores!(
    an_audit_batch_keeps_every_value_of_every_row,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let audit = store::connect(&db.url, None).await.unwrap().audit();
        let records: Vec<kubeportal::audit::AuditRecord> = (0..75)
            .map(|index: u32| {
                let odd = !index.is_multiple_of(2);
                serde_json::from_value(serde_json::json!({
                    "time": format!("2026-01-01T00:{:02}:{:02}Z", index / 60, index % 60),
                    "kind": if odd { "proxy" } else { "registry" },
                    "subject": format!("user:default/u{index}"),
                    "groups": if odd { vec![format!("group:default/g{index}"), "group:default/all".into()] } else { Vec::new() },
                    "cluster": odd.then(|| format!("c{index}")),
                    "method": if odd { "GET" } else { "POST" },
                    "path": format!("/api/v1/namespaces/n{index}/pods"),
                    "query": odd.then(|| format!("limit={index}")),
                    "status": 200 + index,
                    "bytesIn": index * 3,
                    "bytesOut": index * 7,
                    "durationMs": index * 11,
                    "decision": if odd { "allow" } else { "deny" },
                    "rule": odd.then(|| format!("rule {index}: r")),
                    "recording": index.is_multiple_of(5).then(|| format!("rec-{index}")),
                    "verb": odd.then_some("list"),
                    "impersonatedUser": index.is_multiple_of(3).then(|| format!("sa-{index}")),
                    "impersonatedGroups": if index.is_multiple_of(3) { vec![format!("ig{index}")] } else { Vec::new() },
                }))
                .unwrap()
            })
            .collect();
        audit.insert_audit(&entries(&records)).await.unwrap();
        let everything = kubeportal::audit::AuditFilter::default();
        let mut stored = audit.query_audit(&everything, None, 1000).await.unwrap();
        stored.reverse();
        assert_eq!(stored.len(), records.len());
        for (written, read) in records.iter().zip(&stored) {
            assert_eq!(
                serde_json::to_value(written).unwrap(),
                serde_json::to_value(&read.record).unwrap()
            );
        }
    }
);

// A caller's groups are shared by the records of its requests, and written
// out once for a run of records that share them: every row still keeps the
// groups of its own record, whoever came before it.
both_stores!(
    records_sharing_a_callers_groups_keep_their_own,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let audit = store::connect(&db.url, None).await.unwrap().audit();
        let groups = |names: &[&str]| -> std::sync::Arc<[String]> {
            names.iter().map(|name| name.to_string()).collect()
        };
        let first = groups(&["group:default/a", "group:default/all"]);
        let second = groups(&["group:default/b"]);
        let same_as_first = groups(&["group:default/a", "group:default/all"]);
        let none = groups(&[]);
        let callers = [
            &first,
            &first,
            &second,
            &first,
            &none,
            &none,
            &same_as_first,
            &second,
            &second,
            &first,
        ];
        let record: kubeportal::audit::AuditRecord = serde_json::from_value(serde_json::json!({
            "time": "2026-01-01T00:00:00Z",
            "kind": "proxy",
            "subject": "user:default/u",
            "groups": ["group:default/written-over"],
            "method": "GET",
            "path": "/api/v1/pods",
            "status": 200,
            "bytesIn": 0,
            "bytesOut": 0,
            "durationMs": 0,
            "decision": "allow",
        }))
        .unwrap();
        let mut batch = entries(&vec![record; callers.len()]);
        for (entry, groups) in batch.iter_mut().zip(callers) {
            entry.groups = groups.clone();
        }
        audit.insert_audit(&batch).await.unwrap();
        let everything = kubeportal::audit::AuditFilter::default();
        let mut stored = audit.query_audit(&everything, None, 100).await.unwrap();
        stored.reverse();
        let read: Vec<Vec<String>> = stored.into_iter().map(|row| row.record.groups).collect();
        let expected: Vec<Vec<String>> = callers.iter().map(|groups| groups.to_vec()).collect();
        assert_eq!(read, expected);
    }
);

// The audit trail's filters by cluster (case-insensitively, as cluster names
// are matched everywhere) and by subject search an index, not the trail.
both_stores!(
    audit_filters_by_cluster_and_subject_search_an_index,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let audit = store::connect(&db.url, None).await.unwrap().audit();
        let records: Vec<kubeportal::audit::AuditRecord> = (0..3000)
            .map(|index: u32| {
                let cluster = if index % 1000 == 7 {
                    "Rare".to_owned()
                } else {
                    format!("c{}", index % 50)
                };
                serde_json::from_value(serde_json::json!({
                    "time": "2026-01-01T00:00:00Z",
                    "kind": "proxy",
                    "subject": format!("user:default/u{}", index % 40),
                    "groups": [],
                    "cluster": cluster,
                    "method": "GET",
                    "path": "/api/v1/pods",
                    "query": null,
                    "status": 200,
                    "bytesIn": 0,
                    "bytesOut": 0,
                    "durationMs": 1,
                    "decision": "allow",
                    "rule": null,
                    "recording": null,
                    "verb": "list",
                    "impersonatedUser": null,
                    "impersonatedGroups": [],
                }))
                .unwrap()
            })
            .collect();
        audit.insert_audit(&entries(&records)).await.unwrap();
        if backend == Backend::Postgres {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("ANALYZE audit_records")
                .execute(&pool)
                .await
                .unwrap();
        }
        let by_cluster = kubeportal::audit::AuditFilter {
            cluster: Some("rARE".into()),
            ..Default::default()
        };
        let found = audit.query_audit(&by_cluster, None, 100).await.unwrap();
        assert_eq!(found.len(), 3);
        assert!(found
            .iter()
            .all(|stored| stored.record.cluster.as_deref() == Some("Rare")));
        let by_subject = kubeportal::audit::AuditFilter {
            subject: Some("user:default/u7".into()),
            ..Default::default()
        };
        for (filter, index) in [
            (by_cluster, "audit_records_cluster"),
            (by_subject, "audit_records_subject"),
        ] {
            let plan = audit.explain_audit(&filter).await.unwrap();
            assert!(
                plan.contains(index),
                "{filter:?} does not use {index}:\n{plan}"
            );
            assert!(
                !plan.contains("Seq Scan") && !plan.starts_with("SCAN"),
                "{plan}"
            );
        }
    }
);
