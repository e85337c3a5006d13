//! Where modstate keeps a user's data when nobody names a place: the XDG base-directory rules
//! on Linux and the BSDs (`$XDG_DATA_HOME`, which must be absolute, else `~/.local/share`),
//! `~/Library/Application Support` on macOS — as tools of this kind do.

use std::path::PathBuf;

/// `<the user's data directory>/modstate`; `None` when HOME is not set (and, on Linux, no
/// absolute `XDG_DATA_HOME` either).
pub fn data_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let data = if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library/Application Support"))
    } else {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| home.map(|h| h.join(".local/share")))
    };
    data.map(|d| d.join("modstate"))
}
