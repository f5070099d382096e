//! A child process in a process group of its own, ended with the whole
//! group when dropped: the fleet never leaves a replica, a gateway or
//! anything they started behind, whichever way the launcher ends (return,
//! error, panic, Ctrl-C, SIGTERM).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a group has to end after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

pub struct GroupChild {
    /// What the fleet calls it in messages (`replica 1`, `gateway`).
    pub name: String,
    child: Child,
    ended: bool,
}

impl GroupChild {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<GroupChild> {
        command.process_group(0);
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command.spawn().map_err(|e| anyhow::anyhow!("cannot start the {name} ({program}): {e}"))?;
        Ok(GroupChild { name: name.to_string(), child, ended: false })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has ended (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Ends the whole group: SIGTERM, then SIGKILL after the grace period;
    /// reaps the leader. Safe to call twice.
    pub fn stop(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() && !group_alive(group) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }

    /// Kills the whole group at once (SIGKILL, no grace) and reaps the
    /// leader: a replica's crash, on purpose (`lab --fleet
    /// --kill-replica-after`).
    pub fn kill_now(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// Whether any process of the group is left (signal 0 probes, sends nothing).
fn group_alive(group: rustix::process::Pid) -> bool {
    rustix::process::test_kill_process_group(group).is_ok()
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop();
    }
}
