//! Container steps, from the attacker's side: a plugin that describes a
//! container no grant allows, and scripts (what a pull request can change)
//! that try to get out through the workspace's links, gain privileges,
//! exhaust the host with processes, or leak the secret they were given.
//! They run on the real engine (tests/src/podman.rs), one at a time.

use capstan::caps::secrets::LocalSecrets;
use capstan::store::TaskStatus;
use capstan_tests::TestEnv;
use capstan_tests::podman::podman_engine;

use super::{Attack, HostBox, OUTSIDE, assert_all_denied, outcome};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SECRET: &str = "tok-7f3a9c1e55d24b86";

/// The grant every container attack gets: the test image, and the secret
/// `api-token` as an environment variable.
const GRANT: &str = "      grants:\n        container: [{ image: \"localhost/capstan-busybox:*\", secrets: [api-token], caches: [deps] }]";

fn env_with_secret() -> TestEnv {
    let env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("api-token", SECRET.as_bytes())
        .unwrap();
    env
}

#[tokio::test]
async fn a_plugin_cannot_describe_a_container_outside_its_grant() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = env_with_secret();
    let run = Attack::new("ctr_tricks").extra(GRANT).run(&env).await;
    assert_all_denied(&run, 20);
    let log = run.log_text();
    assert!(!log.contains("RAN-WHAT-SHOULD-NOT"), "{log}");
    assert!(
        log.contains("denied: container secret `other-secret` (layer: pipeline"),
        "{log}"
    );
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// The workspace holds links to the host (`abs` → the host file, `root` →
/// `/`, `up` → `..`): inside the container they resolve in the
/// container's filesystem, never the host's, for reading or writing.
#[tokio::test]
async fn links_in_the_workspace_do_not_reach_the_host() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = env_with_secret();
    let b = HostBox::new(&env);
    let script = format!(
        "set +e\n\
         for p in abs rel chain root/{outside} up/outside.txt; do cat \"/workspace/ws/$p\" 2>/dev/null; done\n\
         cat {outside} 2>/dev/null\n\
         echo overwritten > /workspace/ws/abs\n\
         echo overwritten > /workspace/ws/chain\n\
         echo changed > /workspace/ro/file && echo WROTE-READ-ONLY\n\
         grep CapEff /proc/self/status\n\
         grep -q 0000000000000000 /proc/self/status || echo PRIVILEGED\n\
         echo done-trying",
        outside = b.outside.display()
    );
    let run = Attack::new("ctr_tricks")
        .arg(script)
        .in_box(&b)
        .extra(GRANT)
        .run(&env)
        .await;
    let log = run.log_text();
    assert_eq!(run.status_of("attack"), TaskStatus::Succeeded, "{log}");
    assert!(log.contains("done-trying"), "{log}");
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
    for bad in [OUTSIDE, "PRIVILEGED", "WROTE-READ-ONLY"] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
    assert_eq!(
        std::fs::read_to_string(b.ro.join("file")).unwrap(),
        "original"
    );
    assert_eq!(std::fs::read_to_string(&b.outside).unwrap(), OUTSIDE);
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// A script given a secret prints it, writes it to a result and to the
/// log in pieces: the stored log and results hold no copy of the value.
#[tokio::test]
async fn a_secret_printed_by_the_script_is_redacted() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = env_with_secret();
    // Also as the name of a result file (dropped, with a warning naming it).
    let script = "echo \"token=$TOKEN\"; echo \"$TOKEN\" >&2; printf %s \"$TOKEN\" > \"$CAPSTAN_RESULTS/leak\"; touch \"$CAPSTAN_RESULTS/$TOKEN\"".to_string();
    let run = Attack::new("ctr_tricks")
        .arg(script)
        .extra(GRANT)
        .run(&env)
        .await;
    let log = run.log_text();
    assert_eq!(run.status_of("attack"), TaskStatus::Succeeded, "{log}");
    assert!(log.contains("token=***"), "{log}");
    assert!(outcome(&run).contains("leak=***"), "{}", outcome(&run));
    capstan_tests::assert_not_in_state(&env.sched.state_dir, SECRET);
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}

/// A fork bomb within the container's limits (its PID limit, half a CPU,
/// a 15 s timeout): it is killed, the container removed, and the host
/// goes on to run the next task.
#[tokio::test]
async fn a_fork_bomb_is_contained() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let env = env_with_secret();
    let started = std::time::Instant::now();
    let run = Attack::new("ctr_tricks")
        .arg("bomb() { bomb | bomb & }; bomb; sleep 60")
        .extra(GRANT)
        .run(&env)
        .await;
    let o = outcome(&run);
    assert!(o.contains("timed_out=true"), "{o}\n{}", run.log_text());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !engine.leftovers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the bomb outlived its task"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `root: true` (what kaniko needs; the policy must allow it) is uid 0
/// with a few file capabilities, never a privileged container: no mount,
/// no device node, no raw socket, no new privileges, the runtime's seccomp
/// profile, its workspaces read-only, and the workspace's links still
/// reach nothing of the host's. Without a policy allowing it, refused.
#[tokio::test]
async fn a_root_grant_is_not_a_privileged_one() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let mut env = env_with_secret();
    let b = HostBox::new(&env);
    let script = format!(
        "set +e\n\
         echo uid=$(id -u)\n\
         echo x > /workspace/ws/new 2>/dev/null && echo WROTE-WORKSPACE\n\
         mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED\n\
         mknod /tmp/disk b 8 0 2>/dev/null; dd if=/tmp/disk of=/dev/null bs=512 count=1 2>/dev/null && echo READ-DISK\n\
         for p in abs rel chain root/{outside} up/outside.txt; do cat \"/workspace/ws/$p\" 2>/dev/null; done\n\
         cat {outside} 2>/dev/null\n\
         grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status\n\
         echo done-trying",
        outside = b.outside.display()
    );
    let grant = GRANT.replace("caches: [deps] }", "root: true }");
    assert_ne!(grant, GRANT);
    let attack = Attack::new("ctr_tricks")
        .arg(script)
        .in_box(&b)
        .extra(&grant);
    let refused = env
        .prepare(&attack.pipeline(), &[])
        .err()
        .unwrap_or_default();
    assert!(
        refused.contains("grants.container[0].root")
            && refused.contains("a root container needs a platform policy"),
        "{refused}"
    );
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        "[paths]\nallow = true\ncapabilities = [\"container\", \"secrets\"]\n[container]\nroot = true\n",
    )
    .unwrap();
    env.sched.policy = std::sync::Arc::new(capstan::policy::PolicyFile::load(&policy).unwrap());
    let run = attack.run(&env).await;
    let log = run.log_text();
    assert_eq!(run.status_of("attack"), TaskStatus::Succeeded, "{log}");
    assert!(
        log.contains("done-trying") && log.contains("uid=0"),
        "{log}"
    );
    assert!(log.contains("NoNewPrivs:\t1"), "{log}");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    let cap_eff = log
        .lines()
        .find_map(|l| l.split("CapEff:\t").nth(1))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {log}"));
    assert_ne!(cap_eff, 0, "root: true kept no capability: {log}");
    // CAP_SYS_ADMIN, CAP_NET_RAW, CAP_MKNOD, CAP_SYS_CHROOT, CAP_KILL.
    for bit in [21, 13, 27, 18, 5] {
        assert_eq!(cap_eff & (1 << bit), 0, "capability {bit}: {log}");
    }
    for bad in [OUTSIDE, "MOUNTED", "READ-DISK", "WROTE-WORKSPACE"] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
    assert_eq!(std::fs::read_to_string(&b.outside).unwrap(), OUTSIDE);
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}
