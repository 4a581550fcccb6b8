//! The TypeScript SDK's protobuf code (`sdk-ts/gen/`, committed), generated
//! from the same `proto/proto/` by `@bufbuild/protoc-gen-es` driven by the
//! npm-installed `@bufbuild/buf` (`sdk-ts/buf.gen.yaml`).
//!
//! The work is done by `sdk-ts/scripts/codegen.mjs` (`npm run codegen` and
//! `npm run codegen:check`), which generates into a temporary directory and
//! then writes or compares `sdk-ts/gen/` like the Rust side does. This module
//! installs the SDK's locked npm packages first when they are missing
//! (`npm ci`), runs the script and maps its exit status: 0 up to date, 1
//! stale (check mode), anything else a failure.

use std::path::Path;
use std::process::Command;

use super::{Error, Mode, Outcome};

/// The SDK's folder, relative to the workspace root.
const SDK_DIR: &str = "sdk-ts";

/// Tools the script needs from `node_modules/.bin`.
const TOOLS: [&str; 2] = ["buf", "protoc-gen-es"];

/// Generates (or checks) `sdk-ts/gen/`.
pub(crate) fn run(root: &Path, mode: Mode) -> Result<Outcome, Error> {
    let dir = root.join(SDK_DIR);
    let bin = dir.join("node_modules").join(".bin");
    if TOOLS.iter().any(|tool| !bin.join(tool).is_file()) {
        println!("codegen: installing {SDK_DIR}'s locked npm packages (npm ci)");
        let status = npm(&dir, &["ci", "--no-audit", "--no-fund", "--loglevel=error"])?;
        if status != Some(0) {
            return Err(Error::Npm(format!(
                "`npm ci` in {SDK_DIR}/ failed (status {status:?})"
            )));
        }
    }
    let script = match mode {
        Mode::Write => "codegen",
        Mode::Check => "codegen:check",
    };
    match npm(&dir, &["run", "--silent", script])? {
        Some(0) => Ok(Outcome::UpToDate),
        Some(1) if mode == Mode::Check => Ok(Outcome::Stale),
        status => Err(Error::Npm(format!(
            "`npm run {script}` in {SDK_DIR}/ failed (status {status:?})"
        ))),
    }
}

/// Runs `npm args` in `dir`; its output goes to ours. The exit status, or
/// None when a signal ended it.
fn npm(dir: &Path, args: &[&str]) -> Result<Option<i32>, Error> {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|source| {
            Error::Npm(format!(
                "cannot run npm ({source}); the TypeScript SDK's codegen needs Node.js >= 20 and npm"
            ))
        })?;
    Ok(status.code())
}
