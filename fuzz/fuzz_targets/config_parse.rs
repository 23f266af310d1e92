//! KubeletConfiguration parsing under libFuzzer: any bytes give a configuration or an error
//! naming what is wrong, never a panic; what parses also validates without one.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = kubelet_config::parse("fuzz.yaml", text) {
        let _ = kubelet_config::validate(&loaded.config);
        let _ = loaded.config.container_log_max_bytes();
        let _ = loaded.config.eviction_hard();
    }
});
