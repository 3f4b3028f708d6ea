use super::*;

// ---------------------------------------------------------------------------------------------
// Starting and stopping the processes

/// The latest stream stamp the upstream printed (nanoseconds since the epoch).
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    pub(crate) latest: Mutex<u64>,
    pub(crate) changed: Condvar,
}

impl Stamps {
    /// The first stamp at or after `since`, waiting up to `timeout` for it.
    pub(crate) fn wait(&self, since: u64, timeout: Duration) -> Option<u64> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let (latest, _) = self
            .changed
            .wait_timeout_while(latest, timeout, |l| *l < since)
            .unwrap_or_else(PoisonError::into_inner);
        (*latest >= since).then_some(*latest)
    }

    pub(crate) fn set(&self, stamp: u64) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        self.changed.notify_all();
    }
}

/// The child processes and the temporary directory; dropping it kills the children (also when
/// the bench panics) and removes the directory.
#[derive(Debug)]
pub(crate) struct Processes {
    pub(crate) children: Vec<(String, Child)>,
    pub(crate) dir: PathBuf,
}

impl Processes {
    pub(crate) fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("switchboard-binary-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self {
            children: Vec::new(),
            dir,
        }
    }

    /// Starts this executable as helper `role`; returns its pid and its stdout (address first).
    pub(crate) fn helper(
        &mut self,
        role: &str,
        env: &[(&str, String)],
    ) -> (u32, BufReader<std::process::ChildStdout>) {
        let exe = std::env::current_exe().expect("the bench knows its own executable");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {role} helper: {e}"));
        let pid = child.id();
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        self.children.push((role.to_owned(), child));
        (pid, out)
    }

    /// Starts the binary in `mode` in front of `upstream`; returns its pid and address.
    pub(crate) fn gateway(
        &mut self,
        bin: &Path,
        mode: &GatewayMode,
        upstream: SocketAddr,
    ) -> (u32, SocketAddr) {
        let config = mode.config(&self.dir);
        let config_path = self.dir.join(format!("{}.toml", mode.name));
        std::fs::write(&config_path, config).expect("the temporary directory is writable");
        let stdout_path = self.dir.join(format!("{}.stdout", mode.name));
        let stderr_path = self.dir.join(format!("{}.stderr", mode.name));
        let file = |p: &Path| {
            std::fs::File::create(p)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()))
        };
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", if mode.nolog { "off" } else { "info" })
            .env("OPENAI_API_KEY", "k")
            .env("OPENAI_BASE_URL", format!("http://{upstream}/v1"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file(&stdout_path))
            .stderr(file(&stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let pid = child.id();
        self.children.push((mode.name.clone(), child));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(addr) = out
                .lines()
                .find_map(|l| l.strip_prefix("switchboard listening on http://"))
                .and_then(support::parse_addr)
            {
                return (pid, addr);
            }
            let (_, child) = self.children.last_mut().expect("just pushed");
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!(
                    "{} did not start ({exited:?}):\nstdout:\n{out}\nstderr:\n{err}",
                    mode.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads a helper's first stdout line: its address.
pub(crate) fn read_addr(role: &str, out: &mut impl BufRead) -> SocketAddr {
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    support::parse_addr(line.trim())
        .unwrap_or_else(|| panic!("the {role} helper did not print its address: {line:?}"))
}

/// One configuration of the binary (a name of `scripts/callgrind.sh`).
#[derive(Debug, Clone)]
pub(crate) struct GatewayMode {
    pub(crate) name: String,
    /// The cache off: every request forwarded.
    pub(crate) miss: bool,
    /// `RUST_LOG=off`.
    pub(crate) nolog: bool,
    /// No request log.
    pub(crate) nodb: bool,
}

impl GatewayMode {
    pub(crate) fn parse(name: &str) -> Self {
        let mut mode = Self {
            name: name.to_owned(),
            miss: false,
            nolog: false,
            nodb: false,
        };
        let Some(mut rest) = name.strip_prefix("gateway") else {
            panic!("unknown mode {name}: gateway[-miss][-nolog][-nodb]");
        };
        while !rest.is_empty() {
            let flag = if let Some(r) = rest.strip_prefix("-miss") {
                rest = r;
                &mut mode.miss
            } else if let Some(r) = rest.strip_prefix("-nolog") {
                rest = r;
                &mut mode.nolog
            } else if let Some(r) = rest.strip_prefix("-nodb") {
                rest = r;
                &mut mode.nodb
            } else {
                panic!("unknown mode {name}: gateway[-miss][-nolog][-nodb]");
            };
            *flag = true;
        }
        mode
    }

    /// `examples/gateway.toml` with the cache and the request log as this mode says (the same
    /// edits as `scripts/callgrind.sh`).
    pub(crate) fn config(&self, dir: &Path) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
        let example = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let db = dir.join(format!("{}.db", self.name));
        let (mut cache_lines, mut log_lines) = (0, 0);
        let mut out = String::with_capacity(example.len() + 128);
        for line in example.lines() {
            if line == "enabled = true" {
                cache_lines += 1;
                out.push_str(if self.miss { "enabled = false" } else { line });
            } else if line == r#"path = "switchboard.db""# {
                log_lines += 1;
                if !self.nodb {
                    out.push_str(&format!("path = {:?}", db.display().to_string()));
                }
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        assert!(
            cache_lines == 1 && log_lines == 1,
            "examples/gateway.toml no longer has exactly one `enabled = true` ([cache]) and \
             one `path = \"switchboard.db\"` ([log]): update this bench and scripts/callgrind.sh"
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// One thing to measure.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    /// The proxy process whose CPU is measured (none for `direct`).
    pub(crate) pid: Option<u32>,
    /// Whether it forwards streams (not a cache HIT).
    pub(crate) streams: bool,
}

/// The processes whose CPU every round reads: the target's proxy, the upstream, this client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pids {
    pub(crate) upstream: u32,
    pub(crate) client: u32,
}

/// Starts every process; returns the targets, the upstream's stamps and the pids.
pub(crate) fn start(
    procs: &mut Processes,
    modes: &[GatewayMode],
) -> (Vec<Target>, Arc<Stamps>, Pids) {
    let (up_pid, mut up_out) = procs.helper("upstream", &[]);
    let up_addr = read_addr("upstream", &mut up_out);
    let stamps = Arc::new(Stamps::default());
    {
        let stamps = stamps.clone();
        std::thread::spawn(move || {
            for line in up_out.lines() {
                let Ok(line) = line else { break };
                if let Ok(stamp) = line.trim().parse() {
                    stamps.set(stamp);
                }
            }
        });
    }
    let workers = env_u64("SB_BARE_WORKERS", 0)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let (bare_pid, mut bare_out) = procs.helper(
        "bare-proxy",
        &[
            (ROLE_UPSTREAM, up_addr.to_string()),
            (ROLE_WORKERS, workers.to_string()),
        ],
    );
    let bare_addr = read_addr("bare-proxy", &mut bare_out);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut bare_out, &mut std::io::sink());
    });
    let mut targets = vec![
        Target {
            name: "direct".to_owned(),
            addr: up_addr,
            pid: None,
            streams: true,
        },
        Target {
            name: "bare_proxy".to_owned(),
            addr: bare_addr,
            pid: Some(bare_pid),
            streams: true,
        },
    ];
    if !modes.is_empty() {
        let bin = switchboard_bin();
        for mode in modes {
            let (pid, addr) = procs.gateway(&bin, mode, up_addr);
            targets.push(Target {
                name: mode.name.clone(),
                addr,
                pid: Some(pid),
                streams: mode.miss,
            });
        }
    }
    let pids = Pids {
        upstream: up_pid,
        client: std::process::id(),
    };
    (targets, stamps, pids)
}

/// The binary: `SB_SWITCHBOARD_BIN`, else the one cargo built with this bench.
pub(crate) fn switchboard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SB_SWITCHBOARD_BIN") {
        return PathBuf::from(p);
    }
    match option_env!("CARGO_BIN_EXE_switchboard") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "the switchboard binary was not built with this bench (it needs the default \
             feature `server`); set SB_SWITCHBOARD_BIN or SB_BINARY_MODES=\"\""
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// CPU time

/// A process's user + system CPU time so far, in clock ticks (`/proc/PID/stat` fields 14 and
/// 15, every thread, live or exited), or `None` where that file does not exist.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's busy (user, nice, system, irq, softirq, steal) and total CPU ticks so far,
/// over every core (the `cpu` line of `/proc/stat`), or `None` where that file does not exist.
pub(crate) fn machine_ticks() -> Option<[u64; 2]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = f[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some([busy, busy + idle + iowait])
}

/// Seconds per clock tick (`getconf CLK_TCK`, 100 if that fails: Linux's `USER_HZ`).
pub(crate) fn tick_seconds() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0);
    1.0 / hz
}
