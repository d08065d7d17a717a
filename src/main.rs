//! `ptediff`: parse, call, print (see [`ptediff::cli`]).

fn main() -> std::process::ExitCode {
    ptediff::cli::main()
}
