//! Edits to a valid ring, then every read: see `jvmwatch_ring::fuzzing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jvmwatch_ring::fuzzing::check_edited_ring(data));
