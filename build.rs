//! Links the `modstate` binary statically and position-dependent, when the C toolchain has
//! the static C libraries (Debian's libc6-dev does): a one-shot `artifact get` then starts with
//! no dynamic loader at all — no libc, libm and libgcc_s to map, no symbols to bind — and no
//! relocations to apply (a PIE of this size carries some 26,000). That is more than half of
//! what the process costs beyond `cat` (BENCHMARKS.md, "A fast first byte"). Only the binary:
//! the library, tests and benches link as usual.
//!
//! rustc links the binary with `-Bdynamic -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc`, and a
//! static C runtime (`-C target-feature=+crt-static`) cannot be asked for from here, nor from
//! `.cargo/config.toml` without `--target` (it would reach the proc macros). But the linker
//! looks for `-lNAME` directory by directory, and takes a `libNAME.a` it finds before any
//! `libNAME.so` in a later directory: so a directory of `libNAME.a` files naming the static
//! archives, searched first, plus `-static -no-pie`, gives the same executable `+crt-static`
//! does (libgcc_s's unwinder comes from its static twin, libgcc_eh). Without those archives,
//! when cross compiling, or with `MODSTATE_LINK_DYNAMIC` set, the binary is linked
//! dynamically, still without PIE.
//!
//! A static glibc still reads /etc/nsswitch.conf: `files` and `dns` are built in, and other
//! modules (`systemd`, `sss`, …) are loaded from the glibc the binary runs on, which must be
//! the one it was built with — true of `cargo install` on the machine that runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries rustc names for std and the libc crate on linux-gnu, in its order, each with
/// the archives that stand for it. `gcc_s` (the unwinder) is `libgcc_eh.a`; `c` is a group
/// with libgcc, which the static libc needs (`__gcc_personality_v0`, the `__multf3` family),
/// so that a linker that reads archives once, in order (GNU ld), finds them too (lld does not
/// mind the order).
const LIBS: [(&str, &[&str]); 7] = [
    ("gcc_s", &["libgcc_eh.a"]),
    ("util", &["libutil.a"]),
    ("rt", &["librt.a"]),
    ("pthread", &["libpthread.a"]),
    ("m", &["libm.a"]),
    ("dl", &["libdl.a"]),
    ("c", &["libc.a", "libgcc.a", "libgcc_eh.a"]),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MODSTATE_LINK_DYNAMIC");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let target = env("TARGET");
    if !target.contains("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let native = target == env("HOST") && target.ends_with("-linux-gnu");
    if !native || std::env::var_os("MODSTATE_LINK_DYNAMIC").is_some() {
        return;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let Some(dir) = static_lib_dir(&linker, &PathBuf::from(env("OUT_DIR"))) else {
        println!(
            "cargo:warning=no static C libraries (libc.a, libgcc.a, libgcc_eh.a) found by {linker}: the modstate binary is linked dynamically, so each process starts slower (Debian: install libc6-dev)"
        );
        return;
    };
    // A search path for the binary alone (`rustc-link-search` would reach the test
    // executables, which must keep the shared libraries); the linker applies `-L` to every
    // `-l`, wherever it stands.
    println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bins=-static");
}

/// `OUT_DIR/static-libs`, holding a `libNAME.a` for every library in [`LIBS`]: a linker script
/// naming its archives (GNU ld and lld both read a script where they expect an archive), or
/// `None` when the toolchain lacks one of them.
fn static_lib_dir(linker: &str, out_dir: &Path) -> Option<PathBuf> {
    let dir = out_dir.join("static-libs");
    std::fs::create_dir_all(&dir).ok()?;
    for (name, archives) in LIBS {
        let paths = archives
            .iter()
            .map(|archive| find_archive(linker, archive))
            .collect::<Option<Vec<_>>>()?;
        let names: Vec<String> = paths
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        let script = format!("GROUP ( {} )\n", names.join(" "));
        // Replace the file, never write through it: an older build left links to the
        // toolchain's own archives here.
        let path = dir.join(format!("lib{name}.a"));
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, script).ok()?;
    }
    Some(dir)
}

/// Where the C toolchain keeps `archive`, if it has it.
fn find_archive(linker: &str, archive: &str) -> Option<PathBuf> {
    let found = Command::new(linker)
        .arg(format!("-print-file-name={archive}"))
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let path = PathBuf::from(String::from_utf8(found.stdout).ok()?.trim());
    // A toolchain without the file prints its bare name back.
    (path.is_absolute() && path.is_file()).then_some(path)
}
