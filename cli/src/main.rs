use clap::{Parser, Subcommand};

// JSON handling allocates a great deal; mimalloc is markedly faster than the
// system allocator under multi-threaded load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// warren: a serverless task queue and event-pipeline engine.
#[derive(Parser)]
#[command(version, about = "warren: a serverless task queue and event-pipeline engine", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run warren locally: every endpoint, the worker and the scheduler in
    /// one process, with an embedded durable store.
    Dev(Box<warren_cli::dev::DevOptions>),
    /// Load-test a running warren (enqueue, batch enqueue, end-to-end).
    Bench(warren_cli::bench::BenchOptions),
    /// Create the DynamoDB table and the SQS queues warren uses, on AWS or on
    /// the endpoint in AWS_ENDPOINT_URL (LocalStack, moto). Idempotent.
    Provision(warren_cli::provision::ProvisionOptions),
    /// Manage users straight in the store (the first admin of a deployment).
    #[command(subcommand)]
    Users(warren_cli::users::UsersCommand),
    /// Count the AWS requests per task, enqueue to completed, on fresh
    /// resources at AWS_ENDPOINT_URL (a benchmark of the AWS backend).
    Cost(warren_cli::cost::CostOptions),
    /// Enqueue a task (and with --wait, print its result).
    Enqueue(warren_cli::client::EnqueueOptions),
    /// List, show, cancel and requeue tasks.
    #[command(subcommand)]
    Tasks(warren_cli::client::TasksCommand),
    /// Task counts per queue and status.
    Queues(warren_cli::client::Target),
    /// Watch tasks appear and change status, live.
    Tail(warren_cli::client::TailOptions),
    /// List and run pipelines.
    #[command(subcommand)]
    Pipelines(warren_cli::client::PipelinesCommand),
    /// Publish on topics.
    #[command(subcommand)]
    Events(warren_cli::client::EventsCommand),
    /// Print a shell's completion script, e.g.
    /// `warren completions bash > ~/.local/share/bash-completion/completions/warren`.
    Completions { shell: clap_complete::Shell },
    /// Print the API's OpenAPI document (maintainers:
    /// `warren openapi > docs/openapi.json`).
    #[command(hide = true)]
    Openapi,
}

fn main() {
    let cli = Cli::parse();
    disable_huge_pages();
    warren::runtime::idle::set_trim(give_back_free_memory);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(warren::runtime::idle::on_park)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fail(e.into()),
    };
    let done = match cli.command {
        Command::Dev(opts) => runtime.block_on(warren_cli::dev::run(*opts)),
        Command::Bench(opts) => runtime.block_on(warren_cli::bench::run(opts)),
        Command::Provision(opts) => runtime.block_on(warren_cli::provision::run(opts)),
        Command::Cost(opts) => runtime.block_on(warren_cli::cost::run(opts)),
        Command::Users(command) => runtime.block_on(warren_cli::users::run(command)),
        Command::Enqueue(opts) => runtime.block_on(warren_cli::client::enqueue(opts)),
        Command::Tasks(command) => runtime.block_on(warren_cli::client::tasks(command)),
        Command::Queues(target) => runtime.block_on(warren_cli::client::queues(target)),
        Command::Tail(opts) => runtime.block_on(warren_cli::client::tail(opts)),
        Command::Pipelines(command) => runtime.block_on(warren_cli::client::pipelines(command)),
        Command::Events(command) => runtime.block_on(warren_cli::client::events(command)),
        Command::Openapi => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(warren_cli::openapi::json().as_bytes());
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Written whole, so a closed pipe (`| head`) ends it quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "warren", &mut script);
            let _ = std::io::stdout().write_all(&script);
            Ok(())
        }
    };
    if let Err(e) = done {
        fail(e);
    }
}

/// One line on stderr (the causes joined, no backtrace: this is a user's
/// terminal) and exit status 1.
fn fail(e: anyhow::Error) -> ! {
    eprintln!("warren: {e:#}");
    std::process::exit(1)
}

/// Returns the calling thread's free pages to the system and purges what
/// mimalloc holds for reuse (called once per quiet period per thread, see
/// `warren::runtime::idle`).
fn give_back_free_memory() {
    // SAFETY: mi_collect only walks and releases the allocator's own free
    // pages; it is safe to call from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them,
/// and the first touch of each fresh 2 MiB page makes the kernel zero all of
/// it inside the faulting call: the store writer, growing its page cache,
/// stalled 4-5 ms a few times a second, which set the enqueue p99. With
/// 4 KiB pages the same zeroing is spread thinly over many calls.
/// See docs/BENCHMARKS.md, "Huge pages and the tail".
#[cfg(target_os = "linux")]
fn disable_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory
    // of ours; on failure (an old kernel) huge pages simply stay as they were.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn disable_huge_pages() {}
