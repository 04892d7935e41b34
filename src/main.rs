//! The `benchflow` binary: everything lives in the library; see `benchflow::cli`.

fn main() -> std::process::ExitCode {
    benchflow::main()
}
