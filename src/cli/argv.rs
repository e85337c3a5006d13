//! Hides a password given in a URL on the command line (`--db postgres://u:PW@host/db`) from
//! everyone else's `ps`.
//!
//! The kernel shows a process's arguments (`/proc/PID/cmdline`, `ps`, `top`) from the
//! process's own memory, so once the arguments are parsed, modstate overwrites each password's
//! bytes in place with `x`, as the MySQL client does. Until then — the first instants of the
//! process — the password is visible; `PGPASSWORD` or a URL in `MODSTATE_DB` (the
//! environment is readable by the same user only) never shows at all.

use std::ops::Range;

/// The byte ranges of the passwords in one argument: the password of a URL's user
/// (`scheme://user:PW@host`) and the value of a `password=` parameter.
pub fn password_spans(arg: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let Some(scheme_end) = find(arg, b"://") else {
        return spans;
    };
    let start = scheme_end + 3;
    // The credentials end at an `@`, wherever it is: the client reads them up to the first
    // one, a person writing an unencoded `@` in a password means the last one. Everything up
    // to the last is hidden, so a password holding `/`, `?`, `#` or `@` never shows.
    let mut rest = start;
    if let Some(at) = arg[start..].iter().rposition(|b| *b == b'@') {
        let credentials = &arg[start..start + at];
        if let Some(colon) = credentials.iter().position(|b| *b == b':')
            && colon + 1 < at
        {
            spans.push(start + colon + 1..start + at);
        }
        rest = start + at + 1;
    }
    if let Some(query) = arg[rest..].iter().position(|b| *b == b'?') {
        let mut at = rest + query + 1;
        for pair in arg[at..].split(|b| *b == b'&') {
            let lower = pair.to_ascii_lowercase();
            if lower.starts_with(b"password=") && pair.len() > 9 {
                spans.push(at + 9..at + pair.len());
            }
            at += pair.len() + 1;
        }
    }
    spans
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Overwrites every password in this process's arguments, where the platform lets modstate
/// reach them (Linux with glibc); elsewhere it does nothing.
pub fn hide_passwords() {
    imp::hide_passwords();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::{c_char, c_int};
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    static ARGC: AtomicUsize = AtomicUsize::new(0);
    static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

    /// glibc calls the functions of `.init_array` with the process's own `argc` and `argv`
    /// (the memory the kernel shows); the standard library reads them the same way.
    #[used]
    #[unsafe(link_section = ".init_array.00099")]
    static RECORD_ARGS: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = record_args;

    extern "C" fn record_args(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
        ARGC.store(usize::try_from(argc).unwrap_or(0), Ordering::Relaxed);
        ARGV.store(argv, Ordering::Relaxed);
    }

    pub fn hide_passwords() {
        let argv = ARGV.load(Ordering::Relaxed);
        if argv.is_null() {
            return;
        }
        for i in 0..ARGC.load(Ordering::Relaxed) {
            // SAFETY: argv holds argc valid pointers to NUL-terminated strings that live for
            // the whole process (the kernel placed them on the initial stack); modstate reads
            // its arguments only through std, which copies them, and the bytes are changed in
            // place without changing any string's length.
            unsafe {
                let arg = *argv.add(i);
                if arg.is_null() {
                    continue;
                }
                let len = libc::strlen(arg);
                let bytes = std::slice::from_raw_parts_mut(arg.cast::<u8>(), len);
                for span in super::password_spans(bytes) {
                    bytes[span].fill(b'x');
                }
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn hide_passwords() {}
}

#[cfg(test)]
mod tests {
    use super::password_spans;

    fn hidden(arg: &str) -> String {
        let mut bytes = arg.as_bytes().to_vec();
        for span in password_spans(&bytes) {
            bytes[span].fill(b'x');
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn passwords_in_urls_are_overwritten_and_nothing_else() {
        assert_eq!(hidden("postgres://u:pw@h/db"), "postgres://u:xx@h/db");
        assert_eq!(
            hidden("--db=postgresql://u:s3cr@t@h:5/db?sslmode=require&password=abc"),
            "--db=postgresql://u:xxxxxx@h:5/db?sslmode=require&password=xxx"
        );
        assert_eq!(hidden("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(hidden("postgres://u:p/ss@h/db"), "postgres://u:xxxx@h/db");
        assert_eq!(hidden("postgres://u:p?w#x@h/db"), "postgres://u:xxxxx@h/db");
        assert_eq!(hidden("/tmp/a:b@c"), "/tmp/a:b@c");
        assert_eq!(hidden("--lock-timeout"), "--lock-timeout");
    }
}
