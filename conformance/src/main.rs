//! `vdisim`: the command-line edge of the project. Errors become messages
//! and exit codes here (anyhow); the libraries use typed errors.
//!
//! Exit status: 0 when nothing violated the specification, 1 when something
//! did, 2 for bad arguments or unreadable input. `vdisim sqlcmd` exits as
//! sqlcmd does (its module docs).
//!
//! Standard output that goes away (`vdisim serve --status | head -c1`, a
//! pager quit early) ends the process quietly with status 141, what a
//! shell reports for a process ended by SIGPIPE, as a C tool's would: no
//! message, no backtrace, and a pipeline under `set -o pipefail` still
//! learns that the output was cut short. Any other failure to write
//! standard output is reported on standard error, status 2. Writes to
//! standard error that fail are ignored.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vdi_conformance::commands;
use vdi_conformance::scenario;
use vdi_conformance::simulate::{SimulateArgs, faults_help, run_simulate};

#[derive(Parser)]
#[command(
    name = "vdisim",
    version,
    about = "Deterministic simulator and conformance harness for the SQL Server Virtual Device Interface",
    after_help = "Exit status: 0 nothing violated the specification; 1 something did; 2 bad arguments or input."
)]
struct Cli {
    /// Scenario directory (default: $VDISIM_SCENARIOS or the built-in catalog).
    #[arg(long, global = true)]
    scenarios: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one simulated world on the built-in model and summarise it.
    Simulate(SimulateArgs),
    /// List the scenario catalog (or the clause catalog, or the profile parameters).
    List {
        /// Keep cases whose id or clauses contain any of these comma-separated words.
        #[arg(long)]
        filter: Option<String>,
        /// List the clause catalog instead.
        #[arg(long)]
        clauses: bool,
        /// List the profile parameters and their defaults instead.
        #[arg(long)]
        profile: bool,
    },
    /// Run the catalog against a backend and write the reports.
    Run {
        /// Backend(s) to run, comma-separated. `model`: the deterministic
        /// model; its `abi` cases are also staged through the binary
        /// interface of the stand-in built into vdisim (in process).
        #[arg(long, default_value = "model", value_delimiter = ',')]
        backend: Vec<String>,
        #[arg(long)]
        filter: Option<String>,
        /// Extra seeds 1..=N for every case, besides its own (at most 10000).
        #[arg(long, default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=vdi_spec::bounds::RUN_SEEDS_MAX))]
        seeds: u64,
        /// Where report.json, junit.xml, summary.md and index.html go.
        #[arg(long, default_value = "vdisim-report")]
        report_dir: PathBuf,
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// The SQL Server the `sqlserver` backend (and the `windows`
        /// backend, when given) drives over TDS: tcp:HOST,PORT (default:
        /// $VDISIM_SQLSERVER, which may also be an ADO.NET string).
        #[arg(long, value_name = "tcp:HOST,PORT")]
        sql_server: Option<String>,
        /// The login for --sql-server, NAME:PASSWORD (default sa:vdisim,
        /// vdisim serve's default login).
        #[arg(long, value_name = "NAME:PASSWORD")]
        login: Option<String>,
        /// The `replay` backend's directory of recordings (`*.jsonl` of the
        /// recording libsqlvdi, each with an optional `NAME.outcome`): a
        /// case is graded by a recording of its shape, the rest are
        /// unimplemented (docs/RECORDING.md §4).
        #[arg(long, value_name = "DIR")]
        recording: Option<PathBuf>,
    },
    /// Explain a case: its clauses, what it checks, and the expected trace.
    Explain { case: String },
    /// Replay a case (by id or file) and print its trace and verdict; a
    /// `.json` schedule file `vdisim explore` wrote replays that schedule.
    Replay {
        case: String,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "model")]
        backend: String,
        /// The `replay` backend's directory of recordings (docs/RECORDING.md §4).
        #[arg(long, value_name = "DIR")]
        recording: Option<PathBuf>,
    },
    /// Run every case and many random worlds twice per seed; hashes must match.
    CheckDeterminism {
        /// Seeds per case and random world (at most 10000).
        #[arg(long, default_value_t = 3,
              value_parser = clap::value_parser!(u64).range(0..=vdi_spec::bounds::DETERMINISM_SEEDS_MAX))]
        seeds: u64,
    },
    /// Play SQL Server: a long-running process that the stand-in library's
    /// sets connect to and `vdisim sqlcmd` sends BACKUP / RESTORE to.
    Serve(ServeArgs),
    /// Grade your own VDI client program: run it under every server
    /// behaviour against private simulated servers and the stand-in
    /// library, and judge what it did (conformance/CLIENT-TESTING.md).
    #[cfg(unix)]
    ClientTest(vdi_conformance::client_test::ClientTestArgs),
    /// Judge a recording of a real deployment (the recording libsqlvdi,
    /// docs/RECORDING.md): which side broke which clause, and where the
    /// recorded server departs from the model.
    #[cfg(unix)]
    Judge(vdi_conformance::judge::JudgeArgs),
    /// A swarm campaign over the model on every core: sharded (--shard
    /// i/n), resumable (--state DIR), guided by clause and client-table
    /// coverage; each failure shrunk to a scenario file `replay` runs.
    Fuzz(vdi_conformance::campaign::FuzzArgs),
    /// A secondary client process of the ABI backends' program runner
    /// (internal: requests on standard input, answers on standard output).
    #[command(name = "__abi-secondary", hide = true)]
    AbiSecondary {
        /// The VDI library to load.
        #[arg(long)]
        library: PathBuf,
    },
    /// Explore every interleaving of a small world with at most k preemptions.
    Explore(vdi_conformance::explore::ExploreArgs),
    /// A sqlcmd look-alike that sends T-SQL to `vdisim serve`, or over TDS
    /// to any TDS server with -S tcp:HOST,PORT (also what this program does
    /// when invoked under the name `sqlcmd`).
    #[command(disable_help_flag = true)]
    Sqlcmd {
        /// sqlcmd's own options (-S -U -P -E -d -b -Q -q -i ...; -? for help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Socket path to listen on (default: $VDISIM_SERVER, else a per-user path).
    #[arg(long)]
    listen: Option<PathBuf>,
    /// A database as NAME=SIZE (bytes, or with KiB/MiB/GiB); repeatable.
    /// Default: sales=8MiB, inventory=64MiB.
    #[arg(long = "database", value_name = "NAME=SIZE")]
    databases: Vec<String>,
    /// Seed for the server's choices and the databases' content.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Append each statement's server trace (JSONL) to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// A fault plan, optionally for some statements only:
    /// PLAN[:ms=N][@SELECTOR]. Its server-side faults (server-abort,
    /// server-death, server-stall, early-close, cancel, disconnect) fire
    /// when the client fetches the triggering command or at their time.
    /// SELECTOR is a comma list of statement kinds (backup, restore,
    /// backup-database, backup-log, restore-database, restore-log,
    /// restore-headeronly, restore-filelistonly, restore-verifyonly) and
    /// #N (the server's N-th statement); the others run clean. `ms=N` sets
    /// a server-stall's length in virtual ms (default: 3 x the set's
    /// serverTimeOut + 1). Examples: read-fault@restore, server-abort@#3,
    /// server-stall:ms=5000@backup. `--faults help` lists the plans.
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// Send a new fault plan (the --faults syntax; `none` clears it) to
    /// the running server at --listen for the statements that start from
    /// now on, and print what is now in force, instead of serving.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["faults", "status", "stop"])]
    set_faults: Option<String>,
    /// The server name messages show.
    #[arg(long, default_value = "VDISIM")]
    server_name: String,
    /// Print the running server's status (JSON) instead of serving.
    #[arg(long)]
    status: bool,
    /// Stop the running server instead of serving.
    #[arg(long)]
    stop: bool,
    /// Exit when the process with this pid has ended (for servers started
    /// by another program).
    #[arg(long, value_name = "PID")]
    exit_with: Option<u32>,
    /// Connections served at once (1..=65536); one more is refused with a
    /// message.
    #[arg(long, default_value_t = vdi_spec::bounds::CONNECTIONS_DEFAULT)]
    max_connections: usize,
    /// How long a new connection may take to say hello, and a frame to
    /// arrive once its first byte has (100..=600000 ms); a slower peer is
    /// dropped.
    #[arg(long, default_value_t = 10_000)]
    frame_deadline_ms: u64,
    /// Virtual ms per real ms for every statement's server (watchdog,
    /// stalls), 1..=1000; run the client with the same VDISIM_TIME_SCALE so
    /// the library waits its timeouts on the same clock.
    #[arg(long, default_value_t = 1, value_name = "N")]
    time_scale: u32,
    /// Keep the databases and msdb's backup history in DIR across restarts
    /// (crash-safe; one server per directory). Default:
    /// $XDG_STATE_HOME/vdisim/serve, else ~/.local/state/vdisim/serve.
    #[arg(long, value_name = "DIR", conflicts_with = "ephemeral")]
    data_dir: Option<PathBuf>,
    /// Keep nothing: the databases and history live and die with this
    /// process (tests, throwaway servers).
    #[arg(long)]
    ephemeral: bool,
    /// Serve TDS 7.4 too, so that real SQL Server drivers (ODBC, FreeTDS,
    /// python-tds, tedious, tiberius) log in and run the same T-SQL:
    /// at ADDR, default 127.0.0.1:1433 (port 0: a free port, printed at
    /// start). Loopback unless another address is given. TLS 1.2 inside
    /// PRELOGIN: a client that asks for encryption gets it (a self-signed
    /// certificate unless --tls-cert/--tls-key: connect with
    /// TrustServerCertificate=yes); one that offers it for the login only
    /// gets that; one without encryption goes on in plaintext. TDS 8
    /// (Encrypt=strict) is served too: its clients validate the
    /// certificate, so give one with --tls-cert/--tls-key.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:1433")]
    tds: Option<std::net::SocketAddr>,
    /// The TLS certificate (chain) for --tds, a PEM file of at most 1 MiB;
    /// with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, a PEM file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require encryption of TDS clients: one without it is answered
    /// ENCRYPT_REQ and closed, one offering it for the login only gets it
    /// for the whole session.
    #[arg(long)]
    tls_required: bool,
    /// A SQL login TDS clients may use, NAME:PASSWORD; repeatable (the
    /// logins replace the default, sa:vdisim). They are the simulator's
    /// own: never a real server's credentials.
    #[arg(long = "login", value_name = "NAME:PASSWORD")]
    logins: Vec<String>,
    /// Also serve Windows programs under Wine (which cannot open the Unix
    /// socket): a TCP bridge to the socket at ADDR, loopback only (default
    /// 127.0.0.1:0, a free port). Its address and secret are printed at
    /// start as the two variables the Windows stand-in reads.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    tcp_bridge: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv
        .first()
        .is_some_and(|a| vdi_sqlserver::sqlcmd::invoked_as_sqlcmd(a))
    {
        return ExitCode::from(sqlcmd(&argv[1..]));
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            err_line(format_args!("vdisim: error: {e:#}"));
            ExitCode::from(2)
        }
    }
}

/// The status of a process whose standard output went away (128 + SIGPIPE).
const CLOSED_PIPE: i32 = 141;

/// Writes `text` to standard output (see the module docs for a closed pipe).
fn out(text: impl Display) {
    let mut o = std::io::stdout().lock();
    let written = write!(o, "{text}").and_then(|()| o.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE),
        Err(e) => {
            err_line(format_args!(
                "vdisim: error: cannot write to standard output: {e}"
            ));
            std::process::exit(2);
        }
    }
}

/// Writes one line to standard error, ignoring failure.
fn err_line(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn emit(o: commands::Output) -> u8 {
    out(&o.text);
    o.status
}

fn run(cli: Cli) -> Result<u8> {
    let dir = cli.scenarios.unwrap_or_else(scenario::default_dir);
    match cli.cmd {
        Cmd::Simulate(a) if a.faults == "help" => {
            out(faults_help());
            Ok(0)
        }
        Cmd::Simulate(a) => {
            let sim = run_simulate(&a)?;
            out(&sim.text);
            if let Some(path) = &a.trace {
                if path.as_os_str().is_empty() {
                    bail!("--trace needs a file name");
                }
                std::fs::write(path, &sim.trace_jsonl)
                    .with_context(|| format!("cannot write the trace to {}", path.display()))?;
            }
            out(format_args!("trace-hash {}\n", sim.trace_hash));
            Ok(if sim.violations > 0 { 1 } else { 0 })
        }
        Cmd::List {
            filter,
            clauses,
            profile,
        } => Ok(emit(
            commands::list(&dir, filter.as_deref(), clauses, profile).map_err(|e| anyhow!(e))?,
        )),
        Cmd::Run {
            backend,
            filter,
            seeds,
            report_dir,
            jobs,
            sql_server,
            login,
            recording,
        } => {
            configure_sql_server(sql_server.as_deref(), login.as_deref())?;
            let (o, _) = commands::run_with(
                &dir,
                &backend,
                filter.as_deref(),
                seeds,
                &report_dir,
                jobs,
                recording.as_deref(),
            )
            .map_err(|e| anyhow!(e))?;
            Ok(emit(o))
        }
        Cmd::Explain { case } => Ok(emit(
            commands::explain(&dir, &case).map_err(|e| anyhow!(e))?,
        )),
        // A `.json` file is a schedule `vdisim explore` wrote.
        Cmd::Replay { case, .. } if case.ends_with(".json") && Path::new(&case).is_file() => Ok(
            emit(vdi_conformance::explore::replay_file(Path::new(&case))?),
        ),
        Cmd::Replay {
            case,
            seed,
            backend,
            recording,
        } => Ok(emit(
            commands::replay_with(&dir, &case, seed, &backend, recording.as_deref())
                .map_err(|e| anyhow!(e))?,
        )),
        Cmd::CheckDeterminism { seeds } => Ok(emit(
            commands::check_determinism(&dir, seeds).map_err(|e| anyhow!(e))?,
        )),
        Cmd::Serve(a) => serve(a),
        #[cfg(unix)]
        Cmd::ClientTest(a) => client_test(&a),
        #[cfg(unix)]
        Cmd::Judge(a) => judge(&a),
        Cmd::Explore(a) => Ok(emit(vdi_conformance::explore::run(&a)?)),
        Cmd::Sqlcmd { args } => Ok(sqlcmd(&args)),
        Cmd::Fuzz(a) => fuzz(&a),
        Cmd::AbiSecondary { library } => {
            vdi_conformance::backends::abi::secondary::child::run(&library)
                .map_err(|e| anyhow!(e))?;
            Ok(0)
        }
    }
}

/// `vdisim fuzz`: exit 0 when no case failed, 1 when one did.
fn fuzz(a: &vdi_conformance::campaign::FuzzArgs) -> Result<u8> {
    let s = vdi_conformance::campaign::run(a)?;
    out(s.text());
    Ok(if s.state.failures.is_empty() { 0 } else { 1 })
}

/// `vdisim client-test`: exit 0 when nothing failed, 1 when a case did.
#[cfg(unix)]
fn client_test(a: &vdi_conformance::client_test::ClientTestArgs) -> Result<u8> {
    let vdisim = match std::env::var_os("VDISIM_BIN").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().context("cannot find the vdisim executable")?,
    };
    let s = vdi_conformance::client_test::run(a, &vdisim)?;
    out(&s.text);
    Ok(if s.failed() { 1 } else { 0 })
}

/// `--sql-server` and `--login` for the `sqlserver` and `windows` backends.
fn configure_sql_server(server: Option<&str>, login: Option<&str>) -> Result<()> {
    use vdi_conformance::backends::tds_control as sqlserver;
    let Some(server) = server else {
        if login.is_some() {
            bail!(
                "--login is for the SQL Server --sql-server names: give --sql-server tcp:HOST,PORT too"
            );
        }
        return Ok(());
    };
    let mut e = sqlserver::parse_endpoint(server).map_err(|e| anyhow!("--sql-server: {e}"))?;
    if let Some(l) = login {
        let (n, p) = l
            .split_once(':')
            .ok_or_else(|| anyhow!("--login {l:?}: expected NAME:PASSWORD, e.g. sa:vdisim"))?;
        e.user = n.to_string();
        e.password = p.to_string();
    }
    sqlserver::configure(e);
    Ok(())
}

/// `vdisim judge`: exit 0 when no side broke a clause, 1 when one did.
#[cfg(unix)]
fn judge(a: &vdi_conformance::judge::JudgeArgs) -> Result<u8> {
    let j = vdi_conformance::judge::run(a)?;
    out(&j.text);
    Ok(if j.failed() { 1 } else { 0 })
}

/// Runs the sqlcmd look-alike; its exit code is sqlcmd's. Here, and only
/// here, Ctrl-C during a batch is caught (for the batch's length) to
/// cancel it on the server.
#[cfg(unix)]
fn sqlcmd(args: &[String]) -> u8 {
    use vdi_sqlserver::sqlcmd::{self, ServeExecutor, interrupt};
    let a = match sqlcmd::parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            err_line(&e);
            return u8::try_from(e.exit_code()).unwrap_or(1);
        }
    };
    // sqlcmd opens its output file before it connects.
    let file = match &a.output_file {
        Some(p) if !a.help => match std::fs::File::create(p) {
            Ok(f) => Some(f),
            Err(e) => {
                err_line(format_args!(
                    "Sqlcmd: '{}': cannot open the output file for writing: {e}.",
                    p.display()
                ));
                return 1;
            }
        },
        _ => None,
    };
    if let Some(endpoint) = a
        .server
        .as_deref()
        .and_then(sqlcmd::tds_executor::tds_endpoint)
    {
        let endpoint = match endpoint {
            Ok(e) => e,
            Err(why) => {
                err_line(format_args!("Sqlcmd: Error: {why}."));
                return 1;
            }
        };
        let server = a.server.clone().unwrap_or_default();
        let mut exec = sqlcmd::TdsExecutor::new(
            &server,
            endpoint,
            a.user.as_deref(),
            a.password.as_deref(),
            a.trusted,
        );
        exec.watch_interrupt(interrupt::flag());
        let server_name = if a.help {
            "VDISIM".to_string()
        } else {
            exec.server_name(a.database.as_deref())
                .unwrap_or_else(|| server.clone())
        };
        return run_sqlcmd(
            &a,
            interrupt::CtrlCDuringBatch::new(exec),
            file,
            &server_name,
        );
    }
    let mut exec = ServeExecutor::new(a.server.as_deref());
    exec.watch_interrupt(interrupt::flag());
    // Messages name the server as it names itself (`--server-name`).
    let server_name = if a.help {
        "VDISIM".to_string()
    } else {
        exec.server_name().unwrap_or_else(|| "VDISIM".into())
    };
    run_sqlcmd(
        &a,
        interrupt::CtrlCDuringBatch::new(exec),
        file,
        &server_name,
    )
}

/// Runs the look-alike on `exec`, writing to `file` or standard output.
#[cfg(unix)]
fn run_sqlcmd(
    a: &vdi_sqlserver::sqlcmd::SqlcmdArgs,
    mut exec: impl vdi_sqlserver::sqlcmd::Executor,
    file: Option<std::fs::File>,
    server_name: &str,
) -> u8 {
    use vdi_sqlserver::sqlcmd;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut err = std::io::stderr();
    let code = match file {
        Some(mut f) => sqlcmd::run(a, &mut exec, &mut input, &mut f, &mut err, server_name),
        None => {
            let mut out = std::io::stdout();
            sqlcmd::run(a, &mut exec, &mut input, &mut out, &mut err, server_name)
        }
    };
    u8::try_from(code).unwrap_or(1)
}

#[cfg(not(unix))]
fn sqlcmd(_args: &[String]) -> u8 {
    err_line("vdisim sqlcmd talks to vdisim serve, which runs on Linux");
    1
}

/// `--login NAME:PASSWORD` (the password may contain ':').
#[cfg(unix)]
fn parse_login(l: &str) -> Result<(String, String)> {
    match l.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_string(), password.to_string())),
        _ => bail!("--login {l:?}: give NAME:PASSWORD, e.g. --login sa:vdisim"),
    }
}

/// Parses `NAME=SIZE` (SIZE in bytes or with a KiB/MiB/GiB suffix).
#[cfg(unix)]
fn parse_database(s: &str) -> Result<(String, u64)> {
    let (name, size) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--database {s:?}: expected NAME=SIZE, e.g. sales=64MiB"))?;
    if name.is_empty() {
        bail!("--database {s:?}: the name is empty");
    }
    let t = size.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n.trim(), *m)))
    .unwrap_or((t, 1));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("--database {s:?}: size {size:?} is not a number of bytes (KiB, MiB, GiB suffixes allowed)"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| anyhow!("--database {s:?}: size too large"))?;
    Ok((name.to_string(), bytes))
}

/// `serve --tcp-bridge ADDR`: the bridge for Windows programs, its
/// address and secret printed as the variables the Windows stand-in reads.
#[cfg(unix)]
fn tcp_bridge(
    server: &vdi_sqlserver::serve::Server,
    addr: std::net::SocketAddr,
) -> Result<vdi_host::remote::bridge::TcpBridge> {
    let b = vdi_host::remote::bridge::TcpBridge::start(server.path().to_path_buf(), addr)
        .with_context(|| format!("--tcp-bridge {addr}"))?;
    let [(k1, v1), (k2, v2)] = b.env();
    err_line(format_args!(
        "vdisim serve: TCP bridge for Windows programs at {}: {k1}={v1} {k2}={v2}",
        b.addr()
    ));
    Ok(b)
}

/// What `vdisim serve --tds` says at start: where, which logins, which
/// certificate.
#[cfg(unix)]
fn tds_start_lines(
    addr: std::net::SocketAddr,
    logins: &[(String, String)],
    cert: Option<&std::path::Path>,
    required: bool,
) {
    let names: Vec<&str> = logins.iter().map(|(n, _)| n.as_str()).collect();
    err_line(format_args!(
        "vdisim serve: TDS 7.4 at {addr} (logins: {}; TLS 1.2 with {}{})",
        names.join(", "),
        match cert {
            Some(c) => format!("the certificate {}", c.display()),
            None => "a self-signed certificate: clients need TrustServerCertificate=yes".into(),
        },
        if required {
            "; encryption required"
        } else {
            ""
        }
    ));
    if !addr.ip().is_loopback() {
        err_line(format_args!(
            "vdisim serve: TDS at {addr} is reachable from other machines; its logins are the simulator's, not protection"
        ));
    }
}

#[cfg(unix)]
fn serve(a: ServeArgs) -> Result<u8> {
    use vdi_host::remote;
    use vdi_sqlserver::serve::{ServeConfig, Server};
    if a.faults.as_deref() == Some("help") || a.set_faults.as_deref() == Some("help") {
        out(faults_help());
        return Ok(0);
    }
    let listen = a.listen.unwrap_or_else(remote::address);
    if a.status || a.stop {
        return serve_control(&listen, a.stop);
    }
    if let Some(spec) = &a.set_faults {
        return serve_set_faults(&listen, spec, a.seed);
    }
    let mut cfg = ServeConfig::new(listen);
    if !a.databases.is_empty() {
        cfg.databases = a
            .databases
            .iter()
            .map(|d| parse_database(d))
            .collect::<Result<_>>()?;
    }
    cfg.seed = a.seed;
    cfg.trace = a.trace;
    if let Some(spec) = &a.faults {
        (cfg.faults, cfg.fault_scope) = serve_fault_plan("--faults", spec, a.seed)?;
        if !cfg.faults.faults.is_empty() {
            let d = vdi_sqlserver::serve::faults::describe(&cfg.faults, &cfg.fault_scope, &|f| {
                f.is_server_side()
            });
            err_line(format_args!("vdisim serve: fault plan {d}"));
        }
    }
    cfg.server_name = a.server_name;
    cfg.tds = a.tds;
    cfg.tls = Some(vdi_sqlserver::tds::tls::TlsOptions {
        cert_key: a.tls_cert.clone().zip(a.tls_key.clone()),
        required: a.tls_required,
    });
    if !a.logins.is_empty() {
        cfg.logins = a
            .logins
            .iter()
            .map(|l| parse_login(l))
            .collect::<Result<_>>()?;
    }
    cfg.max_connections = a.max_connections;
    cfg.frame_deadline = std::time::Duration::from_millis(a.frame_deadline_ms);
    cfg.time_scale = a.time_scale;
    cfg.data_dir = if a.ephemeral {
        None
    } else {
        let dir = a.data_dir.or_else(vdi_sqlserver::serve::default_data_dir);
        Some(dir.context(
            "no data directory: neither HOME nor XDG_STATE_HOME is set; give --data-dir DIR, or --ephemeral",
        )?)
    };
    // SIGINT and SIGTERM stop the server and remove its socket; they are
    // blocked before any thread starts so that only the signal thread
    // takes them.
    let signals = vdi_sqlserver::serve::Signals::block().context("cannot block SIGINT/SIGTERM")?;
    let logins = cfg.logins.clone();
    let server = match Server::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vdisim: error: {e}");
            return Ok(2);
        }
    };
    signals
        .stop_on_signal(&server)
        .context("cannot start the signal thread")?;
    if server.max_connections() < a.max_connections {
        err_line(format_args!(
            "vdisim serve: serving at most {} connections, not {}: the descriptor limit (ulimit -n) allows no more (each connection holds two)",
            server.max_connections(),
            a.max_connections
        ));
    }
    if let Some(pid) = a.exit_with {
        exit_with(pid, server.path().to_path_buf());
    }
    err_line(format_args!(
        "vdisim serve: listening at {} (clients find it through {}={})",
        server.path().display(),
        remote::ENV_SERVER,
        server.path().display()
    ));
    if let Some(addr) = server.tds_addr() {
        tds_start_lines(addr, &logins, a.tls_cert.as_deref(), a.tls_required);
    }
    // A bridge that cannot start is an input error (exit 2); dropping the
    // server on the way out stops it and removes its socket.
    let bridge = a
        .tcp_bridge
        .map(|addr| tcp_bridge(&server, addr))
        .transpose()?;
    let listen = server.path().to_path_buf();
    server.wait();
    drop(bridge);
    // The serve backend's private directory (named for its pid, see
    // backends/serve.rs) is removed once empty: its maker, gone, cannot.
    if let Some(pid) = a.exit_with
        && let Some(dir) = listen.parent()
        && dir
            .file_name()
            .is_some_and(|n| *n == *format!("vdisim-serve-backend-{pid}"))
    {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(0)
}

/// `vdisim serve --status` / `--stop`: asks the running server.
#[cfg(unix)]
fn serve_control(listen: &std::path::Path, stop: bool) -> Result<u8> {
    use vdi_host::remote::{control::Control, wire};
    let mut c = Control::connect(listen, "vdisim serve")
        .with_context(|| format!("no server at {}", listen.display()))?;
    let req = if stop {
        wire::Request::Shutdown
    } else {
        wire::Request::Status
    };
    match c.request(req)? {
        wire::Response::Status { status } => {
            out(format_args!("{}\n", serde_json::to_string_pretty(&status)?))
        }
        wire::Response::Ok => out(format_args!(
            "vdisim serve at {} stopped\n",
            listen.display()
        )),
        other => bail!("unexpected answer: {other:?}"),
    }
    Ok(0)
}

/// `--exit-with PID`: stops the server at `listen` once process `pid` has
/// ended (the accept loop removes the socket this server made).
#[cfg(unix)]
fn exit_with(pid: u32, listen: PathBuf) {
    use vdi_host::remote::{control::Control, wire};
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    std::thread::spawn(move || {
        while proc_dir.exists() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if let Ok(mut c) = Control::connect(&listen, "vdisim serve --exit-with") {
            let _ = c.request(wire::Request::Shutdown);
        }
    });
}

/// `vdisim serve --faults SPEC` (and `--set-faults SPEC`): the plan and
/// its scope, after saying on standard error which client-side faults of
/// the plan the server does not apply. A plan with no faults (`none`)
/// says nothing; one whose faults are all the client's is refused.
#[cfg(unix)]
fn serve_fault_plan(
    flag: &str,
    spec: &str,
    seed: u64,
) -> Result<(
    vdi_model::fault::FaultPlan,
    vdi_sqlserver::serve::faults::FaultScope,
)> {
    let cx = vdi_model::fault::PlanContext {
        devices: 1,
        longest_timeout_ms: 60_000,
        server_timeout_ms: 60_000,
        family_bytes: 0,
    };
    let (plan, scope) = vdi_sqlserver::serve::faults::resolve_spec(spec, |name| {
        vdi_sim::plans::fault_plan(name, &cx, seed).map_err(|e| e.to_string())
    })
    .map_err(|e| anyhow!("{flag}: {e}; `--faults help` describes each plan"))?;
    for pf in &plan.faults {
        pf.check_bounds()
            .map_err(|e| anyhow!("{flag} {spec}: {e}"))?;
    }
    let kinds = |side: bool| {
        plan.faults
            .iter()
            .filter(|pf| pf.fault.is_server_side() == side)
            .map(|pf| pf.fault.kind())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (server, client) = (kinds(true), kinds(false));
    if plan.faults.is_empty() {
        return Ok((plan, scope));
    }
    if server.is_empty() {
        bail!(
            "{flag} {spec}: this plan's faults are all the client's to apply ({client}); a server process applies only server-abort, server-death, server-stall, early-close, cancel and disconnect (`--faults help` lists each plan's side)"
        );
    }
    if !client.is_empty() {
        err_line(format_args!(
            "vdisim serve: fault plan {spec}: not applying the client's own faults ({client})"
        ));
    }
    Ok((plan, scope))
}

/// `vdisim serve --set-faults SPEC`: sends the plan to the running server
/// and prints what is now in force.
#[cfg(unix)]
fn serve_set_faults(listen: &std::path::Path, spec: &str, seed: u64) -> Result<u8> {
    use vdi_host::remote::{control::Control, wire};
    let (plan, _) = serve_fault_plan("--set-faults", spec, seed)?;
    let mut c = Control::connect(listen, "vdisim serve --set-faults")
        .with_context(|| format!("no server at {}", listen.display()))?;
    let req = wire::Request::SetFaults {
        spec: spec.to_string(),
        plan,
    };
    match c.request(req).with_context(|| {
        format!(
            "the server at {} did not answer --set-faults (a vdisim serve older than --set-faults drops the request: restart it with this build)",
            listen.display()
        )
    })? {
        wire::Response::Faults {
            in_force,
            statements,
        } => out(format_args!(
            "vdisim serve at {}: fault plan in force for the statements from #{} on: {in_force}\n",
            listen.display(),
            statements + 1
        )),
        wire::Response::Error { message } => bail!("--set-faults: {message}"),
        other => bail!("unexpected answer: {other:?}"),
    }
    Ok(0)
}

#[cfg(not(unix))]
fn serve(_a: ServeArgs) -> Result<u8> {
    bail!("vdisim serve needs Unix domain sockets and shared memory; it runs on Linux")
}

#[cfg(all(test, unix))]
mod tests {
    use super::parse_database;

    #[test]
    fn database_sizes() {
        assert_eq!(
            parse_database("sales=64MiB").unwrap(),
            ("sales".into(), 64 << 20)
        );
        assert_eq!(parse_database("a=512").unwrap(), ("a".into(), 512));
        assert_eq!(parse_database("b= 2 GiB").unwrap(), ("b".into(), 2 << 30));
        for bad in ["sales", "=1", "x=lots", "x=99999999999999GiB"] {
            let e = parse_database(bad).unwrap_err().to_string();
            assert!(e.contains("--database"), "{bad}: {e}");
        }
    }
}
