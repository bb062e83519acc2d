//! Wording shared by the strategies' summaries and notifications.

use crate::{Verdict, Victim};

/// Milliseconds as seconds with one decimal, e.g. `62.0 s`.
pub fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// One line about a victim, e.g.
/// `i-0abc (web-prod, us-east-1a): recovered in 62.0 s`.
pub fn victim_line(victim: &Victim) -> String {
    let group = victim.group.as_deref().unwrap_or("no group");
    let fate = match (victim.verdict, victim.recovered_at_ms) {
        (Verdict::Recovered, Some(at)) => format!(
            "recovered in {}",
            seconds(at.saturating_sub(victim.terminated_at_ms))
        ),
        (Verdict::Recovered, None) => "recovered".to_owned(),
        (Verdict::NotRecovered, _) => "did not recover in time".to_owned(),
        (Verdict::Unchecked, _) if victim.dry_run => "dry run, not terminated".to_owned(),
        (Verdict::Unchecked, _) => "recovery not checked".to_owned(),
    };
    format!("{} ({group}, {}): {fate}", victim.instance_id, victim.zone)
}

/// One line per victim, see [`victim_line`].
pub fn victim_lines(victims: &[Victim]) -> String {
    victims
        .iter()
        .map(victim_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1 instance` / `3 instances`.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// What was done, e.g. `Terminated 3 instances`, `Would have terminated 3
/// instances (dry run)` or `Terminated 3 instances (1 only in dry run)`.
pub fn terminated(victims: &[Victim]) -> String {
    let dry = victims.iter().filter(|v| v.dry_run).count();
    let all = plural(victims.len(), "instance");
    match dry {
        0 => format!("Terminated {all}"),
        d if d == victims.len() => format!("Would have terminated {all} (dry run)"),
        d => format!("Terminated {all} ({d} only in dry run)"),
    }
}

/// How the victims that were really terminated fared, e.g. `2 recovered, 1
/// did not recover in time`. Empty when no victim was really terminated.
pub fn verdicts(victims: &[Victim]) -> String {
    let count = |verdict: Verdict| {
        victims
            .iter()
            .filter(|v| !v.dry_run && v.verdict == verdict)
            .count()
    };
    [
        (count(Verdict::Recovered), "recovered"),
        (count(Verdict::NotRecovered), "did not recover in time"),
        (count(Verdict::Unchecked), "not checked"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// A one-sentence summary: `{terminated} {context}; {verdicts}.`, e.g.
/// `Terminated 2 instances in 2 of 3 groups matching "web-*"; 2 recovered.`
pub fn summary(victims: &[Victim], context: &str) -> String {
    let mut text = terminated(victims);
    if !context.is_empty() {
        text.push(' ');
        text.push_str(context);
    }
    let verdicts = verdicts(victims);
    if !verdicts.is_empty() {
        text.push_str("; ");
        text.push_str(&verdicts);
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn victim(id: &str, dry_run: bool, verdict: Verdict, recovered_at_ms: Option<u64>) -> Victim {
        Victim {
            instance_id: id.to_owned(),
            group: Some("web-prod".to_owned()),
            zone: "us-east-1a".to_owned(),
            terminated_at_ms: 1_000,
            dry_run,
            verdict,
            recovered_at_ms,
        }
    }

    #[test]
    fn victim_lines_give_recovery_in_seconds() {
        let recovered = victim("i-0abc", false, Verdict::Recovered, Some(63_000));
        assert_eq!(
            victim_line(&recovered),
            "i-0abc (web-prod, us-east-1a): recovered in 62.0 s"
        );
        let lost = victim("i-0def", false, Verdict::NotRecovered, None);
        assert_eq!(
            victim_line(&lost),
            "i-0def (web-prod, us-east-1a): did not recover in time"
        );
        let dry = victim("i-0123", true, Verdict::Unchecked, None);
        assert_eq!(
            victim_line(&dry),
            "i-0123 (web-prod, us-east-1a): dry run, not terminated"
        );
    }

    #[test]
    fn summaries_tell_dry_runs_and_verdicts_apart() {
        let dry = [
            victim("a", true, Verdict::Unchecked, None),
            victim("b", true, Verdict::Unchecked, None),
        ];
        assert_eq!(
            summary(&dry, "in 2 groups"),
            "Would have terminated 2 instances (dry run) in 2 groups."
        );
        let real = [
            victim("a", false, Verdict::Recovered, Some(5_000)),
            victim("b", false, Verdict::NotRecovered, None),
        ];
        assert_eq!(
            summary(&real, ""),
            "Terminated 2 instances; 1 recovered, 1 did not recover in time."
        );
        assert_eq!(
            summary(&[], "in 0 groups"),
            "Terminated 0 instances in 0 groups."
        );
        assert_eq!(plural(1, "group"), "1 group");
    }
}
