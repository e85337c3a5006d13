//! The artifact file reader on arbitrary bytes: never panics, never answers `missing` (that
//! is for absent files), and a `loaded` answer holds a usable envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modstate::Digest;
use modstate::artifact::file::{Outcome, parse_artifact_file};

/// The digest `fixtures/moduletypes/valid.json` is for, so seeds from the fixtures can load.
const EXPECTED: &str = "sha256:721e3d1485011d4fe4bb939e608c6036d91442db94818655bd6ee65f29af63f6";

fuzz_target!(|data: &[u8]| {
    let expected = Digest::parse(EXPECTED).unwrap();
    match parse_artifact_file(data, &expected) {
        Outcome::Missing => panic!("parse_artifact_file answered missing for bytes"),
        Outcome::Loaded(envelope) => {
            assert_eq!(envelope.state_type(), "Module");
            assert_eq!(envelope.state_version(), 1);
            envelope.to_value().expect("a loaded envelope is JSON");
        }
        Outcome::Stale { found } => {
            let found = Digest::parse(&found).expect("stale names a valid digest");
            assert_ne!(found, expected);
        }
        Outcome::Malformed(reason) | Outcome::Unsupported(reason) => assert!(!reason.is_empty()),
    }
});
