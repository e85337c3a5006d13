//! Helpers shared by the integration tests that spawn the `modstate` binary.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

/// Limits the child's file size to `bytes` (RLIMIT_FSIZE, a disk-full stand-in) with SIGXFSZ
/// ignored, so a write past the limit fails with EFBIG instead of killing the process.
#[allow(dead_code)] // not every test file that includes this module injects faults
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: signal and setrlimit are async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let rl = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs `cmd` with `stdin` as its standard input and collects its output. A command may exit
/// before reading all of its input (a bad argument, say); that is not an error here.
#[allow(dead_code)]
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn modstate");
    let mut input = child.stdin.take().expect("piped stdin");
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for modstate")
}

/// Runs `cmd` as the unprivileged user `nobody` when the tests run as root (as CI does), where
/// file permissions would not bind otherwise; as the current user elsewhere.
#[allow(dead_code)]
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cmd;
    }
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A finished command's stdout, as text.
#[allow(dead_code)]
pub fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's stderr, as text.
#[allow(dead_code)]
pub fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A finished command's exit code (-1 when a signal ended it).
#[allow(dead_code)]
pub fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}
