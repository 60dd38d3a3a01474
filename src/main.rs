//! The `mako-gateway` binary: a thin wrapper around [`mako_gateway::cli`].

fn main() -> std::process::ExitCode {
    mako_gateway::cli::main()
}
