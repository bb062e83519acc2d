//! The kill switches: `wasmonkey pause` sets one, `wasmonkey resume` clears
//! it, and every run, daemon and scrape honours every switch in force for
//! it, wherever its config points: while one is set no run starts, and a
//! running one stops as under a stop condition.
//!
//! The switches in force ([`Switches`]) are, in order:
//! - the host's, in a directory every user reads (`/var/lib/wasmonkey`,
//!   or `WASMONKEY_HOST_STATE_DIR`), settable by root or a group;
//! - the operator's, in their default state directory;
//! - the config's, when its `state_dir` is another directory;
//! - on AWS, the account-and-region's, an SSM parameter every operator of
//!   the account sees (`cloud::aws`).
//!
//! A switch is state the host reads back, so it is checked as the
//! compiled-code cache is: the directory's owner and mode, and a switch
//! file that must be a regular file of bounded size, opened without
//! following a link and without blocking. A switch that cannot be read,
//! or whose directory others could have written, counts as **set**, with
//! the reason; `resume` can always clear it.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::files::{self, FileProblem};
use crate::names::named;

/// The largest switch file read; a pause is a few hundred bytes.
pub(crate) const MAX_SWITCH_BYTES: u64 = 64 * 1024;

/// The file name of a switch in its directory.
const SWITCH_FILE: &str = "paused.json";

/// The host-wide state directory, unless `WASMONKEY_HOST_STATE_DIR` names
/// another (absolute) one.
pub const HOST_STATE_DIR: &str = "/var/lib/wasmonkey";

/// Why and since when a switch is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// What the operator said when pausing, shown by every refused run.
    pub reason: String,
    /// When, in RFC 3339 (UTC).
    pub since: String,
    /// The user who set it.
    pub by: String,
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "paused by {} since {}", self.by, self.since)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

impl Pause {
    /// A pause the operator sets now.
    pub(crate) fn now(reason: &str) -> Pause {
        Pause {
            reason: reason.to_owned(),
            since: now_rfc3339(),
            by: user(),
        }
    }

    /// The pause a switch that cannot be trusted stands for: set, saying why.
    pub(crate) fn unreadable(location: &str, why: &str) -> Pause {
        Pause {
            reason: format!(
                "the kill switch {location} cannot be trusted ({why}); counted as set until `wasmonkey resume` clears it"
            ),
            since: now_rfc3339(),
            by: "wasmonkey".into(),
        }
    }
}

named! {
    /// Whose switch it is.
    SwitchScope {
        /// Every wasmonkey process of this machine.
        Host = "host",
        /// The operator's own, in their default state directory.
        Operator = "operator",
        /// The `state_dir` a config names.
        StateDir = "state-dir",
        /// Every operator of an AWS account and region.
        Account = "account",
        /// Every host whose config names the same shared state (`state`).
        Shared = "shared",
    }
}

/// Where a switch is kept.
#[async_trait::async_trait]
pub trait Switch: Send + Sync {
    /// The pause in force, if any. A switch that cannot be read answers a
    /// pause that says why.
    async fn paused(&self) -> Option<Pause>;

    /// Set the switch.
    async fn pause(&self, reason: &str) -> anyhow::Result<Pause>;

    /// Clear the switch; the pause it cleared, if it was set.
    async fn resume(&self) -> anyhow::Result<Option<Pause>>;

    /// Whose it is.
    fn scope(&self) -> SwitchScope;

    /// Where it is, for messages.
    fn location(&self) -> String;

    /// Whether reading it costs a call to a remote service (and so is
    /// read less often while a plugin computes).
    fn remote(&self) -> bool {
        false
    }
}

/// The switch as a file, `paused.json`, in a state directory.
#[derive(Debug, Clone)]
pub struct FileSwitch {
    dir: PathBuf,
    scope: SwitchScope,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown time".into())
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", euid()))
}

/// The effective user id: who owns what this process creates.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The host-wide state directory.
pub fn host_state_dir() -> PathBuf {
    std::env::var_os("WASMONKEY_HOST_STATE_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(HOST_STATE_DIR))
}

impl FileSwitch {
    /// The switch of the state directory `dir`.
    pub fn new(dir: &Path) -> FileSwitch {
        FileSwitch::with_scope(dir, SwitchScope::StateDir)
    }

    /// The switch of `dir`, standing for `scope`.
    pub fn with_scope(dir: &Path, scope: SwitchScope) -> FileSwitch {
        FileSwitch {
            dir: dir.to_owned(),
            scope,
        }
    }

    /// The host-wide switch.
    pub fn host() -> FileSwitch {
        FileSwitch::with_scope(&host_state_dir(), SwitchScope::Host)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(SWITCH_FILE)
    }

    /// The owner and mode a trusted directory of this switch has: owned by
    /// this user (or, for the host's, by root), and writable by nobody else
    /// (the host's may be writable by its group: the operators who may
    /// pause). `Ok` also when there is no directory: then there is no
    /// switch either.
    fn trusted_dir(&self) -> Result<(), String> {
        let metadata = match std::fs::metadata(&self.dir) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(format!("its directory cannot be examined: {err}")),
        };
        if !metadata.is_dir() {
            return Err(format!(
                "{} is {}, not a directory",
                self.dir.display(),
                files::kind(&metadata)
            ));
        }
        let me = euid();
        let owner = metadata.uid();
        let host = self.scope == SwitchScope::Host;
        if owner != me && !(host && owner == 0) {
            return Err(format!(
                "its directory {} is owned by uid {owner}, not by this user (uid {me}){}",
                self.dir.display(),
                if host { " or root" } else { "" }
            ));
        }
        let mode = metadata.mode() & 0o7777;
        let group_writable = mode & 0o020 != 0 && !host;
        if mode & 0o002 != 0 || group_writable {
            return Err(format!(
                "its directory {} has mode {mode:04o}: others can write it",
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// The pause in force, if any: read without following a link and
    /// without blocking, and only from a trusted directory.
    pub fn paused(&self) -> Option<Pause> {
        let path = self.path();
        let location = path.display().to_string();
        if let Err(why) = self.trusted_dir() {
            return Some(Pause::unreadable(&location, &why));
        }
        let (file, _) = match files::open_no_follow(&path, MAX_SWITCH_BYTES) {
            Ok(opened) => opened,
            Err(FileProblem::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(problem) => return Some(Pause::unreadable(&location, &problem.to_string())),
        };
        match files::read(file, MAX_SWITCH_BYTES) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|err| Pause::unreadable(&location, &err.to_string())),
            ),
            Err(problem) => Some(Pause::unreadable(&location, &problem.to_string())),
        }
    }

    /// Set the switch: written whole, then renamed over, so a reader never
    /// sees half a file.
    pub fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        use anyhow::Context as _;
        let path = self.path();
        if self.scope == SwitchScope::Host {
            // Readable by every user, so that every process honours it.
            files::create_dir_with_mode(&self.dir, 0o755)
        } else {
            files::create_private_dir(&self.dir)
        }
        .with_context(|| format!("creating the state directory {}", self.dir.display()))?;
        let pause = Pause::now(reason);
        let tmp = self
            .dir
            .join(format!(".{SWITCH_FILE}.{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(&pause)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.with_context(|| format!("setting the kill switch {}", path.display()))?;
        Ok(pause)
    }

    /// Clear the switch, whatever stands at its path (a file, a link, a
    /// FIFO, a device, a directory), and make its directory trusted again
    /// when this user owns it. The pause it cleared, if it was set.
    pub fn resume(&self) -> anyhow::Result<Option<Pause>> {
        let was = self.paused();
        let path = self.path();
        let removed = match std::fs::symlink_metadata(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
        };
        removed
            .map_err(|err| anyhow::anyhow!("clearing the kill switch {}: {err}", path.display()))?;
        if let Err(why) = self.trusted_dir() {
            self.tighten_dir().map_err(|err| {
                anyhow::anyhow!(
                    "the kill switch {} is cleared, but {why}, so it still counts as set: {err}",
                    path.display()
                )
            })?;
        }
        Ok(was)
    }

    /// Take write access away from others on a directory this user owns.
    fn tighten_dir(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = std::fs::metadata(&self.dir)?;
        if metadata.uid() != euid() {
            anyhow::bail!(
                "only its owner (uid {}) or root can fix that, e.g. `chown {} {}`",
                metadata.uid(),
                euid(),
                self.dir.display()
            );
        }
        let mode = if self.scope == SwitchScope::Host {
            metadata.mode() & 0o7775
        } else {
            metadata.mode() & 0o7755
        };
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(mode))?;
        tracing::warn!(
            "{}: write access for others taken away (mode {:04o})",
            self.dir.display(),
            mode & 0o7777
        );
        Ok(())
    }
}

#[async_trait::async_trait]
impl Switch for FileSwitch {
    async fn paused(&self) -> Option<Pause> {
        FileSwitch::paused(self)
    }

    async fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        FileSwitch::pause(self, reason)
    }

    async fn resume(&self) -> anyhow::Result<Option<Pause>> {
        FileSwitch::resume(self)
    }

    fn scope(&self) -> SwitchScope {
        self.scope
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }
}

/// A remote switch whose answer is used for at most `max_age`, as the
/// fleet's reads are: a run checks its switches before every termination
/// and on every poll, and an account switch would otherwise cost an API
/// call each time. A pause reaches a run within `max_age`.
pub struct Cached {
    inner: Arc<dyn Switch>,
    max_age: Duration,
    last: std::sync::Mutex<Option<(std::time::Instant, Option<Pause>)>>,
}

impl Cached {
    /// `inner`, read at most once per `max_age`.
    pub fn new(inner: Arc<dyn Switch>, max_age: Duration) -> Cached {
        Cached {
            inner,
            max_age,
            last: std::sync::Mutex::default(),
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, Option<Pause>)>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Switch for Cached {
    async fn paused(&self) -> Option<Pause> {
        if let Some((at, pause)) = self.last().as_ref() {
            if at.elapsed() < self.max_age {
                return pause.clone();
            }
        }
        let pause = self.inner.paused().await;
        *self.last() = Some((std::time::Instant::now(), pause.clone()));
        pause
    }

    async fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        self.last().take();
        self.inner.pause(reason).await
    }

    async fn resume(&self) -> anyhow::Result<Option<Pause>> {
        self.last().take();
        self.inner.resume().await
    }

    fn scope(&self) -> SwitchScope {
        self.inner.scope()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn remote(&self) -> bool {
        self.inner.remote()
    }
}

/// One switch's state, as `status` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchState {
    /// Whose it is.
    pub scope: SwitchScope,
    /// Where it is.
    pub location: String,
    /// The pause in force, if it is set.
    pub pause: Option<Pause>,
}

impl SwitchState {
    /// Its pause, if set, its reason saying which switch holds it.
    pub fn labelled_pause(self) -> Option<Pause> {
        self.pause.map(|mut pause| {
            pause.reason = format!(
                "{}{}[{} switch {}]",
                pause.reason,
                if pause.reason.is_empty() { "" } else { " " },
                self.scope,
                self.location
            );
            pause
        })
    }
}

impl std::fmt::Display for SwitchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pause {
            Some(pause) => write!(f, "{} switch SET, {pause}", self.scope),
            None => write!(f, "{} switch clear", self.scope),
        }?;
        write!(f, " ({})", self.location)
    }
}

/// Every switch in force for a process: set when any one is.
#[derive(Clone, Default)]
pub struct Switches {
    list: Vec<Arc<dyn Switch>>,
}

impl std::fmt::Debug for Switches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|s| s.location()))
            .finish()
    }
}

/// How long a switch may take to answer before it counts as set.
pub(crate) const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);

impl Switches {
    /// None at all: for runs outside the operator's world (tests, a
    /// simulation's throw-away state).
    pub fn none() -> Switches {
        Switches::default()
    }

    /// The switches of this machine: the host's, the operator's, and
    /// `state_dir`'s when that is another directory.
    pub fn local(state_dir: Option<&Path>) -> Switches {
        let mut switches = Switches::none().with(Arc::new(FileSwitch::host()));
        let operator = operator_state_dir();
        if let Some(dir) = &operator {
            switches = switches.with(Arc::new(FileSwitch::with_scope(dir, SwitchScope::Operator)));
        }
        if let Some(dir) = state_dir {
            if operator.as_deref().is_none_or(|op| !same_dir(op, dir)) {
                switches = switches.with(Arc::new(FileSwitch::new(dir)));
            }
        }
        switches
    }

    /// These and `switch`.
    pub fn with(mut self, switch: Arc<dyn Switch>) -> Switches {
        self.list.push(switch);
        self
    }

    /// Each switch.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Switch>> {
        self.list.iter()
    }

    /// Each switch's state, read at once; one that does not answer within
    /// [`SWITCH_TIMEOUT`] counts as set. With `remote` false, the remote
    /// ones are left out.
    pub async fn states(&self, remote: bool) -> Vec<SwitchState> {
        let reads = self
            .list
            .iter()
            .filter(|s| remote || !s.remote())
            .map(|switch| async move {
                let location = switch.location();
                let pause = match tokio::time::timeout(SWITCH_TIMEOUT, switch.paused()).await {
                    Ok(pause) => pause,
                    Err(_) => Some(Pause::unreadable(
                        &location,
                        &format!("no answer within {} s", SWITCH_TIMEOUT.as_secs()),
                    )),
                };
                SwitchState {
                    scope: switch.scope(),
                    location,
                    pause,
                }
            });
        futures::future::join_all(reads).await
    }

    /// The first pause in force, saying which switch holds it.
    pub async fn paused(&self, remote: bool) -> Option<Pause> {
        self.states(remote)
            .await
            .into_iter()
            .find_map(SwitchState::labelled_pause)
    }
}

/// Whether two paths name the same directory (compared as written when
/// either does not exist yet).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `$XDG_STATE_HOME/wasmonkey`, else `~/.local/state/wasmonkey`; only
/// absolute variables count.
pub(crate) fn operator_state_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")))
        .map(|dir| dir.join("wasmonkey"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_resume_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let switch = FileSwitch::new(&dir.path().join("state"));
        assert_eq!(switch.paused(), None);
        let pause = switch.pause("game day over").unwrap();
        assert_eq!(switch.paused(), Some(pause.clone()));
        assert!(pause.to_string().ends_with(": game day over"), "{pause}");
        assert_eq!(switch.resume().unwrap(), Some(pause));
        assert_eq!(switch.paused(), None);
        assert_eq!(switch.resume().unwrap(), None);
    }

    #[test]
    fn a_switch_that_cannot_be_read_counts_as_set() {
        let dir = tempfile::tempdir().unwrap();
        let switch = FileSwitch::new(dir.path());
        std::fs::write(dir.path().join(SWITCH_FILE), "{not json").unwrap();
        let pause = switch.paused().expect("counted as set");
        assert!(pause.reason.contains("cannot be trusted"), "{pause}");
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn what_is_not_a_small_regular_file_in_a_trusted_directory_counts_as_set_and_resume_clears_it()
    {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        set_mode(&state, 0o700);
        let switch = FileSwitch::new(&state);
        let path = state.join(SWITCH_FILE);
        let make = |what: &str| match what {
            "symbolic link" => std::os::unix::fs::symlink("/nonexistent", &path).unwrap(),
            "FIFO" => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap(),
            "larger than" => std::fs::File::create(&path)
                .unwrap()
                .set_len(1 << 30)
                .unwrap(),
            _ => std::fs::create_dir(&path).unwrap(),
        };
        for what in ["symbolic link", "FIFO", "larger than", "a directory"] {
            make(what);
            let started = std::time::Instant::now();
            let pause = switch.paused().expect(what);
            assert!(started.elapsed() < Duration::from_secs(1), "{what}");
            assert!(pause.reason.contains(what), "{what}: {pause}");
            switch.resume().unwrap();
            assert_eq!(switch.paused(), None, "{what}: resume clears it");
        }
    }

    #[test]
    fn a_directory_others_can_write_counts_as_set_until_resume_tightens_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        set_mode(&state, 0o777);
        let switch = FileSwitch::new(&state);
        let pause = switch.paused().expect("counted as set");
        assert!(pause.reason.contains("others can write it"), "{pause}");
        switch.resume().unwrap();
        assert_eq!(switch.paused(), None);
        // The host's may be written by its group, never by all.
        let host = FileSwitch::with_scope(&state, SwitchScope::Host);
        set_mode(&state, 0o775);
        assert_eq!(host.paused(), None);
        set_mode(&state, 0o757);
        assert!(host.paused().is_some());
    }

    #[tokio::test]
    async fn any_switch_set_is_the_pause_in_force_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(FileSwitch::new(&dir.path().join("a")));
        let b = Arc::new(FileSwitch::with_scope(
            &dir.path().join("b"),
            SwitchScope::Host,
        ));
        let switches = Switches::none().with(a.clone()).with(b.clone());
        assert_eq!(switches.paused(true).await, None);
        b.pause("freeze").unwrap();
        let pause = switches.paused(true).await.expect("set");
        assert!(pause.reason.starts_with("freeze [host switch "), "{pause}");
        let states = switches.states(true).await;
        assert_eq!(states.len(), 2);
        assert!(states[0].pause.is_none() && states[1].pause.is_some());
    }
}
