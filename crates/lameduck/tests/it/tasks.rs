//! Tracked tasks: told to stop at Closing, awaited, reported when abandoned.

use std::time::Duration;

use lameduck_testkit::{Child, Signal, example_path};

#[test]
fn worker_tasks_finish_their_batch_when_closing_starts() {
    let env = [
        ("LAMEDUCK_ADMIN_ADDR", "127.0.0.1:0"),
        ("LAMEDUCK_MIN_WAIT", "300ms"),
        ("LAMEDUCK_QUIET_WINDOW", "300ms"),
        ("LAMEDUCK_GRACE_SECONDS", "10"),
    ];
    let mut worker = Child::spawn(example_path("worker"), &[], &env).unwrap();
    worker.wait_for_addr("admin on ");
    // Let every worker finish at least one batch before the drain.
    std::thread::sleep(Duration::from_millis(700));
    worker.signal(Signal::SIGTERM);
    let status = worker
        .wait_exit(Duration::from_secs(10))
        .expect("worker exits");
    assert_eq!(status.code(), Some(0), "{}", worker.stderr());
    let lines = worker.stdout_lines(Duration::from_millis(200));
    let clean: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("stopped cleanly after"))
        .collect();
    assert_eq!(
        clean.len(),
        3,
        "every worker stopped between batches: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "stopped: abandoned tasks []"),
        "{lines:?}"
    );
}
