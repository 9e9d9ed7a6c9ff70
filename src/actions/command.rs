//! The `command` action: run a program (dbt, edr, a script) with its arguments, no shell.
//!
//! The child leads its own process group, so a timeout or a shutdown ends everything it
//! started (dbt spawns children): SIGTERM to the group, a grace period, then SIGKILL. The
//! last 64 KiB of stdout and stderr are kept; memory never grows with the output. Scans of
//! `/proc` and file-system checks block, so they run on tokio's blocking pool; only the new
//! leader's own `/proc/<pid>/stat`, which must be read at once, is read inline.
//!
//! The child's environment is exactly [`CommandSpec::env`]: nothing of the server's is inherited
//! behind the caller's back. The run's events reach it as a private JSON file ([`EventsFile`]),
//! never as one environment variable or argument, which Linux caps at 128 KiB.

use crate::outbound::Tail;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// How much output is kept, from the end.
pub const OUTPUT_TAIL: usize = 64 * 1024;
/// How long output is still read after the program exited (a grandchild may hold the pipe).
const DRAIN: Duration = Duration::from_millis(200);
/// How long a leftover group is watched after SIGKILL, for its members to be gone.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Linux's limit on one argument or one `NAME=value` (MAX_ARG_STRLEN: 32 pages), NUL included.
pub const MAX_ARG: usize = 128 * 1024;
/// An events file nobody holds that is older than this was left by a server that died.
const LEFT_BEHIND: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Looked up on PATH unless it contains a `/`.
    pub program: String,
    /// Passed as argv, never through a shell.
    pub args: Vec<String>,
    /// The whole environment of the command: nothing else is inherited.
    pub env: Vec<(OsString, OsString)>,
    pub working_dir: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Exited {
        code: i32,
        output: String,
    },
    Signalled {
        signal: i32,
        output: String,
    },
    TimedOut {
        after: Duration,
        output: String,
    },
    /// Stopped from outside (the shutdown grace is over, the run's lease was lost, or the run
    /// was cancelled): the group was ended.
    Cancelled {
        output: String,
    },
}

impl CommandOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, CommandOutcome::Exited { code: 0, .. })
    }

    pub fn output(&self) -> &str {
        match self {
            CommandOutcome::Exited { output, .. }
            | CommandOutcome::Signalled { output, .. }
            | CommandOutcome::TimedOut { output, .. }
            | CommandOutcome::Cancelled { output } => output,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CommandOutcome::Exited { code, .. } => format!("exited with code {code}"),
            CommandOutcome::Signalled { signal, .. } => format!("killed by signal {signal}"),
            CommandOutcome::TimedOut { after, .. } => {
                format!("timed out after {}", crate::domain::words(*after))
            }
            CommandOutcome::Cancelled { .. } => "cancelled by shutdown".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(
        "program `{program}` not found (looked up on PATH unless it contains a '/'); install it or give its full path"
    )]
    NotFound { program: String },
    #[error("program `{program}` is not executable (permission denied)")]
    NotExecutable { program: String },
    #[error("working directory {0} does not exist")]
    NoWorkingDir(PathBuf),
    #[error(
        "cannot start `{program}`: {what} is {bytes} bytes, over Linux's limit of 128 KiB (131072 bytes) for one argument or environment variable; read the events from the file named by $HANDOFF_EVENTS_FILE instead (docs/actions.md)"
    )]
    TooLong { program: String, what: String, bytes: usize },
    #[error(
        "cannot start `{program}`: its arguments and environment together are over the system's limit (ARG_MAX, often 2 MiB); read the events from the file named by $HANDOFF_EVENTS_FILE instead (docs/actions.md)"
    )]
    TooBig { program: String },
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
}

/// Checks each argument and variable against Linux's per-string limit, which would otherwise
/// surface as a bare "Argument list too long".
fn check_sizes(spec: &CommandSpec) -> Result<(), CommandError> {
    let too_long = |what: String, bytes: usize| CommandError::TooLong { program: spec.program.clone(), what, bytes };
    if let Some((i, arg)) = spec.args.iter().enumerate().find(|(_, a)| a.len() + 1 > MAX_ARG) {
        return Err(too_long(format!("args[{i}]"), arg.len()));
    }
    if let Some((name, value)) = spec.env.iter().find(|(k, v)| k.len() + v.len() + 2 > MAX_ARG) {
        return Err(too_long(format!("the variable {}", name.to_string_lossy()), value.len()));
    }
    Ok(())
}

/// The server's variables that `keep` accepts by name (names that are not UTF-8 never are).
pub fn server_env(keep: impl Fn(&str) -> bool) -> Vec<(OsString, OsString)> {
    std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(&keep)).collect()
}

/// The output's tail as text, after a marker that says how much came before it.
fn render(tail: &Mutex<Tail>) -> String {
    let (dropped, text) = tail.lock().unwrap_or_else(|p| p.into_inner()).text();
    if dropped == 0 { text } else { format!("…[truncated {dropped} bytes]\n{text}") }
}

async fn pump(mut pipe: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.lock().unwrap_or_else(|p| p.into_inner()).push(&buf[..n]);
    }
}

enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

pub use crate::domain::ProcessGroup;

/// Runs the command; `started` hears its process group as soon as it exists.
pub async fn run(
    spec: &CommandSpec,
    cancel: CancellationToken,
    started: impl FnOnce(ProcessGroup) + Send,
) -> Result<CommandOutcome, CommandError> {
    if let Some(dir) = &spec.working_dir
        && !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir())
    {
        return Err(CommandError::NoWorkingDir(dir.clone()));
    }
    check_sizes(spec)?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let program = spec.program.clone();
    let mut child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CommandError::NotFound { program: program.clone() },
        std::io::ErrorKind::PermissionDenied => CommandError::NotExecutable { program: program.clone() },
        std::io::ErrorKind::ArgumentListTooLong => CommandError::TooBig { program: program.clone() },
        _ => CommandError::Spawn { program: program.clone(), source },
    })?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    // Read inline, not on the blocking pool: it is one small procfs file (no disk I/O), and
    // recording the group is urgent, as a crash before that leaves it running unrecorded.
    if let Some(id) = child.id()
        && let Some(start) = start_time(id)
    {
        started(ProcessGroup { pgid: id, start });
    }
    let tail = Arc::new(Mutex::new(Tail::new(OUTPUT_TAIL)));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(pump(out, tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(pump(err, tail.clone()));
    }

    let started = Instant::now();
    let deadline = async {
        match spec.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        status = child.wait() => End::Exited(status),
        _ = deadline => End::TimedOut,
        _ = cancel.cancelled() => End::Cancelled,
    };
    let status = match end {
        End::Exited(status) => status,
        End::TimedOut | End::Cancelled => {
            let signal = |s| {
                if let Some(pid) = group {
                    let _ = killpg(pid, s);
                }
            };
            signal(Signal::SIGTERM);
            let status = match tokio::time::timeout(spec.kill_grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal(Signal::SIGKILL);
                    child.wait().await
                }
            };
            // The direct child may have exited on SIGTERM while others in its group ignore it.
            signal(Signal::SIGKILL);
            drain(&mut readers).await;
            let output = render(&tail);
            let _ = status;
            return Ok(match end {
                End::TimedOut => CommandOutcome::TimedOut { after: started.elapsed(), output },
                _ => CommandOutcome::Cancelled { output },
            });
        }
    };
    drain(&mut readers).await;
    let output = render(&tail);
    let status = status.map_err(|source| CommandError::Spawn { program, source })?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => CommandOutcome::Exited { code, output },
        (None, Some(signal)) => CommandOutcome::Signalled { signal, output },
        (None, None) => CommandOutcome::Exited { code: -1, output },
    })
}

/// Fields of `/proc/<pid>/stat` after the command name: (state, pgrp, start time).
fn stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After "pid (comm)": state is field 3, pgrp 5, starttime 22 (1-based) → indexes 0, 2, 19.
    Some((fields.first()?.chars().next()?, fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, _, start)| start)
}

/// Whether `group` still has live members. If its leader lives, its start time must match
/// exactly (else the id was reused by another process); if the leader is gone, members must
/// have started after it did (children always start after their leader). Blocking: it reads
/// all of `/proc`.
fn group_alive(group: ProcessGroup) -> bool {
    if let Some((_, _, start)) = stat(group.pgid)
        && start != group.start
    {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).any(|pid| {
        stat(pid).is_some_and(|(state, pgrp, start)| pgrp == group.pgid && start >= group.start && state != 'Z')
    })
}

/// [`group_alive`] on the blocking pool: it scans every process in `/proc`. A scan that
/// could not finish answers "not alive", so a group is never signalled on a guess.
async fn group_alive_now(group: ProcessGroup) -> bool {
    tokio::task::spawn_blocking(move || group_alive(group)).await.unwrap_or(false)
}

/// Ends a process group left running by a server that died (SIGTERM, up to `grace`, SIGKILL).
/// Returns whether there was anything to end.
pub async fn end_leftover(group: ProcessGroup, grace: Duration) -> bool {
    if !group_alive_now(group).await {
        return false;
    }
    let pid = Pid::from_raw(group.pgid as i32);
    let _ = killpg(pid, Signal::SIGTERM);
    let started = Instant::now();
    while group_alive_now(group).await && started.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if group_alive_now(group).await {
        let _ = killpg(pid, Signal::SIGKILL);
        // SIGKILL lands when each member next runs: wait for that, so that "ended" means gone
        // and a resumed run never overlaps the old one. A member stuck in the kernel (state D)
        // may outlast this; with SIGKILL pending it dies as soon as it leaves the kernel.
        let killed = Instant::now();
        while group_alive_now(group).await && killed.elapsed() < KILL_WAIT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    true
}

/// The process groups whose processes carry `HANDOFF_RUN_ID=<run>` in their environment, for
/// any of `runs`: their commands, found even when a crash came between starting a command and
/// recording its group. One blocking scan of `/proc`, on the blocking pool.
pub async fn groups_of_runs(runs: Vec<String>) -> Vec<ProcessGroup> {
    if runs.is_empty() {
        return Vec::new();
    }
    let needles: Vec<Vec<u8>> = runs.iter().map(|run| format!("HANDOFF_RUN_ID={run}").into_bytes()).collect();
    let me = std::process::id();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut groups: Vec<ProcessGroup> = Vec::new();
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            if pid == me {
                continue;
            }
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
            if !environ.split(|b| *b == 0).any(|var| needles.iter().any(|n| var == n.as_slice())) {
                continue;
            }
            let Some((_, pgrp, started)) = stat(pid) else { continue };
            // The leader's start time when it lives, else the earliest member's: every member
            // started at or after it, which is what `group_alive` checks.
            let start = start_time(pgrp).unwrap_or(started);
            match groups.iter_mut().find(|g| g.pgid == pgrp) {
                Some(group) => group.start = group.start.min(start),
                None => groups.push(ProcessGroup { pgid: pgrp, start }),
            }
        }
        groups
    })
    .await
    .unwrap_or_default()
}

/// Ends several leftover groups at once, so start-up waits one grace period, not one per
/// group. Returns the groups there was something to end, in the order given.
pub async fn end_leftovers(groups: Vec<ProcessGroup>, grace: Duration) -> Vec<ProcessGroup> {
    let mut ending = tokio::task::JoinSet::new();
    for (index, group) in groups.iter().copied().enumerate() {
        ending.spawn(async move { (index, end_leftover(group, grace).await) });
    }
    let mut ended = vec![false; groups.len()];
    while let Some(done) = ending.join_next().await {
        if let Ok((index, true)) = done {
            ended[index] = true;
        }
    }
    groups.into_iter().zip(ended).filter_map(|(group, ended)| ended.then_some(group)).collect()
}

/// A run's events as a JSON file for one command, readable by this user only (0600), in
/// [`events_dir`]. Removed when dropped: after the action, whatever its end. The server holds a
/// lock on it meanwhile, so a file nobody holds was left by a server that died
/// ([`sweep_left_behind`] removes those at start).
pub struct EventsFile {
    file: tempfile::NamedTempFile,
}

impl EventsFile {
    /// Writes `events` as a JSON array for `run`, one at a time as the stream yields them (a
    /// run of a million events never sits in memory whole); blocking I/O runs on the blocking pool.
    pub async fn write<S>(run: &str, events: S) -> std::io::Result<EventsFile>
    where
        S: futures_util::Stream<Item = std::io::Result<serde_json::Value>>,
    {
        use futures_util::TryStreamExt;
        use tokio::io::AsyncWriteExt;
        let prefix = format!("events-{run}-");
        let created = tokio::task::spawn_blocking(move || {
            let file = tempfile::Builder::new()
                .prefix(&prefix)
                .suffix(".json")
                .permissions(std::fs::Permissions::from_mode(0o600))
                .tempfile_in(events_dir()?)?;
            file.as_file().lock()?;
            Ok::<_, std::io::Error>(file)
        });
        let file = created.await.map_err(std::io::Error::other)??;
        let mut out =
            tokio::io::BufWriter::with_capacity(64 << 10, tokio::fs::File::from_std(file.as_file().try_clone()?));
        out.write_all(b"[").await?;
        let mut events = std::pin::pin!(events);
        let mut first = true;
        while let Some(event) = events.try_next().await? {
            if !first {
                out.write_all(b",").await?;
            }
            first = false;
            out.write_all(&serde_json::to_vec(&event)?).await?;
        }
        out.write_all(b"]").await?;
        out.flush().await?;
        Ok(EventsFile { file })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Where events files live: `$TMPDIR/handoff-events-<uid>`, a directory only this user may
/// enter (0700). One per user, so every server of the user cleans what a dead one left.
pub fn events_dir() -> std::io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("handoff-events-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(err),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(std::io::Error::other(format!(
            "{} is not a directory of this user; remove it, or point TMPDIR elsewhere",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Removes the events files in `dir` that no server holds and that are older than `age`:
/// those a server that died (a crash, `kill -9`) left behind. Returns how many.
fn sweep(dir: &Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let named = path.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with("events-"));
        let old = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        if !named || old.is_none_or(|o| o < age) {
            continue;
        }
        // Held means a live server's command is still using it.
        let Ok(file) = std::fs::File::open(&path) else { continue };
        if file.try_lock().is_ok() && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// At start: removes the events files a dead server left behind.
pub async fn sweep_left_behind() {
    let removed = tokio::task::spawn_blocking(|| events_dir().map(|dir| sweep(&dir, LEFT_BEHIND))).await;
    if let Ok(Ok(removed @ 1..)) = removed {
        tracing::info!(removed, "removed events files left behind by a server that stopped abruptly");
    }
}

/// Reads what is left in the pipes, but not forever: a grandchild may keep them open.
async fn drain(readers: &mut tokio::task::JoinSet<()>) {
    let _ = tokio::time::timeout(DRAIN, async { while readers.join_next().await.is_some() {} }).await;
    readers.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, args: &[&str]) -> CommandSpec {
        CommandSpec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: server_env(|name| name == "PATH"),
            working_dir: None,
            timeout: None,
            kill_grace: Duration::from_millis(300),
        }
    }

    fn alive(pid: i32) -> bool {
        // A zombie still has /proc/<pid>; its state letter is Z.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    async fn run_it(spec: &CommandSpec) -> CommandOutcome {
        run(spec, CancellationToken::new(), |_| {}).await.unwrap()
    }

    #[tokio::test]
    async fn the_exit_code_and_both_output_streams_are_reported() {
        let out = run_it(&spec("sh", &["-c", "echo to-stdout; echo to-stderr >&2; exit 4"])).await;
        assert_eq!(out.describe(), "exited with code 4");
        assert!(!out.succeeded());
        assert!(out.output().contains("to-stdout") && out.output().contains("to-stderr"), "{}", out.output());
    }

    #[tokio::test]
    async fn output_beyond_64_kib_keeps_its_tail_with_a_marker() {
        let out = run_it(&spec("sh", &["-c", "yes line | head -c 200000; echo END"])).await;
        let text = out.output();
        assert!(text.starts_with("…[truncated "), "{}", &text[..40]);
        assert!(text.ends_with("END\n"));
        assert!(text.len() <= OUTPUT_TAIL + 40);
    }

    #[tokio::test]
    async fn arguments_reach_the_program_verbatim_without_a_shell() {
        let out = run_it(&spec("printf", &["%s|", "two words", "$(echo injected)", "'quoted'"])).await;
        assert_eq!(out.output(), "two words|$(echo injected)|'quoted'|");
    }

    #[tokio::test]
    async fn env_and_working_dir_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("sh", &["-c", "echo $HANDOFF_TEST_VAR; pwd"]);
        s.env.push(("HANDOFF_TEST_VAR".into(), "hello".into()));
        s.working_dir = Some(dir.path().to_path_buf());
        let out = run_it(&s).await;
        assert!(out.output().contains("hello"));
        assert!(out.output().contains(dir.path().to_str().unwrap()));
    }

    #[tokio::test]
    async fn the_command_gets_only_the_environment_it_is_given() {
        let mut s = spec("env", &[]);
        s.env = vec![("ONLY".into(), "this".into())];
        assert_eq!(run_it(&s).await.output(), "ONLY=this\n");
    }

    #[tokio::test]
    async fn an_argument_or_variable_over_128_kib_is_an_error_that_names_the_limit_and_the_file() {
        let big = "x".repeat(MAX_ARG);
        let err = run(&spec("echo", &["small", &big]), CancellationToken::new(), |_| {}).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("args[1] is 131072 bytes") && text.contains("128 KiB"), "{text}");
        assert!(text.contains("$HANDOFF_EVENTS_FILE"), "{text}");
        let mut s = spec("true", &[]);
        s.env.push(("LOADED".into(), big.into()));
        let err = run(&s, CancellationToken::new(), |_| {}).await.unwrap_err().to_string();
        assert!(err.contains("the variable LOADED is 131072 bytes"), "{err}");
    }

    #[tokio::test]
    async fn an_events_file_is_private_holds_the_events_and_is_removed_when_dropped() {
        let events = serde_json::json!([{ "id": "e1", "subject": "orders" }, { "id": "e2", "subject": "hubspot" }]);
        let items = events.as_array().unwrap().iter().cloned().map(Ok);
        let file = EventsFile::write("run-1", futures_util::stream::iter(items)).await.unwrap();
        let path = file.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        let read: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, events);
        // (Sweeping is tested on a folder of its own below: this one is shared with other tests.)
        assert!(path.exists());
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn events_files_a_dead_server_left_are_swept_but_young_or_held_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(120);
        let write = |name: &str| {
            let file = std::fs::File::create(dir.path().join(name)).unwrap();
            file.set_modified(old).unwrap();
            file
        };
        drop(write("events-dead-run.json"));
        let held = write("events-live-run.json");
        held.lock().unwrap();
        drop(write("not-ours.json"));
        std::fs::write(dir.path().join("events-just-written.json"), "[]").unwrap();
        assert_eq!(sweep(dir.path(), Duration::from_secs(60)), 1);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["events-just-written.json", "events-live-run.json", "not-ours.json"]);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let err = run(&spec("surely-not-a-program-xyz", &[]), CancellationToken::new(), |_| {}).await.unwrap_err();
        assert!(err.to_string().contains("program `surely-not-a-program-xyz` not found"), "{err}");
    }

    #[tokio::test]
    async fn a_timeout_ends_the_whole_process_group_including_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let mut s = spec("sh", &["-c", &script]);
        s.timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let out = run_it(&s).await;
        assert!(matches!(out, CommandOutcome::TimedOut { .. }), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let gone = Instant::now();
        while alive(pid) {
            assert!(gone.elapsed() < Duration::from_secs(5), "grandchild {pid} survived the timeout");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_program_that_ignores_sigterm_is_killed_after_the_grace() {
        let mut s = spec("sh", &["-c", "trap '' TERM; while true; do sleep 0.1; done"]);
        s.timeout = Some(Duration::from_millis(200));
        let started = Instant::now();
        let out = run_it(&s).await;
        assert!(matches!(out, CommandOutcome::TimedOut { .. }), "{out:?}");
        assert!(started.elapsed() >= Duration::from_millis(450), "the grace was given");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn cancellation_ends_the_group_and_says_so() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let out = run(&spec("sleep", &["300"]), cancel, |_| {}).await.unwrap();
        assert_eq!(out.describe(), "cancelled by shutdown");
    }

    #[tokio::test]
    async fn a_group_left_behind_is_found_by_its_id_and_start_time_and_ended() {
        let cancel = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { run(&spec("sleep", &["300"]), cancel, move |g| tx.send(g).unwrap()).await }
        });
        let group = tokio::task::spawn_blocking(move || rx.recv().unwrap()).await.unwrap();
        assert!(group_alive(group));
        let impostor = ProcessGroup { start: group.start + 1_000_000, ..group };
        assert!(!end_leftover(impostor, Duration::from_millis(100)).await, "a younger start time is another process");
        assert!(end_leftover(group, Duration::from_secs(2)).await);
        assert!(!group_alive(group));
        cancel.cancel();
        let _ = task.await;
    }

    /// Starts `script` as the leader of a new process group, as a crashed server would have
    /// left it, once the script has printed its first line (so its traps are set).
    async fn leftover(script: &str) -> (tokio::process::Child, ProcessGroup) {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut ready = String::new();
        let stdout = child.stdout.take().unwrap();
        tokio::io::BufReader::new(stdout).read_line(&mut ready).await.unwrap();
        assert_eq!(ready, "ready\n");
        let pgid = child.id().unwrap();
        let start = tokio::task::spawn_blocking(move || start_time(pgid)).await.unwrap().unwrap();
        (child, ProcessGroup { pgid, start })
    }

    #[tokio::test]
    async fn several_leftover_groups_are_ended_together_even_one_that_ignores_sigterm() {
        let (mut polite, polite_group) = leftover("sleep 300 & sleep 300 & echo ready; wait").await;
        let (mut stubborn, stubborn_group) = leftover("trap '' TERM; sleep 300 & echo ready; wait").await;
        // The same id with a younger start time is another process: left alone.
        let reused_id = ProcessGroup { start: polite_group.start + 1_000_000, ..polite_group };
        let groups = vec![stubborn_group, reused_id, polite_group];
        let ended = end_leftovers(groups, Duration::from_millis(300)).await;
        assert_eq!(ended, vec![stubborn_group, polite_group]);
        assert!(!group_alive(stubborn_group), "the group that ignored SIGTERM was killed after the grace");
        assert!(!group_alive(polite_group));
        assert_eq!(stubborn.wait().await.unwrap().signal(), Some(Signal::SIGKILL as i32));
        assert_eq!(polite.wait().await.unwrap().signal(), Some(Signal::SIGTERM as i32));
    }
}
