//! Running a user's command while modstate holds a lock for it (`lock run`, the compute command
//! of `artifact resolve`).
//!
//! The promise: a lock is never released while the work it guards still runs. So SIGINT,
//! SIGTERM and SIGHUP sent to modstate are forwarded to the command's process group, and
//! modstate keeps its locks until the command has exited. The command runs in a process group
//! of its own, so the forwarded signal reaches everything it started; when modstate owns the
//! terminal, the terminal is handed to that group (as a shell does), so Ctrl-C and job control
//! reach the command directly. If modstate itself is SIGKILLed, the kernel kills the command
//! too (`PR_SET_PDEATHSIG`), so the lock, released by the kernel at once, guards nothing still
//! running.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

/// The signals forwarded to the command.
const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Where the guarded work stands, as the signal thread sees it.
#[derive(Clone, Copy)]
enum Phase {
    /// No command yet (waiting for a lock): a signal ends modstate at once; the kernel releases
    /// whatever it held, and nothing guarded has started.
    Before,
    /// The command runs in process group `pgid`: signals go to it.
    Running { pgid: libc::pid_t },
    /// The command has exited: modstate is finishing (storing a result, releasing locks).
    After,
}

/// Receives SIGINT, SIGTERM and SIGHUP for the whole process from the moment it is installed.
pub struct SignalForwarder {
    phase: Arc<Mutex<Phase>>,
}

impl SignalForwarder {
    /// Blocks the forwarded signals in this thread, and so in every thread started after it,
    /// and starts the one thread that receives them. Install before anything else starts a
    /// thread (the lock waiter, the read pool), or a signal could reach a thread that does not
    /// block it and end the process the default way.
    pub fn install() -> io::Result<SignalForwarder> {
        let set = forwarded_set()?;
        // SAFETY: `set` is an initialised signal set; pthread_sigmask only reads it.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let phase = Arc::new(Mutex::new(Phase::Before));
        let seen = Arc::clone(&phase);
        std::thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || receive_signals(set, &seen))?;
        Ok(SignalForwarder { phase })
    }

    /// Spawns `cmd` in a process group of its own, killed if modstate dies, with the terminal
    /// handed to it when modstate has it. Signals are forwarded to it until [`Self::finished`].
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        // Hold the phase while spawning, so a signal arriving now waits for the pgid instead of
        // ending modstate with the command just started.
        let mut phase = lock(&self.phase);
        let parent = std::process::id() as libc::pid_t;
        let hand_terminal = owns_terminal();
        let set = forwarded_set()?;
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (sigprocmask, setpgid, prctl, getppid, raise, signal,
        // tcsetpgrp, getpid).
        unsafe {
            cmd.pre_exec(move || {
                // The command starts with the signals modstate blocked for itself unblocked.
                if libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Die with modstate: the lock it held is gone, so must the work.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::raise(libc::SIGKILL);
                }
                if hand_terminal {
                    // A background group that sets the foreground gets SIGTTOU unless it
                    // ignores it for the call.
                    libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                    libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
                    libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        *phase = Phase::Running {
            pgid: child.id() as libc::pid_t,
        };
        Ok(child)
    }

    /// A handle that stops the running command from another thread (a lost lock's callback).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            phase: Arc::clone(&self.phase),
        }
    }

    /// The command has exited: stop forwarding and take the terminal back if it was handed
    /// over. A signal from now on is ignored: what it would stop has already ended.
    pub fn finished(&self) {
        let mut phase = lock(&self.phase);
        if let Phase::Running { pgid } = *phase {
            // SAFETY: plain libc calls on our own stdin; SIGTTOU is ignored around tcsetpgrp
            // because modstate is a background group at this point.
            unsafe {
                if libc::isatty(libc::STDIN_FILENO) == 1
                    && libc::tcgetpgrp(libc::STDIN_FILENO) == pgid
                {
                    let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                    libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
                    libc::signal(libc::SIGTTOU, old);
                }
            }
        }
        *phase = Phase::After;
    }
}

/// How long a command stopped for a lost lock has between SIGTERM and SIGKILL. With the
/// heartbeat's 5 s to notice, it keeps the stop inside the 10 s lease (GUIDE.md, "lock-delay").
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Stops the running command: see [`SignalForwarder::stopper`].
#[derive(Clone)]
pub struct Stopper {
    phase: Arc<Mutex<Phase>>,
}

impl Stopper {
    /// Sends SIGTERM to the command's process group, and SIGKILL [`STOP_GRACE`] later if the
    /// command is still running then; nothing if it has already exited.
    pub fn stop(&self) {
        let Phase::Running { pgid } = *lock(&self.phase) else {
            return;
        };
        // SAFETY: kill with a negative pid signals the command's process group.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let phase = Arc::clone(&self.phase);
        let _ = std::thread::Builder::new()
            .name("stop-grace".to_owned())
            .spawn(move || {
                std::thread::sleep(STOP_GRACE);
                // Held while signalling: `finished` cannot run (and the group's id be reused)
                // in between.
                let current = lock(&phase);
                if let Phase::Running { pgid: still } = *current
                    && still == pgid
                {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(-pgid, libc::SIGKILL);
                    }
                }
            });
    }
}

/// The exit code for a spawn failure, as `env`, `timeout` and shells use: 127 when the command
/// was not found, 126 when it was found but could not be executed.
pub fn spawn_failure_code(error: &io::Error) -> i32 {
    if error.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

fn receive_signals(set: libc::sigset_t, phase: &Mutex<Phase>) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is initialised and blocked in every thread; sigwait writes `sig`.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        let current = *lock(phase);
        match current {
            Phase::Before => std::process::exit(128 + sig),
            // SAFETY: kill with a negative pid signals the command's process group.
            Phase::Running { pgid } => unsafe {
                libc::kill(-pgid, sig);
            },
            Phase::After => {}
        }
    }
}

fn forwarded_set() -> io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set before sigaddset touches it.
    unsafe {
        if libc::sigemptyset(set.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for sig in FORWARDED {
            if libc::sigaddset(set.as_mut_ptr(), sig) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(set.assume_init())
    }
}

/// Whether modstate's process group is the foreground of the terminal on stdin.
fn owns_terminal() -> bool {
    // SAFETY: plain queries on our own stdin.
    unsafe {
        libc::isatty(libc::STDIN_FILENO) == 1
            && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    }
}

/// The phase survives a panic elsewhere: it is a plain value, never left half-updated.
fn lock(phase: &Mutex<Phase>) -> std::sync::MutexGuard<'_, Phase> {
    phase
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
