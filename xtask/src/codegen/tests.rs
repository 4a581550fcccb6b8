use std::fs;
use std::path::{Path, PathBuf};

use super::{DESCRIPTOR_FILE, Error, Files, HEADER, diff, generate, write};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn real_files() -> Files {
    generate(&root().join("proto/proto")).expect("the workspace protos compile")
}

#[test]
fn generates_one_file_per_package_plus_descriptor() {
    let files = real_files();
    let names: Vec<_> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            DESCRIPTOR_FILE,
            "pike.api.v1.rs",
            "pike.channel.v1.rs",
            "pike.tunnel.v1.rs"
        ]
    );
    for (name, contents) in &files {
        if name.ends_with(".rs") {
            assert!(
                contents.starts_with(HEADER.as_bytes()),
                "{name} lacks the header"
            );
        }
    }
    assert!(!files[DESCRIPTOR_FILE].is_empty());
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(real_files(), real_files());
}

/// The committed output matches the sources (the same check as
/// `cargo xtask codegen --check`).
#[test]
fn committed_output_is_fresh() {
    let diff = diff(&root().join("proto/src/gen"), &real_files()).unwrap();
    assert!(
        diff.is_empty(),
        "generated code is stale, run `cargo xtask codegen`:\n{diff}"
    );
}

#[test]
fn write_updates_only_changed_files_and_removes_extra_ones() {
    let files = real_files();
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");

    let created = write(&gen_dir, &files).unwrap();
    assert_eq!(created.len(), files.len());
    assert!(created.iter().all(|(verb, _)| *verb == "created"));
    assert!(diff(&gen_dir, &files).unwrap().is_empty());
    assert!(
        write(&gen_dir, &files).unwrap().is_empty(),
        "nothing to rewrite"
    );

    fs::write(gen_dir.join("pike.tunnel.v1.rs"), "// edited by hand\n").unwrap();
    fs::write(gen_dir.join("old.v1.rs"), "// no longer generated\n").unwrap();
    fs::remove_file(gen_dir.join(DESCRIPTOR_FILE)).unwrap();
    let stale = diff(&gen_dir, &files).unwrap();
    assert_eq!(stale.stale, ["pike.tunnel.v1.rs"]);
    assert_eq!(stale.missing, [DESCRIPTOR_FILE]);
    assert_eq!(stale.extra, ["old.v1.rs"]);

    let mut changes = write(&gen_dir, &files).unwrap();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("created", DESCRIPTOR_FILE.to_owned()),
            ("removed", "old.v1.rs".to_owned()),
            ("updated", "pike.tunnel.v1.rs".to_owned()),
        ]
    );
    assert!(diff(&gen_dir, &files).unwrap().is_empty());
}

#[test]
fn missing_directory_reports_every_file_missing() {
    let files = real_files();
    let dir = tempfile::tempdir().unwrap();
    let diff = diff(&dir.path().join("absent"), &files).unwrap();
    assert_eq!(diff.missing.len(), files.len());
    assert!(diff.stale.is_empty() && diff.extra.is_empty());
}

#[test]
fn bad_proto_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a")).unwrap();
    fs::write(
        dir.path().join("a/b.proto"),
        "syntax = \"proto3\";\npackage a;\nmessage B { uint32 x = 1 }\n",
    )
    .unwrap();
    let error = generate(dir.path()).unwrap_err();
    assert!(matches!(error, Error::Compile(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("a/b.proto:3:26:"), "{message}");
}

#[test]
fn no_protos_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = generate(dir.path()).unwrap_err();
    assert!(matches!(error, Error::NoProtoFiles(_)), "{error:?}");
}
