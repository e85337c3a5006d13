//! The `modstate` command: parse arguments, run, map the outcome to an exit code.

mod cli;
mod mcp;

fn main() {
    std::process::exit(cli::main());
}
