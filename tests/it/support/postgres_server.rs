//! A PostgreSQL server started by the test itself, for the request log's tests. `initdb`
//! refuses to run as root, so as root the server runs as `nobody` (through `setpriv`), in a
//! temporary directory that user owns, on a free loopback port; it is stopped on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A PostgreSQL server of our own, stopped (and its directory removed) on drop.
pub struct PostgresServer {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    pub url: String,
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `cmd` as the unprivileged user when we are root.
fn command(bin: &std::path::Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]);
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// Starts a server, or returns None (printing why) when PostgreSQL is not installed, unless
/// `SWITCHBOARD_REQUIRE_POSTGRES=1`, which turns that into a failure.
pub fn start() -> Option<PostgresServer> {
    let Some(bin) = bin_dir() else {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "SWITCHBOARD_REQUIRE_POSTGRES=1 but PostgreSQL is not installed"
        );
        eprintln!("skipping PostgreSQL test: PostgreSQL is not installed");
        return None;
    };
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchboard-pg-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    if is_root() {
        let ok = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown of the PostgreSQL dir");
    }
    let data = dir.join("data");
    let out = command(&bin.join("initdb"))
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = PostgresServer {
        child: None,
        bin,
        dir,
        port,
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    };
    server.resume();
    Some(server)
}

impl PostgresServer {
    /// Stops the server (fast shutdown), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            for _ in 0..1000 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data and port.
    pub fn resume(&mut self) {
        let child = command(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        // Bounded wait for the port, then for the server to take queries.
        for _ in 0..1000 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("postgres did not start on port {}", self.port);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
