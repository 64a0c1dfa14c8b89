//! How the crate treats the user's files: atomic writes with the usual modes, nothing left
//! behind, symbolic links written through, devices refused, outputs checked against inputs
//! and locked against a second run.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use sae::files::{write_with, FilePlan, WriteLock};
use sae::Error;

fn write_text(path: &Path, text: &str) -> sae::Result<()> {
    write_with(path, |w| std::io::Write::write_all(w, text.as_bytes()).map_err(|e| e.to_string()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The process's umask (read without changing it, so parallel tests are not disturbed).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

#[test]
fn a_new_file_gets_mode_0666_less_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.txt");
    write_text(&path, "hello").unwrap();
    assert_eq!(mode(&path), 0o666 & !umask());
    assert_eq!(fs::read_to_string(&path).unwrap(), "hello");
}

#[test]
fn a_replaced_file_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.txt");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    write_text(&path, "new").unwrap();
    assert_eq!(mode(&path), 0o640);
    assert_eq!(fs::read_to_string(&path).unwrap(), "new");
}

#[test]
fn a_symbolic_link_is_written_through_and_stays_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let (target, link) = (dir.path().join("target.txt"), dir.path().join("link.txt"));
    fs::write(&target, "old").unwrap();
    symlink("target.txt", &link).unwrap();
    write_text(&link, "new").unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap(), "new");
}

#[test]
fn devices_directories_and_dangling_links_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let dangling = dir.path().join("dangling");
    symlink("missing", &dangling).unwrap();
    for (path, kind) in [
        (Path::new("/dev/null"), "a character device"),
        (dir.path(), "a directory"),
        (dangling.as_path(), "a symbolic link to a missing file"),
    ] {
        let err = write_text(path, "x").unwrap_err();
        assert!(matches!(err, Error::BadOutput { .. }) && err.to_string().contains(kind), "{path:?}: {err}");
    }
    assert!(!fs::metadata("/dev/null").unwrap().file_type().is_file());
    assert_eq!(entries(dir.path()), vec!["dangling"]);
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.txt");
    write_with(&path, |_| Err("disk full".into())).unwrap_err();
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_killed_writers_temporary_file_is_removed_by_the_next_write_to_the_same_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    // What a writer killed mid-write leaves: its temporary file, no longer locked, named after
    // a process that no longer runs (above Linux's largest pid).
    fs::write(dir.path().join(".model.safetensors.sae-tmp.4194305.0"), vec![0u8; 1000]).unwrap();
    // Another target's temporary file, a live writer's (locked, or just created and not yet
    // locked), and a FIFO that happens to have such a name are not touched.
    fs::write(dir.path().join(".other.npy.sae-tmp.4194305.0"), b"x").unwrap();
    let locked = dir.path().join(".model.safetensors.sae-tmp.4194306.0");
    let locked_file = fs::File::create(&locked).unwrap();
    locked_file.try_lock().unwrap();
    let live = format!(".model.safetensors.sae-tmp.{}.999", std::process::id());
    fs::write(dir.path().join(&live), b"x").unwrap();
    let fifo = dir.path().join(".model.safetensors.sae-tmp.4194305.1");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    write_text(&path, "done").unwrap();
    let mut kept = vec![
        ".model.safetensors.sae-tmp.4194305.1",
        ".model.safetensors.sae-tmp.4194306.0",
        live.as_str(),
        ".other.npy.sae-tmp.4194305.0",
        "model.safetensors",
    ];
    kept.sort();
    assert_eq!(entries(dir.path()), kept);
}

#[test]
fn a_second_lock_on_the_same_path_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    let held = WriteLock::acquire(&path).unwrap();
    let err = WriteLock::acquire(&path).unwrap_err();
    assert!(matches!(err, Error::InUse { holder: Some(pid), .. } if pid == std::process::id()), "{err}");
    drop(held);
    assert!(entries(dir.path()).is_empty(), "the lock file goes with the lock");
    WriteLock::acquire(&path).unwrap();
}

#[test]
fn an_output_naming_an_input_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("X.npy");
    fs::write(&data, "data").unwrap();
    let err = FilePlan::new().input("--data", &data).output("--output", &data).check().unwrap_err();
    assert!(matches!(err, Error::FileClash { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("--output") && message.contains("--data") && message.contains("X.npy"), "{message}");
    assert_eq!(fs::read_to_string(&data).unwrap(), "data");
}

#[test]
fn an_output_reaching_an_input_through_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("X.npy");
    fs::write(&data, "data").unwrap();
    fs::hard_link(&data, dir.path().join("hard.npy")).unwrap();
    symlink(&data, dir.path().join("soft.npy")).unwrap();
    for other in ["hard.npy", "soft.npy", "./X.npy"] {
        let plan = FilePlan::new().input("--data", &data).output("-o", dir.path().join(other));
        assert!(matches!(plan.check(), Err(Error::FileClash { .. })), "{other}");
    }
}

#[test]
fn two_outputs_naming_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let same = dir.path().join(".").join("m.safetensors");
    let err = FilePlan::new().output("--output", &model).output("--checkpoint", &same).check().unwrap_err();
    assert!(err.to_string().contains("--checkpoint") && err.to_string().contains("--output"), "{err}");
}

#[test]
fn an_output_in_a_missing_folder_is_refused_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("m.safetensors");
    let err = FilePlan::new().output("--output", &path).check().unwrap_err();
    assert!(err.to_string().contains("missing-dir") && err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn an_npy_output_inside_a_folder_of_input_shards_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FilePlan::new().input("--data", dir.path()).output("--output", dir.path().join("codes.npy"));
    assert!(plan.check().is_err());
    let plan = FilePlan::new().input("--data", dir.path()).output("--output", dir.path().join("m.safetensors"));
    assert!(plan.check().is_ok());
}

#[test]
fn checked_outputs_stay_locked_while_the_plan_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let locks = FilePlan::new().output("--output", &model).check().unwrap();
    assert!(matches!(FilePlan::new().output("-o", &model).check(), Err(Error::InUse { .. })));
    drop(locks);
    assert!(FilePlan::new().output("-o", &model).check().is_ok());
}

#[test]
fn a_resumed_checkpoint_may_be_updated_by_the_checkpoint_option_only() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    fs::write(&checkpoint, "state").unwrap();
    let resumed = || FilePlan::new().input_replaced_by("--resume", &checkpoint, "--checkpoint");
    assert!(resumed().output("--checkpoint", &checkpoint).check().is_ok());
    let err = resumed().output("--output", &checkpoint).check().unwrap_err();
    assert!(err.to_string().contains("--output") && err.to_string().contains("--resume"), "{err}");
}

#[test]
fn a_symbolic_link_in_place_of_the_lock_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.npy");
    fs::write(&data, "precious").unwrap();
    symlink(&data, dir.path().join(".m.safetensors.sae-lock")).unwrap();
    assert!(WriteLock::acquire(&dir.path().join("m.safetensors")).is_err());
    assert_eq!(fs::read_to_string(&data).unwrap(), "precious");
}

#[test]
fn an_npy_output_linked_into_a_folder_of_input_shards_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    fs::create_dir(&shards).unwrap();
    fs::write(shards.join("000.npy"), "shard").unwrap();
    let link = dir.path().join("out.bin");
    symlink(shards.join("000.npy"), &link).unwrap();
    assert!(FilePlan::new().input("--data", &shards).output("--output", &link).check().is_err());
    assert_eq!(fs::read_to_string(shards.join("000.npy")).unwrap(), "shard");
}
