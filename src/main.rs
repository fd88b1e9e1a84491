//! The `dialback` command line: `run`, `check`, and the tools around them.
//!
//! Exit codes: 0 success, 2 bad configuration or usage, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing::{error, info};

/// dialback: SIP dial-back gate for remote maintenance.
#[derive(Parser, Debug)]
#[command(name = "dialback", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gate with a dialplan: register the trunks and serve until SIGINT/SIGTERM.
    Run {
        /// Dialplan file (JSON).
        #[arg(long, short, env = "DIALBACK_CONFIG")]
        config: PathBuf,
    },
    /// Validate a dialplan without starting: prints `ok` (and warnings) or the errors.
    Check {
        /// Dialplan file (JSON).
        file: PathBuf,
    },
    /// The whole loop on loopback, no PBX and no setup: the gate and an administrator in one
    /// process; MAINTAIN-1, callback, modem training, console login, status, quit.
    Demo {
        /// v22bis (2400 bit/s) or v22 (1200 bit/s).
        #[arg(long, default_value = "v22bis")]
        modulation: String,
    },
    /// Hash a secret for the dialplan. Reads it from the terminal without echo, or the first
    /// line of stdin. Without options: the argon2id string for a DTMF PIN (`admins[].pin`).
    /// With --realm and --user: the digest HA1 values for a SIP password (`admins[].digest`).
    HashSecret {
        /// Digest realm (the gate's `security.realm`).
        #[arg(long, requires = "user")]
        realm: Option<String>,
        /// Digest username (the administrator's ID).
        #[arg(long, requires = "realm")]
        user: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Run { config } => run(&config),
        Command::HashSecret { realm, user } => hash_secret(realm, user),
        Command::Demo { modulation } => demo(&modulation),
    }
}

fn demo(modulation: &str) -> ExitCode {
    use dialback::modem::v22bis::Rate;
    use dialback::runtime::modem_media::LineModem;
    let (modem, rate) = match modulation {
        "v22bis" => (LineModem::V22bis, Rate::R2400),
        "v22" => (LineModem::V22bis, Rate::R1200),
        "v21" => (LineModem::V21, Rate::R1200),
        "bell103" => (LineModem::Bell103, Rate::R1200),
        other => {
            eprintln!("dialback: --modulation {other}: choose v22bis, v22, v21 or bell103");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dialback::runtime::demo::run(modem, rate)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialback demo failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn hash_secret(realm: Option<String>, user: Option<String>) -> ExitCode {
    use std::io::IsTerminal;
    let what = if realm.is_some() {
        "SIP password"
    } else {
        "PIN"
    };
    let secret = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{what}: "))
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    };
    let secret = match secret {
        Ok(s) => dialback::gate::Secret::new(s.trim_end_matches(['\r', '\n'])),
        Err(e) => {
            eprintln!("dialback: cannot read the secret: {e}");
            return ExitCode::from(1);
        }
    };
    match (realm, user) {
        (Some(realm), Some(user)) => {
            let (md5, sha256) = dialback::gate::pin::digest_ha1s(&user, &realm, &secret);
            let out = serde_json::json!({ "realm": realm, "ha1_md5": md5, "ha1_sha256": sha256 });
            println!("{out}");
            ExitCode::SUCCESS
        }
        _ => match dialback::gate::pin::hash_pin(&secret, &mut rand::rngs::OsRng) {
            Ok(phc) => {
                println!("{phc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dialback: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn check(file: &std::path::Path) -> ExitCode {
    match dialback::config::load(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}

fn run(config: &std::path::Path) -> ExitCode {
    init_logging();
    let loaded = match dialback::config::load(config) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        let specs = dialback::runtime::plan::trunk_specs(&loaded.dialplan)
            .await
            .map_err(|e| (2u8, e.to_string()))?;
        use dialback::runtime::gate::{Gate, GateSetupError};
        let gate = Gate::from_dialplan(&loaded.dialplan).map_err(|e| match e {
            GateSetupError::Policy(_) => (2u8, e.to_string()),
            _ => (1u8, e.to_string()),
        })?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("signal received");
            let _ = tx.send(true);
        });
        dialback::runtime::run(specs, gate, rx)
            .await
            .map_err(|e| (1u8, e.to_string()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            error!("{msg}");
            eprintln!("dialback: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
