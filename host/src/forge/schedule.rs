//! Repository schedules: at each [`cron`](super::cron) time the tip of the
//! schedule's branch runs, as an event `schedule` (the pipeline files its
//! `pipelines` globs name, or all; a file whose `on-event` annotation does
//! not list `schedule` does not run).
//!
//! Missed times: the server checks every 15 s. A time it missed (it was
//! down) runs once — only the latest one missed, and only if the server is
//! back within the schedule's `startingDeadline` (default 1 h) of it, as a
//! Kubernetes CronJob with a starting deadline does; otherwise it is
//! recorded as a missed delivery and nothing runs. A schedule seen for the
//! first time counts from then. Each firing is a delivery keyed by the
//! repository, schedule and time, so two servers or a restart never run
//! one time twice.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::cron::{Cron, zone};
use super::event::ForgeEvent;
use super::intake::{Answer, Forge};
use super::repo::{EventKind, Schedule};
use super::source::Entry;
use crate::store::{Begin, DeliveryKey};

/// How often schedules are checked.
pub const TICK: Duration = Duration::from_secs(15);

/// Check the schedules now and every [`TICK`], until dropped; every
/// fourth tick, look for runs a dead process left executing.
pub async fn run(forge: Arc<Forge>) {
    for n in 0u64.. {
        tick(&forge, Timestamp::now()).await;
        if n % 4 == 3 {
            let resumed = forge.recover_orphans().await;
            if resumed > 0 {
                tracing::info!("{resumed} run(s) a dead process left executing resumed");
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Fire what is due at `now`.
pub async fn tick(forge: &Arc<Forge>, now: Timestamp) {
    let repos = match forge.repos.list() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("schedules: {e:#}");
            return;
        }
    };
    for repo in &repos {
        for s in &repo.spec.schedules {
            if let Err(e) = check(forge, repo, s, now).await {
                tracing::warn!(repository = %repo.name, schedule = %s.name, "schedule: {e}");
            }
        }
    }
}

/// The latest time of `cron` after `last` and not after `now`, and how
/// many there were.
fn due(
    cron: &Cron,
    tz: &jiff::tz::TimeZone,
    last: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u64) {
    let (mut t, mut latest, mut n) = (last, None, 0);
    while let Some(z) = cron.next_after(t, tz) {
        if z.timestamp() > now || n > 100_000 {
            break;
        }
        t = z.timestamp();
        latest = Some(t);
        n += 1;
    }
    (latest, n)
}

async fn check(
    forge: &Arc<Forge>,
    entry: &Entry,
    s: &Schedule,
    now: Timestamp,
) -> Result<(), String> {
    let (name, repo) = (entry.name.as_str(), &entry.spec);
    let store = &forge.sched.store;
    let cron: Cron = s.cron.parse()?;
    let tz = zone(&s.time_zone)?;
    let Some(last) = store
        .schedule_last(name, &s.name)
        .map_err(|e| e.to_string())?
    else {
        store
            .set_schedule_last(name, &s.name, now.as_microsecond())
            .map_err(|e| e.to_string())?;
        return Ok(());
    };
    let last = Timestamp::from_microsecond(last).map_err(|e| e.to_string())?;
    // Times older than the deadline never run: no need to walk them all.
    let deadline = s.deadline()?;
    let floor = now
        .checked_sub(jiff::SignedDuration::try_from(deadline).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    // Times before the floor never run: they are not walked one by one.
    let (at, times, missed) = match due(&cron, &tz, last.max(floor), now) {
        (Some(at), n) => (at, n, false),
        (None, _) => match cron.next_after(last, &tz) {
            Some(z) if z.timestamp() <= floor => (z.timestamp(), 1, true),
            _ => return Ok(()),
        },
    };
    // Recorded first: a crash from here on never runs this time twice.
    store
        .set_schedule_last(name, &s.name, at.max(floor).as_microsecond())
        .map_err(|e| e.to_string())?;
    let key = DeliveryKey {
        provider: "schedule".into(),
        repository: name.to_string(),
        id: format!("{}@{at}", s.name),
    };
    if !matches!(
        store.begin_delivery(&key, &format!("schedule/{}", s.name)),
        Ok(Begin::New)
    ) {
        return Ok(());
    }
    if missed {
        let why = format!(
            "missed while the server was down: {at} and any later time before {floor} are more than \
             startingDeadline {} ago",
            s.starting_deadline
        );
        let answer = Answer {
            status: 202,
            body: serde_json::Value::Null,
        };
        forge.finish(&key, &format!("schedule/{}", s.name), &answer, &why);
        return Ok(());
    }
    let event = ForgeEvent {
        provider: repo.provider,
        kind: EventKind::Schedule,
        name: format!("schedule/{}", s.name),
        revision: String::new(),
        git_ref: format!("refs/heads/{}", s.branch),
        branch: Some(s.branch.clone()),
        tag: None,
        base_branch: None,
        pr_number: None,
        author: "schedule".into(),
        actor: "schedule".into(),
        head_owner: None,
        url: String::new(),
        fork: false,
        changed: None,
        files: s.pipelines.clone(),
        schedule: Some(s.cron.clone()),
        approved_by: None,
    };
    let answer = forge.start_runs(entry, &key, &event).await;
    let outcome = answer.text(&["outcome", "reason", "error"]);
    let outcome = if times > 1 {
        format!("{outcome} (the latest of {times} times missed within startingDeadline)")
    } else {
        outcome
    };
    forge.finish(&key, &event.name, &answer, &outcome);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_missed_time_is_due() {
        let cron: Cron = "*/5 * * * *".parse().unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        let last: Timestamp = "2026-12-03T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-12-03T02:02:00Z".parse().unwrap();
        let (at, n) = due(&cron, &tz, last, now);
        assert_eq!(at.unwrap().to_string(), "2026-12-03T02:00:00Z");
        assert_eq!(n, 24);
        let (at, n) = due(&cron, &tz, now, now);
        assert_eq!((at, n), (None, 0));
    }
}
