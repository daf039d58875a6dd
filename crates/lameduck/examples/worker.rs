//! A worker with long-running jobs and no HTTP traffic of its own: jobs run as tracked tasks,
//! finish their current unit of work when Closing starts, and are reported if abandoned.
//!
//! ```sh
//! LAMEDUCK_ADMIN_ADDR=127.0.0.1:8686 LAMEDUCK_MIN_WAIT=1s cargo run -p lameduck --example worker
//! kill -TERM <pid>   # jobs finish their current batch, then the process exits
//! ```

use std::process::ExitCode;
use std::time::Duration;

use lameduck::Lameduck;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let lameduck = match Lameduck::from_env() {
        Ok(lameduck) => lameduck,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match lameduck.bind_admin().await {
        Ok(Some(admin)) => println!("admin on {admin}"),
        Ok(None) => {}
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    if let Err(error) = lameduck.handle_signals() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    for worker in 0..3 {
        lameduck.spawn_task(format!("batch-worker-{worker}"), move |stop| async move {
            let mut batches = 0_u64;
            // Each batch takes 300 ms and is never cut in half: the token is checked between batches.
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                batches += 1;
            }
            println!("worker {worker}: stopped cleanly after {batches} batches");
        });
    }
    lameduck.mark_ready();
    let report = lameduck.stopped().await;
    println!("stopped: abandoned tasks {:?}", report.abandoned_tasks);
    ExitCode::SUCCESS
}
