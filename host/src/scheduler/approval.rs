//! Approval gates, the host's side: who may decide, what the plugin is told,
//! and what the notification says. The N-of-M logic, rejection and
//! `on-timeout` live in the `approve` plugin; the host authorizes decisions
//! against the `approvers` the plugin put in its suspend detail, stores them
//! and delivers them.

use crate::store::{DecisionRecord, WaitRecord};

/// The approvers a wait names (`detail.approvers`).
pub fn approvers(detail: &serde_json::Value) -> Vec<String> {
    detail["approvers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Is `user` (in `groups`) one of `approvers`?
pub fn may_decide(approvers: &[String], user: &str, groups: &[String]) -> bool {
    approvers
        .iter()
        .any(|a| a == user || groups.iter().any(|g| g == a))
}

/// May `user` (in `groups`) decide on this wait? An approver entry matches
/// the user name or one of the user's groups.
pub fn authorize(wait: &WaitRecord, user: &str, groups: &[String]) -> Result<(), String> {
    let listed = approvers(&wait.detail);
    if may_decide(&listed, user, groups) {
        Ok(())
    } else {
        Err(format!(
            "`{user}` is not an approver of task `{}` of run {} (approvers: {})",
            wait.task,
            wait.run_id,
            listed.join(", ")
        ))
    }
}

/// The `outcome.event` JSON a decision is delivered as.
pub fn event_json(d: &DecisionRecord) -> String {
    serde_json::json!({
        "decision": d.decision,
        "user": d.user,
        "groups": d.groups,
        "comment": d.comment,
        "at": crate::view::time(d.at),
    })
    .to_string()
}

/// The notification body: `notify-format: slack` gives `{"text": …}` (what
/// Slack and compatible incoming webhooks take); otherwise a generic JSON
/// document with the run, task, message, approvers and the approve/reject
/// endpoints (when the scheduler knows its public URL) and commands.
pub fn notification(
    detail: &serde_json::Value,
    run_id: &str,
    task: &str,
    pipeline: &str,
    public_url: Option<&str>,
) -> serde_json::Value {
    let message = detail["message"].as_str().unwrap_or("");
    let required = detail["required"].as_u64().unwrap_or(1);
    let approvers = approvers(detail);
    let endpoint = |what: &str| {
        public_url.map(|u| {
            format!(
                "{}/v1/runs/{run_id}/tasks/{task}/{what}",
                u.trim_end_matches('/')
            )
        })
    };
    let approve_cmd = format!("capstan approve {run_id} --task {task}");
    let reject_cmd = format!("capstan approve {run_id} --task {task} --reject");
    if detail["notify-format"].as_str() == Some("slack") {
        let mut text = format!(
            "*Approval needed* for `{task}` in run `{run_id}` ({pipeline})\n{message}\n\
             {required} of: {}\nApprove: `{approve_cmd}`  Reject: `{reject_cmd}`",
            approvers.join(", ")
        );
        if let (Some(a), Some(r)) = (endpoint("approve"), endpoint("reject")) {
            text.push_str(&format!("\nAPI: POST {a} | POST {r}"));
        }
        return serde_json::json!({ "text": text });
    }
    serde_json::json!({
        "event": "approval.requested",
        "run_id": run_id,
        "pipeline": pipeline,
        "task": task,
        "message": message,
        "approvers": approvers,
        "required": required,
        "approve_url": endpoint("approve"),
        "reject_url": endpoint("reject"),
        "approve_command": approve_cmd,
        "reject_command": reject_cmd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(approvers: &[&str]) -> WaitRecord {
        WaitRecord {
            run_id: "r1".into(),
            task: "gate".into(),
            attempt: 1,
            kind: "approval".into(),
            state: "{}".into(),
            detail: serde_json::json!({ "approvers": approvers, "required": 2, "message": "ship?" }),
            since: 0,
            deadline: 0,
            phase: "pending".into(),
            history: serde_json::json!([]),
            open: true,
        }
    }

    #[test]
    fn approvers_match_users_or_groups() {
        let w = wait(&["alice", "release-managers"]);
        assert!(authorize(&w, "alice", &[]).is_ok());
        assert!(authorize(&w, "bob", &["release-managers".into()]).is_ok());
        let e = authorize(&w, "mallory", &["outsiders".into()]).unwrap_err();
        assert!(e.contains("`mallory` is not an approver"), "{e}");
    }

    #[test]
    fn notifications_carry_run_task_message_and_endpoints() {
        let w = wait(&["alice"]);
        let g = notification(&w.detail, "r1", "gate", "ship", Some("http://ci:7070/"));
        assert_eq!(g["run_id"], "r1");
        assert_eq!(g["message"], "ship?");
        assert_eq!(
            g["approve_url"],
            "http://ci:7070/v1/runs/r1/tasks/gate/approve"
        );
        assert_eq!(
            g["reject_url"],
            "http://ci:7070/v1/runs/r1/tasks/gate/reject"
        );
        let mut d = w.detail.clone();
        d["notify-format"] = "slack".into();
        let s = notification(&d, "r1", "gate", "ship", None);
        let text = s["text"].as_str().unwrap();
        assert!(text.contains("ship?") && text.contains("capstan approve r1 --task gate"));
    }
}

/// Why a decision could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("{0}")]
    NotWaiting(String),
    /// Recorded as refused.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Record `user`'s decision on a waiting task: refused (and recorded as
/// such) unless the user or one of `groups` is a listed approver. The
/// scheduler executing the run applies it (wake it with
/// `Scheduler::wake`, or it finds it within a second).
pub fn decide(
    store: &crate::store::RunStore,
    run_id: &str,
    task: &str,
    user: &str,
    groups: &[String],
    approve: bool,
    comment: &str,
) -> Result<DecisionRecord, DecideError> {
    let status = store
        .task_status(run_id, task)?
        .ok_or_else(|| DecideError::NotWaiting(format!("run {run_id} has no task `{task}`")))?;
    let wait = store.wait(run_id, task)?.filter(|w| w.open);
    let wait = match wait {
        Some(w) if status == crate::store::TaskStatus::Waiting => w,
        _ => {
            return Err(DecideError::NotWaiting(format!(
                "task `{task}` of run {run_id} is not waiting for approval (it is {status})"
            )));
        }
    };
    let decision = if approve { "approve" } else { "reject" };
    match authorize(&wait, user, groups) {
        Ok(()) => {
            Ok(store.record_decision(run_id, task, user, groups, decision, comment, true, None)?)
        }
        Err(why) => {
            store.record_decision(
                run_id,
                task,
                user,
                groups,
                decision,
                comment,
                false,
                Some(&why),
            )?;
            Err(DecideError::Refused(why))
        }
    }
}

/// A waiting approval as the API and `approvals list` show it.
pub fn pending_json(w: &WaitRecord, decisions: &[DecisionRecord]) -> serde_json::Value {
    let mine: Vec<_> = decisions
        .iter()
        .filter(|d| d.task == w.task)
        .map(|d| {
            serde_json::json!({
                "user": d.user, "decision": d.decision, "comment": d.comment,
                "at": crate::view::time(d.at), "accepted": d.accepted, "reason": d.reason,
            })
        })
        .collect();
    serde_json::json!({
        "run_id": w.run_id,
        "task": w.task,
        "message": w.detail["message"],
        "approvers": approvers(&w.detail),
        "required": w.detail["required"].as_u64().unwrap_or(1),
        "phase": w.phase,
        "since": crate::view::time(w.since),
        "deadline": crate::view::time(w.deadline),
        "decisions": mine,
    })
}
