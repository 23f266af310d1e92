//! Shell completions and the man page, generated from the kubelet's clap command (the same
//! flag set the binary parses). Run by `scripts/package.sh`:
//! `cargo run -p kubelet-config --example dist_assets -- OUTDIR`.

use clap_complete::Shell;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "dist".into()));
    std::fs::create_dir_all(&out)?;
    let mut cmd = kubelet_config::flags::command();
    for (shell, file) in [
        (Shell::Bash, "kubelet.bash"),
        (Shell::Zsh, "_kubelet"),
        (Shell::Fish, "kubelet.fish"),
    ] {
        let mut f = std::fs::File::create(out.join(file))?;
        clap_complete::generate(shell, &mut cmd, "kubelet", &mut f);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    std::fs::write(out.join("kubelet.1"), page)?;
    Ok(())
}
