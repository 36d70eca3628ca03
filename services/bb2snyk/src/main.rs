//! `bb2snyk`: the operator command (see the library for the commands).

fn main() -> std::process::ExitCode {
    bb2snyk::main()
}
