use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server process on a fixed loopback port, with a state directory that
/// outlives its restarts; killed, and the directory removed, when dropped.
pub(crate) struct ServerProcess {
    pub port: u16,
    pub dir: PathBuf,
    name: &'static str,
    child: Option<Child>,
}

impl ServerProcess {
    pub fn new(name: &'static str) -> Self {
        Self {
            port: crate::free_port(),
            dir: crate::temp_dir(name),
            name,
            child: None,
        }
    }

    /// Kills the process, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills a running copy, starts `command` and waits until it listens.
    pub fn start(&mut self, mut command: Command, timeout: Duration) {
        self.kill();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (run scripts/install.sh): {e}", self.name));
        crate::wait_for_port(self.port, &mut child, self.name, timeout);
        self.child = Some(child);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
