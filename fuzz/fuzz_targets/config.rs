//! The configuration loader on arbitrary text: never a panic; a refusal always names at least
//! one problem. (Keys that name files are left out: reading them is the filesystem's part.)
#![no_main]

use gateway_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Keys naming files are read at load: the fuzzer must not make it read /dev/zero.
    if text.contains("_file") {
        return;
    }
    if let Err(problems) = Config::from_toml(text, &[]) {
        assert!(!problems.is_empty());
    }
});
