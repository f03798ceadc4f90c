//! Fault injection on the real agent (issue 16): SIGKILL at random points while probes
//! create synthetic records, incidents open and pages wait for an SMTP relay that is
//! down; and a state directory whose disk fills up. The store must stay intact, no page
//! be lost or sent more than twice, no synthetic record be left in the sandbox after the
//! last start's cleanup; a full disk must be said, paged about and recovered from while
//! probing goes on. `cargo bench --bench soak` runs the same parts for minutes.

#[path = "common/fault.rs"]
mod fault;
#[path = "common/tools.rs"]
mod tools;

use std::time::Duration;

use fault::{Iteration, Rig, SandboxFault, Tmpfs};
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    std::env::var("ROOFTOP_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_corrupts_nothing_loses_no_page_and_leaves_no_record() {
    let seed = seed();
    eprintln!("seed {seed} (ROOFTOP_FAULT_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let mut rig = Rig::start(work.path(), &state, "").await;
    // The faults follow a plan that opens incidents with the relay up and with it down;
    // where each kill falls is random: a fixed time, or just after a record was created.
    let plan = [
        (SandboxFault::CrmDown, true, 3500),
        (SandboxFault::CrmDown, false, 0),
        (SandboxFault::DmsDown, false, 5000),
        (SandboxFault::DmsDown, false, 0),
        (SandboxFault::None, true, 2500),
        (SandboxFault::CrmDown, true, 0),
    ];
    for (fault, smtp_up, after_ms) in plan {
        let it = Iteration {
            fault,
            smtp_up,
            after_record: (after_ms == 0).then(|| Duration::from_millis(rng.random_range(0..400))),
            after: Duration::from_millis(after_ms + rng.random_range(0..800)),
        };
        rig.kill_iteration(&it).await;
    }
    // Long enough for a re-sweep (the probes poll within 8 s: it is due 10 s after the
    // empty sweep of the last start's replay, and the agent looks every 10 s).
    let code = rig.settle(Duration::from_secs(90)).await;
    let stats = rig.stats.clone();
    let pages = rig.pages();
    let leftovers = rig.sb.leftovers();
    let report = format!("seed {seed}: {stats:?}\n{pages:?}\nleftovers {leftovers:?}");
    eprintln!("{report}");
    assert_eq!(stats.iterations, plan.len(), "{report}");
    assert!(stats.corruptions.is_empty(), "{report}");
    assert_eq!(fault::integrity(&state), "ok", "{report}");
    assert_eq!(code, Some(0), "the last agent stops cleanly: {report}");
    assert!(
        stats.with_records >= 1,
        "a kill fell between create and cleanup: {report}"
    );
    assert!(
        pages.incidents >= 2,
        "the faults opened incidents: {report}"
    );
    assert!(pages.lost.is_empty(), "every incident paged: {report}");
    assert!(pages.max_duplicates <= 1, "{report}");
    assert!(leftovers.is_empty(), "{report}");
    assert_eq!(
        // A sweep that found nothing after a killed run waits for its re-sweep.
        fault::count(
            &state,
            "SELECT count(*) FROM cleanup_ledger WHERE resweep_after_ms IS NULL OR last_error IS NOT NULL"
        ),
        0,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_said_paged_and_recovered_from_while_probing_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&work.path().join("state"), "32m").unwrap_or_else(|e| panic!("{e}"));
    let rig = Rig::start(work.path(), &disk.dir, "").await;
    let agent = rig.spawn();
    let listen = rig.listen.clone();
    let up = fault::wait_until(Duration::from_secs(20), || {
        fault::count(&disk.dir, "SELECT count(*) FROM runs") > 0
    })
    .await;
    assert!(up, "no run stored: {}", agent.stderr_text());
    assert!(fault::ready(&listen).await, "{}", agent.stderr_text());
    let episode = fault::disk_full_episode(&rig, &agent, &disk, Duration::from_secs(30)).await;
    let err = agent.stderr_text();
    assert!(
        episode.missing.is_empty(),
        "{episode:?}\nstderr:\n{err}\nmail: {:?}",
        fault::read_mail(&rig.smtp)
    );
    assert!(
        err.contains("the state directory's disk is full")
            && err.contains("database or disk is full"),
        "{err}"
    );
    assert_eq!(agent.sigterm(Duration::from_secs(60)).await, Some(0));
    assert_eq!(fault::integrity(&disk.dir), "ok");
    drop(rig);
    drop(disk);
}
