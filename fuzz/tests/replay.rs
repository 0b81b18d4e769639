//! Runs every fuzz body over its checked-in corpus (`corpus/<target>/`):
//! the regression tests of what fuzzing found, on stable Rust, part of
//! `scripts/test.sh`.

use std::path::Path;

#[test]
fn corpus_replays_without_a_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0usize;
    for (name, body) in podnet_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {name} at {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "empty corpus for {name}");
        for f in files {
            let data = std::fs::read(&f).expect("corpus file");
            let res = std::panic::catch_unwind(|| body(&data));
            assert!(res.is_ok(), "{name}: {} fails", f.display());
            total += 1;
        }
    }
    assert!(total > 0);
}
