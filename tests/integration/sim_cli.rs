//! The `benchflow sim` binary: first-line address, clean exit on signals, exit codes.

use std::{
    net::SocketAddr,
    process::{Child, Command},
    time::Duration,
};

use crate::support::{benchflow, completion};

/// The simulator binary and its socket address.
fn spawn_sim(args: &[&str]) -> (Child, SocketAddr) {
    let (child, url) = crate::support::spawn_sim(args);
    (child, url.trim_start_matches("http://").parse().unwrap())
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..500 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("benchflow sim did not exit");
}

#[tokio::test]
async fn serves_on_the_printed_address_and_exits_cleanly_on_sigterm() {
    let (mut child, addr) = spawn_sim(&["--profile", "tiny/cpu"]);
    let r =
        crate::support::request(addr, "POST", "/v1/completions", &[], Some(&completion("hello", 3))).await;
    assert_eq!(r.chunk_times().len(), 3);
    signal(&child, "-TERM");
    assert_eq!(wait(&mut child).code(), Some(0));

    let (mut child, addr) = spawn_sim(&["--profile", "tiny/cpu"]);
    assert_eq!(crate::support::request(addr, "GET", "/health", &[], None).await.status, 200);
    signal(&child, "-INT");
    assert_eq!(wait(&mut child).code(), Some(0));

    // A hangup (its terminal closed) too.
    let (mut child, addr) = spawn_sim(&["--profile", "tiny/cpu"]);
    assert_eq!(crate::support::request(addr, "GET", "/health", &[], None).await.status, 200);
    signal(&child, "-HUP");
    assert_eq!(wait(&mut child).code(), Some(0));
}

#[tokio::test]
async fn injected_exit_makes_the_process_fail() {
    let (mut child, addr) =
        spawn_sim(&["--profile", "tiny/cpu", "--set", "die_after=1", "--set", "die_mode=exit"]);
    let _ =
        crate::support::try_request(addr, "POST", "/v1/completions", &[], Some(&completion("x", 1))).await;
    let _ =
        crate::support::try_request(addr, "POST", "/v1/completions", &[], Some(&completion("x", 1))).await;
    assert_eq!(wait(&mut child).code(), Some(1));
}

#[test]
fn bad_configuration_exits_2_with_a_clear_message() {
    let out = benchflow().args(["sim", "--profile", "tiny/gpu"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown simulator profile `tiny/gpu`") && err.contains("tiny/cpu"), "{err}");

    let out = benchflow().args(["sim", "--set", "max_num_seq=4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `max_num_seqs`"));

    let dir = std::env::temp_dir().join(format!("benchflow-sim-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.yaml");
    std::fs::write(&file, "model: m\nmax_num_seqs: many\n").unwrap();
    let out = benchflow().args(["sim", "--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yaml:2"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lists_the_shipped_profiles() {
    let out = benchflow().args(["sim", "--list-profiles"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for p in ["llama-3.1-8b/h100", "tiny/cpu"] {
        assert!(text.lines().any(|l| l == p), "{text}");
    }
}
