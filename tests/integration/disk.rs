//! A full disk: the work directory on a small tmpfs, sized so that it fills at a different
//! moment of an e2e run each time (while the inputs are written, the engine starts, the load
//! records, the analysis draws its charts, the teardown records). What must always hold: no
//! panic; when the command ends no process it started is left running, whether or not it
//! succeeded; a failure says what could not be written; `teardown` on the still full disk
//! leaves nothing. Needs root to mount (CI runs as root); skipped with a message elsewhere.

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::support::{Project, tagged, text, wait_for};

const SCENARIO: &str =
    "platform: local\nengine:\n  kind: sim\n  profile: tiny/cpu\ntimeouts: { ready: 30s }\n";
const QUICK: &str = "seed: 3\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 40, arrival: constant, requests: 30 }\n";
const TAG: &str = "BENCHFLOW_DISK_TAG";

/// A tmpfs of `kib` KiB at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(Tmpfs(dir.to_path_buf())),
            false => Err(text(&out.stderr)),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_disk_that_fills_at_any_moment_of_a_run_leaves_no_engine_and_no_panic() {
    let p = Project::new("disk-full");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    if let Err(e) = Tmpfs::mount(&p.path("probe"), 64) {
        eprintln!("SKIPPED: a tmpfs cannot be mounted here ({e}); CI runs this as root");
        return;
    }
    // How much an uninterrupted run writes, then sizes from a sliver of it to all of it.
    let out = p.run(&["e2e", "-c", "sim", "-w", "quick", "--workdir", "ref", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let total: u64 = walk_size(&p.path("ref"));
    let mut failures = 0;
    for percent in [2, 5, 10, 20, 30, 45, 60, 75, 90, 97] {
        let kib = (total * percent / 100 / 1024).max(8);
        let mnt = p.path(&format!("full{percent}"));
        let _fs = Tmpfs::mount(&mnt, kib).unwrap();
        let tag = format!("{}-{percent}", std::process::id());
        let out = p
            .cmd(&["e2e", "-c", "sim", "-w", "quick", "--workdir", mnt.join("wd").to_str().unwrap(), "-q"])
            .env(TAG, &tag)
            .output()
            .unwrap();
        let said = text(&out.stderr);
        let code = out.status.code();
        assert!(out.status.signal().is_none() && code != Some(101), "{percent}% ({kib} KiB): {said}");
        assert!(!said.contains("panicked"), "{percent}% ({kib} KiB): {said}");
        wait_for(
            &format!("{percent}% ({kib} KiB): nothing of the run left, exit {code:?}: {said}"),
            Duration::from_secs(30),
            || tagged(TAG, &tag).is_empty(),
        );
        if code != Some(0) {
            failures += 1;
            assert!(
                said.contains("No space left on device") || said.contains("os error 28"),
                "{percent}% ({kib} KiB): a failure names the full disk: {said}"
            );
            // Teardown on the still full disk leaves nothing either, and says so.
            if mnt.join("wd/inputs/resolved.yaml").is_file() {
                let out =
                    p.cmd(&["teardown", mnt.join("wd").to_str().unwrap()]).env(TAG, &tag).output().unwrap();
                let said = text(&out.stderr);
                assert!(out.status.signal().is_none() && !said.contains("panicked"), "{said}");
                assert!(tagged(TAG, &tag).is_empty(), "{percent}%: teardown: {said}");
            }
        }
    }
    assert!(failures >= 3, "the disk filled in {failures} runs only: sizes too large for {total} bytes");
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk_size(&e.path()),
                    _ => e.metadata().map(|m| m.len().div_ceil(4096) * 4096).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}
