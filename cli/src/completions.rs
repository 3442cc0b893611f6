//! `tcbot completions SHELL`: the shell completion script, generated from the same command
//! definitions as the help.

use clap::CommandFactory;

/// Print a shell completion script (e.g. `tcbot completions bash > /etc/bash_completion.d/tcbot`)
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

pub fn run(a: &Args) {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "tcbot", &mut std::io::stdout());
}
