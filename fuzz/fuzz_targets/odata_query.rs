//! Feeds arbitrary UTF-8 to the OData parsers. Any panic, stack overflow or
//! timeout is a bug: every input must end in `Ok` or an `ODataError`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_contract::odata::{parse_filter, ODataQuery};

fuzz_target!(|data: &[u8]| {
    // Both entry points take `&str`; non-UTF-8 bytes cannot reach them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_filter(text);
    let _ = ODataQuery::parse(text);
});
