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
    /// The administrator's end: register at a PBX (or listen directly), send the start signal
    /// (SIP MESSAGE or a DTMF call), take the gate's callback, train the answering modem and
    /// connect this terminal to the console (raw mode on a TTY; stdin/stdout as pipes
    /// otherwise). Every option can also come from DIALBACK_DIALIN_<NAME> or the --config
    /// file. Secrets never come from flags: DIALBACK_DIALIN_PBX_PASSWORD,
    /// DIALBACK_DIALIN_PASSWORD, DIALBACK_DIALIN_PIN, the *_file settings, or a prompt.
    DialIn(Box<DialInArgs>),
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

/// `dial-in` options (each also `DIALBACK_DIALIN_<NAME>`; flags win over env over the file).
#[derive(clap::Args, Debug)]
struct DialInArgs {
    /// Settings file (JSON; keys as the long options with `_`, e.g. `callback_from`).
    #[arg(long, env = "DIALBACK_DIALIN_CONFIG")]
    config: Option<PathBuf>,
    /// Local SIP address IP:PORT (required without --registrar).
    #[arg(long, env = "DIALBACK_DIALIN_LISTEN")]
    listen: Option<String>,
    /// PBX registrar URI (sip:IP[:PORT]); absent: no PBX, listen directly.
    #[arg(long, env = "DIALBACK_DIALIN_REGISTRAR")]
    registrar: Option<String>,
    /// Outbound proxy URI (default: the registrar).
    #[arg(long, env = "DIALBACK_DIALIN_OUTBOUND_PROXY")]
    outbound_proxy: Option<String>,
    /// The administrator's number (AOR user, Contact user).
    #[arg(long, env = "DIALBACK_DIALIN_USER")]
    user: Option<String>,
    /// Full AOR (default sip:USER@REGISTRAR-HOST).
    #[arg(long, env = "DIALBACK_DIALIN_AOR")]
    aor: Option<String>,
    /// PBX digest username (default: --user).
    #[arg(long, env = "DIALBACK_DIALIN_AUTH_USER")]
    auth_user: Option<String>,
    /// File whose first line is the PBX password.
    #[arg(long, env = "DIALBACK_DIALIN_PBX_PASSWORD_FILE")]
    pbx_password_file: Option<PathBuf>,
    /// Registration expiry in seconds (default 300).
    #[arg(long, env = "DIALBACK_DIALIN_EXPIRES_S")]
    expires_s: Option<u32>,
    /// The gate's number as a URI (e.g. sip:gate-admin@PBX).
    #[arg(long, env = "DIALBACK_DIALIN_GATE")]
    gate: Option<String>,
    /// The administrator's ID at the gate.
    #[arg(long, env = "DIALBACK_DIALIN_ADMIN_ID")]
    admin_id: Option<String>,
    /// The administrator recognition digit.
    #[arg(long, env = "DIALBACK_DIALIN_DIGIT")]
    digit: Option<u8>,
    /// File whose first line is the SIP password at the gate (MESSAGE path).
    #[arg(long, env = "DIALBACK_DIALIN_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// File whose first line is the PIN (DTMF path).
    #[arg(long, env = "DIALBACK_DIALIN_PIN_FILE")]
    pin_file: Option<PathBuf>,
    /// How the signal goes: message (default) or dtmf.
    #[arg(long, env = "DIALBACK_DIALIN_VIA")]
    via: Option<String>,
    /// DTMF as in-band tones in the audio instead of RFC 4733 events.
    #[arg(long, env = "DIALBACK_DIALIN_INBAND")]
    inband: bool,
    /// MESSAGE signal pattern (default MAINTAIN-{digit}).
    #[arg(long, env = "DIALBACK_DIALIN_SIGNAL_TEXT")]
    signal_text: Option<String>,
    /// DTMF signal pattern (default *62468246*{digit}#).
    #[arg(long, env = "DIALBACK_DIALIN_SIGNAL_DTMF")]
    signal_dtmf: Option<String>,
    /// The gate's originate trunk as the callback's From user (e.g. gate-out) or From URI.
    #[arg(long, env = "DIALBACK_DIALIN_CALLBACK_FROM")]
    callback_from: Option<String>,
    /// Source the callback must come from (IP or IP:PORT; default: the PBX's IP, else the
    /// gate's).
    #[arg(long, env = "DIALBACK_DIALIN_CALLBACK_SOURCE")]
    callback_source: Option<String>,
    /// v22bis (default), v22, v21 or bell103.
    #[arg(long, env = "DIALBACK_DIALIN_MODULATION")]
    modulation: Option<String>,
    /// Seconds to wait for the callback (default 60).
    #[arg(long, env = "DIALBACK_DIALIN_WAIT_S")]
    wait_s: Option<u64>,
    /// Seconds from answer to CONNECT before giving up (default 30).
    #[arg(long, env = "DIALBACK_DIALIN_CONNECT_S")]
    connect_s: Option<u64>,
    /// Print each SIP message's start line on stderr.
    #[arg(long, env = "DIALBACK_DIALIN_LADDER")]
    ladder: bool,
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
        Command::DialIn(args) => dial_in(*args),
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

fn dial_in(a: DialInArgs) -> ExitCode {
    use dialback::runtime::dialin::{self, DialInFile};
    let flags = DialInFile {
        listen: a.listen,
        registrar: a.registrar,
        outbound_proxy: a.outbound_proxy,
        user: a.user,
        aor: a.aor,
        auth_user: a.auth_user,
        pbx_password_file: a.pbx_password_file,
        expires_s: a.expires_s,
        gate: a.gate,
        admin_id: a.admin_id,
        digit: a.digit,
        password_file: a.password_file,
        pin_file: a.pin_file,
        via: a.via,
        inband: a.inband.then_some(true),
        signal_text: a.signal_text,
        signal_dtmf: a.signal_dtmf,
        callback_from: a.callback_from,
        callback_source: a.callback_source,
        modulation: a.modulation,
        wait_s: a.wait_s,
        connect_s: a.connect_s,
        ladder: a.ladder.then_some(true),
    };
    let file = match a.config.as_deref().map(dialin::load_file).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("dialback dial-in: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match dialin::resolve(flags.over(file)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dialback dial-in: {e}");
            return ExitCode::from(2);
        }
    };
    let secrets = match dialin::read_secrets(&settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dialback dial-in: {e}");
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
    let result = rt.block_on(dialin::run(settings, secrets));
    // A blocking stdin read may still be parked on a runtime thread: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialback dial-in: {e}");
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
            dialback::runtime::wait_for_signal().await;
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
