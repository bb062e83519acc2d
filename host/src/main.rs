//! The `wasmonkey` command.

fn main() -> std::process::ExitCode {
    wasmonkey::cli::main()
}
