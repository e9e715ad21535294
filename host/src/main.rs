//! The `httpsd` binary: parses the command line and hands over to the library.

use clap::Parser;
use httpsd::cli::commands::{self, block_on};
use httpsd::cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    httpsd::cli::init_logging(cli.log_level, cli.log_format);
    commands::raise_fd_limit();
    match cli.command {
        // The server's threads are the seed's --threads; workers and check use one
        // thread per core.
        Command::Server(args) => block_on(args.http.threads, commands::server(args)),
        Command::Serve(args) => block_on(args.http.threads, commands::serve(args)),
        Command::Worker(args) => block_on(0, commands::worker(args)),
        Command::Check(args) => block_on(0, commands::check(args)),
        Command::New(args) => commands::new(&args),
        Command::CompileComponent(args) => args.run(),
    }
}
