//! Starts endpoint servers so that they die with pagefork: a Postgres whose pagefork is
//! gone serves a dead mount, and would hold its port and its clients until it noticed.
//!
//! Linux sends `PR_SET_PDEATHSIG`'s signal when the *thread* that forked the child exits,
//! not the process: a server forked on one of the async runtime's blocking threads would
//! be killed when that thread retires after an idle spell. So every server is forked by
//! one thread that lives as long as the process, fed through a crossbeam channel.

use std::process::{Child, Command};
use std::sync::LazyLock;

use crossbeam::channel::{Sender, bounded, unbounded};

/// A command to start, whether it asks for its death signal itself, and where to send the
/// child (or why not).
type Job = (Command, bool, Sender<std::io::Result<Child>>);

static SPAWNER: LazyLock<Option<Sender<Job>>> = LazyLock::new(|| {
    let (jobs, queue) = unbounded::<Job>();
    std::thread::Builder::new()
        .name("endpoint spawner".to_owned())
        .spawn(move || {
            for (mut command, dies_with_parent, reply) in queue {
                let child = match dies_with_parent {
                    true => command.spawn(),
                    false => spawn_dying_with_parent(&mut command),
                };
                let _ = reply.send(child);
            }
        })
        .ok()
        .map(|_| jobs)
});

/// Starts `command` so that it gets SIGKILL when this process ends: `dies_with_parent`
/// says the command asks for that itself (`setpriv --pdeathsig`, which a `posix_spawn`
/// can start without copying this process's page tables); otherwise the child asks
/// between fork and exec.
pub(crate) fn spawn(command: Command, dies_with_parent: bool) -> std::io::Result<Child> {
    let unavailable = || std::io::Error::other("the endpoint spawner thread is not running");
    let jobs = SPAWNER.as_ref().ok_or_else(unavailable)?;
    let (reply, answer) = bounded(1);
    jobs.send((command, dies_with_parent, reply))
        .map_err(|_| unavailable())?;
    answer.recv().map_err(|_| unavailable())?
}

fn spawn_dying_with_parent(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: prctl(2) and getppid(2) are, and nothing here
    // allocates or takes a lock.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The parent may have died before the request was in place: then the spawn
            // fails (the error is a plain code, nothing allocated).
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}
