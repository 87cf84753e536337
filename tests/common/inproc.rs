//! ticketd inside the test's own runtime: `daemon::run(config, control)`
//! on the daemon's config, stopped by `Control::stop` and awaited. For
//! every test that does not test the process itself; signals, crashes,
//! SIGKILL, systemd notify, the installed binary and the CLI as a process
//! keep spawning the real binary ([`Daemon::spawn`]).
//!
//! The API always runs (on a unix socket in the daemon's directory unless
//! the config names a listener): readiness and progress are read there
//! (`/readyz`, the outbox), and the CLI reaches the running daemon through
//! it as it would reach the real one. There is no log file.

use std::path::Path;
use std::time::{Duration, Instant};

use ticketd::config::Config;
use ticketd::daemon::Control;
use ticketd::testkit::TestConfig;

use super::{ApiAt, Daemon, Lab, with_api};

pub struct InProcess {
    control: Control,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A test that panicked: let the tasks wind down with the runtime.
        self.control.stop();
    }
}

impl Daemon {
    /// The [`super::lab_config`] changed by `edit`, with the API on a unix
    /// socket, running in this test's runtime; returns once `/readyz`
    /// answers.
    pub async fn in_process(lab: &Lab, edit: impl FnOnce(&mut TestConfig)) -> Daemon {
        Daemon::in_process_at(lab, ApiAt::Unix, edit).await
    }

    /// [`Daemon::in_process`] with the API at `at`.
    pub async fn in_process_at(lab: &Lab, at: ApiAt, edit: impl FnOnce(&mut TestConfig)) -> Daemon {
        let mut d = Daemon::prepare_api_with(lab, at, edit);
        d.start_in_process().await;
        d
    }

    /// Starts this (prepared or stopped) daemon in the test's runtime,
    /// adding the API if the config has none; returns once `/readyz`
    /// answers (the API is bound just before the daemon reports ready).
    pub async fn start_in_process(&mut self) {
        assert!(self.inproc.is_none() && !self.running(), "ticketd is running already");
        if self.setup.api.is_none() {
            self.reconfigure(|c| with_api(c, ApiAt::Unix));
        }
        let cfg = Config::load_with_env(&self.config, Some(Default::default())).expect("the test config loads");
        let control = Control::default();
        let task = tokio::spawn(ticketd::daemon::run(cfg, control.clone()));
        self.inproc = Some(InProcess { control, task });
        let api = self.api();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = api.get("/readyz").await
                && serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|v| v.get("mailboxes").is_some())
            {
                return;
            }
            if self.inproc.as_ref().is_some_and(|p| p.task.is_finished()) {
                let mut p = self.inproc.take().unwrap();
                let ended = (&mut p.task).await;
                panic!("ticketd stopped before it was ready: {ended:?}");
            }
            assert!(Instant::now() < deadline, "ticketd in process: /readyz did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it runs in this process.
    pub fn in_process_running(&self) -> bool {
        self.inproc.as_ref().is_some_and(|p| !p.task.is_finished())
    }

    /// Stops it, whichever way it runs: in process `Control::stop`, and the
    /// run must end `Ok` within 30 s; a process gets SIGTERM and must exit 0
    /// ([`Daemon::stop_ok`]). Returns once the store is free for the CLI.
    pub async fn stop(&mut self) {
        let Some(mut p) = self.inproc.take() else {
            self.stop_ok();
            return;
        };
        p.control.stop();
        let ended = tokio::time::timeout(Duration::from_secs(30), &mut p.task)
            .await
            .expect("ticketd in process did not stop within 30 s")
            .expect("the daemon's task panicked");
        if let Err(e) = ended {
            panic!("ticketd in process stopped with an error: {e:#}");
        }
        self.wait_store_free().await;
    }

    /// Waits until nobody holds the store's lock (after a store opened by
    /// the test itself was dropped, say).
    pub async fn wait_store_free(&self) {
        wait_unlocked(&self.setup.store.path).await;
    }

    /// [`Daemon::stop`], then [`Daemon::start_in_process`].
    pub async fn restart_in_process(&mut self) {
        self.stop().await;
        self.start_in_process().await;
    }
}

/// Waits until nobody holds the lock of the store at `store` (its
/// `store.path`): sled's flusher thread lets go of it a moment after the
/// database is dropped, and whoever opens the store next must find it free.
pub async fn wait_unlocked(store: &Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(store.join("db")).expect("the store's lock file");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: flock on a descriptor we own, released at once.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return;
        }
        assert!(Instant::now() < deadline, "the store {} is still locked 10 s after the stop", store.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
