//! The `skywire` binary: dispatches on argv[0] (multicall) to the command trees in `cli`.

fn main() {
    let code = skywire::cli::main(std::env::args().collect());
    std::process::exit(code);
}
