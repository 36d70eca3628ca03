//! Each poll counted by kind and result (`bb2snyk_polls_total`), so the importer's decisions show in
//! production.

use bb2snyk_messages::PollImport;
use bb2snyk_snyk::JobStatus;

/// A job's own poll: its first, a later one while listings tell of jobs' ends (a safety net), or a
/// later one otherwise.
pub(super) fn polled(poll: &PollImport, status: JobStatus, hints_trusted: bool) {
    let kind = match poll.polls {
        0 => "first",
        _ if hints_trusted => "safety_net",
        _ => "repeat",
    };
    bb2snyk_telemetry::metrics::polled(kind, result(status));
}

/// A poll made because a listing named the job's target as new.
pub(super) fn polled_hinted(status: JobStatus) {
    bb2snyk_telemetry::metrics::polled("hinted", result(status));
}

fn result(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "pending",
        JobStatus::Complete => "done",
        JobStatus::Failed | JobStatus::Aborted => "failed",
    }
}
