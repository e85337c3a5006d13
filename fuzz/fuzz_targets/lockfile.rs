//! The dagger.lock parser on arbitrary bytes: never panics, and whatever it accepts rewrites
//! to Dagger's bytes, which parse again to the same lockfile and the same bytes, with nothing
//! left to collapse or drop.
//!
//! Seeds: the real lockfiles in `fixtures/dagger-lock/` (see README.md, "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;
use modstate::lockfile::Lockfile;

fuzz_target!(|data: &[u8]| {
    let Ok(lockfile) = Lockfile::parse(data, "fuzz.lock") else {
        return;
    };
    let text = lockfile.to_text();
    let again = Lockfile::parse(text.as_bytes(), "fuzz.lock").expect("canonical text parses");
    assert_eq!(again.to_text(), text, "rewrite is not stable");
    assert_eq!(again, lockfile, "rewrite changed the lockfile");
    assert!(again.notices().is_empty(), "a rewrite left duplicates or policies");
    assert!(!text.ends_with('\n') || !lockfile.comments().is_empty() && lockfile.is_empty());
});
