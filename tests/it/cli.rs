//! The command line outside the server: how a command behaves toward the pipe it prints to.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::harness::server_bin;

/// A reader that closes the pipe early (`file-service summarize FILE | head`) ends the
/// command quietly, with success: no panic, no error text.
#[test]
fn a_closed_pipe_ends_a_command_quietly_with_success() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.csv");
    // A profile far larger than a pipe's buffer: the write that outlives the reader fails.
    let header: Vec<String> = (0..1_000).map(|i| format!("column_{i}")).collect();
    let mut csv = header.join(",") + "\n";
    for r in 0..20 {
        let row: Vec<String> = (0..1_000).map(|i| format!("{}", r * i)).collect();
        csv.push_str(&(row.join(",") + "\n"));
    }
    std::fs::write(&path, csv).unwrap();
    let mut child = Command::new(server_bin())
        .args(["summarize", "--json"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("the first bytes of the profile");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "stderr: {stderr}"
    );
    assert!(out.status.success(), "{:?}; stderr: {stderr}", out.status);
}
