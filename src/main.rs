//! The `receptionist` command line: serve, migrate, workspace management, a simulated call, and
//! what the offline recogniser hears in a recording.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use receptionist::config::ServeConfig;
use receptionist::store::{Role, Store};

// `--features dhat-heap`: every allocation recorded, dhat-heap.json written when `main` returns
// (for `serve`: after a graceful shutdown, SIGINT or SIGTERM). Profiling only: it is slow.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[derive(Parser)]
#[command(
    name = "receptionist",
    version,
    about = "An AI phone receptionist for recruiting teams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve(Box<ServeConfig>),
    /// Create the database schema (also done by `serve` at start) and exit.
    Migrate(DbArgs),
    /// Workspaces and API keys.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Play caller audio from WAV files into a running server as Twilio would.
    Simulate(receptionist::tools::simulate::SimulateArgs),
    /// Load a loopback server with N concurrent simulated Twilio calls; print one JSON report line.
    Loadgen(receptionist::tools::loadgen::LoadgenArgs),
    /// Print what an offline recogniser hears in WAV files: one `FILE<TAB>transcript` line each.
    Transcribe(receptionist::tools::transcribe::TranscribeArgs),
    /// Report every call whose records are incomplete (journal not replayed, lost events, missing
    /// or short recording, after-call work not run); exit 1 if any.
    Verify(receptionist::tools::verify::VerifyArgs),
}

#[derive(clap::Args)]
struct DbArgs {
    /// Database URL: `sqlite://path` or `postgres://...`. Default: a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Directory holding the default SQLite database.
    #[arg(long, env = "RECEPTIONIST_DATA_DIR", default_value = "./data")]
    data_dir: std::path::PathBuf,
}

impl DbArgs {
    async fn connect(&self) -> anyhow::Result<Store> {
        let url = match &self.database_url {
            Some(u) => u.clone(),
            None => {
                std::fs::create_dir_all(&self.data_dir)?;
                format!(
                    "sqlite://{}?mode=rwc",
                    self.data_dir.join("receptionist.db").display()
                )
            }
        };
        Ok(Store::connect(&url).await?)
    }
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace and print its first admin API key.
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create another API key for a workspace.
    AddKey {
        workspace_id: String,
        /// admin or viewer
        #[arg(long, default_value = "admin")]
        role: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Workers of the main runtime (`TOKIO_WORKER_THREADS` overrides). Calls' audio and HTTP run on
/// the connection threads (`server/threads.rs`); the main runtime carries the calls' database
/// work (their persisters, the event writer), the outbox and the after-call pipeline, which
/// mostly wait. With two workers, each wake-up of one tended to wake the other to steal work
/// (measured at 10 calls with `receptionist loadgen`: 58 → 43 context switches a second on the
/// main runtime, its CPU 1.8 → 1.1 ms a second, `/proc/PID/task/TID/schedstat`).
const MAIN_RUNTIME_WORKERS: usize = 1;

/// Limits glibc's malloc to one arena, unless `MALLOC_ARENA_MAX` says otherwise. By default glibc
/// gives each thread that allocates under contention an arena of its own (up to 8 per core), and
/// memory freed in one arena is not reused by the others, so a call's buffers, made on one thread
/// and dropped on another, leave pages behind in several. Measured with `receptionist loadgen
/// --levels 10,100,500 --ramp-secs 10 --duration-secs 40` (RSS per call, KiB): glibc's default
/// 448 / 213 / 192, two arenas 335 / 188 / 178 (README, issue 9's fourth round). One arena
/// (stop 53): with two, a connection thread that got the second arena grew it afresh for its
/// first calls, so a 10-call server's anonymous memory per call swung between 81 and 166 KiB;
/// with one it stayed at 81-93 KiB, CPU unchanged within the noise at 10, 200 and 500 calls
/// (README, "Stop 53: one malloc arena").
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "dhat-heap")))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// How many threads candle splits a matrix product over: `threads`, unless `RAYON_NUM_THREADS`
/// says otherwise. candle asks on every product, and with the variable unset it counts the
/// machine's physical cores, which `num_cpus` reads from `/proc/cpuinfo` each time; the models it
/// runs here (Whisper, the sentence encoder) run each inference on threads of their own (a
/// decoder's pool of `threads_per_decode`, one by default; a blocking thread), so a split for
/// more threads than that only adds work. Measured on 60 of `scripts/barge-in-words`' cuts
/// (`receptionist transcribe --stt whisper --phone`, one thread per decode, two runs each): CPU
/// 8.2 / 7.7 s unset, 6.6 / 6.0 s at 1; wall time 7.2 / 6.7 s → 6.6 / 6.1 s (README, issue 11).
fn set_model_threads(threads: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called before any other thread runs, so nothing reads the environment meanwhile.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string());
        }
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    set_model_threads(match &cli.command {
        Command::Transcribe(args) => args.threads,
        _ => 1,
    });
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(MAIN_RUNTIME_WORKERS);
    }
    runtime.build()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder().trim_backtraces(Some(24)).build();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(config) => {
            tracing::info!(config = ?config, "starting");
            receptionist::server::serve(*config).await
        }
        Command::Migrate(db) => {
            let store = db.connect().await?;
            store.close().await;
            eprintln!("database is up to date");
            Ok(())
        }
        Command::Workspace { command } => match command {
            WorkspaceCommand::Create { name, db } => {
                let name = name.trim();
                anyhow::ensure!(!name.is_empty(), "the workspace name must not be empty");
                let store = db.connect().await?;
                let (ws, key) = store.create_workspace(name).await?;
                store.close().await;
                eprintln!("workspace {} created ({})", ws.name, ws.id);
                eprintln!("admin API key (shown once; use as `Authorization: Bearer KEY`):");
                println!("{key}");
                Ok(())
            }
            WorkspaceCommand::AddKey {
                workspace_id,
                role,
                db,
            } => {
                let role = match role.as_str() {
                    "admin" => Role::Admin,
                    "viewer" => Role::Viewer,
                    other => anyhow::bail!("role must be admin or viewer, not {other:?}"),
                };
                let store = db.connect().await?;
                let key = store.create_api_key(&workspace_id, role).await?;
                store.close().await;
                println!("{key}");
                Ok(())
            }
        },
        Command::Simulate(args) => receptionist::tools::simulate::run(args).await,
        Command::Loadgen(args) => receptionist::tools::loadgen::run(args).await,
        Command::Transcribe(args) => receptionist::tools::transcribe::run(args).await,
        Command::Verify(args) => {
            let db = DbArgs {
                database_url: args.database_url.clone(),
                data_dir: args.data_dir.clone(),
            };
            let store = db.connect().await?;
            let complete = receptionist::tools::verify::run(&args, &store).await;
            store.close().await;
            if !complete? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
