//! `pike`: the command-line tool (see `pike --help`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    pike_server::cli::main_with(pike_server::cli::Cli::parse())
}
