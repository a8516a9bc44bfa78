//! The fuzz target's corpus (`ring/fuzz/corpus/read_ring`), replayed on stable Rust, plus a
//! bounded batch of pseudo-random edit lists through the same entry point. Nothing may panic.

use std::path::Path;

#[test]
fn the_checked_in_corpus_reads_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read_ring");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory") {
        let p = e.unwrap().path();
        jvmwatch_ring::fuzzing::check_edited_ring(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n >= 9, "corpus has {n} inputs");
}

#[test]
fn two_thousand_random_edit_lists_read_without_panics() {
    let mut seed = 0x0123_4567_89ab_cdefu64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let len = (next() % 400) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if input.len() >= 4 && next() % 2 == 0 {
            input[..4].copy_from_slice(&u32::MAX.to_le_bytes()); // keep the whole file
        }
        jvmwatch_ring::fuzzing::check_edited_ring(&input);
    }
}
