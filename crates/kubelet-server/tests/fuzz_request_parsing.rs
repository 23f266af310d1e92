//! A bounded fuzz run over the request path and query parsing of the 10250 API: random
//! paths built from the real endpoints and hostile pieces (`..`, encoded slashes, NULs,
//! long and non-ASCII segments), with random query parameters. The server must answer
//! every one without panicking, never with a 5xx from parsing, and never serve a log for a
//! name that is not a valid one (`kubelet_server::fuzzing`, which the coverage-guided target
//! in `fuzz/` checks too).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("containerLogs".to_string()),
        Just("exec".to_string()),
        Just("attach".to_string()),
        Just("portForward".to_string()),
        Just("stats".to_string()),
        Just("summary".to_string()),
        Just("metrics".to_string()),
        Just("pods".to_string()),
        Just("healthz".to_string()),
        Just("default".to_string()),
        Just("web".to_string()),
        Just("app".to_string()),
        Just("..".to_string()),
        Just("%2F".to_string()),
        Just("..%2F..%2Fetc".to_string()),
        Just("%00".to_string()),
        Just("%252F".to_string()),
        Just("é".to_string()),
        "[a-z0-9.-]{0,12}",
        "[ -~]{0,20}".prop_map(|s| s.replace(['?', '#', ' '], "_")),
        "a{200,300}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("tailLines"),
        Just("sinceSeconds"),
        Just("sinceTime"),
        Just("limitBytes"),
        Just("timestamps"),
        Just("previous"),
        Just("follow"),
        Just("command"),
        Just("input"),
        Just("output"),
        Just("error"),
        Just("tty"),
        Just("port"),
        Just("only_cpu_and_memory"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("1".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("2026-11-24T10:00:00Z".to_string()),
        Just("%ZZ".to_string()),
        "[a-zA-Z0-9%=&+-]{0,16}",
    ];
    prop::collection::vec((key, value), 0..5).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_path_and_query_gets_an_answer(
        segs in prop::collection::vec(segment(), 0..6),
        q in query(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        upgrade in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let path = format!("/{}", segs.join("/"));
        let uri = if q.is_empty() { path } else { format!("{path}?{q}") };
        let r = rt.block_on(kubelet_server::fuzzing::check_request(method, &uri, upgrade));
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}
