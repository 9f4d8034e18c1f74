//! The fuzz targets' short run on stable (CI): every file of the committed corpora
//! (`fuzz/corpus/<target>`) and crash regressions (`fuzz/regressions/<target>`), then
//! deterministic pseudo-random inputs, through the same harness functions the cargo-fuzz targets
//! call (`receptionist::testing::fuzz`). Not a fuzzer (no coverage feedback): it keeps what the
//! long runs (`scripts/fuzz`) found fixed and the harnesses compiling and passing.

use std::path::Path;

use receptionist::testing::fuzz;

/// Runs `harness` on every file under `fuzz/<kind>/<target>` (there may be none); returns how many.
fn replay(kind: &str, target: &str, harness: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries.map(|e| e.expect("corpus entry").path()).collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("corpus file");
        let name = f.display().to_string();
        if std::panic::catch_unwind(|| harness(&data)).is_err() {
            panic!("{name} fails (replay it with `cargo +nightly fuzz run {target} {name}`)");
        }
    }
    files.len()
}

/// `count` inputs of 0..`max_len` bytes from a fixed seed (SplitMix64), a few of them made of
/// text-like bytes.
fn pseudo_random(target: &str, count: usize, max_len: usize, harness: fn(&[u8])) {
    let mut state: u64 = 0x5EED_F022 ^ target.len() as u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    const TEXTY: &[u8] = b"{}[]\":,event media start mark dtmf stop payload name 0123456789 =&%+/";
    for i in 0..count {
        let len = (next() as usize) % max_len;
        let texty = i % 4 == 0;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if texty {
                    TEXTY[r as usize % TEXTY.len()]
                } else {
                    r as u8
                }
            })
            .collect();
        if std::panic::catch_unwind(|| harness(&data)).is_err() {
            panic!("{target}: pseudo-random input {i} fails: {data:?}");
        }
    }
}

fn run(target: &str, count: usize, max_len: usize, harness: fn(&[u8])) {
    let corpus = replay("corpus", target, harness);
    let regressions = replay("regressions", target, harness);
    pseudo_random(target, count, max_len, harness);
    eprintln!("{target}: {corpus} corpus files, {regressions} regressions, {count} pseudo-random");
}

#[test]
fn twilio_message() {
    run("twilio_message", 5_000, 600, fuzz::twilio_message);
}

#[test]
fn webhook_form() {
    run("webhook_form", 3_000, 400, fuzz::webhook_form);
}

#[test]
fn wav_repair() {
    run("wav_repair", 1_000, 400, fuzz::wav_repair);
}

#[test]
fn engine() {
    run("engine", 1_000, 2_000, fuzz::engine);
}
