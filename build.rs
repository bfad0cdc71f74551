//! Records the commit the binary is built from, for `siem-agent --version`:
//! `SIEM_AGENT_COMMIT` from the environment when set (a build from a source
//! tarball can pass it), else `git rev-parse --short=12 HEAD`, else
//! `unknown`. Rebuilds when the checked-out commit changes.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SIEM_AGENT_COMMIT");
    let commit = std::env::var("SIEM_AGENT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SIEM_AGENT_COMMIT={}", commit.trim());
}

/// The short hash of `HEAD`, watching the files that move it.
fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let git_dir = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok());
    if let Some(git_dir) = git_dir {
        let git_dir = Path::new(git_dir.trim());
        // HEAD names the branch; the branch's ref (loose or packed) names
        // the commit.
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
            if let Some(branch) = head.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed={}", git_dir.join(branch).display());
            }
        }
        println!(
            "cargo:rerun-if-changed={}",
            git_dir.join("packed-refs").display()
        );
    }
    String::from_utf8(output.stdout).ok()
}
