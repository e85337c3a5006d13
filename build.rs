//! Links the `modstate` binary as a position-dependent executable: a PIE of this size carries
//! some 26,000 relative relocations that the dynamic loader applies at every start, which was
//! a quarter of a one-shot `artifact get` (see BENCHMARKS.md, "A fast first byte"). Only the
//! binary: the library, tests and benches link as usual.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
