//! The seed's Go program (`benches/versus_go/seed.go`: `signal.NotifyContext` +
//! `http.Server.Shutdown`), built with the Go toolchain when there is one.
//!
//! Built into the scratch folder under the target directory, with a Go build cache of its
//! own there, so nothing is written outside it. `install` puts Debian's `golang-go` on the
//! machine, for a run that asks for it (`--install`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Go source, beside this bench.
pub fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/versus_go/seed.go")
}

/// `go version`, or `None` without a Go toolchain.
pub fn version() -> Option<String> {
    let out = Command::new("go").arg("version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the seed into `dir`; `Ok(None)` without a Go toolchain.
///
/// # Errors
///
/// The build failed: the program does not compile with the Go found.
pub fn build(dir: &Path) -> Result<Option<PathBuf>, String> {
    if version().is_none() {
        return Ok(None);
    }
    let binary = dir.join("seed");
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(source())
        .env("GOCACHE", dir.join("go-cache"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("go build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "go build {} failed: {}",
            source().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Some(binary))
}

/// Installs Debian's `golang-go` (as root, or through `sudo -n`).
///
/// # Errors
///
/// apt-get failed or is not there.
pub fn install() -> Result<(), String> {
    crate::apt::install(&["golang-go"])
}
