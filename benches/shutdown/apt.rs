//! Debian packages a run asks for (`--install`): wrk, Go.

use std::process::{Command, Stdio};

/// Installs Debian packages with apt-get: as root, or through `sudo -n`.
///
/// # Errors
///
/// apt-get is not there, or failed.
pub fn install(packages: &[&str]) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command
            .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("apt-get: {e}"))
    };
    apt(&["update"])?;
    let status = apt(&[&["install", "-y", "--no-install-recommends"][..], packages].concat())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install {} failed ({status})",
            packages.join(" ")
        ))
    }
}
