//! The facade: `durable::connect` dispatches on the URL scheme, names the missing feature
//! when a backend is not compiled in, and never shows a password.

use durable::{DurableDict, Error};

#[tokio::test]
async fn memory_urls_connect_and_share_one_named_store() {
    let ns = durable_core::conformance::unique_namespace("facade");
    let a = DurableDict::<String>::builder(durable::connect("memory://facade-shared", &ns).await.unwrap())
        .hints(false)
        .build()
        .await
        .unwrap();
    let b = DurableDict::<String>::builder(durable::connect("memory://facade-shared", &ns).await.unwrap())
        .hints(false)
        .build()
        .await
        .unwrap();
    let other = DurableDict::<String>::builder(durable::connect("memory://facade-other", &ns).await.unwrap())
        .hints(false)
        .build()
        .await
        .unwrap();
    a.insert("greeting", "hello".to_owned()).await.unwrap();
    assert_eq!(b.get("greeting").await.as_deref().map(String::as_str), Some("hello"));
    assert_eq!(other.get("greeting").await, None, "another named store is another store");
}

#[tokio::test]
async fn unknown_schemes_and_missing_schemes_are_invalid_urls() {
    for url in ["ftp://x/y", "just-a-path.db"] {
        match durable::connect(url, "ns").await {
            Err(Error::InvalidUrl { .. }) => {}
            Err(other) => panic!("{url}: expected InvalidUrl, got {other}"),
            Ok(_) => panic!("{url}: connected"),
        }
    }
}

#[tokio::test]
async fn empty_namespaces_are_refused() {
    let err = durable::connect("memory://", "").await.err().expect("refused");
    assert!(matches!(err, Error::InvalidNamespace { .. }), "{err}");
}

/// Each scheme whose feature is off says which feature to enable; with the feature on, the
/// error (if any) is never "feature disabled".
#[tokio::test]
async fn schemes_name_their_feature() {
    let sqlite = format!("sqlite://{}/facade-features.db", env!("CARGO_TARGET_TMPDIR"));
    let localfs = format!("file://{}/facade-features", env!("CARGO_TARGET_TMPDIR"));
    let cases = [
        (sqlite.as_str(), "sqlite", cfg!(feature = "sqlite")),
        ("postgres://u:pw@127.0.0.1/db", "postgres", cfg!(feature = "postgres")),
        ("postgresql://127.0.0.1/db", "postgres", cfg!(feature = "postgres")),
        ("mysql://root@127.0.0.1/test", "mysql", cfg!(feature = "mysql")),
        ("mariadb://root@127.0.0.1/test", "mysql", cfg!(feature = "mysql")),
        ("redis://:pw@127.0.0.1:1/", "redis", cfg!(feature = "redis")),
        ("rediss://127.0.0.1:1/", "redis", cfg!(feature = "redis")),
        ("zk://127.0.0.1:1/durable", "zookeeper", cfg!(feature = "zookeeper")),
        ("s3://b/p?endpoint=http://127.0.0.1:1&allow_http=true&region=x", "s3", cfg!(feature = "s3")),
        ("az://c/p?endpoint=http://127.0.0.1:1&allow_http=true&account_name=a", "azure", cfg!(feature = "azure")),
        ("azure://c/p?use_emulator=true&endpoint=http://127.0.0.1:1", "azure", cfg!(feature = "azure")),
        (&localfs, "localfs", cfg!(feature = "localfs")),
    ];
    for (url, feature, enabled) in cases {
        let result = durable::connect(url, "ns").await;
        match (enabled, result) {
            (false, Err(err @ Error::FeatureDisabled { .. })) => {
                assert!(err.to_string().contains(&format!("`{feature}` feature")), "{err}");
            }
            (false, other) => panic!("{url}: expected FeatureDisabled, got {:?}", other.err()),
            (true, Err(Error::FeatureDisabled { .. })) => panic!("{url}: feature {feature} is on"),
            (true, _) => {}
        }
    }
}

#[tokio::test]
async fn errors_never_show_passwords() {
    for url in ["redis://:hunter2@127.0.0.1:1/", "postgres://app:hunter2@127.0.0.1:1/db", "ftp://u:hunter2@h/"] {
        if let Err(err) = durable::connect(url, "ns").await {
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_urls_connect_through_the_facade() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("facade-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let ns = durable_core::conformance::unique_namespace("facade-sqlite");
    let a = DurableDict::<String>::builder(durable::connect(&url, &ns).await.unwrap()).build().await.unwrap();
    let b = DurableDict::<String>::builder(durable::connect(&url, &ns).await.unwrap()).build().await.unwrap();
    a.insert("k", "v".to_owned()).await.unwrap();
    assert_eq!(b.get("k").await.as_deref().map(String::as_str), Some("v"));
    assert_eq!(a.backend().name(), "sqlite");
}

/// `file:///dir` keeps a namespace in a local directory: two dicts on one directory share it.
#[cfg(feature = "localfs")]
#[tokio::test]
async fn file_urls_connect_through_the_facade() {
    let url = format!("file://{}/facade-localfs", env!("CARGO_TARGET_TMPDIR"));
    let ns = durable_core::conformance::unique_namespace("facade-localfs");
    let a = DurableDict::<String>::builder(durable::connect(&url, &ns).await.unwrap()).build().await.unwrap();
    let b = DurableDict::<String>::builder(durable::connect(&url, &ns).await.unwrap()).build().await.unwrap();
    a.insert("k", "v".to_owned()).await.unwrap();
    assert_eq!(b.get("k").await.as_deref().map(String::as_str), Some("v"));
    assert_eq!(a.backend().name(), "localfs");
}

#[tokio::test]
async fn connect_lazy_checks_the_url_now_and_connects_on_first_use() {
    assert!(matches!(durable::connect_lazy("nosuch://x", "ns"), Err(Error::InvalidUrl { .. })));
    assert!(matches!(durable::connect_lazy("memory://", ""), Err(Error::InvalidNamespace { .. })));
    let ns = durable_core::conformance::unique_namespace("lazy");
    let lazy = durable::connect_lazy("memory://facade-lazy", &ns).unwrap();
    let dict = DurableDict::<i32>::builder(lazy).build().await.unwrap();
    dict.insert("n", 1).await.unwrap();
    assert_eq!(dict.backend().name(), "memory");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_lazy_backend_on_a_store_that_is_down_fails_the_build_without_a_backup_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let lazy = durable::connect_lazy(&format!("redis://:secret@127.0.0.1:{port}/"), "ns").unwrap();
    let err = DurableDict::<i32>::builder(lazy).build().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(!format!("{err} {err:?}").contains("secret"));
}
