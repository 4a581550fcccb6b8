//! `pike-server`: the reference Pike gateway.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("pike-server: not yet implemented (the gateway lands with the gateway issue)");
    std::process::exit(2);
}
