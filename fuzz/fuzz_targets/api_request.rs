//! The 10250 API's request parsing under libFuzzer: the first byte picks the method and
//! whether the request asks for an upgrade, the rest is the request target (path and query).
//! The property is `kubelet_server::fuzzing::check_request`'s.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(rest) else {
        return;
    };
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(flags & 3)];
    let upgrade = flags & 4 != 0;
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    if let Err(e) = rt.block_on(kubelet_server::fuzzing::check_request(
        method, target, upgrade,
    )) {
        panic!("{e}");
    }
});
